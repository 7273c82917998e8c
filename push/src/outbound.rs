//! Outbound HTTP POSTs (httpcb notifications, SMS gateways) behind a trait.
//!
//! Neither this crate nor the runtime may depend on an HTTP stack (only
//! `http-front` knows HTTP), yet both must POST JSON to URLs an admin
//! configured. So they take an [`HttpPost`] and `http-front` hands them one
//! built on its HTTP client. Tests can hand in a fake.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The future an [`HttpPost`] returns.
pub type PostFuture<'a> = Pin<Box<dyn Future<Output = Result<u16, PostError>> + Send + 'a>>;

/// POSTs a JSON body and reports the status code of the answer.
pub trait HttpPost: Send + Sync + 'static {
    /// POSTs `body` as `application/json` to `url`, giving up after
    /// `timeout`. `Ok(status)` for any answer, whatever its status; `Err`
    /// when no answer came (refused, reset, timed out) or the request could
    /// not be built.
    fn post_json<'a>(
        &'a self,
        url: &'a str,
        body: &'a serde_json::Value,
        timeout: Duration,
    ) -> PostFuture<'a>;

    /// POSTs `body` (JSON, already serialised: a signature covers these
    /// exact bytes) with `headers`, as [`HttpPost::post_json`] does.
    fn post_signed<'a>(
        &'a self,
        url: &'a str,
        body: &'a [u8],
        headers: &'a [(&'static str, String)],
        timeout: Duration,
    ) -> PostFuture<'a>;
}

/// Why a POST got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PostError {
    pub message: String,
    /// False when the request itself is malformed (a bad URL, say): trying
    /// again fails the same way.
    pub transient: bool,
}

/// An [`HttpPost`] for programs and tests that make no outbound HTTP: every
/// POST fails at once, and not transiently, so nothing waits on a retry.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHttp;

impl HttpPost for NoHttp {
    fn post_json<'a>(
        &'a self,
        url: &'a str,
        _body: &'a serde_json::Value,
        _timeout: Duration,
    ) -> PostFuture<'a> {
        let message = format!("no outbound HTTP in this program (POST {url})");
        Box::pin(async move {
            Err(PostError {
                message,
                transient: false,
            })
        })
    }

    fn post_signed<'a>(
        &'a self,
        url: &'a str,
        _body: &'a [u8],
        _headers: &'a [(&'static str, String)],
        _timeout: Duration,
    ) -> PostFuture<'a> {
        self.post_json(url, &serde_json::Value::Null, Duration::ZERO)
    }
}

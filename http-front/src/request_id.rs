//! Every request's id: in its tracing span (so each log line of a request
//! can be found by it) and in the `X-Request-Id` answer header (so a caller
//! can quote it). A caller's own id is kept when it is 1 to 128 visible
//! ASCII characters; anything else is replaced by a fresh UUID v4.
//!
//! The layer is the outermost of those every request passes (only CORS,
//! when configured, is outside it), so the answers of the rate limit, the
//! timeout and the panic layers carry the header too.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use tracing::Span;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest caller id kept.
const MAX_LEN: usize = 128;

/// Whether a caller's id is kept: 1 to 128 visible ASCII characters.
fn acceptable(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    (1..=MAX_LEN).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_graphic)
}

/// The layer: settles the id before the inner layers see the request (the
/// trace layer puts it in the span), and echoes it on the answer.
///
/// A tower layer rather than `axum::middleware::from_fn`: a `from_fn`
/// middleware boxes its future and a clone of the service below for every
/// request, which a held long-polling connect keeps for as long as it is
/// held (with the metrics and the body guard, 5.4 KB per connect).
#[derive(Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> tower::Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> RequestId<S> {
        RequestId { inner }
    }
}

#[derive(Clone)]
pub struct RequestId<S> {
    inner: S,
}

// Generic over the answer's body: the layers below may wrap it.
impl<S, B> tower::Service<Request> for RequestId<S>
where
    S: tower::Service<Request, Response = axum::http::Response<B>>,
{
    type Response = axum::http::Response<B>;
    type Error = S::Error;
    type Future = WithRequestId<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let id = match req.headers().get(&X_REQUEST_ID) {
            Some(id) if acceptable(id) => id.clone(),
            _ => HeaderValue::try_from(uuid::Uuid::new_v4().to_string())
                .expect("a UUID is a valid header value"),
        };
        req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
        WithRequestId {
            inner: self.inner.call(req),
            id: Some(id),
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer, with the request's id put on it.
    pub struct WithRequestId<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F, B, E> Future for WithRequestId<F>
where
    F: Future<Output = Result<axum::http::Response<B>, E>>,
{
    type Output = Result<axum::http::Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            res.headers_mut().insert(X_REQUEST_ID.clone(), id);
        }
        Poll::Ready(Ok(res))
    }
}

/// The span of one request, as tower-http's default with the request id,
/// the path without its query (queries carry customer numbers, which never
/// go to the log whole), and the credential once it is checked.
pub fn span(req: &Request) -> Span {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        version = ?req.version(),
        credential = tracing::field::Empty,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::routing::get;
    use axum::Router;

    /// A server with the real layers around routes that panic and that
    /// outlive a 100 ms timeout.
    async fn serve() -> String {
        let api = Router::new()
            .route(
                "/panic",
                get(|| async { panic!("a handler's bug") as &'static str }),
            )
            .route(
                "/slow",
                get(|| async { tokio::time::sleep(Duration::from_secs(30)).await }),
            );
        let limits = crate::HttpLimits {
            request_timeout: Duration::from_millis(100),
            ..crate::HttpLimits::default()
        };
        let app = crate::layered(api, Router::new(), &limits, Default::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    #[tokio::test]
    async fn the_timeouts_and_the_panics_answers_carry_the_id() {
        let base = serve().await;
        let client = reqwest::Client::new();
        // (path, caller's id, status)
        let cases = [
            ("/panic", Some("mine-1"), 500),
            ("/panic", None, 500),
            ("/slow", Some("mine-2"), 503),
            ("/slow", None, 503),
        ];
        for (path, sent, status) in cases {
            let mut req = client.get(format!("{base}{path}"));
            if let Some(id) = sent {
                req = req.header("x-request-id", id);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status().as_u16(), status, "{path}");
            let id = res.headers().get("x-request-id").expect("an id");
            let id = id.to_str().unwrap();
            match sent {
                Some(sent) => assert_eq!(id, sent, "{path}"),
                None => assert!(uuid::Uuid::parse_str(id).is_ok(), "{path}: {id}"),
            }
        }
    }
}

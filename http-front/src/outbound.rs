//! The outbound HTTP client the runtime posts through (httpcb
//! notifications, SMS gateways): [`push::outbound::HttpPost`] on reqwest.
//! The runtime has no HTTP stack of its own; this crate is where HTTP lives.

use std::sync::Arc;
use std::time::Duration;

use push::outbound::{HttpPost, PostError, PostFuture};

/// POSTs JSON with reqwest, following no redirects: an admin names the one
/// URL a notification or an SMS may go to.
#[derive(Clone)]
pub struct ReqwestPost {
    client: reqwest::Client,
}

impl ReqwestPost {
    pub fn new() -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(ReqwestPost { client })
    }

    /// A shared client, as the runtime takes it.
    pub fn shared() -> anyhow::Result<Arc<dyn HttpPost>> {
        Ok(Arc::new(ReqwestPost::new()?))
    }
}

/// The answer's status, or why none came.
fn outcome(sent: Result<reqwest::Response, reqwest::Error>) -> Result<u16, PostError> {
    match sent {
        Ok(response) => Ok(response.status().as_u16()),
        Err(e) => Err(PostError {
            // A request that cannot even be built fails the same way again.
            transient: !e.is_builder(),
            message: e.to_string(),
        }),
    }
}

impl HttpPost for ReqwestPost {
    fn post_signed<'a>(
        &'a self,
        url: &'a str,
        body: &'a [u8],
        headers: &'a [(&'static str, String)],
        timeout: Duration,
    ) -> PostFuture<'a> {
        Box::pin(async move {
            let mut request = self
                .client
                .post(url)
                .timeout(timeout)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            outcome(request.send().await)
        })
    }

    fn post_json<'a>(
        &'a self,
        url: &'a str,
        body: &'a serde_json::Value,
        timeout: Duration,
    ) -> PostFuture<'a> {
        Box::pin(async move {
            let sent = self
                .client
                .post(url)
                .timeout(timeout)
                .json(body)
                .send()
                .await;
            outcome(sent)
        })
    }
}

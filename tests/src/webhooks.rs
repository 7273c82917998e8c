//! A webhook receiver, as a business's own system would run one: a local
//! server that verifies every request with the Standard Webhooks library
//! (`standardwebhooks`) and records what came, in order.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use engine::testing::ScenarioBuilder;
use serde_json::Value;

/// The secret both sides know (the specification's example secret).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub kind: String,
    pub body: Value,
    pub verified: bool,
    pub answered: u16,
}

/// A receiver that answers `status` (changeable while it runs).
#[derive(Clone)]
pub struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    addr: SocketAddr,
}

impl Receiver {
    pub async fn start(status: u16) -> Receiver {
        Receiver::start_at("127.0.0.1:0".parse().unwrap(), status).await
    }

    /// A loopback address with nothing listening on it (yet): a receiver
    /// that is down refuses connections there until [`Receiver::start_at`].
    pub fn down() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }

    /// A receiver on `addr` (port 0: any free port).
    pub async fn start_at(addr: SocketAddr, status: u16) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(status));
        let state = (got.clone(), status.clone());
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(receive))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { got, status, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    pub fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests were answered 2xx; all of them.
    pub async fn delivered(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let ok: Vec<Received> = self
                .got()
                .into_iter()
                .filter(|r| r.answered < 300)
                .collect();
            if ok.len() >= n {
                return ok;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} delivered: {:?}",
                ok.len(),
                self.got()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What the receiver keeps, and the status it answers.
type Shared = (Arc<Mutex<Vec<Received>>>, Arc<AtomicU16>);

async fn receive(
    State((got, status)): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let verified = standardwebhooks::Webhook::new(SECRET)
        .unwrap()
        .verify(&body, &headers)
        .is_ok();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answered = status.load(Ordering::SeqCst);
    got.lock().unwrap().push(Received {
        id: headers["webhook-id"]
            .to_str()
            .unwrap_or_default()
            .to_owned(),
        kind: parsed["type"].as_str().unwrap_or_default().to_owned(),
        body: parsed,
        verified,
        answered,
    });
    StatusCode::from_u16(answered).unwrap()
}

/// chat-delay (as `hooked`) feeding `url` (secret in `CRM_WEBHOOK_SECRET`),
/// with the events it names.
pub fn hooked(url: &str, events: Option<&str>) -> ScenarioBuilder {
    let mut builder = ScenarioBuilder::chat_delay().name("hooked");
    builder = builder.raw(&format!(
        "[[_webhook]]\nurl = \"{url}\"\nsecret_env = \"CRM_WEBHOOK_SECRET\"\n{}",
        events.map_or(String::new(), |e| format!("events = {e}\n"))
    ));
    builder
}

/// Sets the receiver's answer.
impl Receiver {
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }
}

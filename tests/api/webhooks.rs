//! Webhooks to the business's own systems, as a receiver sees them: a
//! local server that verifies every request with the Standard Webhooks
//! library (`standardwebhooks`) and records what came, in order.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use engine::testing::ScenarioBuilder;
use serde_json::Value;
use tests::TestApp;

/// The secret both sides know (the specification's example secret).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    kind: String,
    body: Value,
    verified: bool,
    answered: u16,
}

/// A receiver that answers `status` (changeable while it runs).
#[derive(Clone)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    addr: SocketAddr,
}

impl Receiver {
    async fn start(status: u16) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(status));
        let state = (got.clone(), status.clone());
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(receive))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { got, status, addr }
    }

    fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests were answered 2xx; all of them.
    async fn delivered(&self, n: usize, within: Duration) -> Vec<Received> {
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

/// chat-delay (as `hooked`) feeding `url`, with the events it names.
fn hooked(url: &str, events: Option<&str>) -> String {
    let events = events.map_or(String::new(), |e| format!("events = {e}\n"));
    format!(
        "{}\n[[_webhook]]\nurl = \"{url}\"\nsecret_env = \"CRM_WEBHOOK_SECRET\"\n{events}",
        ScenarioBuilder::chat_delay().name("hooked").toml()
    )
}

async fn app_for(receiver: &Receiver, events: Option<&str>) -> TestApp {
    TestApp::builder()
        .scenario("hooked.toml", &hooked(&receiver.url(), events))
        .webhook_secret("CRM_WEBHOOK_SECRET", SECRET)
        .spawn()
        .await
}

#[tokio::test]
async fn a_whole_flow_reaches_the_receiver_signed_and_in_order() {
    let receiver = Receiver::start(204).await;
    let app = app_for(&receiver, None).await;
    let id = app.create("hooked", "5550123").await;
    app.ready_agent("hook-agent", &["support"], 1).await;
    app.wait_for_state(&id, "ROUTING", Duration::from_secs(5))
        .await;
    let (status, _) = app
        .post_form(&format!("/genesys/1/service/{id}/connect"), &[])
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .post_json(&format!("/api/v1/services/{id}/complete"), &Value::Null)
        .await;
    assert_eq!(status, 200);

    let got = receiver.delivered(4, Duration::from_secs(10)).await;
    let kinds: Vec<&str> = got.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "service.created",
            "service.routed",
            "service.connected",
            "service.completed"
        ]
    );
    assert!(
        got.iter().all(|r| r.verified),
        "every signature verifies: {got:?}"
    );
    let ids: std::collections::BTreeSet<&str> = got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 4, "one id per event: {got:?}");
    let completed = &got[3].body;
    assert_eq!(completed["data"]["scenario"], "hooked");
    assert_eq!(completed["data"]["service_id"], id.as_str());
    assert_eq!(completed["data"]["state"], "COMPLETED");
    assert_eq!(completed["data"]["reason"], "AGENT_CONNECTED");
    assert!(completed["timestamp"].is_string(), "{completed}");

    // Delivered means gone from the record, and nothing more comes.
    let record = app.record(&id).await;
    assert!(
        record
            .get("webhooks")
            .is_none_or(|w| w["pending"].as_array().is_none_or(Vec::is_empty)),
        "{record}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got().len(), 4, "delivered once each");
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_every_event_in_order_once_it_is_back() {
    let receiver = Receiver::start(503).await;
    let app = app_for(
        &receiver,
        Some(r#"["service.created", "service.cancelled"]"#),
    )
    .await;
    let id = app.create("hooked", "5550124").await;
    let (status, _) = app
        .delete(&format!("/genesys/1/service/callback/hooked/{id}"))
        .await;
    assert_eq!(status, 200);
    // Refused while down: the first attempt and the 2 s retry.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let refused = receiver.got();
    assert!(refused.len() >= 2, "{refused:?}");
    assert!(
        refused.iter().all(|r| r.kind == "service.created"),
        "nothing overtakes an event that was not delivered: {refused:?}"
    );
    let (_, deliveries) = app.get("/api/v1/webhooks/deliveries").await;
    assert!(deliveries["failed"].as_u64().unwrap() >= 2, "{deliveries}");
    assert_eq!(deliveries["attempts"][0]["status"], 503, "{deliveries}");
    assert_eq!(
        deliveries["attempts"][0]["delivered"], false,
        "{deliveries}"
    );

    receiver.status.store(200, Ordering::SeqCst);
    let got = receiver.delivered(2, Duration::from_secs(15)).await;
    let kinds: Vec<&str> = got.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["service.created", "service.cancelled"]);
    assert!(got.iter().all(|r| r.verified));
    // The retry carried the id of the refused first attempt.
    assert_eq!(got[0].id, refused[0].id);
    assert!(refused.iter().all(|r| r.id == refused[0].id));

    // Nothing was given up, so there is nothing to retry.
    let (status, body) = app
        .post_json(
            &format!("/api/v1/services/{id}/webhooks/retry"),
            &Value::Null,
        )
        .await;
    assert_eq!(status, 409, "{body}");
}

/// A subscription whose secret is not in the environment stops start-up.
#[test]
fn a_subscription_without_its_secret_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hooked.toml"),
        hooked("http://127.0.0.1:9/hooks", None),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callbackd-node"))
        .args(["--listen", "127.0.0.1:0", "--scenarios"])
        .arg(dir.path())
        .env_remove("CRM_WEBHOOK_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("hooked") && stderr.contains("CRM_WEBHOOK_SECRET"),
        "{stderr}"
    );
}

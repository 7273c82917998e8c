//! Webhooks to the business's own systems, as a receiver sees them: a
//! local server that verifies every request with the Standard Webhooks
//! library (`standardwebhooks`) and records what came, in order.

use std::time::Duration;

use serde_json::Value;
use tests::webhooks::{hooked, Receiver, SECRET};
use tests::TestApp;

async fn app_for(receiver: &Receiver, events: Option<&str>) -> TestApp {
    TestApp::builder()
        .with_scenario(&hooked(&receiver.url(), events))
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

    receiver.answer(200);
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

/// The receiver is down (nothing listens) for a minute while services
/// come and go: once it is up, every event arrives, each service's in
/// order, each once. This takes the retries' real time (attempts at 0, 2,
/// 6, 14, 30 and 62 s after an event): about a minute and a half.
#[tokio::test]
async fn a_receiver_down_for_a_minute_gets_every_event_in_order() {
    let addr = Receiver::down();
    let url = format!("http://{addr}/hooks");
    let app = TestApp::builder()
        .with_scenario(&hooked(
            &url,
            Some(r#"["service.created", "service.cancelled"]"#),
        ))
        .webhook_secret("CRM_WEBHOOK_SECRET", SECRET)
        .spawn()
        .await;
    let started = tokio::time::Instant::now();
    let mut ids = Vec::new();
    // Services at 0, 20 and 40 s into the outage, each cancelled at once.
    for (i, at) in [0u64, 20, 40].into_iter().enumerate() {
        tokio::time::sleep_until(started + Duration::from_secs(at)).await;
        let id = app.create("hooked", &format!("555014{i}")).await;
        let (status, _) = app
            .delete(&format!("/genesys/1/service/callback/hooked/{id}"))
            .await;
        assert_eq!(status, 200);
        ids.push(id);
    }
    let (_, deliveries) = app.get("/api/v1/webhooks/deliveries").await;
    assert!(deliveries["failed"].as_u64().unwrap() >= 3, "{deliveries}");
    tokio::time::sleep_until(started + Duration::from_secs(60)).await;
    let receiver = Receiver::start_at(addr, 204).await;
    let got = receiver.delivered(6, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.got().len(),
        6,
        "each event once: {:?}",
        receiver.got()
    );
    assert!(got.iter().all(|r| r.verified));
    for id in &ids {
        let kinds: Vec<&str> = got
            .iter()
            .filter(|r| r.body["data"]["service_id"] == id.as_str())
            .map(|r| r.kind.as_str())
            .collect();
        assert_eq!(kinds, ["service.created", "service.cancelled"], "{id}");
    }
    // Nothing is left owed.
    for id in &ids {
        let record = app.record(id).await;
        assert!(
            record
                .get("webhooks")
                .is_none_or(|w| w["pending"].as_array().is_none_or(Vec::is_empty)),
            "{record}"
        );
    }
}

/// A subscription whose secret is not in the environment stops start-up.
#[test]
fn a_subscription_without_its_secret_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    hooked("http://127.0.0.1:9/hooks", None).write_to(dir.path());
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

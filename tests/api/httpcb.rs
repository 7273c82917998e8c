//! `_device_os=httpcb`: notifications POSTed to the scenario's URL, retried
//! with backoff, and left in the outbox when they never got through.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use engine::testing::ScenarioBuilder;
use serde_json::Value;
use tests::TestApp;

/// A local endpoint that records every POST and fails the first `fail` ones
/// whose tag starts with `failing`.
#[derive(Clone, Default)]
struct Sink {
    got: Arc<Mutex<Vec<Value>>>,
    fail: Arc<Mutex<usize>>,
    failing: &'static str,
}

async fn receive(State(sink): State<Sink>, Json(body): Json<Value>) -> StatusCode {
    let targeted = body["tag"]
        .as_str()
        .is_some_and(|t| t.starts_with(sink.failing));
    sink.got.lock().unwrap().push(body);
    let mut fail = sink.fail.lock().unwrap();
    if targeted && *fail > 0 {
        *fail -= 1;
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::NO_CONTENT
    }
}

async fn start_sink(failing: &'static str, fail: usize) -> (String, Sink) {
    let sink = Sink {
        failing,
        ..Sink::default()
    };
    *sink.fail.lock().unwrap() = fail;
    let app = axum::Router::new()
        .route("/notify", axum::routing::post(receive))
        .with_state(sink.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, sink)
}

fn scenario(url: &str) -> ScenarioBuilder {
    ScenarioBuilder::new("cd-httpcb")
        .key("_target", r#"{ queue = "hooks", priority = 0 }"#)
        .key("_httpcb_url", &format!("{url:?}"))
        .key("_httpcb_attempts", "3")
        .key("_httpcb_backoff", r#""50ms""#)
        .key("_httpcb_timeout", r#""2s""#)
}

async fn create_httpcb(app: &TestApp, device: &str) -> String {
    let (status, body) = app
        .post_form(
            "/genesys/1/service/callback/cd-httpcb",
            &[
                ("_customer_number", "5551234"),
                ("_device_notification_id", device),
                ("_device_os", "httpcb"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["_id"].as_str().unwrap().to_owned()
}

/// Waits until the sink holds a POST with this tag; answers all POSTs with it.
async fn posts_with_tag(sink: &Sink, tag: &str, at_least: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got: Vec<Value> = sink
            .got
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b["tag"] == tag)
            .cloned()
            .collect();
        if got.len() >= at_least {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {at_least} POSTs tagged {tag}: {:?}",
            sink.got.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn outbox_tags(app: &TestApp, id: &str) -> Vec<String> {
    let (status, body) = app.get(&format!("/api/v1/services/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body["outbox"]
        .as_array()
        .map(|o| {
            o.iter()
                .map(|n| n["tag"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn httpcb_posts_after_failures_and_the_notification_leaves_the_outbox() {
    // Two failures, then success: the third attempt gets through.
    let (url, sink) = start_sink("service.agentavailable.", 2).await;
    let app = TestApp::builder()
        .with_scenario(&scenario(&url))
        .spawn()
        .await;
    let id = create_httpcb(&app, "device-http-1").await;
    app.ready_agent("hook-agent", &["hooks"], 1).await;

    let tag = format!("service.agentavailable.{id}");
    let posts = posts_with_tag(&sink, &tag, 3).await;
    let body = &posts[2];
    assert_eq!(body["service_id"], id.as_str());
    assert_eq!(body["device_notification_id"], "device-http-1");
    assert_eq!(body["data"]["tag"], tag.as_str());
    assert_eq!(
        body["data"]["message"]["_action"],
        "get-dialog-user-confirmation-provide_code-false"
    );
    assert_eq!(body["data"]["message"]["_id"], id.as_str());
    assert!(body["id"].is_string(), "kept notifications carry their id");

    // Delivered: it leaves the outbox, so a poll does not return it again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while outbox_tags(&app, &id).await.contains(&tag) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still in the outbox"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, retrieved) = app
        .post_form(
            &format!("/genesys/1/service/{id}/retrieve-notifications"),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        retrieved
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["tag"] != tag.as_str()),
        "{retrieved}"
    );
    // State changes go the same way (not kept, so no id).
    let states = posts_with_tag(&sink, &format!("service.state.{id}"), 1).await;
    assert!(states[0]["id"].is_null());
}

#[tokio::test]
async fn httpcb_gives_up_after_its_attempts_and_the_outbox_keeps_it() {
    let (url, sink) = start_sink("", usize::MAX).await;
    let app = TestApp::builder()
        .with_scenario(&scenario(&url))
        .spawn()
        .await;
    let id = create_httpcb(&app, "device-http-2").await;
    let (status, _) = app
        .post_form(
            &format!("/genesys/1/service/{id}/internal-notification"),
            &[("_display_message", "hello over http")],
        )
        .await;
    assert_eq!(status, 200);
    let tag = format!("service.internal.{id}");
    posts_with_tag(&sink, &tag, 3).await;
    // Exactly the scenario's three attempts, no more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(posts_with_tag(&sink, &tag, 3).await.len(), 3);
    let (status, retrieved) = app
        .post_form(
            &format!("/genesys/1/service/{id}/retrieve-notifications"),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let texts: Vec<&Value> = retrieved
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["_display_message"])
        .collect();
    assert_eq!(texts, [&Value::from("hello over http")], "{retrieved}");
}

#[tokio::test]
async fn httpcb_needs_a_url_in_the_scenario() {
    let (url, _sink) = start_sink("", 0).await;
    let app = TestApp::builder()
        .with_scenario(&scenario(&url))
        .spawn()
        .await;
    let (status, body) = app
        .post_form(
            "/genesys/1/service/callback/chat-delay",
            &[
                ("_customer_number", "5551234"),
                ("_device_notification_id", "d"),
                ("_device_os", "httpcb"),
            ],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with("_device_os:"), "{message}");
    assert!(message.contains("_httpcb_url"), "{message}");
}

//! Agent preview (`_agent_preview`) over HTTP: the reserved agent accepts
//! or rejects before the customer hears of it; rejects and unanswered
//! previews send the service back to its queue for another agent.

use std::time::Duration;

use engine::testing::ScenarioBuilder;
use serde_json::{json, Value};
use tests::{TestApp, WAIT};

/// Queue `preview`, a customer confirmation, `timeout` to answer, two rejects.
fn scenario(timeout: &str) -> ScenarioBuilder {
    ScenarioBuilder::new("preview")
        .key("_target", r#"{ queue = "preview" }"#)
        .keys(&[
            ("_agent_preview", "true"),
            ("_agent_preview_timeout", timeout),
            ("_agent_preview_allow_reject", "2"),
        ])
}

async fn app(timeout: &str) -> TestApp {
    TestApp::builder()
        .with_scenario(&scenario(timeout))
        .spawn()
        .await
}

/// The service once the router reserved an agent for it: that agent's id.
async fn offered(app: &TestApp, id: &str) -> String {
    let rec = app
        .wait_for_record(id, "an agent previews the service", |r| {
            r["_callback_state"] == "ROUTING" && r["preview_pending"] == true
        })
        .await;
    rec["agent"].as_str().expect("agent").to_owned()
}

async fn answer(app: &TestApp, id: &str, what: &str, agent: &str) -> (u16, Value) {
    app.post_json(
        &format!("/api/v1/services/{id}/{what}"),
        &json!({"agent_id": agent}),
    )
    .await
}

#[tokio::test]
async fn an_accepted_preview_asks_the_customer_as_without_preview() {
    let app = app(r#""60s""#).await;
    let id = app.create("preview", "5550001").await;
    app.ready_agent("alice", &["preview"], 1).await;
    let agent = offered(&app, &id).await;
    assert_eq!(agent, "alice");
    let rec = app.record(&id).await;
    assert_eq!(rec["outbox"], json!([]), "the customer is not told yet");
    let tags: Vec<&str> = rec["agent_outbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, [format!("agent.preview.{id}")]);
    // Connecting before the agent accepts is refused.
    let (status, body) = app
        .post_form(&format!("/genesys/1/service/{id}/connect"), &[])
        .await;
    assert_eq!(status, 409, "{body}");

    let (status, body) = answer(&app, &id, "accept", "alice").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["_callback_state"], "ROUTING");
    assert_eq!(body["preview_pending"], Value::Null);
    let (_, pushed) = app
        .post_form(
            &format!("/genesys/1/service/{id}/retrieve-notifications"),
            &[],
        )
        .await;
    assert_eq!(pushed[0]["tag"], format!("service.agentavailable.{id}"));
    let (status, body) = app
        .post_form(&format!("/genesys/1/service/{id}/connect"), &[])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.state_of(&id).await, "PROCESSING");
}

#[tokio::test]
async fn a_rejected_preview_goes_to_the_next_agent_keeping_its_place() {
    rejected_to_the_next_agent(app(r#""60s""#).await).await;
}

/// The same on Redis: the declined agents travel in the queue member the
/// store's scripts build, and the router reads them back from it.
#[tokio::test]
async fn on_redis_a_rejected_preview_goes_to_the_next_agent() {
    let app = TestApp::builder()
        .with_scenario(&scenario(r#""60s""#))
        .redis()
        .spawn()
        .await;
    rejected_to_the_next_agent(app).await;
}

async fn rejected_to_the_next_agent(app: TestApp) {
    let id = app.create("preview", "5550002").await;
    app.ready_agent("alice", &["preview"], 1).await;
    assert_eq!(offered(&app, &id).await, "alice");
    let since = app.record(&id).await["ticket"]["since"].clone();
    let (status, body) = answer(&app, &id, "reject", "alice").await;
    assert_eq!(status, 200, "{body}");
    // Alice is free and ready, and the only agent: the service waits
    // rather than going back to her (her release woke the router).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rec = app.record(&id).await;
    assert_eq!(rec["_callback_state"], "QUEUED", "{rec}");
    assert_eq!(rec["agent"], Value::Null, "{rec}");
    assert_eq!(rec["ticket"]["declined"], json!(["alice"]));
    assert_eq!(rec["preview_rejects"], 1);
    assert!(app.agent_services("alice").await.is_empty());
    app.ready_agent("bob", &["preview"], 1).await;
    assert_eq!(offered(&app, &id).await, "bob");
    let rec = app.record(&id).await;
    assert_eq!(rec["ticket"]["since"], since, "its place is kept");
}

#[tokio::test]
async fn the_last_allowed_reject_completes_the_service() {
    let app = app(r#""60s""#).await;
    let id = app.create("preview", "5550003").await;
    app.ready_agent("alice", &["preview"], 1).await;
    app.ready_agent("bob", &["preview"], 1).await;
    let first = offered(&app, &id).await;
    answer(&app, &id, "reject", &first).await;
    let second = app
        .wait_for_record(&id, "the other agent previews it", |r| {
            r["preview_pending"] == true && r["agent"] != json!(first)
        })
        .await;
    let second = second["agent"].as_str().unwrap().to_owned();
    let (status, body) = answer(&app, &id, "reject", &second).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["_callback_state"], "COMPLETED");
    assert_eq!(
        body["_callback_reason"],
        "AGENT_PREVIEW_CANCEL_AFTER_2REJECTS"
    );
    assert!(app.agent_services(&second).await.is_empty());

    // Counted for the operator (the recorder is the process's: other
    // preview tests may add theirs).
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    let rejected: f64 = text
        .lines()
        .find(|l| {
            l.starts_with("callbackd_agent_offer_answers_total{")
                && l.contains(r#"outcome="rejected""#)
                && l.contains(r#"scenario="preview""#)
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no rejected offers counted:\n{text}"));
    assert!(rejected >= 2.0, "{rejected}");
}

#[tokio::test]
async fn an_unanswered_preview_makes_its_agent_not_ready_and_requeues() {
    let app = app(r#""1s""#).await;
    let id = app.create("preview", "5550004").await;
    app.ready_agent("alice", &["preview"], 1).await;
    offered(&app, &id).await;
    let rec = app.wait_for_state(&id, "QUEUED", WAIT).await;
    assert_eq!(rec["ticket"]["declined"], json!(["alice"]));
    assert_eq!(
        rec["preview_rejects"],
        Value::Null,
        "a timeout is no reject"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, agent) = app.get("/api/v1/agents/alice").await;
        if agent["state"] == "not_ready" {
            assert_eq!(agent["services"], json!([]));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice stays {agent}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bad_answers_are_refused_naming_what_is_wrong() {
    let app = app(r#""60s""#).await;
    let id = app.create("preview", "5550005").await;
    // Nothing offered yet.
    let (status, body) = answer(&app, &id, "accept", "alice").await;
    assert_eq!(status, 409, "{body}");
    app.ready_agent("alice", &["preview"], 1).await;
    offered(&app, &id).await;
    // Running open, the agent must be named.
    for what in ["accept", "reject"] {
        let path = format!("/api/v1/services/{id}/{what}");
        let (status, body) = app.post_json(&path, &json!({})).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.to_string().contains("agent_id"), "{body}");
        let (status, body) = app.post_json(&path, &json!({"agent_id": ""})).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.to_string().contains("agent_id"), "{body}");
        let (status, body) = app.post_json(&path, &json!({"agent": "alice"})).await;
        assert_eq!(status, 400, "{body}");
        // Another agent than the one offered.
        let (status, body) = answer(&app, &id, what, "bob").await;
        assert_eq!(status, 409, "{body}");
    }
    let (status, body) = answer(&app, "no-such-service", "accept", "alice").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(app.state_of(&id).await, "ROUTING");
}

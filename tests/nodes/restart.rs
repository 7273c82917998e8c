//! A node is stopped and started again: every service is still there, in
//! its state and at its place in the queue, and the queue goes on working.

use std::time::Duration;

use redis_store::testing::RedisServer;
use serde_json::{json, Value};

use crate::support::Site;

#[tokio::test]
async fn services_survive_a_restart_with_state_and_position() {
    let mut site = Site::start(1, RedisServer::start()).await;
    let app = &site.nodes[0].app;

    // One agent with one seat takes the first service; the rest wait.
    app.ready_agent("alice", &["support"], 1).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(app.create("chat-delay", &format!("55500{i}")).await);
    }
    app.wait_for_state(&ids[0], "ROUTING", Duration::from_secs(10))
        .await;
    let (status, scheduled) = app
        .post_form(
            "/genesys/1/service/callback/chat-delay",
            &[
                ("_customer_number", "5559999"),
                (
                    "_desired_time",
                    &tests::iso_utc_in(Duration::from_secs(3600)),
                ),
            ],
        )
        .await;
    assert_eq!(status, 200, "{scheduled}");
    ids.push(scheduled["_id"].as_str().unwrap().to_owned());

    let before = snapshot(app, &ids).await;
    let states: Vec<&str> = before
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "ROUTING",
            "QUEUED",
            "QUEUED",
            "QUEUED",
            "QUEUED",
            "QUEUED",
            "QUEUED",
            "QUEUED",
            "SCHEDULED"
        ]
    );
    let positions: Vec<Value> = before.iter().map(|s| s["position"].clone()).collect();
    assert_eq!(positions[1..8], [1, 2, 3, 4, 5, 6, 7].map(Value::from));

    site.nodes[0].stop();
    assert_eq!(
        site.nodes[0].app.try_get("/healthz").await.0,
        None,
        "stopped"
    );
    site.nodes[0].restart().await;
    let app = &site.nodes[0].app;
    assert_eq!(snapshot(app, &ids).await, before);

    // The queue keeps working after the restart: alice's service completes,
    // and the next in line is routed to her.
    let (status, _) = app
        .post_form(&format!("/genesys/1/service/{}/connect", ids[0]), &[])
        .await;
    assert_eq!(status, 200);
    let (status, body) = app
        .post_json(
            &format!("/api/v1/services/{}/complete", ids[0]),
            &Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    app.wait_for_state(&ids[1], "ROUTING", Duration::from_secs(10))
        .await;
    assert_eq!(app.queue_position(&ids[2]).await["_position"], 1);
}

/// Each service's GMS state and, while queued, its position.
async fn snapshot(app: &tests::TestApp, ids: &[String]) -> Vec<Value> {
    let mut seen = Vec::new();
    for id in ids {
        let (status, rec) = app.get(&format!("/api/v1/services/{id}")).await;
        assert_eq!(status, 200, "{rec}");
        let state = rec["_callback_state"].clone();
        let position = if state == "QUEUED" {
            app.queue_position(id).await["_position"].clone()
        } else {
            Value::Null
        };
        seen.push(json!({"id": id, "state": state, "position": position}));
    }
    seen
}

/// A timer that falls due while every node is down fires as soon as a node
/// is back: the scheduled callback enters the queue at once.
#[tokio::test]
async fn timers_due_while_every_node_was_down_fire_on_return() {
    let mut site = Site::start(1, RedisServer::start()).await;
    let app = tests::TestApp::at(site.nodes[0].app.base.clone());
    let (status, body) = app
        .post_form(
            "/genesys/1/service/callback/chat-delay",
            &[
                ("_customer_number", "5550200"),
                ("_desired_time", &tests::iso_utc_in(Duration::from_secs(1))),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["_id"].as_str().unwrap().to_owned();
    assert_eq!(app.state_of(&id).await, "SCHEDULED");

    site.nodes[0].stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    site.nodes[0].restart().await;
    // Due 0.5 s ago at the latest; fired right after start-up, not later.
    let rec = app
        .wait_for_state(&id, "QUEUED", Duration::from_secs(3))
        .await;
    let fired = rec["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["from"] == "scheduled")
        .expect("the desired-time transition")
        .clone();
    assert_eq!(fired["event"], "desired_time_reached", "{rec}");
}

/// Timers armed from the wall clock (which has nanoseconds) fire on Redis:
/// the find-agent timeout completes a service nobody can take.
#[tokio::test]
async fn wall_clock_timers_fire_on_redis() {
    let site = Site::start(1, RedisServer::start()).await;
    let app = &site.nodes[0].app;
    let id = app.create("hurry", "5550300").await;
    let rec = app
        .wait_for_state(&id, "COMPLETED", Duration::from_secs(5))
        .await;
    assert_eq!(rec["_callback_reason"], "FAIL_TARGET_NOT_FOUND", "{rec}");
}

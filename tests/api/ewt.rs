//! EWT for widgets and apps over HTTP: GMS's EWT API v1
//! (`/genesys/1/service/ewt-for-vq?name=&aqt=`) and v2
//! (`/genesys/2/ewt/{mode}?vq=`), in the shapes Genesys Widgets'
//! StatsService reads: `ewt` of one queue, `<vq>.ewt` of several.

use serde_json::{json, Value};
use tests::{spawn_app, TestApp, WAIT};

async fn ewt(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.get(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// One queue asked, every way a widget asks: the entry itself.
async fn support(app: &TestApp) -> Value {
    let v1 = ewt(app, "/genesys/1/service/ewt-for-vq?name=support&aqt=urs2").await;
    for path in [
        "/genesys/1/service/ewt-for-vq?name=support",
        "/genesys/2/ewt/ewt2?vq=support",
        "/genesys/2/ewt/ewt1?vq=support",
        "/genesys/2/ewt?vq=support",
    ] {
        assert_eq!(ewt(app, path).await, v1, "{path} agrees with v1");
    }
    v1
}

#[tokio::test]
async fn ewt_follows_waiting_services_ready_agents_and_handle_times() {
    let app = spawn_app().await;
    // Nothing known yet: -1, as GMS and StatsService mean "no estimate".
    let empty = support(&app).await;
    assert_eq!(
        empty,
        json!({"ewt": -1, "_total_waiting": 0, "_agents_ready": 0})
    );

    // Two handled services give handle times.
    let first = app.create("chat-delay", "1001").await;
    let second = app.create("chat-delay", "1002").await;
    assert_eq!(support(&app).await["_total_waiting"], 2);
    app.ready_agent("alice", &["support"], 1).await;
    for id in [&first, &second] {
        app.wait_for_state(id, "ROUTING", WAIT).await;
        let (status, body) = app
            .post_form(&format!("/genesys/1/service/{id}/connect"), &[])
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = app
            .post_json(&format!("/api/v1/services/{id}/complete"), &json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // Alice is busy with a third customer, and a fourth waits.
    let third = app.create("chat-delay", "1003").await;
    app.wait_for_state(&third, "ROUTING", WAIT).await;
    app.create("chat-delay", "1004").await;
    let busy = support(&app).await;
    assert_eq!(busy["_total_waiting"], 1, "{busy}");
    assert_eq!(busy["_agents_ready"], 1, "{busy}");
    let one_agent = busy["ewt"].as_i64().expect("a number");
    assert!(one_agent >= 0, "an estimate from handle times: {busy}");

    // More customers waiting: a new one would wait at least as long.
    app.create("chat-delay", "1005").await;
    let longer = support(&app).await;
    assert_eq!(longer["_total_waiting"], 2);
    assert!(
        longer["ewt"].as_i64().unwrap() >= one_agent,
        "{longer} vs {busy}"
    );

    // An agent ready for another queue does not count.
    app.ready_agent("bob", &["elsewhere"], 1).await;
    assert_eq!(
        support(&app).await["_agents_ready"],
        1,
        "bob serves another queue"
    );

    // No agent ready: the recent waits stand in.
    app.set_ready("alice", false).await;
    let unattended = support(&app).await;
    assert_eq!(unattended["_agents_ready"], 0);
    assert!(unattended["ewt"].as_i64().unwrap() >= 0, "{unattended}");
}

/// Several queues, or none asked: an object by queue name.
#[tokio::test]
async fn several_queues_answer_by_name() {
    let app = spawn_app().await;
    app.create("chat-delay", "1001").await;
    let both = ewt(&app, "/genesys/2/ewt/ewt3?vq=support,support").await;
    assert_eq!(both["support"]["_total_waiting"], 1, "{both}");
    let all = ewt(&app, "/genesys/1/service/ewt-for-vq?aqt=stat").await;
    let queues: Vec<&String> = all.as_object().expect("object").keys().collect();
    assert!(queues.iter().any(|q| *q == "support"), "{all}");
    for (queue, entry) in all.as_object().unwrap() {
        assert!(entry["ewt"].is_i64(), "{queue}: {entry}");
        assert!(entry["_total_waiting"].is_u64(), "{queue}: {entry}");
    }
    assert_eq!(all["support"], both["support"]);
    let v2_all = ewt(&app, "/genesys/2/ewt/ewt2").await;
    assert_eq!(v2_all, all);
}

#[tokio::test]
async fn bad_parameters_are_refused_by_name() {
    let app = spawn_app().await;
    let cases: &[(&str, u16, &str)] = &[
        (
            "/genesys/1/service/ewt-for-vq?name=support&aqt=urs3",
            400,
            "aqt",
        ),
        ("/genesys/2/ewt/ewt9?vq=support", 400, "mode"),
        ("/genesys/1/service/ewt-for-vq?name=nowhere", 404, "name"),
        (
            "/genesys/1/service/ewt-for-vq?name=support,nowhere",
            404,
            "name",
        ),
        ("/genesys/2/ewt/ewt2?vq=nowhere", 404, "vq"),
        ("/genesys/2/ewt?vq=nowhere", 404, "vq"),
    ];
    for (path, status, field) in cases {
        let (got, body) = app.get(path).await;
        assert_eq!(got, *status, "{path}: {body}");
        let message = body["message"].as_str().expect("message");
        assert!(message.starts_with(&format!("{field}:")), "{path}: {body}");
        assert!(body["exception"].is_string(), "{body}");
    }
}

//! Queue positions, cancelling, priority, EWT and routing order, over HTTP.

use std::time::Duration;

use engine::testing::ScenarioBuilder;
use serde_json::{json, Value};
use tests::{spawn_app, TestApp, WAIT};

/// The shipped chat-delay scenario (its keys, no texts) under another name,
/// with another `_target`.
fn chat_delay_copy(name: &str, target: &str) -> ScenarioBuilder {
    ScenarioBuilder::chat_delay()
        .name(name)
        .key("_target", target)
        .unset("_find_agent_timeout")
        .unset("_chat_parameters")
}

/// POST (empty multipart) and GET must agree; returns (position, total waiting).
async fn position(app: &TestApp, id: &str) -> (u64, u64) {
    let posted = app.queue_position(id).await;
    let (status, got) = app
        .get(&format!("/genesys/1/service/{id}/check-queue-position"))
        .await;
    assert_eq!(status, 200, "GET check-queue-position: {got}");
    assert_eq!(
        posted["_position"], got["_position"],
        "POST {posted} vs GET {got}"
    );
    assert_eq!(posted["_total_waiting"], got["_total_waiting"]);
    (
        posted["_position"].as_u64().expect("_position"),
        posted["_total_waiting"].as_u64().expect("_total_waiting"),
    )
}

async fn agent_of(app: &TestApp, id: &str) -> Value {
    let (_, body) = app.get(&format!("/api/v1/services/{id}")).await;
    body["agent"].clone()
}

async fn create_many(app: &TestApp, scenario: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(app.create(scenario, &format!("40826500{i:02}")).await);
    }
    ids
}

#[tokio::test]
async fn positions_follow_arrival_and_close_up_after_a_cancel() {
    let app = spawn_app().await;
    let ids = create_many(&app, "chat-delay", 4).await;

    for (i, id) in ids.iter().enumerate() {
        assert_eq!(position(&app, id).await, (i as u64 + 1, 4), "customer {i}");
    }
    let first = app.queue_position(&ids[0]).await;
    assert_eq!(first["_eta"], "n/a");
    assert_eq!(first["_agent_ready_threshold_passed"], true);
    assert_eq!(first["_agent_ready_threshold_passed_reason"], "eta n/a");

    // The second customer gives up.
    let (status, cancelled) = app
        .delete(&format!(
            "/genesys/1/service/callback/chat-delay/{}",
            ids[1]
        ))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(
        cancelled,
        json!({"_id": ids[1], "_callback_state": "COMPLETED", "_callback_reason": "CANCELLED"})
    );

    assert_eq!(position(&app, &ids[0]).await, (1, 3));
    assert_eq!(position(&app, &ids[2]).await, (2, 3));
    assert_eq!(position(&app, &ids[3]).await, (3, 3));

    let (status, found) = app
        .get(&format!("/genesys/1/service/callback?_id={}", ids[1]))
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found[0]["_callback_state"], "COMPLETED");
    assert_eq!(found[0]["_callback_reason"], "CANCELLED");

    // A completed service is no longer in a queue.
    let (status, answer) = app
        .post_form(
            &format!("/genesys/1/service/{}/check-queue-position", ids[1]),
            &[],
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["exception"], "INVALID_STATE");

    // Cancelling twice is a conflict.
    let (status, again) = app
        .delete(&format!(
            "/genesys/1/service/callback/chat-delay/{}",
            ids[1]
        ))
        .await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["exception"], "INVALID_STATE");
    assert!(again["message"].as_str().unwrap().contains("COMPLETED"));

    // The right id under the wrong scenario, or an unknown scenario, is not found.
    let (status, wrong) = app
        .delete(&format!(
            "/genesys/1/service/callback/chat-immediate/{}",
            ids[2]
        ))
        .await;
    assert_eq!(status, 404, "{wrong}");
    assert_eq!(wrong["exception"], "NOT_FOUND");
    let (status, wrong) = app
        .delete(&format!("/genesys/1/service/callback/no-such/{}", ids[2]))
        .await;
    assert_eq!(status, 404, "{wrong}");
    assert_eq!(app.state_of(&ids[2]).await, "QUEUED");
    assert_eq!(position(&app, &ids[2]).await, (2, 3));

    // The last one cancels too.
    let (status, _) = app
        .delete(&format!(
            "/genesys/1/service/callback/chat-delay/{}",
            ids[3]
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(position(&app, &ids[0]).await, (1, 2));
    assert_eq!(position(&app, &ids[2]).await, (2, 2));
}

#[tokio::test]
async fn a_higher_priority_scenario_jumps_the_queue_and_is_served_first() {
    let vip = chat_delay_copy("chat-delay-vip", r#"{ queue = "support", priority = 5 }"#);
    let app = TestApp::builder().with_scenario(&vip).spawn().await;
    let normal = create_many(&app, "chat-delay", 3).await;
    let vip_id = app.create("chat-delay-vip", "5550001").await;
    let later = app.create("chat-delay", "5550002").await;

    assert_eq!(position(&app, &vip_id).await, (1, 5));
    for (i, id) in normal.iter().enumerate() {
        assert_eq!(position(&app, id).await, (i as u64 + 2, 5));
    }
    assert_eq!(position(&app, &later).await, (5, 5));

    app.ready_agent("alice", &["support"], 1).await;
    app.wait_for_state(&vip_id, "ROUTING", WAIT).await;
    assert_eq!(agent_of(&app, &vip_id).await, "alice");
    for id in normal.iter().chain([&later]) {
        assert_eq!(app.state_of(id).await, "QUEUED");
    }
    assert_eq!(position(&app, &normal[0]).await, (1, 4));
}

#[tokio::test]
async fn eta_becomes_a_number_once_services_were_handled() {
    let app = spawn_app().await;
    let first = app.create("chat-delay", "1001").await;
    let second = app.create("chat-delay", "1002").await;
    assert_eq!(app.queue_position(&second).await["_eta"], "n/a");

    app.ready_agent("alice", &["support"], 1).await;
    for id in [&first, &second] {
        app.wait_for_state(id, "ROUTING", WAIT).await;
        let (status, dialog) = app
            .post_form(&format!("/genesys/1/service/{id}/connect"), &[])
            .await;
        assert_eq!(status, 200, "{dialog}");
        let (status, done) = app
            .post_json(&format!("/api/v1/services/{id}/complete"), &json!({}))
            .await;
        assert_eq!(status, 200, "{done}");
        assert_eq!(app.state_of(id).await, "COMPLETED");
    }

    // The agent is busy with a third customer, so a fourth one waits.
    let third = app.create("chat-delay", "1003").await;
    app.wait_for_state(&third, "ROUTING", WAIT).await;
    let fourth = app.create("chat-delay", "1004").await;
    let answer = app.queue_position(&fourth).await;
    assert_eq!(answer["_position"], 1, "{answer}");
    assert_eq!(answer["_total_waiting"], 1, "{answer}");
    assert!(answer["_eta"].is_u64(), "EWT from handle times: {answer}");
    assert!(answer["_agent_ready_threshold_passed"].is_boolean());
    assert!(
        answer["_agent_ready_threshold_passed_reason"]
            .as_str()
            .unwrap()
            .starts_with("eta "),
        "{answer}"
    );

    // With no agent ready the recent waits stand in.
    app.set_ready("alice", false).await;
    let answer = app.queue_position(&fourth).await;
    assert!(answer["_eta"].is_u64(), "EWT from wait times: {answer}");
}

#[tokio::test]
async fn one_agent_takes_the_oldest_waiting_customer_first() {
    let app = spawn_app().await;
    let ids = create_many(&app, "chat-delay", 3).await;
    app.ready_agent("alice", &["support"], 1).await;

    app.wait_for_state(&ids[0], "ROUTING", WAIT).await;
    assert_eq!(agent_of(&app, &ids[0]).await, "alice");
    assert_eq!(app.state_of(&ids[1]).await, "QUEUED");
    assert_eq!(app.state_of(&ids[2]).await, "QUEUED");
    assert_eq!(app.agent_services("alice").await, vec![ids[0].clone()]);
    assert_eq!(position(&app, &ids[1]).await, (1, 2));

    // The customer confirms, the agent finishes: the next oldest is next.
    let (status, _) = app
        .post_form(&format!("/genesys/1/service/{}/connect", ids[0]), &[])
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .post_json(&format!("/api/v1/services/{}/complete", ids[0]), &json!({}))
        .await;
    assert_eq!(status, 200);
    app.wait_for_state(&ids[1], "ROUTING", WAIT).await;
    assert_eq!(app.state_of(&ids[2]).await, "QUEUED");

    // Cancelling a ROUTING service frees the agent for the last one.
    let (status, _) = app
        .delete(&format!(
            "/genesys/1/service/callback/chat-delay/{}",
            ids[1]
        ))
        .await;
    assert_eq!(status, 200);
    app.wait_for_state(&ids[2], "ROUTING", WAIT).await;
    assert_eq!(app.agent_services("alice").await, vec![ids[2].clone()]);
}

#[tokio::test]
async fn no_agent_ever_holds_more_than_its_limit_and_not_ready_agents_get_nothing() {
    let app = spawn_app().await;
    // Carol serves the queue with lots of room but is not ready.
    app.put_agent("carol", &["support"], &[], 10).await;
    let ids = create_many(&app, "chat-delay", 8).await;
    app.ready_agent("alice", &["support"], 3).await;
    app.ready_agent("bob", &["support"], 2).await;

    // Wait until the five places are taken, checking the limits all along.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        check_limits(&app).await;
        let mut routing = 0;
        for id in &ids {
            if app.state_of(id).await == "ROUTING" {
                routing += 1;
            }
        }
        if routing == 5 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {routing} of 5 reserved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The five oldest were taken; the three youngest wait.
    for id in &ids[..5] {
        assert_eq!(app.state_of(id).await, "ROUTING");
    }
    for (i, id) in ids[5..].iter().enumerate() {
        assert_eq!(position(&app, id).await, (i as u64 + 1, 3));
    }
    check_limits(&app).await;
    assert_eq!(app.agent_services("alice").await.len(), 3);
    assert_eq!(app.agent_services("bob").await.len(), 2);

    // Finishing one of bob's frees exactly one place: the oldest waiting takes it.
    let bobs = app.agent_services("bob").await;
    let (status, _) = app
        .post_form(&format!("/genesys/1/service/{}/connect", bobs[0]), &[])
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .post_json(
            &format!("/api/v1/services/{}/complete", bobs[0]),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    app.wait_for_state(&ids[5], "ROUTING", WAIT).await;
    check_limits(&app).await;
    assert_eq!(app.state_of(&ids[6]).await, "QUEUED");
    assert_eq!(app.state_of(&ids[7]).await, "QUEUED");

    // Once ready, carol takes the rest.
    app.set_ready("carol", true).await;
    app.wait_for_state(&ids[6], "ROUTING", WAIT).await;
    app.wait_for_state(&ids[7], "ROUTING", WAIT).await;
    assert_eq!(agent_of(&app, &ids[6]).await, "carol");
    assert_eq!(agent_of(&app, &ids[7]).await, "carol");
    check_limits_after_carol(&app).await;
}

/// Alice holds at most 3, bob at most 2, and carol (not ready) nothing.
async fn check_limits(app: &TestApp) {
    for (agent, limit) in [("alice", 3), ("bob", 2)] {
        let held = app.agent_services(agent).await;
        assert!(held.len() <= limit, "{agent} holds {held:?}");
    }
    assert_eq!(app.agent_services("carol").await, Vec::<String>::new());
}

async fn check_limits_after_carol(app: &TestApp) {
    assert_eq!(app.agent_services("alice").await.len(), 3);
    assert_eq!(app.agent_services("bob").await.len(), 2);
    assert_eq!(app.agent_services("carol").await.len(), 2);
}

#[tokio::test]
async fn a_skill_expression_routes_only_to_matching_agents() {
    let english = chat_delay_copy(
        "chat-delay-english",
        r#"{ queue = "support", priority = 0, skills = "English >= 5" }"#,
    );
    let app = TestApp::builder().with_scenario(&english).spawn().await;
    app.put_agent("novice", &["support"], &[("English", 3), ("Spanish", 9)], 5)
        .await;
    app.set_ready("novice", true).await;

    let needs_english = app.create("chat-delay-english", "2001").await;
    // A later customer without skills is routed to the novice, so the router
    // has run since the first one arrived, and passed it over.
    let anyone = app.create("chat-delay", "2002").await;
    app.wait_for_state(&anyone, "ROUTING", WAIT).await;
    assert_eq!(agent_of(&app, &anyone).await, "novice");
    assert_eq!(app.state_of(&needs_english).await, "QUEUED");
    assert_eq!(position(&app, &needs_english).await, (1, 1));

    app.put_agent("expert", &["support"], &[("English", 7)], 1)
        .await;
    app.set_ready("expert", true).await;
    app.wait_for_state(&needs_english, "ROUTING", WAIT).await;
    assert_eq!(agent_of(&app, &needs_english).await, "expert");
    assert_eq!(app.agent_services("novice").await, vec![anyone]);
}

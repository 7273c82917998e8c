//! Every timeout path over HTTP, with short-timeout copies of chat-delay.

use std::time::Duration;

use engine::testing::ScenarioBuilder;
use serde_json::{json, Value};
use tests::{iso_utc_in, spawn_app, TestApp, WAIT};

/// A chat-delay scenario (keys, no texts) routed to `queue`, with `keys`
/// `(key, TOML value)` set; it is kept a day unless `_ttl` is set.
fn scenario(name: &str, queue: &str, keys: &[(&str, &str)]) -> ScenarioBuilder {
    ScenarioBuilder::new(name)
        .key("_target", &format!("{{ queue = {queue:?}, priority = 0 }}"))
        .key("_mandatory_fields", r#"["_customer_number"]"#)
        .keys(keys)
}

/// How many times the history shows the service entering `state` (snake_case).
fn entered(rec: &Value, state: &str) -> usize {
    rec["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|h| h["to"] == state)
        .count()
}

#[tokio::test]
async fn user_confirm_timeout_with_fail_completes_and_frees_the_agent() {
    let fail = scenario(
        "cd-fail",
        "support",
        &[
            ("_user_confirm_timeout", r#""300ms""#),
            ("_on_user_confirm_timeout", r#""fail""#),
        ],
    );
    let app = TestApp::builder().with_scenario(&fail).spawn().await;
    let id = app.create("cd-fail", "3001").await;
    app.ready_agent("alice", &["support"], 1).await;

    let done = app.wait_for_state(&id, "COMPLETED", WAIT).await;
    assert_eq!(done["_callback_reason"], "FAIL_USER_NO_CONFIRM", "{done}");
    assert_eq!(entered(&done, "wait_for_user_confirm"), 1, "{done}");
    assert_eq!(entered(&done, "connected"), 0, "{done}");
    assert_eq!(app.agent_services("alice").await, Vec::<String>::new());
    let found = app.query_by_id(&id).await;
    assert_eq!(found["_callback_state"], "COMPLETED");
    assert_eq!(found["_callback_reason"], "FAIL_USER_NO_CONFIRM");

    // A late connect is refused.
    let (status, late) = app
        .post_form(&format!("/genesys/1/service/{id}/connect"), &[])
        .await;
    assert_eq!(status, 409, "{late}");

    // The agent is free for the next customer.
    let next = app.create("chat-delay", "3002").await;
    app.wait_for_state(&next, "ROUTING", WAIT).await;
    assert_eq!(app.agent_services("alice").await, vec![next]);
}

#[tokio::test]
async fn user_confirm_timeout_with_connect_anyway_connects() {
    let anyway = scenario(
        "cd-anyway",
        "support",
        &[
            ("_user_confirm_timeout", r#""300ms""#),
            ("_on_user_confirm_timeout", r#""connect-anyway""#),
        ],
    );
    let app = TestApp::builder().with_scenario(&anyway).spawn().await;
    let id = app.create("cd-anyway", "3101").await;
    app.ready_agent("alice", &["support"], 1).await;

    let rec = app.wait_for_state(&id, "PROCESSING", WAIT).await;
    assert_eq!(rec["served_by"], "alice", "{rec}");
    assert_eq!(entered(&rec, "wait_for_user_confirm"), 1, "{rec}");
    assert_eq!(app.agent_services("alice").await, vec![id.clone()]);

    // It stays connected: the chat can start, and the agent can finish.
    let (status, chat) = app
        .post_form(
            &format!("/genesys/1/service/{id}/ixn/chat"),
            &[("firstName", "John")],
        )
        .await;
    assert_eq!(status, 200, "{chat}");
    let (status, _) = app
        .post_json(&format!("/api/v1/services/{id}/complete"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let done = app.record(&id).await;
    assert_eq!(done["_callback_reason"], "AGENT_CONNECTED");
}

#[tokio::test]
async fn user_confirm_timeout_with_requeue_keeps_the_place_then_fails_after_max_attempts() {
    let requeue = scenario(
        "cd-requeue",
        "rq",
        &[
            ("_user_confirm_timeout", r#""1s""#),
            ("_on_user_confirm_timeout", r#""requeue""#),
            ("_max_user_confirm_attempts", "3"),
        ],
    );
    let app = TestApp::builder().with_scenario(&requeue).spawn().await;
    let first = app.create("cd-requeue", "3201").await;
    app.ready_agent("alice", &["rq"], 1).await;
    app.wait_for_state(&first, "ROUTING", WAIT).await;
    // The agent steps away, so once the customer misses the confirmation the
    // service waits in the queue instead of going straight back to her.
    app.set_ready("alice", false).await;
    let second = app.create("cd-requeue", "3202").await;
    let third = app.create("cd-requeue", "3203").await;

    let queued = app.wait_for_state(&first, "QUEUED", WAIT).await;
    let attempts = queued["confirm_attempts"]
        .as_u64()
        .expect("confirm_attempts");
    assert!(
        (1..3).contains(&attempts),
        "requeued after {attempts} attempts: {queued}"
    );
    assert!(
        queued["agent"].is_null(),
        "the agent was released: {queued}"
    );
    assert_eq!(app.agent_services("alice").await, Vec::<String>::new());
    // Back in its old place, ahead of the customers who came later.
    for (i, id) in [&first, &second, &third].into_iter().enumerate() {
        let answer = app.queue_position(id).await;
        assert_eq!(answer["_position"], i + 1, "{answer}");
        assert_eq!(answer["_total_waiting"], 3, "{answer}");
    }
    let (_, pushed) = app
        .post_form(
            &format!("/genesys/1/service/{first}/retrieve-notifications"),
            &[],
        )
        .await;
    let asked = pushed
        .as_array()
        .expect("notifications")
        .iter()
        .filter(|n| n["tag"] == format!("service.agentavailable.{first}"))
        .count();
    assert_eq!(asked as u64, attempts, "{pushed}");

    // The agent comes back; the first customer never confirms.
    app.set_ready("alice", true).await;
    let done = app.wait_for_state(&first, "COMPLETED", WAIT).await;
    assert_eq!(done["_callback_reason"], "FAIL_USER_NO_CONFIRM", "{done}");
    assert_eq!(done["confirm_attempts"], 3, "{done}");
    assert_eq!(entered(&done, "wait_for_user_confirm"), 3, "{done}");
    // Only then does the next customer get the agent.
    app.wait_for_state(&second, "ROUTING", WAIT).await;
    assert_eq!(app.state_of(&third).await, "QUEUED");
}

#[tokio::test]
async fn find_agent_timeout_fails_with_target_not_found() {
    let find = scenario(
        "cd-find",
        "nobody-serves-this",
        &[("_find_agent_timeout", r#""300ms""#)],
    );
    let app = TestApp::builder().with_scenario(&find).spawn().await;
    // An agent exists, but not for this queue.
    app.ready_agent("alice", &["support"], 5).await;
    let id = app.create("cd-find", "3301").await;

    let done = app.wait_for_state(&id, "COMPLETED", WAIT).await;
    assert_eq!(done["_callback_reason"], "FAIL_TARGET_NOT_FOUND", "{done}");
    assert_eq!(entered(&done, "wait_for_user_confirm"), 0, "{done}");
    let found = app.query_by_id(&id).await;
    assert_eq!(found["_callback_reason"], "FAIL_TARGET_NOT_FOUND");
    let (_, pushed) = app
        .post_form(
            &format!("/genesys/1/service/{id}/retrieve-notifications"),
            &[],
        )
        .await;
    assert!(
        pushed
            .as_array()
            .expect("notifications")
            .iter()
            .any(|n| n["_callback_reason"] == "FAIL_TARGET_NOT_FOUND"),
        "the device is told: {pushed}"
    );
}

fn ttl_scenario() -> ScenarioBuilder {
    scenario("cd-ttl", "nobody-serves-this", &[("_ttl", r#""1s""#)])
}

/// Runs `test` against a server on its own runtime, and gives up after
/// `limit`. A timer loop that never yields would otherwise starve the test's
/// runtime and hang the whole suite instead of failing this test.
fn isolated<F, Fut>(extra: &ScenarioBuilder, limit: Duration, test: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("server runtime");
    let app = server.block_on(TestApp::builder().with_scenario(extra).spawn());
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        client.block_on(async { tokio::time::timeout(limit, test(app)).await })
    }));
    drop(client);
    // Never wait for a server thread that may be stuck.
    server.shutdown_background();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_)) => {
            panic!("no answer within {limit:?}: the server stopped answering (a busy timer loop?)")
        }
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[test]
fn ttl_expiry_of_a_queued_service_fails_with_timeout_ttl() {
    let ttl = ttl_scenario();
    isolated(&ttl, WAIT + Duration::from_secs(5), |app| async move {
        let (status, created) = app
            .post_form(
                "/genesys/1/service/callback/cd-ttl",
                &[("_customer_number", "3401"), ("_desired_time", "now")],
            )
            .await;
        assert_eq!(status, 200, "{created}");
        let id = created["_id"].as_str().unwrap().to_owned();
        assert_eq!(app.state_of(&id).await, "QUEUED");

        let done = app.wait_for_state(&id, "COMPLETED", WAIT).await;
        assert_eq!(done["_callback_reason"], "FAIL_TIMEOUT_TTL", "{done}");
        let found = app.query_by_id(&id).await;
        assert_eq!(found["_callback_reason"], "FAIL_TIMEOUT_TTL");
        // The server still answers and its timer loop still works.
        let (status, _) = app.get("/healthz").await;
        assert_eq!(status, 200);
    });
}

#[test]
fn ttl_expiry_of_a_service_scheduled_just_ahead_fails_with_timeout_ttl() {
    let ttl = ttl_scenario();
    isolated(&ttl, WAIT + Duration::from_secs(5), |app| async move {
        let desired = iso_utc_in(Duration::from_millis(500));
        let (status, created) = app
            .post_form(
                "/genesys/1/service/callback/cd-ttl",
                &[("_customer_number", "3402"), ("_desired_time", &desired)],
            )
            .await;
        assert_eq!(status, 200, "{created}");
        let id = created["_id"].as_str().unwrap().to_owned();

        let done = app.wait_for_state(&id, "COMPLETED", WAIT).await;
        assert_eq!(done["_callback_reason"], "FAIL_TIMEOUT_TTL", "{done}");
        assert_eq!(entered(&done, "wait_for_agent"), 1, "{done}");
    });
}

#[tokio::test]
async fn a_service_for_later_is_scheduled_then_queued() {
    let app = spawn_app().await;
    let desired = iso_utc_in(Duration::from_millis(1200));
    let (status, created) = app
        .post_form(
            "/genesys/1/service/callback/chat-delay",
            &[("_customer_number", "3501"), ("_desired_time", &desired)],
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["_id"].as_str().unwrap().to_owned();
    let now_queued = app.create("chat-delay", "3502").await;

    let found = app.query_by_id(&id).await;
    assert_eq!(found["_desired_time"], desired.as_str());
    // Polled quickly after create: well before the desired time on any machine
    // that answers a request in under a second.
    let rec = app.record(&id).await;
    if rec["_callback_state"] == "SCHEDULED" {
        let answer = app.queue_position(&id).await;
        assert_eq!(answer["_position"], 0, "{answer}");
        assert_eq!(answer["_agent_ready_threshold_passed"], false, "{answer}");
        assert_eq!(
            answer["_agent_ready_threshold_passed_reason"],
            "service is SCHEDULED"
        );
        assert_eq!(app.queue_position(&now_queued).await["_total_waiting"], 1);
    }

    let queued = app.wait_for_state(&id, "QUEUED", WAIT).await;
    let history = queued["history"].as_array().unwrap();
    assert_eq!(history[0]["to"], "scheduled", "{queued}");
    assert_eq!(history[1]["from"], "scheduled", "{queued}");
    assert_eq!(history[1]["to"], "wait_for_agent", "{queued}");
    assert_eq!(history[1]["event"], "desired_time_reached", "{queued}");
    // It queues behind the customer who asked for "now" earlier.
    let answer = app.queue_position(&id).await;
    assert_eq!(answer["_position"], 2, "{answer}");
    assert_eq!(answer["_total_waiting"], 2, "{answer}");
}

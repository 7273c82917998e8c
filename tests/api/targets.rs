//! `_target` in URS form over HTTP, on the memory store: a waiting service
//! widens to its next target after a timeout (or moves on to it, with
//! `clear`), a target whose stat condition holds is skipped, and
//! `_urs_virtual_queue` counts services of several scenarios as one queue.

use std::time::Duration;

use engine::testing::ScenarioBuilder;
use serde_json::Value;
use tests::TestApp;

/// Waits for a customer confirmation, so a reserved service stays ROUTING
/// with its agent named.
fn routed(name: &str, target: &str) -> ScenarioBuilder {
    ScenarioBuilder::new(name)
        .unset("_target")
        .key("_target", target)
}

/// The events of the service's history, in order.
fn events(record: &Value) -> Vec<String> {
    record["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap().to_owned())
        .collect()
}

async fn reserved_for(app: &TestApp, id: &str) -> Value {
    app.wait_for_record(id, "an agent is reserved", |r| {
        r["_callback_state"] == "ROUTING"
    })
    .await
}

async fn at_target(app: &TestApp, id: &str, step: u64) -> Value {
    app.wait_for_record(id, &format!("target {}", step + 1), |r| {
        r["ticket"]["route"]["step"] == step
    })
    .await
}

#[tokio::test]
async fn after_its_timeout_a_service_widens_to_the_next_target() {
    // The seed's JSON list, quoted numbers and all.
    let scenario = routed(
        "widen",
        r#"'[{"target": "Billing@StatServer.GA", "timeout": "1", "clear": false}, {"target": "?:Loans>=2@StatServer.GA"}]'"#,
    );
    let app = TestApp::builder().with_scenario(&scenario).spawn().await;
    // Sally has the skill but does not serve Billing: only the wider
    // target reaches her.
    app.put_agent("sally", &["Sales"], &[("Loans", 3)], 1).await;
    app.set_ready("sally", true).await;
    let id = app.create("widen", "5550101").await;
    let rec = app.record(&id).await;
    assert_eq!(rec["_callback_state"], "QUEUED");
    assert_eq!(
        rec["ticket"]["queue"], "Billing",
        "counted under the first group"
    );
    let position = app.queue_position(&id).await;
    assert_eq!(position["_position"], 1, "{position}");

    let rec = reserved_for(&app, &id).await;
    assert_eq!(rec["agent"], "sally");
    assert_eq!(
        events(&rec),
        [
            "created",
            "desired_time_reached",
            "target_timeout",
            "agent_reserved"
        ],
        "{rec}"
    );
    // Widened, not replaced: Billing is still among its targets.
    let any: Vec<&Value> = rec["ticket"]["route"]["any"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(any.len(), 2, "{rec}");
    assert_eq!(
        rec["ticket"]["since"], rec["created_at"],
        "it kept its place"
    );
}

#[tokio::test]
async fn a_clearing_target_is_replaced_by_the_next() {
    let scenario = routed(
        "clear",
        r#"[{ target = "Billing@StatServer.GA", timeout = 1, clear = true }, { target = "carol@StatServer.A" }]"#,
    );
    let app = TestApp::builder().with_scenario(&scenario).spawn().await;
    app.put_agent("carol", &["Sales"], &[], 1).await;
    app.put_agent("bill", &["Billing"], &[], 1).await;
    let id = app.create("clear", "5550102").await;
    at_target(&app, &id, 1).await;
    // Billing's agent is ready now, but Billing was cleared away.
    app.set_ready("bill", true).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(app.state_of(&id).await, "QUEUED");
    app.set_ready("carol", true).await;
    let rec = reserved_for(&app, &id).await;
    assert_eq!(rec["agent"], "carol");
}

#[tokio::test]
async fn a_target_whose_condition_holds_is_skipped_without_its_timeout() {
    // The Loans target is skipped when none of its agents is ready; its
    // timeout (an hour) is never waited for.
    let scenario = routed(
        "skip",
        r#"[{ target = "Billing@StatServer.GA", timeout = 1 }, { target = "?:Loans>=2@StatServer.GA", timeout = 3600, clear = true, stat_to_check = "RStatAgentsReady", stat_operator = "<", stat_value = "1" }, { target = "carol@StatServer.A" }]"#,
    );
    let app = TestApp::builder().with_scenario(&scenario).spawn().await;
    app.put_agent("sally", &["Sales"], &[("Loans", 3)], 1).await;
    app.put_agent("carol", &["Sales"], &[], 1).await;
    app.set_ready("carol", true).await;
    let id = app.create("skip", "5550103").await;
    let rec = reserved_for(&app, &id).await;
    assert_eq!(rec["agent"], "carol");
    assert_eq!(
        events(&rec),
        [
            "created",
            "desired_time_reached",
            "target_timeout",
            "target_skipped",
            "agent_reserved"
        ],
        "{rec}"
    );
    assert_eq!(rec["ticket"]["route"]["skipped"], serde_json::json!([1]));
    let skipped = &rec["history"][3];
    assert_eq!(skipped["by"], "router", "{rec}");

    // With a Loans agent ready, the same target is not skipped.
    app.set_ready("carol", false).await;
    app.set_ready("sally", true).await;
    let id = app.create("skip", "5550104").await;
    let rec = reserved_for(&app, &id).await;
    assert_eq!(rec["agent"], "sally");
    assert!(
        !events(&rec).contains(&"target_skipped".to_owned()),
        "{rec}"
    );
}

#[tokio::test]
async fn a_target_is_skipped_while_no_agent_at_all_is_ready() {
    // Nobody is ready anywhere, so nothing can be planned; the condition
    // still moves the service on, to a target it then waits on.
    let scenario = routed(
        "idle",
        r#"[{ target = "?:Loans>=2@StatServer.GA", timeout = 3600, clear = true, stat_to_check = "RStatAgentsReady", stat_operator = "<", stat_value = "1" }, { target = "Billing@StatServer.GA" }]"#,
    );
    let app = TestApp::builder().with_scenario(&scenario).spawn().await;
    app.put_agent("sally", &["Sales"], &[("Loans", 3)], 1).await;
    app.put_agent("bill", &["Billing"], &[], 1).await;
    let id = app.create("idle", "5550105").await;
    let rec = at_target(&app, &id, 1).await;
    assert_eq!(rec["_callback_state"], "QUEUED", "{rec}");
    assert_eq!(rec["ticket"]["route"]["skipped"], serde_json::json!([0]));
    // The service waits on Billing: the first of its agents to be ready
    // takes it.
    app.set_ready("bill", true).await;
    let rec = reserved_for(&app, &id).await;
    assert_eq!(rec["agent"], "bill");
}

#[tokio::test]
async fn a_virtual_queue_counts_the_services_of_several_scenarios() {
    let sales =
        routed("sales", r#""Sales@StatServer.GA""#).key("_urs_virtual_queue", r#""shared_vq""#);
    let support = ScenarioBuilder::new("support-vq").key("_urs_virtual_queue", r#""shared_vq""#);
    let app = TestApp::builder()
        .with_scenario(&sales)
        .with_scenario(&support)
        .spawn()
        .await;
    let first = app.create("sales", "5550105").await;
    let second = app.create("support-vq", "5550106").await;
    let position = app.queue_position(&second).await;
    assert_eq!(position["_position"], 2, "{position}");
    assert_eq!(position["_total_waiting"], 2, "{position}");
    // Each goes to its own target's agents: support's agent takes the
    // second, though the first is older.
    app.ready_agent("sue", &["support"], 1).await;
    let rec = reserved_for(&app, &second).await;
    assert_eq!(rec["agent"], "sue");
    assert_eq!(app.state_of(&first).await, "QUEUED");
    // GMS's EWT API knows the virtual queue by its name.
    let (status, body) = app.get("/genesys/2/ewt?vq=shared_vq").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.get("/genesys/2/ewt?vq=sales").await;
    assert_eq!(status, 404, "a scenario's name is not its queue: {body}");
}

#[test]
fn a_bad_target_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    routed(
        "bad",
        r#"'[{"target": "Billing@StatServer.GA", "timeout": "soon"}]'"#,
    )
    .write_to(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callbackd-node"))
        .args(["--listen", "127.0.0.1:0", "--scenarios"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("_target"), "{stderr}");
    assert!(
        stderr.contains("target 1: timeout `soon` is not a whole number"),
        "{stderr}"
    );
}

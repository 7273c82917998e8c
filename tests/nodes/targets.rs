//! URS targets with two nodes on one Redis: the widening timer fires once,
//! a skip is made once (the other node's router loses the race), and the
//! agent the wider target names takes the service, whichever node it
//! talks to.

use engine::testing::ScenarioBuilder;
use redis_store::testing::RedisServer;
use serde_json::Value;

use crate::support::Site;

fn scenario() -> ScenarioBuilder {
    ScenarioBuilder::new("urs").unset("_target").key(
        "_target",
        r#"'[{"target": "Billing@StatServer.GA", "timeout": "1", "clear": false}, {"target": "?:Loans>=2@StatServer.GA", "timeout": "3600", "clear": true, "stat_to_check": "RStatAgentsReady", "stat_operator": "<", "stat_value": "1"}, {"target": "carol@StatServer.A"}]'"#,
    )
}

fn count(record: &Value, event: &str) -> usize {
    record["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"] == event)
        .count()
}

#[tokio::test]
async fn widening_and_skipping_happen_once_across_two_nodes() {
    let site = Site::start_with(2, RedisServer::start(), &[scenario()]).await;
    let (a, b) = (&site.nodes[0].app, &site.nodes[1].app);
    b.put_agent("sally", &["Sales"], &[("Loans", 3)], 1).await;
    b.put_agent("carol", &["Sales"], &[], 1).await;
    b.set_ready("sally", true).await;

    // Widened after a second: Sally, on the skill target, takes it.
    let id = a.create("urs", "5550201").await;
    assert_eq!(b.record(&id).await["ticket"]["queue"], "Billing");
    let rec = b
        .wait_for_record(&id, "an agent is reserved", |r| {
            r["_callback_state"] == "ROUTING"
        })
        .await;
    assert_eq!(rec["agent"], "sally", "{}", site.logs());
    assert_eq!(count(&rec, "target_timeout"), 1, "{rec}");
    assert_eq!(count(&rec, "target_skipped"), 0, "{rec}");

    // Nobody with the skill can take it now (Sally is at her limit): the
    // skill target is skipped, once, and Carol takes it.
    b.set_ready("carol", true).await;
    let id = b.create("urs", "5550202").await;
    let rec = a
        .wait_for_record(&id, "an agent is reserved", |r| {
            r["_callback_state"] == "ROUTING"
        })
        .await;
    assert_eq!(rec["agent"], "carol", "{}", site.logs());
    assert_eq!(count(&rec, "target_timeout"), 1, "{rec}");
    assert_eq!(count(&rec, "target_skipped"), 1, "{rec}");
    assert_eq!(rec["ticket"]["route"]["step"], 2, "{rec}");
}

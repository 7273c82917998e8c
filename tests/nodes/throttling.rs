//! Two nodes on one Redis: GMS's throttles, the in-queue check and
//! idempotent creates hold for the pair together, under races.

use engine::testing::ScenarioBuilder;
use futures_util::future::join_all;
use redis_store::testing::RedisServer;
use serde_json::Value;
use tests::TestApp;

use crate::support::*;

/// A chat scenario on a queue nobody serves, with these keys.
fn scenario(name: &str, keys: &[(&str, &str)]) -> ScenarioBuilder {
    ScenarioBuilder::new(name)
        .unset("_wait_for_user_confirm")
        .key("_ttl", "3600")
        .key("_target", r#"{ queue = "nobody" }"#)
        .keys(keys)
}

async fn site() -> Site {
    Site::start_with(
        2,
        RedisServer::start(),
        &[
            scenario("quota", &[("_throttle_customer_number_limit", "10")]),
            scenario("strict", &[("_enable_in_queue_checking", r#""strict""#)]),
        ],
    )
    .await
}

async fn create(app: &TestApp, scenario: &str, number: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url(&format!("/genesys/1/service/callback/{scenario}")))
        .multipart(tests::multipart(&[("_customer_number", number)]));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// `n` creates for one number at once, half on each node.
async fn race(lb: &Balancer, scenario: &str, n: usize) -> Vec<(u16, Value)> {
    join_all((0..n).map(|i| create(lb.app(i), scenario, "5550900", None))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_per_number_quota_of_ten_lets_through_ten_of_200_across_two_nodes() {
    let site = site().await;
    let lb = site.balancer();
    let answers = race(&lb, "quota", 200).await;
    let passed = answers.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(passed, 10, "{}", site.logs());
    assert_eq!(refused.len(), 190, "{answers:?}");
    assert!(refused
        .iter()
        .all(|(_, b)| b["message"] == "_customer_number: more than 10 callbacks in 24 h"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_in_queue_check_holds_when_two_nodes_race() {
    let site = site().await;
    let lb = site.balancer();
    let answers = race(&lb, "strict", 40).await;
    let passed = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(passed, 1, "{answers:?}");
    assert!(answers
        .iter()
        .all(|(s, b)| *s == 200 || (*s == 409 && b["exception"] == "ALREADY_IN_QUEUE")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotency_key_retried_on_the_other_node_answers_the_same_id() {
    let site = site().await;
    let lb = site.balancer();
    let (status, first) = create(lb.app(0), "quota", "5550901", Some("retry-me")).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = create(lb.app(1), "quota", "5550901", Some("retry-me")).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["_id"], first["_id"]);
    let (_, found) = lb
        .app(1)
        .get("/genesys/1/service/callback/quota?_customer_number=5550901")
        .await;
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");

    // Racing duplicates of one key: one create, the rest answered the same
    // or told it is in progress.
    let answers =
        join_all((0..20).map(|i| create(lb.app(i), "quota", "5550902", Some("racing-key")))).await;
    let ids: std::collections::BTreeSet<_> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b["_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert!(answers.iter().all(|(s, b)| *s == 200
        || (*s == 409
            && b["message"]
                .as_str()
                .unwrap()
                .starts_with("Idempotency-Key"))));
}

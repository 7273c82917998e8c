//! Minted agent keys on two nodes sharing one Redis: a key minted through
//! one node works on the other, and once revoked it is refused by both at
//! once (every request reads the key's entry; nothing is cached).

use redis_store::testing::RedisServer;
use serde_json::{json, Value};
use tests::node::Node;

use crate::support::NODE_BIN;

#[tokio::test]
async fn a_revoked_key_is_refused_on_every_node_at_once() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let hash = access::hash_secret("root-secret-123");
    let auth = dir.path().join("auth.toml");
    std::fs::write(
        &auth,
        format!("[[credential]]\nname = \"root\"\nrole = \"admin\"\nsecret_hash = \"{hash}\"\n"),
    )
    .unwrap();
    let scenarios = tests::shipped_scenarios_dir();
    let env = [("CALLBACKD_AUTH", auth.to_str().unwrap())];
    let a = Node::start_with_env(NODE_BIN, "a", &redis.url, &scenarios, dir.path(), &env).await;
    let b = Node::start_with_env(NODE_BIN, "b", &redis.url, &scenarios, dir.path(), &env).await;
    let client = reqwest::Client::new();
    let minted: Value = client
        .post(a.app.url("/api/v1/agents/ann/keys"))
        .basic_auth("root", Some("root-secret-123"))
        .json(&json!({"name": "desk"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = minted["key"].as_str().expect("a key").to_owned();
    let ready = |node: &Node| {
        client
            .post(node.app.url("/api/v1/agents/ann/not-ready"))
            .header("x-api-key", key.clone())
            .send()
    };
    // Accepted on both (ann has no profile: 404 after the credential passed).
    for node in [&a, &b] {
        assert_eq!(
            ready(node).await.unwrap().status(),
            404,
            "node {}",
            node.name
        );
    }
    let revoked = client
        .delete(b.app.url("/api/v1/agents/ann/keys/desk"))
        .basic_auth("root", Some("root-secret-123"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    for node in [&a, &b] {
        assert_eq!(
            ready(node).await.unwrap().status(),
            401,
            "node {}",
            node.name
        );
    }
}

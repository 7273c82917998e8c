//! The plain WebSocket `/api/v1/push/ws`, for clients without a CometD
//! library: say who you are in the URL, get a hello naming your channels,
//! then one `{"channel", "tag", "data"}` frame per notification.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use tests::{spawn_app, TestApp};
use tokio::time::Instant;

use crate::client::{
    confirm, create_for, internal_notification, open_socket, refusal, PlainWs, WAIT,
};

fn channels(hello: &Value) -> BTreeSet<String> {
    hello["data"]["channels"]
        .as_array()
        .unwrap_or_else(|| panic!("channels in {hello}"))
        .iter()
        .map(|c| c.as_str().expect("a channel").to_owned())
        .collect()
}

#[tokio::test]
async fn the_first_frame_names_the_client_and_its_channels() {
    let app = spawn_app().await;
    let cases: [(&str, &[&str]); 3] = [
        ("gms_user=device-1", &["/_genesys"]),
        ("agent_id=alice", &["/agents/alice"]),
        (
            "gms_user=device-1&agent_id=alice",
            &["/_genesys", "/agents/alice"],
        ),
    ];
    let mut ids = BTreeSet::new();
    for (query, expected) in cases {
        let (_ws, hello) = PlainWs::open(&app, query).await;
        assert_eq!(hello["channel"], "/meta/connected", "{query}: {hello}");
        let mut keys: Vec<&String> = hello["data"].as_object().expect("data").keys().collect();
        keys.sort();
        assert_eq!(keys, ["channels", "clientId"], "{query}: {hello}");
        let id = hello["data"]["clientId"].as_str().expect("clientId");
        assert!(!id.is_empty());
        ids.insert(id.to_owned());
        let expected: BTreeSet<String> = expected.iter().map(|c| c.to_string()).collect();
        assert_eq!(channels(&hello), expected, "{query}");
    }
    assert_eq!(ids.len(), 3, "every socket is a client of its own");
}

#[tokio::test]
async fn notifications_arrive_one_frame_each_with_channel_tag_and_data() {
    let app = spawn_app().await;
    let (mut device, _) = PlainWs::open(&app, "gms_user=device-1").await;
    let (mut agent, _) = PlainWs::open(&app, "agent_id=alice").await;
    let id = create_for(&app, "chat-delay", "device-1").await;
    app.ready_agent("alice", &["support"], 1).await;

    let tag = format!("service.agentavailable.{id}");
    let available = device
        .wait_for("agent-available", |f| f["tag"] == tag)
        .await;
    let mut keys: Vec<&String> = available.as_object().expect("a frame").keys().collect();
    keys.sort();
    assert_eq!(keys, ["channel", "data", "tag"], "{available}");
    assert_eq!(available["channel"], "/_genesys");
    // The data is what a Bayeux client gets, the seed's shape.
    assert_eq!(
        available["data"]["message"],
        json!({"_action": "get-dialog-user-confirmation-provide_code-false", "_id": id})
    );
    assert_eq!(available["data"]["tag"], tag.as_str());

    confirm(&app, &id).await;
    let tag = format!("agent.offer.{id}");
    let offer = agent.wait_for("offer", |f| f["tag"] == tag).await;
    assert_eq!(offer["channel"], "/agents/alice");
    assert_eq!(offer["data"]["tag"], tag.as_str());
    assert!(offer["data"]["message"].is_string(), "{offer}");

    internal_notification(&app, &id, "plain and simple").await;
    let tag = format!("service.internal.{id}");
    let note = device
        .wait_for("internal notification", |f| f["tag"] == tag)
        .await;
    assert_eq!(
        note,
        json!({
            "channel": "/_genesys",
            "tag": tag,
            "data": {"_internal_message": "", "_id": id, "_display_message": "plain and simple"},
        })
    );
    // The agent's socket only carries the agent's channel.
    assert!(
        agent.log.iter().all(|f| f["channel"] == "/agents/alice"),
        "{:#?}",
        agent.log
    );
}

#[tokio::test]
async fn without_an_owner_the_upgrade_is_refused_with_400() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/push/ws",
        "/api/v1/push/ws?gms_user=",
        "/api/v1/push/ws?agent_id=%20",
    ] {
        let (status, body) = refusal(open_socket(&app, path).await);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("gms_user")),
            "{path}: {body}"
        );
    }
}

/// A full node says so before the upgrade, and takes clients again once
/// one has gone.
#[tokio::test]
async fn a_full_node_refuses_the_upgrade_with_503_until_a_client_leaves() {
    let app = TestApp::builder()
        .push_limits(push::Limits {
            max_clients: 1,
            ..push::Limits::default()
        })
        .spawn()
        .await;
    let (first, _) = PlainWs::open(&app, "gms_user=device-1").await;
    let (status, body) = refusal(open_socket(&app, "/api/v1/push/ws?gms_user=device-2").await);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["exception"], "TOO_MANY_CLIENTS", "{body}");

    drop(first);
    // The server notices the closed socket on its own time.
    let deadline = Instant::now() + WAIT;
    loop {
        match open_socket(&app, "/api/v1/push/ws?gms_user=device-2").await {
            Ok(_) => break,
            Err(e) => {
                let (status, body) = refusal(Err(e));
                assert_eq!(status, 503, "{body}");
                assert!(
                    Instant::now() < deadline,
                    "the slot was not freed when the first socket closed"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

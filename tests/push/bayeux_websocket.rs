//! Bayeux over the `websocket` transport (GET upgrade on `/genesys/cometd`):
//! the same protocol, but a message goes out the moment it exists, without
//! waiting for the held `/meta/connect` to answer.

use std::time::Duration;

use serde_json::json;
use tests::{spawn_app, TestApp};
use tokio::time::Instant;

use crate::client::{
    confirm, create_for, create_scheduled, error_of, internal_notification, is_internal, is_state,
    BayeuxWs, Who,
};

#[tokio::test]
async fn the_seed_flow_reaches_a_websocket_client() {
    let app = spawn_app().await;
    let mut ws = BayeuxWs::new(&app, Who::Query("device-1".into())).await;
    let reply = ws.handshake().await;
    assert_eq!(reply["successful"], true, "{reply}");
    assert!(
        reply["supportedConnectionTypes"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("websocket"))),
        "{reply}"
    );
    ws.send(vec![json!({
        "channel": "/meta/connect",
        "connectionType": "websocket",
        "advice": {"timeout": 0},
    })])
    .await;
    let reply = ws.reply("/meta/connect").await;
    assert_eq!(reply["successful"], true, "{reply}");
    ws.send(vec![
        json!({"channel": "/meta/subscribe", "subscription": "/_genesys"}),
    ])
    .await;
    let reply = ws.reply("/meta/subscribe").await;
    assert_eq!(reply["successful"], true, "{reply}");
    // As CometD does: a connect that stays held, as the heartbeat.
    ws.held_connect().await;

    let id = create_for(&app, "chat-delay", "device-1").await;
    ws.wait_for("QUEUED", |m| is_state(m, &id, "QUEUED")).await;
    app.ready_agent("alice", &["support"], 1).await;
    ws.wait_for("ROUTING", |m| is_state(m, &id, "ROUTING"))
        .await;
    let tag = format!("service.agentavailable.{id}");
    let m = ws
        .wait_for("agent-available", |m| m["data"]["tag"] == tag)
        .await;
    assert_eq!(m["channel"], "/_genesys");
    assert_eq!(
        m["data"]["message"],
        json!({"_action": "get-dialog-user-confirmation-provide_code-false", "_id": id})
    );
    assert!(m["data"]["id"].is_string(), "{m}");
    confirm(&app, &id).await;
    ws.wait_for("PROCESSING", |m| is_state(m, &id, "PROCESSING"))
        .await;
    internal_notification(&app, &id, "over the socket").await;
    ws.wait_for("internal notification", |m| {
        is_internal(m, "over the socket")
    })
    .await;
}

/// Over a WebSocket the held connect is only a heartbeat: a message must not
/// wait for it to answer (that would be long-polling over a socket).
#[tokio::test]
async fn messages_arrive_while_a_connect_is_held() {
    let connect_timeout = Duration::from_millis(1500);
    let app = TestApp::builder()
        .push_limits(push::Limits {
            connect_timeout,
            ..push::Limits::default()
        })
        .spawn()
        .await;
    let mut ws = BayeuxWs::open(&app, Who::Ext("device-1".into()), "/_genesys").await;
    let id = create_scheduled(&app, "device-1").await;
    ws.wait_for("SCHEDULED", |m| is_state(m, &id, "SCHEDULED"))
        .await;

    ws.held_connect().await;
    let held_since = Instant::now();
    internal_notification(&app, &id, "while held").await;
    ws.wait_for("the message", |m| is_internal(m, "while held"))
        .await;
    assert!(
        ws.pending_replies().is_empty(),
        "the message came with a connect reply, as if long-polling: {:?}",
        ws.pending_replies()
    );
    // The connect is still held, and answers at its timeout.
    let reply = ws.reply("/meta/connect").await;
    assert_eq!(reply["successful"], true, "{reply}");
    assert!(
        held_since.elapsed() >= connect_timeout - Duration::from_millis(100),
        "the held connect answered after {:?}",
        held_since.elapsed()
    );
    // Messages keep coming on the same socket after the heartbeat.
    ws.held_connect().await;
    internal_notification(&app, &id, "after the heartbeat").await;
    ws.wait_for("the second message", |m| {
        is_internal(m, "after the heartbeat")
    })
    .await;
}

#[tokio::test]
async fn the_owner_and_channel_rules_hold_over_websocket() {
    let app = spawn_app().await;
    let mut nobody = BayeuxWs::new(&app, Who::Nobody).await;
    let reply = nobody.handshake().await;
    assert_eq!(reply["successful"], false, "{reply}");
    assert!(error_of(&reply).starts_with("403::"), "{reply}");

    let mut alice = BayeuxWs::open(&app, Who::AgentQuery("alice".into()), "/agents/alice").await;
    for channel in ["/agents/bob", "/_genesys"] {
        alice
            .send(vec![
                json!({"channel": "/meta/subscribe", "subscription": channel}),
            ])
            .await;
        let reply = alice.reply("/meta/subscribe").await;
        assert_eq!(reply["successful"], false, "{channel}: {reply}");
        assert!(
            error_of(&reply).starts_with(&format!("403:{channel}:")),
            "{channel}: {reply}"
        );
    }
    alice
        .send(vec![
            json!({"channel": "/agents/alice", "data": {"text": "hi"}}),
        ])
        .await;
    let reply = alice.reply("/agents/alice").await;
    assert_eq!(reply["successful"], false, "{reply}");
    assert!(
        error_of(&reply).starts_with("403:/agents/alice:"),
        "{reply}"
    );
}

#[tokio::test]
async fn a_disconnect_over_websocket_ends_the_client() {
    let app = spawn_app().await;
    let mut ws = BayeuxWs::open(&app, Who::Query("device-1".into()), "/_genesys").await;
    let client_id = ws.client_id.clone().expect("client id");
    ws.send(vec![json!({"channel": "/meta/disconnect"})]).await;
    let reply = ws.reply("/meta/disconnect").await;
    assert_eq!(reply["successful"], true, "{reply}");
    // The id is gone: a connect with it is told to handshake again.
    ws.held_connect().await;
    let reply = ws.reply("/meta/connect").await;
    assert_eq!(reply["successful"], false, "{reply}");
    assert!(
        error_of(&reply).starts_with(&format!("402:{client_id}:")),
        "{reply}"
    );
    assert_eq!(reply["advice"]["reconnect"], "handshake");
}

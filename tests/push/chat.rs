//! The chat over push: what one side says or does (joins, writes, types,
//! leaves) reaches the other side's channel. The device listens with
//! long-polling, the agent desktop over the Bayeux WebSocket, so both
//! transports carry chat.

use serde_json::{json, Value};
use tests::spawn_app;

use crate::client::{
    agent_message, confirm, create_for, customer, outbox_tags, BayeuxWs, LongPoll, Who,
};

/// A device chat delivery of this type from this side.
fn chat_from(m: &Value, kind: &str, from: &str) -> bool {
    m["channel"] == "/_genesys" && m["data"]["type"] == kind && m["data"]["from"] == from
}

/// An agent-channel chat delivery (kept: its message is JSON text).
fn agent_chat(m: &Value, id: &str, kind: &str) -> bool {
    m["data"]["tag"] == format!("agent.chat.{id}")
        && m["data"]["message"]
            .as_str()
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .is_some_and(|msg| msg["type"] == kind)
}

#[tokio::test]
async fn chat_messages_typing_joined_and_left_reach_the_other_side() {
    let app = spawn_app().await;
    let mut device = LongPoll::device(&app, "device-1").await;
    let mut agent = BayeuxWs::open(&app, Who::AgentExt("alice".into()), "/agents/alice").await;
    let id = create_for(&app, "chat-delay", "device-1").await;
    app.ready_agent("alice", &["support"], 1).await;
    let tag = format!("service.agentavailable.{id}");
    device
        .wait_for("agent-available", |m| m["data"]["tag"] == tag)
        .await;
    confirm(&app, &id).await;
    let offer_tag = format!("agent.offer.{id}");
    agent
        .wait_for("offer", |m| m["data"]["tag"] == offer_tag)
        .await;

    // The customer opens the chat: the agent hears the customer joined, the
    // device hears the agent joined.
    customer(&app, &id, "ixn/chat", &[("nickname", "Bob")]).await;
    let joined = agent
        .wait_for("customer joined", |m| agent_chat(m, &id, "Notice.Joined"))
        .await;
    assert_eq!(joined["channel"], "/agents/alice");
    assert_eq!(
        agent_message(&joined),
        json!({"_id": id, "index": 1, "type": "Notice.Joined", "from": "CLIENT",
               "nickname": "Bob", "text": "has joined the session"})
    );
    let joined = device
        .wait_for("agent joined", |m| chat_from(m, "Notice.Joined", "AGENT"))
        .await;
    assert_eq!(
        joined["data"],
        json!({"_id": id, "index": 2, "type": "Notice.Joined", "from": "AGENT",
               "nickname": "alice", "text": "has joined the session"})
    );

    // Messages, both ways.
    customer(
        &app,
        &id,
        "ixn/chat/send",
        &[("message", "where is my order?")],
    )
    .await;
    let said = agent
        .wait_for("customer message", |m| agent_chat(m, &id, "Message.Text"))
        .await;
    assert_eq!(
        agent_message(&said),
        json!({"_id": id, "index": 3, "type": "Message.Text", "from": "CLIENT",
               "nickname": "Bob", "text": "where is my order?"})
    );
    let (status, body) = app
        .post_json(
            &format!("/api/v1/services/{id}/chat"),
            &json!({"text": "on its way"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let said = device
        .wait_for("agent message", |m| chat_from(m, "Message.Text", "AGENT"))
        .await;
    assert_eq!(
        said["data"],
        json!({"_id": id, "index": 4, "type": "Message.Text", "from": "AGENT",
               "nickname": "alice", "text": "on its way"})
    );

    // Typing, both ways: told at once, with the typing object as the data.
    customer(&app, &id, "ixn/chat/startTyping", &[]).await;
    let typing = agent
        .wait_for("customer typing", |m| {
            m["data"]["type"] == "Notice.TypingStarted"
        })
        .await;
    assert_eq!(typing["channel"], "/agents/alice");
    // Not kept, so not wrapped as `{message: <JSON text>, tag}`: the data is
    // the typing notice itself.
    assert!(typing["data"].get("message").is_none(), "{typing}");
    assert_eq!(typing["data"]["_id"], id.as_str());
    assert_eq!(typing["data"]["from"], "CLIENT");
    assert_eq!(typing["data"]["nickname"], "Bob");
    customer(&app, &id, "ixn/chat/stopTyping", &[]).await;
    agent
        .wait_for("customer stopped typing", |m| {
            m["data"]["type"] == "Notice.TypingStopped"
        })
        .await;

    for (typing, kind) in [
        (true, "Notice.TypingStarted"),
        (false, "Notice.TypingStopped"),
    ] {
        let (status, body) = app
            .post_json(
                &format!("/api/v1/services/{id}/chat/typing"),
                &json!({"typing": typing}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let m = device.wait_for(kind, |m| chat_from(m, kind, "AGENT")).await;
        assert_eq!(m["data"]["_id"], id.as_str());
        assert_eq!(m["data"]["nickname"], "alice");
    }

    // The customer leaves: the agent hears it, and the device hears the end.
    customer(&app, &id, "ixn/chat/disconnect", &[]).await;
    let left = agent
        .wait_for("customer left", |m| agent_chat(m, &id, "Notice.Left"))
        .await;
    assert_eq!(agent_message(&left)["from"], "CLIENT");
    assert_eq!(agent_message(&left)["nickname"], "Bob");
    let done = device
        .wait_for("completion", |m| m["data"]["_action"] == "completed")
        .await;
    assert_eq!(
        done["data"],
        json!({"_id": id, "_action": "completed", "_callback_state": "COMPLETED",
               "_callback_reason": "AGENT_CONNECTED"})
    );

    // Typing is told, never kept.
    let rec = app.record(&id).await;
    for outbox in ["outbox", "agent_outbox"] {
        let tags = outbox_tags(&rec, outbox);
        assert!(tags.iter().all(|t| !t.contains("typing")), "{tags:?}");
    }
}

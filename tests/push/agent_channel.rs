//! The agent desktop's channel `/agents/<agent_id>`: the offer, the
//! customer's chat and the device's notifications reach the agent that
//! handles the service, and no other agent can listen in.

use serde_json::json;
use tests::spawn_app;

use crate::client::{
    agent_message, agent_notification, confirm, create_for, customer, error_of, LongPoll, Who,
};

#[tokio::test]
async fn the_agent_hears_the_offer_the_customers_chat_and_the_devices_notification() {
    let app = spawn_app().await;
    let mut agent = LongPoll::open(&app, Who::AgentQuery("alice".into()), "/agents/alice").await;
    let id = create_for(&app, "chat-delay", "device-1").await;
    app.ready_agent("alice", &["support"], 1).await;
    app.wait_for_state(&id, "ROUTING", crate::client::WAIT)
        .await;
    confirm(&app, &id).await;

    let tag = format!("agent.offer.{id}");
    let offer = agent.wait_for("offer", |m| m["data"]["tag"] == tag).await;
    assert_eq!(offer["channel"], "/agents/alice");
    // Kept notifications reach the desktop as GMS's retrieve-agent-notifications
    // has them: the message as JSON text, and its tag.
    let mut keys: Vec<&String> = offer["data"].as_object().expect("data").keys().collect();
    keys.sort();
    assert_eq!(keys, ["message", "tag"], "{offer}");
    let message = agent_message(&offer);
    assert_eq!(message["_id"], id.as_str());
    assert_eq!(message["_action"], "offer");
    assert_eq!(message["_service_name"], "chat-delay");
    assert_eq!(message["_customer_number"], "5551234");
    assert_eq!(message["_media_type"], "chat");

    customer(&app, &id, "ixn/chat", &[("nickname", "Bob")]).await;
    customer(&app, &id, "ixn/chat/send", &[("message", "hello?")]).await;
    let tag = format!("agent.chat.{id}");
    let said = agent
        .wait_for("customer message", |m| {
            m["data"]["tag"] == tag && agent_message(m)["type"] == "Message.Text"
        })
        .await;
    assert_eq!(agent_message(&said)["text"], "hello?");
    assert_eq!(agent_message(&said)["from"], "CLIENT");

    agent_notification(&app, &id, "please call me back").await;
    let tag = format!("agent.message.{id}");
    let note = agent
        .wait_for("agent-notification", |m| m["data"]["tag"] == tag)
        .await;
    assert_eq!(note["channel"], "/agents/alice");
    assert_eq!(
        agent_message(&note),
        json!({"_id": id, "_internal_message": "", "_display_message": "please call me back"})
    );
}

#[tokio::test]
async fn an_agent_cannot_listen_to_another_agents_channel() {
    let app = spawn_app().await;
    let mut alice = LongPoll::open(&app, Who::AgentExt("alice".into()), "/agents/alice").await;
    let mut bob = LongPoll::open(&app, Who::AgentExt("bob".into()), "/agents/bob").await;
    for channel in ["/agents/bob", "/agents/*", "/agents/**", "/_genesys"] {
        let reply = alice.subscribe(channel).await;
        assert_eq!(reply["successful"], false, "{channel}: {reply}");
        assert!(
            error_of(&reply).starts_with(&format!("403:{channel}:")),
            "{channel}: {reply}"
        );
    }

    // Bob gets a service; then Alice gets one. Alice's own offer comes after
    // Bob's was dispatched, so if Bob's had reached her it would be there too.
    let bobs = create_for(&app, "chat-delay", "device-1").await;
    app.ready_agent("bob", &["support"], 1).await;
    app.wait_for_state(&bobs, "ROUTING", crate::client::WAIT)
        .await;
    confirm(&app, &bobs).await;
    let tag = format!("agent.offer.{bobs}");
    bob.wait_for("bob's offer", |m| m["data"]["tag"] == tag)
        .await;

    let alices = create_for(&app, "chat-delay", "device-2").await;
    app.ready_agent("alice", &["support"], 1).await;
    app.wait_for_state(&alices, "ROUTING", crate::client::WAIT)
        .await;
    confirm(&app, &alices).await;
    let tag = format!("agent.offer.{alices}");
    alice
        .wait_for("alice's offer", |m| m["data"]["tag"] == tag)
        .await;
    assert!(
        alice.log.iter().all(|m| !m.to_string().contains(&bobs)),
        "alice heard of bob's service: {:#?}",
        alice.log
    );
}

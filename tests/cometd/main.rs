//! A stock CometD client (npm `cometd`, run by node) against the real server.
//!
//! Each test starts the server in-process on 127.0.0.1:0, runs
//! `node tests/cometd/client/client.mjs` with one transport only
//! (`long-polling` or `websocket`), drives the service over HTTP, and checks
//! the JSON lines the client printed. The npm packages must be installed:
//! `npm ci --prefix tests/cometd/client` (scripts/test does it).

mod node_client;

use std::time::Duration;

use node_client::{CometdClient, Who, LONG_POLLING, WEBSOCKET};
use serde_json::{json, Value};
use tests::{spawn_app, TestApp};

const DEVICE_CHANNEL: &str = "/_genesys";
const AGENT: &str = "agent-1";
const AGENT_CHANNEL: &str = "/agents/agent-1";
const CUSTOMER: &str = "4082652649";

fn new_device() -> String {
    format!("device-{}", uuid::Uuid::new_v4().simple())
}

/// Creates a chat-delay callback for `device` as the seed does; the service id.
async fn create(app: &TestApp, device: &str) -> String {
    let (status, body) = app
        .post_form(
            "/genesys/1/service/callback/chat-delay",
            &[
                ("_customer_number", CUSTOMER),
                ("usr_customer_name", "Bob Markel"),
                ("_device_notification_id", device),
                ("_device_os", "comet"),
            ],
        )
        .await;
    assert_eq!(status, 200, "create answered {body}");
    body["_id"].as_str().expect("_id").to_owned()
}

async fn post_ok(app: &TestApp, path: &str, fields: &[(&str, &str)]) -> Value {
    let (status, body) = app.post_form(path, fields).await;
    assert_eq!(status, 200, "POST {path} answered {body}");
    body
}

/// Polls the service record until `outbox` (or `agent_outbox`) is empty:
/// what the push clients received leaves it.
async fn wait_outbox_empty(app: &TestApp, id: &str, field: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, record) = app.get(&format!("/api/v1/services/{id}")).await;
        assert_eq!(status, 200, "{record}");
        if record[field].as_array().is_some_and(Vec::is_empty) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pushed notifications did not leave {field} within 5 s: {}",
            record[field]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The state notice the device gets on every state change.
fn state_notice(id: &str, state: &str, agent: Option<&str>) -> impl Fn(&Value) -> bool {
    let (id, state, agent) = (id.to_owned(), state.to_owned(), agent.map(str::to_owned));
    move |data: &Value| {
        data["tag"] == format!("service.state.{id}")
            && data["message"]
                == json!({"_id": id, "_action": "state", "_callback_state": state, "_agent_id": agent})
            && data["id"]
                .as_str()
                .is_some_and(|n| n.starts_with(&format!("{id}-v")))
    }
}

/// A device (`ext.gms_user`) on `/_genesys`: the seed's agent-available,
/// state notices, an internal notification, chat; what was pushed leaves the
/// outbox. Another device, subscribed too, hears nothing of it.
async fn device_flow(transport: &'static str) {
    let app = spawn_app().await;
    let device = new_device();
    let other = new_device();
    let mut client = CometdClient::start(
        &app.base,
        transport,
        Who::Device(&device),
        &[DEVICE_CHANNEL, AGENT_CHANNEL],
    )
    .await;
    let mut bystander =
        CometdClient::start(&app.base, transport, Who::Device(&other), &[DEVICE_CHANNEL]).await;
    // A device may not listen to an agent's channel.
    client.wait_ready(&[AGENT_CHANNEL]).await;
    bystander.wait_ready(&[]).await;

    let id = create(&app, &device).await;
    client
        .message(
            "state QUEUED",
            DEVICE_CHANNEL,
            state_notice(&id, "QUEUED", None),
        )
        .await;

    app.ready_agent(AGENT, &["support"], 1).await;
    let tag = format!("service.agentavailable.{id}");
    let available = client
        .message("agent-available", DEVICE_CHANNEL, |d| d["tag"] == tag)
        .await;
    // The seed's shape, exactly.
    let notification_id = available["id"].as_str().unwrap_or_default().to_owned();
    assert!(!notification_id.is_empty(), "{available}");
    assert_eq!(
        available,
        json!({
            "id": notification_id,
            "message": {"_action": "get-dialog-user-confirmation-provide_code-false", "_id": id},
            "tag": tag,
        })
    );
    client
        .message(
            "state ROUTING",
            DEVICE_CHANNEL,
            state_notice(&id, "ROUTING", Some(AGENT)),
        )
        .await;

    let sent = post_ok(
        &app,
        &format!("/genesys/1/service/{id}/internal-notification"),
        &tests::seed::INTERNAL_NOTIFICATION,
    )
    .await;
    assert_eq!(sent, json!({"message": "Notification Sent"}));
    let internal = client
        .message("internal notification", DEVICE_CHANNEL, |d| {
            d.get("_internal_message").is_some()
        })
        .await;
    assert_eq!(
        internal,
        json!({"_internal_message": "MESSAGE_FOR_MOBILE_APP_INTERNAL_USE", "_id": id,
               "_display_message": "Message to be displayed to user"})
    );

    // Pushed, so no longer in the outbox: retrieving does not give them again.
    wait_outbox_empty(&app, &id, "outbox").await;
    let retrieved = post_ok(
        &app,
        &format!("/genesys/1/service/{id}/retrieve-notifications"),
        &[],
    )
    .await;
    assert_eq!(retrieved, json!([]), "pushed notifications retrieved again");

    // Connect, start the chat: the agent joins, then writes.
    let dialog = post_ok(&app, &format!("/genesys/1/service/{id}/connect"), &[]).await;
    assert_eq!(dialog["_action"], "StartChat", "{dialog}");
    client
        .message(
            "state PROCESSING",
            DEVICE_CHANNEL,
            state_notice(&id, "PROCESSING", Some(AGENT)),
        )
        .await;
    let chat = post_ok(
        &app,
        &format!("/genesys/1/service/{id}/ixn/chat"),
        &[
            ("notify_by", "comet"),
            ("firstName", "John"),
            ("lastName", "Harry"),
            ("subject", "testing"),
        ],
    )
    .await;
    assert_eq!(chat, json!({"_id": id, "comet_channel": DEVICE_CHANNEL}));
    let joined = client
        .message("agent joined the chat", DEVICE_CHANNEL, |d| {
            d["type"] == "Notice.Joined"
        })
        .await;
    assert_eq!(
        (
            &joined["_id"],
            &joined["from"],
            &joined["nickname"],
            &joined["text"]
        ),
        (
            &json!(id),
            &json!("AGENT"),
            &json!(AGENT),
            &json!("has joined the session")
        ),
        "{joined}"
    );
    let (status, body) = app
        .post_json(
            &format!("/api/v1/services/{id}/chat"),
            &json!({"text": "Hi John"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let said = client
        .message("the agent's chat message", DEVICE_CHANNEL, |d| {
            d["type"] == "Message.Text"
        })
        .await;
    assert_eq!(
        (&said["_id"], &said["from"], &said["text"]),
        (&json!(id), &json!("AGENT"), &json!("Hi John")),
        "{said}"
    );
    assert!(
        said["index"].as_u64() > joined["index"].as_u64(),
        "{joined} {said}"
    );

    let lines = client.finish().await;
    assert!(
        lines.iter().all(|l| l["event"] != "message"
            || l["channel"] == DEVICE_CHANNEL && l["data"].to_string().contains(&id)),
        "a message that is not about the service: {lines:?}"
    );
    let heard = bystander.finish().await;
    assert!(
        heard.iter().all(|l| l["event"] != "message"),
        "another device received the service's messages: {heard:?}"
    );
}

/// An agent desktop (`ext.agent_id`) on `/agents/agent-1`: the offer after
/// connect, the customer's chat message; no other agent's channel, nor the
/// devices' one.
async fn agent_flow(transport: &'static str) {
    let app = spawn_app().await;
    let mut desktop = CometdClient::start(
        &app.base,
        transport,
        Who::Agent(AGENT),
        &[AGENT_CHANNEL, "/agents/agent-2", DEVICE_CHANNEL],
    )
    .await;
    desktop
        .wait_ready(&["/agents/agent-2", DEVICE_CHANNEL])
        .await;

    let id = create(&app, &new_device()).await;
    app.ready_agent(AGENT, &["support"], 1).await;
    app.wait_for_state(&id, "ROUTING", Duration::from_secs(5))
        .await;
    post_ok(&app, &format!("/genesys/1/service/{id}/connect"), &[]).await;

    let tag = format!("agent.offer.{id}");
    let offer = desktop
        .message("agent.offer", AGENT_CHANNEL, |d| d["tag"] == tag)
        .await;
    let text = offer["message"].as_str().unwrap_or_else(|| {
        panic!("the offer's message is JSON text: {offer}");
    });
    assert_eq!(offer, json!({"message": text, "tag": tag}));
    let inner: Value = serde_json::from_str(text).expect("the offer's message is JSON");
    assert_eq!(
        (
            &inner["_id"],
            &inner["_action"],
            &inner["_service_name"],
            &inner["_customer_number"],
            &inner["_media_type"],
        ),
        (
            &json!(id),
            &json!("offer"),
            &json!("chat-delay"),
            &json!(CUSTOMER),
            &json!("chat"),
        ),
        "{inner}"
    );
    assert_eq!(inner["user_data"]["usr_customer_name"], "Bob Markel");

    // The customer writes in the chat: the desktop hears it.
    post_ok(
        &app,
        &format!("/genesys/1/service/{id}/ixn/chat"),
        &[("notify_by", "comet"), ("firstName", "John")],
    )
    .await;
    post_ok(
        &app,
        &format!("/genesys/1/service/{id}/ixn/chat/send"),
        &[("message", "hello")],
    )
    .await;
    // agent.chat carries its body as JSON text, as the offer does.
    let tag = format!("agent.chat.{id}");
    let chat_of = |kind: &'static str| {
        let tag = tag.clone();
        move |d: &Value| {
            d["tag"] == tag
                && serde_json::from_str::<Value>(d["message"].as_str().unwrap_or_default())
                    .is_ok_and(|m| m["type"] == kind)
        }
    };
    let joined = desktop
        .message(
            "agent.chat: the customer joined",
            AGENT_CHANNEL,
            chat_of("Notice.Joined"),
        )
        .await;
    let joined: Value = serde_json::from_str(joined["message"].as_str().unwrap()).unwrap();
    assert_eq!(
        (&joined["_id"], &joined["from"], &joined["text"]),
        (
            &json!(id),
            &json!("CLIENT"),
            &json!("has joined the session")
        ),
        "{joined}"
    );
    let chat = desktop
        .message("agent.chat: hello", AGENT_CHANNEL, chat_of("Message.Text"))
        .await;
    assert_eq!(chat.as_object().map(|o| o.len()), Some(2), "{chat}");
    let said: Value = serde_json::from_str(chat["message"].as_str().unwrap()).unwrap();
    assert_eq!(
        (&said["_id"], &said["from"], &said["text"]),
        (&json!(id), &json!("CLIENT"), &json!("hello")),
        "{said}"
    );

    // Pushed to the desktop, so out of the agent outbox.
    wait_outbox_empty(&app, &id, "agent_outbox").await;
    let retrieved = post_ok(
        &app,
        &format!("/genesys/1/service/{id}/retrieve-agent-notifications"),
        &[],
    )
    .await;
    assert_eq!(retrieved, json!([]), "pushed notifications retrieved again");

    let lines = desktop.finish().await;
    assert!(
        lines
            .iter()
            .all(|l| l["event"] != "message" || l["channel"] == AGENT_CHANNEL),
        "{lines:?}"
    );
}

#[tokio::test]
async fn device_over_long_polling() {
    device_flow(LONG_POLLING).await;
}

#[tokio::test]
async fn device_over_websocket() {
    device_flow(WEBSOCKET).await;
}

#[tokio::test]
async fn agent_desktop_over_long_polling() {
    agent_flow(LONG_POLLING).await;
}

#[tokio::test]
async fn agent_desktop_over_websocket() {
    agent_flow(WEBSOCKET).await;
}

/// Credentials for the tests that check callers: an admin that drives the
/// API, and the desktop of agent `agent-1`.
fn credentials() -> String {
    let hash = access::hash_secret("long-enough-secret");
    format!(
        "[[credential]]\nname = \"root\"\nrole = \"admin\"\nsecret_hash = \"{hash}\"\n\
         [[credential]]\nname = \"desk-1\"\nrole = \"agent\"\nagent = \"{AGENT}\"\nsecret_hash = \"{hash}\"\n"
    )
}

/// When callbackd checks callers, a desktop in a browser (which cannot set
/// headers on a WebSocket) sends its credential in the handshake's `ext`:
/// with its agent's credential it hears its channel; with none its
/// handshake is refused (401), and with it but for another agent (403).
async fn agent_credential_in_the_handshake(transport: &'static str) {
    let app = TestApp::builder()
        .auth(&credentials())
        .acting_as("root:long-enough-secret")
        .spawn()
        .await;
    let own = "Bearer desk-1:long-enough-secret";
    let mut desktop = CometdClient::start_with(
        &app.base,
        transport,
        Who::Agent(AGENT),
        &[AGENT_CHANNEL],
        Some(own),
    )
    .await;
    desktop.wait_ready(&[]).await;
    let id = create(&app, &new_device()).await;
    app.ready_agent(AGENT, &["support"], 1).await;
    app.wait_for_state(&id, "ROUTING", Duration::from_secs(5))
        .await;
    post_ok(&app, &format!("/genesys/1/service/{id}/connect"), &[]).await;
    let tag = format!("agent.offer.{id}");
    desktop
        .message("agent.offer", AGENT_CHANNEL, |d| d["tag"] == tag)
        .await;
    desktop.finish().await;

    for (who, authorization, code) in [
        (AGENT, None, "401"),
        (AGENT, Some("Bearer desk-1:wrong-secret"), "401"),
        ("agent-2", Some(own), "403"),
    ] {
        let mut refused = CometdClient::start_with(
            &app.base,
            transport,
            Who::Agent(who),
            &["/agents/agent-2"],
            authorization,
        )
        .await;
        let handshake = refused.event("handshake").await;
        assert_eq!(handshake["successful"], false, "{handshake}");
        let error = handshake["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with(&format!("{code}::")),
            "{who} with {authorization:?}: {handshake}"
        );
        assert!(
            !error.contains("secret"),
            "the error echoes no secret: {error}"
        );
        drop(refused);
    }
}

#[tokio::test]
async fn agent_credential_in_the_handshake_over_long_polling() {
    agent_credential_in_the_handshake(LONG_POLLING).await;
}

#[tokio::test]
async fn agent_credential_in_the_handshake_over_websocket() {
    agent_credential_in_the_handshake(WEBSOCKET).await;
}

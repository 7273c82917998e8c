//! Push and the outboxes. A kept notification is in the service's outbox
//! first; once a transport has handed it to its client it leaves, so
//! retrieve-notifications does not give it a second time. One nobody
//! received stays, and retrieving gives it. Acks are batched in the
//! background, so the record is polled (GET /api/v1/services/{id}, which
//! does not empty the outbox) until they have been applied.

use serde_json::{json, Value};
use tests::{spawn_app, TestApp};

use crate::client::{
    agent_notification, confirm, create_for, create_scheduled, internal_notification, is_internal,
    outbox_tags, BayeuxWs, LongPoll, PlainWs, Who, WAIT,
};

/// Whether the device outbox holds the internal notification with this
/// text. Panics if the record has no outbox, so that a renamed field cannot
/// make "it left the outbox" pass at once.
fn holds_internal(rec: &Value, text: &str) -> bool {
    rec["outbox"]
        .as_array()
        .unwrap_or_else(|| panic!("the record has no outbox: {rec}"))
        .iter()
        .any(|n| n["payload"]["_display_message"] == text)
}

async fn retrieve(app: &TestApp, id: &str, which: &str) -> Vec<Value> {
    let (status, body) = app
        .post_form(&format!("/genesys/1/service/{id}/{which}"), &[])
        .await;
    assert_eq!(status, 200, "{which}: {body}");
    body.as_array()
        .unwrap_or_else(|| panic!("{which} answers an array: {body}"))
        .clone()
}

#[tokio::test]
async fn a_pushed_notification_leaves_the_outbox_and_an_unheard_one_stays() {
    let app = spawn_app().await;
    let id = create_scheduled(&app, "device-1").await;
    // Nobody listens yet.
    internal_notification(&app, &id, "unheard").await;

    let mut lp = LongPoll::device(&app, "device-1").await;
    internal_notification(&app, &id, "heard").await;
    lp.wait_for("heard", |m| is_internal(m, "heard")).await;
    lp.settle().await;
    // Connecting is no replay: what was made before the client came stays
    // for retrieve-notifications.
    assert!(
        lp.log.iter().all(|m| !is_internal(m, "unheard")),
        "{:?}",
        lp.log
    );
    let rec = app
        .wait_for_record(&id, "the pushed notification leaves the outbox", |r| {
            !holds_internal(r, "heard")
        })
        .await;
    assert!(holds_internal(&rec, "unheard"), "{}", rec["outbox"]);

    let retrieved = retrieve(&app, &id, "retrieve-notifications").await;
    assert_eq!(
        retrieved,
        [json!({"_internal_message": "", "_id": id, "_display_message": "unheard"})]
    );
}

/// The seed's page both listens and polls: the agent-available it was pushed
/// must not come back from retrieve-notifications, while a device that was
/// not listening gets the same notification by retrieving it.
#[tokio::test]
async fn a_pushed_agent_available_is_not_retrieved_again_an_unpushed_one_is() {
    let app = spawn_app().await;
    let mut listening = LongPoll::device(&app, "device-listening").await;
    let heard = create_for(&app, "chat-delay", "device-listening").await;
    let unheard = create_for(&app, "chat-delay", "device-away").await;
    app.ready_agent("alice", &["support"], 2).await;

    let tag = format!("service.agentavailable.{heard}");
    let pushed = listening
        .wait_for("agent-available", |m| m["data"]["tag"] == tag)
        .await;
    listening.settle().await;
    app.wait_for_record(&heard, "the pushed agent-available leaves", |r| {
        !outbox_tags(r, "outbox").contains(&tag)
    })
    .await;
    let again = retrieve(&app, &heard, "retrieve-notifications").await;
    assert!(
        again.iter().all(|n| n["tag"] != tag),
        "retrieved a second time: {again:?}"
    );

    app.wait_for_state(&unheard, "ROUTING", WAIT).await;
    let retrieved = retrieve(&app, &unheard, "retrieve-notifications").await;
    let tag = format!("service.agentavailable.{unheard}");
    let kept: Vec<&Value> = retrieved.iter().filter(|n| n["tag"] == tag).collect();
    assert_eq!(kept.len(), 1, "{retrieved:?}");
    // Pushed or retrieved, it is the same notification.
    assert_eq!(
        kept[0]["message"],
        json!({"_action": "get-dialog-user-confirmation-provide_code-false", "_id": unheard})
    );
    assert_eq!(
        pushed["data"]["message"],
        json!({"_action": "get-dialog-user-confirmation-provide_code-false", "_id": heard})
    );
}

#[tokio::test]
async fn a_pushed_agent_notification_leaves_the_agent_outbox_and_an_unheard_one_stays() {
    let app = spawn_app().await;
    let mut agent = LongPoll::open(&app, Who::AgentExt("alice".into()), "/agents/alice").await;
    let id = create_for(&app, "chat-delay", "device-1").await;
    app.ready_agent("alice", &["support"], 1).await;
    app.wait_for_state(&id, "ROUTING", WAIT).await;
    confirm(&app, &id).await;
    let offer = format!("agent.offer.{id}");
    agent.wait_for("offer", |m| m["data"]["tag"] == offer).await;
    agent.settle().await;
    app.wait_for_record(&id, "the pushed offer leaves the agent outbox", |r| {
        !outbox_tags(r, "agent_outbox").contains(&offer)
    })
    .await;

    // The desktop goes away; what the device sends now waits for it.
    let reply = agent.disconnect().await;
    assert_eq!(reply["successful"], true, "{reply}");
    agent_notification(&app, &id, "while you were away").await;

    let retrieved = retrieve(&app, &id, "retrieve-agent-notifications").await;
    assert_eq!(retrieved.len(), 1, "{retrieved:?}");
    assert_eq!(retrieved[0]["tag"], format!("agent.message.{id}"));
    let message: Value =
        serde_json::from_str(retrieved[0]["message"].as_str().expect("JSON text")).expect("JSON");
    assert_eq!(message["_display_message"], "while you were away");
}

/// Whichever transport handed it over, a delivery counts as received.
#[tokio::test]
async fn every_transport_acknowledges_what_it_handed_over() {
    let app = spawn_app().await;
    let mut long_poll = LongPoll::device(&app, "device-lp").await;
    let mut bayeux_ws = BayeuxWs::open(&app, Who::Query("device-ws".into()), "/_genesys").await;
    let (mut plain, _) = PlainWs::open(&app, "gms_user=device-plain").await;

    let lp_id = create_scheduled(&app, "device-lp").await;
    let ws_id = create_scheduled(&app, "device-ws").await;
    let plain_id = create_scheduled(&app, "device-plain").await;
    for id in [&lp_id, &ws_id, &plain_id] {
        internal_notification(&app, id, "pushed").await;
    }
    long_poll
        .wait_for("long-poll delivery", |m| is_internal(m, "pushed"))
        .await;
    bayeux_ws
        .wait_for("Bayeux WebSocket delivery", |m| is_internal(m, "pushed"))
        .await;
    plain
        .wait_for("plain delivery", |m| {
            m["data"]["_display_message"] == "pushed"
        })
        .await;
    long_poll.settle().await;
    bayeux_ws.settle().await;
    plain.settle().await;
    for id in [&lp_id, &ws_id, &plain_id] {
        app.wait_for_record(id, "the delivery leaves the outbox", |r| {
            !holds_internal(r, "pushed")
        })
        .await;
        let retrieved = retrieve(&app, id, "retrieve-notifications").await;
        assert!(retrieved.is_empty(), "retrieved again: {retrieved:?}");
    }
}

/// An answer that may never have reached the client (it did not connect
/// again) proves nothing: the notification stays for retrieve-notifications.
#[tokio::test]
async fn an_answer_the_client_never_acknowledged_leaves_the_notification_in_the_outbox() {
    let app = spawn_app().await;
    let id = create_scheduled(&app, "device-gone").await;
    let mut lp = LongPoll::device(&app, "device-gone").await;
    internal_notification(&app, &id, "maybe lost").await;
    lp.wait_for("the answer", |m| is_internal(m, "maybe lost"))
        .await;
    // The phone went away without connecting again.
    drop(lp);
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let rec = app
        .wait_for_record(&id, "still kept", |r| holds_internal(r, "maybe lost"))
        .await;
    assert!(holds_internal(&rec, "maybe lost"));
    let retrieved = retrieve(&app, &id, "retrieve-notifications").await;
    assert_eq!(retrieved.len(), 1, "{retrieved:?}");
    assert_eq!(retrieved[0]["_display_message"], "maybe lost");
}

//! GMS "Chat Immediate": the create answer holds the StartChat dialog and the
//! customer chats while the service waits for an agent.

use serde_json::{json, Value};
use tests::{spawn_app, TestApp, WAIT};

use tests::seed::DEVICE;

/// Creates a chat-immediate service as the seed's browser would; returns the answer.
async fn create(app: &TestApp, customer: &str) -> Value {
    let (status, created) = app
        .post_form(
            "/genesys/1/service/callback/chat-immediate",
            &[
                ("_customer_number", customer),
                ("usr_customer_name", "Bob Markel"),
                ("usr_reason", "billing question"),
                ("_device_notification_id", DEVICE),
                ("_device_os", "comet"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{created}");
    created
}

/// The path part of one of our absolute URLs.
fn path_of<'a>(app: &TestApp, url: &'a str) -> &'a str {
    url.strip_prefix(&app.base)
        .unwrap_or_else(|| panic!("{url} is not under {}", app.base))
}

async fn refresh(app: &TestApp, id: &str, from: &str) -> Value {
    let (status, body) = app
        .post_form(
            &format!("/genesys/1/service/{id}/ixn/chat/refresh"),
            &[("transcriptPosition", from)],
        )
        .await;
    assert_eq!(status, 200, "refresh: {body}");
    body
}

fn rows(refreshed: &Value) -> Vec<Value> {
    refreshed["transcriptToShow"]
        .as_array()
        .unwrap_or_else(|| panic!("transcriptToShow in {refreshed}"))
        .clone()
}

#[tokio::test]
async fn create_answers_the_start_chat_dialog_and_the_chat_waits_for_an_agent() {
    let app = spawn_app().await;
    let created = create(&app, "4082652649").await;
    let id = created["_id"].as_str().expect("_id").to_owned();
    assert_eq!(
        created["_text"],
        "Your chat is waiting for the next available agent"
    );
    assert_eq!(created["_dialog_id"], "1");
    assert_eq!(created["_action"], "StartChat");
    assert_eq!(created["_label"], "Start Chat");
    assert_eq!(
        created["_start_chat_url"],
        app.url(&format!("/genesys/1/service/{id}/ixn/chat"))
    );
    assert_eq!(created["_comet_url"], app.url("/genesys/cometd"));
    assert_eq!(created["_user_header"], DEVICE);
    assert_eq!(created["_id_to_jump_before"], "exit://");
    assert_eq!(created["_chat_parameters"], json!({"subject": "None"}));
    let mut keys: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "_action",
            "_chat_parameters",
            "_comet_url",
            "_dialog_id",
            "_id",
            "_id_to_jump_before",
            "_label",
            "_start_chat_url",
            "_text",
            "_user_header"
        ]
    );
    assert_eq!(app.state_of(&id).await, "QUEUED");

    // The customer starts the chat at once, through the URL it was given.
    let start = path_of(&app, created["_start_chat_url"].as_str().unwrap()).to_owned();
    let (status, chat) = app.post_form(&start, &tests::seed::START_CHAT).await;
    assert_eq!(status, 200, "{chat}");
    assert_eq!(chat, json!({"_id": id, "comet_channel": "/_genesys"}));

    for text in ["hello", "anyone there?"] {
        let (status, sent) = app
            .post_form(
                &format!("/genesys/1/service/{id}/ixn/chat/send"),
                &[("message", text)],
            )
            .await;
        assert_eq!(status, 200, "{sent}");
        assert_eq!(sent["chatIxnState"], "WAITING", "{sent}");
    }
    assert_eq!(app.state_of(&id).await, "QUEUED");
    let waiting = refresh(&app, &id, "1").await;
    assert_eq!(waiting["chatIxnState"], "WAITING", "{waiting}");
    let transcript = rows(&waiting);
    assert_eq!(transcript.len(), 3, "{waiting}");
    assert_eq!(transcript[0][0], "Notice.Joined");
    assert_eq!(transcript[0][1], "John Harry");
    assert_eq!(transcript[0][4], "CLIENT");
    assert_eq!(transcript[1][0], "Message.Text");
    assert_eq!(transcript[1][2], "hello");
    assert_eq!(transcript[2][2], "anyone there?");
    assert_eq!(waiting["transcriptPosition"], 4);
    let answer = app.queue_position(&id).await;
    assert_eq!(answer["_position"], 1, "{answer}");

    // An agent gets ready: no confirmation is needed, the chat is connected.
    app.ready_agent("alice", &["support"], 1).await;
    let rec = app.wait_for_state(&id, "PROCESSING", WAIT).await;
    assert_eq!(rec["served_by"], "alice", "{rec}");
    let connected = refresh(&app, &id, "4").await;
    assert_eq!(connected["chatIxnState"], "CONNECTED", "{connected}");
    let joined = rows(&connected);
    assert_eq!(joined.len(), 1, "{connected}");
    assert_eq!(joined[0][0], "Notice.Joined");
    assert_eq!(joined[0][1], "alice");
    assert_eq!(joined[0][4], "AGENT");
    let (_, agent) = app.get("/api/v1/agents/alice").await;
    assert_eq!(agent["services"][0]["_id"], id, "{agent}");
    assert_eq!(agent["services"][0]["chat_started"], true, "{agent}");

    // The agent sees what was written while waiting, and answers.
    let (_, to_agent) = app
        .post_form(
            &format!("/genesys/1/service/{id}/retrieve-agent-notifications"),
            &[],
        )
        .await;
    let tags: Vec<&str> = to_agent
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["tag"].as_str())
        .collect();
    assert!(
        tags.contains(&format!("agent.chat.{id}").as_str()),
        "{tags:?}"
    );
    assert!(
        tags.contains(&format!("agent.offer.{id}").as_str()),
        "{tags:?}"
    );
    let (status, _) = app
        .post_json(
            &format!("/api/v1/services/{id}/chat"),
            &json!({"text": "Hi John, sorry for the wait"}),
        )
        .await;
    assert_eq!(status, 200);
    let answered = refresh(&app, &id, "5").await;
    assert_eq!(rows(&answered)[0][2], "Hi John, sorry for the wait");
    assert_eq!(rows(&answered)[0][4], "AGENT");

    // The customer leaves: done, with the agent connected.
    let (status, left) = app
        .post_form(&format!("/genesys/1/service/{id}/ixn/chat/disconnect"), &[])
        .await;
    assert_eq!(status, 200, "{left}");
    assert_eq!(left["chatIxnState"], "DISCONNECTED", "{left}");
    let (_, found) = app
        .get(&format!("/genesys/1/service/callback?_id={id}"))
        .await;
    assert_eq!(found[0]["_callback_state"], "COMPLETED", "{found}");
    assert_eq!(found[0]["_callback_reason"], "AGENT_CONNECTED", "{found}");
    assert_eq!(found[0]["usr_reason"], "billing question");
    assert_eq!(app.agent_services("alice").await, Vec::<String>::new());
    let ended = refresh(&app, &id, "1").await;
    assert_eq!(ended["chatIxnState"], "DISCONNECTED", "{ended}");
    assert_eq!(rows(&ended).last().unwrap()[0], "Notice.Left", "{ended}");

    // Nothing more can be said in a finished chat.
    let (status, late) = app
        .post_form(
            &format!("/genesys/1/service/{id}/ixn/chat/send"),
            &[("message", "still there?")],
        )
        .await;
    assert_eq!(status, 409, "{late}");
}

#[tokio::test]
async fn a_customer_who_leaves_the_chat_while_queued_fails_the_service() {
    let app = spawn_app().await;
    let stays = create(&app, "5550100").await["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let leaves = create(&app, "5550101").await["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for id in [&stays, &leaves] {
        let (status, chat) = app
            .post_form(
                &format!("/genesys/1/service/{id}/ixn/chat"),
                &[("nickname", "Bob")],
            )
            .await;
        assert_eq!(status, 200, "{chat}");
    }
    assert_eq!(app.queue_position(&leaves).await["_position"], 2);

    let (status, left) = app
        .post_form(
            &format!("/genesys/1/service/{leaves}/ixn/chat/disconnect"),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{left}");
    assert_eq!(left["chatIxnState"], "DISCONNECTED");
    let (_, found) = app
        .get(&format!("/genesys/1/service/callback?_id={leaves}"))
        .await;
    assert_eq!(found[0]["_callback_state"], "COMPLETED", "{found}");
    assert_eq!(
        found[0]["_callback_reason"], "FAIL_INTERACTION_DELETED",
        "{found}"
    );
    let (_, pushed) = app
        .post_form(
            &format!("/genesys/1/service/{leaves}/retrieve-notifications"),
            &[],
        )
        .await;
    assert!(
        pushed
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["_callback_reason"] == "FAIL_INTERACTION_DELETED"),
        "{pushed}"
    );

    // It left the queue; the other customer moves up and gets the agent.
    let answer = app.queue_position(&stays).await;
    assert_eq!(answer["_position"], 1, "{answer}");
    assert_eq!(answer["_total_waiting"], 1, "{answer}");
    app.ready_agent("alice", &["support"], 5).await;
    app.wait_for_state(&stays, "PROCESSING", WAIT).await;
    assert_eq!(app.agent_services("alice").await, vec![stays.clone()]);
    assert_eq!(app.state_of(&leaves).await, "COMPLETED");
}

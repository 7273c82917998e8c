//! The seed's "Chat Delayed" flow, request by request, with multipart bodies.

use std::time::Duration;

use serde_json::json;
use tests::spawn_app;

#[tokio::test]
async fn chat_delay_seed_flow_from_create_to_completion() {
    let app = spawn_app().await;
    let (status, created) = app
        .post_form(
            "/genesys/1/service/callback/chat-delay",
            &[
                ("_customer_number", "4082652649"),
                ("usr_customer_name", "Bob Markel"),
                ("usr_reason", "billing question"),
                ("_device_notification_id", tests::seed::DEVICE),
                ("_device_os", "comet"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        created["_text"],
        "We will notify you when agent is available"
    );
    let id = created["_id"].as_str().unwrap().to_owned();
    assert_eq!(
        uuid::Uuid::parse_str(&id).map(|u| u.get_version_num()),
        Ok(4)
    );

    let (_, position) = app
        .post_form(
            &format!("/genesys/1/service/{id}/check-queue-position"),
            &[],
        )
        .await;
    assert_eq!(
        position,
        json!({"_position": 1, "_eta": "n/a", "_total_waiting": 1,
               "_agent_ready_threshold_passed": true, "_agent_ready_threshold_passed_reason": "eta n/a"})
    );

    app.ready_agent("alice", &["support"], 1).await;
    app.wait_for_state(&id, "ROUTING", Duration::from_secs(5))
        .await;

    let (_, pushed) = app
        .post_form(
            &format!("/genesys/1/service/{id}/retrieve-notifications"),
            &[],
        )
        .await;
    let pushed = pushed.as_array().unwrap();
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert_eq!(
        pushed[0]["message"],
        json!({"_action": "get-dialog-user-confirmation-provide_code-false", "_id": id})
    );
    assert_eq!(pushed[0]["tag"], format!("service.agentavailable.{id}"));
    assert!(pushed[0]["id"].is_string());

    let (status, dialog) = app
        .post_form(&format!("/genesys/1/service/{id}/connect"), &[])
        .await;
    assert_eq!(status, 200, "{dialog}");
    assert_eq!(dialog["_dialog_id"], "1");
    assert_eq!(dialog["_action"], "StartChat");
    assert_eq!(dialog["_label"], "Start Chat");
    assert_eq!(
        dialog["_start_chat_url"],
        app.url(&format!("/genesys/1/service/{id}/ixn/chat"))
    );
    assert_eq!(dialog["_comet_url"], app.url("/genesys/cometd"));
    assert_eq!(
        dialog["_user_header"],
        "b16416334828b1d26ef14f329628b55b5a8c631d8928a371a5584722dd7fb673"
    );
    assert_eq!(dialog["_id_to_jump_before"], "exit://");
    assert_eq!(dialog["_chat_parameters"], json!({"subject": "None"}));
    assert_eq!(dialog["_id"], id);
    assert_eq!(app.state_of(&id).await, "PROCESSING");

    let (status, chat) = app
        .post_form(
            &format!("/genesys/1/service/{id}/ixn/chat"),
            &tests::seed::START_CHAT,
        )
        .await;
    assert_eq!(status, 200, "{chat}");
    assert_eq!(chat, json!({"_id": id, "comet_channel": "/_genesys"}));

    let (status, _) = app
        .post_form(
            &format!("/genesys/1/service/{id}/ixn/chat/send"),
            &[("message", "hello")],
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .post_json(
            &format!("/api/v1/services/{id}/chat"),
            &json!({"text": "Hi John"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, refreshed) = app
        .post_form(
            &format!("/genesys/1/service/{id}/ixn/chat/refresh"),
            &[("transcriptPosition", "3")],
        )
        .await;
    assert_eq!(refreshed["chatIxnState"], "CONNECTED");
    let rows = refreshed["transcriptToShow"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{refreshed}");
    assert_eq!(rows[0][0], "Message.Text");
    assert_eq!(rows[0][2], "hello");
    assert_eq!(rows[1][2], "Hi John");
    assert_eq!(rows[1][4], "AGENT");

    let (_, sent) = app
        .post_form(
            &format!("/genesys/1/service/{id}/internal-notification"),
            &tests::seed::INTERNAL_NOTIFICATION,
        )
        .await;
    assert_eq!(sent, json!({"message": "Notification Sent"}));
    let (_, pushed) = app
        .post_form(
            &format!("/genesys/1/service/{id}/retrieve-notifications"),
            &[],
        )
        .await;
    let internal = pushed.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        internal,
        json!({"_internal_message": "MESSAGE_FOR_MOBILE_APP_INTERNAL_USE", "_id": id,
               "_display_message": "Message to be displayed to user"})
    );
    let (_, again) = app
        .post_form(
            &format!("/genesys/1/service/{id}/retrieve-notifications"),
            &[],
        )
        .await;
    assert_eq!(
        again,
        json!([]),
        "retrieved notifications are not returned twice"
    );

    app.post_form(
        &format!("/genesys/1/service/{id}/agent-notification"),
        &[
            ("_display_message", "Message to be displayed to agent"),
            (
                "_application_message",
                "MESSAGE_FOR_AGENT_DESKTOP_INTERNAL_USE",
            ),
        ],
    )
    .await;
    let (_, to_agent) = app
        .post_form(
            &format!("/genesys/1/service/{id}/retrieve-agent-notifications"),
            &[],
        )
        .await;
    let message = to_agent
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["tag"] == format!("agent.message.{id}"))
        .expect("agent.message notification");
    let inner: serde_json::Value =
        serde_json::from_str(message["message"].as_str().unwrap()).unwrap();
    assert_eq!(
        inner,
        json!({"_id": id, "_internal_message": "MESSAGE_FOR_AGENT_DESKTOP_INTERNAL_USE",
               "_display_message": "Message to be displayed to agent"})
    );

    let (status, done) = app
        .post_json(&format!("/api/v1/services/{id}/complete"), &json!({}))
        .await;
    assert_eq!(status, 200, "{done}");
    let (_, found) = app
        .get(&format!("/genesys/1/service/callback?_id={id}"))
        .await;
    assert_eq!(found[0]["_callback_state"], "COMPLETED");
    assert_eq!(found[0]["_callback_reason"], "AGENT_CONNECTED");
    assert_eq!(found[0]["usr_reason"], "billing question");
    let (_, agent) = app.get("/api/v1/agents/alice").await;
    assert_eq!(agent["services"], json!([]), "the agent is free again");
}

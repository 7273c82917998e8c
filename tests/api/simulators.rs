//! The `examples` simulators end to end: an agent desktop and a mobile app
//! run concurrently against the real server, for chat-delay and chat-immediate.

use std::time::Duration;

use examples::{agent_desktop, mobile_app};
use serde_json::json;
use tests::{spawn_app, TestApp};

const POLL: Duration = Duration::from_millis(50);
const LIMIT: Duration = Duration::from_secs(60);

async fn run_both(app: &TestApp, scenario: &str) -> (mobile_app::Summary, agent_desktop::Summary) {
    let mobile = mobile_app::Options {
        scenario: scenario.into(),
        poll: POLL,
        timeout: LIMIT,
        ..mobile_app::Options::default()
    };
    let agent = agent_desktop::Options {
        agent_id: "alice".into(),
        queues: vec!["support".into()],
        poll: POLL,
        timeout: Some(LIMIT),
        ..agent_desktop::Options::default()
    };
    let agent_flow = async {
        // The customer arrives first and waits in the queue a little.
        tokio::time::sleep(Duration::from_millis(400)).await;
        agent_desktop::run(&app.base, &agent).await
    };
    let (mobile, agent) = tokio::time::timeout(LIMIT, async {
        tokio::join!(mobile_app::run(&app.base, &mobile), agent_flow)
    })
    .await
    .expect("both simulators finish within 60 s");
    (
        mobile.expect("mobile app flow"),
        agent.expect("agent desktop flow"),
    )
}

/// What both scenarios must show once the two simulators are done.
async fn check_common(app: &TestApp, mobile: &mobile_app::Summary, agent: &agent_desktop::Summary) {
    let id = &mobile.service_id;
    let log = || format!("{:#?}\n{:#?}", mobile.log, agent.log);

    // The service completed normally, as the customer's own query shows.
    assert!(
        mobile.ended_connected(),
        "mobile ended {} {:?}\n{}",
        mobile.final_state,
        mobile.final_reason,
        log()
    );
    let (_, found) = app
        .get(&format!("/genesys/1/service/callback?_id={id}"))
        .await;
    assert_eq!(found[0]["_callback_state"], "COMPLETED", "{found}");
    assert_eq!(found[0]["_callback_reason"], "AGENT_CONNECTED", "{found}");
    assert_eq!(found[0]["usr_reason"], "billing question");

    // The agent served exactly this service and completed it itself.
    assert_eq!(agent.served.len(), 1, "{}", log());
    let served = &agent.served[0];
    assert_eq!(&served.service_id, id);
    assert_eq!(served.final_state, "COMPLETED");
    assert_eq!(served.final_reason.as_deref(), Some("AGENT_CONNECTED"));
    assert!(served.completed_by_agent, "{}", log());
    assert!(agent.lost.is_empty(), "{:?}", agent.lost);

    // Both transcripts hold both sides' messages.
    for (side, transcript) in [
        ("mobile", &mobile.transcript),
        ("agent", &served.transcript),
    ] {
        let client: Vec<&str> = transcript
            .iter()
            .filter(|r| r.is_from_client())
            .map(|r| r.text.as_str())
            .collect();
        let agent_said: Vec<&str> = transcript
            .iter()
            .filter(|r| r.is_from_agent())
            .map(|r| r.text.as_str())
            .collect();
        for sent in &mobile.sent {
            assert!(
                client.contains(&sent.as_str()),
                "{side} transcript lacks customer's {sent:?}: {transcript:#?}"
            );
        }
        for sent in &served.sent {
            assert!(
                agent_said.contains(&sent.as_str()),
                "{side} transcript lacks agent's {sent:?}: {transcript:#?}"
            );
        }
        assert!(
            client.contains(&"Hello, I have a billing question."),
            "{side}: {transcript:#?}"
        );
        assert!(
            agent_said.contains(&"Hi Bob, this is alice. How can I help you today?"),
            "{side}: {transcript:#?}"
        );
        assert!(
            agent_said.contains(&"Thank you for contacting us. Goodbye!"),
            "{side}: {transcript:#?}"
        );
        let indexes: Vec<u32> = transcript.iter().map(|r| r.index).collect();
        assert_eq!(
            indexes,
            (1..=transcript.len() as u32).collect::<Vec<_>>(),
            "{side}"
        );
    }
    assert_eq!(
        mobile.transcript, served.transcript,
        "both sides read the same transcript"
    );
    assert!(
        mobile.sent.len() >= 3,
        "two openers and at least one answer: {:?}",
        mobile.sent
    );
    assert_eq!(mobile.chat_state.as_deref(), Some("DISCONNECTED"));

    // Notifications went both ways.
    let tags: Vec<String> = served.notifications.iter().map(|n| n.tag.clone()).collect();
    assert!(tags.contains(&format!("agent.offer.{id}")), "{tags:?}");
    assert!(tags.contains(&format!("agent.chat.{id}")), "{tags:?}");
    let device = served
        .notifications
        .iter()
        .find(|n| n.tag == format!("agent.message.{id}"))
        .expect("the device's agent-notification");
    assert_eq!(
        device.message["_internal_message"],
        "MOBILE_APP_CHAT_OPENED"
    );
    assert!(
        mobile
            .notifications
            .iter()
            .any(|n| n["_display_message"] == "alice has joined your chat"
                && n["_internal_message"] == "AGENT_JOINED_CHAT"),
        "{:#?}",
        mobile.notifications
    );
    assert!(
        mobile
            .notifications
            .iter()
            .any(|n| n["_action"] == "completed"),
        "{:#?}",
        mobile.notifications
    );

    // The customer waited in the queue before the agent came.
    assert_eq!(
        mobile.queue_positions.first().map(|p| p.position),
        Some(1),
        "{}",
        log()
    );

    // The agent is free and not ready afterwards.
    assert_eq!(agent.final_agent["services"], json!([]));
    assert_eq!(agent.final_agent["state"], "not_ready");
    let (_, alice) = app.get("/api/v1/agents/alice").await;
    assert_eq!(alice["services"], json!([]), "the agent is free again");
    assert_eq!(alice["state"], "not_ready");
}

#[tokio::test]
async fn simulators_chat_delay_connect_then_chat() {
    let app = spawn_app().await;
    let (mobile, agent) = run_both(&app, "chat-delay").await;
    check_common(&app, &mobile, &agent).await;

    assert_eq!(
        mobile.created["_text"],
        "We will notify you when agent is available"
    );
    assert!(mobile.created.get("_start_chat_url").is_none());
    assert!(
        mobile.used_connect,
        "chat-delay starts the chat from connect's dialog"
    );
    let id = &mobile.service_id;
    let dialog = mobile.dialog.as_ref().expect("dialog");
    assert_eq!(dialog["_action"], "StartChat");
    assert_eq!(
        dialog["_start_chat_url"],
        app.url(&format!("/genesys/1/service/{id}/ixn/chat"))
    );
    assert!(
        mobile
            .notifications
            .iter()
            .any(|n| n["tag"] == format!("service.agentavailable.{id}")),
        "{:#?}",
        mobile.notifications
    );
    assert!(mobile
        .log
        .iter()
        .any(|l| l.starts_with(&format!("[mobile] created service {id} "))));
    assert!(agent
        .log
        .iter()
        .any(|l| l.starts_with(&format!("[agent alice] offer for {id}"))));
}

#[tokio::test]
async fn simulators_chat_immediate_uses_the_create_dialog() {
    let app = spawn_app().await;
    let (mobile, agent) = run_both(&app, "chat-immediate").await;
    check_common(&app, &mobile, &agent).await;

    assert!(!mobile.used_connect, "chat-immediate never calls connect");
    let id = &mobile.service_id;
    assert_eq!(
        mobile.dialog.as_ref(),
        Some(&mobile.created),
        "the create answer is the dialog"
    );
    assert_eq!(mobile.created["_action"], "StartChat");
    assert_eq!(
        mobile.created["_text"],
        "Your chat is waiting for the next available agent"
    );
    assert!(
        !mobile
            .notifications
            .iter()
            .any(|n| n["tag"] == format!("service.agentavailable.{id}")),
        "{:#?}",
        mobile.notifications
    );
    // The customer chatted while still queued: the first message precedes the agent joining.
    let first_customer = mobile.transcript.iter().position(|r| r.is_from_client());
    let agent_joined = mobile
        .transcript
        .iter()
        .position(|r| r.party == "AGENT" && r.kind == "Notice.Joined");
    assert!(first_customer < agent_joined, "{:#?}", mobile.transcript);
}

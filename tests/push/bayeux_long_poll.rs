//! Bayeux 1.0 over long-polling on `/genesys/cometd`, as the GMS sample's
//! CometD client uses it: who may connect, what it may listen to, what it
//! hears, and how a held `/meta/connect` behaves.

use std::time::Duration;

use serde_json::{json, Value};
use tests::{spawn_app, TestApp};
use tokio::time::Instant;

use crate::client::{
    confirm, create_for, create_scheduled, error_of, internal_notification, is_internal, is_state,
    outbox_tags, reply_on, LongPoll, Who,
};

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("an object: {v}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn a_handshake_answers_in_bayeux_1_0_form() {
    let app = TestApp::builder()
        .push_limits(push::Limits {
            connect_timeout: Duration::from_secs(7),
            max_interval: Duration::from_secs(9),
            ..push::Limits::default()
        })
        .spawn()
        .await;
    let mut lp = LongPoll::new(&app, Who::Header("device-1".into()));
    let answer = lp
        .send(vec![json!({
            "id": "hs-1",
            "channel": "/meta/handshake",
            "version": "1.0",
            "supportedConnectionTypes": ["long-polling"],
        })])
        .await;
    assert_eq!(answer.len(), 1, "{answer:?}");
    let reply = &answer[0];
    assert_eq!(reply["channel"], "/meta/handshake");
    assert_eq!(reply["successful"], true, "{reply}");
    // A stock client matches replies to requests by id.
    assert_eq!(reply["id"], "hs-1");
    assert_eq!(reply["version"], "1.0");
    assert!(
        reply["clientId"].as_str().is_some_and(|c| !c.is_empty()),
        "{reply}"
    );
    let types = reply["supportedConnectionTypes"].as_array().expect("types");
    assert!(types.contains(&json!("long-polling")), "{reply}");
    assert!(types.contains(&json!("websocket")), "{reply}");
    // The advice is what a CometD client paces itself by: the configured
    // limits, in milliseconds.
    assert_eq!(reply["advice"]["reconnect"], "retry");
    assert_eq!(reply["advice"]["timeout"], 7000);
    assert_eq!(reply["advice"]["maxInterval"], 9000);

    // The first connect (advice.timeout 0) is how the client learns it is
    // connected: it answers at once, not after the 7 s connect timeout.
    lp.client_id = reply["clientId"].as_str().map(str::to_owned);
    let start = Instant::now();
    let answer = lp.first_connect().await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    let connect = reply_on(&answer, "/meta/connect");
    assert_eq!(connect["successful"], true, "{connect}");
    assert_eq!(connect["clientId"], reply["clientId"]);
}

/// GMS identifies the device by `gms_user`; a client may say it three
/// ways, and whichever it uses, it hears its own service and only that.
#[tokio::test]
async fn the_owner_comes_from_the_header_the_handshake_ext_or_the_query() {
    let app = spawn_app().await;
    let ways = [
        ("device-by-header", Who::Header("device-by-header".into())),
        ("device-by-ext", Who::Ext("device-by-ext".into())),
        ("device-by-query", Who::Query("device-by-query".into())),
    ];
    let mut clients = Vec::new();
    for (device, who) in ways {
        let lp = LongPoll::new(&app, who);
        // Stock CometD appends the message type to the URL; one client does.
        let lp = if device == "device-by-header" {
            lp.appending_the_type()
        } else {
            lp
        };
        clients.push((device, lp.start("/_genesys").await));
    }
    for (device, _) in &clients {
        let id = create_scheduled(&app, device).await;
        internal_notification(&app, &id, &format!("for {device}")).await;
    }
    // Every notification was dispatched before any client connects again, so
    // one that went astray would be in the same answer as the right one.
    for (device, lp) in &mut clients {
        let text = format!("for {device}");
        lp.wait_for(&text, |m| is_internal(m, &text)).await;
        let internals: Vec<&Value> = lp
            .log
            .iter()
            .filter(|m| m["data"]["_display_message"].is_string())
            .collect();
        assert_eq!(internals.len(), 1, "{device} heard {internals:?}");
    }
}

#[tokio::test]
async fn a_handshake_without_an_owner_is_refused_with_403() {
    let app = spawn_app().await;
    for who in [Who::Nobody, Who::Ext("   ".into()), Who::Query("".into())] {
        let mut lp = LongPoll::new(&app, who.clone());
        let reply = lp.handshake().await;
        assert_eq!(reply["successful"], false, "{who:?}: {reply}");
        assert!(error_of(&reply).starts_with("403::"), "{who:?}: {reply}");
        assert!(error_of(&reply).contains("gms_user"), "{who:?}: {reply}");
        assert!(reply.get("clientId").is_none(), "{who:?}: {reply}");
        // Handshaking again the same way cannot help.
        assert_eq!(reply["advice"]["reconnect"], "none", "{who:?}: {reply}");
    }
}

#[tokio::test]
async fn a_device_listens_on_its_channel_only_and_cannot_publish() {
    let app = spawn_app().await;
    let mut lp = LongPoll::device(&app, "device-1").await;
    for channel in ["/agents/alice", "/**", "/_genesys/other", "/service/x"] {
        let reply = lp.subscribe(channel).await;
        assert_eq!(reply["successful"], false, "{channel}: {reply}");
        assert!(
            error_of(&reply).starts_with(&format!("403:{channel}:")),
            "{channel}: {reply}"
        );
        assert_eq!(reply["subscription"], channel);
    }
    // The API is where clients act; the channel only talks to them.
    let answer = lp
        .send(vec![
            json!({"channel": "/_genesys", "data": {"text": "hello"}}),
        ])
        .await;
    let reply = reply_on(&answer, "/_genesys");
    assert_eq!(reply["successful"], false, "{reply}");
    assert!(error_of(&reply).starts_with("403:/_genesys:"), "{reply}");
}

/// The seed's page reacts to exactly this message; a second device listening
/// at the same time must not hear of someone else's agent.
#[tokio::test]
async fn agent_available_reaches_the_owning_device_only_in_the_seeds_shape() {
    let app = spawn_app().await;
    let mut mine = LongPoll::device(&app, "device-a").await;
    let mut other = LongPoll::device(&app, "device-b").await;
    let id = create_for(&app, "chat-delay", "device-a").await;
    app.ready_agent("alice", &["support"], 1).await;

    let tag = format!("service.agentavailable.{id}");
    let m = mine
        .wait_for("agent-available", |m| m["data"]["tag"] == tag)
        .await;
    assert_eq!(keys(&m), ["channel", "data"], "{m}");
    assert_eq!(m["channel"], "/_genesys");
    let notification = m["data"]["id"].as_str().expect("data.id").to_owned();
    assert!(!notification.is_empty());
    assert_eq!(
        m["data"],
        json!({
            "id": notification,
            "message": {
                "_action": "get-dialog-user-confirmation-provide_code-false",
                "_id": id,
            },
            "tag": tag,
        })
    );

    // A marker for the other device, made after the agent-available was
    // dispatched: once it arrives, anything misdirected would have too.
    let theirs = create_for(&app, "chat-delay", "device-b").await;
    internal_notification(&app, &theirs, "marker for b").await;
    other
        .wait_for("marker", |m| is_internal(m, "marker for b"))
        .await;
    assert!(
        other.log.iter().all(|m| !m.to_string().contains(&id)),
        "device-b heard of device-a's service: {:#?}",
        other.log
    );
    internal_notification(&app, &id, "marker for a").await;
    mine.wait_for("marker", |m| is_internal(m, "marker for a"))
        .await;
    assert!(
        mine.log.iter().all(|m| !m.to_string().contains(&theirs)),
        "device-a heard of device-b's service: {:#?}",
        mine.log
    );
}

#[tokio::test]
async fn an_internal_notification_reaches_the_device() {
    let app = spawn_app().await;
    let mut lp = LongPoll::device(&app, "device-1").await;
    let id = create_scheduled(&app, "device-1").await;
    internal_notification(&app, &id, "Your agent will call you at 10").await;
    let m = lp
        .wait_for("internal notification", |m| {
            is_internal(m, "Your agent will call you at 10")
        })
        .await;
    assert_eq!(
        m,
        json!({
            "channel": "/_genesys",
            "data": {
                "_internal_message": "",
                "_id": id,
                "_display_message": "Your agent will call you at 10",
            },
        })
    );
}

#[tokio::test]
async fn state_changes_are_pushed_queued_then_routing_then_processing() {
    let app = spawn_app().await;
    let mut lp = LongPoll::device(&app, "device-1").await;
    let id = create_for(&app, "chat-delay", "device-1").await;
    let queued = lp.wait_for("QUEUED", |m| is_state(m, &id, "QUEUED")).await;
    assert_eq!(queued["channel"], "/_genesys");
    assert_eq!(queued["data"]["message"]["_id"], id.as_str());
    app.ready_agent("alice", &["support"], 1).await;
    let routing = lp
        .wait_for("ROUTING", |m| is_state(m, &id, "ROUTING"))
        .await;
    // The device learns which agent it got.
    assert_eq!(routing["data"]["message"]["_agent_id"], "alice");
    confirm(&app, &id).await;
    lp.wait_for("PROCESSING", |m| is_state(m, &id, "PROCESSING"))
        .await;

    let order: Vec<&str> = lp
        .log
        .iter()
        .filter(|m| m["data"]["tag"] == format!("service.state.{id}"))
        .filter_map(|m| m["data"]["message"]["_callback_state"].as_str())
        .filter(|s| *s != "SCHEDULED")
        .collect();
    assert_eq!(order, ["QUEUED", "ROUTING", "PROCESSING"]);
    // State changes are told, not kept: the state can be read any time.
    let rec = app.record(&id).await;
    let tags = outbox_tags(&rec, "outbox");
    assert!(
        tags.iter().all(|t| !t.starts_with("service.state.")),
        "{tags:?}"
    );
}

/// A long-poll is held so the server can answer the moment it has
/// something: the message must come at once, not at the connect timeout.
#[tokio::test]
async fn a_held_connect_answers_as_soon_as_a_message_comes() {
    // The default 30 s connect timeout: an answer within seconds is early.
    let app = spawn_app().await;
    let mut lp = LongPoll::device(&app, "device-1").await;
    // A service in no queue, so nothing else (queue positions) comes.
    let id = create_scheduled(&app, "device-1").await;
    // Take the state change of the creation first, so the next connect
    // has nothing waiting.
    lp.wait_for("SCHEDULED", |m| is_state(m, &id, "SCHEDULED"))
        .await;

    let mut held = tokio::spawn(async move {
        let start = Instant::now();
        let answer = lp.connect().await;
        (answer, start.elapsed())
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut held)
            .await
            .is_err(),
        "a connect with nothing to say must be held"
    );
    internal_notification(&app, &id, "now").await;
    let (answer, took) = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("the held connect answers when a message comes")
        .expect("task");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // The message comes first, then the connect reply that carried it.
    assert_eq!(answer.len(), 2, "{answer:?}");
    assert!(is_internal(&answer[0], "now"), "{answer:?}");
    assert_eq!(answer[1]["channel"], "/meta/connect");
    assert_eq!(answer[1]["successful"], true);
}

#[tokio::test]
async fn a_held_connect_with_nothing_to_say_answers_at_the_connect_timeout() {
    let app = TestApp::builder()
        .push_limits(push::Limits {
            connect_timeout: Duration::from_millis(800),
            ..push::Limits::default()
        })
        .spawn()
        .await;
    let mut lp = LongPoll::device(&app, "device-1").await;
    let start = Instant::now();
    let answer = lp.connect().await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(750),
        "answered after {took:?}"
    );
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(answer[0]["channel"], "/meta/connect");
    assert_eq!(answer[0]["successful"], true);
    // ... and the client is told to connect again at once.
    assert_eq!(answer[0]["advice"]["reconnect"], "retry");
}

/// One connect per client at a time: a client that reconnects (a page
/// reload, a lost response) must not leave its old request hanging.
#[tokio::test]
async fn a_newer_connect_makes_the_held_one_answer() {
    let app = spawn_app().await;
    let mut lp = LongPoll::device(&app, "device-1").await;
    let id = create_scheduled(&app, "device-1").await;
    lp.wait_for("SCHEDULED", |m| is_state(m, &id, "SCHEDULED"))
        .await;

    let mut newer = lp.twin();
    let mut first = tokio::spawn(async move { lp.connect().await });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut first)
            .await
            .is_err(),
        "the first connect must be held"
    );
    let mut second = tokio::spawn(async move { newer.connect().await });
    let answer = tokio::time::timeout(Duration::from_secs(5), first)
        .await
        .expect("the older connect answers when a newer one comes")
        .expect("task");
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(answer[0]["successful"], true, "{answer:?}");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut second)
            .await
            .is_err(),
        "the newer connect is held in its turn"
    );
    // What comes next goes to the newer one.
    internal_notification(&app, &id, "to the newer").await;
    let answer = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the newer connect answers with the message")
        .expect("task");
    assert!(is_internal(&answer[0], "to the newer"), "{answer:?}");
}

#[tokio::test]
async fn an_unknown_client_is_told_to_handshake_again() {
    let app = spawn_app().await;
    let mut lp = LongPoll::new(&app, Who::Header("device-1".into()));
    lp.client_id = Some("no-such-client".into());
    for answer in [
        lp.connect().await,
        lp.send(vec![
            json!({"channel": "/meta/subscribe", "subscription": "/_genesys"}),
        ])
        .await,
    ] {
        let reply = &answer[0];
        assert_eq!(reply["successful"], false, "{reply}");
        assert!(
            error_of(reply).starts_with("402:no-such-client:"),
            "{reply}"
        );
        assert_eq!(reply["advice"]["reconnect"], "handshake", "{reply}");
    }
}

#[tokio::test]
async fn a_disconnected_client_is_gone_and_its_held_connect_answers() {
    let app = spawn_app().await;
    let mut lp = LongPoll::device(&app, "device-1").await;
    let client_id = lp.client_id.clone().expect("client id");
    let mut held_by = lp.twin();
    let mut held = tokio::spawn(async move { held_by.connect().await });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut held)
            .await
            .is_err(),
        "the connect must be held"
    );

    let reply = lp.disconnect().await;
    assert_eq!(reply["successful"], true, "{reply}");
    assert_eq!(reply["clientId"], client_id.as_str());
    // The held connect does not hang on to the end of its timeout.
    let answer = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("the held connect answers on disconnect")
        .expect("task");
    let connect = reply_on(&answer, "/meta/connect");
    assert_eq!(connect["successful"], false, "{connect}");
    assert!(error_of(&connect).starts_with("402:"), "{connect}");

    let answer = lp.connect().await;
    let connect = reply_on(&answer, "/meta/connect");
    assert_eq!(connect["successful"], false, "{connect}");
    assert!(
        error_of(&connect).starts_with(&format!("402:{client_id}:")),
        "{connect}"
    );
    assert_eq!(connect["advice"]["reconnect"], "handshake");
}

/// A client that stops connecting (the tab was closed) must not hold its
/// place for ever: after max_interval its id is forgotten. With room for
/// one client, the next handshake succeeds only once the first has expired.
#[tokio::test]
async fn a_client_id_expires_after_max_interval_without_a_connect() {
    let max_interval = Duration::from_millis(300);
    let app = TestApp::builder()
        .push_limits(push::Limits {
            max_clients: 1,
            max_interval,
            ..push::Limits::default()
        })
        .spawn()
        .await;
    // Taken before the handshake, so the client cannot rightly be gone
    // sooner than max_interval after it.
    let since = Instant::now();
    let mut gone = LongPoll::new(&app, Who::Header("device-1".into()));
    let reply = gone.handshake().await;
    assert_eq!(reply["successful"], true, "{reply}");

    let deadline = since + Duration::from_secs(10);
    let mut next = LongPoll::new(&app, Who::Header("device-2".into()));
    loop {
        let reply = next.handshake().await;
        if reply["successful"] == true {
            break;
        }
        assert!(error_of(&reply).starts_with("503::"), "{reply}");
        assert!(
            Instant::now() < deadline,
            "the first client never expired: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        since.elapsed() >= max_interval,
        "expired after {:?}, before max_interval",
        since.elapsed()
    );
    let answer = gone.connect().await;
    let connect = reply_on(&answer, "/meta/connect");
    assert_eq!(connect["successful"], false, "{connect}");
    assert!(error_of(&connect).starts_with("402:"), "{connect}");
    assert_eq!(connect["advice"]["reconnect"], "handshake");
}

/// A browser tab closed while its long-poll was held: the request is gone,
/// and the client must still expire, at the latest max_interval after the
/// connect timeout would have answered it (as CometD does).
#[tokio::test]
async fn a_client_whose_held_connect_was_abandoned_still_expires() {
    let app = TestApp::builder()
        .push_limits(push::Limits {
            max_clients: 1,
            connect_timeout: Duration::from_secs(1),
            max_interval: Duration::from_millis(300),
            ..push::Limits::default()
        })
        .spawn()
        .await;
    let mut gone = LongPoll::device(&app, "device-1").await;
    let mut held = tokio::spawn(async move { gone.connect().await });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut held)
            .await
            .is_err(),
        "the connect must be held"
    );
    // Dropping the request closes its connection, as a closed tab does.
    held.abort();
    let _ = held.await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut next = LongPoll::new(&app, Who::Header("device-2".into()));
    loop {
        let reply = next.handshake().await;
        if reply["successful"] == true {
            break;
        }
        assert!(error_of(&reply).starts_with("503::"), "{reply}");
        assert!(
            Instant::now() < deadline,
            "the abandoned client still holds its place 10 s later \
             (connect timeout 1 s, max_interval 300 ms): {reply}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Some CometD clients post the batch as the form field `message`.
#[tokio::test]
async fn a_batch_may_come_as_the_form_field_message() {
    let app = spawn_app().await;
    let batch = json!([{
        "id": "1",
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
    }]);
    let (status, answer) = app
        .post_urlencoded(
            "/genesys/cometd/handshake?gms_user=device-1",
            &[("message", &batch.to_string())],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer[0]["channel"], "/meta/handshake", "{answer}");
    assert_eq!(answer[0]["successful"], true, "{answer}");
}

/// After unsubscribing, a device hears nothing more, so what is made for it
/// stays in the outbox (no ack) while what it hears after subscribing
/// again leaves.
#[tokio::test]
async fn an_unsubscribed_device_hears_nothing_and_that_stays_in_the_outbox() {
    let app = spawn_app().await;
    let mut lp = LongPoll::device(&app, "device-1").await;
    let id = create_scheduled(&app, "device-1").await;
    let answer = lp
        .send(vec![
            json!({"channel": "/meta/unsubscribe", "subscription": "/_genesys"}),
        ])
        .await;
    let reply = reply_on(&answer, "/meta/unsubscribe");
    assert_eq!(reply["successful"], true, "{reply}");
    internal_notification(&app, &id, "while unsubscribed").await;

    let reply = lp.subscribe("/_genesys").await;
    assert_eq!(reply["successful"], true, "{reply}");
    internal_notification(&app, &id, "subscribed again").await;
    lp.wait_for("the later message", |m| is_internal(m, "subscribed again"))
        .await;
    lp.settle().await;
    assert!(
        lp.log.iter().all(|m| !is_internal(m, "while unsubscribed")),
        "{:#?}",
        lp.log
    );
    // Acks are applied in order: once the later one has left the outbox,
    // the earlier one would have too, had it been handed over.
    let rec = app
        .wait_for_record(&id, "the heard one leaves", |r| {
            !r["outbox"]
                .as_array()
                .expect("outbox")
                .iter()
                .any(|n| n["payload"]["_display_message"] == "subscribed again")
        })
        .await;
    let left: Vec<&Value> = rec["outbox"]
        .as_array()
        .expect("outbox")
        .iter()
        .map(|n| &n["payload"]["_display_message"])
        .collect();
    assert_eq!(left, [&json!("while unsubscribed")]);
}

/// A long-polling body that is not a Bayeux batch is refused with a JSON
/// error naming the body, and the server goes on serving.
#[tokio::test]
async fn a_body_that_is_not_a_batch_is_refused_naming_the_body() {
    let app = spawn_app().await;
    for (body, says) in [
        ("{\"channel\": ", "not JSON"),
        ("[]", "the batch is empty"),
        ("42", "expected a Bayeux message or an array of them"),
    ] {
        let response = app
            .client
            .post(app.url("/genesys/cometd"))
            .header("content-type", "application/json")
            .header("gms_user", "device-1")
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.expect("a JSON error");
        assert_eq!(answer["exception"], "INVALID_BODY", "{answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("request body: "), "{answer}");
        assert!(message.contains(says), "{body}: {answer}");
    }
    let mut lp = LongPoll::new(&app, Who::Header("device-1".into()));
    let answer = lp
        .send(vec![json!({
            "channel": "/meta/handshake",
            "version": "1.0",
            "supportedConnectionTypes": ["long-polling"],
        })])
        .await;
    assert_eq!(answer[0]["successful"], true, "{answer:?}");
}

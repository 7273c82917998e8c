//! The bounds the push side keeps, so that no client can hold the server's
//! memory or sockets for ever: bounded queues, a client limit, idle sockets
//! closed, and a shutdown that tells every client to go elsewhere.

use std::time::Duration;

use serde_json::Value;
use tests::{spawn_app, TestApp};
use tokio::time::Instant;

use crate::client::{
    closed, create_scheduled, error_of, internal_notification, next_text, reply_on, BayeuxWs,
    LongPoll, Next, PlainWs, Who, WAIT,
};

/// A long-polling client that subscribes and then stops connecting lets
/// its queue fill: one message past the limit and it is dropped, and its
/// next connect says why.
#[tokio::test]
async fn a_slow_consumer_is_dropped_and_told_why() {
    let queue_limit = 3;
    let app = TestApp::builder()
        .push_limits(push::Limits {
            queue_limit,
            ..push::Limits::default()
        })
        .spawn()
        .await;
    // The service first, so its state change is not queued for the client,
    // and in no queue, so no queue positions are.
    let id = create_scheduled(&app, "device-1").await;
    let mut lp = LongPoll::device(&app, "device-1").await;
    let client_id = lp.client_id.clone().expect("client id");
    for n in 0..=queue_limit {
        internal_notification(&app, &id, &format!("message {n}")).await;
    }

    let answer = lp.connect().await;
    assert_eq!(answer.len(), 1, "nothing is handed over: {answer:?}");
    let connect = reply_on(&answer, "/meta/connect");
    assert_eq!(connect["successful"], false, "{connect}");
    let error = error_of(&connect);
    assert!(
        error.starts_with(&format!("402:{client_id}:client dropped: slow consumer:")),
        "{connect}"
    );
    assert!(
        error.contains(&format!("limit is {queue_limit}")),
        "{connect}"
    );
    assert_eq!(connect["advice"]["reconnect"], "handshake");
    // Told once; after that the id is simply unknown.
    let answer = lp.connect().await;
    let connect = reply_on(&answer, "/meta/connect");
    assert!(
        error_of(&connect).starts_with(&format!("402:{client_id}:")),
        "{connect}"
    );
    assert!(!error_of(&connect).contains("slow consumer"), "{connect}");

    // Nothing was handed over, so all of it is still there to retrieve.
    let (status, body) = app
        .post_form(
            &format!("/genesys/1/service/{id}/retrieve-notifications"),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let texts: Vec<&str> = body
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|n| n["_display_message"].as_str())
        .collect();
    assert_eq!(texts, ["message 0", "message 1", "message 2", "message 3"]);
}

#[tokio::test]
async fn a_full_node_refuses_handshakes_until_a_client_leaves() {
    let app = TestApp::builder()
        .push_limits(push::Limits {
            max_clients: 2,
            ..push::Limits::default()
        })
        .spawn()
        .await;
    // Both transports count against the same limit.
    let mut first = LongPoll::device(&app, "device-1").await;
    let _second = BayeuxWs::open(&app, Who::Query("device-2".into()), "/_genesys").await;

    let mut third = LongPoll::new(&app, Who::Header("device-3".into()));
    let reply = third.handshake().await;
    assert_eq!(reply["successful"], false, "{reply}");
    assert!(
        error_of(&reply).starts_with("503::too many clients"),
        "{reply}"
    );
    // A stock client tries again later.
    assert_eq!(reply["advice"]["reconnect"], "handshake");
    let mut ws = BayeuxWs::new(&app, Who::Query("device-3".into())).await;
    let reply = ws.handshake().await;
    assert!(error_of(&reply).starts_with("503::"), "{reply}");

    let reply = first.disconnect().await;
    assert_eq!(reply["successful"], true, "{reply}");
    let reply = third.handshake().await;
    assert_eq!(reply["successful"], true, "{reply}");
}

/// A socket from which nothing at all arrives (not even pongs) is a dead
/// peer; one that answers the server's pings is alive however quiet it is.
#[tokio::test]
async fn a_silent_websocket_is_closed_as_idle_and_a_live_one_is_not() {
    let ws_idle = Duration::from_millis(600);
    let app = TestApp::builder()
        .push_limits(push::Limits {
            ws_ping: Duration::from_millis(100),
            ws_idle,
            ..push::Limits::default()
        })
        .spawn()
        .await;
    // Before anything was sent, so no close can rightly come earlier than
    // ws_idle after it.
    let since = Instant::now();
    let mut silent_bayeux = BayeuxWs::open(&app, Who::Query("device-1".into()), "/_genesys").await;
    let silent_client = silent_bayeux.client_id.clone().expect("client id");
    silent_bayeux.ws.get_ref().mute();
    let (mut silent_plain, _) = PlainWs::open(&app, "gms_user=device-2").await;
    silent_plain.ws.get_ref().mute();
    let (mut live, _) = PlainWs::open(&app, "gms_user=device-3").await;

    // All three are read at once: the silent ones get the pings too, but
    // their pongs never reach the server; the live one answers them.
    let silent = async {
        let mut closes = Vec::new();
        for ws in [&mut silent_bayeux.ws, &mut silent_plain.ws] {
            closes.push((closed(ws, WAIT).await, since.elapsed()));
        }
        closes
    };
    let (closes, live_read) = tokio::join!(silent, next_text(&mut live.ws, ws_idle * 2));
    for ((close, after), name) in closes.into_iter().zip(["Bayeux", "plain"]) {
        assert_eq!(close.code, 1000, "{name}: {close:?}");
        assert!(close.reason.starts_with("idle"), "{name}: {close:?}");
        assert!(after >= ws_idle, "{name} closed after {after:?}");
    }
    // The live socket stayed open past the idle limit, and still delivers.
    match live_read {
        Next::Silent => {}
        other => panic!("the live socket got {other:?}"),
    }
    let id = create_scheduled(&app, "device-3").await;
    internal_notification(&app, &id, "still here").await;
    live.wait_for("a delivery", |f| {
        f["data"]["_display_message"] == "still here"
    })
    .await;

    // The idle socket's client went with it.
    let mut lp = LongPoll::new(&app, Who::Header("device-1".into()));
    lp.client_id = Some(silent_client.clone());
    let answer = lp.connect().await;
    assert!(
        error_of(&reply_on(&answer, "/meta/connect")).starts_with(&format!("402:{silent_client}:")),
        "{answer:?}"
    );
}

/// On shutdown every client is told to go elsewhere at once: sockets close
/// with 1001, a held long-poll answers with advice to handshake again
/// (client ids do not move between nodes).
#[tokio::test]
async fn shutdown_closes_sockets_with_1001_and_answers_held_connects() {
    // The default 30 s connect timeout: answers within seconds come from the shutdown.
    let mut app = spawn_app().await;
    let mut bayeux = BayeuxWs::open(&app, Who::Query("device-1".into()), "/_genesys").await;
    bayeux.held_connect().await;
    let (mut plain, _) = PlainWs::open(&app, "gms_user=device-2").await;
    let mut lp = LongPoll::device(&app, "device-3").await;
    let mut held = tokio::spawn(async move { lp.connect().await });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut held)
            .await
            .is_err(),
        "the connect must be held"
    );

    let stopping = tokio::spawn(async move { app.shut_down().await });

    let answer: Vec<Value> = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("the held long-poll answers on shutdown")
        .expect("task");
    let connect = reply_on(&answer, "/meta/connect");
    assert_eq!(connect["advice"]["reconnect"], "handshake", "{connect}");

    let connect = bayeux
        .reply_within("/meta/connect", Duration::from_secs(5))
        .await;
    assert_eq!(connect["advice"]["reconnect"], "handshake", "{connect}");
    for (name, ws) in [("Bayeux", &mut bayeux.ws), ("plain", &mut plain.ws)] {
        let close = closed(ws, Duration::from_secs(5)).await;
        assert_eq!(close.code, 1001, "{name}: {close:?}");
        assert_eq!(close.reason, "server shutting down", "{name}");
    }
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the server stops")
        .expect("task");
}

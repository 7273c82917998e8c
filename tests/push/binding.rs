//! A Bayeux session belongs to the client that handshook it: another
//! client that presents its `clientId` gets `402:<id>:unknown client`, as
//! for an id that does not exist, and nothing of the session.

use std::time::Duration;

use serde_json::{json, Value};
use tests::spawn_app;

use crate::client::{
    create_scheduled, deliveries, error_of, internal_notification, is_internal, reply_on, BayeuxWs,
    LongPoll, Who,
};

fn assert_unknown(reply: &Value, id: &str) {
    assert_eq!(reply["successful"], false, "{reply}");
    assert_eq!(
        error_of(reply),
        format!("402:{id}:unknown client"),
        "{reply}"
    );
    assert_eq!(reply["advice"]["reconnect"], "handshake", "{reply}");
}

#[tokio::test]
async fn a_long_polling_client_cannot_use_another_devices_client_id() {
    let app = spawn_app().await;
    let mut victim = LongPoll::device(&app, "victim-device").await;
    let id = victim.client_id.clone().expect("client id");
    let service = create_scheduled(&app, "victim-device").await;
    victim.settle().await;
    internal_notification(&app, &service, "for the victim only").await;

    // Another device names itself, or nobody (the victim's handshake
    // carried its gms_user header, so every request of it does).
    for who in [
        Who::Header("attacker".into()),
        Who::Nobody,
        Who::Query("attacker".into()),
    ] {
        let mut attacker = LongPoll::new(&app, who);
        attacker.client_id = Some(id.clone());
        for answer in [
            attacker.connect().await,
            attacker
                .send(vec![
                    json!({"channel": "/meta/subscribe", "subscription": "/_genesys"}),
                ])
                .await,
            attacker
                .send(vec![json!({"channel": "/meta/disconnect"})])
                .await,
        ] {
            assert_eq!(deliveries(&answer), Vec::<Value>::new(), "{answer:?}");
            assert_eq!(answer.len(), 1, "{answer:?}");
            assert_unknown(&answer[0], &id);
        }
    }

    // The victim's session is whole: it still hears its message.
    let message = victim
        .wait_for("the internal notification", |m| {
            is_internal(m, "for the victim only")
        })
        .await;
    assert_eq!(message["channel"], "/_genesys", "{message}");
}

/// A long-polling POST of `batch`, with this Cookie header if any; answers
/// the Set-Cookie value and the replies.
async fn post(
    app: &tests::TestApp,
    cookie: Option<&str>,
    batch: Value,
) -> (Option<String>, Vec<Value>) {
    let mut request = reqwest::Client::new()
        .post(app.url("/genesys/cometd"))
        .json(&batch);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.expect("post");
    assert_eq!(response.status(), 200);
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    (set_cookie, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn a_client_that_keeps_the_browser_cookie_must_always_bring_it() {
    // The stock CometD client handshakes with ext.gms_user only and keeps
    // cookies: the cookie is what binds its later requests.
    let app = spawn_app().await;
    let (cookie, answer) = post(
        &app,
        None,
        json!([{"channel": "/meta/handshake", "version": "1.0",
                "supportedConnectionTypes": ["long-polling"], "ext": {"gms_user": "ext-device"}}]),
    )
    .await;
    let cookie = cookie.expect("the handshake sets the browser cookie");
    assert!(cookie.starts_with("BAYEUX_BROWSER="), "{cookie}");
    let id = answer[0]["clientId"].as_str().expect("clientId").to_owned();
    let connect = json!([{"channel": "/meta/connect", "clientId": id,
                          "connectionType": "long-polling", "advice": {"timeout": 0}}]);
    let (_, answer) = post(&app, Some(&cookie), connect.clone()).await;
    assert_eq!(
        reply_on(&answer, "/meta/connect")["successful"],
        true,
        "{answer:?}"
    );

    // Without the cookie, or with another browser's, it is unknown.
    for other in [None, Some("BAYEUX_BROWSER=0123456789abcdef")] {
        let (_, answer) = post(&app, other, connect.clone()).await;
        assert_eq!(answer.len(), 1, "{answer:?}");
        assert_unknown(&answer[0], &id);
    }
    // The owner still is.
    let (_, answer) = post(&app, Some(&cookie), connect).await;
    assert_eq!(
        reply_on(&answer, "/meta/connect")["successful"],
        true,
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_websocket_speaks_only_for_the_client_it_handshook() {
    let app = spawn_app().await;
    let mut victim = BayeuxWs::open(&app, Who::Query("ws-victim".into()), "/_genesys").await;
    let id = victim.client_id.clone().expect("client id");
    let service = create_scheduled(&app, "ws-victim").await;
    victim.settle().await;

    // The attacker's socket, handshaken or not, names the victim's id.
    for handshaken in [false, true] {
        let mut attacker = BayeuxWs::new(&app, Who::Query("ws-attacker".into())).await;
        if handshaken {
            let reply = attacker.handshake().await;
            assert_eq!(reply["successful"], true, "{reply}");
        }
        attacker.client_id = Some(id.clone());
        attacker
            .send(vec![json!({"channel": "/meta/connect", "connectionType": "websocket", "advice": {"timeout": 0}})])
            .await;
        assert_unknown(&attacker.reply("/meta/connect").await, &id);
        attacker
            .send(vec![
                json!({"channel": "/meta/subscribe", "subscription": "/_genesys"}),
            ])
            .await;
        assert_unknown(&attacker.reply("/meta/subscribe").await, &id);
        internal_notification(&app, &service, "not for the attacker").await;
        while attacker.read(Duration::from_millis(300)).await {}
        assert_eq!(attacker.log, Vec::<Value>::new());
        // Nor over long-polling.
        let mut poller = LongPoll::new(&app, Who::Query("ws-victim".into()));
        poller.client_id = Some(id.clone());
        let answer = poller.connect().await;
        assert_eq!(answer.len(), 1, "{answer:?}");
        assert_unknown(&answer[0], &id);
    }

    // The victim heard both, and is still connected.
    for _ in 0..2 {
        victim
            .wait_for("the internal notification", |m| {
                is_internal(m, "not for the attacker")
            })
            .await;
    }
}

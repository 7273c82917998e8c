//! The agent push channel when callbackd checks callers: a socket or a
//! long-polling request that connects as an agent presents that agent's
//! credential in its headers, or, as a browser must, in the CometD
//! handshake's `ext` or the plain WebSocket's first frame; a device
//! connects by its id as before.

use futures_util::{SinkExt, StreamExt};

use tests::TestApp;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, http};

/// One credential per kind: ann's desktop (agent ann) and a supervisor.
fn credentials() -> String {
    let hash = access::hash_secret("long-enough-secret");
    format!(
        "[[credential]]\nname = \"ann-desktop\"\nrole = \"agent\"\nagent = \"ann\"\nsecret_hash = \"{hash}\"\n\
         [[credential]]\nname = \"floor\"\nrole = \"supervisor\"\nsecret_hash = \"{hash}\"\n"
    )
}

/// Opens the plain WebSocket as `query`, with an `x-api-key` if given; the
/// upgrade's HTTP status (101 when it opened).
async fn upgrade(app: &TestApp, query: &str, key: Option<&str>) -> u16 {
    let addr = app.base.strip_prefix("http://").unwrap();
    let mut request = format!("ws://{addr}/api/v1/push/ws?{query}")
        .into_client_request()
        .unwrap();
    if let Some(key) = key {
        request
            .headers_mut()
            .insert("x-api-key", http::HeaderValue::from_str(key).unwrap());
    }
    let tcp = TcpStream::connect(addr).await.unwrap();
    match tokio_tungstenite::client_async(request, tcp).await {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(res)) => res.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn an_agent_channel_needs_that_agents_credential() {
    let app = TestApp::builder().auth(&credentials()).spawn().await;
    let ann = Some("ann-desktop:long-enough-secret");
    let floor = Some("floor:long-enough-secret");
    // Without a credential in the headers the upgrade goes through: the
    // credential may come in the first frame (see below).
    assert_eq!(upgrade(&app, "agent_id=ann", None).await, 101);
    assert_eq!(
        upgrade(&app, "agent_id=ann", Some("ann-desktop:wrong")).await,
        401
    );
    assert_eq!(upgrade(&app, "agent_id=ann", ann).await, 101);
    assert_eq!(upgrade(&app, "agent_id=bob", ann).await, 403);
    assert_eq!(upgrade(&app, "agent_id=bob", floor).await, 101);
    // A device connects by its id alone, as GMS apps do.
    assert_eq!(upgrade(&app, "gms_user=device-1", None).await, 101);

    // The same rule on CometD long polling.
    let client = reqwest::Client::new();
    let handshake = serde_json::json!([{
        "channel": "/meta/handshake", "version": "1.0",
        "supportedConnectionTypes": ["long-polling"]
    }]);
    let post = |key: Option<&str>| {
        let mut req = client
            .post(app.url("/genesys/cometd?agent_id=ann"))
            .json(&handshake);
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        req.send()
    };
    // Without a credential the request is answered, and its handshake
    // refused as Bayeux refuses: a client may still send one in `ext`.
    let refused = post(None).await.unwrap();
    assert_eq!(refused.status(), 200);
    let refused: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(refused[0]["successful"], false, "{refused}");
    assert!(
        refused[0]["error"].as_str().unwrap().starts_with("401::"),
        "{refused}"
    );
    assert_eq!(post(Some("ann-desktop:wrong")).await.unwrap().status(), 401);
    let admitted: serde_json::Value = post(ann).await.unwrap().json().await.unwrap();
    assert_eq!(admitted[0]["successful"], true, "{admitted}");
}

/// What a plain WebSocket opened as `query` without headers answers to a
/// first `frame`: its hello (`Ok`) or the close code and reason.
async fn first_frame(
    app: &TestApp,
    query: &str,
    frame: &str,
) -> Result<serde_json::Value, (u16, String)> {
    let addr = app.base.strip_prefix("http://").unwrap();
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/push/ws?{query}"))
            .await
            .unwrap();
    socket
        .send(tungstenite::Message::text(frame))
        .await
        .unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
        .await
        .expect("an answer to the first frame");
    match next {
        Some(Ok(tungstenite::Message::Text(hello))) => Ok(serde_json::from_str(&hello).unwrap()),
        Some(Ok(tungstenite::Message::Close(Some(close)))) => {
            Err((close.code.into(), close.reason.to_string()))
        }
        other => panic!("{other:?}"),
    }
}

/// A browser cannot set headers on a WebSocket: an agent's desktop sends
/// its credential as the plain socket's first frame, a JSON object keyed
/// by the header's name. Until then it hears nothing; a wrong one, or one
/// for another agent, closes the socket with the HTTP status in the reason.
#[tokio::test]
async fn a_plain_socket_may_send_its_credential_first() {
    let app = TestApp::builder().auth(&credentials()).spawn().await;
    let hello = first_frame(
        &app,
        "agent_id=ann",
        r#"{"x-api-key": "ann-desktop:long-enough-secret"}"#,
    )
    .await
    .unwrap();
    assert_eq!(hello["channel"], "/meta/connected", "{hello}");
    assert_eq!(
        hello["data"]["channels"],
        serde_json::json!(["/agents/ann"])
    );
    let hello = first_frame(
        &app,
        "agent_id=bob",
        r#"{"authorization": "Bearer floor:long-enough-secret"}"#,
    )
    .await
    .unwrap();
    assert_eq!(
        hello["data"]["channels"],
        serde_json::json!(["/agents/bob"])
    );

    for (query, frame, code) in [
        (
            "agent_id=ann",
            r#"{"x-api-key": "ann-desktop:wrong"}"#,
            "401",
        ),
        ("agent_id=ann", r#"{}"#, "401"),
        ("agent_id=ann", "hello", "401"),
        ("agent_id=ann", r#"{"authorization": "Digest abc"}"#, "401"),
        (
            "agent_id=bob",
            r#"{"x-api-key": "ann-desktop:long-enough-secret"}"#,
            "403",
        ),
    ] {
        let (close, reason) = first_frame(&app, query, frame).await.unwrap_err();
        assert_eq!(close, 1008, "{query} {frame}: {reason}");
        assert!(reason.starts_with(code), "{query} {frame}: {reason}");
        assert!(
            !reason.contains("wrong"),
            "the reason echoes no secret: {reason}"
        );
    }
}

/// The next text frame of `socket`, as JSON.
async fn next_text<S>(socket: &mut S) -> serde_json::Value
where
    S: futures_util::Stream<Item = Result<tungstenite::Message, tungstenite::Error>> + Unpin,
{
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
            .await
            .expect("a frame")
            .unwrap()
            .unwrap();
        if let tungstenite::Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// A supervisor's board listens on `/supervisors` over the plain
/// WebSocket: only a supervisor's (or an admin's) credential opens it, in
/// the upgrade's headers or the first frame; then every service's changes
/// arrive, whoever made them.
#[tokio::test]
async fn a_supervisors_board_hears_every_services_changes() {
    let app = TestApp::builder().auth(&credentials()).spawn().await;
    let ann = Some("ann-desktop:long-enough-secret");
    let floor = Some("floor:long-enough-secret");
    assert_eq!(upgrade(&app, "supervisor=true", ann).await, 403);
    assert_eq!(
        upgrade(&app, "supervisor=true", Some("floor:wrong")).await,
        401
    );
    assert_eq!(upgrade(&app, "supervisor=true", floor).await, 101);
    assert_eq!(
        upgrade(&app, "supervisor=true&agent_id=ann", floor).await,
        400
    );
    let (close, reason) = first_frame(
        &app,
        "supervisor=true",
        r#"{"x-api-key": "ann-desktop:long-enough-secret"}"#,
    )
    .await
    .unwrap_err();
    assert_eq!((close, &reason[..3]), (1008, "403"), "{reason}");

    let addr = app.base.strip_prefix("http://").unwrap();
    let (mut board, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/push/ws?supervisor=true"))
            .await
            .unwrap();
    board
        .send(tungstenite::Message::text(
            r#"{"authorization": "Bearer floor:long-enough-secret"}"#,
        ))
        .await
        .unwrap();
    let hello = next_text(&mut board).await;
    assert_eq!(
        hello["data"]["channels"],
        serde_json::json!(["/supervisors"])
    );

    // A service is created and cancelled (by a supervisor's calls here).
    let client = reqwest::Client::new();
    let created: serde_json::Value = client
        .post(app.url("/genesys/1/service/callback/chat-delay"))
        .header("x-api-key", "floor:long-enough-secret")
        .multipart(tests::multipart(&[("_customer_number", "5550100")]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["_id"].as_str().unwrap().to_owned();
    let changed = next_text(&mut board).await;
    assert_eq!(changed["channel"], "/supervisors", "{changed}");
    assert_eq!(changed["tag"], format!("service.changed.{id}"));
    assert_eq!(changed["data"]["_callback_state"], "QUEUED", "{changed}");
    assert_eq!(changed["data"]["queue"], "support");
    let status = client
        .delete(app.url(&format!("/genesys/1/service/callback/chat-delay/{id}")))
        .header("x-api-key", "floor:long-enough-secret")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let changed = next_text(&mut board).await;
    assert_eq!(changed["data"]["_callback_state"], "COMPLETED", "{changed}");
    assert_eq!(changed["data"]["_callback_reason"], "CANCELLED");
}

/// The waiting room's socket (`?service=<id>`) opens only for a booked
/// video service; and a room's socket only with that room's token.
#[tokio::test]
async fn waiting_room_and_room_sockets_refuse_what_they_are_not_for() {
    let app = tests::spawn_app().await;
    let (_, created) = app
        .post_form(
            "/genesys/1/service/callback/chat-delay",
            &[("_customer_number", "5550100")],
        )
        .await;
    let chat = created["_id"].as_str().unwrap().to_owned();
    for (query, status) in [
        (format!("service={chat}"), 404),
        (
            "service=00000000-0000-4000-8000-000000000000".to_owned(),
            404,
        ),
        ("service=not%20an%20id".to_owned(), 400),
        (format!("service={chat}&gms_user=d1"), 400),
        ("room=K7QX4MA&token=nope".to_owned(), 404),
        ("room=K7QX4MA".to_owned(), 400),
    ] {
        assert_eq!(upgrade(&app, &query, None).await, status, "{query}");
    }
}

/// The long-polling handshake, too, may carry the credential in `ext`
/// (`authorization` or `x-api-key`), and `ext.agent_id` needs one as the
/// query parameter does.
#[tokio::test]
async fn a_handshake_may_carry_its_credential_in_ext() {
    let app = TestApp::builder().auth(&credentials()).spawn().await;
    let client = reqwest::Client::new();
    let handshake = |ext: serde_json::Value| {
        let batch = serde_json::json!([{"channel": "/meta/handshake", "version": "1.0",
            "supportedConnectionTypes": ["long-polling"], "ext": ext}]);
        let request = client.post(app.url("/genesys/cometd")).json(&batch).send();
        async move {
            let answer: serde_json::Value = request.await.unwrap().json().await.unwrap();
            answer[0].clone()
        }
    };
    for (ext, expected) in [
        (serde_json::json!({"agent_id": "ann"}), "401"),
        (
            serde_json::json!({"agent_id": "ann", "x-api-key": "ann-desktop:wrong"}),
            "401",
        ),
        (
            serde_json::json!({"agent_id": "ann", "authorization": 7}),
            "400",
        ),
        (
            serde_json::json!({"agent_id": "bob", "x-api-key": "ann-desktop:long-enough-secret"}),
            "403",
        ),
        (
            serde_json::json!({"agent_id": "ann", "x-api-key": "ann-desktop:long-enough-secret"}),
            "ok",
        ),
        (
            serde_json::json!({"agent_id": "bob", "authorization": "Bearer floor:long-enough-secret"}),
            "ok",
        ),
        (serde_json::json!({"gms_user": "device-1"}), "ok"),
    ] {
        let reply = handshake(ext.clone()).await;
        if expected == "ok" {
            assert_eq!(reply["successful"], true, "{ext}: {reply}");
        } else {
            assert_eq!(reply["successful"], false, "{ext}: {reply}");
            let error = reply["error"].as_str().unwrap();
            assert!(
                error.starts_with(&format!("{expected}::")),
                "{ext}: {reply}"
            );
            assert!(!error.contains("wrong"), "{error}");
        }
    }
}

/// A CometD session handshaken with one credential answers only to it: the
/// same client id with another credential (even one allowed to act for
/// that agent) is an unknown client.
#[tokio::test]
async fn a_session_answers_only_to_the_credential_that_handshook_it() {
    let app = TestApp::builder().auth(&credentials()).spawn().await;
    let client = reqwest::Client::new();
    let post = |key: &str, batch: serde_json::Value| {
        client
            .post(app.url("/genesys/cometd?agent_id=ann"))
            .header("x-api-key", key)
            .json(&batch)
            .send()
    };
    let ann = "ann-desktop:long-enough-secret";
    let floor = "floor:long-enough-secret";
    let answer: serde_json::Value = post(
        ann,
        serde_json::json!([{"channel": "/meta/handshake", "version": "1.0",
            "supportedConnectionTypes": ["long-polling"]}]),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let id = answer[0]["clientId"].as_str().expect("clientId").to_owned();
    let subscribe = serde_json::json!([{"channel": "/meta/subscribe", "clientId": id,
        "subscription": "/agents/ann"}]);
    let theirs: serde_json::Value = post(floor, subscribe.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs[0]["successful"], false, "{theirs}");
    assert!(
        theirs[0]["error"].as_str().unwrap().starts_with("402"),
        "{theirs}"
    );
    let own: serde_json::Value = post(ann, subscribe).await.unwrap().json().await.unwrap();
    assert_eq!(own[0]["successful"], true, "{own}");
}

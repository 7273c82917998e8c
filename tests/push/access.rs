//! The agent push channel when callbackd checks callers: a socket or a
//! long-polling request that connects as an agent presents that agent's
//! credential in its headers; a device connects by its id as before.

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
    assert_eq!(upgrade(&app, "agent_id=ann", None).await, 401);
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
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(post(ann).await.unwrap().status(), 200);
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

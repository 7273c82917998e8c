//! Queue positions pushed to waiting customers as the queue moves, and only
//! to the device that owns each service.

use std::time::Duration;

use serde_json::{json, Value};
use tests::{spawn_app, TestApp};

/// A minimal Bayeux long-polling device client.
struct Device {
    client_id: String,
}

impl Device {
    async fn connect(app: &TestApp, gms_user: &str) -> Device {
        let answer = bayeux(
            app,
            json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"], "ext": {"gms_user": gms_user}}]),
        )
        .await;
        let client_id = answer[0]["clientId"].as_str().expect("clientId").to_owned();
        let answer = bayeux(
            app,
            json!([
                {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/_genesys"},
                {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling", "advice": {"timeout": 0}},
            ]),
        )
        .await;
        assert_eq!(answer[0]["successful"], true, "{answer}");
        Device { client_id }
    }

    /// Long-polls until a message with this tag prefix arrives; answers its data.
    async fn next(&self, app: &TestApp, tag_prefix: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            assert!(tokio::time::Instant::now() < deadline, "no {tag_prefix}");
            let answer = bayeux(
                app,
                json!([{"channel": "/meta/connect", "clientId": self.client_id, "connectionType": "long-polling"}]),
            )
            .await;
            let found = answer.as_array().unwrap().iter().find(|m| {
                m["channel"] == "/_genesys"
                    && m["data"]["tag"]
                        .as_str()
                        .is_some_and(|t| t.starts_with(tag_prefix))
            });
            if let Some(m) = found {
                return m["data"].clone();
            }
        }
    }
}

async fn bayeux(app: &TestApp, body: Value) -> Value {
    let (status, answer) = app.post_json("/genesys/cometd", &body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

async fn create_for(app: &TestApp, device: &str) -> String {
    let (status, body) = app
        .post_form(
            "/genesys/1/service/callback/chat-delay",
            &[
                ("_customer_number", "5550000"),
                ("_device_notification_id", device),
                ("_device_os", "comet"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_waiting_customer_sees_the_queue_move() {
    let app = spawn_app().await;
    let first = create_for(&app, "pos-device-1").await;
    let _second = create_for(&app, "pos-device-2").await;
    let third = create_for(&app, "pos-device-3").await;

    // The third customer connects after creating: it still learns where it is.
    let device = Device::connect(&app, "pos-device-3").await;
    let tag = format!("service.position.{third}");
    let data = device.next(&app, &tag).await;
    assert_eq!(data["tag"], tag.as_str());
    assert_eq!(data["message"]["_id"], third.as_str());
    assert_eq!(data["message"]["_action"], "position");
    assert_eq!(data["message"]["_position"], 3);
    assert_eq!(data["message"]["_total_waiting"], 3);

    // The first leaves: the third moves up.
    let (status, _) = app
        .delete(&format!("/genesys/1/service/callback/chat-delay/{first}"))
        .await;
    assert_eq!(status, 200);
    let data = device.next(&app, &tag).await;
    assert_eq!(
        (
            &data["message"]["_position"],
            &data["message"]["_total_waiting"]
        ),
        (&json!(2), &json!(2))
    );

    // An agent takes the next one, then the third: its state moves on.
    app.ready_agent("pos-agent", &["support"], 2).await;
    let state = device.next(&app, &format!("service.state.{third}")).await;
    assert_eq!(state["message"]["_callback_state"], "ROUTING");
}

#[tokio::test]
async fn positions_go_only_to_the_owner() {
    let app = spawn_app().await;
    let mine = create_for(&app, "owner-a").await;
    let theirs = create_for(&app, "owner-b").await;
    let a = Device::connect(&app, "owner-a").await;
    let data = a.next(&app, "service.position.").await;
    assert_eq!(data["message"]["_id"], mine.as_str());
    // Owner b is not listening; a must never see b's position. Another look
    // (a held connect, answered when the connect timeout or a message
    // comes) must not carry it either.
    let answer = tokio::time::timeout(
        Duration::from_secs(3),
        bayeux(
            &app,
            json!([{"channel": "/meta/connect", "clientId": a.client_id, "connectionType": "long-polling"}]),
        ),
    )
    .await;
    if let Ok(answer) = answer {
        assert!(
            !answer.to_string().contains(&theirs),
            "owner a saw owner b's service: {answer}"
        );
    }
}

//! Video from a client's side: a chat to escalate, the escalation itself
//! (customer and agent), the room API with either way of showing a room
//! token, and the video notifications read out of the outboxes. Shared by
//! `tests/api/video.rs` and `tests/push/video.rs`.

use serde_json::Value;

use crate::{text, TestApp, WAIT};

/// The routingData the seed sends with its video escalation.
pub const ROUTING: &str = r#"{"queueId":"video","skills":["Arabic","Video"],"priority":5,"attributes":{"productLine":"Post-paid"}}"#;

/// Room codes are drawn from letters and digits that cannot be misread.
pub const CODE_ALPHABET: &str = "ACDEFGHJKMNPQRTUVWXY34679";

/// How a room request proves its side.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    /// `?token=…`, as the links handed out carry it.
    Query(&'a str),
    /// `Authorization: Bearer …`.
    Bearer(&'a str),
}

impl TestApp {
    /// A chat-immediate service for `device`, its chat opened by "Bob" with
    /// one message, taken by `agent` (the caller makes sure only that agent
    /// can take it).
    pub async fn chat_with(&self, agent: &str, customer: &str, device: &str) -> String {
        let (status, created) = self
            .post_form(
                "/genesys/1/service/callback/chat-immediate",
                &[
                    ("_customer_number", customer),
                    ("usr_customer_name", "Bob Markel"),
                    ("usr_segment", "gold"),
                    ("_device_notification_id", device),
                    ("_device_os", "comet"),
                ],
            )
            .await;
        assert_eq!(status, 200, "create: {created}");
        let id = text(&created["_id"]);
        let (status, chat) = self
            .post_form(
                &format!("/genesys/1/service/{id}/ixn/chat"),
                &[("nickname", "Bob"), ("subject", "my contract")],
            )
            .await;
        assert_eq!(status, 200, "ixn/chat: {chat}");
        let (status, sent) = self
            .post_form(
                &format!("/genesys/1/service/{id}/ixn/chat/send"),
                &[("message", "can we talk on video?")],
            )
            .await;
        assert_eq!(status, 200, "ixn/chat/send: {sent}");
        let rec = self.wait_for_state(&id, "PROCESSING", WAIT).await;
        assert_eq!(rec["agent"], agent, "the chat went to another agent: {rec}");
        id
    }

    /// POST .../ixn/video as the seed's page sends it (multipart).
    pub async fn customer_video(&self, id: &str, fields: &[(&str, &str)]) -> (u16, Value) {
        self.post_form(&format!("/genesys/1/service/{id}/ixn/video"), fields)
            .await
    }

    /// POST /api/v1/services/{id}/video as the agent desktop sends it (JSON).
    pub async fn agent_video(&self, id: &str, body: &Value) -> (u16, Value) {
        self.post_json(&format!("/api/v1/services/{id}/video"), body)
            .await
    }

    /// A request to `/api/v1/rooms/{code}` (`action` empty) or
    /// `/api/v1/rooms/{code}/{action}`, with the token shown as `auth` and
    /// an optional JSON body; (status, JSON body or the text as a string).
    pub async fn room_request(
        &self,
        method: reqwest::Method,
        code: &str,
        action: &str,
        auth: Auth<'_>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let path = if action.is_empty() {
            format!("/api/v1/rooms/{code}")
        } else {
            format!("/api/v1/rooms/{code}/{action}")
        };
        let mut url = reqwest::Url::parse(&self.url(&path)).expect("url");
        if let Auth::Query(token) = auth {
            url.query_pairs_mut().append_pair("token", token);
        }
        let mut request = self.client.request(method, url);
        if let Auth::Bearer(token) = auth {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        crate::status_json(request.send().await.expect("room request")).await
    }

    /// POST /api/v1/rooms/{code}/{action}, asserting 200; the room as that side sees it.
    pub async fn room_ok(&self, code: &str, action: &str, auth: Auth<'_>) -> Value {
        let (status, body) = self
            .room_request(reqwest::Method::POST, code, action, auth, None)
            .await;
        assert_eq!(status, 200, "room {action}: {body}");
        body
    }

    /// Like [`TestApp::room_ok`], with a JSON body (a signal, a survey).
    pub async fn room_send(&self, code: &str, action: &str, auth: Auth<'_>, body: &Value) -> Value {
        let (status, answer) = self
            .room_request(reqwest::Method::POST, code, action, auth, Some(body))
            .await;
        assert_eq!(status, 200, "room {action}: {answer}");
        answer
    }

    /// GET /api/v1/rooms/{code}, asserting 200.
    pub async fn room_view(&self, code: &str, auth: Auth<'_>) -> Value {
        let (status, body) = self
            .room_request(reqwest::Method::GET, code, "", auth, None)
            .await;
        assert_eq!(status, 200, "room view: {body}");
        body
    }

    /// The device's video notifications (payloads), taken out of its outbox.
    pub async fn device_video_notes(&self, id: &str) -> Vec<Value> {
        let (status, body) = self
            .post_form(
                &format!("/genesys/1/service/{id}/retrieve-notifications"),
                &[],
            )
            .await;
        assert_eq!(status, 200, "retrieve-notifications: {body}");
        body.as_array()
            .unwrap_or_else(|| panic!("an array: {body}"))
            .iter()
            .filter(|n| n["_action"] == "video")
            .cloned()
            .collect()
    }

    /// The agent desktop's `agent.video.<id>` notifications (parsed), taken
    /// out of the agent outbox.
    pub async fn agent_video_notes(&self, id: &str) -> Vec<Value> {
        let (status, body) = self
            .post_form(
                &format!("/genesys/1/service/{id}/retrieve-agent-notifications"),
                &[],
            )
            .await;
        assert_eq!(status, 200, "retrieve-agent-notifications: {body}");
        let tag = format!("agent.video.{id}");
        body.as_array()
            .unwrap_or_else(|| panic!("an array: {body}"))
            .iter()
            .filter(|n| n["tag"] == tag.as_str())
            .map(|n| {
                let text = n["message"].as_str().expect("message is JSON text");
                serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
            })
            .collect()
    }
}

/// The last room of the record's video leg.
pub fn last_room(rec: &Value) -> Value {
    rec["video"]["rooms"]
        .as_array()
        .and_then(|r| r.last())
        .cloned()
        .unwrap_or_else(|| panic!("no room in {rec}"))
}

/// The `_event` of each notification.
pub fn events(notes: &[Value]) -> Vec<String> {
    notes.iter().map(|n| text(&n["_event"])).collect()
}

/// A room code: seven characters of [`CODE_ALPHABET`].
pub fn assert_code(code: &str) {
    assert_eq!(code.chars().count(), 7, "{code}");
    assert!(
        code.chars().all(|c| CODE_ALPHABET.contains(c)),
        "{code} uses a character outside {CODE_ALPHABET}"
    );
}

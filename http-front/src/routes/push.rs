//! Push endpoints: the Bayeux (CometD) server on `/genesys/cometd`, and the
//! plain WebSocket on `/api/v1/push/ws`. The protocols live in the `push`
//! crate; this file only moves HTTP bodies and WebSocket frames.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{SinkExt, StreamExt};
use push::bayeux::{parse_batch, Origin};
use push::plain::{Plain, PlainError};
use push::registry::Refused;
use push::{Bayeux, Close, Frame};
use serde::Deserialize;
use serde_json::Value;

use crate::error::AppError;
use crate::extract::Query;
use crate::AppState;

/// Query parameters a push client may use to say who it is; browsers cannot
/// set headers on a WebSocket.
#[derive(Debug, Default, Deserialize)]
pub struct Who {
    gms_user: Option<String>,
    agent_id: Option<String>,
}

fn origin(headers: &HeaderMap, who: Who) -> Result<Origin, AppError> {
    let header = headers
        .get("gms_user")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let origin = Origin {
        gms_user: header.or(who.gms_user),
        agent_id: who.agent_id,
        ..Origin::default()
    };
    for (field, value) in [
        ("gms_user", &origin.gms_user),
        ("agent_id", &origin.agent_id),
    ] {
        if let Some(why) = value.as_deref().and_then(push::bayeux::bad_owner_id) {
            return Err(AppError::field(field, why));
        }
    }
    Ok(origin)
}

/// The origin a push request claims, checked: an agent's channel needs that
/// agent's credential (or a supervisor's) when callbackd checks callers; a
/// device's channel needs only its `gms_user` (the service's
/// `_device_notification_id`, which only the app knows).
async fn checked_origin(
    state: &AppState,
    headers: &HeaderMap,
    who: Who,
) -> Result<Origin, AppError> {
    let mut origin = origin(headers, who)?;
    if let Some(agent) = &origin.agent_id {
        if !state.access.is_open() {
            let caller = crate::auth::Caller(crate::auth::identify(state, headers).await?);
            caller.for_agent(agent)?;
            // The session is bound to this credential, too: a later
            // request for it must present the same one.
            origin.credential = Some(caller.0.name);
        }
    }
    Ok(origin)
}

/// An optional WebSocket upgrade: the same path serves long-polling POSTs.
pub struct MaybeUpgrade(Option<WebSocketUpgrade>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeUpgrade {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybeUpgrade(
            WebSocketUpgrade::from_request_parts(parts, state)
                .await
                .ok(),
        ))
    }
}

/// POST /genesys/cometd[/...]: a long-polling batch.
#[tracing::instrument(skip_all)]
pub async fn long_poll(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(who): Query<Who>,
    body: axum::body::Body,
) -> Result<Response, AppError> {
    let mut origin = checked_origin(&state, &headers, who).await?;
    // Outside the API's request timeout: a body that trickles (and so
    // escapes the body guard's stall timeout) is cut here.
    let body = tokio::time::timeout(BODY_WITHIN, crate::form::read_body(body))
        .await
        .map_err(|_| {
            AppError::BodyTimeout(format!("not received within {}s", BODY_WITHIN.as_secs()))
        })??;
    let text = std::str::from_utf8(&body).map_err(|_| AppError::body("is not UTF-8"))?;
    // CometD may also send the batch as a form field `message`.
    let text = if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
    {
        serde_urlencoded::from_str::<Vec<(String, String)>>(text)
            .ok()
            .and_then(|f| f.into_iter().find(|(k, _)| k == "message").map(|(_, v)| v))
            .ok_or_else(|| AppError::missing("message"))?
    } else {
        text.to_owned()
    };
    let batch = parse_batch(&text).map_err(AppError::body)?;
    // The browser cookie binds a session to the client that handshook it
    // (see push's `Binding`): a handshake without one gets a new one.
    origin.browser = browser_cookie(&headers);
    let set_cookie = (origin.browser.is_none()
        && batch.iter().any(|m| m["channel"] == "/meta/handshake"))
    .then(|| uuid::Uuid::new_v4().simple().to_string());
    if set_cookie.is_some() {
        origin.browser = set_cookie.clone();
    }
    let bayeux = Bayeux::new(state.shell.registry().clone());
    let replies = bayeux.long_poll(&batch, &origin).await;
    let mut response = Json(Value::Array(replies)).into_response();
    if let Some(browser) = set_cookie {
        let cookie = format!("{BROWSER_COOKIE}={browser}; Path=/genesys/cometd; HttpOnly");
        if let Ok(value) = header::HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// The cookie that names a long-polling client's browser, as CometD's
/// servers call it.
const BROWSER_COOKIE: &str = "BAYEUX_BROWSER";

/// The browser cookie the request brought, if any.
fn browser_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == BROWSER_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 64)
}

/// GET /genesys/cometd: the Bayeux `websocket` transport.
#[tracing::instrument(skip_all)]
pub async fn cometd_socket(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(who): Query<Who>,
    MaybeUpgrade(upgrade): MaybeUpgrade,
) -> Result<Response, AppError> {
    let Some(upgrade) = upgrade else {
        return Err(AppError::BadRequest {
            message:
                "/genesys/cometd: GET must be a WebSocket upgrade; long-polling POSTs its batch"
                    .into(),
            exception: "INVALID_REQUEST",
        });
    };
    let origin = checked_origin(&state, &headers, who).await?;
    room_for_a_socket(&state)?;
    let bayeux = Bayeux::new(state.shell.registry().clone());
    Ok(tuned(upgrade).on_upgrade(move |socket| async move {
        let (sink, stream) = frames(socket);
        bayeux.websocket(stream, sink, origin).await;
    }))
}

/// GET /api/v1/push/ws?gms_user=...|agent_id=...: the plain WebSocket.
#[tracing::instrument(skip_all)]
pub async fn plain_socket(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(who): Query<Who>,
    MaybeUpgrade(upgrade): MaybeUpgrade,
) -> Result<Response, AppError> {
    let Some(upgrade) = upgrade else {
        return Err(AppError::BadRequest {
            message: "/api/v1/push/ws: must be a WebSocket upgrade".into(),
            exception: "INVALID_REQUEST",
        });
    };
    let origin = checked_origin(&state, &headers, who).await?;
    room_for_a_socket(&state)?;
    let plain = Plain::new(state.shell.registry().clone());
    let opened = match plain.open(origin.gms_user, origin.agent_id) {
        Ok(o) => o,
        Err(PlainError::NoOwner) => return Err(AppError::missing("gms_user")),
        Err(PlainError::Refused(r @ (Refused::TooManyClients(_) | Refused::ShuttingDown))) => {
            return Err(AppError::Busy(r.to_string()))
        }
    };
    Ok(tuned(upgrade).on_upgrade(move |socket| async move {
        let (sink, stream) = frames(socket);
        plain.serve(opened, stream, sink).await;
    }))
}

/// How long a long-polling request may take to send its body.
const BODY_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Refuses an upgrade when this node already serves as many sockets as it
/// may have clients: a socket that never handshakes must not be free.
fn room_for_a_socket(state: &AppState) -> Result<(), AppError> {
    let registry = state.shell.registry();
    if registry.open_sockets() >= registry.limits.max_clients {
        return Err(AppError::Busy(format!(
            "too many WebSockets on this node ({}); try again later",
            registry.limits.max_clients
        )));
    }
    Ok(())
}

/// Largest frame a client may send.
const MAX_FRAME: usize = 64 * 1024;

/// The socket's read buffer. tungstenite's default (128 KiB) is zero-filled
/// and stays resident: 137 KB per idle subscriber. Client frames are small
/// (Bayeux messages, pongs), so a few KiB is plenty; larger ones still fit,
/// read in several steps.
const READ_BUFFER: usize = 4 * 1024;

/// Frames go out at once rather than gathering in a buffer: latency first,
/// and no idle memory.
const WRITE_BUFFER: usize = 0;

/// Every push socket's frame limit and buffers.
fn tuned(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade
        .max_message_size(MAX_FRAME)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
}

/// The socket as push [`Frame`]s.
fn frames(
    socket: WebSocket,
) -> (
    impl futures_util::Sink<Frame, Error = axum::Error> + Unpin,
    impl futures_util::Stream<Item = Result<Frame, axum::Error>> + Unpin,
) {
    let (sink, stream) = socket.split();
    let sink = sink.with(|f: Frame| async move { Ok::<_, axum::Error>(to_message(f)) });
    let stream = stream.map(|m| m.map(from_message));
    (Box::pin(sink), stream)
}

fn to_message(frame: Frame) -> Message {
    match frame {
        Frame::Text(t) => Message::Text(t.into()),
        Frame::Binary(b) => Message::Binary(b.into()),
        Frame::Ping(p) => Message::Ping(p.into()),
        Frame::Pong(p) => Message::Pong(p.into()),
        Frame::Close(c) => Message::Close(c.map(|Close { code, reason }| CloseFrame {
            code,
            reason: reason.into(),
        })),
    }
}

fn from_message(m: Message) -> Frame {
    match m {
        Message::Text(t) => Frame::Text(t.to_string()),
        Message::Binary(b) => Frame::Binary(b.to_vec()),
        Message::Ping(p) => Frame::Ping(p.to_vec()),
        Message::Pong(p) => Frame::Pong(p.to_vec()),
        Message::Close(c) => Frame::Close(c.map(|c| Close {
            code: c.code,
            reason: c.reason.to_string(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_cookie_is_found_among_others_and_an_odd_one_is_ignored() {
        let with = |cookie: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::COOKIE, cookie.parse().unwrap());
            browser_cookie(&headers)
        };
        assert_eq!(with("a=1; BAYEUX_BROWSER=abc; b=2").as_deref(), Some("abc"));
        assert_eq!(with("BAYEUX_BROWSERX=abc"), None);
        assert_eq!(with("BAYEUX_BROWSER="), None);
        assert_eq!(with(&format!("BAYEUX_BROWSER={}", "x".repeat(65))), None);
        assert_eq!(browser_cookie(&HeaderMap::new()), None);
    }
}

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
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use push::bayeux::{parse_batch, Admission, Denied, ExtCredential, Origin};
use push::plain::{Plain, PlainError};
use push::registry::Refused;
use push::{Bayeux, Close, Frame};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{self, Caller};
use crate::error::AppError;
use crate::extract::Query;
use crate::AppState;

/// Query parameters a push client may use to say who it is; browsers cannot
/// set headers on a WebSocket.
#[derive(Debug, Default, Deserialize)]
pub struct Who {
    gms_user: Option<String>,
    agent_id: Option<String>,
    /// `true`: a supervisor's board on the plain WebSocket (every
    /// service's changes, on a supervisor's credential).
    supervisor: Option<bool>,
    /// A video room's code: the room page, with that side's `token`.
    room: Option<String>,
    /// A booked video service's id (its join link's secret): the waiting
    /// room page hears its video events, to move on when a room opens.
    service: Option<String>,
    token: Option<String>,
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

/// The origin a push request claims, checked. When callbackd checks
/// callers, a credential in the headers is checked here (401 or 403 before
/// anything else) and binds the session. An agent's channel needs that
/// agent's credential (or a supervisor's); a request without one in its
/// headers gets its chance later (a browser cannot set headers on a
/// WebSocket): in the CometD handshake's `ext` ([`HandshakeCheck`]) or the
/// plain WebSocket's first frame ([`first_frame_credential`]). A device's
/// channel needs only its `gms_user` (the service's
/// `_device_notification_id`, which only the app knows). A supervisor's
/// board (`supervisor`) needs a supervisor's credential the same way.
async fn checked_origin(
    state: &AppState,
    headers: &HeaderMap,
    who: Who,
    supervisor: bool,
) -> Result<Origin, AppError> {
    let mut origin = origin(headers, who)?;
    if state.access.is_open() {
        return Ok(origin);
    }
    let (authorization, api_key) = auth::presented_headers(headers)?;
    if authorization.is_none() && api_key.is_none() {
        return Ok(origin);
    }
    let caller = Caller(auth::identify_values(state, authorization, api_key).await?);
    if let Some(agent) = &origin.agent_id {
        caller.for_agent(agent)?;
    }
    if supervisor {
        caller.require(access::Role::Supervisor)?;
    }
    // The session is bound to this credential, too: a later request for
    // it must present the same one.
    origin.credential = Some(caller.0.name);
    Ok(origin)
}

/// The front's check of a CometD handshake that asks for an agent's
/// channel: the credential in the handshake's `ext`, else the one in the
/// request's headers, must be allowed to act for that agent.
struct HandshakeCheck {
    state: Arc<AppState>,
    authorization: Option<String>,
    api_key: Option<String>,
}

impl HandshakeCheck {
    /// The check for a request (or upgrade) with these headers; `None`
    /// when callbackd runs open.
    fn for_request(state: &Arc<AppState>, headers: &HeaderMap) -> Option<Arc<HandshakeCheck>> {
        if state.access.is_open() {
            return None;
        }
        let value = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Some(Arc::new(HandshakeCheck {
            state: state.clone(),
            authorization: value("authorization"),
            api_key: value("x-api-key"),
        }))
    }
}

impl Admission for HandshakeCheck {
    fn admit_agent<'a>(
        &'a self,
        agent: &'a str,
        ext: ExtCredential<'a>,
    ) -> BoxFuture<'a, Result<(), Denied>> {
        Box::pin(async move {
            let (authorization, api_key) = if ext.is_some() {
                (ext.authorization, ext.api_key)
            } else {
                (self.authorization.as_deref(), self.api_key.as_deref())
            };
            let who = auth::identify_values(&self.state, authorization, api_key)
                .await
                .map_err(denied)?;
            Caller(who).for_agent(agent).map_err(denied)
        })
    }
}

/// An error of the credential check as a Bayeux refusal: its HTTP status
/// is the Bayeux code.
fn denied(e: AppError) -> Denied {
    Denied {
        code: e.status().as_u16(),
        message: e.to_string(),
    }
}

/// How long a plain WebSocket that connects as an agent without a
/// credential in its headers has to send one in its first frame.
const FIRST_FRAME_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Whom a plain WebSocket's first-frame credential must be allowed to act as.
enum Wanted {
    Agent(String),
    Supervisor,
}

/// Reads a plain WebSocket's first frame as its credential: a JSON object
/// with the header names as keys, `{"authorization": "Bearer …"}` or
/// `{"x-api-key": "…"}`, and checks it may act as `wanted`. `Err` is the
/// close frame to answer with.
async fn first_frame_credential<S, E>(
    state: &AppState,
    wanted: &Wanted,
    stream: &mut S,
) -> Result<String, Close>
where
    S: futures_util::Stream<Item = Result<Frame, E>> + Unpin,
{
    let policy = |reason: String| Close {
        code: push::close_code::POLICY,
        reason: close_reason(&reason),
    };
    let text = tokio::time::timeout(FIRST_FRAME_WITHIN, async {
        loop {
            match stream.next().await {
                Some(Ok(Frame::Text(t))) => return Some(t),
                Some(Ok(Frame::Binary(b))) => return String::from_utf8(b).ok(),
                // Control frames before the credential are no answer.
                Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => continue,
                Some(Ok(Frame::Close(_)) | Err(_)) | None => return None,
            }
        }
    })
    .await
    .map_err(|_| {
        policy(format!(
            "401: no credential within {}s: send {{\"authorization\": \"Bearer …\"}} first",
            FIRST_FRAME_WITHIN.as_secs()
        ))
    })?
    .ok_or_else(|| policy("401: the first frame must be a JSON credential".into()))?;
    let frame: FirstFrame = serde_json::from_str(&text).map_err(|_| {
        policy("401: the first frame must be {\"authorization\": …} or {\"x-api-key\": …}".into())
    })?;
    let who = auth::identify_values(
        state,
        frame.authorization.as_deref(),
        frame.api_key.as_deref(),
    )
    .await
    .and_then(|who| {
        let caller = Caller(who);
        match wanted {
            Wanted::Agent(agent) => caller.for_agent(agent)?,
            Wanted::Supervisor => caller.require(access::Role::Supervisor)?,
        }
        Ok(caller.0.name)
    })
    .map_err(|e| policy(format!("{}: {e}", e.status().as_u16())))?;
    Ok(who)
}

/// The credential a plain WebSocket may send as its first frame.
#[derive(Deserialize)]
struct FirstFrame {
    authorization: Option<String>,
    #[serde(rename = "x-api-key")]
    api_key: Option<String>,
}

/// A close frame's reason is at most 123 bytes: cut on a character.
fn close_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
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
#[tracing::instrument(level = "debug", skip_all)]
pub async fn long_poll(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(who): Query<Who>,
    body: axum::body::Body,
) -> Result<Response, AppError> {
    let mut origin = checked_origin(&state, &headers, who, false).await?;
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
    let bayeux = bayeux_for(&state, &headers);
    // The request's header values are slices of hyper's read buffer: held
    // for the length of a connect, they would keep that buffer alive beside
    // the one hyper reads the next request into (8 KiB per long-polling
    // client). Everything needed from them is read by now.
    drop(headers);
    drop((body, text));
    let replies = bayeux.long_poll(batch, &origin).await;
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
#[tracing::instrument(level = "debug", skip_all)]
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
    let origin = checked_origin(&state, &headers, who, false).await?;
    room_for_a_socket(&state)?;
    let bayeux = bayeux_for(&state, &headers);
    Ok(tuned(upgrade).on_upgrade(move |socket| async move {
        let (sink, stream) = frames(socket);
        bayeux.websocket(stream, sink, origin).await;
    }))
}

/// The Bayeux server for one request or socket, checking its handshakes
/// when callbackd checks callers.
fn bayeux_for(state: &Arc<AppState>, headers: &HeaderMap) -> Bayeux {
    let bayeux = Bayeux::new(state.shell.registry().clone());
    match HandshakeCheck::for_request(state, headers) {
        Some(check) => bayeux.admitting(check),
        None => bayeux,
    }
}

/// GET /api/v1/push/ws?gms_user=...|agent_id=...: the plain WebSocket.
#[tracing::instrument(level = "debug", skip_all)]
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
    if let Some(code) = who.room.clone() {
        return room_socket(state, &who, &code, upgrade).await;
    }
    if let Some(id) = who.service.clone() {
        return waiting_room_socket(state, &who, &id, upgrade).await;
    }
    let supervisor = who.supervisor == Some(true);
    if supervisor && (who.gms_user.is_some() || who.agent_id.is_some()) {
        return Err(AppError::field(
            "supervisor",
            "a supervisor's board names no gms_user or agent_id",
        ));
    }
    let origin = checked_origin(&state, &headers, who, supervisor).await?;
    room_for_a_socket(&state)?;
    let plain = Plain::new(state.shell.registry().clone());
    // An agent or a supervisor that brought no credential in its headers
    // (a browser cannot) sends it as the first frame; until then it has no
    // channel.
    let unproven = !state.access.is_open() && origin.credential.is_none();
    let deferred = match &origin.agent_id {
        Some(agent) if unproven => Some(Wanted::Agent(agent.clone())),
        None if unproven && supervisor => Some(Wanted::Supervisor),
        _ => None,
    };
    let Some(wanted) = deferred else {
        let opened = open_plain(&plain, owner_of(origin, supervisor))?;
        return Ok(tuned(upgrade).on_upgrade(move |socket| async move {
            let (sink, stream) = frames(socket);
            plain.serve(opened, stream, sink).await;
        }));
    };
    Ok(tuned(upgrade).on_upgrade(move |socket| async move {
        let (mut sink, mut stream) = frames(socket);
        // A socket waiting for its credential counts as open, so a flood
        // of them meets the node's socket limit like any other.
        let waiting = plain.registry.socket();
        let checked = first_frame_credential(&state, &wanted, &mut stream).await;
        drop(waiting);
        let refusal = match checked {
            Ok(credential) => {
                tracing::debug!(credential = %credential, supervisor, "Plain WebSocket admitted by its first frame.");
                match open_plain(&plain, owner_of(origin, supervisor)) {
                    Ok(opened) => return plain.serve(opened, stream, sink).await,
                    Err(e) => Close {
                        code: push::close_code::TRY_AGAIN_LATER,
                        reason: close_reason(&e.to_string()),
                    },
                }
            }
            Err(close) => close,
        };
        let _ = sink.send(Frame::Close(Some(refusal))).await;
        let _ = sink.close().await;
    }))
}

/// Opens a plain client for `origin`; a refusal is an HTTP answer.
fn owner_of(origin: Origin, supervisor: bool) -> push::registry::Owner {
    push::registry::Owner {
        device: origin.gms_user,
        agent: origin.agent_id,
        supervisor,
        room: None,
    }
}

/// The plain WebSocket of one side of a video room (`?room=<code>&token=`):
/// the room page hears that side's video events and signals, whether or
/// not the service has a device id. The token decides the side.
async fn room_socket(
    state: Arc<AppState>,
    who: &Who,
    code: &str,
    upgrade: WebSocketUpgrade,
) -> Result<Response, AppError> {
    if who.gms_user.is_some() || who.agent_id.is_some() || who.supervisor.is_some() {
        return Err(AppError::field(
            "room",
            "a room's socket names no gms_user, agent_id or supervisor",
        ));
    }
    let token = crate::requests::room::RoomToken(who.token.clone());
    let (_, party) = super::video::room_and_party(&state, code, token).await?;
    let room = format!("{code}/{}", super::video::side(party));
    serve_room(&state, room, upgrade)
}

/// The waiting room's socket (`?service=<id>`): the customer's side of a
/// booked video service, by the id its join link carries, which is what
/// opens the customer's view of it (`GET …/ixn/video`) too.
async fn waiting_room_socket(
    state: Arc<AppState>,
    who: &Who,
    id: &str,
    upgrade: WebSocketUpgrade,
) -> Result<Response, AppError> {
    if who.gms_user.is_some() || who.agent_id.is_some() || who.supervisor.is_some() {
        return Err(AppError::field(
            "service",
            "a waiting room's socket names no gms_user, agent_id or supervisor",
        ));
    }
    super::check_id("service", id)?;
    // One answer for an unknown id and for any other service, so the
    // socket tells nothing about which ids exist.
    let missing = || AppError::NotFound(format!("no booked video appointment `{id}`"));
    let record = state.shell.find_service(id).await?.ok_or_else(missing)?;
    let video = state
        .shell
        .scenario(&record.scenario)
        .is_ok_and(|s| s.video.is_some());
    if record.booking.is_none() || !video {
        return Err(missing());
    }
    serve_room(&state, format!("service:{id}"), upgrade)
}

/// Serves a socket whose owner is `room` (a room's side, or a waiting
/// room), proven by the caller.
fn serve_room(
    state: &AppState,
    room: String,
    upgrade: WebSocketUpgrade,
) -> Result<Response, AppError> {
    room_for_a_socket(state)?;
    let plain = Plain::new(state.shell.registry().clone());
    let opened = open_plain(
        &plain,
        push::registry::Owner {
            room: Some(room),
            ..Default::default()
        },
    )?;
    Ok(tuned(upgrade).on_upgrade(move |socket| async move {
        let (sink, stream) = frames(socket);
        plain.serve(opened, stream, sink).await;
    }))
}

fn open_plain(
    plain: &Plain,
    owner: push::registry::Owner,
) -> Result<push::plain::Opened, AppError> {
    match plain.open(owner) {
        Ok(o) => Ok(o),
        Err(PlainError::NoOwner) => Err(AppError::missing("gms_user")),
        Err(PlainError::Refused(r @ (Refused::TooManyClients(_) | Refused::ShuttingDown))) => {
            Err(AppError::Busy(r.to_string()))
        }
    }
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

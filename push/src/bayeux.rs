//! A Bayeux 1.0 server (the protocol CometD speaks), as GMS serves it on
//! `/genesys/cometd` with the channel `/_genesys`.
//!
//! Both transports share [`Bayeux::process`], which answers one message:
//!
//! - `long-polling`: each POST carries a batch; a `/meta/connect` in it is
//!   held until a message waits for the client or the connect timeout ends,
//!   and the answer carries the messages before the connect reply.
//! - `websocket`: messages go out as soon as they come; the client's
//!   `/meta/connect` is still held, as the heartbeat.
//!
//! Errors follow the Bayeux form `"<code>:<args>:<message>"`, with the advice
//! that tells a stock client what to do next (`handshake`, `retry`, `none`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{json, Map, Value};
use tokio::time::Instant;
use tracing::{debug, warn};

use std::sync::atomic::Ordering;

use crate::registry::{Binding, Outgoing, Owner, Refused, Registry, Session};
use crate::{close_code, Close, Frame};

pub const LONG_POLLING: &str = "long-polling";
pub const WEBSOCKET: &str = "websocket";

/// What the request that carried the messages says about its client: the
/// `gms_user` header (or query parameter), and an `agent_id` query parameter.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub gms_user: Option<String>,
    pub agent_id: Option<String>,
    /// The browser cookie (long-polling): the one the request brought, or
    /// the one its answer sets when it brought none.
    pub browser: Option<String>,
    /// The name of the credential the request's headers presented (checked
    /// by the front), when callbackd checks callers. A session handshaken
    /// with one answers only to requests that present it again.
    pub credential: Option<String>,
}

/// What processing one message gives.
pub enum Step {
    /// Answer this now.
    Reply(Value),
    /// A `/meta/connect`: answer `reply` after up to `hold`, with whatever
    /// messages wait for the session.
    Connect {
        session: Arc<Session>,
        reply: Value,
        hold: Duration,
        number: u64,
    },
}

/// A credential a handshake carries in its `ext`, under the names of the
/// HTTP headers that would carry it: `ext.authorization` (as the
/// `Authorization` header: `Basic …` or `Bearer …`) or `ext["x-api-key"]`.
/// Browsers cannot set headers on a WebSocket; this is where theirs goes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtCredential<'a> {
    pub authorization: Option<&'a str>,
    pub api_key: Option<&'a str>,
}

impl ExtCredential<'_> {
    pub fn is_some(&self) -> bool {
        self.authorization.is_some() || self.api_key.is_some()
    }
}

/// Why a handshake may not open an agent's channel: a Bayeux error code
/// (401: no or a wrong credential; 403: one that may not act for that
/// agent) and a message that never repeats the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub code: u16,
    pub message: String,
}

/// Who may open an agent's channel, when callbackd checks callers. The
/// front supplies it for the request or socket it serves (it knows the
/// request's headers and how to check a credential); this crate only asks.
/// A device's channel needs no credential: its `gms_user` is the service's
/// `_device_notification_id`, which only the app knows.
pub trait Admission: Send + Sync {
    /// May the credential `ext` carries (or, when it carries none, the one
    /// the request's headers did) act for `agent`?
    fn admit_agent<'a>(
        &'a self,
        agent: &'a str,
        ext: ExtCredential<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<(), Denied>>;
}

#[derive(Clone)]
pub struct Bayeux {
    pub registry: Arc<Registry>,
    /// `None`: callbackd runs open, every handshake is admitted.
    admission: Option<Arc<dyn Admission>>,
}

impl Bayeux {
    pub fn new(registry: Arc<Registry>) -> Self {
        Bayeux {
            registry,
            admission: None,
        }
    }

    /// Checks every handshake that asks for an agent's channel with `admission`.
    pub fn admitting(mut self, admission: Arc<dyn Admission>) -> Self {
        self.admission = Some(admission);
        self
    }

    /// Checks a handshake that would open an agent's channel; any other
    /// message passes. `Err` is the handshake's failure reply.
    async fn admitted(&self, message: &Value, origin: &Origin) -> Result<(), Value> {
        let Some(admission) = &self.admission else {
            return Ok(());
        };
        let Some(msg) = message.as_object() else {
            return Ok(());
        };
        if msg.get("channel").and_then(Value::as_str) != Some("/meta/handshake") {
            return Ok(());
        }
        let Some(agent) = owner_of(msg, origin).agent else {
            return Ok(());
        };
        let refuse = |error: String| {
            Err(failure(
                msg,
                "/meta/handshake",
                &error,
                Some(json!({"reconnect": "none"})),
            ))
        };
        let ext = msg.get("ext").and_then(Value::as_object);
        let mut credential = ExtCredential::default();
        for (key, slot) in [
            ("authorization", &mut credential.authorization),
            ("x-api-key", &mut credential.api_key),
        ] {
            match ext.and_then(|e| e.get(key)) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => *slot = Some(s.as_str()),
                Some(_) => return refuse(format!("400::ext.{key} must be a string")),
            }
        }
        match admission.admit_agent(&agent, credential).await {
            Ok(()) => Ok(()),
            Err(Denied { code, message }) => refuse(format!("{code}::{message}")),
        }
    }

    fn advice(&self, reconnect: &str) -> Value {
        let l = &self.registry.limits;
        json!({
            "reconnect": reconnect,
            "interval": 0,
            "timeout": l.connect_timeout.as_millis() as u64,
            "maxInterval": l.max_interval.as_millis() as u64,
        })
    }

    /// Answers one message. `transport` is the connection type it came
    /// over; `socket_client` the client a WebSocket handshook, if it did.
    pub fn process(
        &self,
        message: &Value,
        origin: &Origin,
        transport: &str,
        socket_client: Option<&str>,
    ) -> Step {
        let by = By {
            origin,
            transport,
            socket_client,
        };
        let Some(msg) = message.as_object() else {
            return Step::Reply(json!({
                "successful": false,
                "error": "400::a Bayeux message is a JSON object",
            }));
        };
        let Some(channel) = msg.get("channel").and_then(Value::as_str) else {
            return Step::Reply(failure(
                msg,
                "",
                "400::channel is missing",
                Some(json!({"reconnect": "none"})),
            ));
        };
        match channel {
            "/meta/handshake" => Step::Reply(self.handshake(msg, origin, transport)),
            "/meta/connect" => self.connect(msg, &by),
            "/meta/subscribe" | "/meta/unsubscribe" => {
                Step::Reply(self.subscription(msg, channel, &by))
            }
            "/meta/disconnect" => Step::Reply(self.disconnect(msg, &by)),
            other if other.starts_with("/meta/") => Step::Reply(failure(
                msg,
                other,
                &format!("400:{other}:unknown meta channel"),
                None,
            )),
            other => {
                // Clients only listen here; the API is where they act.
                let reply = match self.client(msg, &by) {
                    Ok(_) => failure(
                        msg,
                        other,
                        &format!("403:{other}:publishing is not allowed; use the HTTP API"),
                        None,
                    ),
                    Err(e) => failure(msg, other, &e.0, Some(e.1)),
                };
                Step::Reply(reply)
            }
        }
    }

    fn handshake(&self, msg: &Map<String, Value>, origin: &Origin, transport: &str) -> Value {
        let channel = "/meta/handshake";
        if let Some(types) = msg.get("supportedConnectionTypes") {
            let offered: Vec<&str> = types
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !offered.contains(&transport) {
                return failure(
                    msg,
                    channel,
                    &format!(
                        "400:{}:supportedConnectionTypes does not include {transport}",
                        offered.join(",")
                    ),
                    Some(json!({"reconnect": "none"})),
                );
            }
        }
        let owner = owner_of(msg, origin);
        for (field, id) in [("gms_user", &owner.device), ("agent_id", &owner.agent)] {
            if let Some(why) = id.as_deref().and_then(bad_owner_id) {
                return failure(
                    msg,
                    channel,
                    &format!("400::{field} {why}"),
                    Some(json!({"reconnect": "none"})),
                );
            }
        }
        if owner.device.is_none() && owner.agent.is_none() {
            return failure(
                msg,
                channel,
                "403::gms_user is required: send the gms_user header, ext.gms_user in the handshake, or ?gms_user= (agents: ext.agent_id or ?agent_id=)",
                Some(json!({"reconnect": "none"})),
            );
        }
        let binding = Binding {
            transport: if transport == WEBSOCKET {
                WEBSOCKET
            } else {
                LONG_POLLING
            },
            gms_user: clean(origin.gms_user.clone()),
            agent_id: clean(origin.agent_id.clone()),
            browser: origin.browser.clone(),
            browser_seen: Default::default(),
            credential: origin.credential.clone(),
        };
        match self.registry.open_bound(owner, binding) {
            Ok(session) => {
                let mut reply = base(msg, channel);
                reply.insert("successful".into(), json!(true));
                reply.insert("version".into(), json!("1.0"));
                reply.insert("minimumVersion".into(), json!("1.0"));
                reply.insert(
                    "supportedConnectionTypes".into(),
                    json!([WEBSOCKET, LONG_POLLING]),
                );
                reply.insert("clientId".into(), json!(session.id));
                reply.insert("advice".into(), self.advice("retry"));
                Value::Object(reply)
            }
            Err(e @ Refused::TooManyClients(_)) => failure(
                msg,
                channel,
                &format!("503::{e}"),
                Some(json!({"reconnect": "handshake", "interval": 5000})),
            ),
            Err(e @ Refused::ShuttingDown) => failure(
                msg,
                channel,
                &format!("503::{e}"),
                Some(json!({"reconnect": "handshake", "interval": 1000})),
            ),
        }
    }

    /// The session a message names, or the error and advice to answer.
    fn client(&self, msg: &Map<String, Value>, by: &By) -> Result<Arc<Session>, (String, Value)> {
        let handshake = json!({"reconnect": "handshake", "interval": 0});
        let Some(id) = msg.get("clientId").and_then(Value::as_str) else {
            return Err(("402::clientId is missing".into(), handshake));
        };
        // Another client's session is answered exactly as one that does
        // not exist: nothing of it (messages, subscriptions, its life) is
        // reachable with its id alone.
        let Some(session) = self.registry.get(id).filter(|s| by.may_use(s)) else {
            return Err((format!("402:{id}:unknown client"), handshake));
        };
        if let Some(why) = session.dropped() {
            self.registry.close(id, &why);
            return Err((format!("402:{id}:client dropped: {why}"), handshake));
        }
        session.touch();
        Ok(session)
    }

    fn connect(&self, msg: &Map<String, Value>, by: &By) -> Step {
        let channel = "/meta/connect";
        let transport = by.transport;
        let session = match self.client(msg, by) {
            Ok(s) => s,
            Err((error, advice)) => {
                return Step::Reply(failure(msg, channel, &error, Some(advice)));
            }
        };
        if let Some(t) = msg.get("connectionType").and_then(Value::as_str) {
            if t != transport {
                return Step::Reply(failure(
                    msg,
                    channel,
                    &format!("400:{t}:connectionType {t} over {transport}"),
                    None,
                ));
            }
        }
        let mut reply = base(msg, channel);
        reply.insert("successful".into(), json!(true));
        reply.insert("clientId".into(), json!(session.id));
        reply.insert("advice".into(), self.advice("retry"));
        // The first connect (advice.timeout = 0) answers at once, so the
        // client learns it is connected; later ones are held.
        let asks_now = msg
            .get("advice")
            .and_then(|a| a.get("timeout"))
            .and_then(Value::as_u64)
            == Some(0);
        let hold = if asks_now || self.registry.is_closing() {
            Duration::ZERO
        } else {
            self.registry.limits.connect_timeout
        };
        if transport == LONG_POLLING {
            // This connect proves the answer to the previous one arrived.
            self.registry
                .delivered(LONG_POLLING, &session.take_unacked());
        }
        let number = session.begin_connect();
        Step::Connect {
            session,
            reply: Value::Object(reply),
            hold,
            number,
        }
    }

    fn subscription(&self, msg: &Map<String, Value>, channel: &str, by: &By) -> Value {
        let session = match self.client(msg, by) {
            Ok(s) => s,
            Err((error, advice)) => return failure(msg, channel, &error, Some(advice)),
        };
        let subs: Vec<String> = match msg.get("subscription") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        if subs.is_empty() {
            return failure(msg, channel, "400::subscription is missing", None);
        }
        let mut reply = base(msg, channel);
        reply.insert("clientId".into(), json!(session.id));
        reply.insert(
            "subscription".into(),
            msg.get("subscription").cloned().unwrap_or(Value::Null),
        );
        for sub in &subs {
            let result = if channel == "/meta/subscribe" {
                session.subscribe(sub)
            } else {
                session.unsubscribe(sub);
                Ok(())
            };
            if let Err(why) = result {
                reply.insert("successful".into(), json!(false));
                reply.insert("error".into(), json!(format!("403:{sub}:{why}")));
                return Value::Object(reply);
            }
        }
        debug!(client_id = %session.id, channel, subscriptions = ?subs, "Push subscription changed.");
        reply.insert("successful".into(), json!(true));
        Value::Object(reply)
    }

    fn disconnect(&self, msg: &Map<String, Value>, by: &By) -> Value {
        let channel = "/meta/disconnect";
        match self.client(msg, by) {
            Ok(session) => {
                // A disconnect, like a connect, follows the last answer.
                self.registry
                    .delivered(session.binding.transport, &session.take_unacked());
                self.registry.close(&session.id, "disconnected");
                let mut reply = base(msg, channel);
                reply.insert("successful".into(), json!(true));
                reply.insert("clientId".into(), json!(session.id));
                Value::Object(reply)
            }
            Err((error, advice)) => failure(msg, channel, &error, Some(advice)),
        }
    }

    /// Waits until the held connect numbered `number` should answer: a
    /// message waits, the session ended, a newer connect came, shutdown, or
    /// `hold` passed.
    async fn hold(&self, session: &Session, number: u64, hold: Duration) {
        let deadline = Instant::now() + hold;
        let mut closing = self.registry.closing();
        loop {
            let woken = session.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if session.connect_done(number) || *closing.borrow_and_update() {
                return;
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep_until(deadline) => return,
                _ = closing.changed() => return,
            }
        }
    }

    /// The answer to a connect that is done waiting: the messages first,
    /// then the connect reply (failed if the session was dropped meanwhile).
    fn finish_connect(
        &self,
        session: &Session,
        number: u64,
        mut reply: Value,
    ) -> (Vec<Outgoing>, Value) {
        session.end_connect();
        if let Some(why) = session.dropped() {
            self.registry.close(&session.id, &why);
            reply["successful"] = json!(false);
            reply["error"] = json!(format!("402:{}:client dropped: {why}", session.id));
            reply["advice"] = json!({"reconnect": "handshake", "interval": 0});
            return (Vec::new(), reply);
        }
        if self.registry.is_closing() {
            // Client ids do not move between nodes: start again elsewhere.
            reply["advice"] = json!({"reconnect": "handshake", "interval": 1000});
        }
        // A superseded connect answers empty: its client has moved on to
        // the newer request, which takes the messages.
        let superseded = !session.is_current(number);
        let messages = if superseded {
            Vec::new()
        } else {
            session.take(self.registry.limits.batch)
        };
        (messages, reply)
    }

    /// One long-polling request: its batch in, the answers out.
    pub async fn long_poll(&self, batch: Vec<Value>, origin: &Origin) -> Vec<Value> {
        let mut replies = Vec::with_capacity(batch.len());
        let mut connect = None;
        for message in &batch {
            if let Err(refused) = self.admitted(message, origin).await {
                replies.push(refused);
                continue;
            }
            match self.process(message, origin, LONG_POLLING, None) {
                Step::Reply(v) => replies.push(v),
                Step::Connect {
                    session,
                    reply,
                    hold,
                    number,
                } => {
                    // Two connects in one batch: the earlier answers at once.
                    if let Some((s, r, _, n)) = connect.replace((session, reply, hold, number)) {
                        let (messages, reply) = self.finish_connect(&s, n, r);
                        replies.extend(messages.iter().map(Outgoing::bayeux));
                        replies.push(reply);
                        s.hold_unacked(messages);
                    }
                }
            }
        }
        // What a held connect keeps, times every long-polling client: not
        // the batch, and the reply as its text. Parsed, each is a map of
        // maps, a kilobyte or more.
        drop(batch);
        if let Some((session, reply, hold, number)) = connect {
            let reply = reply.to_string();
            // The client may go away while its connect is held (this future
            // is then dropped): the session must not stay attached for ever,
            // or it would never expire.
            let mut attached = Unattach(Some(&session));
            self.hold(&session, number, hold).await;
            attached.0 = None;
            let reply = serde_json::from_str(&reply).expect("a reply reads back");
            let (messages, reply) = self.finish_connect(&session, number, reply);
            replies.extend(messages.iter().map(Outgoing::bayeux));
            replies.push(reply);
            // Counted as received when the client's next connect (or
            // disconnect) arrives: this answer may never reach it.
            session.hold_unacked(messages);
        }
        replies
    }

    /// Serves one WebSocket until it closes, the client is dropped, or the
    /// server shuts down.
    ///
    /// What the socket carried counts as received once the client answers
    /// the ping sent after it (see [`PingAcks`]): a write into a dead
    /// connection succeeds, and must not empty the outbox.
    pub async fn websocket<S, K, E>(&self, mut stream: S, mut sink: K, origin: Origin)
    where
        S: Stream<Item = Result<Frame, E>> + Unpin,
        K: Sink<Frame> + Unpin,
        E: std::fmt::Display,
    {
        let _guard = self.registry.socket();
        let limits = self.registry.limits.clone();
        let mut closing = self.registry.closing();
        let mut ws = WsState {
            session: None,
            held: None,
            acks: PingAcks::default(),
        };
        let opened = Instant::now();
        let mut last_heard = Instant::now();
        let mut ping = tokio::time::interval_at(Instant::now() + limits.ws_ping, limits.ws_ping);
        let close = loop {
            let held_due = ws.held.as_ref().map(|h| h.due);
            // A socket is a client only once it has handshaken.
            let handshake_due = ws.session.is_none().then_some(opened + HANDSHAKE_WITHIN);
            let mut out: Vec<Value> = Vec::new();
            let mut taken: Vec<Outgoing> = Vec::new();
            tokio::select! {
                frame = stream.next() => {
                    last_heard = Instant::now();
                    let text = match frame {
                        None => break None,
                        Some(Err(e)) => {
                            debug!(error = %e, "Bayeux WebSocket read failed.");
                            break None;
                        }
                        Some(Ok(Frame::Text(t))) => t,
                        Some(Ok(Frame::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                        Some(Ok(Frame::Ping(p))) => {
                            if send(&mut sink, Frame::Pong(p), limits.send_timeout).await.is_err() {
                                break None;
                            }
                            continue;
                        }
                        Some(Ok(Frame::Pong(p))) => {
                            self.registry.delivered(WEBSOCKET, &ws.acks.pong(&p));
                            continue;
                        }
                        Some(Ok(Frame::Close(_))) => break Some(Close { code: close_code::NORMAL, reason: String::new() }),
                    };
                    match parse_batch(&text) {
                        Ok(batch) => {
                            for message in &batch {
                                match self.admitted(message, &origin).await {
                                    Ok(()) => self.ws_message(message, &origin, &mut ws, &mut out, &mut taken),
                                    Err(refused) => out.push(refused),
                                }
                            }
                        }
                        Err(why) => out.push(json!({"successful": false, "error": format!("400::{why}")})),
                    }
                }
                _ = woken(ws.session.clone()) => {
                    let Some(s) = ws.session.clone() else { continue };
                    if let Some(why) = s.dropped() {
                        if let Some(held) = ws.held.take() {
                            let (_, reply) = self.finish_connect(&held.session, held.number, held.reply);
                            out.push(reply);
                        }
                        self.registry.close(&s.id, &why);
                        if !out.is_empty() {
                            let _ = send(&mut sink, Frame::Text(Value::Array(out).to_string()), limits.send_timeout).await;
                        }
                        break Some(Close { code: close_code::POLICY, reason: why });
                    }
                    taken = s.take(limits.batch);
                    out.extend(taken.iter().map(Outgoing::bayeux));
                }
                _ = sleep_until(held_due) => {
                    if let Some(held) = ws.held.take() {
                        let (messages, reply) = self.finish_connect(&held.session, held.number, held.reply);
                        out.extend(messages.iter().map(Outgoing::bayeux));
                        out.push(reply);
                        taken = messages;
                    }
                }
                _ = sleep_until(handshake_due) => {
                    break Some(Close { code: close_code::POLICY, reason: format!("no handshake within {}s", HANDSHAKE_WITHIN.as_secs()) });
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > limits.ws_idle {
                        break Some(Close { code: close_code::NORMAL, reason: format!("idle: nothing received for {}s", limits.ws_idle.as_secs()) });
                    }
                    if send(&mut sink, Frame::Ping(Vec::new()), limits.send_timeout).await.is_err() {
                        break None;
                    }
                    continue;
                }
                _ = crate::registry::closed(&mut closing) => {
                    if let Some(held) = ws.held.take() {
                        let (messages, reply) = self.finish_connect(&held.session, held.number, held.reply);
                        out.extend(messages.iter().map(Outgoing::bayeux));
                        out.push(reply);
                        taken = messages;
                    }
                    if !out.is_empty()
                        && send(&mut sink, Frame::Text(Value::Array(out).to_string()), limits.send_timeout).await.is_ok()
                    {
                        if let Some(ping) = ws.acks.sent(taken) {
                            let _ = send(&mut sink, ping, limits.send_timeout).await;
                        }
                    }
                    break Some(Close { code: close_code::GOING_AWAY, reason: "server shutting down".into() });
                }
            }
            if out.is_empty() {
                continue;
            }
            match send(
                &mut sink,
                Frame::Text(Value::Array(out).to_string()),
                limits.send_timeout,
            )
            .await
            {
                Ok(()) => {
                    if let Some(ping) = ws.acks.sent(taken) {
                        if send(&mut sink, ping, limits.send_timeout).await.is_err() {
                            break None;
                        }
                    }
                }
                Err(SendError::Timeout) => {
                    let why = "slow consumer: a write did not complete in time".to_owned();
                    if let Some(s) = &ws.session {
                        warn!(client_id = %s.id, "Push client dropped: its socket does not take writes.");
                    }
                    break Some(Close {
                        code: close_code::POLICY,
                        reason: why,
                    });
                }
                Err(SendError::Closed) => break None,
            }
        };
        if let Some(held) = ws.held.take() {
            held.session.end_connect();
        }
        if let Some(s) = ws.session {
            // The socket was the client's only way in. What it was sent but
            // did not acknowledge stays in the outboxes.
            let why = close
                .as_ref()
                .map_or("socket closed".to_owned(), |c| c.reason.clone());
            self.registry.close(&s.id, &why);
        }
        if let Some(close) = close {
            let _ = send(&mut sink, Frame::Close(Some(close)), limits.send_timeout).await;
        }
        let _ = tokio::time::timeout(limits.send_timeout, sink.close()).await;
    }

    /// Handles one message that came over a WebSocket: replies (and
    /// messages taken for the client) go to `out` and `taken`.
    fn ws_message(
        &self,
        message: &Value,
        origin: &Origin,
        ws: &mut WsState,
        out: &mut Vec<Value>,
        taken: &mut Vec<Outgoing>,
    ) {
        let own = ws.session.as_ref().map(|s| s.id.clone());
        match self.process(message, origin, WEBSOCKET, own.as_deref()) {
            Step::Reply(v) => {
                let own = |ws: &WsState| {
                    ws.session
                        .as_ref()
                        .is_some_and(|s| v["clientId"].as_str() == Some(s.id.as_str()))
                };
                if v["channel"] == "/meta/handshake" && v["successful"] == true {
                    // One client per socket: a new handshake ends the old one.
                    if let Some(held) = ws.held.take() {
                        let (_, reply) =
                            self.finish_connect(&held.session, held.number, held.reply);
                        out.push(reply);
                    }
                    if let Some(old) = ws.session.take() {
                        self.registry.close(&old.id, "replaced by a new handshake");
                    }
                    ws.session = v["clientId"].as_str().and_then(|id| self.registry.get(id));
                } else if v["channel"] == "/meta/disconnect" && v["successful"] == true && own(ws) {
                    if let Some(held) = ws.held.take() {
                        held.session.end_connect();
                        out.push(held.reply);
                    }
                    ws.session = None;
                }
                out.push(v);
            }
            Step::Connect {
                session,
                reply,
                hold,
                number,
            } => {
                if ws.session.as_ref().map(|c| &c.id) != Some(&session.id) {
                    // Not reached: `process` answers a connect for a client
                    // this socket did not handshake as unknown. Should it
                    // ever be, the connect ends without its messages.
                    session.end_connect();
                    out.push(reply);
                    return;
                }
                if let Some(old) = ws.held.take() {
                    // Superseded: it answers now, empty.
                    old.session.end_connect();
                    out.push(old.reply);
                }
                if hold.is_zero() {
                    let (messages, reply) = self.finish_connect(&session, number, reply);
                    out.extend(messages.iter().map(Outgoing::bayeux));
                    out.push(reply);
                    taken.extend(messages);
                } else {
                    ws.held = Some(Held {
                        session,
                        reply,
                        due: Instant::now() + hold,
                        number,
                    });
                }
            }
        }
    }
}

/// What the request or socket that carried a message proves.
struct By<'a> {
    origin: &'a Origin,
    transport: &'a str,
    socket_client: Option<&'a str>,
}

impl By<'_> {
    /// Whether the carrier of a message may act as `session`: what its
    /// handshake proved, it proves again (its [`Binding`]).
    fn may_use(&self, session: &Session) -> bool {
        let b = &session.binding;
        if self.transport == WEBSOCKET {
            // A socket speaks only for the client it handshook, and that
            // client only through it.
            return self.socket_client == Some(session.id.as_str());
        }
        if b.transport != LONG_POLLING {
            return false;
        }
        let presented = |id: &Option<String>| clean(id.clone());
        let (gms_user, agent_id) = (
            presented(&self.origin.gms_user),
            presented(&self.origin.agent_id),
        );
        // An owner the request names is the session's; one the handshake
        // request named, every later request names.
        if gms_user.is_some() && gms_user != session.owner.device
            || agent_id.is_some() && agent_id != session.owner.agent
            || b.gms_user.is_some() && gms_user.is_none()
            || b.agent_id.is_some() && agent_id.is_none()
            || b.credential.is_some() && self.origin.credential != b.credential
        {
            return false;
        }
        // The browser cookie, once the client has shown it keeps cookies
        // (it brought it back), must come with every request. A client
        // without cookies never brings it, and is bound by the rest.
        match &b.browser {
            Some(own) if self.origin.browser.as_ref() == Some(own) => {
                b.browser_seen.store(true, Ordering::Relaxed);
                true
            }
            Some(_) => !b.browser_seen.load(Ordering::Relaxed),
            None => true,
        }
    }
}

/// A socket that has not handshaken by then is closed: it is not a client.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

/// One Bayeux WebSocket's client and its held connect.
struct WsState {
    session: Option<Arc<Session>>,
    held: Option<Held>,
    acks: PingAcks,
}

/// A held `/meta/connect`, with the session it belongs to.
struct Held {
    session: Arc<Session>,
    reply: Value,
    due: Instant,
    number: u64,
}

/// Acknowledgement by ping: after a frame that carried kept notifications,
/// the socket sends a ping with a sequence number. A pong with that number
/// proves the client read everything sent before it (one TCP stream, in
/// order). Browsers and WebSocket libraries answer pings by themselves.
#[derive(Default)]
pub(crate) struct PingAcks {
    next: u64,
    inflight: std::collections::VecDeque<(u64, Vec<Outgoing>)>,
}

/// Pings waiting for their pong; past that the oldest is forgotten (its
/// notifications stay in the outboxes).
const INFLIGHT_PINGS: usize = 1024;

impl PingAcks {
    /// Records `messages` as sent; answers the ping to send after them, if
    /// they carry anything to acknowledge.
    pub(crate) fn sent(&mut self, messages: Vec<Outgoing>) -> Option<Frame> {
        if !messages.iter().any(|m| m.pushed.is_some()) {
            return None;
        }
        self.next += 1;
        if self.inflight.len() >= INFLIGHT_PINGS {
            self.inflight.pop_front();
        }
        self.inflight.push_back((self.next, messages));
        Some(Frame::Ping(ack_payload(self.next)))
    }

    /// The messages a pong proves received.
    pub(crate) fn pong(&mut self, payload: &[u8]) -> Vec<Outgoing> {
        let Some(n) = parse_ack_payload(payload) else {
            return Vec::new();
        };
        let mut proven = Vec::new();
        while self.inflight.front().is_some_and(|(seq, _)| *seq <= n) {
            if let Some((_, messages)) = self.inflight.pop_front() {
                proven.extend(messages);
            }
        }
        proven
    }
}

const ACK_PREFIX: &[u8] = b"ack:";

fn ack_payload(n: u64) -> Vec<u8> {
    let mut p = ACK_PREFIX.to_vec();
    p.extend_from_slice(n.to_string().as_bytes());
    p
}

fn parse_ack_payload(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload.strip_prefix(ACK_PREFIX)?)
        .ok()?
        .parse()
        .ok()
}

/// Ends a held connect that is dropped before it answers.
struct Unattach<'a>(Option<&'a Session>);

impl Drop for Unattach<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.0 {
            session.end_connect();
        }
    }
}

/// Resolves when a message waits for `session` or it was dropped; never
/// without a session.
pub(crate) async fn woken(session: Option<Arc<Session>>) {
    let Some(s) = session else {
        return std::future::pending().await;
    };
    let w = s.wake.notified();
    tokio::pin!(w);
    w.as_mut().enable();
    if s.waiting() > 0 || s.dropped().is_some() {
        return;
    }
    w.await
}

pub(crate) async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

pub(crate) enum SendError {
    Timeout,
    Closed,
}

/// One write, bounded: a client that stops reading must not hold a task.
pub(crate) async fn send<K: Sink<Frame> + Unpin>(
    sink: &mut K,
    frame: Frame,
    timeout: Duration,
) -> Result<(), SendError> {
    match tokio::time::timeout(timeout, sink.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(SendError::Closed),
        Err(_) => Err(SendError::Timeout),
    }
}

/// A Bayeux request body: one message or an array of them.
pub fn parse_batch(text: &str) -> Result<Vec<Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(list)) if !list.is_empty() => Ok(list),
        Ok(Value::Array(_)) => Err("the batch is empty".into()),
        Ok(v @ Value::Object(_)) => Ok(vec![v]),
        Ok(_) => Err("expected a Bayeux message or an array of them".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// Longest owner id (`gms_user`, `agent_id`), in characters, as on create.
pub const MAX_OWNER_ID: usize = 256;

/// Why an owner id cannot be used, if it cannot.
pub fn bad_owner_id(id: &str) -> Option<String> {
    if id.chars().count() > MAX_OWNER_ID {
        Some(format!("is longer than {MAX_OWNER_ID} characters"))
    } else if id.chars().any(char::is_control) {
        Some("must not contain control characters".into())
    } else {
        None
    }
}

/// Who a handshake says its client is: the request's `gms_user` and
/// `agent_id`, else the handshake's `ext.gms_user` and `ext.agent_id`.
fn owner_of(msg: &Map<String, Value>, origin: &Origin) -> Owner {
    let ext = msg.get("ext").and_then(Value::as_object);
    let from_ext = |key: &str| {
        ext.and_then(|e| e.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Owner {
        device: clean(origin.gms_user.clone().or_else(|| from_ext("gms_user"))),
        agent: clean(origin.agent_id.clone().or_else(|| from_ext("agent_id"))),
        supervisor: false,
        room: None,
    }
}

fn clean(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// The fields every reply repeats: the channel and the message's id.
fn base(msg: &Map<String, Value>, channel: &str) -> Map<String, Value> {
    let mut reply = Map::new();
    if let Some(id) = msg.get("id") {
        reply.insert("id".into(), id.clone());
    }
    reply.insert("channel".into(), json!(channel));
    reply
}

fn failure(msg: &Map<String, Value>, channel: &str, error: &str, advice: Option<Value>) -> Value {
    let channel = if channel.is_empty() {
        msg.get("channel").and_then(Value::as_str).unwrap_or("")
    } else {
        channel
    };
    let mut reply = base(msg, channel);
    reply.insert("successful".into(), json!(false));
    reply.insert("error".into(), json!(error));
    if let Some(id) = msg.get("clientId") {
        reply.insert("clientId".into(), id.clone());
    }
    if let Some(sub) = msg.get("subscription") {
        reply.insert("subscription".into(), sub.clone());
    }
    if let Some(advice) = advice {
        reply.insert("advice".into(), advice);
    }
    Value::Object(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Limits;

    #[tokio::test(start_paused = true)]
    async fn a_held_connect_whose_client_left_still_lets_the_session_expire() {
        let (registry, _acks) = Registry::new(Limits {
            connect_timeout: Duration::from_secs(30),
            max_interval: Duration::from_secs(10),
            ..Limits::default()
        });
        let bayeux = Bayeux::new(registry.clone());
        let origin = Origin {
            gms_user: Some("dev".into()),
            ..Origin::default()
        };
        let hs = bayeux
            .long_poll(
                vec![json!({"channel": "/meta/handshake", "supportedConnectionTypes": ["long-polling"]})],
                &origin,
            )
            .await;
        let id = hs[0]["clientId"].as_str().unwrap().to_owned();
        // The connect is held; the HTTP request is dropped after a second.
        let connect = vec![
            json!({"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling"}),
        ];
        let held = bayeux.long_poll(connect, &origin);
        assert!(tokio::time::timeout(Duration::from_secs(1), held)
            .await
            .is_err());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(
            registry.sweep(),
            1,
            "the dropped connect does not keep it alive"
        );
        assert!(registry.get(&id).is_none());
    }
}

#[cfg(test)]
mod ping_acks {
    use super::*;
    use crate::Pushed;

    fn kept(n: &str) -> Outgoing {
        Outgoing {
            channel: "/_genesys".into(),
            tag: "t".into(),
            data: json!({}),
            pushed: Some(Pushed {
                service_id: "s".into(),
                to_agent: false,
                notification: n.into(),
            }),
        }
    }

    #[test]
    fn a_pong_proves_what_was_sent_before_its_ping_and_nothing_after() {
        let mut acks = PingAcks::default();
        let Some(Frame::Ping(first)) = acks.sent(vec![kept("a")]) else {
            panic!("a ping follows kept notifications")
        };
        let Some(Frame::Ping(second)) = acks.sent(vec![kept("b"), kept("c")]) else {
            panic!("a ping follows kept notifications")
        };
        // Nothing to acknowledge: no ping.
        let mut plain = kept("x");
        plain.pushed = None;
        assert!(acks.sent(vec![plain]).is_none());
        // A keepalive pong (empty) proves nothing.
        assert!(acks.pong(b"").is_empty());
        let names = |v: Vec<Outgoing>| -> Vec<String> {
            v.into_iter()
                .map(|m| m.pushed.unwrap().notification)
                .collect()
        };
        assert_eq!(names(acks.pong(&first)), ["a"]);
        assert_eq!(names(acks.pong(&second)), ["b", "c"]);
        assert!(acks.pong(&second).is_empty(), "once only");
    }
}

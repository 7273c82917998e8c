//! What the push tests share: a Bayeux long-polling client, a Bayeux
//! WebSocket client and a plain WebSocket client, written from the protocol
//! (not from the server's code), plus the few API calls that make
//! notifications happen.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use tests::TestApp;

/// How long one expected step (a delivery, a state change, an ack) may take.
/// The support crate's, so push and API tests wait alike.
pub use tests::WAIT;

pub type Socket = WebSocketStream<Wire>;

/// A client's TCP connection, which can be made mute: from then on nothing
/// it writes reaches the server (not even the pongs the WebSocket library
/// answers pings with), while it still reads all the server sends. That is
/// a peer whose way back is dead, which a client that merely stops reading
/// cannot fake: the library would answer pings on the next read, or fail
/// writing them before it reads the close frame.
pub struct Wire {
    tcp: TcpStream,
    muted: Arc<AtomicBool>,
}

impl Wire {
    pub fn mute(&self) {
        self.muted.store(true, Ordering::SeqCst);
    }

    fn is_muted(&self) -> bool {
        self.muted.load(Ordering::SeqCst)
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let wire = self.get_mut();
        if wire.is_muted() {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut wire.tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let wire = self.get_mut();
        if wire.is_muted() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut wire.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let wire = self.get_mut();
        if wire.is_muted() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut wire.tcp).poll_shutdown(cx)
    }
}

/// How a client tells the server whose it is.
#[derive(Debug, Clone)]
pub enum Who {
    /// The `gms_user` HTTP header, as the GMS sample's CometD client sends it.
    Header(String),
    /// `ext.gms_user` in the handshake.
    Ext(String),
    /// `?gms_user=` on the URL (browsers cannot set WebSocket headers).
    Query(String),
    /// `ext.agent_id` in the handshake.
    AgentExt(String),
    /// `?agent_id=` on the URL.
    AgentQuery(String),
    /// Nobody.
    Nobody,
}

impl Who {
    fn query(&self) -> String {
        match self {
            Who::Query(d) => format!("?gms_user={d}"),
            Who::AgentQuery(a) => format!("?agent_id={a}"),
            _ => String::new(),
        }
    }

    fn ext(&self) -> Option<Value> {
        match self {
            Who::Ext(d) => Some(json!({"gms_user": d})),
            Who::AgentExt(a) => Some(json!({"agent_id": a})),
            _ => None,
        }
    }

    fn header(&self) -> Option<&str> {
        match self {
            Who::Header(d) => Some(d),
            _ => None,
        }
    }
}

/// Whether a Bayeux message is a delivery: not a meta reply, and not the
/// reply to a publish (which carries `successful`).
pub fn is_delivery(m: &Value) -> bool {
    !m["channel"].as_str().unwrap_or("").starts_with("/meta/") && m.get("successful").is_none()
}

/// The deliveries in an answer.
pub fn deliveries(answer: &[Value]) -> Vec<Value> {
    answer.iter().filter(|m| is_delivery(m)).cloned().collect()
}

/// The meta reply on `channel` in an answer.
pub fn reply_on(answer: &[Value], channel: &str) -> Value {
    answer
        .iter()
        .find(|m| m["channel"] == channel)
        .cloned()
        .unwrap_or_else(|| panic!("no {channel} reply in {answer:?}"))
}

/// The error text of a reply ("" if none).
pub fn error_of(reply: &Value) -> &str {
    reply["error"].as_str().unwrap_or("")
}

/// A Bayeux long-polling client: every batch is one POST of a JSON array.
pub struct LongPoll {
    http: reqwest::Client,
    url: String,
    query: String,
    who: Who,
    /// Post to `/genesys/cometd/<type>` as stock CometD does.
    append_type: bool,
    pub client_id: Option<String>,
    next_id: u64,
    /// Deliveries received and not yet taken by `wait_for`.
    inbox: VecDeque<Value>,
    /// Every delivery received, in order.
    pub log: Vec<Value>,
}

impl LongPoll {
    pub fn new(app: &TestApp, who: Who) -> LongPoll {
        LongPoll {
            http: reqwest::Client::new(),
            url: app.url("/genesys/cometd"),
            query: who.query(),
            who,
            append_type: false,
            client_id: None,
            next_id: 0,
            inbox: VecDeque::new(),
            log: Vec::new(),
        }
    }

    /// Posts to `/genesys/cometd/handshake`, `/genesys/cometd/connect`, ...
    /// as the stock CometD client does.
    pub fn appending_the_type(mut self) -> LongPoll {
        self.append_type = true;
        self
    }

    /// Handshakes, connects once (advice.timeout 0) and subscribes to
    /// `channel`, asserting each step succeeded.
    pub async fn open(app: &TestApp, who: Who, channel: &str) -> LongPoll {
        LongPoll::new(app, who).start(channel).await
    }

    /// What `open` does, on a client already made.
    pub async fn start(self, channel: &str) -> LongPoll {
        let mut lp = self;
        let reply = lp.handshake().await;
        assert_eq!(reply["successful"], true, "handshake: {reply}");
        let answer = lp.first_connect().await;
        let connect = reply_on(&answer, "/meta/connect");
        assert_eq!(connect["successful"], true, "first connect: {connect}");
        let reply = lp.subscribe(channel).await;
        assert_eq!(reply["successful"], true, "subscribe: {reply}");
        lp
    }

    /// A device client listening on `/_genesys`, identified by the header.
    pub async fn device(app: &TestApp, device: &str) -> LongPoll {
        LongPoll::open(app, Who::Header(device.into()), "/_genesys").await
    }

    /// Another handle on the same client id, to send a second request while
    /// this one's is held.
    pub fn twin(&self) -> LongPoll {
        LongPoll {
            http: self.http.clone(),
            url: self.url.clone(),
            query: self.query.clone(),
            who: self.who.clone(),
            append_type: self.append_type,
            client_id: self.client_id.clone(),
            next_id: 1000 + self.next_id,
            inbox: VecDeque::new(),
            log: Vec::new(),
        }
    }

    /// Posts `messages` as one batch, with `id` and `clientId` filled in;
    /// answers the server's array.
    pub async fn send(&mut self, mut messages: Vec<Value>) -> Vec<Value> {
        for m in &mut messages {
            self.next_id += 1;
            if m.get("id").is_none() {
                m["id"] = json!(self.next_id.to_string());
            }
            if let (Some(id), None) = (&self.client_id, m.get("clientId")) {
                m["clientId"] = json!(id);
            }
        }
        let mut url = self.url.clone();
        if self.append_type {
            let kind = messages[0]["channel"]
                .as_str()
                .and_then(|c| c.strip_prefix("/meta/"))
                .unwrap_or("");
            if !kind.is_empty() {
                url = format!("{url}/{kind}");
            }
        }
        let mut request = self
            .http
            .post(format!("{url}{}", self.query))
            .json(&Value::Array(messages));
        if let Some(device) = self.who.header() {
            request = request.header("gms_user", device);
        }
        let response = request.send().await.expect("long-poll request");
        let status = response.status();
        let text = response.text().await.expect("long-poll body");
        assert_eq!(status, 200, "long-poll answered {status}: {text}");
        let answer: Vec<Value> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("long-poll answer is not a JSON array ({e}): {text}"));
        let got = deliveries(&answer);
        self.log.extend(got.iter().cloned());
        self.inbox.extend(got);
        answer
    }

    /// Handshakes; remembers the client id if it succeeded. Answers the reply.
    pub async fn handshake(&mut self) -> Value {
        let mut message = json!({
            "channel": "/meta/handshake",
            "version": "1.0",
            "minimumVersion": "1.0",
            "supportedConnectionTypes": ["long-polling"],
        });
        if let Some(ext) = self.who.ext() {
            message["ext"] = ext;
        }
        let answer = self.send(vec![message]).await;
        let reply = reply_on(&answer, "/meta/handshake");
        if reply["successful"] == true {
            self.client_id = reply["clientId"].as_str().map(str::to_owned);
        }
        reply
    }

    /// The first connect: advice.timeout 0 asks for an answer at once.
    pub async fn first_connect(&mut self) -> Vec<Value> {
        self.send(vec![json!({
            "channel": "/meta/connect",
            "connectionType": "long-polling",
            "advice": {"timeout": 0},
        })])
        .await
    }

    /// A later connect: held until a message comes or the connect timeout.
    pub async fn connect(&mut self) -> Vec<Value> {
        self.send(vec![json!({
            "channel": "/meta/connect",
            "connectionType": "long-polling",
        })])
        .await
    }

    pub async fn subscribe(&mut self, channel: &str) -> Value {
        let answer = self
            .send(vec![
                json!({"channel": "/meta/subscribe", "subscription": channel}),
            ])
            .await;
        reply_on(&answer, "/meta/subscribe")
    }

    pub async fn disconnect(&mut self) -> Value {
        let answer = self
            .send(vec![json!({"channel": "/meta/disconnect"})])
            .await;
        reply_on(&answer, "/meta/disconnect")
    }

    /// Connects again and again until a delivery matching `wanted` came;
    /// answers it (the deliveries before it stay for later calls).
    /// What a live client does next: connect again. The server counts an
    /// answer as received only when the next connect shows it arrived.
    pub async fn settle(&mut self) {
        self.first_connect().await;
    }

    pub async fn wait_for(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(at) = self.inbox.iter().position(&wanted) {
                return self.inbox.remove(at).expect("found");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = tokio::time::timeout(left, self.connect()).await;
            let connect = match answer {
                Ok(answer) => reply_on(&answer, "/meta/connect"),
                Err(_) => panic!("no {what} within {WAIT:?}; received {:#?}", self.log),
            };
            assert_eq!(connect["successful"], true, "connect: {connect}");
        }
    }
}

/// A Bayeux client over the `websocket` transport: batches go out as text
/// frames holding a JSON array, and come back the same way.
pub struct BayeuxWs {
    pub ws: Socket,
    pub client_id: Option<String>,
    who: Who,
    next_id: u64,
    /// Meta replies received and not yet taken.
    replies: VecDeque<Value>,
    /// Deliveries received and not yet taken.
    inbox: VecDeque<Value>,
    /// Every delivery received, in order.
    pub log: Vec<Value>,
}

/// How a WebSocket ended: its close frame's code and reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

/// Opens a WebSocket on `path` (with its query).
pub async fn open_socket(app: &TestApp, path: &str) -> Result<Socket, tungstenite::Error> {
    let addr = app.base.strip_prefix("http://").expect("an http:// base");
    let tcp = TcpStream::connect(addr).await.expect("TCP connect");
    let wire = Wire {
        tcp,
        muted: Arc::new(AtomicBool::new(false)),
    };
    tokio_tungstenite::client_async(format!("ws://{addr}{path}"), wire)
        .await
        .map(|(ws, _)| ws)
}

/// What reading a WebSocket gave.
#[derive(Debug)]
pub enum Next {
    Text(String),
    /// The socket closed; with its close frame, if it sent one.
    Closed(Option<Closed>),
    /// Nothing came in time.
    Silent,
}

/// The next text frame (pings are answered by the library as it reads), or
/// how the socket closed, or nothing within `within`.
pub async fn next_text(ws: &mut Socket, within: Duration) -> Next {
    let deadline = Instant::now() + within;
    loop {
        let Ok(frame) = tokio::time::timeout_at(deadline, ws.next()).await else {
            return Next::Silent;
        };
        match frame {
            None | Some(Err(_)) => return Next::Closed(None),
            Some(Ok(Message::Text(t))) => return Next::Text(t.to_string()),
            Some(Ok(Message::Close(frame))) => {
                return Next::Closed(frame.map(|f| Closed {
                    code: u16::from(f.code),
                    reason: f.reason.to_string(),
                }))
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Reads until the socket closes; answers its close frame. Text frames on
/// the way are skipped.
pub async fn closed(ws: &mut Socket, within: Duration) -> Closed {
    let deadline = Instant::now() + within;
    loop {
        match next_text(ws, deadline.saturating_duration_since(Instant::now())).await {
            Next::Text(_) => continue,
            Next::Closed(Some(closed)) => return closed,
            Next::Closed(None) => panic!("the socket ended without a close frame"),
            Next::Silent => panic!("the socket is still open after {within:?}"),
        }
    }
}

impl BayeuxWs {
    pub async fn new(app: &TestApp, who: Who) -> BayeuxWs {
        let ws = open_socket(app, &format!("/genesys/cometd{}", who.query()))
            .await
            .expect("Bayeux WebSocket upgrade");
        BayeuxWs {
            ws,
            client_id: None,
            who,
            next_id: 0,
            replies: VecDeque::new(),
            inbox: VecDeque::new(),
            log: Vec::new(),
        }
    }

    /// Handshakes, connects once (advice.timeout 0) and subscribes, asserting
    /// each step succeeded.
    pub async fn open(app: &TestApp, who: Who, channel: &str) -> BayeuxWs {
        let mut c = BayeuxWs::new(app, who).await;
        let reply = c.handshake().await;
        assert_eq!(reply["successful"], true, "handshake: {reply}");
        c.send(vec![json!({
            "channel": "/meta/connect",
            "connectionType": "websocket",
            "advice": {"timeout": 0},
        })])
        .await;
        let reply = c.reply("/meta/connect").await;
        assert_eq!(reply["successful"], true, "first connect: {reply}");
        c.send(vec![
            json!({"channel": "/meta/subscribe", "subscription": channel}),
        ])
        .await;
        let reply = c.reply("/meta/subscribe").await;
        assert_eq!(reply["successful"], true, "subscribe: {reply}");
        c
    }

    /// Sends `messages` as one text frame, with `id` and `clientId` filled in.
    pub async fn send(&mut self, mut messages: Vec<Value>) {
        for m in &mut messages {
            self.next_id += 1;
            m["id"] = json!(self.next_id.to_string());
            if let Some(id) = &self.client_id {
                m["clientId"] = json!(id);
            }
        }
        self.ws
            .send(Message::text(Value::Array(messages).to_string()))
            .await
            .expect("send a frame");
    }

    pub async fn handshake(&mut self) -> Value {
        let mut message = json!({
            "channel": "/meta/handshake",
            "version": "1.0",
            "supportedConnectionTypes": ["websocket"],
        });
        if let Some(ext) = self.who.ext() {
            message["ext"] = ext;
        }
        self.send(vec![message]).await;
        let reply = self.reply("/meta/handshake").await;
        if reply["successful"] == true {
            self.client_id = reply["clientId"].as_str().map(str::to_owned);
        }
        reply
    }

    /// Sends a connect that the server holds (no advice.timeout).
    pub async fn held_connect(&mut self) {
        self.send(vec![
            json!({"channel": "/meta/connect", "connectionType": "websocket"}),
        ])
        .await;
    }

    /// What a live client does: keep reading, which answers the server's
    /// pings; a pong is the server's proof that what came before arrived.
    pub async fn settle(&mut self) {
        while self.read(Duration::from_millis(300)).await {}
    }

    /// Reads one frame within `within` and sorts its messages into replies
    /// and deliveries. Answers false if nothing came in time; panics if the
    /// socket closed.
    pub async fn read(&mut self, within: Duration) -> bool {
        let text = match next_text(&mut self.ws, within).await {
            Next::Text(t) => t,
            Next::Silent => return false,
            Next::Closed(closed) => panic!(
                "the Bayeux socket closed ({closed:?}); received {:#?}",
                self.log
            ),
        };
        let batch: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("a Bayeux frame is JSON ({e}): {text}"));
        let batch = batch
            .as_array()
            .unwrap_or_else(|| panic!("a Bayeux frame holds an array: {text}"))
            .clone();
        for m in batch {
            if is_delivery(&m) {
                self.log.push(m.clone());
                self.inbox.push_back(m);
            } else {
                self.replies.push_back(m);
            }
        }
        true
    }

    /// The next reply on this meta channel; deliveries read meanwhile are kept.
    pub async fn reply(&mut self, channel: &str) -> Value {
        self.reply_within(channel, WAIT).await
    }

    pub async fn reply_within(&mut self, channel: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(at) = self.replies.iter().position(|r| r["channel"] == channel) {
                return self.replies.remove(at).expect("found");
            }
            if !self
                .read(deadline.saturating_duration_since(Instant::now()))
                .await
            {
                panic!("no {channel} reply within {within:?}");
            }
        }
    }

    /// Meta replies received and not yet taken.
    pub fn pending_replies(&self) -> Vec<Value> {
        self.replies.iter().cloned().collect()
    }

    /// Reads until a delivery matching `wanted` came; answers it.
    pub async fn wait_for(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(at) = self.inbox.iter().position(&wanted) {
                return self.inbox.remove(at).expect("found");
            }
            if !self
                .read(deadline.saturating_duration_since(Instant::now()))
                .await
            {
                panic!("no {what} within {WAIT:?}; received {:#?}", self.log);
            }
        }
    }
}

/// A plain WebSocket client of `/api/v1/push/ws`.
pub struct PlainWs {
    pub ws: Socket,
    /// Every frame after the hello, in order.
    pub log: Vec<Value>,
    inbox: VecDeque<Value>,
}

impl PlainWs {
    /// Opens the socket with this query (`gms_user=...&agent_id=...`) and
    /// answers the client with its first frame, the hello.
    pub async fn open(app: &TestApp, query: &str) -> (PlainWs, Value) {
        let ws = open_socket(app, &format!("/api/v1/push/ws?{query}"))
            .await
            .expect("plain WebSocket upgrade");
        let mut plain = PlainWs {
            ws,
            log: Vec::new(),
            inbox: VecDeque::new(),
        };
        let hello = plain.next_frame(WAIT).await.expect("the hello frame");
        (plain, hello)
    }

    /// Keeps reading for a moment (answering pings, which acknowledges what
    /// came before them); frames read meanwhile are kept.
    pub async fn settle(&mut self) {
        while let Some(frame) = self.next_frame(Duration::from_millis(300)).await {
            self.log.push(frame.clone());
            self.inbox.push_back(frame);
        }
    }

    /// The next frame, parsed; None if nothing came within `within`.
    async fn next_frame(&mut self, within: Duration) -> Option<Value> {
        match next_text(&mut self.ws, within).await {
            Next::Text(text) => Some(
                serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("a plain frame is JSON ({e}): {text}")),
            ),
            Next::Silent => None,
            Next::Closed(closed) => panic!(
                "the plain socket closed ({closed:?}); received {:#?}",
                self.log
            ),
        }
    }

    pub async fn wait_for(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(at) = self.inbox.iter().position(&wanted) {
                return self.inbox.remove(at).expect("found");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(frame) = self.next_frame(left).await else {
                panic!("no {what} within {WAIT:?}; received {:#?}", self.log);
            };
            self.log.push(frame.clone());
            self.inbox.push_back(frame);
        }
    }
}

/// The status and body of a refused WebSocket upgrade.
pub fn refusal(result: Result<Socket, tungstenite::Error>) -> (u16, Value) {
    match result {
        Ok(_) => panic!("the upgrade was accepted"),
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            let body = serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
            (response.status().as_u16(), body)
        }
        Err(e) => panic!("the upgrade failed without an HTTP answer: {e}"),
    }
}

/// Creates a service for this device (its `_device_notification_id`, which
/// the device then presents as `gms_user`); answers the service id.
pub async fn create_for(app: &TestApp, scenario: &str, device: &str) -> String {
    let (status, body) = app
        .post_form(
            &format!("/genesys/1/service/callback/{scenario}"),
            &[
                ("_customer_number", "5551234"),
                ("_device_notification_id", device),
                ("_device_os", "comet"),
            ],
        )
        .await;
    assert_eq!(status, 200, "create answered {body}");
    body["_id"].as_str().expect("_id").to_owned()
}

/// A service that waits for its desired time, an hour ahead: it is in no
/// queue, so nothing is pushed for it (no queue positions, no state
/// changes after the first) but what a test makes happen.
pub async fn create_scheduled(app: &TestApp, device: &str) -> String {
    let desired = tests::iso_utc_in(Duration::from_secs(3600));
    let (status, body) = app
        .post_form(
            "/genesys/1/service/callback/chat-delay",
            &[
                ("_customer_number", "5551234"),
                ("_desired_time", &desired),
                ("_device_notification_id", device),
                ("_device_os", "comet"),
            ],
        )
        .await;
    assert_eq!(status, 200, "create answered {body}");
    body["_id"].as_str().expect("_id").to_owned()
}

/// The agent desktop sends the device an internal notification.
pub async fn internal_notification(app: &TestApp, id: &str, text: &str) {
    let (status, body) = app
        .post_form(
            &format!("/genesys/1/service/{id}/internal-notification"),
            &[("_display_message", text)],
        )
        .await;
    assert_eq!(status, 200, "internal-notification answered {body}");
}

/// The device sends the agent desktop a notification.
pub async fn agent_notification(app: &TestApp, id: &str, text: &str) {
    let (status, body) = app
        .post_form(
            &format!("/genesys/1/service/{id}/agent-notification"),
            &[("_display_message", text)],
        )
        .await;
    assert_eq!(status, 200, "agent-notification answered {body}");
}

/// The customer confirms (`connect`) once the agent is available.
pub async fn confirm(app: &TestApp, id: &str) {
    let (status, body) = app
        .post_form(&format!("/genesys/1/service/{id}/connect"), &[])
        .await;
    assert_eq!(status, 200, "connect answered {body}");
}

/// POSTs with an empty multipart body (the customer's chat actions).
pub async fn customer(app: &TestApp, id: &str, action: &str, fields: &[(&str, &str)]) -> Value {
    let (status, body) = app
        .post_form(&format!("/genesys/1/service/{id}/{action}"), fields)
        .await;
    assert_eq!(status, 200, "{action} answered {body}");
    body
}

/// The tags in one of the record's outboxes (`outbox`, `agent_outbox`).
pub fn outbox_tags(record: &Value, outbox: &str) -> Vec<String> {
    record[outbox]
        .as_array()
        .unwrap_or_else(|| panic!("{outbox} in {record}"))
        .iter()
        .map(|n| n["tag"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// A device delivery (the Bayeux message's data) that is this internal notification.
pub fn is_internal(m: &Value, text: &str) -> bool {
    m["channel"] == "/_genesys" && m["data"]["_display_message"] == text
}

/// A device delivery telling the service's new state.
pub fn is_state(m: &Value, id: &str, state: &str) -> bool {
    m["data"]["tag"] == format!("service.state.{id}")
        && m["data"]["message"]["_callback_state"] == state
}

/// The parsed `message` (JSON text) of an agent-channel delivery.
pub fn agent_message(m: &Value) -> Value {
    let text = m["data"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("agent data.message is JSON text: {m}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("agent message ({e}): {text}"))
}

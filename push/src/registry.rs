//! This node's push clients: who they are, what they listen to, what waits
//! for them.
//!
//! A [`Session`] is one client: a Bayeux client id, or one plain WebSocket.
//! Its owner (a device's `gms_user`, an agent id) is fixed when it opens, and
//! decides what it may subscribe to, so a delivery only ever reaches the
//! client that owns the service. Deliveries wait in the session's queue until
//! its transport takes them; the queue is bounded, and a client that lets it
//! fill is dropped with the reason, rather than holding memory for ever.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::{Audience, Delivery, Pushed, DEVICE_CHANNEL, SUPERVISOR_CHANNEL};

/// Every bound the push side keeps.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Clients (Bayeux sessions and plain WebSockets) this node holds at most.
    pub max_clients: usize,
    /// Messages one client may have waiting; one more and it is dropped.
    pub queue_limit: usize,
    /// How long a long-polling `/meta/connect` is held when nothing comes.
    pub connect_timeout: Duration,
    /// How long a client may go without a `/meta/connect` before its client
    /// id expires (CometD's `maxInterval`; GMS uses 10 s).
    pub max_interval: Duration,
    /// A WebSocket is pinged this often ...
    pub ws_ping: Duration,
    /// ... and closed when nothing at all came from it for this long.
    pub ws_idle: Duration,
    /// A client whose socket takes longer than this to accept one write is
    /// dropped as a slow consumer.
    pub send_timeout: Duration,
    /// Messages handed over in one long-polling answer or one WebSocket frame.
    pub batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_clients: 10_000,
            queue_limit: 1_000,
            connect_timeout: Duration::from_secs(30),
            max_interval: Duration::from_secs(10),
            ws_ping: Duration::from_secs(20),
            ws_idle: Duration::from_secs(60),
            send_timeout: Duration::from_secs(10),
            batch: 256,
        }
    }
}

/// Whose client this is. At least one of the two is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    /// The device's `gms_user` (its `_device_notification_id`).
    pub device: Option<String>,
    /// The agent this desktop belongs to.
    pub agent: Option<String>,
    /// A supervisor's board (its credential was checked by the front).
    pub supervisor: bool,
    /// One side of a video room, `<code>/<side>` (its room token was
    /// checked by the front).
    pub room: Option<String>,
}

impl Owner {
    /// Whether this owner may listen on `channel`, and why not.
    pub fn may_subscribe(&self, channel: &str) -> Result<(), String> {
        if let Some(room) = channel.strip_prefix("/rooms/") {
            return match &self.room {
                Some(own) if own == room => Ok(()),
                _ => Err("a room's channel needs that side's room token".to_owned()),
            };
        }
        if channel == SUPERVISOR_CHANNEL {
            return match self.supervisor {
                true => Ok(()),
                false => Err(format!(
                    "{SUPERVISOR_CHANNEL} needs a supervisor's credential"
                )),
            };
        }
        if channel == DEVICE_CHANNEL {
            return match self.device {
                Some(_) => Ok(()),
                None => Err(format!("{DEVICE_CHANNEL} needs the device's gms_user")),
            };
        }
        if let Some(agent) = channel.strip_prefix("/agents/") {
            return match &self.agent {
                Some(own) if own == agent => Ok(()),
                Some(own) => Err(format!("this client belongs to agent `{own}`")),
                None => Err("an agent channel needs the handshake's agent_id".to_owned()),
            };
        }
        Err(format!(
            "no such channel; subscribe to {DEVICE_CHANNEL} or /agents/<agent_id>"
        ))
    }
}

/// A message waiting for its client.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub channel: String,
    pub tag: String,
    pub data: Value,
    pub(crate) pushed: Option<Pushed>,
}

impl Outgoing {
    /// The Bayeux message: channel and data, as GMS sends it.
    pub fn bayeux(&self) -> Value {
        serde_json::json!({"channel": self.channel, "data": self.data})
    }
}

/// Push clients connected to this node, by transport (a gauge).
pub const PUSH_CLIENTS: &str = "callbackd_push_clients";
/// Notifications a client proved it received, by transport (a counter).
pub const PUSH_DELIVERIES: &str = "callbackd_push_deliveries_total";

/// The transports [`PUSH_CLIENTS`] counts, as labels.
pub const CLIENT_TRANSPORTS: [&str; 3] =
    ["cometd_websocket", "cometd_long_polling", "plain_websocket"];

/// A session's [`Binding::transport`] as a metric label.
fn transport_label(transport: &str) -> &'static str {
    match transport {
        crate::bayeux::WEBSOCKET => "cometd_websocket",
        crate::bayeux::LONG_POLLING => "cometd_long_polling",
        // A plain client has no Bayeux binding.
        _ => "plain_websocket",
    }
}

/// What the handshake of a Bayeux session proved about its client, which
/// every later message naming the session must prove again: a `clientId`
/// alone is not enough (see `Bayeux::may_use`).
#[derive(Debug, Default)]
pub struct Binding {
    /// The transport it handshook over. A WebSocket session is usable only
    /// on its socket; a long-polling one only over long-polling.
    pub transport: &'static str,
    /// The owner ids the handshake request itself carried (the `gms_user`
    /// header or query parameter, `?agent_id=`), as opposed to `ext`: a
    /// client that sends them does so on every request.
    pub gms_user: Option<String>,
    pub agent_id: Option<String>,
    /// The browser cookie the handshake answer set or found (long-polling).
    pub browser: Option<String>,
    /// Set once a later request brought `browser` back: the client keeps
    /// cookies, so from then on every request must bring it.
    pub browser_seen: std::sync::atomic::AtomicBool,
    /// The name of the credential the handshake presented (set when
    /// callbackd checks callers and the client connects as an agent); a
    /// later request must present the same one.
    pub credential: Option<String>,
}

/// One client of this node.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub owner: Owner,
    /// What a message naming this session must prove (Bayeux sessions;
    /// plain WebSocket sessions never leave their socket).
    pub binding: Binding,
    state: Mutex<SessionState>,
    /// Woken when a message arrives, the session is dropped, or another
    /// connect takes over.
    pub(crate) wake: Notify,
}

#[derive(Debug)]
struct SessionState {
    subscriptions: BTreeSet<String>,
    queue: VecDeque<Outgoing>,
    /// Why the session ended, once it has.
    dropped: Option<String>,
    /// Bumped by every `/meta/connect`: an older held connect that sees a
    /// newer number answers at once (one connect per client at a time).
    connect: u64,
    /// A connect is held, or a WebSocket is attached: the session is alive
    /// whatever its last connect was.
    attached: usize,
    last_seen: Instant,
    /// Sent in an answer, not yet known to have arrived (long-polling).
    unacked: Vec<Outgoing>,
    /// Serial of the subscription to the device channel (0: none): a new
    /// listener gets the current queue position even if it did not change.
    listening_since: u64,
}

/// Most notifications one long-polling client may have unacknowledged.
const MAX_UNACKED: usize = 4096;

/// Counter behind `listening_since`.
static LISTENERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Session {
    fn lock(&self) -> std::sync::MutexGuard<'_, SessionState> {
        // A panic while holding this lock leaves plain data behind; go on with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn subscribe(&self, channel: &str) -> Result<(), String> {
        self.owner.may_subscribe(channel)?;
        let mut st = self.lock();
        if st.subscriptions.insert(channel.to_owned()) && channel == DEVICE_CHANNEL {
            st.listening_since = LISTENERS.fetch_add(1, Ordering::Relaxed) + 1;
        }
        Ok(())
    }

    pub fn unsubscribe(&self, channel: &str) -> bool {
        self.lock().subscriptions.remove(channel)
    }

    pub fn subscriptions(&self) -> Vec<String> {
        self.lock().subscriptions.iter().cloned().collect()
    }

    /// Why the session was dropped, if it was.
    pub fn dropped(&self) -> Option<String> {
        self.lock().dropped.clone()
    }

    pub fn waiting(&self) -> usize {
        self.lock().queue.len()
    }

    /// Takes up to `max` waiting messages.
    pub fn take(&self, max: usize) -> Vec<Outgoing> {
        let mut st = self.lock();
        let n = st.queue.len().min(max);
        st.queue.drain(..n).collect()
    }

    /// Starts a `/meta/connect`; answers its number.
    pub(crate) fn begin_connect(&self) -> u64 {
        let n = {
            let mut st = self.lock();
            st.connect += 1;
            st.attached += 1;
            st.last_seen = Instant::now();
            st.connect
        };
        // An older held connect answers now.
        self.wake.notify_waiters();
        n
    }

    pub(crate) fn end_connect(&self) {
        let mut st = self.lock();
        st.attached = st.attached.saturating_sub(1);
        st.last_seen = Instant::now();
    }

    /// Whether `n` is the newest connect.
    pub(crate) fn is_current(&self, n: u64) -> bool {
        self.lock().connect == n
    }

    /// Keeps what an answer carried until the client shows it arrived.
    pub(crate) fn hold_unacked(&self, messages: Vec<Outgoing>) {
        let kept = messages.into_iter().filter(|m| m.pushed.is_some());
        let mut st = self.lock();
        st.unacked.extend(kept);
        // Bounded like the queue: past it, the oldest stay in the outbox only.
        let over = st.unacked.len().saturating_sub(MAX_UNACKED);
        st.unacked.drain(..over);
    }

    pub(crate) fn take_unacked(&self) -> Vec<Outgoing> {
        std::mem::take(&mut self.lock().unacked)
    }

    /// Whether the connect numbered `n` should answer now.
    pub(crate) fn connect_done(&self, n: u64) -> bool {
        let st = self.lock();
        st.connect != n || !st.queue.is_empty() || st.dropped.is_some()
    }

    pub(crate) fn touch(&self) {
        self.lock().last_seen = Instant::now();
    }

    /// Queues a delivery if the session listens on its channel.
    /// Err: the queue was full; the session is now dropped.
    fn offer(&self, out: &Outgoing, limit: usize) -> Result<bool, String> {
        let mut st = self.lock();
        if st.dropped.is_some() || !st.subscriptions.contains(&out.channel) {
            return Ok(false);
        }
        if st.queue.len() >= limit {
            let why = format!(
                "slow consumer: {} messages were waiting (the limit is {limit})",
                st.queue.len()
            );
            st.dropped = Some(why.clone());
            st.queue.clear();
            drop(st);
            self.wake.notify_waiters();
            return Err(why);
        }
        st.queue.push_back(out.clone());
        drop(st);
        self.wake.notify_waiters();
        Ok(true)
    }

    fn drop_with(&self, why: &str) {
        let mut st = self.lock();
        if st.dropped.is_none() {
            st.dropped = Some(why.to_owned());
        }
        st.queue.clear();
        drop(st);
        self.wake.notify_waiters();
    }

    fn expired(&self, now: Instant, max_interval: Duration) -> bool {
        let st = self.lock();
        st.attached == 0 && now.saturating_duration_since(st.last_seen) > max_interval
    }
}

/// Why a client could not be opened.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Refused {
    #[error("too many clients on this node ({0}); try again later")]
    TooManyClients(usize),
    #[error("the server is shutting down")]
    ShuttingDown,
}

#[derive(Default)]
struct Index {
    sessions: HashMap<String, Arc<Session>>,
    by_device: HashMap<String, Vec<Arc<Session>>>,
    by_agent: HashMap<String, Vec<Arc<Session>>>,
    supervisors: Vec<Arc<Session>>,
    by_room: HashMap<String, Vec<Arc<Session>>>,
}

impl Index {
    /// The clients a delivery to `audience` is offered to.
    fn clients_of(&self, audience: &Audience) -> Option<&Vec<Arc<Session>>> {
        match audience {
            Audience::Device { device } => self.by_device.get(device),
            Audience::Agent { agent } => self.by_agent.get(agent),
            Audience::Supervisors => Some(&self.supervisors),
            Audience::Room { room } => self.by_room.get(room),
        }
    }

    fn unlink(&mut self, session: &Session) {
        fn remove(map: &mut HashMap<String, Vec<Arc<Session>>>, key: &str, id: &str) {
            if let Some(list) = map.get_mut(key) {
                list.retain(|s| s.id != id);
                if list.is_empty() {
                    map.remove(key);
                }
            }
        }
        if let Some(device) = &session.owner.device {
            remove(&mut self.by_device, device, &session.id);
        }
        if let Some(agent) = &session.owner.agent {
            remove(&mut self.by_agent, agent, &session.id);
        }
        if session.owner.supervisor {
            self.supervisors.retain(|s| s.id != session.id);
        }
        if let Some(room) = &session.owner.room {
            remove(&mut self.by_room, room, &session.id);
        }
    }
}

/// This node's clients.
pub struct Registry {
    pub limits: Limits,
    index: Mutex<Index>,
    acks: mpsc::Sender<Pushed>,
    closing: watch::Sender<bool>,
    /// WebSockets being served; shutdown waits for them to close.
    sockets: AtomicUsize,
    sockets_closed: Notify,
}

/// How many acknowledgements may wait for the shell. Past that, an ack is
/// dropped: the notification stays in the outbox and may be retrieved again,
/// which is the safe side.
const ACK_BUFFER: usize = 4096;

impl Registry {
    /// A registry and the stream of [`Pushed`] notifications the shell must
    /// take out of the outboxes.
    pub fn new(limits: Limits) -> (Arc<Registry>, mpsc::Receiver<Pushed>) {
        let (acks, rx) = mpsc::channel(ACK_BUFFER);
        let (closing, _) = watch::channel(false);
        let registry = Arc::new(Registry {
            limits,
            index: Mutex::new(Index::default()),
            acks,
            closing,
            sockets: AtomicUsize::new(0),
            sockets_closed: Notify::new(),
        });
        (registry, rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether any client here is of `audience`: when none is, a delivery
    /// to it would reach nobody here ([`Registry::dispatch`] gives 0).
    pub fn has_clients(&self, audience: &Audience) -> bool {
        self.lock()
            .clients_of(audience)
            .is_some_and(|list| !list.is_empty())
    }

    /// Opens a client for `owner`.
    pub fn open(&self, owner: Owner) -> Result<Arc<Session>, Refused> {
        self.open_bound(owner, Binding::default())
    }

    /// Opens a session bound to what its handshake proved.
    pub fn open_bound(&self, owner: Owner, binding: Binding) -> Result<Arc<Session>, Refused> {
        if *self.closing.borrow() {
            return Err(Refused::ShuttingDown);
        }
        let session = Arc::new(Session {
            id: uuid::Uuid::new_v4().simple().to_string(),
            owner,
            binding,
            state: Mutex::new(SessionState {
                subscriptions: BTreeSet::new(),
                queue: VecDeque::new(),
                dropped: None,
                connect: 0,
                attached: 0,
                last_seen: Instant::now(),
                listening_since: 0,
                unacked: Vec::new(),
            }),
            wake: Notify::new(),
        });
        let mut index = self.lock();
        if index.sessions.len() >= self.limits.max_clients {
            return Err(Refused::TooManyClients(self.limits.max_clients));
        }
        index.sessions.insert(session.id.clone(), session.clone());
        if let Some(device) = &session.owner.device {
            index
                .by_device
                .entry(device.clone())
                .or_default()
                .push(session.clone());
        }
        if let Some(agent) = &session.owner.agent {
            index
                .by_agent
                .entry(agent.clone())
                .or_default()
                .push(session.clone());
        }
        if session.owner.supervisor {
            index.supervisors.push(session.clone());
        }
        if let Some(room) = &session.owner.room {
            index
                .by_room
                .entry(room.clone())
                .or_default()
                .push(session.clone());
        }
        metrics_clients(index.sessions.len());
        debug!(client_id = %session.id, device = ?session.owner.device, agent = ?session.owner.agent, supervisor = session.owner.supervisor, "Push client opened.");
        Ok(session)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.lock().sessions.get(id).cloned()
    }

    /// Closes a client; what waited for it is discarded (it is still in
    /// the outboxes).
    pub fn close(&self, id: &str, why: &str) {
        let removed = {
            let mut index = self.lock();
            let removed = index.sessions.remove(id);
            if let Some(s) = &removed {
                index.unlink(s);
            }
            metrics_clients(index.sessions.len());
            removed
        };
        if let Some(session) = removed {
            session.drop_with(why);
            debug!(client_id = %id, reason = why, "Push client closed.");
        }
    }

    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Whether a supervisor's board listens on this node.
    /// Whether a client of `device` is on this node.
    pub fn has_device(&self, device: &str) -> bool {
        self.lock().by_device.contains_key(device)
    }

    pub fn has_supervisors(&self) -> bool {
        !self.lock().supervisors.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Devices with a client on this node that listens on the device
    /// channel, each with the serial of its newest such subscription.
    pub fn listening_devices(&self) -> HashMap<String, u64> {
        let index = self.lock();
        index
            .by_device
            .iter()
            .filter_map(|(device, sessions)| {
                let newest = sessions
                    .iter()
                    .map(|s| s.lock().listening_since)
                    .max()
                    .filter(|&n| n > 0)?;
                Some((device.clone(), newest))
            })
            .collect()
    }

    /// Hands a delivery to the clients of its audience on this node that
    /// listen on its channel. Answers how many took it.
    pub fn dispatch(&self, delivery: &Delivery) -> usize {
        let targets: Vec<Arc<Session>> = {
            let index = self.lock();
            index
                .clients_of(&delivery.audience)
                .cloned()
                .unwrap_or_default()
        };
        if targets.is_empty() {
            return 0;
        }
        let out = Outgoing {
            channel: delivery.audience.channel(),
            tag: delivery.tag.clone(),
            data: delivery.data.clone(),
            pushed: delivery.pushed(),
        };
        let mut taken = 0;
        for session in targets {
            match session.offer(&out, self.limits.queue_limit) {
                Ok(true) => taken += 1,
                Ok(false) => {}
                Err(why) => {
                    warn!(client_id = %session.id, reason = %why, "Push client dropped.");
                    // Kept in the index until its transport has told the
                    // client why (or until it expires).
                }
            }
        }
        taken
    }

    /// Reports messages a transport handed to its client (and the client
    /// proved it received them); `transport` is a [`Binding::transport`].
    pub fn delivered(&self, transport: &str, messages: &[Outgoing]) {
        if !messages.is_empty() {
            metrics::counter!(PUSH_DELIVERIES, "transport" => transport_label(transport))
                .increment(messages.len() as u64);
        }
        for pushed in messages.iter().filter_map(|m| m.pushed.clone()) {
            if self.acks.try_send(pushed).is_err() {
                debug!("Push acknowledgement dropped; the notification stays in the outbox.");
            }
        }
    }

    /// Sets the gauge of this node's push clients, by transport.
    pub fn observe(&self) {
        let mut by_transport: std::collections::BTreeMap<&'static str, usize> = [
            CLIENT_TRANSPORTS[0],
            CLIENT_TRANSPORTS[1],
            CLIENT_TRANSPORTS[2],
        ]
        .into_iter()
        .map(|t| (t, 0))
        .collect();
        for session in self.lock().sessions.values() {
            *by_transport
                .entry(transport_label(session.binding.transport))
                .or_default() += 1;
        }
        for (transport, count) in by_transport {
            metrics::gauge!(PUSH_CLIENTS, "transport" => transport).set(count as f64);
        }
    }

    /// Reports a delivery that reached its client some other way (an HTTP callback).
    pub fn acknowledge(&self, delivery: &Delivery) {
        metrics::counter!(PUSH_DELIVERIES, "transport" => "httpcb").increment(1);
        if let Some(pushed) = delivery.pushed() {
            let _ = self.acks.try_send(pushed);
        }
    }

    /// Forgets clients that stopped connecting, and dropped ones nobody
    /// came back for. Answers how many went.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let max_interval = self.limits.max_interval;
        let gone: Vec<String> = self
            .lock()
            .sessions
            .values()
            .filter(|s| s.expired(now, max_interval))
            .map(|s| s.id.clone())
            .collect();
        for id in &gone {
            self.close(id, "expired: no connect within maxInterval");
        }
        gone.len()
    }

    /// Runs [`Registry::sweep`] until shutdown.
    pub async fn sweeper(self: Arc<Self>) {
        let mut closing = self.closing.subscribe();
        let every = (self.limits.max_interval / 2).max(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = crate::registry::closed(&mut closing) => return,
            }
            let n = self.sweep();
            if n > 0 {
                debug!(expired = n, "Push clients expired.");
            }
        }
    }

    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Starts the shutdown: held connects answer, WebSockets close, no new
    /// client opens. Then waits (at most `grace`) for the sockets to close.
    pub async fn shutdown(&self, grace: Duration) {
        self.closing.send_replace(true);
        let sessions: Vec<Arc<Session>> = self.lock().sessions.values().cloned().collect();
        for s in &sessions {
            s.wake.notify_waiters();
        }
        let deadline = Instant::now() + grace;
        loop {
            let closed = self.sockets_closed.notified();
            if self.sockets.load(Ordering::SeqCst) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, closed).await.is_err() {
                warn!(
                    open = self.sockets.load(Ordering::SeqCst),
                    "WebSockets still open at the end of the shutdown grace."
                );
                break;
            }
        }
        info!(clients = sessions.len(), "Push clients closed.");
    }

    /// Counts a WebSocket being served until the guard drops.
    pub fn socket(self: &Arc<Self>) -> SocketGuard {
        self.sockets.fetch_add(1, Ordering::SeqCst);
        SocketGuard(self.clone())
    }

    pub fn open_sockets(&self) -> usize {
        self.sockets.load(Ordering::SeqCst)
    }
}

/// Resolves once the shutdown has started (without holding the watch's lock).
pub(crate) async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await.map(|_| ());
}

/// One WebSocket counted as open (see [`Registry::socket`]).
pub struct SocketGuard(Arc<Registry>);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if self.0.sockets.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.sockets_closed.notify_waiters();
        }
    }
}

fn metrics_clients(n: usize) {
    tracing::trace!(clients = n, "Push clients.");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn device(d: &str) -> Owner {
        Owner {
            device: Some(d.into()),
            ..Owner::default()
        }
    }

    fn to_device(d: &str, n: u32) -> Delivery {
        Delivery {
            service_id: "svc".into(),
            audience: Audience::Device { device: d.into() },
            tag: "t".into(),
            data: json!({"n": n}),
            notification: Some(format!("svc-{n}")),
        }
    }

    #[tokio::test]
    async fn a_delivery_reaches_only_the_owner_and_only_when_subscribed() {
        let (reg, mut acks) = Registry::new(Limits::default());
        let mine = reg.open(device("dev-a")).unwrap();
        let other = reg.open(device("dev-b")).unwrap();
        // Not subscribed yet: nothing is queued.
        assert_eq!(reg.dispatch(&to_device("dev-a", 1)), 0);
        mine.subscribe(DEVICE_CHANNEL).unwrap();
        other.subscribe(DEVICE_CHANNEL).unwrap();
        assert_eq!(reg.dispatch(&to_device("dev-a", 2)), 1);
        assert_eq!(other.waiting(), 0);
        let taken = mine.take(10);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].data, json!({"n": 2}));
        reg.delivered("", &taken);
        let ack = acks.recv().await.unwrap();
        assert_eq!((ack.notification.as_str(), ack.to_agent), ("svc-2", false));
    }

    #[test]
    fn owners_subscribe_only_to_their_own_channels() {
        let d = device("dev-a");
        let a = Owner {
            agent: Some("a1".into()),
            ..Owner::default()
        };

        let check = |o: &Owner, ch: &str| o.may_subscribe(ch).is_ok();
        assert!(check(&d, "/_genesys"));
        assert!(!check(&d, "/agents/a1"));
        assert!(check(&a, "/agents/a1"));
        assert!(!check(&a, "/agents/a2"));
        assert!(!check(&a, "/_genesys"));
        assert!(!check(&d, "/**"));
        assert!(!check(&d, "/meta/whatever"));
        let s = Owner {
            supervisor: true,
            ..Owner::default()
        };
        assert!(check(&s, "/supervisors"));
        assert!(!check(&s, "/_genesys"));
        assert!(!check(&d, "/supervisors"));
        assert!(!check(&a, "/supervisors"));
        let r = Owner {
            room: Some("K7QX4MA/customer".into()),
            ..Owner::default()
        };
        assert!(check(&r, "/rooms/K7QX4MA/customer"));
        assert!(!check(&r, "/rooms/K7QX4MA/agent"));
        assert!(!check(&r, "/rooms/OTHER/customer"));
        assert!(!check(&d, "/rooms/K7QX4MA/customer"));
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_client_with_the_reason() {
        let limits = Limits {
            queue_limit: 3,
            ..Limits::default()
        };
        let (reg, _acks) = Registry::new(limits);
        let s = reg.open(device("dev-a")).unwrap();
        s.subscribe(DEVICE_CHANNEL).unwrap();
        for n in 0..3 {
            assert_eq!(reg.dispatch(&to_device("dev-a", n)), 1);
        }
        assert_eq!(reg.dispatch(&to_device("dev-a", 3)), 0);
        let why = s.dropped().expect("dropped");
        assert!(why.contains("slow consumer"), "{why}");
        assert_eq!(s.waiting(), 0);
        // Nothing more reaches it.
        assert_eq!(reg.dispatch(&to_device("dev-a", 4)), 0);
    }

    #[tokio::test]
    async fn the_client_limit_holds() {
        let limits = Limits {
            max_clients: 2,
            ..Limits::default()
        };
        let (reg, _acks) = Registry::new(limits);
        let a = reg.open(device("a")).unwrap();
        reg.open(device("b")).unwrap();
        assert_eq!(
            reg.open(device("c")).unwrap_err(),
            Refused::TooManyClients(2)
        );
        reg.close(&a.id, "bye");
        assert!(reg.open(device("c")).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn clients_that_stop_connecting_expire() {
        let limits = Limits {
            max_interval: Duration::from_secs(10),
            ..Limits::default()
        };
        let (reg, _acks) = Registry::new(limits);
        let idle = reg.open(device("a")).unwrap();
        let held = reg.open(device("b")).unwrap();
        held.begin_connect();
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(reg.sweep(), 0);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(reg.sweep(), 1, "only the client without a held connect");
        assert!(reg.get(&idle.id).is_none());
        assert!(idle.dropped().unwrap().contains("expired"));
        assert!(reg.get(&held.id).is_some());
        held.end_connect();
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(reg.sweep(), 1);
    }
}

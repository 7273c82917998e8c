//! Every node hears every delivery.
//!
//! A client may hold its connection to any node, whichever made the
//! notification. [`Fanout::deliver`] hands a delivery to this node's clients
//! at once and, when another node may listen, sends it through the
//! [`Relay`] (Redis pub/sub) to them; what comes back from the relay is
//! handed to this node's clients unless this node sent it.
//!
//! A relayed message starts with a header, so a node reads the delivery
//! only when it has a client to hand it to: most deliveries (a create's
//! state change, say) reach no client on most nodes, and every node hears
//! its own messages back.
//!
//! ```text
//! <node> SP <audience kind> SP <key length> LF <key> <delivery as JSON>
//! ```
//!
//! The node is 32 hex digits; the kind is `d` (a device), `a` (an agent),
//! `s` (the supervisors, with an empty key) or `r` (a room side); the key is
//! the device, agent or room. A message that starts with `{` is one from a
//! node before the header (`{"o": <node>, "d": <delivery>}`), read whole.
//!
//! **A node alone relays nothing.** A publish answers how many listeners
//! heard it; when only this node's own subscription did, no other node is
//! there, and the node stops building and publishing messages for others
//! (on one node they were more than a quarter of a create's instructions,
//! heard back only by itself). A node that subscribes says so with a hello (kind `h`, no key,
//! no delivery), so the nodes already there relay again; any message from
//! another node does too. Until a publish says otherwise, and whenever its
//! own subscription is down, a node takes it that others listen.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::registry::Registry;
use crate::{Audience, Delivery};

/// Carries deliveries to the other nodes.
pub trait Relay: Send + Sync + 'static {
    /// Publishes `messages` in order, in one round trip where it can (the
    /// relay task hands over what queued up meanwhile). Answers how many
    /// listeners the most heard of them reached, this node's own
    /// subscription among them, or None when the relay cannot tell (on a
    /// Redis Cluster a publish counts only its own server's listeners).
    fn publish(
        &self,
        messages: Vec<Vec<u8>>,
    ) -> Pin<Box<dyn Future<Output = Result<Option<usize>, String>> + Send + '_>>;
}

/// The other nodes' messages as the relay brings them, and whether this
/// node's subscription is up.
pub struct Inbound {
    pub messages: mpsc::Receiver<Vec<u8>>,
    /// True while this node listens on the relay; every change to true is a
    /// new subscription (after start-up, or after the connection was lost).
    pub listening: watch::Receiver<bool>,
}

/// How many queued deliveries the relay task publishes at once.
const RELAY_BATCH: usize = 128;

/// What went over the relay before the header: the delivery and the node
/// that made it.
#[derive(Deserialize)]
struct Relayed {
    /// The sending node, so it does not deliver its own twice.
    o: String,
    d: Delivery,
}

/// How many deliveries may wait for the relay. Past that they are not
/// relayed (they are still in the outboxes).
const RELAY_BUFFER: usize = 10_000;

/// Gauge: 1 while this node relays deliveries to other nodes, 0 while it
/// found itself alone on the relay (absent without a relay).
pub const PUSH_RELAYING: &str = "callbackd_push_relaying";

/// How long a hello that could not be published waits to be tried again.
const HELLO_RETRY: Duration = Duration::from_secs(1);

pub struct Fanout {
    pub registry: Arc<Registry>,
    node: String,
    outgoing: Option<mpsc::Sender<Vec<u8>>>,
    company: Arc<Company>,
}

/// What a node knows of the other nodes on the relay.
struct Company {
    /// Whether a delivery may reach another node (read on every delivery):
    /// others may listen, or this node cannot tell.
    relaying: AtomicBool,
    state: Mutex<CompanyState>,
}

struct CompanyState {
    /// This node's subscription is up. Only then does a publish heard by
    /// one listener say that this node is alone.
    listening: bool,
    /// Another node may listen.
    others: bool,
    /// Bumped whenever another node makes itself heard (or this node
    /// subscribes anew), so the count of a publish sent before that cannot
    /// set `others` back to false after it.
    news: u64,
}

impl Company {
    fn new() -> Company {
        Company {
            relaying: AtomicBool::new(true),
            state: Mutex::new(CompanyState {
                listening: false,
                others: true,
                news: 0,
            }),
        }
    }

    fn update(&self, f: impl FnOnce(&mut CompanyState)) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state);
        let relaying = state.others || !state.listening;
        if self.relaying.swap(relaying, Ordering::Relaxed) != relaying {
            if !state.listening {
                info!("This node does not listen on the relay now: deliveries are relayed in case another node does.");
            } else if relaying {
                info!("Another node listens on the relay: deliveries are relayed.");
            } else {
                info!("No other node listens on the relay: deliveries are not relayed until one says hello.");
            }
            metrics::gauge!(PUSH_RELAYING).set(f64::from(u8::from(relaying)));
        }
    }

    fn news(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).news
    }

    /// This node's subscription came up: it takes it that others listen
    /// until a publish says otherwise.
    fn subscribed(&self) {
        self.update(|s| {
            s.listening = true;
            s.others = true;
            s.news += 1;
        });
    }

    /// This node's subscription was lost: it cannot tell who listens.
    fn lost(&self) {
        self.update(|s| s.listening = false);
    }

    /// Another node subscribed (its hello).
    fn hello(&self) {
        self.update(|s| {
            s.others = true;
            s.news += 1;
        });
    }

    /// Another node was heard from: it listens, unless it is between two
    /// subscriptions (and then its hello follows).
    fn heard_from_another(&self) {
        // Called for every message another node relays: no lock while this
        // node relays anyway (then `others` is true, or this node is not
        // listening and takes it that others listen when it is again).
        if self.relaying.load(Ordering::Relaxed) {
            return;
        }
        self.update(|s| {
            if !s.others {
                s.others = true;
                s.news += 1;
            }
        });
    }

    /// A publish sent when `news` was `seen` reached `listeners`.
    fn published(&self, listeners: usize, seen: u64) {
        self.update(|s| {
            if listeners > 1 {
                s.others = true;
            } else if s.listening && s.news == seen {
                s.others = false;
            }
        });
    }
}

impl Fanout {
    /// A fanout for one node; `relay` is None when this is the only node.
    pub fn new(registry: Arc<Registry>, relay: Option<Arc<dyn Relay>>) -> Arc<Fanout> {
        let node = uuid::Uuid::new_v4().simple().to_string();
        let company = Arc::new(Company::new());
        let outgoing = relay.map(|relay| {
            metrics::gauge!(PUSH_RELAYING).set(1.0);
            let (tx, rx) = mpsc::channel::<Vec<u8>>(RELAY_BUFFER);
            // One task sends them in order, so a client hears a service's
            // notifications in the order they were made.
            tokio::spawn(relay_task(relay, rx, company.clone(), hello(&node)));
            tx
        });
        Arc::new(Fanout {
            registry,
            node,
            outgoing,
            company,
        })
    }

    /// Whether deliveries may go to other nodes: there is a relay, and
    /// another node may listen on it.
    pub fn relays(&self) -> bool {
        self.outgoing.is_some() && self.company.relaying.load(Ordering::Relaxed)
    }

    /// This node's subscription to the relay came up (`true`) or was lost.
    /// A new subscription says hello, so the nodes that took themselves to
    /// be alone relay again, and takes it that others listen until a
    /// publish says otherwise.
    pub fn listening(&self, up: bool) {
        if !up {
            self.company.lost();
            return;
        }
        self.company.subscribed();
        if let Some(tx) = &self.outgoing {
            if tx.try_send(hello(&self.node)).is_err() {
                warn!("Relay backlog full; the hello to the other nodes is not sent.");
            }
        }
    }

    /// Hands `delivery` to its clients, here and on every other node.
    pub fn deliver(&self, delivery: Delivery) {
        let here = self.registry.dispatch(&delivery);
        debug!(service_id = %delivery.service_id, tag = %delivery.tag, clients = here, "Delivery dispatched.");
        if let Some(tx) = self.outgoing.as_ref().filter(|_| self.relays()) {
            if tx.try_send(self.relay_message(&delivery)).is_err() {
                warn!("Relay backlog full; a delivery stays in its outbox only.");
            }
        }
    }

    /// `delivery` as it goes over the relay: the header, then the JSON.
    fn relay_message(&self, delivery: &Delivery) -> Vec<u8> {
        let (kind, key) = match &delivery.audience {
            Audience::Device { device } => ('d', device.as_str()),
            Audience::Agent { agent } => ('a', agent.as_str()),
            Audience::Supervisors => ('s', ""),
            Audience::Room { room } => ('r', room.as_str()),
        };
        // A state notice is about 600 bytes: one allocation, not several.
        let mut message = Vec::with_capacity(1024);
        {
            use std::io::Write;
            let _ = write!(message, "{} {kind} {}\n{key}", self.node, key.len());
        }
        serde_json::to_writer(&mut message, delivery).expect("a delivery serialises");
        message
    }

    /// Hands what another node relayed to this node's clients.
    pub fn relayed(&self, message: &[u8]) {
        match self.receive(message) {
            Ok(Received::Dispatched(clients)) => {
                debug!(clients, "Relayed delivery dispatched.");
            }
            Ok(Received::Own | Received::NoClient | Received::Hello) => {}
            Err(e) => warn!(error = %e, "A relayed delivery could not be read."),
        }
    }

    fn receive(&self, message: &[u8]) -> Result<Received, String> {
        if message.first() == Some(&b'{') {
            let r: Relayed = serde_json::from_slice(message).map_err(|e| e.to_string())?;
            if r.o == self.node {
                return Ok(Received::Own);
            }
            self.company.heard_from_another();
            return Ok(Received::Dispatched(self.registry.dispatch(&r.d)));
        }
        let Header {
            node,
            audience,
            json,
        } = split_header(message)?;
        if node == self.node.as_bytes() {
            return Ok(Received::Own);
        }
        let Some(audience) = audience else {
            self.company.hello();
            return Ok(Received::Hello);
        };
        self.company.heard_from_another();
        if !self.registry.has_clients(&audience) {
            return Ok(Received::NoClient);
        }
        let delivery: Delivery = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        if delivery.audience != audience {
            return Err("the header names another audience than the delivery".to_owned());
        }
        Ok(Received::Dispatched(self.registry.dispatch(&delivery)))
    }
}

/// What became of a relayed message.
#[derive(Debug, PartialEq)]
enum Received {
    /// This node sent it, and handed it to its clients then.
    Own,
    /// Another node subscribed.
    Hello,
    /// No client here is of its audience: its JSON was not read.
    NoClient,
    /// Offered to this node's clients of its audience; so many took it.
    Dispatched(usize),
}

/// What a node publishes when it subscribes: its header with kind `h`.
fn hello(node: &str) -> Vec<u8> {
    format!("{node} h 0\n").into_bytes()
}

/// Publishes what the fanout queues, in batches, and learns from each
/// publish's count whether another node listens. A hello that could not be
/// published is tried again, or a node alone would never hear of this one.
async fn relay_task(
    relay: Arc<dyn Relay>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    company: Arc<Company>,
    hello: Vec<u8>,
) {
    let mut failing = false;
    let mut hello_owed = false;
    let mut batch = Vec::with_capacity(RELAY_BATCH);
    loop {
        if hello_owed {
            tokio::select! {
                n = rx.recv_many(&mut batch, RELAY_BATCH) => if n == 0 { return },
                _ = tokio::time::sleep(HELLO_RETRY) => {}
            }
            if !batch.contains(&hello) {
                batch.push(hello.clone());
            }
        } else if rx.recv_many(&mut batch, RELAY_BATCH).await == 0 {
            return;
        }
        let seen = company.news();
        let has_hello = batch.contains(&hello);
        match relay.publish(std::mem::take(&mut batch)).await {
            Ok(listeners) => {
                failing = false;
                if has_hello {
                    hello_owed = false;
                }
                if let Some(listeners) = listeners {
                    company.published(listeners, seen);
                }
            }
            Err(e) => {
                hello_owed |= has_hello;
                if !std::mem::replace(&mut failing, true) {
                    warn!(error = %e, "Deliveries cannot reach the other nodes; they stay in the outboxes.");
                }
            }
        }
    }
}

/// A relayed message, read as far as its header.
#[derive(Debug)]
struct Header<'a> {
    /// The sending node.
    node: &'a [u8],
    /// None for a hello.
    audience: Option<Audience>,
    /// The delivery's JSON (empty for a hello).
    json: &'a [u8],
}

/// A relayed message's sending node, audience and delivery JSON.
fn split_header(message: &[u8]) -> Result<Header<'_>, String> {
    let unreadable = || "no header".to_owned();
    let lf = message
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(unreadable)?;
    let head = std::str::from_utf8(&message[..lf]).map_err(|_| unreadable())?;
    let mut parts = head.split(' ');
    let (Some(node), Some(kind), Some(len), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unreadable());
    };
    let len: usize = len.parse().map_err(|_| unreadable())?;
    let rest = &message[lf + 1..];
    if rest.len() < len {
        return Err("the key is cut off".to_owned());
    }
    let (key, json) = rest.split_at(len);
    let key = std::str::from_utf8(key)
        .map_err(|_| "the key is not UTF-8".to_owned())?
        .to_owned();
    let audience = match (kind, key.is_empty()) {
        ("h", true) if json.is_empty() => {
            return Ok(Header {
                node: node.as_bytes(),
                audience: None,
                json,
            })
        }
        ("h", _) => return Err("a hello has a key or a delivery".to_owned()),
        ("d", _) => Audience::Device { device: key },
        ("a", _) => Audience::Agent { agent: key },
        ("s", true) => Audience::Supervisors,
        ("s", false) => return Err("the supervisors' audience has a key".to_owned()),
        ("r", _) => Audience::Room { room: key },
        _ => return Err(format!("unknown audience `{kind}`")),
    };
    Ok(Header {
        node: node.as_bytes(),
        audience: Some(audience),
        json,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::registry::{Limits, Owner};
    use crate::DEVICE_CHANNEL;

    use std::sync::atomic::AtomicUsize;

    /// A relay that keeps what it publishes. It answers that `listeners`
    /// heard each batch (None: it cannot tell), and fails the next `fail`
    /// publishes.
    #[derive(Clone)]
    struct Kept {
        out: mpsc::UnboundedSender<Vec<u8>>,
        listeners: Arc<Mutex<Option<usize>>>,
        fail: Arc<AtomicUsize>,
    }

    impl Relay for Kept {
        fn publish(
            &self,
            messages: Vec<Vec<u8>>,
        ) -> Pin<Box<dyn Future<Output = Result<Option<usize>, String>> + Send + '_>> {
            let failed = self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failed {
                return Box::pin(async { Err("Redis is away".to_owned()) });
            }
            for message in messages {
                let _ = self.out.send(message);
            }
            let listeners = *self.listeners.lock().unwrap();
            Box::pin(async move { Ok(listeners) })
        }
    }

    /// A node whose relay cannot tell who listens.
    fn node() -> (Arc<Fanout>, mpsc::UnboundedReceiver<Vec<u8>>) {
        let (fanout, _, out) = counted_node(None);
        (fanout, out)
    }

    /// A node whose relay answers that `listeners` heard each publish.
    fn counted_node(
        listeners: Option<usize>,
    ) -> (Arc<Fanout>, Kept, mpsc::UnboundedReceiver<Vec<u8>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let relay = Kept {
            out: tx,
            listeners: Arc::new(Mutex::new(listeners)),
            fail: Arc::new(AtomicUsize::new(0)),
        };
        let (registry, _acks) = Registry::new(Limits::default());
        (
            Fanout::new(registry, Some(Arc::new(relay.clone()))),
            relay,
            rx,
        )
    }

    /// Lets the relay task publish what is queued (the clock is paused, so
    /// a sleep only lets the other tasks run).
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    fn kinds(out: &mut mpsc::UnboundedReceiver<Vec<u8>>) -> Vec<String> {
        let mut kinds = Vec::new();
        while let Ok(message) = out.try_recv() {
            let head = String::from_utf8_lossy(&message).into_owned();
            kinds.push(head.split(' ').nth(1).unwrap_or("?").to_owned());
        }
        kinds
    }

    fn to(audience: Audience) -> Delivery {
        Delivery {
            service_id: "svc".into(),
            audience,
            tag: "t".into(),
            data: json!({"n": 1}),
            notification: None,
        }
    }

    /// A client of `owner` on `node`, subscribed to `channel`.
    fn listening(node: &Fanout, owner: Owner, channel: &str) -> Arc<crate::registry::Session> {
        let client = node.registry.open(owner).unwrap();
        client.subscribe(channel).unwrap();
        client
    }

    /// What `delivery`, sent by `from`, becomes on the relay.
    async fn relayed(
        from: &Fanout,
        out: &mut mpsc::UnboundedReceiver<Vec<u8>>,
        delivery: Delivery,
    ) -> Vec<u8> {
        from.deliver(delivery);
        out.recv().await.expect("relayed")
    }

    #[tokio::test]
    async fn a_node_reads_a_relayed_delivery_only_when_it_has_a_client_for_it() {
        let (a, mut out) = node();
        let (b, _) = node();
        let device = Audience::Device {
            device: "dev 1\n{\"odd\": true}".into(),
        };
        let message = relayed(&a, &mut out, to(device.clone())).await;
        assert_eq!(a.receive(&message), Ok(Received::Own));
        assert_eq!(b.receive(&message), Ok(Received::NoClient));
        let client = listening(
            &b,
            Owner {
                device: Some("dev 1\n{\"odd\": true}".into()),
                ..Owner::default()
            },
            DEVICE_CHANNEL,
        );
        assert_eq!(b.receive(&message), Ok(Received::Dispatched(1)));
        assert_eq!(client.take(10)[0].data, json!({"n": 1}));

        // Every audience's header reads back as the same audience.
        for audience in [
            Audience::Agent { agent: "a1".into() },
            Audience::Supervisors,
            Audience::Room {
                room: "123456/customer".into(),
            },
            Audience::Device {
                device: String::new(),
            },
        ] {
            let message = relayed(&a, &mut out, to(audience.clone())).await;
            let read = split_header(&message).unwrap();
            assert_eq!(
                (read.node, read.audience.as_ref()),
                (a.node.as_bytes(), Some(&audience))
            );
            let delivery: Delivery = serde_json::from_slice(read.json).unwrap();
            assert_eq!(delivery, to(audience));
        }
    }

    #[tokio::test]
    async fn a_delivery_relayed_by_a_node_before_the_header_still_reaches_its_client() {
        let (b, _) = node();
        listening(
            &b,
            Owner {
                agent: Some("a1".into()),
                ..Owner::default()
            },
            "/agents/a1",
        );
        let old = serde_json::to_vec(&json!({
            "o": "0123456789abcdef0123456789abcdef",
            "d": to(Audience::Agent { agent: "a1".into() }),
        }))
        .unwrap();
        assert_eq!(b.receive(&old), Ok(Received::Dispatched(1)));
        let own =
            serde_json::to_vec(&json!({"o": b.node, "d": to(Audience::Supervisors)})).unwrap();
        assert_eq!(b.receive(&own), Ok(Received::Own));
    }

    #[tokio::test]
    async fn an_unreadable_relayed_message_is_an_error_that_says_why() {
        let (b, _) = node();
        listening(
            &b,
            Owner {
                supervisor: true,
                ..Owner::default()
            },
            "/supervisors",
        );
        let delivery = serde_json::to_string(&to(Audience::Supervisors)).unwrap();
        let check = |message: String, expected: &str| {
            let got = b.receive(message.as_bytes()).unwrap_err();
            assert!(got.contains(expected), "{message:?}: {got}");
        };
        check("node s 0".into(), "no header");
        check(format!("node s\n{delivery}"), "no header");
        check(format!("node s x\n{delivery}"), "no header");
        check(format!("node s 0 extra\n{delivery}"), "no header");
        check("node d 9\nabc".into(), "the key is cut off");
        check(format!("node q 0\n{delivery}"), "unknown audience `q`");
        check("node h 1\nx".into(), "a hello has a key or a delivery");
        check(
            format!("node h 0\n{delivery}"),
            "a hello has a key or a delivery",
        );
        check(
            format!("node s 1\nx{delivery}"),
            "the supervisors' audience has a key",
        );
        check(
            "node s 0\n{\"not\": \"a delivery\"}".into(),
            "missing field",
        );
        check(
            format!(
                "node s 0\n{}",
                serde_json::to_string(&to(Audience::Agent { agent: "a1".into() })).unwrap()
            ),
            "another audience",
        );
        check("{\"o\": 1}".into(), "invalid type");
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_alone_relays_nothing_until_another_node_says_hello() {
        let (a, relay, mut out) = counted_node(Some(1));
        let (b, mut b_out) = node();
        let supervisors = || to(Audience::Supervisors);
        // Before it listens, a node cannot tell: it relays.
        a.deliver(supervisors());
        settle().await;
        assert_eq!(kinds(&mut out), ["s"]);
        assert!(a.relays(), "a publish heard by one, not listening");

        // It subscribes and says hello; only its own subscription hears it.
        a.listening(true);
        settle().await;
        assert_eq!(kinds(&mut out), ["h"]);
        assert!(!a.relays(), "alone");
        a.deliver(supervisors());
        settle().await;
        assert_eq!(kinds(&mut out), Vec::<String>::new());

        // Another node subscribes: its hello makes a relay again.
        *relay.listeners.lock().unwrap() = Some(2);
        assert_eq!(a.receive(&hello(&b.node)), Ok(Received::Hello));
        assert!(a.relays());
        a.deliver(supervisors());
        settle().await;
        assert_eq!(kinds(&mut out), ["s"]);
        assert!(a.relays(), "two listeners heard it");

        // The other node goes: the next publish says so.
        *relay.listeners.lock().unwrap() = Some(1);
        a.deliver(supervisors());
        settle().await;
        assert_eq!(kinds(&mut out), ["s"]);
        assert!(!a.relays());

        // Any message from another node (its hello lost) does as a hello.
        let from_b = relayed(&b, &mut b_out, supervisors()).await;
        assert_eq!(a.receive(&from_b), Ok(Received::NoClient));
        assert!(a.relays());

        // With its own subscription down, a publish heard by one may have
        // been heard by another node: a node relays then.
        a.listening(false);
        a.deliver(supervisors());
        settle().await;
        assert_eq!(kinds(&mut out), ["s"]);
        assert!(a.relays());
    }

    #[tokio::test(start_paused = true)]
    async fn a_relay_that_cannot_count_listeners_always_relays() {
        let (a, _relay, mut out) = counted_node(None);
        a.listening(true);
        a.deliver(to(Audience::Supervisors));
        settle().await;
        assert_eq!(kinds(&mut out), ["h", "s"]);
        assert!(a.relays());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hello_that_could_not_be_published_is_sent_again() {
        let (a, relay, mut out) = counted_node(Some(2));
        relay.fail.store(2, Ordering::SeqCst);
        a.listening(true);
        settle().await;
        assert_eq!(kinds(&mut out), Vec::<String>::new(), "failed");
        tokio::time::sleep(HELLO_RETRY).await;
        settle().await;
        assert_eq!(kinds(&mut out), Vec::<String>::new(), "failed again");
        tokio::time::sleep(HELLO_RETRY).await;
        settle().await;
        assert_eq!(kinds(&mut out), ["h"]);
        tokio::time::sleep(HELLO_RETRY * 5).await;
        assert_eq!(kinds(&mut out), Vec::<String>::new(), "sent once");
    }

    /// Applies `steps` to a new node's view of the others; whether it relays.
    fn check(steps: &[&str], expected: bool) {
        let company = Company::new();
        let mut seen = 0;
        for step in steps {
            match *step {
                "listening" => company.subscribed(),
                "lost" => company.lost(),
                "send" => seen = company.news(),
                "heard by 1" => company.published(1, seen),
                "heard by 2" => company.published(2, seen),
                "hello" => company.hello(),
                "message" => company.heard_from_another(),
                other => panic!("no step {other}"),
            }
        }
        assert_eq!(
            company.relaying.load(Ordering::Relaxed),
            expected,
            "{steps:?}"
        );
    }

    #[test]
    fn whether_a_node_relays_follows_what_it_heard_in_the_order_it_happened() {
        check(&[], true);
        check(&["send", "heard by 1"], true);
        check(&["listening", "send", "heard by 1"], false);
        check(&["listening", "send", "heard by 2"], true);
        check(&["listening", "send", "heard by 1", "hello"], true);
        check(&["listening", "send", "heard by 1", "message"], true);
        check(&["listening", "send", "heard by 1", "lost"], true);
        check(
            &["listening", "send", "heard by 1", "lost", "listening"],
            true,
        );
        // A hello heard while a publish was on its way: the publish's count
        // is from before the other node subscribed.
        check(&["listening", "send", "hello", "heard by 1"], true);
        check(
            &[
                "listening",
                "send",
                "heard by 1",
                "send",
                "message",
                "heard by 1",
            ],
            true,
        );
        // A message from a node known to listen changes nothing.
        check(&["listening", "send", "message", "heard by 1"], false);
        check(&["listening", "send", "hello", "send", "heard by 1"], false);
    }
}

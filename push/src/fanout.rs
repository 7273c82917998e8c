//! Every node hears every delivery.
//!
//! A client may hold its connection to any node, whichever made the
//! notification. [`Fanout::deliver`] hands a delivery to this node's clients
//! at once and, when there are other nodes, sends it through the [`Relay`]
//! (Redis pub/sub) to them; what comes back from the relay is handed to this
//! node's clients unless this node sent it.
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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::registry::Registry;
use crate::{Audience, Delivery};

/// Carries deliveries to the other nodes.
pub trait Relay: Send + Sync + 'static {
    fn publish(
        &self,
        message: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;

    /// Publishes several in order; a relay that can sends them in one
    /// round trip (the relay task hands over what queued up meanwhile).
    fn publish_many(
        &self,
        messages: Vec<Vec<u8>>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            for message in messages {
                self.publish(message).await?;
            }
            Ok(())
        })
    }
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

pub struct Fanout {
    pub registry: Arc<Registry>,
    node: String,
    outgoing: Option<mpsc::Sender<Vec<u8>>>,
}

impl Fanout {
    /// A fanout for one node; `relay` is None when this is the only node.
    pub fn new(registry: Arc<Registry>, relay: Option<Arc<dyn Relay>>) -> Arc<Fanout> {
        let node = uuid::Uuid::new_v4().simple().to_string();
        let outgoing = relay.map(|relay| {
            let (tx, mut rx) = mpsc::channel::<Vec<u8>>(RELAY_BUFFER);
            // One task sends them in order, so a client hears a service's
            // notifications in the order they were made.
            tokio::spawn(async move {
                let mut failing = false;
                let mut batch = Vec::with_capacity(RELAY_BATCH);
                while rx.recv_many(&mut batch, RELAY_BATCH).await > 0 {
                    match relay.publish_many(std::mem::take(&mut batch)).await {
                        Ok(()) => failing = false,
                        Err(e) => {
                            if !std::mem::replace(&mut failing, true) {
                                warn!(error = %e, "Deliveries cannot reach the other nodes; they stay in the outboxes.");
                            }
                        }
                    }
                }
            });
            tx
        });
        Arc::new(Fanout {
            registry,
            node,
            outgoing,
        })
    }

    /// Whether deliveries also go to other nodes.
    pub fn relays(&self) -> bool {
        self.outgoing.is_some()
    }

    /// Hands `delivery` to its clients, here and on every other node.
    pub fn deliver(&self, delivery: Delivery) {
        let here = self.registry.dispatch(&delivery);
        debug!(service_id = %delivery.service_id, tag = %delivery.tag, clients = here, "Delivery dispatched.");
        if let Some(tx) = &self.outgoing {
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
            Ok(Received::Own | Received::NoClient) => {}
            Err(e) => warn!(error = %e, "A relayed delivery could not be read."),
        }
    }

    fn receive(&self, message: &[u8]) -> Result<Received, String> {
        if message.first() == Some(&b'{') {
            let r: Relayed = serde_json::from_slice(message).map_err(|e| e.to_string())?;
            if r.o == self.node {
                return Ok(Received::Own);
            }
            return Ok(Received::Dispatched(self.registry.dispatch(&r.d)));
        }
        let (node, audience, json) = split_header(message)?;
        if node == self.node.as_bytes() {
            return Ok(Received::Own);
        }
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
    /// No client here is of its audience: its JSON was not read.
    NoClient,
    /// Offered to this node's clients of its audience; so many took it.
    Dispatched(usize),
}

/// A relayed message's sending node, audience and delivery JSON.
fn split_header(message: &[u8]) -> Result<(&[u8], Audience, &[u8]), String> {
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
        ("d", _) => Audience::Device { device: key },
        ("a", _) => Audience::Agent { agent: key },
        ("s", true) => Audience::Supervisors,
        ("s", false) => return Err("the supervisors' audience has a key".to_owned()),
        ("r", _) => Audience::Room { room: key },
        _ => return Err(format!("unknown audience `{kind}`")),
    };
    Ok((node.as_bytes(), audience, json))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::registry::{Limits, Owner};
    use crate::DEVICE_CHANNEL;

    /// A relay that keeps what it is given.
    struct Kept(mpsc::UnboundedSender<Vec<u8>>);

    impl Relay for Kept {
        fn publish(
            &self,
            message: Vec<u8>,
        ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
            let _ = self.0.send(message);
            Box::pin(async { Ok(()) })
        }
    }

    fn node() -> (Arc<Fanout>, mpsc::UnboundedReceiver<Vec<u8>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (registry, _acks) = Registry::new(Limits::default());
        (Fanout::new(registry, Some(Arc::new(Kept(tx)))), rx)
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
            let (node, read, json) = split_header(&message).unwrap();
            assert_eq!((node, &read), (a.node.as_bytes(), &audience));
            let delivery: Delivery = serde_json::from_slice(json).unwrap();
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
}

//! Every node hears every delivery.
//!
//! A client may hold its connection to any node, whichever made the
//! notification. [`Fanout::deliver`] hands a delivery to this node's clients
//! at once and, when there are other nodes, sends it through the [`Relay`]
//! (Redis pub/sub) to them; what comes back from the relay is handed to this
//! node's clients unless this node sent it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::registry::Registry;
use crate::Delivery;

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

/// What goes over the relay: the delivery and the node that made it.
#[derive(Serialize, Deserialize)]
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
            let relayed = Relayed {
                o: self.node.clone(),
                d: delivery,
            };
            let bytes = serde_json::to_vec(&relayed).expect("a delivery serialises");
            if tx.try_send(bytes).is_err() {
                warn!("Relay backlog full; a delivery stays in its outbox only.");
            }
        }
    }

    /// Hands what another node relayed to this node's clients.
    pub fn relayed(&self, message: &[u8]) {
        match serde_json::from_slice::<Relayed>(message) {
            Ok(r) if r.o == self.node => {}
            Ok(r) => {
                self.registry.dispatch(&r.d);
            }
            Err(e) => warn!(error = %e, "A relayed delivery could not be read."),
        }
    }
}

//! Notification delivery.
//!
//! For now this is the in-process hub: the shell publishes every device and
//! agent notification here after the record holding it is stored, and any
//! listener (tests today; the CometD and WebSocket endpoints later)
//! subscribes. A notification is always in the service's outbox first, so a
//! listener that lags or is absent loses nothing: retrieve-notifications
//! still returns it.

use serde::Serialize;
use tokio::sync::broadcast;

/// Who a delivery is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum Audience {
    /// The device that owns the service (`_device_notification_id`).
    Device { device: Option<String> },
    /// The agent desktop handling the service.
    Agent { agent: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub service_id: String,
    pub audience: Audience,
    pub tag: String,
    pub payload: serde_json::Value,
}

/// Fan-out of deliveries to in-process listeners.
#[derive(Debug, Clone)]
pub struct Hub {
    sender: broadcast::Sender<Delivery>,
}

impl Hub {
    /// `capacity` bounds what a slow listener may fall behind before it
    /// misses deliveries (it is told so by `RecvError::Lagged`).
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Hub { sender }
    }

    pub fn publish(&self, delivery: Delivery) {
        tracing::debug!(service_id = %delivery.service_id, tag = %delivery.tag, "Delivery published.");
        // No listener is normal: the outbox keeps the notification.
        let _ = self.sender.send(delivery);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Delivery> {
        self.sender.subscribe()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_receive_what_is_published_after_they_subscribe() {
        let hub = Hub::new(4);
        hub.publish(Delivery {
            service_id: "before".into(),
            audience: Audience::Device { device: None },
            tag: "t".into(),
            payload: serde_json::json!({}),
        });
        let mut rx = hub.subscribe();
        hub.publish(Delivery {
            service_id: "after".into(),
            audience: Audience::Agent {
                agent: Some("a1".into()),
            },
            tag: "t".into(),
            payload: serde_json::json!({"x": 1}),
        });
        assert_eq!(rx.recv().await.unwrap().service_id, "after");
    }
}

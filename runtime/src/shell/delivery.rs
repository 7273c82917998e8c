//! Notifications out to devices and agent desktops, and back out of the
//! outboxes once a transport proved its client received them.

use std::sync::Arc;

use engine::machine::Event;
use engine::record::ServiceRecord;
use push::httpcb::{Outcome, Policy};
use push::{Audience, Delivery, Pushed};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::{Shell, ShellError};

/// HTTP callbacks in flight at once, over every scenario.
pub(super) const HTTPCB_IN_FLIGHT: usize = 256;

/// Pushed notifications taken out of the outboxes in one go.
const PUSHED_BATCH: usize = 256;

impl Shell {
    /// Sends a notification to the device that owns the service: by HTTP
    /// POST for `_device_os=httpcb`, else to its push clients on any node.
    /// `kept` names the outbox notification it carries.
    pub(super) fn to_device(
        &self,
        record: &ServiceRecord,
        tag: &str,
        data: serde_json::Value,
        kept: Option<String>,
    ) {
        if tag.starts_with("service.video.") {
            self.to_room(record, "customer", tag, &data);
            if record.booking.is_some() && !tag.starts_with("service.video.signal.") {
                // The booked service's waiting room hears what happened,
                // never the room's link or token: its socket needs only the
                // service id, so the page reads the room through the
                // customer's own view (`GET …/ixn/video`).
                self.fanout.deliver(Delivery {
                    service_id: record.id.clone(),
                    audience: Audience::Room {
                        room: format!("service:{}", record.id),
                    },
                    tag: tag.to_owned(),
                    data: serde_json::json!({
                        "_id": record.id,
                        "_event": data.get("_event"),
                        "_room_status": data.get("_room_status"),
                    }),
                    notification: None,
                });
            }
        }
        let Some(device) = record.device_notification_id.clone() else {
            return;
        };
        let delivery = Delivery {
            service_id: record.id.clone(),
            audience: Audience::Device { device },
            tag: tag.to_owned(),
            data,
            notification: kept,
        };
        if record.device_os.as_deref() != Some(push::httpcb::DEVICE_OS) {
            self.fanout.deliver(delivery);
            return;
        }
        let Some(policy) = self.scenarios.get(&record.scenario).and_then(|s| {
            Some(Policy {
                url: s.httpcb_url.clone()?,
                attempts: s.httpcb_attempts,
                backoff: s.httpcb_backoff,
                timeout: s.httpcb_timeout,
            })
        }) else {
            return;
        };
        let httpcb = self.httpcb.clone();
        let registry = self.registry().clone();
        tokio::spawn(async move {
            if let Outcome::Delivered { .. } = httpcb.post(&policy, &delivery).await {
                registry.acknowledge(&delivery);
            }
        });
    }

    /// Tells the device the record's state, when anyone may hear it: an
    /// HTTP callback, another node (through the relay), or a client of
    /// the device on this node. A create from an app that follows nothing
    /// builds no message.
    pub(super) fn state_to_device(&self, record: &ServiceRecord) {
        let Some(device) = record.device_notification_id.as_deref() else {
            return;
        };
        let heard = record.device_os.as_deref() == Some(push::httpcb::DEVICE_OS)
            || self.fanout.relays()
            || self.registry().has_device(device);
        if !heard {
            return;
        }
        if let Some((tag, payload)) = engine::machine::state_notice(record) {
            self.to_device(record, &tag, payload, None);
        }
    }

    /// Tells supervisors' boards, on any node, that a service changed: its
    /// state, queue, agent and reason. Nothing is built when no board could
    /// hear it (one node, and no board on it).
    pub(super) fn to_supervisors(&self, record: &ServiceRecord) {
        if !self.fanout.relays() && !self.registry().has_supervisors() {
            return;
        }
        self.fanout.deliver(Delivery {
            service_id: record.id.clone(),
            audience: Audience::Supervisors,
            tag: format!("service.changed.{}", record.id),
            data: serde_json::json!({
                "_id": record.id,
                "_service_name": record.scenario,
                "queue": record.ticket.queue,
                "_callback_state": record.state.gms_name(),
                "_callback_reason": record.reason_name(),
                "agent": record.agent,
                "version": record.version,
            }),
            notification: None,
        });
    }

    /// A video event or signal, also to the room page of that side (its
    /// socket proved the side's room token), which needs no device id.
    fn to_room(&self, record: &ServiceRecord, side: &str, tag: &str, data: &serde_json::Value) {
        let Some(code) = record
            .video
            .as_ref()
            .and_then(|v| v.last_room())
            .map(|r| r.code.clone())
        else {
            return;
        };
        self.fanout.deliver(Delivery {
            service_id: record.id.clone(),
            audience: Audience::Room {
                room: format!("{code}/{side}"),
            },
            tag: tag.to_owned(),
            data: data.clone(),
            notification: None,
        });
    }

    pub(super) fn to_agent(
        &self,
        record: &ServiceRecord,
        agent: &str,
        tag: &str,
        data: serde_json::Value,
        kept: Option<String>,
    ) {
        if tag.starts_with("agent.video.") {
            self.to_room(record, "agent", tag, &data);
        }
        self.fanout.deliver(Delivery {
            service_id: record.id.clone(),
            audience: Audience::Agent {
                agent: agent.to_owned(),
            },
            tag: tag.to_owned(),
            data,
            notification: kept,
        });
    }

    /// Takes what the push clients received out of the outboxes, a batch
    /// at a time, one write per service.
    pub(super) async fn pushed_task(
        self: Arc<Self>,
        mut pushed: mpsc::Receiver<Pushed>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut batch = Vec::with_capacity(PUSHED_BATCH);
        loop {
            tokio::select! {
                n = pushed.recv_many(&mut batch, PUSHED_BATCH) => if n == 0 { return },
                _ = shutdown.changed() => return,
            }
            let mut by_service: std::collections::BTreeMap<String, (Vec<String>, Vec<String>)> =
                Default::default();
            for p in batch.drain(..) {
                let entry = by_service.entry(p.service_id).or_default();
                if p.to_agent {
                    entry.1.push(p.notification);
                } else {
                    entry.0.push(p.notification);
                }
            }
            for (id, (device, agent)) in by_service {
                let event = Event::NotificationsPushed { device, agent };
                match self.transition(&id, &event).await {
                    Ok(_) => debug!(service_id = %id, "Pushed notifications left the outbox."),
                    // Retrieved meanwhile, or the service is gone: nothing to do.
                    Err(ShellError::NotAllowed(_)) | Err(ShellError::UnknownService(_)) => {}
                    Err(e) => {
                        warn!(service_id = %id, error = %e, "Pushed notifications stay in the outbox.")
                    }
                }
            }
        }
    }

    /// Hands the other nodes' deliveries to this node's push clients, and
    /// tells the fanout when the subscription comes up or is lost.
    pub(super) async fn relayed_task(
        self: Arc<Self>,
        inbound: push::fanout::Inbound,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let push::fanout::Inbound {
            mut messages,
            mut listening,
        } = inbound;
        let mut subscription_ends = false;
        loop {
            tokio::select! {
                message = messages.recv() => match message {
                    Some(m) => self.fanout.relayed(&m),
                    None => return,
                },
                changed = listening.changed(), if !subscription_ends => match changed {
                    Ok(()) => {
                        let up = *listening.borrow_and_update();
                        self.fanout.listening(up);
                    }
                    Err(_) => subscription_ends = true,
                },
                _ = shutdown.changed() => return,
            }
        }
    }
}

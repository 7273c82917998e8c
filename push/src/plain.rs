//! The plain WebSocket endpoint: the same deliveries as the Bayeux channel,
//! one JSON text frame each, for clients without a CometD library.
//!
//! The client says who it is when it connects (`gms_user`, `agent_id`) and
//! is subscribed to its channels at once. The first frame names them:
//! `{"channel": "/meta/connected", "data": {"clientId", "channels"}}`; every
//! later frame is `{"channel", "tag", "data"}`. Whatever the client sends
//! only counts as a sign of life.

use std::sync::Arc;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{json, Value};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::bayeux::{send, woken, SendError};
use crate::registry::{Outgoing, Owner, Refused, Registry};
use crate::{agent_channel, close_code, Close, Frame, DEVICE_CHANNEL};

/// Why a plain WebSocket cannot be opened; answered before the upgrade.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlainError {
    #[error("gms_user or agent_id is required")]
    NoOwner,
    #[error(transparent)]
    Refused(#[from] Refused),
}

impl Outgoing {
    /// The plain frame: channel, tag and data.
    pub fn plain(&self) -> Value {
        json!({"channel": self.channel, "tag": self.tag, "data": self.data})
    }
}

pub struct Plain {
    pub registry: Arc<Registry>,
}

/// A plain client, opened (so refusals are answered over HTTP) but not yet
/// served. Dropped unserved (the upgrade failed), it closes the client, so
/// it cannot hold a slot.
pub struct Opened {
    session: Option<Arc<crate::registry::Session>>,
    registry: Arc<Registry>,
}

impl Drop for Opened {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            session.end_connect();
            self.registry
                .close(&session.id, "the WebSocket upgrade did not complete");
        }
    }
}

impl Plain {
    pub fn new(registry: Arc<Registry>) -> Self {
        Plain { registry }
    }

    /// Opens the client before the upgrade, so a refusal is a clear HTTP answer.
    /// `owner.supervisor` (a supervisor's board) and `owner.room` (one side
    /// of a video room) were checked by the front.
    pub fn open(&self, owner: Owner) -> Result<Opened, PlainError> {
        let clean = |s: Option<String>| s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let owner = Owner {
            device: clean(owner.device),
            agent: clean(owner.agent),
            ..owner
        };
        if owner.device.is_none()
            && owner.agent.is_none()
            && !owner.supervisor
            && owner.room.is_none()
        {
            return Err(PlainError::NoOwner);
        }
        let session = self.registry.open(owner)?;
        if session.owner.device.is_some() {
            session
                .subscribe(DEVICE_CHANNEL)
                .expect("a device listens on its channel");
        }
        if let Some(agent) = session.owner.agent.clone() {
            session
                .subscribe(&agent_channel(&agent))
                .expect("an agent listens on its channel");
        }
        if session.owner.supervisor {
            session
                .subscribe(crate::SUPERVISOR_CHANNEL)
                .expect("a supervisor listens on its channel");
        }
        if let Some(room) = session.owner.room.clone() {
            session
                .subscribe(&crate::room_channel(&room))
                .expect("a room's side listens on its channel");
        }
        // Alive while the socket is: the sweeper leaves it alone.
        session.begin_connect();
        Ok(Opened {
            session: Some(session),
            registry: self.registry.clone(),
        })
    }

    /// Serves an opened client on its socket until either side ends it.
    pub async fn serve<S, K, E>(&self, opened: Opened, mut stream: S, mut sink: K)
    where
        S: Stream<Item = Result<Frame, E>> + Unpin,
        K: Sink<Frame> + Unpin,
        E: std::fmt::Display,
    {
        let _guard = self.registry.socket();
        let mut opened = opened;
        let Some(session) = opened.session.take() else {
            return;
        };
        let mut acks = crate::bayeux::PingAcks::default();
        let limits = self.registry.limits.clone();
        let mut closing = self.registry.closing();
        let mut last_heard = Instant::now();
        let mut ping = tokio::time::interval_at(Instant::now() + limits.ws_ping, limits.ws_ping);
        let hello = json!({"channel": "/meta/connected", "data": {"clientId": session.id, "channels": session.subscriptions()}});
        let close = if send(
            &mut sink,
            Frame::Text(hello.to_string()),
            limits.send_timeout,
        )
        .await
        .is_err()
        {
            None
        } else {
            loop {
                tokio::select! {
                    frame = stream.next() => {
                        last_heard = Instant::now();
                        match frame {
                            None => break None,
                            Some(Err(e)) => {
                                debug!(error = %e, "Plain WebSocket read failed.");
                                break None;
                            }
                            Some(Ok(Frame::Ping(p))) => {
                                if send(&mut sink, Frame::Pong(p), limits.send_timeout).await.is_err() {
                                    break None;
                                }
                            }
                            Some(Ok(Frame::Close(_))) => break Some(Close { code: close_code::NORMAL, reason: String::new() }),
                            Some(Ok(Frame::Pong(p))) => self.registry.delivered("", &acks.pong(&p)),
                            Some(Ok(_)) => {}
                        }
                    }
                    _ = woken(Some(session.clone())) => {
                        if let Some(why) = session.dropped() {
                            break Some(Close { code: close_code::POLICY, reason: why });
                        }
                        let messages = session.take(limits.batch);
                        let mut sent = 0;
                        let mut failed = None;
                        for m in &messages {
                            match send(&mut sink, Frame::Text(m.plain().to_string()), limits.send_timeout).await {
                                Ok(()) => sent += 1,
                                Err(e) => {
                                    failed = Some(e);
                                    break;
                                }
                            }
                        }
                        let sent: Vec<_> = messages.into_iter().take(sent).collect();
                        if let Some(ping) = acks.sent(sent) {
                            if failed.is_none() && send(&mut sink, ping, limits.send_timeout).await.is_err() {
                                break None;
                            }
                        }
                        match failed {
                            None => {}
                            Some(SendError::Closed) => break None,
                            Some(SendError::Timeout) => {
                                warn!(client_id = %session.id, "Push client dropped: its socket does not take writes.");
                                break Some(Close { code: close_code::POLICY, reason: "slow consumer: a write did not complete in time".into() });
                            }
                        }
                    }
                    _ = ping.tick() => {
                        if last_heard.elapsed() > limits.ws_idle {
                            break Some(Close { code: close_code::NORMAL, reason: format!("idle: nothing received for {}s", limits.ws_idle.as_secs()) });
                        }
                        if send(&mut sink, Frame::Ping(Vec::new()), limits.send_timeout).await.is_err() {
                            break None;
                        }
                    }
                    _ = crate::registry::closed(&mut closing) => {
                        break Some(Close { code: close_code::GOING_AWAY, reason: "server shutting down".into() });
                    }
                }
            }
        };
        session.end_connect();
        let why = close
            .as_ref()
            .map_or("socket closed".to_owned(), |c| c.reason.clone());
        self.registry.close(&session.id, &why);
        if let Some(close) = close {
            let _ = send(&mut sink, Frame::Close(Some(close)), limits.send_timeout).await;
        }
        let _ = tokio::time::timeout(limits.send_timeout, sink.close()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Limits;

    #[tokio::test]
    async fn an_upgrade_that_never_completes_frees_its_slot() {
        let (registry, _acks) = Registry::new(Limits {
            max_clients: 1,
            ..Limits::default()
        });
        let plain = Plain::new(registry.clone());
        let opened = plain
            .open(Owner {
                device: Some("dev".into()),
                ..Owner::default()
            })
            .unwrap();
        assert_eq!(registry.len(), 1);
        assert!(
            plain
                .open(Owner {
                    device: Some("dev2".into()),
                    ..Owner::default()
                })
                .is_err(),
            "full"
        );
        drop(opened);
        assert_eq!(registry.len(), 0);
        assert!(plain
            .open(Owner {
                device: Some("dev2".into()),
                ..Owner::default()
            })
            .is_ok());
    }
}

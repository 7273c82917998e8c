//! Queue positions, pushed to the waiting customers connected to this node.
//!
//! Positions change whenever anyone ahead leaves the queue, on any node, so
//! they are not events of one service. Each node looks at the queues once a
//! second, but only while a device listens on it, and pushes a
//! `service.position.<id>` message to each listening device whose service
//! moved (or who has just started listening). The queues are read from the
//! store, so every node sees the same order; nothing goes over the relay.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use engine::store::QueueEntry;
use push::{Audience, Delivery};
use serde_json::json;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::shell::{Shell, ShellError};

/// How often positions are looked at.
pub const POSITIONS_EVERY: Duration = Duration::from_secs(1);

/// What was last pushed for one service: (position, waiting, listener serial).
type Pushed = HashMap<String, (usize, usize, u64)>;

/// The position message: the seed's `{id, message, tag}` envelope.
pub fn position_notice(id: &str, position: usize, waiting: usize) -> (String, serde_json::Value) {
    let tag = format!("service.position.{id}");
    let payload = json!({
        "id": format!("{id}-p{position}-{waiting}"),
        "message": {"_id": id, "_action": "position", "_position": position, "_total_waiting": waiting},
        "tag": tag,
    });
    (tag, payload)
}

/// One look: pushes what moved; answers the new `last`.
pub async fn push_positions(shell: &Shell, last: &Pushed) -> Result<Pushed, ShellError> {
    let listening = shell.registry().listening_devices();
    if listening.is_empty() {
        return Ok(Pushed::new());
    }
    let mut now = Pushed::new();
    for queue in shell.queue_names().await? {
        let mut entries: Vec<QueueEntry> = shell.waiting_in(&queue).await?;
        entries.sort_by_key(QueueEntry::order_key);
        let waiting = entries.len();
        for (i, entry) in entries.into_iter().enumerate() {
            let Some(device) = entry.device else { continue };
            let Some(&serial) = listening.get(&device) else {
                continue;
            };
            let position = i + 1;
            let state = (position, waiting, serial);
            if last.get(&entry.id) != Some(&state) {
                let (tag, data) = position_notice(&entry.id, position, waiting);
                shell.registry().dispatch(&Delivery {
                    service_id: entry.id.clone(),
                    audience: Audience::Device { device },
                    tag,
                    data,
                    notification: None,
                });
            }
            now.insert(entry.id, state);
        }
    }
    Ok(now)
}

/// Runs [`push_positions`] every [`POSITIONS_EVERY`] until shutdown.
pub async fn positions_task(shell: Arc<Shell>, mut shutdown: watch::Receiver<bool>) {
    let mut last = Pushed::new();
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POSITIONS_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        match push_positions(&shell, &last).await {
            Ok(now) => {
                failing = false;
                if now.len() != last.len() {
                    debug!(services = now.len(), "Queue positions followed.");
                }
                last = now;
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    warn!(error = %e, "Queue positions cannot be read.");
                }
            }
        }
    }
}

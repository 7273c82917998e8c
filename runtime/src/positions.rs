//! Queue positions, pushed to the waiting customers connected to this node.
//!
//! Positions change whenever anyone ahead leaves the queue, on any node, so
//! they are not events of one service. Once a second, while a device
//! listens on this node, the node asks the store where the listening
//! devices' waiting services stand (`Store::device_positions`: an index of
//! waiting services by device, and an order-statistic rank in the queue),
//! and pushes a `service.position.<id>` message to each listening device
//! whose service moved (or who has just started listening). So the cost
//! grows with the devices listening here, not with the services waiting;
//! every node reads the same store, and nothing goes over the relay.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

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
    let devices: Vec<String> = listening.keys().cloned().collect();
    let mut now = Pushed::new();
    for found in shell.device_positions(&devices).await? {
        let Some(&serial) = listening.get(&found.device) else {
            continue;
        };
        let state = (found.position, found.waiting, serial);
        if last.get(&found.service) != Some(&state) {
            let (tag, data) = position_notice(&found.service, found.position, found.waiting);
            shell.registry().dispatch(&Delivery {
                service_id: found.service.clone(),
                audience: Audience::Device {
                    device: found.device,
                },
                tag,
                data,
                notification: None,
            });
        }
        now.insert(found.service, state);
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

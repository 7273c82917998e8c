//! The router: plans reservations from a snapshot of the agents and the
//! queues, and makes each one through the machine.

use std::sync::Arc;
use std::time::Duration;

use engine::machine::Event;
use engine::routing;
use engine::store::StoreError;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{Shell, ShellError};

/// Backstop for the router: a pass runs at least this often, even if a wake-up was missed.
const ROUTER_BACKSTOP: Duration = Duration::from_secs(5);

/// After a pass that found no agent free, how long new services in the
/// queues wait for the next pass, unless an agent changes first: at a
/// thousand creates a second, one pass for all of them instead of one
/// each (on several nodes, an agent readied on another node is seen
/// within this much).
const ROUTER_IDLE_PAUSE: Duration = Duration::from_secs(1);

impl Shell {
    /// Asks the router to run a pass now: an agent may have room it had
    /// not (it became ready, for example).
    pub fn wake_router(&self) {
        self.agents_changed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.route_wake.notify_one();
        self.agent_wake.notify_one();
    }

    /// One routing pass: plan reservations, then make each through the machine.
    pub async fn route_once(&self) -> Result<usize, ShellError> {
        // Agents first: with nobody free there is nothing to plan, and the
        // queues (the bulk of the reading) need not be read at all, except
        // where a URS target's stat condition may pass a target over: that
        // holds, or stops holding, with nobody free too.
        let agents = self.store.agents().await?;
        let mut open: std::collections::BTreeSet<&str> = agents
            .iter()
            .filter(|a| a.ready && a.has_room())
            .flat_map(|a| a.profile.queues.iter().map(String::as_str))
            .collect();
        let routed: Vec<_> = self
            .scenarios
            .iter()
            .filter(|s| !s.target.steps.is_empty())
            .collect();
        let checked: std::collections::BTreeSet<&str> = routed
            .iter()
            .filter(|s| s.target.steps.iter().any(|t| t.skip_if.is_some()))
            .map(|s| s.target.queue.as_str())
            .collect();
        let can_plan = !open.is_empty();
        let idle = !can_plan && checked.is_empty();
        self.nobody_free
            .store(idle, std::sync::atomic::Ordering::SeqCst);
        if idle {
            return Ok(0);
        }
        // A virtual queue's services go to the agents their URS targets
        // name, whichever queues those agents serve.
        if can_plan {
            open.extend(routed.iter().map(|s| s.target.queue.as_str()));
        }
        open.extend(checked);
        let mut queues = Vec::new();
        for name in self.store.queues().await? {
            if open.contains(name.as_str()) {
                let entries = self.store.queue(&name).await?;
                queues.push((name, entries));
            }
        }
        if queues.is_empty() {
            return Ok(0);
        }
        // A target whose stat condition holds is passed over before any
        // planning: the service's agents change, so it sits this pass out.
        let skips = routing::skips(&queues, &agents);
        if !skips.is_empty() {
            for skip in &skips {
                let event = Event::TargetSkipped { step: skip.step };
                match self.transition(&skip.service, &event).await {
                    Ok(_) => {
                        debug!(service_id = %skip.service, step = skip.step + 1, "Target skipped.");
                    }
                    Err(ShellError::NotAllowed(_)) | Err(ShellError::UnknownService(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            let moved: std::collections::HashSet<&str> =
                skips.iter().map(|s| s.service.as_str()).collect();
            for (_, entries) in &mut queues {
                entries.retain(|e| !moved.contains(e.id.as_str()));
            }
        }
        if !can_plan {
            return Ok(0);
        }
        let mut reserved = 0;
        for assignment in routing::plan(&queues, &agents) {
            let event = Event::AgentReserved {
                agent: assignment.agent.clone(),
            };
            match self.transition(&assignment.service, &event).await {
                Ok(_) => {
                    reserved += 1;
                    info!(service_id = %assignment.service, agent_id = %assignment.agent, "Agent reserved.");
                }
                // The plan was made from a snapshot; losing a race is expected.
                Err(ShellError::NotAllowed(_))
                | Err(ShellError::UnknownService(_))
                | Err(ShellError::Store(StoreError::AgentUnavailable { .. }))
                | Err(ShellError::Store(StoreError::AgentInRoom { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(reserved)
    }

    pub(super) async fn router_task(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        use std::sync::atomic::Ordering;
        loop {
            if let Err(e) = self.route_once().await {
                self.nobody_free.store(false, Ordering::SeqCst);
                warn!(error = %e, "Routing pass failed.");
            }
            tokio::select! {
                _ = self.route_wake.notified() => {}
                _ = tokio::time::sleep(ROUTER_BACKSTOP) => {}
                _ = shutdown.changed() => return,
            }
            if self.nobody_free.load(Ordering::SeqCst) {
                // Only services came: with no agent free they change nothing.
                // They are not waited for here (each would wake this task,
                // 1,700 instructions a create): one that comes meanwhile
                // leaves `route_wake` a permit, so a pass follows the pause.
                let pause = tokio::time::sleep(ROUTER_IDLE_PAUSE);
                tokio::pin!(pause);
                while !self.agents_changed.swap(false, Ordering::SeqCst) {
                    tokio::select! {
                        _ = &mut pause => break,
                        _ = self.agent_wake.notified() => {}
                        _ = shutdown.changed() => return,
                    }
                }
            } else {
                self.agents_changed.store(false, Ordering::SeqCst);
            }
        }
    }
}

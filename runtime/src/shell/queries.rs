//! What the API reads, and the agent profile changes it makes. Each method
//! says what it is for, so no caller reaches into the store.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use engine::record::{ServiceRecord, ServiceState};
use engine::scenario::Scenarios;
use engine::stats::QueueStats;
use engine::store::{AgentProfile, AgentRecord, IndexKey, QueueEntry};
use tracing::info;

use super::{Shell, ShellError};

impl Shell {
    /// Every scenario this node loaded.
    pub fn scenarios(&self) -> &Scenarios {
        &self.scenarios
    }

    /// Whether the store answers (health checks).
    pub async fn store_reachable(&self) -> Result<(), ShellError> {
        Ok(self.store.ping().await?)
    }

    /// The service with this id, if it is stored (a missing one is no error).
    pub async fn find_service(&self, id: &str) -> Result<Option<ServiceRecord>, ShellError> {
        Ok(self.store.get(id).await?)
    }

    /// The services an index key names (a customer number, a scenario).
    pub async fn services_by(&self, key: &IndexKey) -> Result<Vec<ServiceRecord>, ShellError> {
        Ok(self.store.find(key).await?)
    }

    /// Every stored service in one of these states, in no particular order
    /// (the operator's views: by queue, watermarks, exports).
    pub async fn services_in(
        &self,
        states: &[ServiceState],
    ) -> Result<Vec<ServiceRecord>, ShellError> {
        let mut all = Vec::new();
        for state in states {
            all.extend(self.store.find(&IndexKey::State(*state)).await?);
        }
        Ok(all)
    }

    /// The id of the service whose latest room has this code.
    pub async fn service_in_room(&self, code: &str) -> Result<Option<String>, ShellError> {
        Ok(self.store.room(code).await?)
    }

    /// Seats taken per slot start of a scenario's bookings in `[from, to)`.
    pub async fn seats_taken(
        &self,
        scenario: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<BTreeMap<DateTime<Utc>, u32>, ShellError> {
        Ok(self.store.seats_taken(scenario, from, to).await?)
    }

    /// The services by scenario and state and the outboxes' depth, as the
    /// store keeps them (`/metrics`).
    pub async fn census(&self) -> Result<engine::store::Census, ShellError> {
        Ok(self.store.census().await?)
    }

    /// How many wait in a queue.
    pub async fn queue_len(&self, queue: &str) -> Result<usize, ShellError> {
        Ok(self.store.queue_len(queue).await?)
    }

    /// When the longest-waiting service of a queue entered it.
    pub async fn queue_oldest(
        &self,
        queue: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, ShellError> {
        Ok(self.store.queue_oldest(queue).await?)
    }

    /// The names of the queues with waiting services.
    pub async fn queue_names(&self) -> Result<Vec<String>, ShellError> {
        Ok(self.store.queues().await?)
    }

    /// The services waiting in a queue, in no particular order.
    pub async fn waiting_in(&self, queue: &str) -> Result<Vec<QueueEntry>, ShellError> {
        Ok(self.store.queue(queue).await?)
    }

    /// The waiting services of these devices, each with its place.
    pub async fn device_positions(
        &self,
        devices: &[String],
    ) -> Result<Vec<engine::store::DevicePosition>, ShellError> {
        Ok(self.store.device_positions(devices).await?)
    }

    /// A service with its place in its queue and the EWT's inputs, in one
    /// read (what check-queue-position answers from).
    pub async fn standing(&self, id: &str) -> Result<engine::store::Standing, ShellError> {
        self.store
            .standing(id)
            .await?
            .ok_or_else(|| ShellError::UnknownService(id.to_owned()))
    }

    /// The queue's rolling wait and handle times, for the EWT.
    pub async fn queue_stats(&self, queue: &str) -> Result<QueueStats, ShellError> {
        Ok(self.store.queue_stats(queue).await?)
    }

    /// Every agent, with its readiness, load and live room.
    pub async fn agents(&self) -> Result<Vec<AgentRecord>, ShellError> {
        Ok(self.store.agents().await?)
    }

    /// Timers due at `now` that no node has claimed yet, counted up to
    /// [`DUE_TIMERS_COUNTED`].
    pub async fn due_timer_count(&self, now: DateTime<Utc>) -> Result<usize, ShellError> {
        Ok(self.store.due_timers(now, DUE_TIMERS_COUNTED).await?.len())
    }

    /// One agent, with its readiness, load and live room.
    pub async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, ShellError> {
        Ok(self.store.agent(id).await?)
    }

    /// Creates or replaces an agent's profile. A bigger limit or a new queue
    /// may let the agent take more, so the router looks again.
    pub async fn save_agent(&self, profile: AgentProfile) -> Result<AgentRecord, ShellError> {
        let agent = self.store.put_agent(profile).await?;
        self.wake_router();
        Ok(agent)
    }

    /// Makes an agent ready or not ready; None when it does not exist. A
    /// ready agent may take a waiting service at once.
    pub async fn set_agent_ready(
        &self,
        id: &str,
        ready: bool,
    ) -> Result<Option<AgentRecord>, ShellError> {
        let agent = self.store.set_agent_ready(id, ready).await?;
        if agent.is_some() {
            info!(agent_id = %id, ready, "Agent readiness changed.");
            if ready {
                self.wake_router();
            }
        }
        Ok(agent)
    }
}

/// The most due timers the metrics count: past it the backlog is plain
/// enough, and reading it all would only slow the scrape.
pub const DUE_TIMERS_COUNTED: usize = 10_000;

//! The store: where service records, agents, queues and timers live.
//!
//! A record is written whole, with compare-and-set on its version, and the
//! store derives everything else from it in the same atomic step: indexes
//! by customer number, state and scenario; membership of its queue; the load
//! of the agent it reserves; its timers; its TTL. So every transition is one
//! round trip, which is what the Redis store (a Lua script) will need.

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod memory;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::{ServiceRecord, ServiceState, TimerKind};
use crate::stats::{QueueAverages, QueueStats, SampleKind};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Someone else wrote the record since it was read.
    #[error("service {0} was changed concurrently")]
    Conflict(String),
    #[error("service {0} already exists")]
    Exists(String),
    #[error("service {0} does not exist")]
    Missing(String),
    /// The reservation would break the agent's state or limit.
    #[error("agent {agent} cannot take service: {why}")]
    AgentUnavailable { agent: String, why: String },
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The booked slot has no seat left (another booking took the last one).
    #[error("the slot at {slot} has no seat left")]
    SlotFull { slot: DateTime<Utc> },
    /// Another stored service's room has this code.
    #[error("room code {code} is taken")]
    RoomTaken { code: String },
    /// The agent is already in another service's live room.
    #[error("agent {agent} is already in the video room of service {service}")]
    AgentInRoom { agent: String, service: String },
    /// The agent already has a key with this name.
    #[error("agent {agent} already has a key named {name}")]
    KeyExists { agent: String, name: String },
    /// A guarded create: the customer number already has this many active
    /// services in the scenario (`CreateGuard::max_active_for_customer`).
    #[error("the customer number already has {limit} active services in this scenario")]
    CustomerActive { limit: u32 },
    /// A guarded create: the scenario already holds this many active
    /// services (`CreateGuard::max_active_in_scenario`).
    #[error("scenario {scenario} already holds {limit} active services")]
    ScenarioFull { scenario: String, limit: u32 },
}

/// Limits a new record must fit, checked in the same atomic step as its
/// write, so two creates racing on different nodes cannot both pass. A
/// service is *active* until it is completed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreateGuard {
    /// Refuse when the record's customer number already has this many
    /// active services in the record's scenario.
    pub max_active_for_customer: Option<u32>,
    /// Refuse when the record's scenario already has this many active services.
    pub max_active_in_scenario: Option<u32>,
}

/// Longest a node's timer loop sleeps without asking the store for its
/// next timer (`Store::next_timer`), even when none is due sooner: a
/// backstop for a wake-up lost on the way.
pub const TIMER_BACKSTOP: std::time::Duration = std::time::Duration::from_secs(60);

/// A store that several nodes share wakes the other nodes' timer loops
/// for a timer a write arms only when it is due within this long of the
/// write: each loop looks at the store again within [`TIMER_BACKSTOP`]
/// anyway. Twice the backstop, because a loop counts its backstop from
/// after it read the store (a write in between is not seen), and because
/// nodes' clocks differ a little.
pub const WAKE_HORIZON: std::time::Duration =
    std::time::Duration::from_secs(2 * TIMER_BACKSTOP.as_secs());

/// What the store keeps of a key an admin minted for an agent: never the
/// key, only a hash of its secret (`access::keys` makes and checks them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentKey {
    /// What the key carries to find this entry.
    pub id: String,
    pub agent: String,
    /// Unique per agent.
    pub name: String,
    pub secret_sha256: String,
    pub created_at: DateTime<Utc>,
}

/// One counter a request counts against: at most `limit` in a window of
/// `window` that starts with the first request counted (GMS's throttle
/// TTLs work this way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// What is counted, e.g. `cust:<scenario>:<number>`; the store prefixes it.
    pub key: String,
    pub limit: u32,
    pub window: chrono::Duration,
}

/// The answer to counting a request against its quotas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaVerdict {
    /// Every quota had room; the request was counted against each.
    Counted,
    /// `quota` (an index into the request) is used up until `retry_at`;
    /// nothing was counted.
    Exceeded {
        quota: usize,
        retry_at: DateTime<Utc>,
    },
}

/// Where an idempotency key stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// First use: the caller holds the key until it finishes or abandons
    /// it, or the claim's lease runs out.
    Claimed,
    /// Another request with this key is being answered right now.
    InProgress,
    /// Answered before: the answer the first request stored.
    Answered(String),
}

/// What an admin says about an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentProfile {
    pub id: String,
    pub name: String,
    pub queues: BTreeSet<String>,
    pub skills: BTreeMap<String, u32>,
    pub max_concurrent: u32,
    /// Where booked appointments' invites go, when the scenario sends them to agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// An agent with its live state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    #[serde(flatten)]
    pub profile: AgentProfile,
    pub ready: bool,
    /// Services reserved for or handled by the agent right now.
    pub services: BTreeSet<String>,
    /// When the agent last got a service; the longest idle goes first.
    pub last_assigned_at: Option<DateTime<Utc>>,
    /// The service whose live video room the agent is in (one at a time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
}

impl AgentRecord {
    pub fn has_room(&self) -> bool {
        (self.services.len() as u64) < self.profile.max_concurrent as u64
    }
}

/// A waiting service as the router sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub id: String,
    pub priority: i32,
    pub since: DateTime<Utc>,
    pub skills: Option<String>,
    /// Only this agent may take it (until the preferred-agent timer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_agent: Option<String>,
    /// It has a video leg: an agent already in a room cannot take it.
    #[serde(default)]
    pub video: bool,
    /// Agents who declined its preview: never offered it again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub declined: Vec<String>,
    /// URS routing: the agents who may take it now (instead of the queue's
    /// and the skills'), and the condition that skips its current target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<crate::routing::target::ActiveRoute>,
}

impl QueueEntry {
    /// Higher priority first, then the oldest, then by id so the order is total.
    pub fn order_key(&self) -> (std::cmp::Reverse<i32>, DateTime<Utc>, String) {
        (
            std::cmp::Reverse(self.priority),
            self.since,
            self.id.clone(),
        )
    }

    pub fn of(record: &ServiceRecord) -> QueueEntry {
        QueueEntry {
            id: record.id.clone(),
            priority: record.ticket.priority,
            since: record.ticket.since,
            skills: record.ticket.skills.clone(),
            preferred_agent: record.ticket.preferred_agent.clone(),
            video: record.video.is_some(),
            declined: record.ticket.declined.clone(),
            route: record.ticket.route.as_ref().map(|r| r.active()),
        }
    }
}

/// What check-queue-position tells of one service, read in one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    /// Its state and scenario.
    pub state: ServiceState,
    pub scenario: String,
    /// The whole record, except while it waits in its queue (`position`
    /// is Some): a waiting customer's poll is answered from its place, so
    /// a store need not read and decode the record for it.
    pub record: Option<ServiceRecord>,
    /// Its place in its queue (1-based), while it waits there.
    pub position: Option<usize>,
    /// How many wait in the record's queue.
    pub waiting: usize,
    /// The EWT's inputs, read only while it waits: its queue's mean wait
    /// and handle times,
    pub averages: QueueAverages,
    /// and the summed `max_concurrent` of the queue's ready agents.
    pub ready_capacity: u32,
}

/// What `/metrics` shows of the services: how many each scenario has in
/// each state (completed ones not counted), and how many notifications
/// wait in their outboxes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    pub services: BTreeMap<(String, ServiceState), u64>,
    pub device_outbox: u64,
    pub agent_outbox: u64,
}

impl Census {
    /// Counts `record` in (`sign` 1) or out (-1): what a store that keeps
    /// the census as it writes does for the old and the new version.
    pub fn count(&mut self, record: &ServiceRecord, sign: i64) {
        if record.state == ServiceState::Completed {
            return;
        }
        let add = |n: &mut u64, by: usize| *n = n.saturating_add_signed(sign * by as i64);
        let key = (record.scenario.clone(), record.state);
        add(self.services.entry(key.clone()).or_default(), 1);
        if self.services.get(&key) == Some(&0) {
            self.services.remove(&key);
        }
        add(&mut self.device_outbox, record.outbox.len());
        add(&mut self.agent_outbox, record.agent_outbox.len());
    }

    /// How many services of `scenario` are active (not completed).
    pub fn active_in(&self, scenario: &str) -> u64 {
        self.services
            .iter()
            .filter(|((s, _), _)| s == scenario)
            .map(|(_, n)| n)
            .sum()
    }
}

/// A device's waiting service and its place: what the positions pushed to
/// listening devices are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePosition {
    pub device: String,
    pub service: String,
    /// 1-based.
    pub position: usize,
    /// How many wait in its queue.
    pub waiting: usize,
}

/// The summed `max_concurrent` of `queue`'s ready agents.
pub fn ready_capacity<'a>(agents: impl IntoIterator<Item = &'a AgentRecord>, queue: &str) -> u32 {
    agents
        .into_iter()
        .filter(|a| a.ready && a.profile.queues.contains(queue))
        .map(|a| a.profile.max_concurrent)
        .sum()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexKey {
    Customer(String),
    State(ServiceState),
    Scenario(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTimer {
    pub id: String,
    pub kind: TimerKind,
    pub due: DateTime<Utc>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, id: &str) -> Result<Option<ServiceRecord>, StoreError>;

    /// The stored services among `ids`, in any order; a missing or expired
    /// one is left out. One round trip where the store has round trips (the
    /// timer loop reads the services of the timers it has just claimed).
    async fn get_many(&self, ids: &[String]) -> Result<Vec<ServiceRecord>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(self.get(id).await?);
        }
        Ok(out)
    }

    /// Writes `record` if the stored version is `expected_version` (`None`:
    /// the record must not exist yet), and updates every derived structure
    /// in the same step. Nothing is written when it fails.
    async fn put(
        &self,
        record: &ServiceRecord,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError>;

    /// Writes a new record like `put(record, None)`, refused
    /// (`CustomerActive`, `ScenarioFull`) unless it fits `guard`; the count
    /// and the write are one atomic step.
    async fn put_new(&self, record: &ServiceRecord, guard: &CreateGuard) -> Result<(), StoreError>;

    /// [`Store::put_new`] of a record its caller holds in an `Arc`: a store
    /// that keeps records in memory keeps this one as it is, where
    /// `put_new` must copy the record it is lent.
    async fn put_new_shared(
        &self,
        record: &Arc<ServiceRecord>,
        guard: &CreateGuard,
    ) -> Result<(), StoreError> {
        self.put_new(record, guard).await
    }

    /// Records under one index, in no particular order.
    async fn find(&self, key: &IndexKey) -> Result<Vec<ServiceRecord>, StoreError>;

    /// A queue's waiting services, in routing order.
    async fn queue(&self, queue: &str) -> Result<Vec<QueueEntry>, StoreError>;

    /// Names of the queues that hold at least one service.
    async fn queues(&self) -> Result<Vec<String>, StoreError>;

    /// 1-based position of a service in its queue, and the queue's length.
    async fn position(&self, queue: &str, id: &str) -> Result<Option<(usize, usize)>, StoreError>;

    /// The waiting services of `devices` (each `_device_notification_id`),
    /// each with its place in its queue, in no particular order. A store
    /// finds them by an index of waiting services by device, so the cost
    /// grows with the devices asked about, not with the services waiting.
    /// (Queue entries do not carry the device: that index is what knows it.)
    async fn device_positions(&self, devices: &[String])
        -> Result<Vec<DevicePosition>, StoreError>;

    /// The services by scenario and state, and the outboxes' depth. The
    /// stores keep it as they write, so a `/metrics` scrape costs the
    /// same at any size; this default reads every active record.
    async fn census(&self) -> Result<Census, StoreError> {
        let mut census = Census::default();
        for state in ServiceState::ALL {
            if state != ServiceState::Completed {
                for record in self.find(&IndexKey::State(state)).await? {
                    census.count(&record, 1);
                }
            }
        }
        Ok(census)
    }

    /// How many wait in a queue.
    async fn queue_len(&self, queue: &str) -> Result<usize, StoreError> {
        Ok(self.queue(queue).await?.len())
    }

    /// The earliest `since` of a queue's services (its oldest wait). The
    /// stores read only the first service of each priority level; this
    /// default reads the queue whole.
    async fn queue_oldest(&self, queue: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.queue(queue).await?.iter().map(|e| e.since).min())
    }

    /// A service with its place in its queue and the EWT's inputs: what a
    /// waiting customer polls for. A store answers it in one step (one
    /// round trip) where it can; this default reads each part on its own.
    async fn standing(&self, id: &str) -> Result<Option<Standing>, StoreError> {
        let Some(record) = self.get(id).await? else {
            return Ok(None);
        };
        let queue = record.ticket.queue.clone();
        let placed = if record.is_queued() {
            self.position(&queue, id).await?
        } else {
            None
        };
        let (position, waiting) = match placed {
            Some((position, waiting)) => (Some(position), waiting),
            None => (None, self.queue_len(&queue).await?),
        };
        let (averages, ready_capacity) = match position {
            Some(_) => (
                self.queue_stats(&queue).await?.averages(),
                ready_capacity(&self.agents().await?, &queue),
            ),
            None => (QueueAverages::default(), 0),
        };
        Ok(Some(Standing {
            state: record.state,
            scenario: record.scenario.clone(),
            record: position.is_none().then_some(record),
            position,
            waiting,
            averages,
            ready_capacity,
        }))
    }

    /// Timers due at or before `now` and not claimed, earliest first.
    async fn due_timers(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueTimer>, StoreError>;

    /// Claims up to `limit` due timers for `lease`: until the lease runs out
    /// no other caller (on any node) gets them. Firing a timer removes it
    /// from its record, and so from the store; a timer whose claimant died
    /// comes due again when its lease ends, with its original due time.
    async fn claim_due_timers(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: usize,
    ) -> Result<Vec<DueTimer>, StoreError>;

    /// When the timer loop must look again: the earliest due time of an
    /// unclaimed timer, or the end of a claim's lease.
    async fn next_timer(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Checks that the store answers (for /healthz).
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Creates or updates an agent's profile; its readiness and services stay.
    async fn put_agent(&self, profile: AgentProfile) -> Result<AgentRecord, StoreError>;

    async fn set_agent_ready(
        &self,
        id: &str,
        ready: bool,
    ) -> Result<Option<AgentRecord>, StoreError>;

    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError>;

    async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError>;

    async fn add_sample(
        &self,
        queue: &str,
        kind: SampleKind,
        seconds: f64,
    ) -> Result<(), StoreError>;

    async fn queue_stats(&self, queue: &str) -> Result<QueueStats, StoreError>;

    /// Seats taken in `scenario`'s slots that start in `[from, to)`, by
    /// slot start. A seat is held by every booked service that is not
    /// completed; `put` refuses (`SlotFull`) the write that would take more
    /// seats than the booking's `seats`.
    async fn seats_taken(
        &self,
        scenario: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<BTreeMap<DateTime<Utc>, u32>, StoreError>;

    /// The service whose latest room has `code`, while that service is stored.
    async fn room(&self, code: &str) -> Result<Option<String>, StoreError>;

    /// Forgets records whose storage deadline has passed; returns how many.
    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<usize, StoreError>;

    /// Stores a minted key; `KeyExists` if the agent has one of that name.
    async fn put_agent_key(&self, key: &AgentKey) -> Result<(), StoreError>;

    /// The key entry with this id (what a presented key carries).
    async fn agent_key(&self, id: &str) -> Result<Option<AgentKey>, StoreError>;

    /// An agent's keys, by name.
    async fn agent_keys(&self, agent: &str) -> Result<Vec<AgentKey>, StoreError>;

    /// Forgets the agent's key `name`; whether there was one. Every node
    /// refuses the key from then on: nothing caches it.
    async fn revoke_agent_key(&self, agent: &str, name: &str) -> Result<bool, StoreError>;

    /// Counts one request against every quota, all or nothing, atomically
    /// across every node sharing the store.
    async fn count_quotas(&self, quotas: &[Quota]) -> Result<QuotaVerdict, StoreError>;

    /// Claims `key` for a request (the claim lasts `lease`), or says who
    /// has it or what it answered.
    async fn claim_idempotency(
        &self,
        key: &str,
        lease: chrono::Duration,
    ) -> Result<IdempotencyClaim, StoreError>;

    /// Stores the claimed key's answer, kept for `keep`.
    async fn answer_idempotency(
        &self,
        key: &str,
        answer: &str,
        keep: chrono::Duration,
    ) -> Result<(), StoreError>;

    /// Gives up a claim (the request failed), so a retry may run.
    async fn release_idempotency(&self, key: &str) -> Result<(), StoreError>;

    /// Adds one webhook attempt (opaque JSON) to the log every node shares,
    /// which keeps the newest `keep`.
    async fn log_webhook_attempt(&self, attempt: &str, keep: usize) -> Result<(), StoreError>;

    /// The newest `limit` webhook attempts of any node, newest first.
    async fn webhook_attempts(&self, limit: usize) -> Result<Vec<String>, StoreError>;
}

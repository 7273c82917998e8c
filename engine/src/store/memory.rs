//! The embedded store: everything in one mutex-guarded map, for one node.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::*;
use crate::clock::Clock;

type QueueKey = (std::cmp::Reverse<i32>, DateTime<Utc>, String);

#[derive(Default)]
struct Inner {
    records: HashMap<String, ServiceRecord>,
    by_customer: HashMap<String, BTreeSet<String>>,
    by_state: HashMap<ServiceState, BTreeSet<String>>,
    by_scenario: HashMap<String, BTreeSet<String>>,
    queues: HashMap<String, BTreeSet<QueueKey>>,
    /// Armed timers by when the timer loop must look at them: the due time,
    /// or the end of a claim's lease.
    timers: BTreeSet<(DateTime<Utc>, String, TimerKind)>,
    /// (service, kind) → (wake, due): the other half of `timers`.
    armed: HashMap<(String, TimerKind), (DateTime<Utc>, DateTime<Utc>)>,
    deadlines: BTreeSet<(DateTime<Utc>, String)>,
    agents: HashMap<String, AgentRecord>,
    /// scenario → slot start → seats taken.
    seats: HashMap<String, BTreeMap<DateTime<Utc>, u32>>,
    /// Room code → the service whose latest room has it.
    rooms: HashMap<String, String>,
    /// Agent → the service whose live room the agent is in.
    room_agents: HashMap<String, String>,
    stats: HashMap<String, QueueStats>,
}

/// What access control keeps: apart from the records, so a burst of
/// credential checks never waits on the record lock.
#[derive(Default)]
struct Access {
    /// key id → entry.
    keys: HashMap<String, AgentKey>,
    /// (agent, name) → key id.
    key_names: BTreeMap<(String, String), String>,
    /// quota key → (count, window end).
    quotas: HashMap<String, (u32, DateTime<Utc>)>,
    idempotency: HashMap<String, (Idempotency, DateTime<Utc>)>,
    /// Recent webhook attempts, newest last.
    webhook_attempts: std::collections::VecDeque<String>,
}

enum Idempotency {
    Claimed,
    Answered(String),
}

pub struct MemoryStore {
    inner: Mutex<Inner>,
    access: Mutex<Access>,
    clock: Arc<dyn Clock>,
}

impl MemoryStore {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryStore {
            inner: Mutex::new(Inner::default()),
            access: Mutex::new(Access::default()),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the whole store down with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn access(&self) -> MutexGuard<'_, Access> {
        self.access.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `put` and `put_new`: the check of `guard` and the write hold the
    /// one lock, so they are one step.
    fn write(
        &self,
        record: &ServiceRecord,
        expected_version: Option<u64>,
        guard: Option<&CreateGuard>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        inner.purge(now);
        let old = inner.records.get(&record.id).cloned();
        if old.as_ref() == Some(record) {
            // The very same write again (a retry after a lost answer).
            return Ok(());
        }
        match (&old, expected_version) {
            (Some(_), None) => return Err(StoreError::Exists(record.id.clone())),
            (None, Some(_)) => return Err(StoreError::Missing(record.id.clone())),
            (Some(o), Some(v)) if o.version != v => {
                return Err(StoreError::Conflict(record.id.clone()))
            }
            _ => {}
        }
        if let Some(guard) = guard {
            inner.check_guard(record, guard, now)?;
        }
        inner.check_reservation(old.as_ref(), record)?;
        inner.check_seat(old.as_ref(), record)?;
        inner.check_rooms(record)?;
        let old_timers = old.as_ref().map(|o| o.timers.clone()).unwrap_or_default();
        if let Some(o) = &old {
            let mut o = o.clone();
            // Timers are synced below, so that a kept timer keeps its claim.
            o.timers.clear();
            inner.unindex(&o);
        }
        inner.move_reservation(old.as_ref(), record, now);
        inner.index(record);
        inner.sync_timers(&record.id, &old_timers, &record.timers);
        inner.records.insert(record.id.clone(), record.clone());
        Ok(())
    }
}

fn queue_key(rec: &ServiceRecord) -> QueueKey {
    QueueEntry::of(rec).order_key()
}

impl Inner {
    fn unindex(&mut self, rec: &ServiceRecord) {
        remove_from(&mut self.by_customer, &rec.customer_number, &rec.id);
        remove_from(&mut self.by_state, &rec.state, &rec.id);
        remove_from(&mut self.by_scenario, &rec.scenario, &rec.id);
        if rec.is_queued() {
            if let Some(q) = self.queues.get_mut(&rec.ticket.queue) {
                q.remove(&queue_key(rec));
                if q.is_empty() {
                    self.queues.remove(&rec.ticket.queue);
                }
            }
        }
        self.sync_timers(&rec.id, &rec.timers, &BTreeMap::new());
        self.deadlines
            .remove(&(rec.storage_deadline(), rec.id.clone()));
        if let Some((scenario, slot, _)) = rec.seat() {
            if let Some(slots) = self.seats.get_mut(scenario) {
                if let Some(taken) = slots.get_mut(&slot) {
                    *taken = taken.saturating_sub(1);
                    if *taken == 0 {
                        slots.remove(&slot);
                    }
                }
                if slots.is_empty() {
                    self.seats.remove(scenario);
                }
            }
        }
        // Only what this record holds: a code or an agent is never indexed
        // for two services, but a guard costs nothing.
        if let Some(code) = rec.room_code() {
            if self.rooms.get(code) == Some(&rec.id) {
                self.rooms.remove(code);
            }
        }
        if let Some(agent) = rec.room_agent() {
            if self.room_agents.get(agent) == Some(&rec.id) {
                self.room_agents.remove(agent);
            }
        }
    }

    fn index(&mut self, rec: &ServiceRecord) {
        self.by_customer
            .entry(rec.customer_number.clone())
            .or_default()
            .insert(rec.id.clone());
        self.by_state
            .entry(rec.state)
            .or_default()
            .insert(rec.id.clone());
        self.by_scenario
            .entry(rec.scenario.clone())
            .or_default()
            .insert(rec.id.clone());
        if rec.is_queued() {
            self.queues
                .entry(rec.ticket.queue.clone())
                .or_default()
                .insert(queue_key(rec));
        }
        self.deadlines
            .insert((rec.storage_deadline(), rec.id.clone()));
        if let Some((scenario, slot, _)) = rec.seat() {
            *self
                .seats
                .entry(scenario.to_owned())
                .or_default()
                .entry(slot)
                .or_default() += 1;
        }
        if let Some(code) = rec.room_code() {
            self.rooms.insert(code.to_owned(), rec.id.clone());
        }
        if let Some(agent) = rec.room_agent() {
            self.room_agents.insert(agent.to_owned(), rec.id.clone());
        }
    }

    /// Refuses a room code another service holds, and putting an agent in
    /// a live room while another service's live room has it.
    fn check_rooms(&self, new: &ServiceRecord) -> Result<(), StoreError> {
        if let Some(code) = new.room_code() {
            if self.rooms.get(code).is_some_and(|holder| *holder != new.id) {
                return Err(StoreError::RoomTaken {
                    code: code.to_owned(),
                });
            }
        }
        if let Some(agent) = new.room_agent() {
            if let Some(holder) = self.room_agents.get(agent).filter(|h| **h != new.id) {
                return Err(StoreError::AgentInRoom {
                    agent: agent.to_owned(),
                    service: holder.clone(),
                });
            }
        }
        Ok(())
    }

    /// Refuses a new record past its customer's or its scenario's limit of
    /// active services.
    fn check_guard(
        &self,
        new: &ServiceRecord,
        guard: &CreateGuard,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let active = |ids: Option<&BTreeSet<String>>, limit: u32| {
            ids.into_iter()
                .flatten()
                .filter_map(|id| self.records.get(id))
                .filter(|r| {
                    r.scenario == new.scenario
                        && r.state != ServiceState::Completed
                        && r.storage_deadline() > now
                })
                .take(limit as usize)
                .count()
                >= limit as usize
        };
        if let Some(limit) = guard.max_active_for_customer {
            if active(self.by_customer.get(&new.customer_number), limit) {
                return Err(StoreError::CustomerActive { limit });
            }
        }
        if let Some(limit) = guard.max_active_in_scenario {
            if active(self.by_scenario.get(&new.scenario), limit) {
                return Err(StoreError::ScenarioFull {
                    scenario: new.scenario.clone(),
                    limit,
                });
            }
        }
        Ok(())
    }

    /// The agent as callers see it: with the live room it is in.
    fn agent_record(&self, agent: &AgentRecord) -> AgentRecord {
        let mut agent = agent.clone();
        agent.room = self.room_agents.get(&agent.profile.id).cloned();
        agent
    }

    /// Refuses a seat the slot no longer has. A record that keeps the seat it
    /// held (same scenario, same slot) is not counted twice.
    fn check_seat(
        &self,
        old: Option<&ServiceRecord>,
        new: &ServiceRecord,
    ) -> Result<(), StoreError> {
        let Some((scenario, slot, seats)) = new.seat() else {
            return Ok(());
        };
        if old
            .and_then(|o| o.seat())
            .is_some_and(|(s, t, _)| s == scenario && t == slot)
        {
            return Ok(());
        }
        let taken = self
            .seats
            .get(scenario)
            .and_then(|slots| slots.get(&slot))
            .copied()
            .unwrap_or(0);
        if taken >= seats {
            return Err(StoreError::SlotFull { slot });
        }
        Ok(())
    }

    /// Disarms the timers `old` had and `new` has not, and arms the new ones;
    /// a timer both hold (same kind, same due time) keeps its claim.
    fn sync_timers(
        &mut self,
        id: &str,
        old: &BTreeMap<TimerKind, DateTime<Utc>>,
        new: &BTreeMap<TimerKind, DateTime<Utc>>,
    ) {
        for (kind, due) in old {
            if new.get(kind) != Some(due) {
                if let Some((wake, _)) = self.armed.remove(&(id.to_owned(), *kind)) {
                    self.timers.remove(&(wake, id.to_owned(), *kind));
                }
            }
        }
        for (kind, due) in new {
            let key = (id.to_owned(), *kind);
            if self.armed.get(&key).map(|(_, d)| d) != Some(due) {
                if let Some((wake, _)) = self.armed.remove(&key) {
                    self.timers.remove(&(wake, id.to_owned(), *kind));
                }
                self.armed.insert(key, (*due, *due));
                self.timers.insert((*due, id.to_owned(), *kind));
            }
        }
    }

    fn due(&self, now: DateTime<Utc>, limit: usize) -> Vec<DueTimer> {
        self.timers
            .iter()
            .take_while(|(wake, _, _)| *wake <= now)
            .take(limit)
            .filter_map(|(_, id, kind)| {
                let (_, due) = self.armed.get(&(id.clone(), *kind))?;
                Some(DueTimer {
                    id: id.clone(),
                    kind: *kind,
                    due: *due,
                })
            })
            .collect()
    }

    /// Checks that the agent change the record asks for is possible.
    fn check_reservation(
        &self,
        old: Option<&ServiceRecord>,
        new: &ServiceRecord,
    ) -> Result<(), StoreError> {
        let before = old.and_then(|o| o.agent.as_deref());
        match new.agent.as_deref() {
            Some(agent) if before != Some(agent) => {
                let unavailable = |why: &str| StoreError::AgentUnavailable {
                    agent: agent.to_owned(),
                    why: why.to_owned(),
                };
                let a = self
                    .agents
                    .get(agent)
                    .ok_or_else(|| unavailable("unknown agent"))?;
                if !a.ready {
                    return Err(unavailable("not ready"));
                }
                if !a.has_room() {
                    return Err(unavailable("at its max_concurrent limit"));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn move_reservation(
        &mut self,
        old: Option<&ServiceRecord>,
        new: &ServiceRecord,
        now: DateTime<Utc>,
    ) {
        let before = old.and_then(|o| o.agent.clone());
        if before == new.agent {
            return;
        }
        if let Some(agent) = before.and_then(|a| self.agents.get_mut(&a)) {
            agent.services.remove(&new.id);
        }
        if let Some(agent) = new.agent.as_ref().and_then(|a| self.agents.get_mut(a)) {
            agent.services.insert(new.id.clone());
            agent.last_assigned_at = Some(now);
        }
    }

    fn remove_record(&mut self, id: &str) {
        if let Some(rec) = self.records.remove(id) {
            self.unindex(&rec);
            if let Some(agent) = rec.agent.as_ref().and_then(|a| self.agents.get_mut(a)) {
                agent.services.remove(id);
            }
        }
    }

    fn purge(&mut self, now: DateTime<Utc>) -> usize {
        let expired: Vec<String> = self
            .deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .map(|(_, id)| id.clone())
            .collect();
        for id in &expired {
            self.remove_record(id);
        }
        expired.len()
    }
}

fn remove_from<K: std::hash::Hash + Eq>(map: &mut HashMap<K, BTreeSet<String>>, key: &K, id: &str) {
    if let Some(set) = map.get_mut(key) {
        set.remove(id);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, id: &str) -> Result<Option<ServiceRecord>, StoreError> {
        let now = self.clock.now();
        let inner = self.lock();
        Ok(inner
            .records
            .get(id)
            .filter(|r| r.storage_deadline() > now)
            .cloned())
    }

    async fn put(
        &self,
        record: &ServiceRecord,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        self.write(record, expected_version, None)
    }

    async fn put_new(&self, record: &ServiceRecord, guard: &CreateGuard) -> Result<(), StoreError> {
        self.write(record, None, Some(guard))
    }

    async fn find(&self, key: &IndexKey) -> Result<Vec<ServiceRecord>, StoreError> {
        let now = self.clock.now();
        let inner = self.lock();
        let ids = match key {
            IndexKey::Customer(c) => inner.by_customer.get(c),
            IndexKey::State(s) => inner.by_state.get(s),
            IndexKey::Scenario(s) => inner.by_scenario.get(s),
        };
        Ok(ids
            .into_iter()
            .flatten()
            .filter_map(|id| inner.records.get(id))
            .filter(|r| r.storage_deadline() > now)
            .cloned()
            .collect())
    }

    async fn queue(&self, queue: &str) -> Result<Vec<QueueEntry>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .queues
            .get(queue)
            .into_iter()
            .flatten()
            .filter_map(|(_, _, id)| inner.records.get(id))
            .map(QueueEntry::of)
            .collect())
    }

    async fn queues(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self.lock().queues.keys().cloned().collect();
        names.sort();
        Ok(names)
    }

    async fn position(&self, queue: &str, id: &str) -> Result<Option<(usize, usize)>, StoreError> {
        let inner = self.lock();
        let Some(q) = inner.queues.get(queue) else {
            return Ok(None);
        };
        Ok(q.iter()
            .position(|(_, _, i)| i == id)
            .map(|p| (p + 1, q.len())))
    }

    async fn due_timers(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueTimer>, StoreError> {
        Ok(self.lock().due(now, limit))
    }

    async fn claim_due_timers(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: usize,
    ) -> Result<Vec<DueTimer>, StoreError> {
        let mut inner = self.lock();
        let due = inner.due(now, limit);
        let until = now + lease;
        for t in &due {
            if let Some((wake, _)) = inner.armed.get_mut(&(t.id.clone(), t.kind)) {
                let was = std::mem::replace(wake, until);
                inner.timers.remove(&(was, t.id.clone(), t.kind));
                inner.timers.insert((until, t.id.clone(), t.kind));
            }
        }
        Ok(due)
    }

    async fn next_timer(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        inner.purge(now);
        Ok(inner.timers.first().map(|(due, _, _)| *due))
    }

    async fn put_agent(&self, profile: AgentProfile) -> Result<AgentRecord, StoreError> {
        let mut inner = self.lock();
        let agent = inner
            .agents
            .entry(profile.id.clone())
            .and_modify(|a| a.profile = profile.clone())
            .or_insert_with(|| AgentRecord {
                room: None,
                profile,
                ready: false,
                services: BTreeSet::new(),
                last_assigned_at: None,
            })
            .clone();
        Ok(inner.agent_record(&agent))
    }

    async fn set_agent_ready(
        &self,
        id: &str,
        ready: bool,
    ) -> Result<Option<AgentRecord>, StoreError> {
        let mut inner = self.lock();
        let agent = inner.agents.get_mut(id).map(|a| {
            a.ready = ready;
            a.clone()
        });
        Ok(agent.map(|a| inner.agent_record(&a)))
    }

    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let inner = self.lock();
        Ok(inner.agents.get(id).map(|a| inner.agent_record(a)))
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let inner = self.lock();
        let mut agents: Vec<AgentRecord> = inner
            .agents
            .values()
            .map(|a| inner.agent_record(a))
            .collect();
        agents.sort_by(|a, b| a.profile.id.cmp(&b.profile.id));
        Ok(agents)
    }

    async fn add_sample(
        &self,
        queue: &str,
        kind: SampleKind,
        seconds: f64,
    ) -> Result<(), StoreError> {
        self.lock()
            .stats
            .entry(queue.to_owned())
            .or_default()
            .add(kind, seconds);
        Ok(())
    }

    async fn queue_stats(&self, queue: &str) -> Result<QueueStats, StoreError> {
        Ok(self.lock().stats.get(queue).cloned().unwrap_or_default())
    }

    async fn seats_taken(
        &self,
        scenario: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<BTreeMap<DateTime<Utc>, u32>, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        // Seats of records past their deadline are not taken any more.
        inner.purge(now);
        Ok(inner
            .seats
            .get(scenario)
            .map(|slots| {
                slots
                    .range(from..to.max(from))
                    .map(|(k, v)| (*k, *v))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn room(&self, code: &str) -> Result<Option<String>, StoreError> {
        let now = self.clock.now();
        let inner = self.lock();
        Ok(inner
            .rooms
            .get(code)
            .filter(|id| {
                inner
                    .records
                    .get(*id)
                    .is_some_and(|r| r.storage_deadline() > now)
            })
            .cloned())
    }

    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        Ok(self.lock().purge(now))
    }

    async fn put_agent_key(&self, key: &AgentKey) -> Result<(), StoreError> {
        let mut access = self.access();
        let name = (key.agent.clone(), key.name.clone());
        if access.key_names.contains_key(&name) {
            return Err(StoreError::KeyExists {
                agent: key.agent.clone(),
                name: key.name.clone(),
            });
        }
        access.key_names.insert(name, key.id.clone());
        access.keys.insert(key.id.clone(), key.clone());
        Ok(())
    }

    async fn agent_key(&self, id: &str) -> Result<Option<AgentKey>, StoreError> {
        Ok(self.access().keys.get(id).cloned())
    }

    async fn agent_keys(&self, agent: &str) -> Result<Vec<AgentKey>, StoreError> {
        let access = self.access();
        let from = (agent.to_owned(), String::new());
        Ok(access
            .key_names
            .range(from..)
            .take_while(|((a, _), _)| a == agent)
            .filter_map(|(_, id)| access.keys.get(id).cloned())
            .collect())
    }

    async fn revoke_agent_key(&self, agent: &str, name: &str) -> Result<bool, StoreError> {
        let mut access = self.access();
        match access
            .key_names
            .remove(&(agent.to_owned(), name.to_owned()))
        {
            Some(id) => Ok(access.keys.remove(&id).is_some()),
            None => Ok(false),
        }
    }

    async fn count_quotas(&self, quotas: &[Quota]) -> Result<QuotaVerdict, StoreError> {
        let now = self.clock.now();
        let mut access = self.access();
        for (i, q) in quotas.iter().enumerate() {
            if let Some(&(count, end)) = access.quotas.get(&q.key) {
                if end > now && count >= q.limit {
                    return Ok(QuotaVerdict::Exceeded {
                        quota: i,
                        retry_at: end,
                    });
                }
            }
        }
        for q in quotas {
            let entry = access.quotas.entry(q.key.clone()).or_insert((0, now));
            if entry.1 <= now {
                *entry = (0, now + q.window);
            }
            entry.0 += 1;
        }
        // Forget windows that ended, a few at a time, so the map does not
        // grow with every number ever seen.
        if access.quotas.len() > 1024 {
            access.quotas.retain(|_, (_, end)| *end > now);
        }
        Ok(QuotaVerdict::Counted)
    }

    async fn claim_idempotency(
        &self,
        key: &str,
        lease: chrono::Duration,
    ) -> Result<IdempotencyClaim, StoreError> {
        let now = self.clock.now();
        let mut access = self.access();
        if access.idempotency.len() > 1024 {
            access.idempotency.retain(|_, (_, until)| *until > now);
        }
        match access.idempotency.get(key) {
            Some((Idempotency::Answered(a), until)) if *until > now => {
                Ok(IdempotencyClaim::Answered(a.clone()))
            }
            Some((Idempotency::Claimed, until)) if *until > now => Ok(IdempotencyClaim::InProgress),
            _ => {
                access
                    .idempotency
                    .insert(key.to_owned(), (Idempotency::Claimed, now + lease));
                Ok(IdempotencyClaim::Claimed)
            }
        }
    }

    async fn answer_idempotency(
        &self,
        key: &str,
        answer: &str,
        keep: chrono::Duration,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        self.access().idempotency.insert(
            key.to_owned(),
            (Idempotency::Answered(answer.to_owned()), now + keep),
        );
        Ok(())
    }

    async fn release_idempotency(&self, key: &str) -> Result<(), StoreError> {
        let mut access = self.access();
        if matches!(access.idempotency.get(key), Some((Idempotency::Claimed, _))) {
            access.idempotency.remove(key);
        }
        Ok(())
    }

    async fn log_webhook_attempt(&self, attempt: &str, keep: usize) -> Result<(), StoreError> {
        let mut access = self.access();
        access.webhook_attempts.push_back(attempt.to_owned());
        while access.webhook_attempts.len() > keep {
            access.webhook_attempts.pop_front();
        }
        Ok(())
    }

    async fn webhook_attempts(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let access = self.access();
        Ok(access
            .webhook_attempts
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect())
    }
}

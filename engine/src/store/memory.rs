//! The embedded store, for one node: records and everything derived from
//! them in memory, behind one lock.
//!
//! No step under the lock grows with the store, so a growing store never
//! stalls the server:
//!
//! - maps keyed by service id, customer or device, and the sets of
//!   services by state and scenario, are split into [`Shards`], so when
//!   one grows it rehashes a sixty-fourth of the entries, never all of them
//!   at once;
//! - records are kept as `Arc`s: a read copies a pointer under the lock and
//!   the record after it; every index names a service by one shared `Id`;
//! - a queue is an order-statistic B-tree (`indexset`), so a place in it
//!   is found in O(log n) instead of by walking from the front;
//! - a write changes only the indexes whose field changed, and counts the
//!   scenario's active services as it goes, so a create guard never walks
//!   the scenario's records.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hashbrown::hash_table::{self, HashTable};

use super::*;
use crate::clock::Clock;
use crate::small_map::SmallMap;

/// A service id, stored once and shared by every index that names it: an
/// index entry is a pointer, not a copy of the text.
type Id = Arc<str>;

/// The services of one customer number, or of one device: nearly always
/// one, held without an allocation of its own.
type IdList = smallvec::SmallVec<[Id; 1]>;

/// A set of services.
type IdSet = Shards<Id, ()>;

/// A small map of our own keys (states, scenario names), hashed with
/// foldhash rather than SipHash.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

type QueueKey = (std::cmp::Reverse<i32>, DateTime<Utc>, Id);

/// How many tables a [`Shards`] splits its entries over.
const SHARDS: usize = 64;

/// A hash map split into [`SHARDS`] tables by the key's hash: a table
/// that outgrows itself rehashes everything it holds in one step, which
/// at a quarter of a million services is most of a second; a shard holds
/// a sixty-fourth of them.
///
/// A key is hashed once per operation (the shard and the slot in it come
/// from the same hash), with foldhash rather than std's SipHash: in a
/// profile of creates into a growing store, SipHash was a sixth of the
/// store's time, most of it hashing every key again when a shard grew.
/// foldhash is seeded at random for each map, so keys a client chooses
/// (customer numbers, device ids) cannot be picked to collide.
struct Shards<K, V> {
    seed: foldhash::fast::RandomState,
    tables: Box<[HashTable<(K, V)>]>,
}

impl<K: Hash + Eq, V> Default for Shards<K, V> {
    fn default() -> Self {
        Shards {
            seed: foldhash::fast::RandomState::default(),
            tables: (0..SHARDS).map(|_| HashTable::new()).collect(),
        }
    }
}

impl<K: Hash + Eq, V> Shards<K, V> {
    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.seed.hash_one(key)
    }

    /// The shard: bits the table does not use for the slot (the low ones)
    /// or the tag it keeps of each hash (the top seven).
    fn shard(hash: u64) -> usize {
        (hash >> 40) as usize % SHARDS
    }

    fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let h = self.hash(key);
        self.tables[Self::shard(h)]
            .find(h, |(k, _)| k.borrow() == key)
            .map(|(k, v)| (k, v))
    }

    fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_key_value(key).map(|(_, v)| v)
    }

    fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let h = self.hash(key);
        self.tables[Self::shard(h)]
            .find_mut(h, |(k, _)| k.borrow() == key)
            .map(|(_, v)| v)
    }

    /// The value under `key`, made by `make` (with the key to keep) when
    /// there is none.
    fn get_or_insert_with<Q>(&mut self, key: &Q, make: impl FnOnce() -> (K, V)) -> &mut V
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let h = self.hash(key);
        let Shards { seed, tables } = self;
        let entry =
            tables[Self::shard(h)].entry(h, |(k, _)| k.borrow() == key, |(k, _)| seed.hash_one(k));
        &mut entry.or_insert_with(make).into_mut().1
    }

    fn insert(&mut self, key: K, value: V) -> Option<V> {
        let h = self.hash(&key);
        let Shards { seed, tables } = self;
        match tables[Self::shard(h)].entry(h, |(k, _)| *k == key, |(k, _)| seed.hash_one(k)) {
            hash_table::Entry::Occupied(mut e) => {
                Some(std::mem::replace(&mut e.get_mut().1, value))
            }
            hash_table::Entry::Vacant(e) => {
                e.insert((key, value));
                None
            }
        }
    }

    fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let h = self.hash(key);
        self.tables[Self::shard(h)]
            .find_entry(h, |(k, _)| k.borrow() == key)
            .ok()
            .map(|e| e.remove().0 .1)
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.tables.iter().all(HashTable::is_empty)
    }

    fn keys(&self) -> impl Iterator<Item = &K> {
        self.tables.iter().flat_map(|t| t.iter().map(|(k, _)| k))
    }
}

#[derive(Default)]
struct Inner {
    records: Shards<Id, Arc<ServiceRecord>>,
    /// Customer number → its services (a customer has few).
    by_customer: Shards<Box<str>, IdList>,
    /// The services by state, then by scenario: one set per (state,
    /// scenario), so a create inserts a service once and a change of state
    /// moves it between two sets (a state's services are the union over
    /// its scenarios, a scenario's over the states). Sets in no order
    /// (`find` answers in none): B-trees of random ids, one by state and
    /// one by scenario, took a dozen comparisons each, each a likely cache
    /// miss, for every insert.
    by_state: HashMap<ServiceState, FastMap<String, IdSet>>,
    queues: HashMap<String, indexset::BTreeSet<QueueKey>>,
    /// Device → its services waiting in a queue (the positions pushed).
    waiting_by_device: Shards<Box<str>, IdList>,
    /// Armed timers by when the timer loop must look at them: the due time
    /// (the record's), or the end of a claim's lease.
    timers: BTreeSet<(DateTime<Utc>, Id, TimerKind)>,
    /// Claimed timers: (service, kind) → (lease end, due). A timer not in
    /// it waits in `timers` under its due time.
    claimed: HashMap<(Id, TimerKind), (DateTime<Utc>, DateTime<Utc>)>,
    deadlines: BTreeSet<(DateTime<Utc>, Id)>,
    agents: HashMap<String, AgentRecord>,
    /// scenario → slot start → seats taken.
    seats: HashMap<String, BTreeMap<DateTime<Utc>, u32>>,
    /// Room code → the service whose latest room has it.
    rooms: HashMap<String, String>,
    /// Agent → the service whose live room the agent is in.
    room_agents: HashMap<String, String>,
    stats: HashMap<String, QueueStats>,
    /// The services by scenario and state and the outboxes' depth, kept
    /// by every write (`/metrics` reads it, and the create guard counts a
    /// scenario's active services in it).
    census: Census,
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
    ///
    /// `shared` is the same record in the caller's `Arc`, kept as it is;
    /// without it the record is copied.
    fn write(
        &self,
        record: &ServiceRecord,
        shared: Option<&Arc<ServiceRecord>>,
        expected_version: Option<u64>,
        guard: Option<&CreateGuard>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        // Made before the lock is taken: the copy is the dearest part.
        let stored = match shared {
            Some(record) => record.clone(),
            None => Arc::new(record.clone()),
        };
        let mut inner = self.lock();
        inner.purge(now);
        let (id, old) = match inner.records.get_key_value(record.id.as_str()) {
            Some((id, old)) => (id.clone(), Some(old.clone())),
            None => (Id::from(record.id.as_str()), None),
        };
        if old
            .as_deref()
            .is_some_and(|o| o.version == record.version && o == record)
        {
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
        inner.check_reservation(old.as_deref(), record)?;
        inner.check_seat(old.as_deref(), record)?;
        inner.check_rooms(record)?;
        inner.move_reservation(old.as_deref(), record, now);
        inner.reindex(&id, old.as_deref(), Some(record));
        inner.records.insert(id, stored);
        Ok(())
    }
}

impl Inner {
    /// The record's place (1-based) in `queue` and the queue's length,
    /// while it waits there. O(log n): the tree counts what is before it.
    fn place(&self, id: &Id, record: &ServiceRecord, queue: &str) -> Option<(usize, usize)> {
        let q = self.queues.get(queue)?;
        let key = queue_key(id, record);
        q.contains(&key).then(|| (q.rank(&key) + 1, q.len()))
    }

    /// Moves `old`'s entries in every index to `new`'s (`None`: the
    /// record is new, or gone), touching only what changed.
    fn reindex(&mut self, id: &Id, old: Option<&ServiceRecord>, new: Option<&ServiceRecord>) {
        // What the census counts of a record: unchanged by most writes.
        fn counted(r: &ServiceRecord) -> (ServiceState, &str, usize, usize) {
            (r.state, &r.scenario, r.outbox.len(), r.agent_outbox.len())
        }
        if old.map(counted) != new.map(counted) {
            if let Some(old) = old {
                self.census.count(old, -1);
            }
            if let Some(new) = new {
                self.census.count(new, 1);
            }
        }
        fn customer(r: &ServiceRecord) -> &str {
            &r.customer_number
        }
        if old.map(customer) != new.map(customer) {
            if let Some(c) = old.map(customer) {
                list_remove(&mut self.by_customer, c, id);
            }
            if let Some(c) = new.map(customer) {
                list_add(&mut self.by_customer, c, id);
            }
        }
        fn state_scenario(r: &ServiceRecord) -> (ServiceState, &str) {
            (r.state, &r.scenario)
        }
        if old.map(state_scenario) != new.map(state_scenario) {
            // A set left empty stays: there are a few per scenario, and a
            // state that empties and fills again (one connected service)
            // would otherwise make its tables again each time.
            if let Some((state, scenario)) = old.map(state_scenario) {
                if let Some(set) = self
                    .by_state
                    .get_mut(&state)
                    .and_then(|sets| sets.get_mut(scenario))
                {
                    set.remove(id);
                }
            }
            if let Some((state, scenario)) = new.map(state_scenario) {
                let sets = self.by_state.entry(state).or_default();
                if !sets.contains_key(scenario) {
                    sets.insert(scenario.to_owned(), IdSet::default());
                }
                if let Some(set) = sets.get_mut(scenario) {
                    set.insert(id.clone(), ());
                }
            }
        }
        fn queued(r: &ServiceRecord) -> Option<(&str, i32, DateTime<Utc>)> {
            r.is_queued()
                .then_some((r.ticket.queue.as_str(), r.ticket.priority, r.ticket.since))
        }
        if old.and_then(queued) != new.and_then(queued) {
            if let Some(old) = old.filter(|r| r.is_queued()) {
                let queue = old.ticket.queue.as_str();
                if let Some(q) = self.queues.get_mut(queue) {
                    q.remove(&queue_key(id, old));
                    if q.is_empty() {
                        self.queues.remove(queue);
                    }
                }
            }
            if let Some(new) = new.filter(|r| r.is_queued()) {
                self.queues
                    .entry(new.ticket.queue.clone())
                    .or_default()
                    .insert(queue_key(id, new));
            }
        }
        fn waiting_device(r: &ServiceRecord) -> Option<&str> {
            r.device_notification_id
                .as_deref()
                .filter(|_| r.is_queued())
        }
        if old.and_then(waiting_device) != new.and_then(waiting_device) {
            if let Some(d) = old.and_then(waiting_device) {
                list_remove(&mut self.waiting_by_device, d, id);
            }
            if let Some(d) = new.and_then(waiting_device) {
                list_add(&mut self.waiting_by_device, d, id);
            }
        }
        let empty = SmallMap::new();
        self.sync_timers(
            id,
            old.map_or(&empty, |r| &r.timers),
            new.map_or(&empty, |r| &r.timers),
        );
        let deadline = |r: &ServiceRecord| r.storage_deadline();
        if old.map(deadline) != new.map(deadline) {
            if let Some(d) = old.map(deadline) {
                self.deadlines.remove(&(d, id.clone()));
            }
            if let Some(d) = new.map(deadline) {
                self.deadlines.insert((d, id.clone()));
            }
        }
        fn seat(r: &ServiceRecord) -> Option<(&str, DateTime<Utc>)> {
            r.seat().map(|(scenario, slot, _)| (scenario, slot))
        }
        if old.and_then(seat) != new.and_then(seat) {
            if let Some((scenario, slot)) = old.and_then(seat) {
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
            if let Some((scenario, slot)) = new.and_then(seat) {
                *self
                    .seats
                    .entry(scenario.to_owned())
                    .or_default()
                    .entry(slot)
                    .or_default() += 1;
            }
        }
        // Only what this record holds: a code or an agent is never indexed
        // for two services (`check_rooms`), but a guard costs nothing.
        fn code(r: &ServiceRecord) -> Option<&str> {
            r.room_code()
        }
        if old.and_then(code) != new.and_then(code) {
            if let Some(c) = old.and_then(code) {
                if self.rooms.get(c).is_some_and(|holder| **holder == **id) {
                    self.rooms.remove(c);
                }
            }
            if let Some(c) = new.and_then(code) {
                self.rooms.insert(c.to_owned(), id.to_string());
            }
        }
        fn agent(r: &ServiceRecord) -> Option<&str> {
            r.room_agent()
        }
        if old.and_then(agent) != new.and_then(agent) {
            if let Some(a) = old.and_then(agent) {
                if self
                    .room_agents
                    .get(a)
                    .is_some_and(|holder| **holder == **id)
                {
                    self.room_agents.remove(a);
                }
            }
            if let Some(a) = new.and_then(agent) {
                self.room_agents.insert(a.to_owned(), id.to_string());
            }
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
    /// active services. Records past their deadline are purged before.
    fn check_guard(
        &self,
        new: &ServiceRecord,
        guard: &CreateGuard,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(limit) = guard.max_active_for_customer {
            let active = self
                .by_customer
                .get(new.customer_number.as_str())
                .into_iter()
                .flatten()
                .filter_map(|id| self.records.get(id))
                .filter(|r| {
                    r.scenario == new.scenario
                        && r.state != ServiceState::Completed
                        && r.storage_deadline() > now
                })
                .take(limit as usize)
                .count();
            if active >= limit as usize {
                return Err(StoreError::CustomerActive { limit });
            }
        }
        if let Some(limit) = guard.max_active_in_scenario {
            if self.census.active_in(&new.scenario) >= u64::from(limit) {
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
        id: &Id,
        old: &SmallMap<TimerKind, DateTime<Utc>>,
        new: &SmallMap<TimerKind, DateTime<Utc>>,
    ) {
        for (kind, due) in old {
            if new.get(kind) != Some(due) {
                let key = (id.clone(), *kind);
                let wake = self.claimed.remove(&key).map_or(*due, |(wake, _)| wake);
                self.timers.remove(&(wake, key.0, *kind));
            }
        }
        for (kind, due) in new {
            if old.get(kind) != Some(due) {
                self.timers.insert((*due, id.clone(), *kind));
            }
        }
    }

    fn due(&self, now: DateTime<Utc>, limit: usize) -> Vec<DueTimer> {
        self.timers
            .iter()
            .take_while(|(wake, _, _)| *wake <= now)
            .take(limit)
            .map(|(wake, id, kind)| DueTimer {
                id: id.to_string(),
                kind: *kind,
                due: self
                    .claimed
                    .get(&(id.clone(), *kind))
                    .map_or(*wake, |(_, due)| *due),
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

    fn remove_record(&mut self, id: &Id) {
        if let Some(rec) = self.records.remove(id) {
            self.reindex(id, Some(&rec), None);
            if let Some(agent) = rec.agent.as_ref().and_then(|a| self.agents.get_mut(a)) {
                agent.services.remove(&**id);
            }
        }
    }

    fn purge(&mut self, now: DateTime<Utc>) -> usize {
        let expired: Vec<Id> = self
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

/// A service's entry in the queue it waits in: routing order.
fn queue_key(id: &Id, record: &ServiceRecord) -> QueueKey {
    (
        std::cmp::Reverse(record.ticket.priority),
        record.ticket.since,
        id.clone(),
    )
}

/// Adds `id` to the short list under `key` (a customer's services, a
/// device's waiting ones).
fn list_add(lists: &mut Shards<Box<str>, IdList>, key: &str, id: &Id) {
    lists
        .get_or_insert_with(key, || (key.into(), IdList::new()))
        .push(id.clone());
}

/// Takes `id` out of the list under `key`, and the list once empty.
fn list_remove(lists: &mut Shards<Box<str>, IdList>, key: &str, id: &Id) {
    if let Some(ids) = lists.get_mut(key) {
        ids.retain(|i| i != id);
        ids.shrink_to_fit();
        if ids.is_empty() {
            lists.remove(key);
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn census(&self) -> Result<Census, StoreError> {
        Ok(self.lock().census.clone())
    }

    async fn get(&self, id: &str) -> Result<Option<ServiceRecord>, StoreError> {
        let now = self.clock.now();
        let record = self.lock().records.get(id).cloned();
        Ok(record
            .filter(|r| r.storage_deadline() > now)
            .map(Arc::unwrap_or_clone))
    }

    async fn put(
        &self,
        record: &ServiceRecord,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        self.write(record, None, expected_version, None)
    }

    async fn put_new(&self, record: &ServiceRecord, guard: &CreateGuard) -> Result<(), StoreError> {
        self.write(record, None, None, Some(guard))
    }

    async fn put_new_shared(
        &self,
        record: &Arc<ServiceRecord>,
        guard: &CreateGuard,
    ) -> Result<(), StoreError> {
        self.write(record, Some(record), None, Some(guard))
    }

    async fn find(&self, key: &IndexKey) -> Result<Vec<ServiceRecord>, StoreError> {
        let now = self.clock.now();
        // Pointers under the lock; the records are copied after it.
        let found: Vec<Arc<ServiceRecord>> = {
            let inner = self.lock();
            let records = |ids: &mut dyn Iterator<Item = &Id>| -> Vec<Arc<ServiceRecord>> {
                ids.filter_map(|id| inner.records.get(id).cloned())
                    .collect()
            };
            match key {
                IndexKey::Customer(c) => {
                    records(&mut inner.by_customer.get(c.as_str()).into_iter().flatten())
                }
                IndexKey::State(s) => records(
                    &mut inner
                        .by_state
                        .get(s)
                        .into_iter()
                        .flat_map(|sets| sets.values())
                        .flat_map(IdSet::keys),
                ),
                IndexKey::Scenario(n) => records(
                    &mut inner
                        .by_state
                        .values()
                        .filter_map(|sets| sets.get(n.as_str()))
                        .flat_map(IdSet::keys),
                ),
            }
        };
        Ok(found
            .into_iter()
            .filter(|r| r.storage_deadline() > now)
            .map(Arc::unwrap_or_clone)
            .collect())
    }

    async fn queue(&self, queue: &str) -> Result<Vec<QueueEntry>, StoreError> {
        let waiting: Vec<Arc<ServiceRecord>> = {
            let inner = self.lock();
            inner
                .queues
                .get(queue)
                .into_iter()
                .flat_map(|q| q.iter())
                .filter_map(|(_, _, id)| inner.records.get(id).cloned())
                .collect()
        };
        Ok(waiting.iter().map(|r| QueueEntry::of(r)).collect())
    }

    async fn queues(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self.lock().queues.keys().cloned().collect();
        names.sort();
        Ok(names)
    }

    async fn position(&self, queue: &str, id: &str) -> Result<Option<(usize, usize)>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .records
            .get_key_value(id)
            .and_then(|(id, record)| inner.place(id, record, queue)))
    }

    async fn queue_len(&self, queue: &str) -> Result<usize, StoreError> {
        Ok(self.lock().queues.get(queue).map_or(0, |q| q.len()))
    }

    async fn queue_oldest(&self, queue: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let inner = self.lock();
        let Some(set) = inner.queues.get(queue) else {
            return Ok(None);
        };
        // The queue is ordered by priority, then `since`: the oldest is the
        // first of one of its priority levels, found by jumping from level
        // to level instead of walking the queue.
        let mut oldest: Option<DateTime<Utc>> = None;
        let mut next = set.first();
        while let Some((std::cmp::Reverse(priority), since, _)) = next {
            oldest = Some(oldest.map_or(*since, |o| o.min(*since)));
            let Some(lower) = priority.checked_sub(1) else {
                break;
            };
            let from: QueueKey = (
                std::cmp::Reverse(lower),
                DateTime::<Utc>::MIN_UTC,
                Id::from(""),
            );
            next = set.range(from..).next();
        }
        Ok(oldest)
    }

    async fn device_positions(
        &self,
        devices: &[String],
    ) -> Result<Vec<DevicePosition>, StoreError> {
        let inner = self.lock();
        let mut found = Vec::new();
        for device in devices {
            for id in inner
                .waiting_by_device
                .get(device.as_str())
                .into_iter()
                .flatten()
            {
                let Some(record) = inner.records.get(id) else {
                    continue;
                };
                if let Some((position, waiting)) = inner.place(id, record, &record.ticket.queue) {
                    found.push(DevicePosition {
                        device: device.clone(),
                        service: id.to_string(),
                        position,
                        waiting,
                    });
                }
            }
        }
        Ok(found)
    }

    async fn standing(&self, id: &str) -> Result<Option<Standing>, StoreError> {
        let now = self.clock.now();
        let ((state, scenario), record, position, waiting, averages, ready_capacity) = {
            let inner = self.lock();
            let Some((key, record)) = inner.records.get_key_value(id) else {
                return Ok(None);
            };
            let queue = record.ticket.queue.as_str();
            let waiting = inner.queues.get(queue).map_or(0, |q| q.len());
            let position = inner
                .place(key, record, queue)
                .map(|(position, _)| position);
            let (averages, capacity) = match position {
                Some(_) => (
                    inner
                        .stats
                        .get(queue)
                        .map(QueueStats::averages)
                        .unwrap_or_default(),
                    ready_capacity(inner.agents.values(), queue),
                ),
                None => (QueueAverages::default(), 0),
            };
            if record.storage_deadline() <= now {
                return Ok(None);
            }
            let standing = (record.state, record.scenario.clone());
            // Only a service out of its queue needs its record read.
            let record = position.is_none().then(|| record.clone());
            (standing, record, position, waiting, averages, capacity)
        };
        Ok(Some(Standing {
            state,
            scenario,
            record: record.map(Arc::unwrap_or_clone),
            position,
            waiting,
            averages,
            ready_capacity,
        }))
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
            let Some((id, _)) = inner.records.get_key_value(t.id.as_str()) else {
                continue;
            };
            let key = (id.clone(), t.kind);
            let wake = inner.claimed.get(&key).map_or(t.due, |(wake, _)| *wake);
            inner.timers.remove(&(wake, key.0.clone(), t.kind));
            inner.timers.insert((until, key.0.clone(), t.kind));
            inner.claimed.insert(key, (until, t.due));
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
                    .get(id.as_str())
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::Shards;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u32),
        Remove(u16),
        Push(u16, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few keys, so operations meet the same key again.
        let key = 0u16..300;
        prop_oneof![
            (key.clone(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            key.clone().prop_map(Op::Remove),
            (key, any::<u32>()).prop_map(|(k, v)| Op::Push(k, v)),
        ]
    }

    proptest! {
        /// Shards answer as one hash map would, across every shard and
        /// through the growth of each table.
        #[test]
        fn shards_are_one_map(ops in proptest::collection::vec(op(), 1..2_000)) {
            let mut shards: Shards<Box<str>, Vec<u32>> = Shards::default();
            let mut model: HashMap<String, Vec<u32>> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        let key = format!("key-{k}");
                        prop_assert_eq!(
                            shards.insert(key.as_str().into(), vec![v]),
                            model.insert(key, vec![v])
                        );
                    }
                    Op::Remove(k) => {
                        let key = format!("key-{k}");
                        prop_assert_eq!(shards.remove(key.as_str()), model.remove(&key));
                    }
                    Op::Push(k, v) => {
                        let key = format!("key-{k}");
                        shards.get_or_insert_with(key.as_str(), || (key.as_str().into(), Vec::new())).push(v);
                        model.entry(key).or_default().push(v);
                    }
                }
            }
            prop_assert_eq!(shards.is_empty(), model.is_empty());
            let mut keys: Vec<&str> = shards.keys().map(|k| &**k).collect();
            keys.sort();
            let mut expected: Vec<&str> = model.keys().map(String::as_str).collect();
            expected.sort();
            prop_assert_eq!(keys, expected);
            for (k, v) in &model {
                prop_assert_eq!(shards.get(k.as_str()), Some(v));
                prop_assert_eq!(shards.get_key_value(k.as_str()).map(|(k, _)| &**k), Some(k.as_str()));
            }
            if let Some(k) = model.keys().next() {
                shards.get_mut(k.as_str()).unwrap().push(7);
                prop_assert_eq!(shards.get(k.as_str()).unwrap().last(), Some(&7));
            }
        }

        /// The keys spread over the shards.
        #[test]
        fn keys_spread_over_the_shards(n in 2_000usize..3_000) {
            let mut shards: Shards<Box<str>, ()> = Shards::default();
            for i in 0..n {
                shards.insert(format!("+1408{i:07}").into(), ());
            }
            let fullest = shards.tables.iter().map(|t| t.len()).max().unwrap();
            // An even spread puts n / 64 (31 to 47) in each.
            prop_assert!(fullest < n / super::SHARDS * 2, "{fullest} of {n} in one shard");
        }
    }
}

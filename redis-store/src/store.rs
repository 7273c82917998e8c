//! [`RedisStore`]: the `engine::store::Store` on Redis.
//!
//! Every write is one Lua script from `scripts.rs`, so a write and all it
//! derives commit together. (A create tries the create script first: when
//! that answers that the service has an entry already, it wrote nothing,
//! and the put script decides.) Reads are plain commands (pipelined where one
//! call reads many keys), except `position` and `room`, scripts too because
//! they read the index entry and then what it names, in one step. Every
//! call goes through [`RedisStore::call`] and so is bounded by the
//! operation timeout.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use engine::clock::Clock;
use engine::record::{ServiceRecord, ServiceState};
use engine::stats::{QueueAverages, QueueStats, SampleKind, WINDOW};
use engine::store::{
    AgentKey, AgentProfile, AgentRecord, Census, CreateGuard, DevicePosition, DueTimer,
    IdempotencyClaim, IndexKey, QueueEntry, Quota, QuotaVerdict, Standing, Store, StoreError,
};
use redis::AsyncCommands;

use crate::config::{ConfigError, RedisConfig};
use crate::conn::Conn;
use crate::keys::{state_name, Keys};
use crate::scripts::{Invocation, Library, RunAs, Scripts};
use crate::values::{
    decode_value, derived, due_timer, encode_index_entry, encode_value, from_ms, index_entry, ms,
    parse_queue_member, timer_dues,
};

/// How many expired records one purge call forgets at most.
const PURGE_BATCH: usize = 500;

/// Whether FUNCTION LOAD failed because this Redis has no functions (before
/// 7.0, or a proxy that does not pass FUNCTION on) or may not use them (an
/// ACL), rather than for another reason.
fn no_functions(e: &redis::RedisError) -> bool {
    e.code() == Some("NOPERM") || e.detail().is_some_and(|d| d.starts_with("unknown command"))
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

/// The `engine::store::Store` on one Redis server or a Redis Cluster.
pub struct RedisStore {
    conn: Conn,
    // `keys`, `config` and `call` are the crate's, not only this module's,
    // because `pubsub.rs` adds the pub/sub methods to this type.
    pub(crate) keys: Keys,
    scripts: Scripts,
    clock: Arc<dyn Clock>,
    pub(crate) config: RedisConfig,
}

impl RedisStore {
    /// Connects (and checks the connection with a PING). Afterwards a lost
    /// connection is re-established by itself; calls made meanwhile fail
    /// with `Unavailable` within the operation timeout.
    pub async fn connect(
        config: RedisConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<RedisStore, ConfigError> {
        let url = config.nodes.join(",");
        let unreachable = |why: String| ConfigError::Unreachable {
            url: url.clone(),
            why,
        };
        let conn = tokio::time::timeout(config.op_timeout * 3, Conn::open(&config))
            .await
            .map_err(|_| unreachable("no answer".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let library = Arc::new(Library::new());
        let mut loader = conn.clone();
        let loading = library.load(&mut loader);
        let run_as = match tokio::time::timeout(config.op_timeout * 3, loading).await {
            Ok(Ok(())) => RunAs::Functions,
            Ok(Err(e)) if no_functions(&e) => {
                tracing::warn!(error = %e, "Redis has no functions (FUNCTION LOAD): scripts run by EVALSHA, which costs Redis more per call. Redis 7.0 or later runs them as functions.");
                RunAs::Scripts
            }
            Ok(Err(e)) => return Err(unreachable(format!("FUNCTION LOAD: {e}"))),
            Err(_) => return Err(unreachable("no answer to FUNCTION LOAD".into())),
        };
        let store = RedisStore {
            conn,
            keys: Keys::new(&config.namespace),
            scripts: Scripts::new(run_as, library),
            clock,
            config,
        };
        store.ping().await.map_err(|e| unreachable(e.to_string()))?;
        store
            .prepare()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(store)
    }

    /// Loads every script once (as scripts; the library of functions is
    /// loaded already), and makes the capacity hash again from
    /// the agents (a deployment from before it kept none; a rebuild is one
    /// atomic script, so one racing a readiness change on another node
    /// still counts it once).
    async fn prepare(&self) -> Result<(), StoreError> {
        if self.scripts.run_as == RunAs::Scripts {
            self.call(|mut c| async move { self.scripts.load(&mut c).await })
                .await?;
        }
        let mut inv = self.scripts.rebuild_capacity.key(self.keys.capacity());
        inv.arg(self.keys.prefix());
        let _: i64 = self.run(inv).await?;
        let mut inv = self
            .scripts
            .rebuild_waiting_devices
            .key(self.keys.waiting_devices());
        inv.arg(self.keys.prefix());
        let _: i64 = self.run(inv).await?;
        let mut inv = self.scripts.merge_state_sets.key(self.keys.scenarios());
        inv.arg(self.keys.prefix());
        let _: i64 = self.run(inv).await?;
        Ok(())
    }

    pub fn namespace(&self) -> &str {
        &self.config.namespace
    }

    /// Runs one Redis call with the operation timeout.
    pub(crate) async fn call<T, F>(&self, f: impl FnOnce(Conn) -> F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.config.op_timeout, f(self.conn.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable(format!(
                "no answer within {} ms",
                self.config.op_timeout.as_millis()
            ))),
        }
    }

    /// Runs one script (every write is one) with the operation timeout.
    async fn run<T: redis::FromRedisValue>(&self, script: Invocation<'_>) -> Result<T, StoreError> {
        self.call(|mut c| async move { script.invoke(&mut c).await })
            .await
    }

    /// The members of the set `key`, in no order.
    async fn set_members(&self, key: String) -> Result<Vec<String>, StoreError> {
        self.call(|mut c| async move { c.smembers(key).await })
            .await
    }

    /// The members of any of the sets `keys` (none for no keys).
    async fn union(&self, keys: Vec<String>) -> Result<Vec<String>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.call(|mut c| async move { c.sunion(keys).await }).await
    }

    /// The timers due at `now`, claimed until `until`, or only listed
    /// (`None`): one script either way, since a member does not carry its
    /// due time (a whole-number score is it; a lease's is in the entry).
    async fn timers_due(
        &self,
        now: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<DueTimer>, StoreError> {
        let mut inv = self.scripts.claim.key(self.keys.timers());
        inv.arg(self.keys.prefix())
            .arg(ms(now))
            .arg(until.map(|t| ms(t).to_string()).unwrap_or_default())
            .arg(limit);
        let due: Vec<(String, usize, i64)> = self.run(inv).await?;
        Ok(due.into_iter().filter_map(due_timer).collect())
    }

    fn decode(&self, raw: &[u8]) -> Result<ServiceRecord, StoreError> {
        decode_value(raw).map_err(|e| StoreError::Unavailable(format!("stored record: {e}")))
    }

    async fn records(&self, ids: &[String]) -> Result<Vec<ServiceRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.get(self.keys.svc(id));
        }
        let raws: Vec<Option<Vec<u8>>> = self
            .call(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        let now = self.clock.now();
        let mut out = Vec::with_capacity(raws.len());
        for raw in raws.into_iter().flatten() {
            let rec = self.decode(&raw)?;
            if rec.storage_deadline() > now {
                out.push(rec);
            }
        }
        Ok(out)
    }

    async fn agent_records(&self, ids: &[String]) -> Result<Vec<AgentRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hmget(self.keys.agent(id), &["p", "ready", "last"])
                .smembers(self.keys.agent_services(id));
        }
        // The live rooms they are in, in the same round trip.
        pipe.cmd("HMGET").arg(self.keys.room_agents()).arg(ids);
        type Raw = (Option<String>, Option<String>, Option<String>);
        let mut raw: Vec<redis::Value> = self
            .call(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        let rooms: Vec<Option<String>> =
            redis::from_redis_value(raw.pop().unwrap_or(redis::Value::Nil)).map_err(unavailable)?;
        if rooms.len() != ids.len() {
            return Err(unavailable("HMGET roomagents: wrong number of answers"));
        }
        let mut out = Vec::new();
        for (pair, room) in raw.chunks(2).zip(rooms) {
            let (fields, services): (Raw, BTreeSet<String>) = (
                redis::from_redis_value(pair[0].clone()).map_err(unavailable)?,
                redis::from_redis_value(pair[1].clone()).map_err(unavailable)?,
            );
            let (Some(profile), ready, last) = fields else {
                continue;
            };
            let profile: AgentProfile = serde_json::from_str(&profile)
                .map_err(|e| StoreError::Unavailable(format!("stored agent: {e}")))?;
            out.push(AgentRecord {
                profile,
                ready: ready.as_deref() == Some("1"),
                services,
                last_assigned_at: last.and_then(|l| l.parse().ok()).map(from_ms),
                room,
            });
        }
        Ok(out)
    }
}

impl RedisStore {
    /// `put` and `put_new`: writes `record` (a compare-and-set on its version, or a create when
    /// `expected_version` is None) with all it derives. A create by
    /// `put_new` that the create script handles goes through it (about
    /// three fifths of the put script's work in Redis). Otherwise, or when
    /// the service turns out to have an index entry already, the put
    /// script decides.
    async fn write(
        &self,
        record: &ServiceRecord,
        expected_version: Option<u64>,
        guard: &CreateGuard,
        new: bool,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let (hot, cold) = index_entry(record);
        let ix = encode_index_entry(&hot, &cold).map_err(unavailable)?;
        let value = encode_value(record);
        let keep_ms = (record.storage_deadline() - now).num_milliseconds().max(1);
        let key = self.keys.svc(&record.id);
        let derived = new
            .then(|| derived(&record.id, &hot, &cold, ms(now)))
            .flatten();
        if let Some(d) = derived {
            let mut inv = self.scripts.create.key(&key);
            inv.arg(self.keys.prefix())
                .arg(&record.id)
                .arg(&value)
                .arg(&ix)
                .arg(keep_ms)
                .arg(ms(now))
                .arg(limit_arg(guard.max_active_for_customer))
                .arg(limit_arg(guard.max_active_in_scenario))
                .arg(d.customer)
                .arg(d.device)
                .arg(d.scenario)
                .arg(d.state)
                .arg(d.queue)
                .arg(&d.member)
                .arg(d.deadline.map(|d| d.to_string()).unwrap_or_default())
                .arg(&d.wake);
            for (due, member) in &d.timers {
                inv.arg(due).arg(member);
            }
            let answer: String = self.run(inv).await?;
            if answer != "PUT" {
                return self.answered(&answer, record, guard, now);
            }
        }
        let mut inv = self.scripts.put.key(&key);
        inv.arg(self.keys.prefix())
            .arg(&record.id)
            .arg(expected_version.map(|v| v.to_string()).unwrap_or_default())
            .arg(&value)
            .arg(&ix)
            .arg(keep_ms)
            .arg(ms(now))
            .arg(limit_arg(guard.max_active_for_customer))
            .arg(limit_arg(guard.max_active_in_scenario));
        for due in timer_dues(record) {
            inv.arg(due);
        }
        let answer: String = self.run(inv).await?;
        self.answered(&answer, record, guard, now)
    }

    /// A write script's answer as the store's.
    fn answered(
        &self,
        answer: &str,
        record: &ServiceRecord,
        guard: &CreateGuard,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let id = record.id.clone();
        match answer {
            "OK" => Ok(()),
            "EXISTS" => Err(StoreError::Exists(id)),
            "MISSING" => Err(StoreError::Missing(id)),
            "CONFLICT" => Err(StoreError::Conflict(id)),
            "CUSTOMER" => Err(StoreError::CustomerActive {
                limit: guard.max_active_for_customer.unwrap_or_default(),
            }),
            "SCENARIO" => Err(StoreError::ScenarioFull {
                scenario: record.scenario.clone(),
                limit: guard.max_active_in_scenario.unwrap_or_default(),
            }),
            "FULL" => Err(StoreError::SlotFull {
                slot: record.seat().map(|(_, slot, _)| slot).unwrap_or(now),
            }),
            "ROOM" => Err(StoreError::RoomTaken {
                code: record.room_code().unwrap_or_default().to_owned(),
            }),
            other => {
                if let Some(why) = other.strip_prefix("AGENT:") {
                    Err(StoreError::AgentUnavailable {
                        agent: record.agent.clone().unwrap_or_default(),
                        why: why.to_owned(),
                    })
                } else if let Some(service) = other.strip_prefix("INROOM:") {
                    Err(StoreError::AgentInRoom {
                        agent: record.room_agent().unwrap_or_default().to_owned(),
                        service: service.to_owned(),
                    })
                } else {
                    Err(unavailable(format!("unexpected answer `{other}`")))
                }
            }
        }
    }
}

/// A guard's limit as the put script takes it: '' for none.
fn limit_arg(limit: Option<u32>) -> String {
    limit.map(|l| l.to_string()).unwrap_or_default()
}

#[async_trait]
impl Store for RedisStore {
    async fn room(&self, code: &str) -> Result<Option<String>, StoreError> {
        let mut inv = self.scripts.room.key(self.keys.rooms());
        inv.arg(self.keys.prefix())
            .arg(code)
            .arg(ms(self.clock.now()));
        self.run(inv).await
    }

    async fn get(&self, id: &str) -> Result<Option<ServiceRecord>, StoreError> {
        let key = self.keys.svc(id);
        let raw: Option<Vec<u8>> = self.call(|mut c| async move { c.get(key).await }).await?;
        let Some(raw) = raw else { return Ok(None) };
        let rec = self.decode(&raw)?;
        Ok((rec.storage_deadline() > self.clock.now()).then_some(rec))
    }

    async fn get_many(&self, ids: &[String]) -> Result<Vec<ServiceRecord>, StoreError> {
        self.records(ids).await
    }

    async fn put(
        &self,
        record: &ServiceRecord,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        self.write(record, expected_version, &CreateGuard::default(), false)
            .await
    }

    async fn put_new(&self, record: &ServiceRecord, guard: &CreateGuard) -> Result<(), StoreError> {
        self.write(record, None, guard, true).await
    }

    async fn find(&self, key: &IndexKey) -> Result<Vec<ServiceRecord>, StoreError> {
        let ids: Vec<String> = match key {
            IndexKey::Customer(number) => {
                let (hash, field) = (self.keys.customers(), number.clone());
                let ids: Option<String> = self
                    .call(|mut c| async move { c.hget(hash, field).await })
                    .await?;
                match ids.as_deref() {
                    None => Vec::new(),
                    // Many services: they moved to a set of their own.
                    Some("*") => self.set_members(self.keys.customer_set(number)).await?,
                    Some(ids) => ids.split(',').map(str::to_owned).collect(),
                }
            }
            IndexKey::State(state) => {
                let scenarios = self.set_members(self.keys.scenarios()).await?;
                let sets = scenarios
                    .iter()
                    .map(|n| self.keys.services(*state, n))
                    .collect();
                self.union(sets).await?
            }
            IndexKey::Scenario(n) => {
                let sets = ServiceState::ALL
                    .into_iter()
                    .map(|state| self.keys.services(state, n))
                    .collect();
                self.union(sets).await?
            }
        };
        self.records(&ids).await
    }

    async fn census(&self) -> Result<Census, StoreError> {
        let scenarios = self.set_members(self.keys.scenarios()).await?;
        let active: Vec<ServiceState> = ServiceState::ALL
            .into_iter()
            .filter(|s| *s != ServiceState::Completed)
            .collect();
        let mut pipe = redis::pipe();
        for scenario in &scenarios {
            for state in &active {
                pipe.scard(self.keys.services(*state, scenario));
            }
        }
        pipe.hget(self.keys.outboxes(), "od")
            .hget(self.keys.outboxes(), "oa");
        let (counts, outboxes): (Vec<u64>, (Option<u64>, Option<u64>)) = self
            .call(|mut c| async move {
                let mut answers: Vec<redis::Value> = pipe.query_async(&mut c).await?;
                let outboxes = answers.split_off(answers.len() - 2);
                let counts = redis::from_redis_value(redis::Value::Array(answers))?;
                let outboxes = redis::from_redis_value(redis::Value::Array(outboxes))?;
                Ok((counts, outboxes))
            })
            .await?;
        let mut census = Census {
            services: BTreeMap::new(),
            device_outbox: outboxes.0.unwrap_or(0),
            agent_outbox: outboxes.1.unwrap_or(0),
        };
        let keys = scenarios
            .iter()
            .flat_map(|n| active.iter().map(move |s| (n.clone(), *s)));
        for (key, count) in keys.zip(counts) {
            if count > 0 {
                census.services.insert(key, count);
            }
        }
        Ok(census)
    }

    async fn queue(&self, queue: &str) -> Result<Vec<QueueEntry>, StoreError> {
        let key = self.keys.queue(queue);
        let members: Vec<String> = self
            .call(|mut c| async move { c.zrange(key, 0, -1).await })
            .await?;
        Ok(members
            .iter()
            .filter_map(|m| parse_queue_member(m))
            .collect())
    }

    async fn queues(&self) -> Result<Vec<String>, StoreError> {
        let mut names = self.set_members(self.keys.queues()).await?;
        names.sort();
        Ok(names)
    }

    async fn position(&self, queue: &str, id: &str) -> Result<Option<(usize, usize)>, StoreError> {
        let mut inv = self.scripts.position.key(self.keys.idx());
        inv.arg(self.keys.prefix()).arg(queue).arg(id);
        let answer: Option<(usize, usize)> = self.run(inv).await?;
        Ok(answer)
    }

    async fn device_positions(
        &self,
        devices: &[String],
    ) -> Result<Vec<DevicePosition>, StoreError> {
        let mut found = Vec::new();
        // A few hundred devices per script, so no one script holds Redis long.
        for batch in devices.chunks(256) {
            let mut inv = self
                .scripts
                .device_positions
                .key(self.keys.waiting_devices());
            inv.arg(self.keys.prefix());
            for device in batch {
                inv.arg(device);
            }
            let flat: Vec<redis::Value> = self.run(inv).await?;
            for four in flat.chunks_exact(4) {
                let field = |i: usize| four[i].clone();
                found.push(DevicePosition {
                    device: redis::from_redis_value(field(0)).map_err(unavailable)?,
                    service: redis::from_redis_value(field(1)).map_err(unavailable)?,
                    position: redis::from_redis_value(field(2)).map_err(unavailable)?,
                    waiting: redis::from_redis_value(field(3)).map_err(unavailable)?,
                });
            }
        }
        Ok(found)
    }

    async fn queue_oldest(&self, queue: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let inv = self.scripts.queue_oldest.key(self.keys.queue(queue));
        let since: Option<String> = self.run(inv).await?;
        Ok(since.and_then(|ms| ms.parse().ok()).map(from_ms))
    }

    async fn queue_len(&self, queue: &str) -> Result<usize, StoreError> {
        let key = self.keys.queue(queue);
        self.call(|mut c| async move { c.zcard(key).await }).await
    }

    async fn standing(&self, id: &str) -> Result<Option<Standing>, StoreError> {
        let mut inv = self.scripts.standing.key(self.keys.svc(id));
        inv.arg(self.keys.prefix()).arg(id);
        let answer: Option<Vec<redis::Value>> = self.run(inv).await?;
        let Some(parts) = answer else {
            return Ok(None);
        };
        let mut parts = parts.into_iter();
        let missing = |what: &str| unavailable(format!("standing: no {what} in the answer"));
        let first = parts.next().ok_or_else(|| missing("record"))?;
        if parts.len() == 0 {
            // Not waiting: the record, and the queue's length (named in
            // the record: a second, rarer round trip).
            let raw: Vec<u8> = redis::from_redis_value(first).map_err(unavailable)?;
            let record = self.decode(&raw)?;
            if record.storage_deadline() <= self.clock.now() {
                return Ok(None);
            }
            let waiting = self.queue_len(&record.ticket.queue).await?;
            return Ok(Some(Standing {
                state: record.state,
                scenario: record.scenario.clone(),
                record: Some(record),
                position: None,
                waiting,
                averages: QueueAverages::default(),
                ready_capacity: 0,
            }));
        }
        // Waiting: answered from the index entry, without the record.
        let mut next = |what: &str| parts.next().ok_or_else(|| missing(what));
        let value = |v: redis::Value| -> Result<String, StoreError> {
            redis::from_redis_value(v).map_err(unavailable)
        };
        let state = value(first)?;
        let state = ServiceState::ALL
            .into_iter()
            .find(|s| state_name(*s) == state)
            .ok_or_else(|| unavailable(format!("standing: an unknown state {state:?}")))?;
        let position: usize = redis::from_redis_value(next("position")?).map_err(unavailable)?;
        let waiting: usize = redis::from_redis_value(next("queue length")?).map_err(unavailable)?;
        let mut mean = |what: &str| -> Result<Option<f64>, StoreError> {
            let count: usize = redis::from_redis_value(next(what)?).map_err(unavailable)?;
            let sum: f64 = redis::from_redis_value(next(what)?).map_err(unavailable)?;
            Ok(QueueAverages::mean(sum, count))
        };
        let averages = QueueAverages {
            wait: mean("wait samples")?,
            handle: mean("handle samples")?,
        };
        let capacity: i64 = redis::from_redis_value(next("capacity")?).map_err(unavailable)?;
        let scenario = value(next("scenario")?)?;
        let deadline: i64 =
            redis::from_redis_value(next("storage deadline")?).map_err(unavailable)?;
        if from_ms(deadline) <= self.clock.now() {
            return Ok(None);
        }
        Ok(Some(Standing {
            state,
            scenario,
            record: None,
            position: Some(position),
            waiting,
            averages,
            ready_capacity: u32::try_from(capacity.max(0)).unwrap_or(u32::MAX),
        }))
    }

    async fn due_timers(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueTimer>, StoreError> {
        self.timers_due(now, None, limit).await
    }

    async fn claim_due_timers(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: usize,
    ) -> Result<Vec<DueTimer>, StoreError> {
        self.timers_due(now, Some(now + lease), limit).await
    }

    async fn next_timer(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let key = self.keys.timers();
        let first: Vec<(String, f64)> = self
            .call(|mut c| async move { c.zrange_withscores(key, 0, 0).await })
            .await?;
        // A lease is scored half a ms before its end (see the claim script).
        Ok(first.first().map(|(_, score)| from_ms(score.ceil() as i64)))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self
            .call(|mut c| async move { redis::cmd("PING").query_async(&mut c).await })
            .await?;
        Ok(())
    }

    async fn put_agent(&self, profile: AgentProfile) -> Result<AgentRecord, StoreError> {
        let json = serde_json::to_string(&profile).map_err(unavailable)?;
        let mut inv = self.scripts.put_agent.key(self.keys.agent(&profile.id));
        inv.arg(self.keys.prefix())
            .arg(&profile.id)
            .arg(json)
            .arg(profile.max_concurrent);
        let _: String = self.run(inv).await?;
        self.agent(&profile.id)
            .await?
            .ok_or_else(|| StoreError::Unavailable(format!("agent {} vanished", profile.id)))
    }

    async fn set_agent_ready(
        &self,
        id: &str,
        ready: bool,
    ) -> Result<Option<AgentRecord>, StoreError> {
        let mut inv = self.scripts.set_agent_ready.key(self.keys.agent(id));
        inv.arg(self.keys.prefix())
            .arg(if ready { "1" } else { "0" });
        let found: i64 = self.run(inv).await?;
        if found == 0 {
            return Ok(None);
        }
        self.agent(id).await
    }

    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        Ok(self.agent_records(&[id.to_owned()]).await?.pop())
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let mut ids = self.set_members(self.keys.agents()).await?;
        ids.sort();
        self.agent_records(&ids).await
    }

    async fn add_sample(
        &self,
        queue: &str,
        kind: SampleKind,
        seconds: f64,
    ) -> Result<(), StoreError> {
        if !QueueStats::accepts(seconds) {
            return Ok(());
        }
        let mut inv = self
            .scripts
            .add_sample
            .keys(&[self.keys.stats(queue, kind), self.keys.stats_sums(queue)]);
        inv.arg(seconds)
            .arg(WINDOW - 1)
            .arg(crate::keys::sample_kind(kind));
        let _: i64 = self.run(inv).await?;
        Ok(())
    }

    async fn queue_stats(&self, queue: &str) -> Result<QueueStats, StoreError> {
        let (wk, hk) = (
            self.keys.stats(queue, SampleKind::Wait),
            self.keys.stats(queue, SampleKind::Handle),
        );
        let mut pipe = redis::pipe();
        pipe.lrange(wk, 0, -1).lrange(hk, 0, -1);
        let (waits, handles): (Vec<f64>, Vec<f64>) = self
            .call(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        // Newest first in Redis (LPUSH); oldest first in QueueStats.
        let oldest_first = |v: Vec<f64>| v.into_iter().rev().collect::<VecDeque<f64>>();
        Ok(QueueStats {
            waits: oldest_first(waits),
            handles: oldest_first(handles),
        })
    }

    async fn seats_taken(
        &self,
        scenario: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<BTreeMap<DateTime<Utc>, u32>, StoreError> {
        // The hash holds only slots with a live booking (a freed seat's
        // field is deleted at zero), so reading it whole stays small.
        let key = self.keys.seats(scenario);
        let all: HashMap<String, u32> = self
            .call(|mut c| async move { c.hgetall(key).await })
            .await?;
        let (from, to) = (ms(from), ms(to));
        Ok(all
            .into_iter()
            .filter_map(|(slot, n)| {
                let slot: i64 = slot.parse().ok()?;
                (slot >= from && slot < to && n > 0).then(|| (from_ms(slot), n))
            })
            .collect())
    }

    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut total = 0;
        // Overdue timers of live services seen so far: the next page starts
        // after them. Every page forgets or skips what it reads, so this ends.
        let mut skip = 0;
        loop {
            let mut inv = self.scripts.purge.key(self.keys.deadlines());
            inv.arg(self.keys.prefix())
                .arg(ms(now))
                .arg(PURGE_BATCH)
                .arg(skip);
            let (n, more, skipped): (usize, u8, usize) = self.run(inv).await?;
            total += n;
            skip += skipped;
            if more == 0 {
                return Ok(total);
            }
        }
    }

    async fn put_agent_key(&self, key: &AgentKey) -> Result<(), StoreError> {
        let json = serde_json::to_string(key).map_err(unavailable)?;
        let keys = [
            self.keys.agent_keys(&key.agent),
            self.keys.agent_key(&key.id),
        ];
        let mut inv = self.scripts.put_agent_key.keys(&keys);
        inv.arg(&key.name).arg(&key.id).arg(json);
        let stored: i64 = self.run(inv).await?;
        if stored == 0 {
            return Err(StoreError::KeyExists {
                agent: key.agent.clone(),
                name: key.name.clone(),
            });
        }
        Ok(())
    }

    async fn agent_key(&self, id: &str) -> Result<Option<AgentKey>, StoreError> {
        let k = self.keys.agent_key(id);
        let raw: Option<String> = self.call(|mut c| async move { c.get(k).await }).await?;
        raw.map(|r| serde_json::from_str(&r).map_err(unavailable))
            .transpose()
    }

    async fn agent_keys(&self, agent: &str) -> Result<Vec<AgentKey>, StoreError> {
        let k = self.keys.agent_keys(agent);
        let names: BTreeMap<String, String> =
            self.call(|mut c| async move { c.hgetall(k).await }).await?;
        let mut keys = Vec::with_capacity(names.len());
        // By name (the map's order); an entry revoked meanwhile is skipped.
        for id in names.values() {
            if let Some(key) = self.agent_key(id).await? {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    async fn revoke_agent_key(&self, agent: &str, name: &str) -> Result<bool, StoreError> {
        let mut inv = self
            .scripts
            .revoke_agent_key
            .key(self.keys.agent_keys(agent));
        inv.arg(self.keys.prefix()).arg(name);
        let revoked: i64 = self.run(inv).await?;
        Ok(revoked == 1)
    }

    async fn count_quotas(&self, quotas: &[Quota]) -> Result<QuotaVerdict, StoreError> {
        if quotas.is_empty() {
            return Ok(QuotaVerdict::Counted);
        }
        let keys: Vec<String> = quotas.iter().map(|q| self.keys.quota(&q.key)).collect();
        let mut inv = self.scripts.count_quotas.keys(&keys);
        inv.arg(ms(self.clock.now()));
        for q in quotas {
            inv.arg(q.limit).arg(q.window.num_milliseconds().max(1));
        }
        let (index, end): (i64, i64) = self.run(inv).await?;
        if index < 0 {
            return Ok(QuotaVerdict::Counted);
        }
        Ok(QuotaVerdict::Exceeded {
            quota: index as usize,
            retry_at: DateTime::from_timestamp_millis(end).unwrap_or_else(|| self.clock.now()),
        })
    }

    async fn claim_idempotency(
        &self,
        key: &str,
        lease: chrono::Duration,
    ) -> Result<IdempotencyClaim, StoreError> {
        let mut inv = self
            .scripts
            .claim_idempotency
            .key(self.keys.idempotency(key));
        inv.arg(ms(self.clock.now()))
            .arg(lease.num_milliseconds().max(1));
        let answer: Vec<String> = self.run(inv).await?;
        match answer.first().map(String::as_str) {
            Some("claimed") => Ok(IdempotencyClaim::Claimed),
            Some("busy") => Ok(IdempotencyClaim::InProgress),
            Some("answered") => Ok(IdempotencyClaim::Answered(
                answer.get(1).cloned().unwrap_or_default(),
            )),
            other => Err(unavailable(format!("claim_idempotency answered {other:?}"))),
        }
    }

    async fn answer_idempotency(
        &self,
        key: &str,
        answer: &str,
        keep: chrono::Duration,
    ) -> Result<(), StoreError> {
        let k = self.keys.idempotency(key);
        let keep_ms = keep.num_milliseconds().max(1);
        let value = format!("a|{}|{answer}", ms(self.clock.now()) + keep_ms);
        self.call(|mut c| async move {
            redis::cmd("SET")
                .arg(k)
                .arg(value)
                .arg("PX")
                .arg(keep_ms)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    async fn release_idempotency(&self, key: &str) -> Result<(), StoreError> {
        let inv = self
            .scripts
            .release_idempotency
            .key(self.keys.idempotency(key));
        let _: i64 = self.run(inv).await?;
        Ok(())
    }

    async fn log_webhook_attempt(&self, attempt: &str, keep: usize) -> Result<(), StoreError> {
        let key = self.keys.webhook_attempts();
        let attempt = attempt.to_owned();
        if keep == 0 {
            // LTRIM 0 -1 would keep everything: keeping nothing is a DEL.
            return self
                .call(|mut c| async move { redis::cmd("DEL").arg(key).query_async::<()>(&mut c).await })
                .await;
        }
        // One round trip: the push and the trim travel together.
        self.call(|mut c| async move {
            redis::pipe()
                .lpush(&key, attempt)
                .ignore()
                .ltrim(&key, 0, keep.saturating_sub(1) as isize)
                .ignore()
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    async fn webhook_attempts(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.keys.webhook_attempts();
        self.call(|mut c| async move {
            redis::cmd("LRANGE")
                .arg(key)
                .arg(0)
                .arg(limit - 1)
                .query_async::<Vec<String>>(&mut c)
                .await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use engine::clock::{Clock, ManualClock};
    use engine::record::ServiceRecord;
    use engine::store::CreateGuard;

    use super::RedisStore;
    use crate::testing::RedisServer;
    use crate::RedisConfig;

    /// Everything under `store`'s namespace, read back: each key (without
    /// the namespace) with its type, its content in a fixed order, and
    /// whether it expires.
    async fn dump(
        raw: &mut redis::aio::MultiplexedConnection,
        store: &RedisStore,
    ) -> BTreeMap<String, String> {
        let prefix = store.keys.prefix().to_owned();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(raw)
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        for key in keys {
            let kind: String = redis::cmd("TYPE").arg(&key).query_async(raw).await.unwrap();
            let content = match kind.as_str() {
                "string" => {
                    let value: Vec<u8> =
                        redis::cmd("GET").arg(&key).query_async(raw).await.unwrap();
                    format!("{value:?}")
                }
                "hash" => {
                    let fields: BTreeMap<String, Vec<u8>> = redis::cmd("HGETALL")
                        .arg(&key)
                        .query_async(raw)
                        .await
                        .unwrap();
                    format!("{fields:?}")
                }
                "set" => {
                    let mut members: Vec<String> = redis::cmd("SMEMBERS")
                        .arg(&key)
                        .query_async(raw)
                        .await
                        .unwrap();
                    members.sort();
                    format!("{members:?}")
                }
                "zset" => {
                    let members: Vec<(String, String)> = redis::cmd("ZRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES")
                        .query_async(raw)
                        .await
                        .unwrap();
                    format!("{members:?}")
                }
                other => panic!("{key}: a {other}"),
            };
            let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(raw).await.unwrap();
            let name = key.strip_prefix(&prefix).unwrap().to_owned();
            out.insert(name, format!("{kind} {content} expires:{}", ttl >= 0));
        }
        out
    }

    /// The create script writes exactly what the put script would have
    /// written for the same create, and answers as it would: for a record
    /// of every shipped scenario in every state a flow goes through, with
    /// and without a guard, created anew, created again (a retry, or an id
    /// in use, or once the first is past its deadline), customers with one
    /// service and with many, and queue members with each optional field.
    #[tokio::test]
    async fn a_create_writes_what_a_put_writes() {
        let clock = Arc::new(ManualClock::new(
            chrono::TimeZone::timestamp_opt(&chrono::Utc, 1_796_000_000, 0).unwrap(),
        ));
        let (server_a, server_b) = (RedisServer::start(), RedisServer::start());
        let connect = |server: &RedisServer| {
            let config = RedisConfig::parse(&server.url).unwrap();
            RedisStore::connect(config, clock.clone())
        };
        let (by_create, by_put) = (
            connect(&server_a).await.unwrap(),
            connect(&server_b).await.unwrap(),
        );
        let samples = crate::values::tests::sample_records();
        // Each sample as it is (a service's later step has the id of its
        // first: created again), then every sample under an id of its own.
        let renamed = samples.iter().enumerate().map(|(i, rec)| ServiceRecord {
            id: format!("{}-{i}", rec.id),
            ..rec.clone()
        });
        // Waiting services whose queue member has its optional fields: a
        // preferred agent, agents who declined, a URS route (the samples'
        // members have none of them).
        let waiting = samples
            .iter()
            .filter(|rec| rec.is_queued())
            .take(60)
            .enumerate()
            .map(|(i, rec)| {
                let mut rec = ServiceRecord {
                    id: format!("{}-member-{i}", rec.id),
                    ..rec.clone()
                };
                // Without a notice waiting for the device, which only the
                // put script counts: these go through the create script.
                // Of a customer of their own, and written first, so no
                // guard refuses them.
                rec.outbox.clear();
                rec.customer_number = format!("+4930{i:07}");
                match i % 3 {
                    0 => rec.ticket.preferred_agent = Some(format!("agent-{i}")),
                    1 => rec.ticket.declined = vec!["agent-1".into(), "agent-2".into()],
                    _ => {
                        use engine::routing::target::{AgentSet, Route};
                        rec.ticket.route = Some(Box::new(Route {
                            step: 1,
                            since: None,
                            skipped: Vec::new(),
                            any: vec![
                                AgentSet::parse_urs("?:Loans>=2@S.GA").unwrap(),
                                AgentSet::group("Billing"),
                            ],
                            skip_if: None,
                        }));
                    }
                }
                let (hot, cold) = crate::values::index_entry(&rec);
                assert!(crate::values::derived(&rec.id, &hot, &cold, 0).is_some());
                rec
            });
        let waiting: Vec<ServiceRecord> = waiting.collect();
        let records: Vec<ServiceRecord> = waiting
            .iter()
            .cloned()
            .chain(samples.iter().cloned())
            .chain(renamed)
            .collect();
        let guards = [
            CreateGuard::default(),
            CreateGuard {
                max_active_for_customer: Some(1),
                max_active_in_scenario: None,
            },
            CreateGuard {
                max_active_for_customer: Some(3),
                max_active_in_scenario: Some(150),
            },
        ];
        // What the create script answered: written, or refused (by a guard,
        // or for an id in use).
        let (mut written, mut refused) = (0, BTreeMap::new());
        for (i, rec) in records.iter().enumerate() {
            let guard = &guards[i % guards.len()];
            let a = by_create.write(rec, None, guard, true).await;
            let b = by_put.write(rec, None, guard, false).await;
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{}", rec.id);
            if i < waiting.len() {
                assert!(a.is_ok(), "{}: {a:?}", rec.id);
            }
            let (hot, cold) = crate::values::index_entry(rec);
            if crate::values::derived(&rec.id, &hot, &cold, 0).is_some() {
                match a {
                    Ok(()) => written += 1,
                    // The variant's name, as far as it tells them apart.
                    Err(e) => *refused.entry(format!("{e:?}")[..8].to_owned()).or_insert(0) += 1,
                }
            }
        }
        // Most creates went through the create script, and refusals of
        // both guards too (`Customer…`, `Scenario…`), and ids in use
        // (`Exists(…`).
        assert!(written > records.len() / 3, "{written}");
        assert_eq!(
            refused.keys().collect::<Vec<_>>(),
            ["Customer", "Exists(\"", "Scenario"],
            "{refused:?}"
        );
        // Services created again once their records are past their
        // deadline (not yet purged): the create script hands them to put,
        // which forgets the old one first.
        clock.advance(chrono::Duration::days(40));
        let scenario = engine::testing::ScenarioBuilder::chat_delay().build();
        for rec in records
            .iter()
            .skip(waiting.len() + samples.len())
            .step_by(50)
        {
            let new = engine::machine::NewService {
                id: rec.id.clone(),
                customer_number: rec.customer_number.clone(),
                desired_time: None,
                device_notification_id: Some("device-again".into()),
                device_os: Some("comet".into()),
                user_data: Default::default(),
                booking: None,
                preferred_agent: None,
                video: None,
            };
            let again = engine::machine::create(new, &scenario, clock.now()).record;
            let guard = CreateGuard::default();
            by_create.write(&again, None, &guard, true).await.unwrap();
            by_put.write(&again, None, &guard, false).await.unwrap();
        }
        let mut raw_a = redis::Client::open(server_a.plain_url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let mut raw_b = redis::Client::open(server_b.plain_url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let (a, b) = (
            dump(&mut raw_a, &by_create).await,
            dump(&mut raw_b, &by_put).await,
        );
        assert!(a.len() > 100, "{} keys", a.len());
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (key, content) in &a {
            assert_eq!(content, &b[key], "{key}");
        }
    }
}

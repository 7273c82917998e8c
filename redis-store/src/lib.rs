//! The Redis store: service records, queues, agents and timers in Redis, so
//! that they survive a restart and several callbackd nodes can share them.
//!
//! - [`RedisStore`]: the `engine::store::Store` implementation.
//! - `scripts`: the Lua scripts; every write is exactly one of them.
//! - `conn`: one connection type over a single server (a `ConnectionManager`,
//!   which reconnects by itself) or a Redis Cluster.
//! - [`testing`] (feature `testing`): a throw-away `redis-server` for tests.
//!
//! The key layout is in ARCHITECTURE.md ("Redis key layout"). In short,
//! every key starts with `{<namespace>}:`, so one deployment's data shares a
//! hash slot and each script stays in one slot on Redis Cluster.
//!
//! Every call is bounded by a timeout; a Redis that is down or slow gives
//! `StoreError::Unavailable`, which the HTTP front answers with 503.

mod config;
mod conn;
mod keys;
mod scripts;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use engine::clock::Clock;
use engine::record::{ServiceRecord, TimerKind};
use engine::stats::{QueueStats, SampleKind, WINDOW};
use engine::store::{AgentProfile, AgentRecord, DueTimer, IndexKey, QueueEntry, Store, StoreError};
use redis::AsyncCommands;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{info, warn};

use conn::Conn;
use keys::{state_name, Keys};
use scripts::Scripts;

pub use config::{ConfigError, RedisConfig, DEFAULT_OP_TIMEOUT};

/// How many expired records one purge call forgets at most.
const PURGE_BATCH: usize = 500;

/// What a write derives from a record: its index entry (see `scripts`).
/// Kept short: it is stored for every service.
#[derive(Debug, Serialize)]
struct IndexEntry<'a> {
    /// Customer number, state, scenario: the three indexes.
    c: &'a str,
    s: &'static str,
    n: &'a str,
    /// While queued: the queue, the member's order prefix, the skills, the
    /// device, the preferred agent and 1 for a video leg (the member is
    /// `<prefix><id>\x1f<skills>\x1f<device>`, then
    /// `\x1f<preferred agent>\x1f1` or `\x1f<preferred agent>\x1f` when
    /// either of those two is set; see [`queue_member`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    q: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    k: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    v: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pa: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vd: Option<u8>,
    /// Timers: [kind code, due ms]; the member is `<id>|<code>|<due ms>`, so
    /// a claim (which changes the score) never loses the due time.
    t: Vec<(usize, String)>,
    /// The agent whose load this service counts in.
    #[serde(skip_serializing_if = "Option::is_none")]
    a: Option<&'a str>,
    /// Storage deadline, ms.
    d: String,
    /// The seat held in the scenario's slot starting at this ms, and the
    /// slot's seats when booked (the limit the write is checked against).
    #[serde(skip_serializing_if = "Option::is_none")]
    b: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bc: Option<u32>,
    /// The room code held in `rooms` (the latest room's, while stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    r: Option<&'a str>,
    /// The agent held in `roomagents` (the leg's agent while its room is
    /// live and the service not completed).
    #[serde(skip_serializing_if = "Option::is_none")]
    ra: Option<&'a str>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Codes are stored in timer members: append new kinds, never reorder.
/// A kind's code is its index here.
const TIMER_KINDS: [TimerKind; 7] = [
    TimerKind::DesiredTime,
    TimerKind::UserConfirm,
    TimerKind::FindAgent,
    TimerKind::Ttl,
    TimerKind::Reminder,
    TimerKind::RoomTtl,
    TimerKind::PreferredAgent,
];

/// The kind's code: its index in [`TIMER_KINDS`]. An exhaustive match, so a
/// new kind cannot be stored under another's code by mistake.
fn timer_code(kind: TimerKind) -> usize {
    match kind {
        TimerKind::DesiredTime => 0,
        TimerKind::UserConfirm => 1,
        TimerKind::FindAgent => 2,
        TimerKind::Ttl => 3,
        TimerKind::Reminder => 4,
        TimerKind::RoomTtl => 5,
        TimerKind::PreferredAgent => 6,
    }
}

/// `<id>|<kind code>|<due ms>` (built the same way by the scripts).
#[cfg(test)]
fn timer_member(id: &str, kind: TimerKind, due: DateTime<Utc>) -> String {
    format!("{id}|{}|{}", timer_code(kind), ms(due))
}

fn parse_timer_member(member: &str) -> Option<DueTimer> {
    let mut parts = member.rsplitn(3, '|');
    let due: i64 = parts.next()?.parse().ok()?;
    let code: usize = parts.next()?.parse().ok()?;
    let id = parts.next()?;
    Some(DueTimer {
        id: id.to_owned(),
        kind: *TIMER_KINDS.get(code)?,
        due: from_ms(due),
    })
}

/// A queue member sorts as the queue must be served: priority (highest
/// first), then the place in the queue (`since`), then the id. All members
/// have score 0, so ZRANGE gives this lexicographic order. (The scripts
/// build it from the index entry's prefix, id, skills, device, preferred
/// agent and video flag.)
///
/// `<prefix><id>\x1f<skills>\x1f<device>`, and only when the entry has a
/// preferred agent or a video leg, `\x1f<preferred agent>\x1f<1 or empty>`:
/// members without either are exactly what was written before these
/// existed, so an old member is found and removed by the same recipe.
#[cfg(test)]
fn queue_member(entry: &QueueEntry) -> String {
    let mut member = format!(
        "{}{}\u{1f}{}\u{1f}{}",
        queue_prefix(entry),
        entry.id,
        entry.skills.as_deref().unwrap_or(""),
        entry.device.as_deref().unwrap_or("")
    );
    if entry.preferred_agent.is_some() || entry.video {
        member.push('\u{1f}');
        member.push_str(entry.preferred_agent.as_deref().unwrap_or(""));
        member.push('\u{1f}');
        if entry.video {
            member.push('1');
        }
    }
    member
}

/// The fixed-width order part of a queue member: 10 + 15 digits.
fn queue_prefix(entry: &QueueEntry) -> String {
    let priority = (i32::MAX as i64 - entry.priority as i64) as u64; // 0 ..= 2^32-1
    let since = ms(entry.since).max(0) as u64;
    format!("{priority:010}{since:015}")
}

fn parse_queue_member(member: &str) -> Option<QueueEntry> {
    let priority: i64 = member.get(0..10)?.parse().ok()?;
    let since: i64 = member.get(10..25)?.parse().ok()?;
    let (id, rest) = member.get(25..)?.split_once('\u{1f}')?;
    // Fields a member written before they existed does not have are empty:
    // no device, no preferred agent, no video.
    let mut fields = rest.split('\u{1f}');
    let mut field = || fields.next().filter(|f| !f.is_empty()).map(str::to_owned);
    let (skills, device, preferred_agent) = (field(), field(), field());
    let video = field().as_deref() == Some("1");
    Some(QueueEntry {
        id: id.to_owned(),
        priority: (i32::MAX as i64 - priority) as i32,
        since: from_ms(since),
        skills,
        device,
        preferred_agent,
        video,
    })
}

fn index_entry(rec: &ServiceRecord) -> IndexEntry<'_> {
    let queued = rec.is_queued();
    IndexEntry {
        c: &rec.customer_number,
        s: state_name(rec.state),
        n: &rec.scenario,
        q: queued.then_some(rec.ticket.queue.as_str()),
        p: queued.then(|| queue_prefix(&QueueEntry::of(rec))),
        k: rec
            .ticket
            .skills
            .as_deref()
            .filter(|s| queued && !s.is_empty()),
        v: rec
            .device_notification_id
            .as_deref()
            .filter(|d| queued && !d.is_empty()),
        pa: rec
            .ticket
            .preferred_agent
            .as_deref()
            .filter(|a| queued && !a.is_empty()),
        vd: (queued && rec.video.is_some()).then_some(1),
        t: rec
            .timers
            .iter()
            .map(|(kind, due)| (timer_code(*kind), ms(*due).to_string()))
            .collect(),
        a: rec.agent.as_deref(),
        d: ms(rec.storage_deadline()).to_string(),
        b: rec.seat().map(|(_, slot, _)| ms(slot).to_string()),
        bc: rec.seat().map(|(_, _, seats)| seats),
        r: rec.room_code(),
        ra: rec.room_agent(),
    }
}

/// The stored value: `<version>:` then `z` and the record's JSON, deflated
/// (about half the size: a waiting service must stay under 2 KB in Redis).
fn encode_value(record: &ServiceRecord) -> Vec<u8> {
    use std::io::Write;
    let mut out = format!("{}:z", record.version).into_bytes();
    let mut z = flate2::write::DeflateEncoder::new(out, flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = z.write_all(&record.encode());
    out = z.finish().unwrap_or_default();
    out
}

fn decode_value(raw: &[u8]) -> Result<ServiceRecord, String> {
    use std::io::Read;
    let colon = raw
        .iter()
        .position(|b| *b == b':')
        .ok_or("no version prefix")?;
    match &raw[colon + 1..] {
        [b'z', deflated @ ..] => {
            let mut json = Vec::with_capacity(deflated.len() * 3);
            flate2::read::DeflateDecoder::new(deflated)
                .read_to_end(&mut json)
                .map_err(|e| format!("inflate: {e}"))?;
            ServiceRecord::decode(&json)
        }
        json => ServiceRecord::decode(json),
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

pub struct RedisStore {
    conn: Conn,
    keys: Keys,
    scripts: Scripts,
    clock: Arc<dyn Clock>,
    config: RedisConfig,
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
        let store = RedisStore {
            conn,
            keys: Keys::new(&config.namespace),
            scripts: Scripts::new(),
            clock,
            config,
        };
        store.ping().await.map_err(|e| unreachable(e.to_string()))?;
        Ok(store)
    }

    pub fn namespace(&self) -> &str {
        &self.config.namespace
    }

    /// Runs one Redis call with the operation timeout.
    async fn call<T, F>(&self, f: impl FnOnce(Conn) -> F) -> Result<T, StoreError>
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

    /// Listens on the namespace's wake channel (a write armed a timer, on any
    /// node) and pings the returned receiver, so every node's timer loop
    /// looks again. Reconnects by itself; ends when the sender side is gone.
    pub fn timer_wakeups(&self) -> watch::Receiver<()> {
        let (tx, rx) = watch::channel(());
        let on_lost = tx.clone();
        self.listen(
            self.keys.wake(),
            move |_| tx.send(()).is_ok(),
            move || {
                // Timers armed while we were away must be looked at.
                on_lost.send(()).is_ok()
            },
        );
        rx
    }

    /// Publishes `message` on the namespace's channel `name`, to every node
    /// that listens with [`RedisStore::messages`].
    pub async fn publish(&self, name: &str, message: Vec<u8>) -> Result<(), StoreError> {
        let channel = self.keys.channel(name);
        self.call(|mut c| async move { c.publish::<_, _, ()>(channel, message).await })
            .await
    }

    /// What is published on the namespace's channel `name`, as it comes.
    /// At most `buffer` messages wait; past that, newer ones are dropped
    /// (pub/sub is at most once anyway). Reconnects by itself.
    pub fn messages(&self, name: &str, buffer: usize) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = tokio::sync::mpsc::channel(buffer.max(1));
        let closed = tx.clone();
        self.listen(
            self.keys.channel(name),
            move |payload| match tx.try_send(payload) {
                Ok(()) => true,
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    warn!("Pub/sub backlog full; a message was dropped.");
                    true
                }
                Err(_) => false,
            },
            move || !closed.is_closed(),
        );
        rx
    }

    /// Subscribes to `channel` and calls `on_message` with each payload
    /// until it answers false; after a lost connection calls `on_lost` (false
    /// ends it too) and subscribes again.
    fn listen(
        &self,
        channel: String,
        mut on_message: impl FnMut(Vec<u8>) -> bool + Send + 'static,
        mut on_lost: impl FnMut() -> bool + Send + 'static,
    ) {
        let nodes = self.config.nodes.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            // On a cluster any node will do (a PUBLISH reaches every node), so
            // each reconnect tries the next one in case this one is down.
            for node in nodes.iter().cycle() {
                match subscribe(node, &channel, &mut on_message).await {
                    Ok(()) => return,
                    Err(e) => {
                        warn!(channel, error = %e, "Pub/sub channel lost; reconnecting.");
                        if !on_lost() {
                            return;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        });
    }
}

async fn subscribe(
    node: &str,
    channel: &str,
    on_message: &mut (impl FnMut(Vec<u8>) -> bool + Send),
) -> redis::RedisResult<()> {
    use futures_util::StreamExt;
    let client = redis::Client::open(node)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    info!(channel, "Listening on pub/sub.");
    let mut messages = pubsub.on_message();
    while let Some(m) = messages.next().await {
        if !on_message(m.get_payload_bytes().to_vec()) {
            return Ok(());
        }
    }
    Err(redis::RedisError::from((
        redis::ErrorKind::Io,
        "subscription closed",
    )))
}

#[async_trait]
impl Store for RedisStore {
    async fn room(&self, code: &str) -> Result<Option<String>, StoreError> {
        let mut inv = self.scripts.room.key(self.keys.rooms());
        inv.arg(self.keys.prefix())
            .arg(code)
            .arg(ms(self.clock.now()));
        self.call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<ServiceRecord>, StoreError> {
        let key = self.keys.svc(id);
        let raw: Option<Vec<u8>> = self.call(|mut c| async move { c.get(key).await }).await?;
        let Some(raw) = raw else { return Ok(None) };
        let rec = self.decode(&raw)?;
        Ok((rec.storage_deadline() > self.clock.now()).then_some(rec))
    }

    async fn put(
        &self,
        record: &ServiceRecord,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let ix = serde_json::to_string(&index_entry(record)).map_err(unavailable)?;
        let keep_ms = (record.storage_deadline() - now).num_milliseconds().max(1);
        let mut inv = self.scripts.put.key(self.keys.svc(&record.id));
        inv.arg(self.keys.prefix())
            .arg(&record.id)
            .arg(expected_version.map(|v| v.to_string()).unwrap_or_default())
            .arg(encode_value(record))
            .arg(ix)
            .arg(keep_ms)
            .arg(ms(now));
        let answer: String = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let id = record.id.clone();
        match answer.as_str() {
            "OK" => Ok(()),
            "EXISTS" => Err(StoreError::Exists(id)),
            "MISSING" => Err(StoreError::Missing(id)),
            "CONFLICT" => Err(StoreError::Conflict(id)),
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
                    Some("*") => {
                        let set = self.keys.customer_set(number);
                        self.call(|mut c| async move { c.smembers(set).await })
                            .await?
                    }
                    Some(ids) => ids.split(',').map(str::to_owned).collect(),
                }
            }
            IndexKey::State(s) => {
                let set = self.keys.state(*s);
                self.call(|mut c| async move { c.smembers(set).await })
                    .await?
            }
            IndexKey::Scenario(s) => {
                let set = self.keys.scenario(s);
                self.call(|mut c| async move { c.smembers(set).await })
                    .await?
            }
        };
        self.records(&ids).await
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
        let key = self.keys.queues();
        let mut names: Vec<String> = self
            .call(|mut c| async move { c.smembers(key).await })
            .await?;
        names.sort();
        Ok(names)
    }

    async fn position(&self, queue: &str, id: &str) -> Result<Option<(usize, usize)>, StoreError> {
        let mut inv = self.scripts.position.key(self.keys.idx());
        inv.arg(self.keys.prefix()).arg(queue).arg(id);
        let answer: Option<(usize, usize)> = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        Ok(answer)
    }

    async fn due_timers(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueTimer>, StoreError> {
        let key = self.keys.timers();
        let members: Vec<String> = self
            .call(|mut c| async move {
                c.zrangebyscore_limit(key, "-inf", ms(now), 0, limit as isize)
                    .await
            })
            .await?;
        Ok(members
            .iter()
            .filter_map(|m| parse_timer_member(m))
            .collect())
    }

    async fn claim_due_timers(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: usize,
    ) -> Result<Vec<DueTimer>, StoreError> {
        let mut inv = self.scripts.claim.key(self.keys.timers());
        inv.arg(ms(now)).arg(ms(now + lease)).arg(limit);
        let members: Vec<String> = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        Ok(members
            .iter()
            .filter_map(|m| parse_timer_member(m))
            .collect())
    }

    async fn next_timer(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let key = self.keys.timers();
        let first: Vec<(String, f64)> = self
            .call(|mut c| async move { c.zrange_withscores(key, 0, 0).await })
            .await?;
        Ok(first.first().map(|(_, score)| from_ms(*score as i64)))
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
        let _: String = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
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
        let found: i64 = self
            .call(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        if found == 0 {
            return Ok(None);
        }
        self.agent(id).await
    }

    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        Ok(self.agent_records(&[id.to_owned()]).await?.pop())
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let key = self.keys.agents();
        let mut ids: Vec<String> = self
            .call(|mut c| async move { c.smembers(key).await })
            .await?;
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
        let key = self.keys.stats(queue, kind);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .lpush(&key, seconds)
            .ignore()
            .ltrim(&key, 0, WINDOW as isize - 1)
            .ignore();
        self.call(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
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
        loop {
            let mut inv = self.scripts.purge.key(self.keys.deadlines());
            inv.arg(self.keys.prefix()).arg(ms(now)).arg(PURGE_BATCH);
            let n: usize = self
                .call(|mut c| async move { inv.invoke_async(&mut c).await })
                .await?;
            total += n;
            if n < PURGE_BATCH {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_members_sort_like_the_queue() {
        let at = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap();
        let entry = |id: &str, priority, since, skills: Option<&str>| QueueEntry {
            id: id.into(),
            priority,
            since: at(since),
            skills: skills.map(Into::into),
            device: (priority > 0).then(|| "dev-1".into()),
            preferred_agent: None,
            video: false,
        };
        let preferring = |e: QueueEntry, agent: &str| QueueEntry {
            preferred_agent: Some(agent.into()),
            ..e
        };
        let video = |e: QueueEntry| QueueEntry { video: true, ..e };
        let entries = [
            video(preferring(entry("vip", 5, 30, None), "ag-1")),
            entry("old", 0, 0, Some("lang:en >= 3")),
            video(entry("a", 0, 10, None)),
            preferring(entry("ab", 0, 10, Some("x")), "ag-2"),
            entry("new", 0, 10, None),
            entry("low", -3, 0, None),
            video(entry("min", i32::MIN, 0, None)),
        ];
        let mut members: Vec<String> = entries.iter().map(queue_member).collect();
        members.reverse();
        members.sort();
        let back: Vec<QueueEntry> = members
            .iter()
            .map(|m| parse_queue_member(m).unwrap())
            .collect();
        assert_eq!(back, entries);
        let max = entry("max", i32::MAX, 0, None);
        assert_eq!(parse_queue_member(&queue_member(&max)), Some(max));
    }

    #[test]
    fn queue_members_stay_compatible() {
        let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let plain = QueueEntry {
            id: "a".into(),
            priority: 2,
            since: at,
            skills: Some("English".into()),
            device: Some("dev".into()),
            preferred_agent: None,
            video: false,
        };
        let prefix = queue_prefix(&plain);
        // Without a preference or video, a member is what it always was.
        assert_eq!(
            queue_member(&plain),
            format!("{prefix}a\u{1f}English\u{1f}dev")
        );
        // Members written before devices, and before preferences and video.
        let no_device = QueueEntry {
            device: None,
            ..plain.clone()
        };
        assert_eq!(
            parse_queue_member(&format!("{prefix}a\u{1f}English")),
            Some(no_device)
        );
        assert_eq!(
            parse_queue_member(&format!("{prefix}a\u{1f}English\u{1f}dev")),
            Some(plain.clone())
        );
        // Preference and video: two more fields.
        let both = QueueEntry {
            preferred_agent: Some("ag".into()),
            video: true,
            ..plain.clone()
        };
        assert_eq!(
            queue_member(&both),
            format!("{prefix}a\u{1f}English\u{1f}dev\u{1f}ag\u{1f}1")
        );
        let video_only = QueueEntry {
            video: true,
            ..plain.clone()
        };
        assert_eq!(
            queue_member(&video_only),
            format!("{prefix}a\u{1f}English\u{1f}dev\u{1f}\u{1f}1")
        );
        for e in [both, video_only] {
            assert_eq!(parse_queue_member(&queue_member(&e)), Some(e));
        }
        assert_eq!(parse_queue_member(&format!("{prefix}a")), None);
        assert_eq!(parse_queue_member("garbage"), None);
    }

    #[test]
    fn every_timer_kind_has_its_own_code() {
        for (code, kind) in TIMER_KINDS.iter().enumerate() {
            assert_eq!(timer_code(*kind), code, "{kind:?}");
        }
    }

    #[test]
    fn stored_values_round_trip() {
        let scenario = engine::scenario::Scenario::from_toml(
            std::path::Path::new("t.toml"),
            "name = \"t\"\n_media_type = \"chat\"\n_wait_for_agent = true\n_wait_for_user_confirm = false\n_ttl = 60\n_target = { queue = \"q\" }\n",
        )
        .unwrap();
        let new = engine::machine::NewService {
            id: "a".into(),
            customer_number: "1".into(),
            desired_time: None,
            device_notification_id: None,
            device_os: None,
            user_data: Default::default(),
            booking: None,
            preferred_agent: None,
            video: None,
        };
        let rec = engine::machine::create(new, &Arc::new(scenario), Utc::now()).record;
        let value = encode_value(&rec);
        assert!(value.starts_with(b"1:z"));
        assert_eq!(decode_value(&value), Ok(rec.clone()));
        // A plain-JSON value (written by hand, say) reads too.
        let mut plain = b"1:".to_vec();
        plain.extend(rec.encode());
        assert_eq!(decode_value(&plain), Ok(rec));
        assert!(decode_value(b"garbage").is_err());
    }

    #[test]
    fn timer_members_round_trip() {
        let due = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
        for kind in TIMER_KINDS {
            let m = timer_member("a|b", kind, due);
            assert_eq!(
                parse_timer_member(&m),
                Some(DueTimer {
                    id: "a|b".into(),
                    kind,
                    due
                })
            );
        }
        assert_eq!(parse_timer_member("garbage"), None);
    }
}

//! The store conformance suite: one set of checks every [`Store`] must pass.
//!
//! Each check is an `async fn(&dyn Store, &ManualClock)`; the clock is the one
//! the store reads "now" from. [`crate::store_conformance_tests!`] expands to
//! one `#[tokio::test]` per check, so `engine/tests/memory_store.rs` and the
//! Redis store's tests run exactly the same suite. Records are built with
//! `machine::create`/`apply`, so they are what the shell would write.
//!
//! Compiled only with the `conformance` feature: it is test code, shipped so
//! that other crates can run it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::clock::{Clock, ManualClock};
use crate::machine::{self, Effect, Event, NewService};
use crate::record::{
    Booking, CallbackReason, Party, ServiceRecord, ServiceState, TimerKind, COMPLETED_GRACE,
};
use crate::scenario::Scenario;
use crate::stats::{SampleKind, WINDOW};
use crate::store::{
    AgentKey, AgentProfile, AgentRecord, Census, CreateGuard, DueTimer, IdempotencyClaim, IndexKey,
    QueueEntry, Quota, QuotaVerdict, Store, StoreError,
};
use crate::testing::ScenarioBuilder;
use crate::video::{Room, RoomLink, RoutingData, VideoConfig, VideoLeg};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap()
}

fn secs(s: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(s)
}

const DAY: i64 = 86400;

// ---------------------------------------------------------------------------
// Scenarios and records
// ---------------------------------------------------------------------------

/// chat-delay (which the stores never read past its timers and target)
/// renamed, in `queue` at `priority`, doing `on_timeout` on a missed
/// confirmation.
fn scenario(name: &str, queue: &str, priority: i32, on_timeout: &str) -> Arc<Scenario> {
    ScenarioBuilder::chat_delay()
        .name(name)
        .key("_on_user_confirm_timeout", &format!("{on_timeout:?}"))
        .key(
            "_target",
            &format!("{{ queue = {queue:?}, priority = {priority} }}"),
        )
        .build()
}

/// chat-delay in queue "support", priority 0, requeue on a missed confirmation.
fn standard() -> Arc<Scenario> {
    scenario("chat-delay", "support", 0, "requeue")
}

fn vip() -> Arc<Scenario> {
    scenario("chat-vip", "support", 5, "requeue")
}

fn sales() -> Arc<Scenario> {
    scenario("chat-sales", "sales", 0, "fail")
}

fn new_service(id: &str, customer: &str, desired: Option<DateTime<Utc>>) -> NewService {
    NewService {
        id: id.to_owned(),
        customer_number: customer.to_owned(),
        desired_time: desired,
        // Customer "c2" has no device: device_positions never names it.
        device_notification_id: (customer != "c2").then(|| format!("device-of-{customer}")),
        device_os: Some("comet".to_owned()),
        user_data: BTreeMap::new(),
        booking: None,
        preferred_agent: None,
        video: None,
    }
}

/// A service created at `at`, waiting in its queue.
fn created(scn: &Arc<Scenario>, id: &str, customer: &str, at: DateTime<Utc>) -> ServiceRecord {
    machine::create(new_service(id, customer, None), scn, at).record
}

fn apply(
    rec: &ServiceRecord,
    scn: &Arc<Scenario>,
    event: Event,
    at: DateTime<Utc>,
) -> ServiceRecord {
    machine::apply(rec, scn, &event, at)
        .unwrap_or_else(|e| panic!("{} refused in {:?}: {e}", event.name(), rec.state))
        .record
}

fn reserved(agent: &str) -> Event {
    Event::AgentReserved {
        agent: agent.to_owned(),
    }
}

fn fired(rec: &ServiceRecord, kind: TimerKind) -> (Event, DateTime<Utc>) {
    let due = rec.timers[&kind];
    (Event::TimerFired { kind, due }, due)
}

async fn insert(store: &dyn Store, rec: &ServiceRecord) {
    store
        .put(rec, None)
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", rec.id));
}

/// What the shell does: read, apply, compare-and-set.
async fn transition(
    store: &dyn Store,
    scn: &Arc<Scenario>,
    id: &str,
    event: Event,
    at: DateTime<Utc>,
) -> Result<ServiceRecord, StoreError> {
    let rec = store
        .get(id)
        .await?
        .ok_or_else(|| StoreError::Missing(id.to_owned()))?;
    let next = apply(&rec, scn, event, at);
    store.put(&next, Some(rec.version)).await?;
    Ok(next)
}

async fn must(
    store: &dyn Store,
    scn: &Arc<Scenario>,
    id: &str,
    event: Event,
    at: DateTime<Utc>,
) -> ServiceRecord {
    let name = event.name();
    transition(store, scn, id, event, at)
        .await
        .unwrap_or_else(|e| panic!("{name} on {id}: {e}"))
}

async fn add_agent(store: &dyn Store, id: &str, queues: &[&str], max: u32, ready: bool) {
    store
        .put_agent(AgentProfile {
            id: id.to_owned(),
            name: format!("Agent {id}"),
            queues: queues.iter().map(|q| q.to_string()).collect(),
            skills: BTreeMap::new(),
            max_concurrent: max,
            email: None,
        })
        .await
        .unwrap();
    store.set_agent_ready(id, ready).await.unwrap();
}

async fn services_of(store: &dyn Store, agent: &str) -> Vec<String> {
    store
        .agent(agent)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("agent {agent}"))
        .services
        .into_iter()
        .collect()
}

async fn ids(store: &dyn Store, key: IndexKey) -> Vec<String> {
    sorted_ids(store.find(&key).await.unwrap())
}

/// The ids of `records`, sorted.
fn sorted_ids(records: Vec<ServiceRecord>) -> Vec<String> {
    let mut ids: Vec<String> = records.into_iter().map(|r| r.id).collect();
    ids.sort();
    ids
}

async fn queue_ids(store: &dyn Store, queue: &str) -> Vec<String> {
    store
        .queue(queue)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

fn set_clock(clock: &ManualClock, at: DateTime<Utc>) {
    clock.advance(at - clock.now());
}

fn v(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------

/// put is a compare-and-set on the version, and writes nothing when it fails.
pub async fn put_compare_and_set(store: &dyn Store, _clock: &ManualClock) {
    let scn = standard();
    let a = created(&scn, "a", "c1", t0());
    assert_eq!(store.get("a").await.unwrap(), None);
    insert(store, &a).await;
    assert_eq!(store.get("a").await.unwrap(), Some(a.clone()));

    // Creating another service under the same id.
    let other = created(&scn, "a", "c2", t0());
    assert_eq!(
        store.put(&other, None).await,
        Err(StoreError::Exists("a".into()))
    );
    // The very same write again (a retry after a lost answer) is a no-op success.
    store.put(&a, None).await.unwrap();

    // A write based on version 1 succeeds once.
    let v2 = apply(&a, &scn, Event::Cancel, secs(10));
    store.put(&v2, Some(1)).await.unwrap();
    store.put(&v2, Some(1)).await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), Some(v2.clone()));

    // A second write based on version 1 is stale.
    let stale = apply(
        &a,
        &scn,
        Event::InternalNotification {
            display: "d".into(),
            application: "x".into(),
        },
        secs(11),
    );
    assert_eq!(
        store.put(&stale, Some(1)).await,
        Err(StoreError::Conflict("a".into()))
    );
    // ... and wrote nothing: record, indexes and queue are v2's.
    assert_eq!(store.get("a").await.unwrap(), Some(v2.clone()));
    assert_eq!(
        ids(store, IndexKey::State(ServiceState::Completed)).await,
        v(&["a"])
    );
    assert!(ids(store, IndexKey::State(ServiceState::WaitForAgent))
        .await
        .is_empty());
    assert!(queue_ids(store, "support").await.is_empty());

    // A version from the future is a conflict too.
    let ahead = apply(&v2, &scn, Event::NotificationsRetrieved, secs(12));
    assert_eq!(
        store.put(&ahead, Some(7)).await,
        Err(StoreError::Conflict("a".into()))
    );
    assert_eq!(store.get("a").await.unwrap(), Some(v2.clone()));

    // Updating a record that does not exist.
    let b = created(&scn, "b", "c1", t0());
    assert_eq!(
        store.put(&b, Some(1)).await,
        Err(StoreError::Missing("b".into()))
    );
    assert_eq!(store.get("b").await.unwrap(), None);
    assert!(queue_ids(store, "support").await.is_empty());
    assert_eq!(ids(store, IndexKey::Customer("c1".into())).await, v(&["a"]));
}

/// The customer, state and scenario indexes follow every write.
pub async fn indexes_follow_state(store: &dyn Store, _clock: &ManualClock) {
    let (std_, vip_) = (standard(), vip());
    add_agent(store, "ag", &["support"], 5, true).await;
    insert(store, &created(&std_, "a", "c1", t0())).await;
    insert(store, &created(&vip_, "b", "c1", secs(1))).await;
    insert(store, &created(&std_, "c", "c2", secs(2))).await;

    assert_eq!(
        ids(store, IndexKey::Customer("c1".into())).await,
        v(&["a", "b"])
    );
    assert_eq!(ids(store, IndexKey::Customer("c2".into())).await, v(&["c"]));
    assert!(ids(store, IndexKey::Customer("nobody".into()))
        .await
        .is_empty());
    assert_eq!(
        ids(store, IndexKey::Scenario("chat-delay".into())).await,
        v(&["a", "c"])
    );
    assert_eq!(
        ids(store, IndexKey::Scenario("chat-vip".into())).await,
        v(&["b"])
    );
    assert_eq!(
        ids(store, IndexKey::State(ServiceState::WaitForAgent)).await,
        v(&["a", "b", "c"])
    );

    must(store, &std_, "c", reserved("ag"), secs(10)).await;
    must(store, &std_, "a", Event::Cancel, secs(11)).await;
    assert_eq!(
        ids(store, IndexKey::State(ServiceState::WaitForAgent)).await,
        v(&["b"])
    );
    assert_eq!(
        ids(store, IndexKey::State(ServiceState::WaitForUserConfirm)).await,
        v(&["c"])
    );
    assert_eq!(
        ids(store, IndexKey::State(ServiceState::Completed)).await,
        v(&["a"])
    );
    must(store, &std_, "c", Event::UserConfirmed, secs(12)).await;
    assert!(
        ids(store, IndexKey::State(ServiceState::WaitForUserConfirm))
            .await
            .is_empty()
    );
    assert_eq!(
        ids(store, IndexKey::State(ServiceState::Connected)).await,
        v(&["c"])
    );
    // find returns the current records.
    let found = store.find(&IndexKey::Customer("c1".into())).await.unwrap();
    let a = found.iter().find(|r| r.id == "a").unwrap();
    assert_eq!(a.state, ServiceState::Completed);
    assert_eq!(Some(a.clone()), store.get("a").await.unwrap());
    // Customer and scenario do not change with the state.
    assert_eq!(
        ids(store, IndexKey::Customer("c1".into())).await,
        v(&["a", "b"])
    );
    assert_eq!(
        ids(store, IndexKey::Scenario("chat-delay".into())).await,
        v(&["a", "c"])
    );
}

/// Queues are ordered by priority (highest first), then by `since`; position
/// is 1-based with the queue's length, and follows services leaving.
pub async fn queue_order_and_positions(store: &dyn Store, _clock: &ManualClock) {
    let (std_, vip_, sales_) = (standard(), vip(), sales());
    add_agent(store, "ag", &["support", "sales"], 5, true).await;
    insert(store, &created(&std_, "a", "c1", t0())).await;
    insert(store, &created(&std_, "b", "c2", secs(10))).await;
    insert(store, &created(&vip_, "c", "c3", secs(20))).await;
    insert(store, &created(&std_, "d", "c4", secs(5))).await;
    insert(store, &created(&sales_, "e", "c5", secs(1))).await;

    assert_eq!(queue_ids(store, "support").await, v(&["c", "a", "d", "b"]));
    assert_eq!(queue_ids(store, "sales").await, v(&["e"]));
    assert!(queue_ids(store, "nope").await.is_empty());
    assert_eq!(store.queues().await.unwrap(), v(&["sales", "support"]));

    let entries = store.queue("support").await.unwrap();
    let shape: Vec<_> = entries
        .iter()
        .map(|e| (e.id.as_str(), e.priority, e.since))
        .collect();
    assert_eq!(
        shape,
        [
            ("c", 5, secs(20)),
            ("a", 0, t0()),
            ("d", 0, secs(5)),
            ("b", 0, secs(10)),
        ]
    );

    for (id, pos) in [("c", 1), ("a", 2), ("d", 3), ("b", 4)] {
        assert_eq!(
            store.position("support", id).await.unwrap(),
            Some((pos, 4)),
            "{id}"
        );
    }
    assert_eq!(store.position("sales", "e").await.unwrap(), Some((1, 1)));
    assert_eq!(store.position("support", "e").await.unwrap(), None);
    assert_eq!(store.position("nope", "a").await.unwrap(), None);
    assert_eq!(store.position("support", "zz").await.unwrap(), None);

    // a is reserved: it leaves the queue, the ones behind move up.
    must(store, &std_, "a", reserved("ag"), secs(30)).await;
    assert_eq!(queue_ids(store, "support").await, v(&["c", "d", "b"]));
    assert_eq!(store.position("support", "a").await.unwrap(), None);
    assert_eq!(store.position("support", "c").await.unwrap(), Some((1, 3)));
    assert_eq!(store.position("support", "d").await.unwrap(), Some((2, 3)));
    assert_eq!(store.position("support", "b").await.unwrap(), Some((3, 3)));

    // c is cancelled.
    must(store, &vip_, "c", Event::Cancel, secs(31)).await;
    assert_eq!(queue_ids(store, "support").await, v(&["d", "b"]));
    assert_eq!(store.position("support", "d").await.unwrap(), Some((1, 2)));

    // e times out finding an agent: its queue is gone from queues().
    let rec = store.get("e").await.unwrap().unwrap();
    let (event, due) = fired(&rec, TimerKind::FindAgent);
    must(store, &sales_, "e", event, due).await;
    assert!(queue_ids(store, "sales").await.is_empty());
    assert_eq!(store.position("sales", "e").await.unwrap(), None);
    assert_eq!(store.queues().await.unwrap(), v(&["support"]));
}

/// What check-queue-position reads in one step: the record, its place, the
/// queue's length and, while it waits, the samples and the ready agents'
/// capacity, which follows readiness and profile changes.
pub async fn standing_answers_place_and_ewt_inputs(store: &dyn Store, _clock: &ManualClock) {
    let (std_, sales_) = (standard(), sales());
    add_agent(store, "two", &["support"], 2, true).await;
    add_agent(store, "three", &["support", "sales"], 3, true).await;
    add_agent(store, "resting", &["support"], 7, false).await;
    insert(store, &created(&std_, "a", "c1", t0())).await;
    insert(store, &created(&std_, "b", "c2", secs(1))).await;
    insert(store, &created(&sales_, "s", "c3", secs(2))).await;
    store
        .add_sample("support", SampleKind::Wait, 30.0)
        .await
        .unwrap();
    store
        .add_sample("support", SampleKind::Handle, 120.0)
        .await
        .unwrap();

    let b = store.standing("b").await.unwrap().expect("b is stored");
    assert_eq!(b.state, ServiceState::WaitForAgent);
    assert_eq!(b.scenario, std_.name);
    assert!(
        b.record.is_none(),
        "a waiting service's poll needs no record"
    );
    assert_eq!((b.position, b.waiting), (Some(2), 2));
    assert_eq!(b.ready_capacity, 5);
    assert_eq!(b.averages.handle, Some(120.0));
    assert_eq!(b.averages.wait, Some(30.0));
    assert_eq!(store.standing("nope").await.unwrap(), None);
    // A store that sums the samples itself gets QueueStats' means to the
    // bit: decimals, past a full window (the oldest drop out).
    for i in 0..WINDOW + 7 {
        // Summed newest first, these give another mean.
        let seconds = 0.1 * (i * i) as f64 + 1.0 / 7.0;
        store
            .add_sample("support", SampleKind::Wait, seconds)
            .await
            .unwrap();
    }
    let stats = store.queue_stats("support").await.unwrap();
    let b = store.standing("b").await.unwrap().unwrap();
    assert_eq!(b.averages, stats.averages());
    assert_eq!(
        b.averages.wait.map(f64::to_bits),
        stats.avg_wait().map(f64::to_bits)
    );

    // Readiness and profiles move the capacity.
    store.set_agent_ready("resting", true).await.unwrap();
    store.set_agent_ready("resting", true).await.unwrap();
    store.set_agent_ready("two", false).await.unwrap();
    add_agent(store, "three", &["sales"], 3, true).await;
    let a = store.standing("a").await.unwrap().unwrap();
    assert_eq!((a.position, a.waiting, a.ready_capacity), (Some(1), 2, 7));
    let s_ = store.standing("s").await.unwrap().unwrap();
    assert_eq!(
        (s_.position, s_.waiting, s_.ready_capacity),
        (Some(1), 1, 3)
    );

    // Reserved: out of the queue; the queue's length is still told.
    must(store, &std_, "a", reserved("resting"), secs(10)).await;
    let a = store.standing("a").await.unwrap().unwrap();
    assert_eq!(a.state, ServiceState::WaitForUserConfirm);
    // Out of the queue: the whole record comes with it.
    let record = a.record.expect("a's record");
    assert_eq!(
        (record.id.as_str(), record.agent.as_deref()),
        ("a", Some("resting"))
    );
    assert_eq!((a.position, a.waiting), (None, 1));
    let b = store.standing("b").await.unwrap().unwrap();
    assert_eq!((b.position, b.waiting), (Some(1), 1));
}

/// The positions pushed to listening devices: each asked device's waiting
/// services with their places, nothing for a device whose services left
/// the queue, and nothing for devices not asked about.
pub async fn device_positions_follow_the_queue(store: &dyn Store, _clock: &ManualClock) {
    let (std_, vip_, sales_) = (standard(), vip(), sales());
    add_agent(store, "ag", &["support"], 5, true).await;
    insert(store, &created(&std_, "a", "c1", t0())).await;
    insert(store, &created(&std_, "b", "c2", secs(1))).await; // no device
    insert(store, &created(&std_, "c", "c3", secs(2))).await;
    insert(store, &created(&vip_, "d", "c4", secs(3))).await;
    insert(store, &created(&sales_, "e", "c3", secs(4))).await; // c3's second
    let ask = |devices: &[&str]| {
        let devices: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
        async move {
            let mut found = store.device_positions(&devices).await.unwrap();
            found.sort_by(|x, y| x.service.cmp(&y.service));
            found
                .into_iter()
                .map(|p| (p.device, p.service, p.position, p.waiting))
                .collect::<Vec<_>>()
        }
    };
    let dev = |c: &str| format!("device-of-{c}");
    assert_eq!(
        ask(&["device-of-c1", "device-of-c3", "device-of-nobody"]).await,
        [
            (dev("c1"), "a".to_owned(), 2, 4),
            (dev("c3"), "c".to_owned(), 4, 4),
            (dev("c3"), "e".to_owned(), 1, 1),
        ]
    );
    must(store, &std_, "a", reserved("ag"), secs(10)).await;
    assert_eq!(ask(&["device-of-c1"]).await, []);
    assert_eq!(
        ask(&["device-of-c3", "device-of-c4"]).await,
        [
            (dev("c3"), "c".to_owned(), 3, 3),
            (dev("c4"), "d".to_owned(), 1, 3),
            (dev("c3"), "e".to_owned(), 1, 1),
        ]
    );
    assert_eq!(ask(&[]).await, []);
}

/// Positions in a queue longer than a B-tree node holds (the memory store's
/// tree splits nodes at 1,024), with priorities mixed in and services
/// leaving from the front, the middle and the back: every position agrees
/// with the queue's order.
pub async fn positions_hold_across_a_long_queue(store: &dyn Store, _clock: &ManualClock) {
    let (std_, vip_) = (standard(), vip());
    let n = 1500;
    for i in 0..n {
        // Every seventh is a VIP: it goes ahead of every standard one.
        let scn = if i % 7 == 0 { &vip_ } else { &std_ };
        insert(
            store,
            &created(scn, &format!("s{i:04}"), &format!("c{i}"), secs(i)),
        )
        .await;
    }
    for i in [0, 1, 700, 701, 1024, n - 1] {
        let scn = if i % 7 == 0 { &vip_ } else { &std_ };
        must(store, scn, &format!("s{i:04}"), Event::Cancel, secs(n + i)).await;
    }
    let order = queue_ids(store, "support").await;
    assert_eq!(order.len(), n as usize - 6);
    assert!(order[..5]
        .iter()
        .all(|id| id[1..].parse::<i64>().unwrap() % 7 == 0));
    for (i, id) in order
        .iter()
        .enumerate()
        .step_by(97)
        .chain(order.iter().enumerate().rev().take(2))
    {
        assert_eq!(
            store.position("support", id).await.unwrap(),
            Some((i + 1, order.len())),
            "{id}"
        );
    }
    assert_eq!(store.position("support", "s0700").await.unwrap(), None);
}

/// A service that missed its confirmation goes back to its old place.
pub async fn requeue_keeps_its_place(store: &dyn Store, _clock: &ManualClock) {
    let scn = standard();
    add_agent(store, "ag", &["support"], 1, true).await;
    insert(store, &created(&scn, "a", "c1", t0())).await;
    insert(store, &created(&scn, "b", "c2", secs(10))).await;

    let a = must(store, &scn, "a", reserved("ag"), secs(20)).await;
    assert_eq!(queue_ids(store, "support").await, v(&["b"]));
    assert_eq!(services_of(store, "ag").await, v(&["a"]));

    let (event, due) = fired(&a, TimerKind::UserConfirm);
    let a = must(store, &scn, "a", event, due).await;
    assert_eq!(a.state, ServiceState::WaitForAgent);
    assert_eq!(queue_ids(store, "support").await, v(&["a", "b"]));
    assert_eq!(store.position("support", "a").await.unwrap(), Some((1, 2)));
    // The agent is free again, so it can take the next one.
    assert!(services_of(store, "ag").await.is_empty());
    must(store, &scn, "b", reserved("ag"), due + Duration::seconds(1)).await;
    assert_eq!(services_of(store, "ag").await, v(&["b"]));
}

/// The store refuses a reservation the agent cannot take, and writes nothing.
pub async fn reservation_refusals(store: &dyn Store, _clock: &ManualClock) {
    let scn = standard();
    add_agent(store, "ag", &["support"], 1, false).await;
    insert(store, &created(&scn, "a", "c1", t0())).await;
    insert(store, &created(&scn, "b", "c2", secs(1))).await;
    let a1 = store.get("a").await.unwrap().unwrap();
    let b1 = store.get("b").await.unwrap().unwrap();

    let refused = |agent: &str, result: Result<ServiceRecord, StoreError>| match result {
        Err(StoreError::AgentUnavailable { agent: got, why }) => {
            assert_eq!(got, agent);
            assert!(!why.is_empty());
        }
        other => panic!("expected AgentUnavailable for {agent}, got {other:?}"),
    };
    let unchanged = |rec: &ServiceRecord| {
        let rec = rec.clone();
        async move {
            assert_eq!(store.get(&rec.id).await.unwrap(), Some(rec.clone()));
            assert!(queue_ids(store, "support").await.contains(&rec.id));
        }
    };

    // Not ready.
    refused(
        "ag",
        transition(store, &scn, "a", reserved("ag"), secs(10)).await,
    );
    unchanged(&a1).await;
    assert!(services_of(store, "ag").await.is_empty());

    // Unknown.
    refused(
        "ghost",
        transition(store, &scn, "a", reserved("ghost"), secs(10)).await,
    );
    unchanged(&a1).await;
    assert!(store.agent("ghost").await.unwrap().is_none());

    // Ready: reserved, and the agent's load and last assignment follow.
    store.set_agent_ready("ag", true).await.unwrap();
    must(store, &scn, "a", reserved("ag"), secs(20)).await;
    let ag = store.agent("ag").await.unwrap().unwrap();
    assert_eq!(ag.services, BTreeSet::from(["a".to_owned()]));
    assert!(ag.last_assigned_at.is_some());
    assert!(!ag.has_room());

    // At its max_concurrent limit.
    refused(
        "ag",
        transition(store, &scn, "b", reserved("ag"), secs(30)).await,
    );
    unchanged(&b1).await;
    assert_eq!(services_of(store, "ag").await, v(&["a"]));

    // A record that already holds the agent may still be written when the
    // agent is full or not ready (it is not a new reservation).
    store.set_agent_ready("ag", false).await.unwrap();
    must(
        store,
        &scn,
        "a",
        Event::InternalNotification {
            display: "d".into(),
            application: "x".into(),
        },
        secs(31),
    )
    .await;
    must(store, &scn, "a", Event::UserConfirmed, secs(32)).await;
    assert_eq!(services_of(store, "ag").await, v(&["a"]));

    // A profile update keeps readiness and load; more room lets b in.
    let updated = store
        .put_agent(AgentProfile {
            id: "ag".into(),
            name: "Agent ag".into(),
            queues: ["support".to_owned()].into(),
            skills: BTreeMap::new(),
            max_concurrent: 2,
            email: None,
        })
        .await
        .unwrap();
    assert!(!updated.ready);
    assert_eq!(updated.services, BTreeSet::from(["a".to_owned()]));
    store.set_agent_ready("ag", true).await.unwrap();
    must(store, &scn, "b", reserved("ag"), secs(40)).await;
    assert_eq!(services_of(store, "ag").await, v(&["a", "b"]));

    assert_eq!(store.set_agent_ready("ghost", true).await.unwrap(), None);
    add_agent(store, "aa", &["support"], 1, false).await;
    let all: Vec<_> = store
        .agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.profile.id)
        .collect();
    assert_eq!(all, v(&["aa", "ag"]));
}

/// Every way a service ends frees its agent.
pub async fn agents_released_on_completion(store: &dyn Store, _clock: &ManualClock) {
    let (scn, fail) = (standard(), scenario("chat-fail", "support", 0, "fail"));
    add_agent(store, "ag", &["support"], 4, true).await;
    for (id, s) in [("a", &scn), ("b", &scn), ("c", &fail), ("d", &scn)] {
        insert(store, &created(s, id, "c1", t0())).await;
        must(store, s, id, reserved("ag"), secs(10)).await;
    }
    assert_eq!(services_of(store, "ag").await, v(&["a", "b", "c", "d"]));

    // a: connected, then completed by the agent.
    must(store, &scn, "a", Event::UserConfirmed, secs(20)).await;
    assert_eq!(services_of(store, "ag").await, v(&["a", "b", "c", "d"]));
    let a = must(store, &scn, "a", Event::Complete, secs(30)).await;
    assert_eq!(a.reason, Some(CallbackReason::AgentConnected));
    assert_eq!(services_of(store, "ag").await, v(&["b", "c", "d"]));

    // b: cancelled while waiting for the customer.
    must(store, &scn, "b", Event::Cancel, secs(31)).await;
    assert_eq!(services_of(store, "ag").await, v(&["c", "d"]));

    // c: the customer did not confirm (fail).
    let rec = store.get("c").await.unwrap().unwrap();
    let (event, due) = fired(&rec, TimerKind::UserConfirm);
    let c = must(store, &fail, "c", event, due).await;
    assert_eq!(c.reason, Some(CallbackReason::FailUserNoConfirm));
    assert_eq!(services_of(store, "ag").await, v(&["d"]));

    // d: connected, then its TTL timer fires (the store's clock is still at
    // t0 here; expiry itself is checked in check_ttl_timer_completes_the_service).
    let rec = must(store, &scn, "d", Event::UserConfirmed, secs(40)).await;
    let (event, due) = fired(&rec, TimerKind::Ttl);
    let d = must(store, &scn, "d", event, due).await;
    assert_eq!(d.reason, Some(CallbackReason::FailTimeoutTtl));
    assert!(services_of(store, "ag").await.is_empty());
    // The agent keeps its profile and readiness.
    assert!(store.agent("ag").await.unwrap().unwrap().ready);
}

/// The store's timers are exactly the records' timers.
pub async fn timers_follow_records(store: &dyn Store, _clock: &ManualClock) {
    let scn = standard();
    add_agent(store, "ag", &["support"], 1, true).await;
    assert_eq!(store.next_timer().await.unwrap(), None);
    assert!(store
        .due_timers(secs(10 * DAY), 10)
        .await
        .unwrap()
        .is_empty());

    // a waits now (find-agent at +2h, TTL at +1d); b is scheduled for +10min.
    insert(store, &created(&scn, "a", "c1", t0())).await;
    let b = machine::create(new_service("b", "c2", Some(secs(600))), &scn, t0()).record;
    assert_eq!(b.state, ServiceState::Scheduled);
    insert(store, &b).await;

    let timer = |id: &str, kind, due| DueTimer {
        id: id.to_owned(),
        kind,
        due,
    };
    assert_eq!(store.next_timer().await.unwrap(), Some(secs(600)));
    assert!(store.due_timers(secs(599), 10).await.unwrap().is_empty());
    assert_eq!(
        store.due_timers(secs(600), 10).await.unwrap(),
        [timer("b", TimerKind::DesiredTime, secs(600))]
    );
    assert_eq!(
        store.due_timers(secs(7200), 10).await.unwrap(),
        [
            timer("b", TimerKind::DesiredTime, secs(600)),
            timer("a", TimerKind::FindAgent, secs(7200)),
        ]
    );
    assert_eq!(
        store.due_timers(secs(7200), 1).await.unwrap(),
        [timer("b", TimerKind::DesiredTime, secs(600))]
    );

    // b's desired time comes: the desired-time timer is replaced by find-agent.
    must(
        store,
        &scn,
        "b",
        Event::TimerFired {
            kind: TimerKind::DesiredTime,
            due: secs(600),
        },
        secs(600),
    )
    .await;
    assert_eq!(store.next_timer().await.unwrap(), Some(secs(7200)));
    assert_eq!(queue_ids(store, "support").await, v(&["a", "b"]));

    // a is reserved at +30s: its find-agent goes, user-confirm comes at +90s.
    must(store, &scn, "a", reserved("ag"), secs(30)).await;
    assert_eq!(store.next_timer().await.unwrap(), Some(secs(90)));
    assert_eq!(
        store.due_timers(secs(90), 10).await.unwrap(),
        [timer("a", TimerKind::UserConfirm, secs(90))]
    );

    // a completes: none of its timers remain.
    must(store, &scn, "a", Event::UserConfirmed, secs(60)).await;
    must(store, &scn, "a", Event::Complete, secs(70)).await;
    assert_eq!(
        store.due_timers(secs(2 * DAY), 10).await.unwrap(),
        [
            timer("b", TimerKind::FindAgent, secs(600 + 7200)),
            timer("b", TimerKind::Ttl, secs(600 + DAY)),
        ]
    );
    assert_eq!(store.next_timer().await.unwrap(), Some(secs(600 + 7200)));

    // Every due timer is one its record holds.
    for t in store.due_timers(secs(2 * DAY), 10).await.unwrap() {
        let rec = store.get(&t.id).await.unwrap().unwrap();
        assert_eq!(rec.timers.get(&t.kind), Some(&t.due), "{t:?}");
    }
}

/// A record past its storage deadline is hidden, then purged with its indexes.
pub async fn expired_records_are_hidden_and_purged(store: &dyn Store, clock: &ManualClock) {
    let scn = standard();
    add_agent(store, "ag", &["support"], 2, true).await;
    // a and q expire at +1d; b (created an hour later) at +1d+1h; each is
    // kept COMPLETED_GRACE longer, so the TTL timer can still complete it.
    insert(store, &created(&scn, "a", "c1", t0())).await;
    insert(store, &created(&scn, "q", "c1", t0())).await;
    insert(store, &created(&scn, "b", "c1", secs(3600))).await;
    let a = must(store, &scn, "a", reserved("ag"), secs(30)).await;
    assert_eq!(a.storage_deadline(), secs(DAY) + COMPLETED_GRACE);
    assert_eq!(services_of(store, "ag").await, v(&["a"]));

    // `get_many` finds what `get` finds (a missing one is left out).
    let found = |ids: &'static [&'static str]| async move {
        let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        sorted_ids(store.get_many(&ids).await.unwrap())
    };
    set_clock(clock, secs(DAY) + COMPLETED_GRACE - Duration::seconds(1));
    assert!(store.get("a").await.unwrap().is_some());
    assert!(store.get("q").await.unwrap().is_some());
    assert_eq!(found(&["q", "none", "b", "a"]).await, v(&["a", "b", "q"]));

    set_clock(clock, secs(DAY) + COMPLETED_GRACE + Duration::seconds(1));
    assert_eq!(store.get("a").await.unwrap(), None);
    assert_eq!(store.get("q").await.unwrap(), None);
    assert!(store.get("b").await.unwrap().is_some());
    // Expired ones are left out too, before the purge.
    assert_eq!(found(&["q", "none", "b", "a"]).await, v(&["b"]));
    assert!(found(&[]).await.is_empty());
    assert_eq!(ids(store, IndexKey::Customer("c1".into())).await, v(&["b"]));
    assert!(
        ids(store, IndexKey::State(ServiceState::WaitForUserConfirm))
            .await
            .is_empty()
    );

    assert_eq!(store.purge_expired(clock.now()).await.unwrap(), 2);
    assert_eq!(store.purge_expired(clock.now()).await.unwrap(), 0);
    // Gone from every index: agent load, queue, timers.
    assert!(services_of(store, "ag").await.is_empty());
    assert_eq!(queue_ids(store, "support").await, v(&["b"]));
    assert_eq!(store.position("support", "q").await.unwrap(), None);
    assert_eq!(store.position("support", "b").await.unwrap(), Some((1, 1)));
    let due = store.due_timers(secs(10 * DAY), 10).await.unwrap();
    assert!(due.iter().all(|t| t.id == "b"), "{due:?}");
    assert_eq!(store.next_timer().await.unwrap(), Some(secs(3600 + 7200)));
    assert_eq!(
        ids(store, IndexKey::Scenario("chat-delay".into())).await,
        v(&["b"])
    );

    // The id can be used again.
    insert(store, &created(&scn, "a", "c9", clock.now())).await;
    assert_eq!(ids(store, IndexKey::Customer("c9".into())).await, v(&["a"]));

    // Purging follows its `now`, not only the store's clock.
    assert_eq!(
        store
            .purge_expired(secs(3600 + DAY) + COMPLETED_GRACE)
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.get("b").await.unwrap(), None);
}

/// A completed record stays readable until its storage deadline: the later
/// of its expiration time and its completion, plus COMPLETED_GRACE.
pub async fn completed_records_keep_a_grace_period(store: &dyn Store, clock: &ManualClock) {
    let scn = standard();
    insert(store, &created(&scn, "early", "c1", t0())).await;
    insert(store, &created(&scn, "late", "c1", t0())).await;
    let early = must(store, &scn, "early", Event::Cancel, secs(60)).await;
    assert_eq!(early.storage_deadline(), secs(DAY) + COMPLETED_GRACE);
    let late = must(store, &scn, "late", Event::Cancel, secs(DAY + 100)).await;
    let late_deadline = secs(DAY + 100) + COMPLETED_GRACE;
    assert_eq!(late.storage_deadline(), late_deadline);

    set_clock(clock, secs(DAY) + COMPLETED_GRACE + Duration::seconds(1));
    assert_eq!(store.get("early").await.unwrap(), None);
    let seen = store.get("late").await.unwrap().expect("within its grace");
    assert_eq!(seen.reason, Some(CallbackReason::Cancelled));
    assert_eq!(store.purge_expired(clock.now()).await.unwrap(), 1);

    set_clock(clock, late_deadline + Duration::seconds(1));
    assert_eq!(store.get("late").await.unwrap(), None);
    assert_eq!(store.purge_expired(clock.now()).await.unwrap(), 1);
    assert!(ids(store, IndexKey::Customer("c1".into())).await.is_empty());
}

/// The TTL timer falls due at `_expiration_time`; the shell must be able to
/// read the record then and write FAIL_TIMEOUT_TTL, which the customer can
/// read for COMPLETED_GRACE afterwards.
pub async fn ttl_timer_completes_the_service(store: &dyn Store, clock: &ManualClock) {
    let scn = standard();
    add_agent(store, "ag", &["support"], 1, true).await;
    insert(store, &created(&scn, "a", "c1", t0())).await;
    must(store, &scn, "a", reserved("ag"), secs(30)).await;
    let connected = must(store, &scn, "a", Event::UserConfirmed, secs(40)).await;
    let expiration = secs(DAY);
    assert_eq!(
        connected.timers,
        BTreeMap::from([(TimerKind::Ttl, expiration)])
    );

    set_clock(clock, expiration);
    let due = store.due_timers(clock.now(), 10).await.unwrap();
    assert!(
        due.contains(&DueTimer {
            id: "a".into(),
            kind: TimerKind::Ttl,
            due: expiration
        }),
        "{due:?}"
    );
    // A due timer whose record cannot be read can never be handled.
    for t in &due {
        assert!(
            store.get(&t.id).await.unwrap().is_some(),
            "the {:?} timer of {} is due at {}, but at that instant get({}) \
             already hides the record, and put() would purge it",
            t.kind,
            t.id,
            t.due,
            t.id
        );
    }
    let rec = must(
        store,
        &scn,
        "a",
        Event::TimerFired {
            kind: TimerKind::Ttl,
            due: expiration,
        },
        expiration,
    )
    .await;
    assert_eq!(rec.reason, Some(CallbackReason::FailTimeoutTtl));
    assert!(services_of(store, "ag").await.is_empty());
    assert_eq!(store.next_timer().await.unwrap(), None);

    clock.advance(COMPLETED_GRACE - Duration::seconds(1));
    let seen = store
        .get("a")
        .await
        .unwrap()
        .expect("readable in the grace");
    assert_eq!(seen.reason, Some(CallbackReason::FailTimeoutTtl));
    clock.advance(Duration::seconds(2));
    assert_eq!(store.get("a").await.unwrap(), None);
    assert_eq!(store.purge_expired(clock.now()).await.unwrap(), 1);
}

/// Queue statistics collect wait and handle samples per queue.
pub async fn queue_stats(store: &dyn Store, _clock: &ManualClock) {
    let stats = store.queue_stats("support").await.unwrap();
    assert_eq!((stats.avg_wait(), stats.avg_handle()), (None, None));

    // Samples the machine produces, as the shell would record them.
    let scn = standard();
    let rec = created(&scn, "a", "c1", t0());
    let applied = machine::apply(&rec, &scn, &reserved("ag"), secs(40)).unwrap();
    for effect in &applied.effects {
        if let Effect::WaitSample { queue, seconds } = effect {
            store
                .add_sample(queue, SampleKind::Wait, *seconds)
                .await
                .unwrap();
        }
    }
    store
        .add_sample("support", SampleKind::Wait, 20.0)
        .await
        .unwrap();
    store
        .add_sample("support", SampleKind::Handle, 120.0)
        .await
        .unwrap();
    store
        .add_sample("support", SampleKind::Wait, -1.0)
        .await
        .unwrap();
    store
        .add_sample("support", SampleKind::Handle, f64::NAN)
        .await
        .unwrap();
    store
        .add_sample("sales", SampleKind::Wait, 5.0)
        .await
        .unwrap();

    let support = store.queue_stats("support").await.unwrap();
    assert_eq!(
        support.waits.iter().copied().collect::<Vec<_>>(),
        [40.0, 20.0]
    );
    assert_eq!(support.avg_wait(), Some(30.0));
    assert_eq!(support.avg_handle(), Some(120.0));
    let sales = store.queue_stats("sales").await.unwrap();
    assert_eq!(sales.avg_wait(), Some(5.0));
    assert_eq!(sales.avg_handle(), None);
    assert_eq!(store.queue_stats("nope").await.unwrap(), Default::default());
}

/// Claiming a due timer hides it from every other claimant for the lease;
/// when the lease runs out (the claimant died) it is due again; firing it
/// removes it, and a write that keeps a claimed timer keeps the claim.
pub async fn timer_claims_are_leased(store: &dyn Store, _clock: &ManualClock) {
    let scn = standard();
    let lease = Duration::seconds(30);
    insert(store, &created(&scn, "a", "c1", t0())).await;
    let b = machine::create(new_service("b", "c2", Some(secs(600))), &scn, t0()).record;
    insert(store, &b).await;
    let b_due = DueTimer {
        id: "b".into(),
        kind: TimerKind::DesiredTime,
        due: secs(600),
    };

    assert!(store
        .claim_due_timers(secs(599), lease, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.claim_due_timers(secs(600), lease, 10).await.unwrap(),
        std::slice::from_ref(&b_due)
    );
    // Claimed: nobody else gets it, and it is not reported as due.
    assert!(store
        .claim_due_timers(secs(600), lease, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.due_timers(secs(620), 10).await.unwrap().is_empty());
    assert_eq!(store.next_timer().await.unwrap(), Some(secs(630)));

    // A write that keeps the timer keeps the claim too.
    must(
        store,
        &scn,
        "b",
        Event::InternalNotification {
            display: "d".into(),
            application: "x".into(),
        },
        secs(601),
    )
    .await;
    assert!(store
        .claim_due_timers(secs(629), lease, 10)
        .await
        .unwrap()
        .is_empty());

    // The claimant never fired it: after the lease it is due again, with its
    // original due time (which the record still holds).
    assert_eq!(
        store.claim_due_timers(secs(630), lease, 10).await.unwrap(),
        [b_due]
    );
    must(
        store,
        &scn,
        "b",
        Event::TimerFired {
            kind: TimerKind::DesiredTime,
            due: secs(600),
        },
        secs(631),
    )
    .await;
    // Fired: gone for good, only later timers remain.
    let later = store
        .claim_due_timers(secs(3 * DAY), lease, 10)
        .await
        .unwrap();
    assert!(
        later.iter().all(|t| t.kind != TimerKind::DesiredTime),
        "{later:?}"
    );
    assert_eq!(later.len(), 4, "{later:?}");
}

/// Records made at any instant (the wall clock has nanoseconds) hand their
/// timers back with exactly the due times they hold, or they could never fire.
pub async fn timers_keep_their_exact_due_time(store: &dyn Store, _clock: &ManualClock) {
    let scn = standard();
    let at = t0() + Duration::nanoseconds(123_456_789);
    insert(store, &created(&scn, "a", "c1", at)).await;
    let b = machine::create(
        new_service("b", "c2", Some(at + Duration::seconds(600))),
        &scn,
        at,
    )
    .record;
    insert(store, &b).await;
    for lease_claim in [false, true] {
        let due = if lease_claim {
            store
                .claim_due_timers(secs(3 * DAY), Duration::seconds(30), 10)
                .await
                .unwrap()
        } else {
            store.due_timers(secs(3 * DAY), 10).await.unwrap()
        };
        assert_eq!(due.len(), 4, "{due:?}");
        for t in due {
            let rec = store.get(&t.id).await.unwrap().unwrap();
            assert_eq!(rec.timers.get(&t.kind), Some(&t.due), "{t:?}");
            assert!(t.due >= at, "{t:?}");
        }
    }
}

/// A customer with many services (a placeholder number, say) finds them all,
/// and they leave the index one by one.
pub async fn many_services_for_one_customer(store: &dyn Store, _clock: &ManualClock) {
    let scn = standard();
    let expected: Vec<String> = (0..40).map(|i| format!("s{i:02}")).collect();
    for id in &expected {
        insert(store, &created(&scn, id, "0", t0())).await;
    }
    insert(store, &created(&scn, "other", "1", t0())).await;
    assert_eq!(ids(store, IndexKey::Customer("0".into())).await, expected);
    for id in expected.iter().step_by(2) {
        must(store, &scn, id, Event::Cancel, secs(1)).await;
    }
    // Cancelled ones are still the customer's (until purged).
    assert_eq!(ids(store, IndexKey::Customer("0".into())).await, expected);
    assert_eq!(store.purge_expired(secs(3 * DAY)).await.unwrap(), 41);
    assert!(ids(store, IndexKey::Customer("0".into())).await.is_empty());
    insert(store, &created(&scn, "again", "0", secs(3 * DAY))).await;
    assert_eq!(
        ids(store, IndexKey::Customer("0".into())).await,
        v(&["again"])
    );
}

/// Writers racing on one record, or on one agent's last seats: the store
/// lets exactly as many win as it should.
pub async fn racing_writers(store: &dyn Store, _clock: &ManualClock) {
    use futures::future::join_all;
    let scn = standard();
    add_agent(store, "ag", &["support"], 3, true).await;
    let ids: Vec<String> = (0..20).map(|i| format!("s{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        insert(store, &created(&scn, id, "c1", secs(i as i64))).await;
    }

    // Twenty services reserve the same agent at once; it has three seats.
    let results = join_all(
        ids.iter()
            .map(|id| transition(store, &scn, id, reserved("ag"), secs(30))),
    )
    .await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 3, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(r, StoreError::AgentUnavailable { .. }),
            "a losing reservation is refused, not failed: {r:?}"
        );
    }
    assert_eq!(services_of(store, "ag").await.len(), 3);
    assert_eq!(queue_ids(store, "support").await.len(), 17);

    // Twenty writes based on the same version of one record: one wins.
    let waiting = queue_ids(store, "support").await[0].clone();
    let rec = store.get(&waiting).await.unwrap().unwrap();
    let writes: Vec<ServiceRecord> = (0..20)
        .map(|i| {
            apply(
                &rec,
                &scn,
                Event::InternalNotification {
                    display: format!("n{i}"),
                    application: "x".into(),
                },
                secs(40),
            )
        })
        .collect();
    let results = join_all(writes.iter().map(|w| store.put(w, Some(rec.version)))).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results
        .iter()
        .all(|r| r.is_ok() || *r == Err(StoreError::Conflict(waiting.clone()))));
    let stored = store.get(&waiting).await.unwrap().unwrap();
    assert!(writes.contains(&stored));
}

fn booking(slot: DateTime<Utc>, seats: u32) -> Booking {
    Booking {
        slot,
        slot_end: slot + Duration::minutes(15),
        seats,
        sequence: 0,
        enter_queue_at: slot,
        reminder_at: None,
        join_url: None,
        timezone: "UTC".into(),
        manage_token: None,
    }
}

/// A service booked into `slot` (which has `seats` seats), created at `at`.
fn booked(id: &str, slot: DateTime<Utc>, seats: u32, at: DateTime<Utc>) -> ServiceRecord {
    let mut new = new_service(id, "c1", Some(slot));
    new.booking = Some(booking(slot, seats));
    machine::create(new, &standard(), at).record
}

async fn taken(store: &dyn Store) -> Vec<(DateTime<Utc>, u32)> {
    store
        .seats_taken("chat-delay", secs(0), secs(30 * DAY))
        .await
        .unwrap()
        .into_iter()
        .collect()
}

pub async fn seats_are_counted_and_freed(store: &dyn Store, _clock: &ManualClock) {
    let scn = standard();
    let (a, b) = (secs(DAY), secs(DAY + 900));
    insert(store, &booked("b1", a, 2, secs(0))).await;
    insert(store, &booked("b2", a, 2, secs(1))).await;
    assert_eq!(taken(store).await, vec![(a, 2)]);

    // The third booking of a two-seat slot is refused, and nothing is written.
    let third = booked("b3", a, 2, secs(2));
    assert_eq!(
        store.put(&third, None).await,
        Err(StoreError::SlotFull { slot: a })
    );
    assert!(store.get("b3").await.unwrap().is_none());
    assert_eq!(taken(store).await, vec![(a, 2)]);

    // Other writes to a booked record keep its one seat.
    transition(
        store,
        &scn,
        "b1",
        Event::InternalNotification {
            display: "x".into(),
            application: "y".into(),
        },
        secs(3),
    )
    .await
    .unwrap();
    assert_eq!(taken(store).await, vec![(a, 2)]);

    // Rescheduling moves the seat: the old slot gets it back.
    transition(
        store,
        &scn,
        "b1",
        Event::Reschedule {
            desired_time: b,
            booking: Some(booking(b, 1)),
            changes: Default::default(),
        },
        secs(4),
    )
    .await
    .unwrap();
    assert_eq!(taken(store).await, vec![(a, 1), (b, 1)]);
    // ...and into a full slot is refused, leaving the record as it was.
    let rec = store.get("b2").await.unwrap().unwrap();
    let moved = apply(
        &rec,
        &scn,
        Event::Reschedule {
            desired_time: b,
            booking: Some(booking(b, 1)),
            changes: Default::default(),
        },
        secs(5),
    );
    assert_eq!(
        store.put(&moved, Some(rec.version)).await,
        Err(StoreError::SlotFull { slot: b })
    );
    assert_eq!(store.get("b2").await.unwrap().unwrap(), rec);

    // Cancelling frees the seat; the slot can be booked again.
    transition(store, &scn, "b2", Event::Cancel, secs(6))
        .await
        .unwrap();
    assert_eq!(taken(store).await, vec![(b, 1)]);
    insert(store, &booked("b3", a, 2, secs(7))).await;
    assert_eq!(taken(store).await, vec![(a, 1), (b, 1)]);

    // The range is half-open, by slot start.
    let only_b = store
        .seats_taken("chat-delay", b, b + Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(only_b.into_iter().collect::<Vec<_>>(), vec![(b, 1)]);
    assert!(store
        .seats_taken("chat-delay", secs(0), a)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .seats_taken("other", secs(0), secs(30 * DAY))
        .await
        .unwrap()
        .is_empty());

    // A record forgotten at its storage deadline gives its seat back.
    let purged = store.purge_expired(secs(400 * DAY)).await.unwrap();
    assert!(purged >= 2);
    assert!(taken(store).await.is_empty());
}

pub async fn racing_bookings_take_exactly_the_seats_left(store: &dyn Store, _clock: &ManualClock) {
    use futures::future::join_all;
    let slot = secs(DAY);
    // 200 customers race for a slot of 10 seats.
    let records: Vec<ServiceRecord> = (0..200)
        .map(|i| booked(&format!("r{i:03}"), slot, 10, secs(0)))
        .collect();
    let results = join_all(records.iter().map(|r| store.put(r, None))).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 10);
    assert!(results
        .iter()
        .all(|r| r.is_ok() || *r == Err(StoreError::SlotFull { slot })));
    assert_eq!(taken(store).await, vec![(slot, 10)]);
    let stored = store
        .find(&IndexKey::Scenario("chat-delay".into()))
        .await
        .unwrap();
    assert_eq!(stored.len(), 10);
}

// ---------------------------------------------------------------------------
// Video rooms and preferred agents
// ---------------------------------------------------------------------------

/// A live room with `code`, opened at `at`, its code good for an hour.
fn room(code: &str, at: DateTime<Utc>) -> Room {
    let link = |side: &str| RoomLink {
        url: format!("https://video.test/room/{code}?token={side}-{code}"),
        token: format!("{side}-{code}"),
    };
    // The default `[_video]`: relay rooms whose code is good for an hour.
    Room::new(
        &VideoConfig::default(),
        code.to_owned(),
        at,
        link("c"),
        link("a"),
        None,
    )
}

/// A video leg routed to "support", with one live room `code` and no agent yet.
fn leg(code: &str, at: DateTime<Utc>) -> VideoLeg {
    VideoLeg {
        requested_at: at,
        requested_by: Party::Client,
        scenario: "chat-delay".into(),
        routing: RoutingData {
            queue: "support".into(),
            skills: None,
            priority: 0,
            attributes: BTreeMap::new(),
            preferred_agent: None,
        },
        conversation_id: None,
        agent: None,
        routed: None,
        connected_at: None,
        rooms: vec![room(code, at)],
        survey: None,
    }
}

/// A video service created at `at`, waiting in "support", its room `code` live.
fn video_service(id: &str, customer: &str, code: &str, at: DateTime<Utc>) -> ServiceRecord {
    let mut new = new_service(id, customer, None);
    new.video = Some(leg(code, at));
    machine::create(new, &standard(), at).record
}

/// Reads `id`, changes it by hand and writes it back with the version CAS:
/// for record shapes no single event makes.
async fn edit(
    store: &dyn Store,
    id: &str,
    change: impl FnOnce(&mut ServiceRecord),
) -> Result<ServiceRecord, StoreError> {
    let rec = store
        .get(id)
        .await?
        .ok_or_else(|| StoreError::Missing(id.to_owned()))?;
    let mut next = rec.clone();
    change(&mut next);
    next.version = rec.version + 1;
    next.schema = next.required_schema();
    store.put(&next, Some(rec.version)).await?;
    Ok(next)
}

/// Ends the service's live room at `at` (one side left).
fn end_room(rec: &mut ServiceRecord, at: DateTime<Utc>) {
    let room = rec
        .video
        .as_mut()
        .and_then(|v| v.live_room_mut())
        .expect("a live room");
    room.ended_at = Some(at);
    room.end_reason = Some(crate::video::RoomEnd::Left);
}

async fn room_of(store: &dyn Store, code: &str) -> Option<String> {
    store.room(code).await.unwrap()
}

async fn agent_room(store: &dyn Store, agent: &str) -> Option<String> {
    store
        .agent(agent)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("agent {agent}"))
        .room
}

/// Everything a refused write must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    records: Vec<ServiceRecord>,
    by_state: Vec<Vec<String>>,
    by_customer: Vec<Vec<String>>,
    queue: Vec<QueueEntry>,
    agents: Vec<AgentRecord>,
    timers: Vec<DueTimer>,
    rooms: Vec<Option<String>>,
}

async fn snapshot(store: &dyn Store, codes: &[&str]) -> Snapshot {
    let mut records = store
        .find(&IndexKey::Scenario("chat-delay".into()))
        .await
        .unwrap();
    records.sort_by(|a, b| a.id.cmp(&b.id));
    let mut by_state = Vec::new();
    for state in ServiceState::ALL {
        by_state.push(ids(store, IndexKey::State(state)).await);
    }
    let mut by_customer = Vec::new();
    for c in 1..10 {
        by_customer.push(ids(store, IndexKey::Customer(format!("c{c}"))).await);
    }
    let mut rooms = Vec::new();
    for code in codes {
        rooms.push(room_of(store, code).await);
    }
    Snapshot {
        records,
        by_state,
        by_customer,
        queue: store.queue("support").await.unwrap(),
        agents: store.agents().await.unwrap(),
        timers: store.due_timers(secs(400 * DAY), 1000).await.unwrap(),
        rooms,
    }
}

fn room_taken(code: &str) -> Result<(), StoreError> {
    Err(StoreError::RoomTaken {
        code: code.to_owned(),
    })
}

/// A room code belongs to one stored service: `put` refuses it to any
/// other (and writes nothing); the holder may rewrite it, move to a new
/// code, and gives it up when its record is gone.
pub async fn room_codes_are_unique(store: &dyn Store, clock: &ManualClock) {
    let scn = standard();
    add_agent(store, "ag", &["support"], 5, true).await;
    insert(store, &video_service("v1", "c1", "ROOM1", t0())).await;
    insert(store, &video_service("v2", "c2", "ROOM2", secs(1))).await;
    insert(store, &created(&scn, "p", "c3", secs(2))).await;
    assert_eq!(room_of(store, "ROOM1").await, Some("v1".into()));
    assert_eq!(room_of(store, "ROOM2").await, Some("v2".into()));
    assert_eq!(room_of(store, "NOPE").await, None);
    // The room's timer comes back as what it is.
    assert!(store
        .due_timers(secs(3600), 10)
        .await
        .unwrap()
        .contains(&DueTimer {
            id: "v1".into(),
            kind: TimerKind::RoomTtl,
            due: secs(3600),
        }));

    let codes = ["ROOM1", "ROOM2", "ROOM3"];
    let before = snapshot(store, &codes).await;
    // A new service with a taken code.
    let dup = video_service("v3", "c4", "ROOM1", secs(3));
    assert_eq!(store.put(&dup, None).await, room_taken("ROOM1"));
    assert_eq!(store.get("v3").await.unwrap(), None);
    assert_eq!(snapshot(store, &codes).await, before);
    // A service reserving an agent while taking another's code: neither happens.
    let v2 = store.get("v2").await.unwrap().unwrap();
    let mut next = apply(&v2, &scn, reserved("ag"), secs(4));
    next.video.as_mut().unwrap().rooms[0].code = "ROOM1".into();
    assert_eq!(
        store.put(&next, Some(v2.version)).await,
        room_taken("ROOM1")
    );
    assert_eq!(snapshot(store, &codes).await, before);
    assert!(services_of(store, "ag").await.is_empty());
    // A service without video given a leg with a taken code.
    assert_eq!(
        edit(store, "p", |r| r.video =
            Some(Box::new(leg("ROOM1", secs(5)))))
        .await
        .map(|_| ()),
        room_taken("ROOM1")
    );
    assert_eq!(snapshot(store, &codes).await, before);

    // The holder rewriting its record keeps its code.
    must(
        store,
        &scn,
        "v1",
        Event::InternalNotification {
            display: "d".into(),
            application: "x".into(),
        },
        secs(6),
    )
    .await;
    edit(store, "v1", |r| {
        r.user_data.insert("k".into(), "v".into());
    })
    .await
    .unwrap();
    assert_eq!(room_of(store, "ROOM1").await, Some("v1".into()));

    // A new room moves the index to its code; the old code is free again.
    edit(store, "v1", |r| {
        end_room(r, secs(7));
        r.video.as_mut().unwrap().push_room(room("ROOM3", secs(7)));
    })
    .await
    .unwrap();
    assert_eq!(room_of(store, "ROOM1").await, None);
    assert_eq!(room_of(store, "ROOM3").await, Some("v1".into()));
    edit(store, "p", |r| {
        r.video = Some(Box::new(leg("ROOM1", secs(8))))
    })
    .await
    .unwrap();
    assert_eq!(room_of(store, "ROOM1").await, Some("p".into()));

    // Completed, the service keeps its code (a survey still finds the room).
    let v1 = must(store, &scn, "v1", Event::Cancel, secs(9)).await;
    assert_eq!(room_of(store, "ROOM3").await, Some("v1".into()));
    let v4 = video_service("v4", "c4", "ROOM3", secs(10));
    assert_eq!(store.put(&v4, None).await, room_taken("ROOM3"));

    // At its storage deadline the record is gone, and its hold on the code
    // with it, purged or not; the purge then leaves the new holder alone.
    set_clock(clock, v1.storage_deadline());
    assert_eq!(room_of(store, "ROOM3").await, None);
    assert_eq!(room_of(store, "ROOM2").await, Some("v2".into()));
    insert(store, &video_service("v4", "c4", "ROOM3", clock.now())).await;
    assert_eq!(room_of(store, "ROOM3").await, Some("v4".into()));
    // (The memory store purged it while writing v4; Redis purges it now.)
    assert!(store.purge_expired(clock.now()).await.unwrap() <= 1);
    assert_eq!(store.get("v1").await.unwrap(), None);
    assert_eq!(room_of(store, "ROOM3").await, Some("v4".into()));

    // Purged: every code is free, and can be used again.
    assert_eq!(store.purge_expired(secs(400 * DAY)).await.unwrap(), 3);
    for code in ["ROOM1", "ROOM2", "ROOM3"] {
        assert_eq!(room_of(store, code).await, None, "{code}");
    }
    insert(store, &video_service("v5", "c5", "ROOM1", secs(400 * DAY))).await;
    assert_eq!(room_of(store, "ROOM1").await, Some("v5".into()));
}

/// An agent is in one live room at a time: `put` refuses (and writes
/// nothing) a record that would put it in a second; the agent's `room`
/// follows, and is freed when the room ends, the service completes, or
/// its record is purged.
pub async fn an_agent_is_in_one_room(store: &dyn Store, _clock: &ManualClock) {
    let scn = standard();
    add_agent(store, "ag", &["support"], 5, true).await;
    add_agent(store, "bg", &["support"], 5, true).await;
    for (i, id) in ["v1", "v2", "v3"].into_iter().enumerate() {
        let code = format!("A{}", i + 1);
        insert(store, &video_service(id, "c1", &code, secs(i as i64))).await;
    }
    insert(store, &created(&scn, "p", "c2", secs(3))).await;
    assert_eq!(agent_room(store, "ag").await, None);

    // Taking a video service puts the agent in its live room.
    let v1 = must(store, &scn, "v1", reserved("ag"), secs(10)).await;
    assert_eq!(v1.room_agent(), Some("ag"));
    assert_eq!(agent_room(store, "ag").await, Some("v1".into()));
    let rooms: Vec<_> = store
        .agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.profile.id, a.room))
        .collect();
    assert_eq!(
        rooms,
        [
            ("ag".to_owned(), Some("v1".to_owned())),
            ("bg".into(), None)
        ]
    );

    let in_room = Err(StoreError::AgentInRoom {
        agent: "ag".into(),
        service: "v1".into(),
    });
    let codes = ["A1", "A2", "A3", "A4", "P1"];
    let before = snapshot(store, &codes).await;
    // A second video service for the agent: refused, so it keeps its place
    // in the queue and the agent's load stays as it was.
    let refused = transition(store, &scn, "v2", reserved("ag"), secs(11)).await;
    assert_eq!(refused.map(|_| ()), in_room);
    assert_eq!(snapshot(store, &codes).await, before);
    // A new service created with the agent in its room.
    let mut v4 = video_service("v4", "c3", "A4", secs(12));
    v4.video.as_mut().unwrap().agent = Some("ag".into());
    assert_eq!(store.put(&v4, None).await, in_room);
    assert_eq!(store.get("v4").await.unwrap(), None);
    assert_eq!(snapshot(store, &codes).await, before);
    // A service without video given a live room with the agent.
    let refused = edit(store, "p", |r| {
        let mut leg = leg("P1", secs(13));
        leg.agent = Some("ag".into());
        r.video = Some(Box::new(leg));
    })
    .await;
    assert_eq!(refused.map(|_| ()), in_room);
    assert_eq!(snapshot(store, &codes).await, before);

    // Another agent may take it.
    must(store, &scn, "v2", reserved("bg"), secs(14)).await;
    assert_eq!(agent_room(store, "bg").await, Some("v2".into()));
    // The holder writing again stays in its room.
    must(
        store,
        &scn,
        "v1",
        Event::InternalNotification {
            display: "d".into(),
            application: "x".into(),
        },
        secs(15),
    )
    .await;
    assert_eq!(agent_room(store, "ag").await, Some("v1".into()));

    // The room ends: the agent is out of it (the service is still its load).
    edit(store, "v1", |r| end_room(r, secs(16))).await.unwrap();
    assert_eq!(agent_room(store, "ag").await, None);
    assert_eq!(services_of(store, "ag").await, v(&["v1"]));
    // ... so it can go into another service's room.
    must(store, &scn, "v3", reserved("ag"), secs(17)).await;
    assert_eq!(agent_room(store, "ag").await, Some("v3".into()));
    assert_eq!(services_of(store, "ag").await, v(&["v1", "v3"]));

    // The service completes: the agent leaves the room with it.
    must(store, &scn, "v3", Event::ForceComplete, secs(18)).await;
    assert_eq!(agent_room(store, "ag").await, None);
    // Even a completed record whose room was never marked ended holds no agent.
    edit(store, "v2", |r| {
        r.state = ServiceState::Completed;
        r.reason = Some(CallbackReason::AgentConnected);
        r.completed_at = Some(secs(19));
        r.agent = None;
        r.timers.clear();
    })
    .await
    .unwrap();
    assert!(store
        .get("v2")
        .await
        .unwrap()
        .unwrap()
        .live_room()
        .is_none());
    assert_eq!(agent_room(store, "bg").await, None);

    // A record purged while its room is live frees the agent.
    let mut v4 = video_service("v4", "c3", "A4", secs(20));
    v4.video.as_mut().unwrap().agent = Some("ag".into());
    insert(store, &v4).await;
    assert_eq!(agent_room(store, "ag").await, Some("v4".into()));
    assert!(store.purge_expired(secs(400 * DAY)).await.unwrap() >= 5);
    assert_eq!(agent_room(store, "ag").await, None);
    assert!(store
        .agents()
        .await
        .unwrap()
        .iter()
        .all(|a| a.room.is_none() && a.services.is_empty()));
}

/// Fifty services created at once with the same room code: one is stored.
pub async fn racing_room_codes_one_wins(store: &dyn Store, _clock: &ManualClock) {
    use futures::future::join_all;
    let records: Vec<ServiceRecord> = (0..50)
        .map(|i| video_service(&format!("r{i:02}"), "c1", "SAME", secs(i)))
        .collect();
    let results = join_all(records.iter().map(|r| store.put(r, None))).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(results
        .iter()
        .all(|r| r.is_ok() || *r == room_taken("SAME")));
    let winner = records
        .iter()
        .zip(&results)
        .find(|(_, r)| r.is_ok())
        .map(|(rec, _)| rec.id.clone());
    assert_eq!(room_of(store, "SAME").await, winner);
    let stored = store
        .find(&IndexKey::Scenario("chat-delay".into()))
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(queue_ids(store, "support").await.len(), 1);
}

/// Twenty video services reserve the same agent at once: it ends up in one room.
pub async fn racing_agents_into_rooms_one_wins(store: &dyn Store, _clock: &ManualClock) {
    use futures::future::join_all;
    let scn = standard();
    add_agent(store, "ag", &["support"], 50, true).await;
    let ids: Vec<String> = (0..20).map(|i| format!("s{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let code = format!("CODE{i:02}");
        insert(store, &video_service(id, "c1", &code, secs(i as i64))).await;
    }
    let results = join_all(
        ids.iter()
            .map(|id| transition(store, &scn, id, reserved("ag"), secs(30))),
    )
    .await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    let winner = ids
        .iter()
        .zip(&results)
        .find(|(_, r)| r.is_ok())
        .map(|(id, _)| id.clone())
        .unwrap();
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(
            *r,
            StoreError::AgentInRoom {
                agent: "ag".into(),
                service: winner.clone(),
            }
        );
    }
    let ag = store.agent("ag").await.unwrap().unwrap();
    assert_eq!(ag.room, Some(winner.clone()));
    assert_eq!(ag.services, BTreeSet::from([winner.clone()]));
    assert_eq!(queue_ids(store, "support").await.len(), 19);
}

/// A service routed by URS targets carries its route in its queue entry;
/// moving on to the next target changes the entry, not the place, and
/// fires its timer once.
pub async fn queue_entries_carry_the_route(store: &dyn Store, _clock: &ManualClock) {
    let scn = ScenarioBuilder::chat_delay()
        .name("routed")
        .unset("_target")
        .key(
            "_target",
            r#"[{ target = "Billing@StatServer.GA", timeout = 30 }, { target = "?:Loans>=2@StatServer.GA" }]"#,
        )
        .key("_urs_virtual_queue", r#""loans_vq""#)
        .build();
    let plain = created(&standard(), "plain", "c1", t0());
    let routed = created(&scn, "routed", "c2", secs(1));
    insert(store, &plain).await;
    insert(store, &routed).await;
    let entries = store.queue("loans_vq").await.unwrap();
    assert_eq!(entries, [QueueEntry::of(&routed)]);
    let route = entries[0].route.as_ref().expect("a route");
    assert_eq!(route.any.len(), 1);
    assert_eq!(
        store.position("loans_vq", "routed").await.unwrap(),
        Some((1, 1))
    );

    let (event, due) = fired(&routed, TimerKind::TargetTimeout);
    let claimed = store.due_timers(due, 10).await.unwrap();
    assert!(claimed
        .iter()
        .any(|t| t.id == "routed" && t.kind == TimerKind::TargetTimeout));
    let routed = must(store, &scn, "routed", event.clone(), due).await;
    let entries = store.queue("loans_vq").await.unwrap();
    assert_eq!(entries, [QueueEntry::of(&routed)]);
    assert_eq!(entries[0].route.as_ref().unwrap().any.len(), 2);
    assert_eq!(entries[0].since, secs(1), "the place is kept");
    // The timer was spent: firing it again is stale.
    assert!(machine::apply(&routed, &scn, &event, due).is_err());
    assert!(!store
        .due_timers(due + chrono::Duration::seconds(60), 10)
        .await
        .unwrap()
        .iter()
        .any(|t| t.id == "routed" && t.kind == TimerKind::TargetTimeout));

    must(store, &scn, "routed", Event::Cancel, due).await;
    assert!(store.queue("loans_vq").await.unwrap().is_empty());
}

/// Queue entries carry the preferred agent and whether the service has
/// video; the preference can go while the place in the queue stays.
pub async fn queue_entries_carry_preference_and_video(store: &dyn Store, _clock: &ManualClock) {
    let scn = standard();
    let plain = created(&scn, "plain", "c1", t0());
    let mut new = new_service("pref", "c2", None);
    new.preferred_agent = Some("ag".into());
    let pref = machine::create(new, &scn, secs(1)).record;
    let vid = video_service("vid", "c3", "V1", secs(2));
    let mut new = new_service("both", "c4", None);
    new.video = Some(leg("V2", secs(3)));
    new.preferred_agent = Some("bg".into());
    let both = machine::create(new, &scn, secs(3)).record;
    for rec in [&plain, &pref, &vid, &both] {
        insert(store, rec).await;
    }

    let entries = store.queue("support").await.unwrap();
    let shape: Vec<_> = entries
        .iter()
        .map(|e| (e.id.as_str(), e.preferred_agent.as_deref(), e.video))
        .collect();
    assert_eq!(
        shape,
        [
            ("plain", None, false),
            ("pref", Some("ag"), false),
            ("vid", None, true),
            ("both", Some("bg"), true),
        ]
    );
    let expected: Vec<QueueEntry> = [&plain, &pref, &vid, &both]
        .into_iter()
        .map(QueueEntry::of)
        .collect();
    assert_eq!(entries, expected);
    assert_eq!(
        store.position("support", "both").await.unwrap(),
        Some((4, 4))
    );
    assert_eq!(
        store.position("support", "pref").await.unwrap(),
        Some((2, 4))
    );

    // The preferred agent's time runs out: the preference goes, the place stays.
    let (event, due) = fired(&pref, TimerKind::PreferredAgent);
    assert!(store
        .due_timers(due, 10)
        .await
        .unwrap()
        .iter()
        .any(|t| t.id == "pref" && t.kind == TimerKind::PreferredAgent));
    let pref = must(store, &scn, "pref", event, due).await;
    assert_eq!(pref.ticket.preferred_agent, None);
    let entries = store.queue("support").await.unwrap();
    assert_eq!(entries.len(), 4, "{entries:?}");
    assert_eq!(entries[1], QueueEntry::of(&pref));
    assert_eq!(
        store.position("support", "pref").await.unwrap(),
        Some((2, 4))
    );

    // Leaving the queue takes the entries with them.
    must(store, &scn, "both", Event::Cancel, due).await;
    must(store, &scn, "vid", Event::Cancel, due).await;
    assert_eq!(queue_ids(store, "support").await, v(&["plain", "pref"]));
    assert_eq!(store.position("support", "both").await.unwrap(), None);
}

/// What a conformance test runs against: a fresh, empty store, the clock it
/// reads "now" from (starting at [`t0`]), and whatever must live as long as
/// the store does (a Redis server, say).
pub struct Subject {
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    pub guard: Box<dyn std::any::Any + Send>,
}

// ---------------------------------------------------------------------------
// Access control: minted keys, quotas, idempotency keys
// ---------------------------------------------------------------------------

fn agent_key(id: &str, agent: &str, name: &str) -> AgentKey {
    AgentKey {
        id: id.to_owned(),
        agent: agent.to_owned(),
        name: name.to_owned(),
        secret_sha256: format!("hash-of-{id}"),
        created_at: t0(),
    }
}

pub async fn agent_keys_are_found_listed_and_revoked(store: &dyn Store, _clock: &ManualClock) {
    for (id, agent, name) in [
        ("k1", "ann", "desk"),
        ("k2", "ann", "phone"),
        ("k3", "annette", "desk"),
    ] {
        store
            .put_agent_key(&agent_key(id, agent, name))
            .await
            .unwrap();
    }
    assert_eq!(
        store.put_agent_key(&agent_key("k4", "ann", "desk")).await,
        Err(StoreError::KeyExists {
            agent: "ann".into(),
            name: "desk".into()
        })
    );
    assert_eq!(
        store.agent_key("k4").await.unwrap(),
        None,
        "a refused key is not stored"
    );
    assert_eq!(
        store.agent_key("k2").await.unwrap(),
        Some(agent_key("k2", "ann", "phone"))
    );
    let names = |keys: Vec<AgentKey>| keys.into_iter().map(|k| k.name).collect::<Vec<_>>();
    assert_eq!(
        names(store.agent_keys("ann").await.unwrap()),
        ["desk", "phone"]
    );
    assert_eq!(names(store.agent_keys("annette").await.unwrap()), ["desk"]);
    assert!(store.agent_keys("bob").await.unwrap().is_empty());

    assert!(store.revoke_agent_key("ann", "desk").await.unwrap());
    assert!(!store.revoke_agent_key("ann", "desk").await.unwrap());
    assert!(!store.revoke_agent_key("bob", "phone").await.unwrap());
    assert_eq!(store.agent_key("k1").await.unwrap(), None);
    assert_eq!(names(store.agent_keys("ann").await.unwrap()), ["phone"]);
    // The name is free again.
    store
        .put_agent_key(&agent_key("k5", "ann", "desk"))
        .await
        .unwrap();
}

fn quota(key: &str, limit: u32, window_secs: i64) -> Quota {
    Quota {
        key: key.to_owned(),
        limit,
        window: Duration::seconds(window_secs),
    }
}

pub async fn quotas_count_all_or_nothing_and_reopen(store: &dyn Store, clock: &ManualClock) {
    let start = clock.now();
    let per_number = quota("cust:chat:555", 2, 60);
    let per_scenario = quota("scn:chat", 3, 300);
    let both = [per_number.clone(), per_scenario.clone()];
    assert_eq!(
        store.count_quotas(&both).await.unwrap(),
        QuotaVerdict::Counted
    );
    clock.advance(Duration::seconds(10));
    assert_eq!(
        store.count_quotas(&both).await.unwrap(),
        QuotaVerdict::Counted
    );
    // The number's quota is used up until its window (from the first
    // request) ends; the refused request counts against neither.
    assert_eq!(
        store.count_quotas(&both).await.unwrap(),
        QuotaVerdict::Exceeded {
            quota: 0,
            retry_at: start + Duration::seconds(60)
        }
    );
    let other_number = [quota("cust:chat:777", 2, 60), per_scenario.clone()];
    assert_eq!(
        store.count_quotas(&other_number).await.unwrap(),
        QuotaVerdict::Counted
    );
    assert_eq!(
        store
            .count_quotas(&[quota("cust:chat:888", 2, 60), per_scenario.clone()])
            .await
            .unwrap(),
        QuotaVerdict::Exceeded {
            quota: 1,
            retry_at: start + Duration::seconds(300)
        }
    );
    clock.advance(Duration::seconds(51));
    assert_eq!(
        store
            .count_quotas(std::slice::from_ref(&per_number))
            .await
            .unwrap(),
        QuotaVerdict::Counted,
        "a new window opens when the last one ended"
    );
    clock.advance(Duration::seconds(240));
    assert_eq!(
        store.count_quotas(&both).await.unwrap(),
        QuotaVerdict::Counted
    );
}

pub async fn racing_quotas_let_through_exactly_the_limit(store: &dyn Store, _clock: &ManualClock) {
    use futures::future::join_all;
    let quotas = [
        quota("cust:race:1", 10, 3600),
        quota("scn:race", 1000, 3600),
    ];
    let verdicts = join_all((0..200).map(|_| store.count_quotas(&quotas))).await;
    let counted = verdicts
        .iter()
        .filter(|v| matches!(v, Ok(QuotaVerdict::Counted)))
        .count();
    assert_eq!(counted, 10, "{verdicts:?}");
    // Only the counted requests count against the second quota.
    let rest = [quota("scn:race", 10, 3600)];
    assert!(matches!(
        store.count_quotas(&rest).await.unwrap(),
        QuotaVerdict::Exceeded { quota: 0, .. }
    ));
}

pub async fn idempotency_claims_answers_and_releases(store: &dyn Store, clock: &ManualClock) {
    let lease = Duration::seconds(30);
    let keep = Duration::hours(24);
    assert_eq!(
        store.claim_idempotency("k-a", lease).await.unwrap(),
        IdempotencyClaim::Claimed
    );
    assert_eq!(
        store.claim_idempotency("k-a", lease).await.unwrap(),
        IdempotencyClaim::InProgress
    );
    store
        .answer_idempotency("k-a", r#"{"_id":"s1"}"#, keep)
        .await
        .unwrap();
    assert_eq!(
        store.claim_idempotency("k-a", lease).await.unwrap(),
        IdempotencyClaim::Answered(r#"{"_id":"s1"}"#.into())
    );
    // A failed request gives its claim up, so the retry runs.
    assert_eq!(
        store.claim_idempotency("k-b", lease).await.unwrap(),
        IdempotencyClaim::Claimed
    );
    store.release_idempotency("k-b").await.unwrap();
    assert_eq!(
        store.claim_idempotency("k-b", lease).await.unwrap(),
        IdempotencyClaim::Claimed
    );
    // Releasing never forgets an answer.
    store.release_idempotency("k-a").await.unwrap();
    assert!(matches!(
        store.claim_idempotency("k-a", lease).await.unwrap(),
        IdempotencyClaim::Answered(_)
    ));
    // A claim whose holder died runs out with its lease; an answer is kept
    // for `keep`, then forgotten.
    clock.advance(lease + Duration::seconds(1));
    assert_eq!(
        store.claim_idempotency("k-b", lease).await.unwrap(),
        IdempotencyClaim::Claimed
    );
    clock.advance(keep);
    assert_eq!(
        store.claim_idempotency("k-a", lease).await.unwrap(),
        IdempotencyClaim::Claimed
    );
}

pub async fn racing_idempotency_claims_one(store: &dyn Store, _clock: &ManualClock) {
    use futures::future::join_all;
    let claims =
        join_all((0..50).map(|_| store.claim_idempotency("k-race", Duration::seconds(30)))).await;
    let won = claims
        .iter()
        .filter(|c| matches!(c, Ok(IdempotencyClaim::Claimed)))
        .count();
    assert_eq!(won, 1, "{claims:?}");
    assert!(claims.iter().all(|c| c.is_ok()));
}

// ---------------------------------------------------------------------------
// The shared log of webhook attempts
// ---------------------------------------------------------------------------

pub async fn webhook_attempts_keep_the_newest(store: &dyn Store, _clock: &ManualClock) {
    assert_eq!(
        store.webhook_attempts(10).await.unwrap(),
        Vec::<String>::new()
    );
    for n in 1..=5 {
        store
            .log_webhook_attempt(&format!(r#"{{"n":{n}}}"#), 3)
            .await
            .unwrap();
    }
    assert_eq!(
        store.webhook_attempts(10).await.unwrap(),
        [r#"{"n":5}"#, r#"{"n":4}"#, r#"{"n":3}"#],
        "the newest 3, newest first"
    );
    assert_eq!(
        store.webhook_attempts(2).await.unwrap(),
        [r#"{"n":5}"#, r#"{"n":4}"#]
    );
    assert_eq!(
        store.webhook_attempts(0).await.unwrap(),
        Vec::<String>::new()
    );
    store.log_webhook_attempt(r#"{"n":6}"#, 0).await.unwrap();
    assert_eq!(
        store.webhook_attempts(10).await.unwrap(),
        Vec::<String>::new(),
        "keeping none keeps none"
    );
}

// ---------------------------------------------------------------------------
// Guarded creates: GMS's in-queue check and a scenario's cap
// ---------------------------------------------------------------------------

fn per_customer(limit: u32) -> CreateGuard {
    CreateGuard {
        max_active_for_customer: Some(limit),
        max_active_in_scenario: None,
    }
}

pub async fn guarded_creates_count_active_services(store: &dyn Store, clock: &ManualClock) {
    let (std_, sales_) = (standard(), sales());
    let now = clock.now();
    let two = per_customer(2);
    store
        .put_new(&created(&std_, "g1", "555", now), &two)
        .await
        .unwrap();
    // A record the caller shares counts and is refused the same way.
    let g2 = std::sync::Arc::new(created(&std_, "g2", "555", now));
    store.put_new_shared(&g2, &two).await.unwrap();
    assert_eq!(store.get("g2").await.unwrap().as_ref(), Some(&*g2));
    assert_eq!(
        store.put_new(&created(&std_, "g3", "555", now), &two).await,
        Err(StoreError::CustomerActive { limit: 2 })
    );
    assert_eq!(
        store
            .put_new_shared(&std::sync::Arc::new(created(&std_, "g3", "555", now)), &two)
            .await,
        Err(StoreError::CustomerActive { limit: 2 })
    );
    assert_eq!(
        store.get("g3").await.unwrap(),
        None,
        "a refused create writes nothing"
    );
    // Another number, another scenario and an unguarded put are not counted.
    store
        .put_new(&created(&std_, "g4", "556", now), &two)
        .await
        .unwrap();
    store
        .put_new(&created(&sales_, "g5", "555", now), &two)
        .await
        .unwrap();
    // The same write again is still the no-op success a retry needs.
    let g1 = store.get("g1").await.unwrap().unwrap();
    store.put_new(&g1, &two).await.unwrap();
    // A completed service is no longer active: its place is free.
    let later = now + Duration::seconds(5);
    must(store, &std_, "g1", Event::Cancel, later).await;
    store
        .put_new(&created(&std_, "g6", "555", later), &two)
        .await
        .unwrap();
    assert_eq!(
        store
            .put_new(&created(&std_, "g7", "555", later), &per_customer(1))
            .await,
        Err(StoreError::CustomerActive { limit: 1 })
    );

    // The scenario's cap counts every customer's active services.
    let cap = |n| CreateGuard {
        max_active_for_customer: None,
        max_active_in_scenario: Some(n),
    };
    // chat-delay holds g2, g4, g6 (g1 completed).
    assert_eq!(
        store
            .put_new(&created(&std_, "g8", "900", later), &cap(3))
            .await,
        Err(StoreError::ScenarioFull {
            scenario: "chat-delay".into(),
            limit: 3
        })
    );
    store
        .put_new(&created(&std_, "g8", "900", later), &cap(4))
        .await
        .unwrap();
    // A later write of a shared record leaves the caller's copy as it was.
    must(store, &std_, "g2", Event::Cancel, later).await;
    assert_eq!(g2.state, created(&std_, "g2", "555", now).state);
    assert_eq!(
        store.get("g2").await.unwrap().map(|r| r.state),
        Some(ServiceState::Completed)
    );
}

pub async fn racing_guarded_creates_let_through_exactly_the_limit(
    store: &dyn Store,
    clock: &ManualClock,
) {
    use futures::future::join_all;
    let scn = standard();
    let now = clock.now();
    let records: Vec<ServiceRecord> = (0..20)
        .map(|i| created(&scn, &format!("race-{i}"), "777", now))
        .collect();
    let two = per_customer(2);
    let answers = join_all(records.iter().map(|r| store.put_new(r, &two))).await;
    let passed = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(passed, 2, "{answers:?}");
    assert!(answers
        .iter()
        .all(|a| matches!(a, Ok(()) | Err(StoreError::CustomerActive { limit: 2 }))));
    let cap = CreateGuard {
        max_active_for_customer: None,
        max_active_in_scenario: Some(12),
    };
    let records: Vec<ServiceRecord> = (0..40)
        .map(|i| created(&scn, &format!("cap-{i}"), &format!("8{i:03}"), now))
        .collect();
    let answers = join_all(records.iter().map(|r| store.put_new(r, &cap))).await;
    // Two are already active in the scenario.
    assert_eq!(
        answers.iter().filter(|a| a.is_ok()).count(),
        10,
        "{answers:?}"
    );
}

/// Expands to one `#[tokio::test]` per check. `$make` is an async fn
/// returning a [`Subject`]; each test gets a fresh one.
/// A queue's oldest wait is its earliest `since`, wherever its priority
/// puts it: behind younger services of a higher priority too.
pub async fn queue_oldest_is_found_across_priorities(store: &dyn Store, _clock: &ManualClock) {
    let (std_, vip_) = (standard(), vip());
    add_agent(store, "ag", &["support"], 5, true).await;
    assert_eq!(store.queue_oldest("support").await.unwrap(), None);
    // Served first: the VIPs (priority 5), then the standard ones; the
    // oldest of all is a standard one, behind both VIPs.
    insert(store, &created(&vip_, "v1", "c1", secs(20))).await;
    insert(store, &created(&vip_, "v2", "c2", secs(30))).await;
    insert(store, &created(&std_, "s1", "c3", secs(5))).await;
    insert(store, &created(&std_, "s2", "c4", secs(10))).await;
    let mut vip_old = created(&vip_, "v0", "c5", secs(2));
    vip_old.ticket.priority = 7;
    insert(store, &vip_old).await;
    let check = |expected: Option<DateTime<Utc>>| async move {
        let from_queue = store
            .queue("support")
            .await
            .unwrap()
            .iter()
            .map(|e| e.since)
            .min();
        let found = store.queue_oldest("support").await.unwrap();
        assert_eq!(found, from_queue);
        assert_eq!(found, expected);
    };
    check(Some(secs(2))).await;
    must(store, &vip_, "v0", Event::Cancel, secs(40)).await;
    check(Some(secs(5))).await;
    must(store, &std_, "s1", Event::Cancel, secs(41)).await;
    check(Some(secs(10))).await;
    must(store, &std_, "s2", Event::Cancel, secs(42)).await;
    check(Some(secs(20))).await;
    assert_eq!(store.queue_oldest("nope").await.unwrap(), None);
}

/// The census a store keeps as it writes (what `/metrics` shows) is the
/// one counted from the records, through creates, transitions, outboxes
/// filling and emptying, completion and the purge.
pub async fn census_follows_the_records(store: &dyn Store, clock: &ManualClock) {
    use crate::record::{AgentNotification, DeviceNotification};
    async fn from_records(store: &dyn Store) -> Census {
        let mut census = Census::default();
        for state in ServiceState::ALL {
            if state != ServiceState::Completed {
                for record in store.find(&IndexKey::State(state)).await.unwrap() {
                    census.count(&record, 1);
                }
            }
        }
        census
    }
    async fn check(store: &dyn Store, step: &str) -> Census {
        let kept = store.census().await.unwrap();
        assert_eq!(kept, from_records(store).await, "{step}");
        kept
    }
    let (scn, vip_) = (standard(), vip());
    add_agent(store, "ag", &["support"], 2, true).await;
    assert_eq!(check(store, "empty").await, Census::default());
    insert(store, &created(&scn, "a", "c1", t0())).await;
    insert(store, &created(&scn, "b", "c2", t0())).await;
    insert(store, &created(&vip_, "c", "c3", t0())).await;
    let mut d = created(&scn, "d", "c4", t0());
    let notice = |id: &str| DeviceNotification {
        id: id.to_owned(),
        tag: "service.chat.refresh".to_owned(),
        payload: serde_json::json!({}),
        at: t0(),
    };
    d.outbox.extend([notice("1"), notice("2")]);
    d.agent_outbox.push(AgentNotification {
        id: "1".to_owned(),
        message: "{}".to_owned(),
        tag: "t".to_owned(),
        at: t0(),
    });
    insert(store, &d).await;
    let census = check(store, "created").await;
    let waiting = |c: &Census, s: &Arc<Scenario>, state| {
        c.services
            .get(&(s.name.clone(), state))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(waiting(&census, &scn, ServiceState::WaitForAgent), 3);
    assert_eq!(waiting(&census, &vip_, ServiceState::WaitForAgent), 1);
    let before = (census.device_outbox, census.agent_outbox);
    assert!(before.0 >= 2 && before.1 >= 1, "{census:?}");

    // An outbox emptied by a write, a service moving on, one completed.
    let mut emptied = store.get("d").await.unwrap().unwrap();
    emptied.outbox.clear();
    emptied.version += 1;
    store
        .put(&emptied, Some(emptied.version - 1))
        .await
        .unwrap();
    must(store, &scn, "a", reserved("ag"), secs(30)).await;
    must(store, &scn, "b", Event::Cancel, secs(31)).await;
    let census = check(store, "moved on").await;
    assert_eq!(waiting(&census, &scn, ServiceState::WaitForAgent), 1);
    assert_eq!(waiting(&census, &scn, ServiceState::Completed), 0);

    // Past every deadline: nothing is counted once purged.
    set_clock(clock, secs(2 * DAY) + COMPLETED_GRACE);
    store.purge_expired(clock.now()).await.unwrap();
    assert_eq!(check(store, "purged").await, Census::default());
}

#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path) => {
        $crate::store_conformance_tests!(@tests $make;
            put_compare_and_set,
            indexes_follow_state,
            queue_order_and_positions,
            requeue_keeps_its_place,
            reservation_refusals,
            agents_released_on_completion,
            timers_follow_records,
            expired_records_are_hidden_and_purged,
            completed_records_keep_a_grace_period,
            ttl_timer_completes_the_service,
            queue_stats,
            timer_claims_are_leased,
            timers_keep_their_exact_due_time,
            many_services_for_one_customer,
            racing_writers,
            seats_are_counted_and_freed,
            racing_bookings_take_exactly_the_seats_left,
            room_codes_are_unique,
            an_agent_is_in_one_room,
            racing_room_codes_one_wins,
            racing_agents_into_rooms_one_wins,
            queue_entries_carry_preference_and_video,
            queue_entries_carry_the_route,
            agent_keys_are_found_listed_and_revoked,
            quotas_count_all_or_nothing_and_reopen,
            racing_quotas_let_through_exactly_the_limit,
            idempotency_claims_answers_and_releases,
            racing_idempotency_claims_one,
            guarded_creates_count_active_services,
            racing_guarded_creates_let_through_exactly_the_limit,
            webhook_attempts_keep_the_newest,
            positions_hold_across_a_long_queue,
            standing_answers_place_and_ewt_inputs,
            device_positions_follow_the_queue,
            census_follows_the_records,
            queue_oldest_is_found_across_priorities,
        );
    };
    (@tests $make:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let subject = $make().await;
                $crate::store::conformance::$check(&*subject.store, &subject.clock).await;
            }
        )*
    };
}

//! The store conformance suite (`engine::store::conformance`) against a real
//! Redis: a redis-server of the test's own on a free port, or `REDIS_URL`
//! under a fresh namespace.

use std::sync::Arc;

use engine::clock::ManualClock;
use engine::store::conformance::{t0, Subject};
use redis_store::testing::RedisServer;
use redis_store::{RedisConfig, RedisStore};

async fn redis() -> Subject {
    subject(RedisServer::start()).await
}

/// A store on `server`, with a clock of the test's own.
async fn subject(server: RedisServer) -> Subject {
    let clock = Arc::new(ManualClock::new(t0()));
    let config = RedisConfig::parse(&server.url).unwrap();
    let store = RedisStore::connect(config, clock.clone()).await.unwrap();
    Subject {
        store: Arc::new(store),
        clock,
        guard: Box::new(server),
    }
}

engine::store_conformance_tests!(redis);

/// A Redis without functions, as before 7.0 or behind a proxy that does not
/// pass FUNCTION on: the store runs its scripts by EVALSHA instead (an FCALL
/// here would find no function, and loading the library would fail), and
/// every check holds.
mod without_functions {
    use super::*;

    async fn redis() -> Subject {
        let options = ["--rename-command", "FUNCTION", ""];
        subject(RedisServer::spawn_local_with("t", &options)).await
    }

    engine::store_conformance_tests!(redis);
}

/// The scripts are one library of functions, loaded when a node connects;
/// a Redis that lost it (restarted without persistence, or a new primary)
/// is given it again by the first call that finds it missing.
#[tokio::test]
async fn the_scripts_are_a_library_loaded_again_when_redis_lost_it() {
    use engine::store::Store;
    let deployment = Deployment::start();
    let mut raw = deployment.raw().await;
    let libraries = |raw: &mut redis::aio::MultiplexedConnection| {
        let mut raw = raw.clone();
        async move {
            let list: redis::Value = redis::cmd("FUNCTION")
                .arg("LIST")
                .arg("LIBRARYNAME")
                .arg("callbackd_*")
                .query_async(&mut raw)
                .await
                .unwrap();
            // Each function's name is a text in the answer.
            fn texts(v: &redis::Value, out: &mut Vec<String>) {
                match v {
                    redis::Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into()),
                    redis::Value::SimpleString(s) => out.push(s.clone()),
                    redis::Value::Array(items) | redis::Value::Set(items) => {
                        items.iter().for_each(|i| texts(i, out))
                    }
                    redis::Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
                        texts(k, out);
                        texts(v, out);
                    }),
                    _ => {}
                }
            }
            let mut all = Vec::new();
            texts(&list, &mut all);
            // The libraries: `callbackd_` and a hash (its functions are
            // named `callbackd_<script>_<hash>`).
            let library = |t: &str| {
                t.strip_prefix("callbackd_")
                    .is_some_and(|h| h.len() == 12 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            };
            all.iter().filter(|t| library(t)).count()
        }
    };
    assert_eq!(libraries(&mut raw).await, 0);
    let (store, _scenario, a, _b) = deployment.two_waiting().await;
    assert_eq!(libraries(&mut raw).await, 1, "one library");
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(libraries(&mut raw).await, 0);
    let standing = store.standing(&a.id).await.unwrap().expect("a waits");
    assert_eq!(standing.position, Some(1));
    assert_eq!(libraries(&mut raw).await, 1, "loaded again");
}

/// A Redis of the test's own, as a deployment: nodes connect to it, and a
/// plain connection writes what an older version would have left.
struct Deployment {
    server: RedisServer,
    clock: Arc<ManualClock>,
}

impl Deployment {
    fn start() -> Deployment {
        Deployment {
            server: RedisServer::start(),
            clock: Arc::new(ManualClock::new(t0())),
        }
    }

    /// A node connecting (and so running what a node runs on connecting).
    async fn node(&self) -> RedisStore {
        let config = RedisConfig::parse(&self.server.url).unwrap();
        RedisStore::connect(config, self.clock.clone())
            .await
            .unwrap()
    }

    async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.server.plain_url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Deployment {
    /// A node with two chat-delay services waiting in `support`: "a" of
    /// device dev-1, "b" of no device.
    async fn two_waiting(
        &self,
    ) -> (
        RedisStore,
        Arc<engine::scenario::Scenario>,
        engine::record::ServiceRecord,
        engine::record::ServiceRecord,
    ) {
        use engine::store::Store;
        let store = self.node().await;
        let scenario = engine::testing::ScenarioBuilder::chat_delay().build();
        let a = waiting(&scenario, "a", Some("dev-1"));
        let b = waiting(&scenario, "b", None);
        for rec in [&a, &b] {
            store.put(rec, None).await.unwrap();
        }
        (store, scenario, a, b)
    }
}

/// A sorted set's members with their scores, in order.
async fn zset(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<(String, f64)> {
    redis::cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(raw)
        .await
        .unwrap()
}

/// A sorted set's members, in order.
async fn members(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<String> {
    zset(raw, key).await.into_iter().map(|(m, _)| m).collect()
}

/// Service `id`'s index entry, read as a JSON value: the two MessagePack
/// maps it is written as (what reads of a place need, then the rest),
/// merged. Each field is in one of them.
async fn index_entry(
    raw: &mut redis::aio::MultiplexedConnection,
    store: &RedisStore,
    id: &str,
) -> serde_json::Value {
    let packed: Vec<u8> = redis::cmd("HGET")
        .arg(format!("{{{}}}:idx", store.namespace()))
        .arg(id)
        .query_async(raw)
        .await
        .unwrap();
    assert_ne!(packed.first(), Some(&b'{'), "written as MessagePack");
    let mut read = std::io::Cursor::new(&packed[..]);
    let mut entry: serde_json::Map<String, serde_json::Value> =
        rmp_serde::from_read(&mut read).unwrap();
    let rest: serde_json::Map<String, serde_json::Value> = rmp_serde::from_read(&mut read).unwrap();
    assert_eq!(
        read.position() as usize,
        packed.len(),
        "two maps, nothing after"
    );
    assert!(
        entry.contains_key("s") && rest.contains_key("c"),
        "{entry:?} {rest:?}"
    );
    for (k, v) in rest {
        assert!(entry.insert(k, v).is_none(), "a field in both maps");
    }
    serde_json::Value::Object(entry)
}

/// How many index entries `store`'s namespace holds.
async fn index_entries(raw: &mut redis::aio::MultiplexedConnection, store: &RedisStore) -> usize {
    redis::cmd("HLEN")
        .arg(format!("{{{}}}:idx", store.namespace()))
        .query_async(raw)
        .await
        .unwrap()
}

/// A chat-delay service waiting in `support`, of a number of its own.
fn waiting(
    scenario: &Arc<engine::scenario::Scenario>,
    id: &str,
    device: Option<&str>,
) -> engine::record::ServiceRecord {
    waiting_since(scenario, id, device, t0())
}

/// [`waiting`], created at `at`: its timers are due that much earlier or
/// later.
fn waiting_since(
    scenario: &Arc<engine::scenario::Scenario>,
    id: &str,
    device: Option<&str>,
    at: chrono::DateTime<chrono::Utc>,
) -> engine::record::ServiceRecord {
    let new = engine::machine::NewService {
        id: id.to_owned(),
        customer_number: format!("+49{id}"),
        desired_time: None,
        device_notification_id: device.map(str::to_owned),
        device_os: device.map(|_| "comet".to_owned()),
        user_data: Default::default(),
        booking: None,
        preferred_agent: None,
        video: None,
    };
    engine::machine::create(new, scenario, at).record
}

/// A deployment written before the store kept `P capacity` and `P qdev`:
/// a node that connects makes both again, so positions and the EWT's
/// capacity are right at once, without waiting for the next write.
#[tokio::test]
async fn a_node_connecting_to_an_older_deployment_makes_the_derived_hashes() {
    use engine::store::{AgentProfile, Store};
    use engine::testing::ScenarioBuilder;

    let deployment = Deployment::start();
    let store = deployment.node().await;
    let scenario = ScenarioBuilder::chat_delay().build();
    for (id, device) in [("a", "dev-1"), ("b", "dev-2"), ("c", "dev-1")] {
        store
            .put(&waiting(&scenario, id, Some(device)), None)
            .await
            .unwrap();
    }
    store
        .put_agent(AgentProfile {
            id: "ag".into(),
            name: "Agent".into(),
            queues: ["support".to_owned()].into(),
            skills: Default::default(),
            max_concurrent: 3,
            email: None,
        })
        .await
        .unwrap();
    store.set_agent_ready("ag", true).await.unwrap();
    // What an older version left: neither hash.
    let prefix = format!("{{{}}}:", store.namespace());
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}qdev"))
        .arg(format!("{prefix}capacity"))
        .query_async(&mut deployment.raw().await)
        .await
        .unwrap();
    assert!(store
        .device_positions(&["dev-1".into()])
        .await
        .unwrap()
        .is_empty());

    let node = deployment.node().await;
    let mut found: Vec<(String, usize)> = node
        .device_positions(&["dev-1".into()])
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.service, p.position))
        .collect();
    found.sort();
    assert_eq!(found, [("a".to_owned(), 1), ("c".to_owned(), 3)]);
    let standing = node.standing("b").await.unwrap().unwrap();
    assert_eq!(
        (standing.position, standing.waiting, standing.ready_capacity),
        (Some(2), 3, 3)
    );
}

/// A deployment written before the sets by (state, scenario): its services
/// are in a set per state and a set per scenario. A node that connects
/// makes the new sets from the index entries and deletes the old ones, so
/// queries by state and by scenario, and the scenario's create guard, count
/// every service at once.
#[tokio::test]
async fn a_node_connecting_to_an_older_deployment_merges_the_state_sets() {
    use engine::record::ServiceState;
    use engine::store::{CreateGuard, IndexKey, Store, StoreError};
    use engine::testing::ScenarioBuilder;

    let deployment = Deployment::start();
    let store = deployment.node().await;
    let scenario = ScenarioBuilder::chat_delay().build();
    for id in ["a", "b"] {
        store
            .put(&waiting(&scenario, id, None), None)
            .await
            .unwrap();
    }
    // What an older version kept instead: the same ids by state and by
    // scenario, and not the new sets.
    let mut raw = deployment.raw().await;
    let p = format!("{{{}}}:", store.namespace());
    let n = &scenario.name;
    let _: () = redis::pipe()
        .del(format!("{p}ids:wait_for_agent:{n}"))
        .del(format!("{p}scenarios"))
        .sadd(format!("{p}state:wait_for_agent"), &["a", "b"])
        .sadd(format!("{p}scen:{n}"), &["a", "b"])
        .query_async(&mut raw)
        .await
        .unwrap();
    let ids = |found: Vec<engine::record::ServiceRecord>| {
        let mut ids: Vec<String> = found.into_iter().map(|r| r.id).collect();
        ids.sort();
        ids
    };
    assert!(ids(store.find(&IndexKey::Scenario(n.clone())).await.unwrap()).is_empty());

    let node = deployment.node().await;
    for key in [
        IndexKey::Scenario(n.clone()),
        IndexKey::State(ServiceState::WaitForAgent),
    ] {
        assert_eq!(ids(node.find(&key).await.unwrap()), ["a", "b"], "{key:?}");
    }
    let left: usize = redis::cmd("EXISTS")
        .arg(format!("{p}state:wait_for_agent"))
        .arg(format!("{p}scen:{n}"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(left, 0, "the old sets are gone");
    // The scenario's cap counts them: two active, a cap of two refuses.
    let guard = CreateGuard {
        max_active_for_customer: None,
        max_active_in_scenario: Some(2),
    };
    assert!(matches!(
        node.put_new(&waiting(&scenario, "c", None), &guard).await,
        Err(StoreError::ScenarioFull { .. })
    ));
}

/// Index entries are MessagePack now; a service whose entry an older node
/// wrote as JSON is still undone exactly by the next write.
#[tokio::test]
async fn an_index_entry_written_as_json_is_still_read() {
    use engine::machine::{self, Event};
    use engine::record::ServiceState;
    use engine::store::{IndexKey, Store};
    use engine::testing::ScenarioBuilder;

    let deployment = Deployment::start();
    let store = deployment.node().await;
    let scenario = ScenarioBuilder::chat_delay().build();
    let rec = waiting(&scenario, "a", Some("dev-1"));
    store.put(&rec, None).await.unwrap();

    let mut raw = deployment.raw().await;
    let idx = format!("{{{}}}:idx", store.namespace());
    let entry = index_entry(&mut raw, &store, "a").await;
    let _: () = redis::cmd("HSET")
        .arg(&idx)
        .arg("a")
        .arg(entry.to_string())
        .query_async(&mut raw)
        .await
        .unwrap();

    assert_eq!(store.position("support", "a").await.unwrap(), Some((1, 1)));
    let cancelled = machine::apply(&rec, &scenario, &Event::Cancel, t0())
        .unwrap()
        .record;
    store.put(&cancelled, Some(rec.version)).await.unwrap();
    assert!(store.queue("support").await.unwrap().is_empty());
    assert!(store
        .find(&IndexKey::State(ServiceState::WaitForAgent))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .device_positions(&["dev-1".into()])
        .await
        .unwrap()
        .is_empty());
    let done = store
        .find(&IndexKey::State(ServiceState::Completed))
        .await
        .unwrap();
    assert_eq!(done.len(), 1);
}

/// Queue members carried the owning device until `P qdev` made it
/// redundant. A service whose member (and index entry, with the device as
/// `v`) an older node wrote is still placed, found by its device, moved to
/// the shorter member by its next write, and undone by the one after.
#[tokio::test]
async fn a_queue_member_written_with_the_device_is_still_found_and_undone() {
    use engine::machine::{self, Event};
    use engine::store::Store;
    use engine::testing::ScenarioBuilder;

    let deployment = Deployment::start();
    let store = deployment.node().await;
    let scenario = ScenarioBuilder::chat_delay().build();
    let a = waiting(&scenario, "a", Some("dev-1"));
    store.put(&a, None).await.unwrap();
    let mut b = waiting(&scenario, "b", None);
    b.ticket.since += chrono::Duration::seconds(1);
    store.put(&b, None).await.unwrap();

    let mut raw = deployment.raw().await;
    let p = format!("{{{}}}:", store.namespace());
    let queue = format!("{p}queue:support");
    let now = members(&mut raw, &queue).await;
    assert_eq!(now.len(), 2);
    assert!(
        now.iter()
            .all(|m| !m.contains("dev-1") && m.ends_with('\u{1f}')),
        "{now:?}"
    );
    // What the older node wrote for "a": the device in the member, and as
    // `v` in the index entry.
    let mut entry = index_entry(&mut raw, &store, "a").await;
    let device = entry.as_object_mut().unwrap().remove("w").unwrap();
    assert_eq!(device, "dev-1");
    entry["v"] = device;
    let old_member = format!("{}dev-1", now[0]);
    let _: () = redis::pipe()
        .hset(
            format!("{p}idx"),
            "a",
            rmp_serde::to_vec_named(&entry).unwrap(),
        )
        .zrem(&queue, &now[0])
        .zadd(&queue, &old_member, 0)
        .query_async(&mut raw)
        .await
        .unwrap();

    async fn check(store: &RedisStore) {
        assert_eq!(store.position("support", "a").await.unwrap(), Some((1, 2)));
        assert_eq!(store.position("support", "b").await.unwrap(), Some((2, 2)));
        let found = store.device_positions(&["dev-1".into()]).await.unwrap();
        let found: Vec<_> = found.into_iter().map(|f| (f.service, f.position)).collect();
        assert_eq!(found, [("a".to_owned(), 1)]);
        let ids: Vec<String> = store
            .queue("support")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }
    check(&store).await;
    assert!(members(&mut raw, &queue).await.contains(&old_member));

    // Its next write moves it to the member without the device.
    let mut again = a.clone();
    again.version += 1;
    store.put(&again, Some(a.version)).await.unwrap();
    check(&store).await;
    let after = members(&mut raw, &queue).await;
    assert_eq!(
        after, now,
        "the old member is gone, the new one in its place"
    );

    // And the one after that undoes it.
    let cancelled = machine::apply(&again, &scenario, &Event::Cancel, t0())
        .unwrap()
        .record;
    store.put(&cancelled, Some(again.version)).await.unwrap();
    assert_eq!(members(&mut raw, &queue).await, [now[1].clone()]);
    assert!(store
        .device_positions(&["dev-1".into()])
        .await
        .unwrap()
        .is_empty());
}

/// Timer members carried their due time (`<id>|<code>|<due ms>`, the entry's
/// `t` with the times as text) until the index entry became where a claim
/// reads it. Timers an older node wrote are still listed and claimed with
/// their due times, move to the shorter member at the service's next write
/// keeping a claim's lease, and are undone by the purge.
#[tokio::test]
async fn timers_written_with_their_due_time_still_fire_and_move() {
    use engine::store::Store;

    let deployment = Deployment::start();
    let (store, _, a, b) = deployment.two_waiting().await;
    let mut raw = deployment.raw().await;
    let p = format!("{{{}}}:", store.namespace());
    let timers = format!("{p}timers");
    let short = zset(&mut raw, &timers).await;
    assert!(
        short.iter().all(|(m, _)| m.matches('|').count() == 1),
        "{short:?}"
    );
    assert_eq!(short.len(), a.timers.len() + b.timers.len());

    // What an older node wrote: the due time in the member and as text.
    for id in ["a", "b"] {
        let mut entry = index_entry(&mut raw, &store, id).await;
        let list = entry.as_object_mut().unwrap().remove("ts").unwrap();
        let mut pipe = redis::pipe();
        let mut old = Vec::new();
        for t in list.as_array().unwrap() {
            let (code, due) = (t[0].as_u64().unwrap(), t[1].as_i64().unwrap());
            pipe.zrem(&timers, format!("{id}|{code}")).zadd(
                &timers,
                format!("{id}|{code}|{due}"),
                due,
            );
            old.push(serde_json::json!([code, due.to_string()]));
        }
        entry["t"] = old.into();
        entry["d"] = entry["d"].as_i64().unwrap().to_string().into();
        let _: () = pipe
            .hset(
                format!("{p}idx"),
                id,
                rmp_serde::to_vec_named(&entry).unwrap(),
            )
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    let mut listed = store
        .due_timers(a.storage_deadline(), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.id, t.kind, t.due))
        .collect::<Vec<_>>();
    listed.sort();
    let mut expected: Vec<_> = [&a, &b]
        .iter()
        .flat_map(|r| r.timers.iter().map(|(k, d)| (r.id.clone(), *k, *d)))
        .collect();
    expected.sort();
    assert_eq!(listed, expected);

    // A claim reads the due time from the old member and leases it.
    let (kind, due) = a
        .timers
        .iter()
        .min_by_key(|(_, d)| **d)
        .map(|(k, d)| (*k, *d))
        .unwrap();
    let lease = chrono::Duration::seconds(30);
    let claimed = store.claim_due_timers(due, lease, 10).await.unwrap();
    assert!(
        claimed
            .iter()
            .any(|t| t.id == "a" && t.kind == kind && t.due == due),
        "{claimed:?}"
    );
    // As an older node scored a lease: a whole number of ms.
    let leased = redis_store_ms(due + lease);
    let _: () = redis::cmd("ZADD")
        .arg(&timers)
        .arg("XX")
        .arg(leased)
        .arg(format!(
            "a|{}|{}",
            short_code(&short, "a", due),
            redis_store_ms(due)
        ))
        .query_async(&mut raw)
        .await
        .unwrap();

    // The next write moves a's timers to the short members, the claim's
    // lease with it.
    let mut again = a.clone();
    again.version += 1;
    store.put(&again, Some(a.version)).await.unwrap();
    let now = zset(&mut raw, &timers).await;
    let of_a: Vec<&(String, f64)> = now.iter().filter(|(m, _)| m.starts_with("a|")).collect();
    assert!(
        of_a.iter().all(|(m, _)| m.matches('|').count() == 1),
        "{of_a:?}"
    );
    let mut got: Vec<f64> = of_a.iter().map(|(_, score)| *score).collect();
    got.sort_by(f64::total_cmp);
    // The lease now marked as one (half a ms less), the other timer at its due time.
    let mut want: Vec<f64> = a
        .timers
        .iter()
        .map(|(_, d)| {
            if *d == due {
                leased as f64 - 0.5
            } else {
                redis_store_ms(*d) as f64
            }
        })
        .collect();
    want.sort_by(f64::total_cmp);
    assert_eq!(got, want);
    let claimed = store.claim_due_timers(due, lease, 10).await.unwrap();
    assert!(
        !claimed.iter().any(|t| t.id == "a" && t.kind == kind),
        "still leased: {claimed:?}"
    );
    // Once the lease has run out, a claim reads its due time from the entry.
    let later = due + lease + chrono::Duration::milliseconds(1);
    let claimed = store.claim_due_timers(later, lease, 10).await.unwrap();
    assert!(
        claimed
            .iter()
            .any(|t| t.id == "a" && t.kind == kind && t.due == due),
        "{claimed:?}"
    );

    // The purge undoes b's old members (and a's new ones).
    let after = b.storage_deadline().max(again.storage_deadline()) + chrono::Duration::seconds(1);
    assert_eq!(store.purge_expired(after).await.unwrap(), 2);
    assert_eq!(zset(&mut raw, &timers).await, []);
}

fn redis_store_ms(at: chrono::DateTime<chrono::Utc>) -> i64 {
    at.timestamp_millis()
}

/// The kind code of service `id`'s timer due at `due`, among short members
/// and their scores.
fn short_code(members: &[(String, f64)], id: &str, due: chrono::DateTime<chrono::Utc>) -> String {
    let (member, _) = members
        .iter()
        .find(|(m, score)| m.starts_with(&format!("{id}|")) && *score == redis_store_ms(due) as f64)
        .expect("a timer due then");
    member[id.len() + 1..].to_owned()
}

/// An active service is not in `P deadlines`: its TTL timer, due a grace
/// before its storage deadline, is how the purge finds it, claimed or not.
/// A completed one is. A service an older node put in `P deadlines` (at a
/// time since moved) is not forgotten early, and leaves that set.
#[tokio::test]
async fn the_purge_finds_active_services_by_their_timers() {
    use engine::machine::{self, Event};
    use engine::store::Store;

    let deployment = Deployment::start();
    let (store, scenario, a, b) = deployment.two_waiting().await;
    let cancelled = machine::apply(&b, &scenario, &Event::Cancel, t0())
        .unwrap()
        .record;
    store.put(&cancelled, Some(b.version)).await.unwrap();
    let mut raw = deployment.raw().await;
    let deadlines = format!("{{{}}}:deadlines", store.namespace());
    let ms = |t: chrono::DateTime<chrono::Utc>| t.timestamp_millis();
    assert_eq!(
        zset(&mut raw, &deadlines).await,
        [("b".to_owned(), ms(cancelled.storage_deadline()) as f64)]
    );

    // An older node listed a, at a time its deadline has since moved from.
    let early = t0() + chrono::Duration::seconds(1);
    let _: () = redis::cmd("ZADD")
        .arg(&deadlines)
        .arg(ms(early))
        .arg("a")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(store.purge_expired(early).await.unwrap(), 0);
    assert_eq!(store.position("support", "a").await.unwrap(), Some((1, 1)));
    assert_eq!(zset(&mut raw, &deadlines).await.len(), 1, "a left it");

    // A node claims a's timers and dies: past its deadline and the lease,
    // the purge still finds it, and leaves nothing of it.
    let lease = chrono::Duration::seconds(10);
    let ttl = a.expiration_time;
    assert!(!store
        .claim_due_timers(ttl, lease, 10)
        .await
        .unwrap()
        .is_empty());
    let after = a.storage_deadline().max(cancelled.storage_deadline()) + lease;
    assert_eq!(store.purge_expired(after).await.unwrap(), 2);
    assert_eq!(store.queue("support").await.unwrap(), []);
    assert_eq!(zset(&mut raw, &deadlines).await, []);
    assert_eq!(
        zset(&mut raw, &format!("{{{}}}:timers", store.namespace())).await,
        []
    );
    assert_eq!(index_entries(&mut raw, &store).await, 0);
}

/// A service past its storage deadline whose timer a live node claimed but
/// could not fire (the record is gone): the claim after the lease forgets
/// it, rather than leasing it again for ever out of the purge's sight.
#[tokio::test]
async fn a_claimed_timer_of_an_expired_service_does_not_keep_it() {
    use engine::store::Store;
    use engine::testing::ScenarioBuilder;

    let deployment = Deployment::start();
    let store = deployment.node().await;
    let scenario = ScenarioBuilder::chat_delay().build();
    let a = waiting(&scenario, "a", Some("dev-1"));
    store.put(&a, None).await.unwrap();
    let lease = chrono::Duration::seconds(10);
    let past = a.storage_deadline() + chrono::Duration::seconds(1);
    // Claimed, never fired: the timer loop runs before the sweeper.
    let claimed = store.claim_due_timers(past, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), a.timers.len());
    assert_eq!(
        store.purge_expired(past).await.unwrap(),
        0,
        "leased out of sight"
    );
    // After the lease, the claim meets it again, and forgets it.
    let later = past + lease;
    assert_eq!(store.claim_due_timers(later, lease, 10).await.unwrap(), []);
    assert_eq!(store.queue("support").await.unwrap(), []);
    assert_eq!(store.next_timer().await.unwrap(), None);
    assert!(store
        .device_positions(&["dev-1".into()])
        .await
        .unwrap()
        .is_empty());
    let mut raw = deployment.raw().await;
    assert_eq!(index_entries(&mut raw, &store).await, 0);
}

/// Other nodes' timer loops sleep until the earliest timer they saw, and
/// look at the store again within `TIMER_BACKSTOP` whatever happens: a
/// write wakes them (PUBLISH on `P wake`) when a timer it sets is then the
/// earliest stored and due within `WAKE_HORIZON` (twice the backstop), and
/// only then. Through the put script, and through the create script
/// (`put_new`).
#[tokio::test]
async fn a_write_wakes_the_timer_loops_only_for_a_new_earliest_timer() {
    use engine::clock::Clock;
    use engine::store::{CreateGuard, Store};
    for by_put_new in [false, true] {
        let deployment = Deployment::start();
        let store = deployment.node().await;
        let scenario = engine::testing::ScenarioBuilder::chat_delay().build();
        let client = redis::Client::open(deployment.server.plain_url.as_str()).unwrap();
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub
            .subscribe(format!("{{{}}}:wake", store.namespace()))
            .await
            .unwrap();
        let mut wakes = pubsub.on_message();
        // Whether a wake-up comes within `wait_ms`.
        async fn woke(wakes: &mut (impl futures_util::Stream + Unpin), wait_ms: u64) -> bool {
            use futures_util::StreamExt;
            let wait = std::time::Duration::from_millis(wait_ms);
            tokio::time::timeout(wait, wakes.next()).await.is_ok()
        }
        // A service whose earliest timer is due `seconds` after now.
        let now = deployment.clock.now();
        let lead = {
            let probe = waiting_since(&scenario, "probe", None, now);
            probe.timers.values().min().copied().unwrap() - now
        };
        let due_in = |id: &str, seconds: i64| {
            let at = now + chrono::Duration::seconds(seconds) - lead;
            waiting_since(&scenario, id, None, at)
        };
        let horizon = engine::store::WAKE_HORIZON.as_secs() as i64;
        // (service, seconds from now its earliest timer is due at, a wake-up?)
        let cases = [
            // The earliest stored, but due when every loop has looked again.
            ("far", horizon, false),
            ("first", 30, true),
            ("later", 40, false),
            ("earlier", 20, true),
            ("between", 25, false),
            // Overdue: the earliest, and woken for at once.
            ("overdue", -5, true),
        ];
        for (id, seconds, expected) in cases {
            let rec = due_in(id, seconds);
            if by_put_new {
                store.put_new(&rec, &CreateGuard::default()).await.unwrap();
            } else {
                store.put(&rec, None).await.unwrap();
            }
            // A wake-up comes at once; none is waited for a little.
            let wait = if expected { 5_000 } else { 300 };
            assert_eq!(woke(&mut wakes, wait).await, expected, "{id} {by_put_new}");
        }
        // The earliest timer's own service moves it later: no wake-up, since
        // its new time is not the earliest any more; then earlier than all.
        for (seconds, expected) in [(35, false), (-10, true)] {
            let stored = store.get("overdue").await.unwrap().unwrap();
            let mut moved = due_in("overdue", seconds);
            moved.version = stored.version + 1;
            store.put(&moved, Some(stored.version)).await.unwrap();
            let wait = if expected { 5_000 } else { 300 };
            assert_eq!(woke(&mut wakes, wait).await, expected, "moved {seconds}");
        }
    }
}

/// A publish answers how many listeners heard it, and a subscription says
/// when it is up and when it was lost: what the push relay needs to tell
/// whether another node listens.
#[tokio::test]
async fn a_publish_counts_its_listeners_and_a_subscription_says_when_it_is_up() {
    use std::time::Duration;
    let deployment = Deployment::start();
    let a = deployment.node().await;
    let b = deployment.node().await;
    let within = Duration::from_secs(5);
    assert_eq!(
        a.publish("relay", vec![b"nobody".to_vec()]).await,
        Ok(Some(0))
    );

    let mut heard = a.messages("relay", 16);
    tokio::time::timeout(within, heard.listening.wait_for(|up| *up))
        .await
        .expect("subscribed within 5 s")
        .unwrap();
    let batch = vec![b"one".to_vec(), b"two".to_vec()];
    assert_eq!(b.publish("relay", batch).await, Ok(Some(1)));
    for expected in ["one", "two"] {
        let got = tokio::time::timeout(within, heard.messages.recv()).await;
        assert_eq!(got.unwrap().unwrap(), expected.as_bytes());
    }
    let mut also = b.messages("relay", 16);
    tokio::time::timeout(within, also.listening.wait_for(|up| *up))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        a.publish("relay", vec![b"three".to_vec()]).await,
        Ok(Some(2))
    );

    // The subscription's connection is killed: it says so, and comes back.
    let mut raw = deployment.raw().await;
    heard.listening.borrow_and_update();
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut raw)
        .await
        .unwrap();
    tokio::time::timeout(within, heard.listening.wait_for(|up| !*up))
        .await
        .expect("lost within 5 s")
        .unwrap();
    tokio::time::timeout(within, heard.listening.wait_for(|up| *up))
        .await
        .expect("subscribed again within 5 s")
        .unwrap();
    assert_eq!(
        a.publish("relay", vec![b"four".to_vec()]).await,
        Ok(Some(2))
    );
}

/// A queue's sample counts and sums are written with its lists, so
/// check-queue-position reads two numbers a kind, not the lists; the
/// window holds, and the averages are the ones the lists give. Lists that
/// a node before the sums wrote (no sums hash) are still summed.
#[tokio::test]
async fn a_queue_s_sample_sums_are_kept_with_its_lists() {
    use engine::stats::{SampleKind, WINDOW};
    use engine::store::Store;
    let deployment = Deployment::start();
    let mut raw = deployment.raw().await;
    let (store, _scenario, a, _b) = deployment.two_waiting().await;
    let sums_key = format!("{{{}}}:stats:support:sums", store.namespace());
    let sums = |raw: &mut redis::aio::MultiplexedConnection| {
        let (mut raw, key) = (raw.clone(), sums_key.clone());
        async move {
            let all: std::collections::BTreeMap<String, String> = redis::cmd("HGETALL")
                .arg(key)
                .query_async(&mut raw)
                .await
                .unwrap();
            all
        }
    };
    for seconds in [30.5, 10.25] {
        store
            .add_sample("support", SampleKind::Wait, seconds)
            .await
            .unwrap();
    }
    store
        .add_sample("support", SampleKind::Handle, 200.0)
        .await
        .unwrap();
    let expected: std::collections::BTreeMap<String, String> = [
        ("wait:n", "2"),
        ("wait:sum", "40.75"),
        ("handle:n", "1"),
        ("handle:sum", "200"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(sums(&mut raw).await, expected);
    async fn averages(store: &RedisStore, id: &str) -> engine::stats::QueueAverages {
        store.standing(id).await.unwrap().expect("a waits").averages
    }
    let read = averages(&store, &a.id).await;
    assert_eq!((read.wait, read.handle), (Some(20.375), Some(200.0)));

    // Past the window: the oldest go, from the list and from the sum.
    for n in 0..WINDOW + 10 {
        store
            .add_sample("support", SampleKind::Wait, n as f64)
            .await
            .unwrap();
    }
    let kept: f64 = (10..WINDOW + 10).map(|n| n as f64).sum();
    let now = sums(&mut raw).await;
    assert_eq!(now["wait:n"], WINDOW.to_string());
    assert_eq!(now["wait:sum"].parse::<f64>().unwrap(), kept);
    assert_eq!(
        averages(&store, &a.id).await.wait,
        Some(kept / WINDOW as f64)
    );
    let stats = store.queue_stats("support").await.unwrap();
    assert_eq!(stats.waits.len(), WINDOW);
    assert_eq!(stats.waits.iter().sum::<f64>(), kept);

    // check-queue-position reads the sums, not the lists.
    let _: () = redis::cmd("HSET")
        .arg(&sums_key)
        .arg("wait:n")
        .arg("1")
        .arg("wait:sum")
        .arg("7")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(averages(&store, &a.id).await.wait, Some(7.0));

    // Lists without sums (as a node before them left them): summed as read.
    let _: () = redis::cmd("DEL")
        .arg(&sums_key)
        .query_async(&mut raw)
        .await
        .unwrap();
    let read = averages(&store, &a.id).await;
    assert_eq!(
        (read.wait, read.handle),
        (Some(kept / WINDOW as f64), Some(200.0))
    );
}

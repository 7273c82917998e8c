//! The store on a three-master Redis Cluster (`testing::RedisCluster`, the
//! cluster `scripts/redis-cluster.sh` starts): the whole conformance suite,
//! and checks that a deployment's keys share one slot while deployments
//! spread over the nodes.
//!
//! Forming a cluster takes about two seconds, so the tests share one (a
//! `static`), each under a namespace of its own. Its nodes stop when this
//! test process exits (see `RedisCluster`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use engine::clock::ManualClock;
use engine::machine::{self, NewService};
use engine::scenario::Scenario;
use engine::store::conformance::{t0, Subject};
use engine::store::Store;
use engine::testing::ScenarioBuilder;
use redis::AsyncCommands;
use redis_store::testing::RedisCluster;
use redis_store::{RedisConfig, RedisStore};

static CLUSTER: LazyLock<RedisCluster> = LazyLock::new(RedisCluster::start);

async fn store_in(namespace: &str) -> (RedisStore, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(t0()));
    let config = RedisConfig::parse(&CLUSTER.url_with_namespace(namespace)).unwrap();
    let store = RedisStore::connect(config, clock.clone()).await.unwrap();
    (store, clock)
}

async fn cluster() -> Subject {
    let namespace = format!("t{}", uuid::Uuid::new_v4().simple());
    let (store, clock) = store_in(&namespace).await;
    Subject {
        store: Arc::new(store),
        clock,
        guard: Box::new(()),
    }
}

engine::store_conformance_tests!(cluster);

/// A scenario whose services wait in queue "support" with timers armed.
fn support() -> Arc<Scenario> {
    ScenarioBuilder::chat_delay().build()
}

/// Writes service `id` through the store, as the shell would create it.
async fn create(store: &RedisStore, id: &str) {
    create_at(store, id, t0()).await
}

/// [`create`] at `at`: its timers are due that much earlier or later.
async fn create_at(store: &RedisStore, id: &str, at: chrono::DateTime<chrono::Utc>) {
    let rec = machine::create(new_service(id), &support(), at).record;
    store.put(&rec, None).await.unwrap();
}

/// Service `id` as a create request gives it.
fn new_service(id: &str) -> NewService {
    NewService {
        id: id.to_owned(),
        customer_number: "+4912345".to_owned(),
        desired_time: None,
        device_notification_id: None,
        device_os: None,
        user_data: BTreeMap::new(),
        booking: None,
        preferred_agent: None,
        video: None,
    }
}

/// `CLUSTER NODES` as slot ranges -> node address (`127.0.0.1:PORT`).
async fn slot_owners(conn: &mut impl redis::aio::ConnectionLike) -> Vec<(u16, u16, String)> {
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(conn)
        .await
        .unwrap();
    let mut owners = Vec::new();
    for line in nodes.lines() {
        // <id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot>...
        let fields: Vec<&str> = line.split_whitespace().collect();
        let addr = fields[1].split('@').next().unwrap();
        for range in fields.iter().skip(8).filter(|f| !f.starts_with('[')) {
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            owners.push((lo.parse().unwrap(), hi.parse().unwrap(), addr.to_owned()));
        }
    }
    owners
}

async fn keyslot(conn: &mut impl redis::aio::ConnectionLike, key: &str) -> u16 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
}

/// One deployment's keys share a slot (so its scripts run on one node),
/// and three deployments land on three different nodes. The namespaces are
/// chosen by their slots (CRC16 of the hash tag, mod 16384): blue -> 4383,
/// green -> 6201, red -> 11925, one in each third that `--cluster create`
/// gives the three masters (0-5460, 5461-10922, 10923-16383).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_share_a_slot_and_deployments_spread() {
    let client = redis::cluster::ClusterClient::new(CLUSTER.nodes.clone()).unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    let owners = slot_owners(&mut conn).await;
    assert_eq!(
        owners.len(),
        3,
        "three masters, one slot range each: {owners:?}"
    );
    let owner = |slot: u16| {
        owners
            .iter()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
            .map(|(_, _, addr)| addr.clone())
            .unwrap_or_else(|| panic!("slot {slot} has no owner: {owners:?}"))
    };

    let mut nodes_used = BTreeSet::new();
    for (namespace, expected_slot) in [("blue", 4383), ("green", 6201), ("red", 11925)] {
        let (store, _clock) = store_in(namespace).await;
        for n in 0..3 {
            create(&store, &format!("svc-{n}")).await;
        }
        assert_eq!(store.get("svc-1").await.unwrap().unwrap().id, "svc-1");

        let record_key = format!("{{{namespace}}}:svc:svc-1");
        let slot = keyslot(&mut conn, &record_key).await;
        assert_eq!(slot, expected_slot, "{record_key}");
        for key in [
            "queues",
            "timers",
            "idx",
            "scenarios",
            "ids:wait_for_agent:chat-delay",
        ] {
            let key = format!("{{{namespace}}}:{key}");
            assert_eq!(
                keyslot(&mut conn, &key).await,
                slot,
                "{key} vs {record_key}"
            );
        }

        // The record really is on the node that owns the slot: a plain
        // (non-cluster) connection to that node finds it there.
        let node = owner(slot);
        let plain = redis::Client::open(format!("redis://{node}")).unwrap();
        let mut on_node = plain.get_multiplexed_async_connection().await.unwrap();
        let found: usize = on_node.exists(&record_key).await.unwrap();
        assert_eq!(found, 1, "{record_key} on {node}");
        let queues: Vec<String> = on_node
            .smembers(format!("{{{namespace}}}:queues"))
            .await
            .unwrap();
        assert_eq!(queues, ["support"], "{namespace} on {node}");
        nodes_used.insert(node);
    }
    assert_eq!(nodes_used.len(), 3, "deployments on {nodes_used:?}");
}

/// The timer wake channel is subscribed on the first seed node; a write in a
/// namespace whose slot another node owns must still reach it (a classic
/// PUBLISH is forwarded to every node of the cluster).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_wakeups_cross_nodes() {
    use futures_util::StreamExt;
    // "wake-red" is in slot 14851, which the third node owns.
    let namespace = "wake-red";
    let client = redis::cluster::ClusterClient::new(CLUSTER.nodes.clone()).unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    let slot = keyslot(&mut conn, &format!("{{{namespace}}}:svc:x")).await;
    let first = format!("127.0.0.1:{}", CLUSTER.ports[0]);
    let owners = slot_owners(&mut conn).await;
    assert!(
        owners
            .iter()
            .any(|(lo, hi, addr)| (*lo..=*hi).contains(&slot) && *addr != first),
        "slot {slot} should not be on {first}: {owners:?}"
    );

    let (store, clock) = store_in(namespace).await;
    // A write wakes the loops only for a timer due within WAKE_HORIZON:
    // the clock stands 10 s before the first service's earliest timer.
    let probe = machine::create(new_service("probe"), &support(), t0()).record;
    let first_due = *probe.timers.values().min().unwrap();
    clock.advance(first_due - t0() - chrono::Duration::seconds(10));
    // What the store's listener sees: the channel on the first node.
    let plain = redis::Client::open(CLUSTER.nodes[0].as_str()).unwrap();
    let mut pubsub = plain.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(format!("{{{namespace}}}:wake"))
        .await
        .unwrap();
    let mut wakeups = store.timer_wakeups();
    create(&store, "wake-0").await; // arms its timers: publishes a wake-up
    let message = tokio::time::timeout(Duration::from_secs(5), pubsub.on_message().next())
        .await
        .expect("no wake-up on the first node within 5 s");
    assert!(message.is_some());

    // The store's own listener subscribes in the background: keep arming
    // timers until it hears one. A write publishes only for a timer due
    // before every stored one, so each is created a minute earlier.
    let heard = async {
        for n in 1.. {
            let earlier = t0() - chrono::Duration::minutes(n);
            create_at(&store, &format!("wake-{n}"), earlier).await;
            let next = tokio::time::timeout(Duration::from_millis(200), wakeups.changed());
            if next.await.is_ok() {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), heard)
        .await
        .expect("the store heard no wake-up within 10 s");
}

/// On a cluster a PUBLISH counts only the listeners of the server that took
/// it, so a publish cannot tell whether another node listens: it says so.
#[tokio::test]
async fn a_publish_on_a_cluster_does_not_claim_to_count_its_listeners() {
    let (store, _clock) = store_in("relay-count").await;
    let heard = store.messages("relay", 16);
    let mut listening = heard.listening;
    tokio::time::timeout(Duration::from_secs(5), listening.wait_for(|up| *up))
        .await
        .expect("subscribed within 5 s")
        .unwrap();
    assert_eq!(store.publish("relay", vec![b"x".to_vec()]).await, Ok(None));
}

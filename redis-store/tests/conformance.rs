//! The store conformance suite (`engine::store::conformance`) against a real
//! Redis: a redis-server of the test's own on a free port, or `REDIS_URL`
//! under a fresh namespace.

use std::sync::Arc;

use engine::clock::ManualClock;
use engine::store::conformance::{t0, Subject};
use redis_store::testing::RedisServer;
use redis_store::{RedisConfig, RedisStore};

async fn redis() -> Subject {
    let server = RedisServer::start();
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

/// A chat-delay service waiting in `support`, of a number of its own.
fn waiting(
    scenario: &Arc<engine::scenario::Scenario>,
    id: &str,
    device: Option<&str>,
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
    engine::machine::create(new, scenario, t0()).record
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
    let packed: Vec<u8> = redis::cmd("HGET")
        .arg(&idx)
        .arg("a")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_ne!(packed.first(), Some(&b'{'), "written as MessagePack");
    let entry: serde_json::Value = rmp_serde::from_slice(&packed).unwrap();
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

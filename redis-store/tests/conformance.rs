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

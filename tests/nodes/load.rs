//! Two nodes on one Redis under load: 500 callbacks and 20 agents spread
//! over both. Every service is routed exactly once and no agent goes over
//! its limit, also when a node is killed with SIGKILL halfway, and when
//! Redis itself is killed and started again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_store::testing::RedisServer;
use tokio::sync::Mutex;

use crate::support::*;

const SERVICES: usize = 500;
const AGENTS: usize = 20;
const SEATS: u32 = 2;
/// How many customers create at once.
const CONCURRENCY: usize = 16;

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// SIGKILL node b after half the services are created.
    KillNode,
    /// SIGKILL redis-server after half, start it again a moment later.
    RestartRedis,
}

async fn run(fault: Fault) {
    let redis = match fault {
        // This test stops Redis, so it must be a server of its own.
        Fault::RestartRedis => RedisServer::spawn_local("outage"),
        _ => RedisServer::start(),
    };
    let site = Arc::new(Mutex::new(Site::start(2, redis).await));
    let lb = site.lock().await.balancer();
    let (desks, agents) = start_agents(&lb, AGENTS, SEATS, Duration::from_millis(5)).await;

    let mut ids = Vec::new();
    let created = Arc::new(std::sync::Mutex::new(Vec::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let half = Arc::new(tokio::sync::Notify::new());
    let mut customers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (lb, created, next, half) = (lb.clone(), created.clone(), next.clone(), half.clone());
        customers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= SERVICES {
                    return;
                }
                if i == SERVICES / 2 {
                    half.notify_one();
                }
                let customer = format!("555{i:04}");
                let id = lb
                    .create(None, "load", &[("_customer_number", &customer)])
                    .await;
                created.lock().unwrap().push(id);
            }
        }));
    }

    half.notified().await;
    // Scheduled callbacks created on node b just now, due in two seconds:
    // b armed their timers, and they must fire even though b is killed
    // before they are due (another node gets b's wake-up through Redis).
    let due = tests::iso_utc_in(Duration::from_secs(2));
    for i in 0..10 {
        let customer = format!("777{i:04}");
        ids.push(
            lb.create(
                Some(1),
                "load",
                &[("_customer_number", &customer), ("_desired_time", &due)],
            )
            .await,
        );
    }
    match fault {
        Fault::None => {}
        Fault::KillNode => site.lock().await.nodes[1].kill9(),
        Fault::RestartRedis => {
            let mut site = site.lock().await;
            site.redis.kill();
            // While Redis is down, a node answers 503 with a reason, quickly.
            let app = &site.nodes[0].app;
            let started = Instant::now();
            let (status, body) = app.get(&format!("/api/v1/services/{}", ids[0])).await;
            assert_eq!(status, 503, "{body}");
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .contains("store unavailable"),
                "{body}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{:?}",
                started.elapsed()
            );
            assert_eq!(app.try_get("/healthz").await.0, Some(503));
            tokio::time::sleep(Duration::from_secs(1)).await;
            site.redis.restart();
        }
    }

    for c in customers {
        c.await.unwrap();
    }
    ids.extend(created.lock().unwrap().iter().cloned());
    assert_eq!(ids.len(), SERVICES + 10);

    let mut records = {
        let site = site.lock().await;
        wait_all_completed(&lb, &ids, Duration::from_secs(120), &site).await
    };
    desks.stop.store(true, Ordering::Relaxed);
    for a in agents {
        a.await.unwrap();
    }
    records.extend(orphans(&lb, &ids, &desks).await);
    check_routed_exactly_once(&records, &desks, SEATS, lb.resent.load(Ordering::Relaxed));

    let mut site = site.lock().await;
    if fault == Fault::RestartRedis {
        // Both nodes recovered by themselves: the same processes, healthy.
        for node in &mut site.nodes {
            assert!(node.is_running(), "node {} exited", node.name);
            assert_eq!(node.app.try_get("/healthz").await.0, Some(200));
        }
        assert!(
            lb.unavailable.load(Ordering::Relaxed) > 0,
            "the outage was seen"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_route_every_service_exactly_once() {
    run(Fault::None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_nothing() {
    run(Fault::KillNode).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_recover_from_a_redis_restart_under_load() {
    run(Fault::RestartRedis).await;
}

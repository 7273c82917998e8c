//! Redis slow or down: requests answer 503 with a reason within the store
//! timeout, the node keeps running, and it serves again by itself after.

use std::process::Command;
use std::time::{Duration, Instant};

use redis_store::testing::RedisServer;

use crate::support::Site;

/// `--store-timeout` is 2 s by default; allow for a slow machine.
const BOUND: Duration = Duration::from_millis(3500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_answers_503_in_bounded_time_then_recovers() {
    let mut site = Site::start(1, RedisServer::spawn_local("slow")).await;
    let app = tests::TestApp::at(site.nodes[0].app.base.clone());
    let id = app.create("chat-delay", "5550100").await;

    // Redis hangs: connections stay open, nothing answers.
    site.redis.pause();

    let started = Instant::now();
    let (status, body) = app.get(&format!("/api/v1/services/{id}")).await;
    let took = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert!(took < BOUND, "answered after {took:?}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("store unavailable: redis:"), "{body}");
    assert_eq!(body["exception"], "STORE_UNAVAILABLE");

    let started = Instant::now();
    let (status, body) = app
        .post_form(
            "/genesys/1/service/callback/chat-delay",
            &[("_customer_number", "5550101")],
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(started.elapsed() < BOUND);

    assert_eq!(app.try_get("/healthz").await.0, Some(503));
    site.redis.resume();
    // Back by itself: the same process serves the service it had.
    assert!(site.nodes[0].is_running());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = app.try_get(&format!("/api/v1/services/{id}")).await;
        if status == Some(200) {
            assert_eq!(body["_callback_state"], "QUEUED", "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "not back: {status:?} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.queue_position(&id).await["_position"], 1);
    // The create answered 503 had already been sent to Redis, which may run
    // it once it wakes up; if so, it landed whole: record, index and queue.
    let (_, found) = app
        .get("/genesys/1/service/callback/chat-delay?_customer_number=5550101")
        .await;
    let found = found.as_array().cloned().unwrap_or_default();
    assert!(found.len() <= 1, "{found:?}");
    if let Some(late) = found.first() {
        let late_id = late["_id"].as_str().unwrap();
        assert_eq!(app.queue_position(late_id).await["_position"], 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_while_redis_is_down_says_so_and_exits() {
    let port = redis_store::testing::free_port();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(crate::support::NODE_BIN)
        .args(["--listen", "127.0.0.1:0", "--store"])
        .arg(format!("redis://127.0.0.1:{port}/0"))
        .arg("--scenarios")
        .arg(tests::shipped_scenarios_dir())
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "--store: cannot reach Redis at redis://127.0.0.1:{port}/0"
        )),
        "{stderr}"
    );
}

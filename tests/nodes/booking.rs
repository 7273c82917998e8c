//! Booked callbacks on Redis with several nodes: seats are taken atomically
//! across nodes, and a booked service survives a restart of every node and
//! enters the queue (and sends its reminder) exactly once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use engine::testing::ScenarioBuilder;
use futures_util::future::join_all;
use redis_store::testing::RedisServer;
use serde_json::Value;
use tests::time::iso;

use crate::support::Site;

/// Open around the clock in UTC, 5-minute slots of `seats` seats; `extra`
/// are more `[_schedule.*]` tables.
fn booking_scenario(name: &str, seats: u32, extra: &str) -> ScenarioBuilder {
    ScenarioBuilder::new(name)
        .key("_media_type", r#""video""#)
        .unset("_wait_for_user_confirm")
        .key("_ttl", r#""1h""#)
        .key(
            "_target",
            &format!("{{ queue = \"nobody-{name}\", priority = 0 }}"),
        )
        .always_open(
            "timezone = \"UTC\"\nslot = \"5m\"\nmin_notice = \"0s\"\nhorizon = \"1d\"",
            seats,
            extra,
        )
}

/// The first 5-minute slot starting at least `ahead` from now.
fn slot_after(ahead: chrono::Duration) -> DateTime<Utc> {
    let five = chrono::Duration::minutes(5);
    let t = Utc::now() + ahead;
    let down = t.duration_trunc(five).unwrap();
    if down < t {
        down + five
    } else {
        down
    }
}

#[tokio::test]
async fn racing_bookings_on_two_nodes_take_exactly_the_seats_there_are() {
    let scenario = booking_scenario("race", 10, "");
    // A thousand writes at once on a shared 2-core machine can keep Redis
    // busy past the default 2 s: this test is about atomicity, not about
    // answering 503 in time.
    let site = Site::start_with_env(
        2,
        RedisServer::start(),
        &[scenario],
        &[("CALLBACKD_STORE_TIMEOUT", "20s")],
    )
    .await;
    let slot = slot_after(chrono::Duration::minutes(10));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let bases: Vec<String> = site.nodes.iter().map(|n| n.app.base.clone()).collect();
    let desired = iso(slot);
    // 1,000 customers, half on each node, all in flight at once.
    let answers = join_all((0..1000).map(|i| {
        let url = format!("{}/genesys/1/service/callback/race", bases[i % 2]);
        let form = tests::multipart(&[
            ("_customer_number", &format!("555{i:04}")),
            ("_desired_time", &desired),
        ]);
        let client = client.clone();
        async move {
            let resp = client.post(url).multipart(form).send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    }))
    .await;
    let won = answers.iter().filter(|(s, _)| *s == 200).count();
    let full = answers
        .iter()
        .filter(|(s, b)| *s == 409 && b["exception"] == "SLOT_UNAVAILABLE")
        .count();
    assert_eq!((won, full), (10, 990), "{}", site.logs());
    // Every node sees the slot gone, and the slots next to it offered.
    for node in &site.nodes {
        let (status, open) = node
            .app
            .get(&format!(
                "/genesys/2/service/callback/race/availability?start={}&end={}&report-busy=true",
                iso(slot),
                iso(slot + chrono::Duration::minutes(10))
            ))
            .await;
        assert_eq!(status, 200, "{open}");
        assert_eq!(open["slots"][0]["utcTime"], desired);
        assert_eq!(open["slots"][0]["capacity"], 0);
        assert_eq!(open["slots"][0]["total"], 10);
        assert_eq!(open["slots"][1]["capacity"], 10);
    }
    let refused = answers.iter().find(|(s, _)| *s == 409).unwrap();
    let nearest = refused.1["_available_slots"].as_array().unwrap();
    assert!(!nearest.is_empty());
    assert!(nearest.iter().all(|s| s["utcTime"] != desired.as_str()));
}

/// A local SMS gateway that counts what it was sent.
async fn sms_gateway() -> (String, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<Value>>>) {
    use axum::routing::post;
    let count = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, b) = (count.clone(), bodies.clone());
    let app = axum::Router::new().route(
        "/sms",
        post(move |axum::Json(body): axum::Json<Value>| {
            let (c, b) = (c.clone(), b.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                b.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, count, bodies)
}

#[tokio::test]
async fn a_booking_survives_a_restart_of_every_node_and_fires_once() {
    let (sms_url, sms_count, sms_bodies) = sms_gateway().await;
    // The slot is minutes away; the buffers put the reminder and the entry
    // into the queue a few seconds from now, while every node is down.
    let slot = slot_after(chrono::Duration::minutes(2));
    let now = Utc::now();
    let reminder_at = now + chrono::Duration::seconds(12);
    let enter_at = now + chrono::Duration::seconds(16);
    let extra = format!(
        r#"
[_schedule.buffers]
enter_queue = "{}s"

[_schedule.notifications]
reminder = "{}s"
reminder_sms = true
sms_url = "{sms_url}"
"#,
        (slot - enter_at).num_seconds(),
        (slot - reminder_at).num_seconds(),
    );
    let scenario = booking_scenario("soon", 3, &extra);
    let mut site = Site::start_with(2, RedisServer::start(), &[scenario]).await;
    let (status, booked) = site.nodes[0]
        .app
        .post_form(
            "/genesys/1/service/callback/soon",
            &[
                ("_customer_number", "5550777"),
                ("_desired_time", &iso(slot)),
            ],
        )
        .await;
    assert_eq!(status, 200, "{booked}");
    let id = booked["_id"].as_str().unwrap().to_owned();
    let (_, rec) = site.nodes[1]
        .app
        .get(&format!("/api/v1/services/{id}"))
        .await;
    assert_eq!(rec["_callback_state"], "SCHEDULED", "{rec}");

    // Every node goes down before the reminder is due, and comes back after
    // the service should have entered the queue.
    for node in &mut site.nodes {
        node.stop();
    }
    let back = enter_at + chrono::Duration::seconds(2);
    tokio::time::sleep((back - Utc::now()).to_std().unwrap_or_default()).await;
    assert_eq!(
        sms_count.load(Ordering::SeqCst),
        0,
        "nothing fires while down"
    );
    for node in &mut site.nodes {
        node.restart().await;
    }
    site.nodes[0]
        .app
        .wait_for_state(&id, "QUEUED", Duration::from_secs(15))
        .await;
    // Give a second firing every chance to happen.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sms_count.load(Ordering::SeqCst) == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sms_count.load(Ordering::SeqCst),
        1,
        "one reminder from two nodes: {:?}\n{}",
        sms_bodies.lock().unwrap(),
        site.logs()
    );
    let sms = sms_bodies.lock().unwrap()[0].clone();
    assert_eq!(sms["to"], "5550777");
    assert_eq!(sms["service_id"], id.as_str());
    assert_eq!(sms["kind"], "reminder");

    let (_, rec) = site.nodes[1]
        .app
        .get(&format!("/api/v1/services/{id}"))
        .await;
    let entered = rec["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"] == "desired_time_reached")
        .count();
    assert_eq!(entered, 1, "entered the queue once: {rec}");
    assert_eq!(rec["_callback_state"], "QUEUED");
    // Its seat is still held, on either node.
    let (_, open) = site.nodes[1]
        .app
        .get(&format!(
            "/genesys/1/service/callback/soon/availability?start={}&end={}",
            iso(slot),
            iso(slot + chrono::Duration::minutes(5))
        ))
        .await;
    assert_eq!(open[iso(slot)], 2, "{open}");
}

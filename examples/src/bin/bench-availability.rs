//! How long an availability request takes for a busy 14-day schedule of
//! 5-minute slots, on the memory store and on Redis.
//!
//! ```text
//! cargo run --release -p examples --bin bench-availability -- --concurrency 1,8 --redis
//! ```
//!
//! Writes one scenario, `bench-availability`, into a temp dir: `[_schedule]`
//! in Europe/London, `slot = "5m"`, `min_notice = "0s"`, `horizon = "14d"`,
//! open 00:00-24:00 every day, 3 seats a slot (14 × 288 = 4,032 slots).
//! Starts a callbackd node in this process (`http_front::run` on 127.0.0.1,
//! the memory store; with `--redis`, a second one on the Redis store: a
//! redis-server of its own on a free port via
//! `redis_store::testing::RedisServer`, or `--redis URL` under a fresh
//! namespace). On each it books `--bookings` seats (multipart creates with
//! `_customer_number` and `_desired_time`, 16 at a time) spread evenly over
//! the slots of the 14 days that start 10 minutes or more from now, and
//! checks the store counts every one of them (v2 with `report-busy=true`).
//!
//! Then, for each endpoint (`GET /genesys/2/service/callback/bench-availability/availability?number-of-days=14`,
//! then `/genesys/1/...`) and each `--concurrency` C (a comma list), C
//! clients (one keep-alive connection each) send `--requests` requests in
//! all, each client one after the other; `--warmup` requests go first and are
//! not counted. The latency is from just before the request is sent to the
//! last byte of the body (JSON parsing not included). It prints p50, p90,
//! p99 and max in ms, requests per second, and the slots (and bytes) per
//! answer. The client and the server share this process's runtime and the
//! machine's cores.
//!
//! It fails if a booking or a request fails or an answer lists no slots.
//! `--concurrency 1 --redis` printed (2 cores, shared with other work),
//! after v2 answers were serialised from typed rows:
//!
//! ```text
//!       memory v2 c=1: p50 3.45 ms, p90 5.05 ms, p99 6.04 ms, max 10.28 ms; 136 req/s; 4032 slots, 427446 bytes per answer
//!       memory v1 c=1: p50 1.59 ms, p90 2.34 ms, p99 3.07 ms, max 5.21 ms; 414 req/s; 4032 slots, 116929 bytes per answer
//!        redis v2 c=1: p50 4.99 ms, p90 6.60 ms, p99 7.64 ms, max 15.04 ms; 117 req/s; 4032 slots, 427446 bytes per answer
//!        redis v1 c=1: p50 3.07 ms, p90 4.22 ms, p99 5.06 ms, max 10.69 ms; 255 req/s; 4032 slots, 116929 bytes per answer
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Parser;
use engine::scenario::Scenarios;
use engine::store::memory::MemoryStore;
use engine::store::Store;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use redis_store::testing::RedisServer;
use redis_store::{RedisConfig, RedisStore};
use runtime::clock::SystemClock;
use serde_json::Value;
use tokio::sync::oneshot;

const SCENARIO: &str = "bench-availability";

const SCENARIO_TOML: &str = r#"# 5-minute slots, every minute of 14 days bookable, 3 seats each.
name = "bench-availability"
_media_type = "voice"
_wait_for_agent = true
_wait_for_user_confirm = false
_ttl = "2h"
_target = { queue = "bench", priority = 0 }
_mandatory_fields = ["_customer_number"]

[_schedule]
timezone = "Europe/London"
slot = "5m"
min_notice = "0s"
horizon = "14d"

[_schedule.hours]
mon = ["00:00-24:00"]
tue = ["00:00-24:00"]
wed = ["00:00-24:00"]
thu = ["00:00-24:00"]
fri = ["00:00-24:00"]
sat = ["00:00-24:00"]
sun = ["00:00-24:00"]

[_schedule.capacity]
default = 3
"#;

/// Creates in flight at once while booking.
const BOOKING_CONCURRENCY: usize = 16;

#[derive(Parser)]
struct Args {
    /// Seats booked before measuring, spread over the 14 days.
    #[arg(long, default_value_t = 2000)]
    bookings: usize,
    /// Availability requests measured per endpoint and concurrency.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Requests sent first (same concurrency) and not counted.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Clients at once, each sending its share one after the other; a comma
    /// list runs each in turn (`1,8`).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    concurrency: Vec<usize>,
    /// Also on the Redis store: alone, a redis-server of its own; with a URL
    /// (`redis://HOST:PORT/DB`), that one under a fresh namespace.
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    redis: Option<String>,
}

/// One callbackd node served from this process.
struct Node {
    base: String,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Node {
    async fn start(
        scenarios: &Path,
        store: Arc<dyn Store>,
        timer_wakeups: Option<tokio::sync::watch::Receiver<()>>,
    ) -> anyhow::Result<Node> {
        let scenarios = Scenarios::load_dir(scenarios).map_err(|e| anyhow::anyhow!("{e}"))?;
        let config = http_front::Config {
            scenarios,
            store,
            clock: Arc::new(SystemClock),
            public_url: None,
            timer_wakeups,
            push: push::Limits::default(),
            relay: None,
            mail: None,
            http: http_front::HttpLimits::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(http_front::run(listener, config, async move {
            let _ = stopped.await;
        }));
        Ok(Node { base, stop, server })
    }

    async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.server.await??;
        Ok(())
    }
}

fn v2_url(base: &str) -> String {
    format!("{base}/genesys/2/service/callback/{SCENARIO}/availability?number-of-days=14")
}

fn v1_url(base: &str) -> String {
    format!("{base}/genesys/1/service/callback/{SCENARIO}/availability?number-of-days=14")
}

async fn get_json(client: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let resp = client.get(url).send().await?;
    let status = resp.status();
    let body = resp.text().await?;
    ensure!(status == 200, "GET {url} answered {status}: {body}");
    Ok(serde_json::from_str(&body)?)
}

/// Books `n` seats over the slots starting 10 minutes or more from now,
/// evenly (slot `i * slots / n` for booking `i`), then checks the seats
/// taken add up to `n`. Returns how long booking took.
async fn book(client: &reqwest::Client, base: &str, n: usize) -> anyhow::Result<Duration> {
    let answer = get_json(client, &v2_url(base)).await?;
    let soon = chrono::Utc::now() + chrono::Duration::minutes(10);
    let slots: Vec<(String, u64)> = answer["slots"]
        .as_array()
        .context("slots")?
        .iter()
        .filter_map(|s| {
            let t = s["utcTime"].as_str()?;
            let start = chrono::DateTime::parse_from_rfc3339(t).ok()?;
            (start > soon).then(|| (t.to_owned(), s["capacity"].as_u64().unwrap_or(0)))
        })
        .collect();
    let seats: u64 = slots.iter().map(|s| s.1).sum();
    ensure!(
        !slots.is_empty() && n as u64 <= seats && n.div_ceil(slots.len()) as u64 <= 3,
        "{n} bookings do not fit {} slots ({seats} seats)",
        slots.len()
    );
    let slots = Arc::new(slots);
    let started = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let (client, slots) = (client.clone(), slots.clone());
            let url = format!("{base}/genesys/1/service/callback/{SCENARIO}");
            async move {
                let slot = &slots[i * slots.len() / n].0;
                let form = reqwest::multipart::Form::new()
                    .text("_customer_number", format!("447{i:08}"))
                    .text("_desired_time", slot.clone());
                let resp = client.post(url).multipart(form).send().await?;
                let status = resp.status();
                let body = resp.text().await?;
                ensure!(status == 200, "booking #{i} at {slot}: {status}: {body}");
                Ok::<(), anyhow::Error>(())
            }
        })
        .buffer_unordered(BOOKING_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    let took = started.elapsed();
    let answer = get_json(client, &format!("{}&report-busy=true", v2_url(base))).await?;
    let taken: u64 = answer["slots"]
        .as_array()
        .context("slots")?
        .iter()
        .map(|s| {
            s["total"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(s["capacity"].as_u64().unwrap_or(0))
        })
        .sum();
    ensure!(
        taken == n as u64,
        "{n} booked but availability counts {taken} seats taken"
    );
    Ok(took)
}

/// Slots in one answer of either version.
fn slots_in(answer: &Value) -> usize {
    match answer.get("slots") {
        Some(Value::Array(slots)) => slots.len(),
        _ => answer.as_object().map_or(0, |m| m.len()),
    }
}

/// What one client saw: latencies in ms, and slots and bytes per answer.
#[derive(Default)]
struct Seen {
    ms: Vec<f64>,
    slots: Vec<usize>,
    bytes: Vec<usize>,
}

/// `requests` GETs of `url` by `clients` clients, each sequential.
async fn measure(url: &str, requests: usize, clients: usize) -> anyhow::Result<(Seen, Duration)> {
    let started = Instant::now();
    let parts: Vec<Seen> = stream::iter(0..clients)
        .map(|k| async move {
            // Its own pool: one keep-alive connection per client.
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?;
            let share = requests / clients + usize::from(k < requests % clients);
            let mut seen = Seen::default();
            for _ in 0..share {
                let at = Instant::now();
                let resp = client.get(url).send().await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                let took = at.elapsed().as_secs_f64() * 1000.0;
                ensure!(
                    status == 200,
                    "GET {url} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
                let answer: Value = serde_json::from_slice(&body)?;
                let slots = slots_in(&answer);
                ensure!(slots > 0, "GET {url} listed no slots");
                seen.ms.push(took);
                seen.slots.push(slots);
                seen.bytes.push(body.len());
            }
            Ok::<Seen, anyhow::Error>(seen)
        })
        .buffer_unordered(clients)
        .try_collect()
        .await?;
    let elapsed = started.elapsed();
    let mut all = Seen::default();
    for part in parts {
        all.ms.extend(part.ms);
        all.slots.extend(part.slots);
        all.bytes.extend(part.bytes);
    }
    all.ms.sort_by(f64::total_cmp);
    Ok((all, elapsed))
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn range(values: &[usize]) -> String {
    let (lo, hi) = (
        values.iter().min().copied().unwrap_or(0),
        values.iter().max().copied().unwrap_or(0),
    );
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

/// Books, then measures both endpoints at each concurrency on one node.
async fn run(label: &str, node: &Node, args: &Args) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let took = book(&client, &node.base, args.bookings).await?;
    println!(
        "{label}: {} seats booked in {:.1} s ({BOOKING_CONCURRENCY} at a time)",
        args.bookings,
        took.as_secs_f64()
    );
    for (version, url) in [("v2", v2_url(&node.base)), ("v1", v1_url(&node.base))] {
        for &clients in &args.concurrency {
            if args.warmup > 0 {
                measure(&url, args.warmup, clients).await?;
            }
            let (seen, elapsed) = measure(&url, args.requests, clients).await?;
            let ms = &seen.ms;
            println!(
                "{label:>12} {version} c={clients}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
                 {:.0} req/s; {} slots, {} bytes per answer",
                percentile(ms, 0.50),
                percentile(ms, 0.90),
                percentile(ms, 0.99),
                ms[ms.len() - 1],
                ms.len() as f64 / elapsed.as_secs_f64(),
                range(&seen.slots),
                range(&seen.bytes),
            );
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.requests > 0, "--requests must be at least 1");
    ensure!(
        !args.concurrency.is_empty() && args.concurrency.iter().all(|&c| c > 0),
        "--concurrency must be at least 1"
    );
    let dir = tempfile::Builder::new()
        .prefix("bench-availability-")
        .tempdir()?;
    std::fs::write(dir.path().join(format!("{SCENARIO}.toml")), SCENARIO_TOML)?;
    let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    println!(
        "cargo run --release -p examples --bin bench-availability -- {}",
        if command.is_empty() {
            "(defaults)".to_owned()
        } else {
            command
        }
    );
    println!(
        "{} requests per endpoint and concurrency ({} more first as warm-up), \
         number-of-days=14, 5-minute slots, 3 seats each, {} seats booked:",
        args.requests, args.warmup, args.bookings
    );

    let clock = Arc::new(SystemClock);
    let node = Node::start(dir.path(), Arc::new(MemoryStore::new(clock.clone())), None).await?;
    run("memory", &node, &args).await?;
    node.shutdown().await?;

    if let Some(given) = &args.redis {
        let namespace = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let own;
        let url = if given.is_empty() {
            own = RedisServer::spawn_local(&namespace);
            own.url.clone()
        } else {
            let sep = if given.contains('?') { '&' } else { '?' };
            format!("{given}{sep}namespace={namespace}")
        };
        let store = RedisStore::connect(RedisConfig::parse(&url)?, clock.clone()).await?;
        let wakeups = store.timer_wakeups();
        let node = Node::start(dir.path(), Arc::new(store), Some(wakeups)).await?;
        run("redis", &node, &args).await?;
        node.shutdown().await?;
    }
    Ok(())
}

//! How late durable timers fire on the Redis store, with two nodes sharing it.
//!
//! ```text
//! cargo run --release -p examples --bin bench-timer-lateness -- --services 2000
//! ```
//!
//! Starts a redis-server of its own on a free port (or uses `--redis URL`,
//! under a fresh namespace), and two callbackd nodes in this process, each
//! with its own `RedisStore`, timer wake-ups and listener on 127.0.0.1. It
//! creates N chat-delay callbacks over HTTP (multipart, alternating nodes)
//! with `_desired_time`s spread evenly, to the millisecond, over a window that
//! starts `--lead` seconds from now and lasts `--spread` seconds, so each is
//! SCHEDULED and its desired-time timer moves it to the queue when due.
//!
//! Once the last one is due (plus `--margin`), it stops both nodes (each
//! finishes the timers it is firing), reads every record straight from Redis
//! and takes, for each, the time of the history entry that left SCHEDULED
//! (`desired_time_reached`) minus `_desired_time`: the lateness. It prints a
//! histogram, how many timers each node claimed and fired (counted by a thin
//! wrapper around each node's store), the latest firing per second of the
//! window, and one summary line:
//!
//! ```text
//! 2000 timers over 10 s on 2 nodes: lateness p50 1.6 ms, p90 2.1 ms, p99 2.6 ms, max 7.7 ms (goal p99 < 50 ms: met)
//! ```
//!
//! It fails if a timer fired early, more than once, or not at all, or if
//! creating the services took longer than `--lead`. The goal is p99 under
//! 50 ms. The redis-server it starts itself fsyncs every write
//! (`appendfsync always`), as the tests' does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use clap::Parser;
use engine::record::{ServiceRecord, ServiceState, TimerKind};
use engine::scenario::Scenarios;
use engine::stats::{QueueStats, SampleKind};
use engine::store::{
    AgentKey, AgentProfile, AgentRecord, DueTimer, IdempotencyClaim, IndexKey, QueueEntry, Quota,
    QuotaVerdict, Store, StoreError,
};
use redis_store::testing::RedisServer;
use redis_store::{RedisConfig, RedisStore};
use runtime::clock::{Clock, SystemClock};
use tokio::sync::oneshot;

/// The event name of the desired-time timer firing (`Event::name`).
const DESIRED_TIME_REACHED: &str = "desired_time_reached";

/// The goal: timers fire less than this late at p99.
const GOAL_P99_MS: f64 = 50.0;

#[derive(Parser)]
struct Args {
    /// How many scheduled callbacks (timers) to create.
    #[arg(long, default_value_t = 2000)]
    services: usize,
    /// Seconds from now to the first desired time; creation must end before it.
    #[arg(long, default_value_t = 5.0)]
    lead: f64,
    /// Seconds over which the desired times are spread.
    #[arg(long, default_value_t = 10.0)]
    spread: f64,
    /// Seconds to wait after the last desired time before stopping the nodes.
    #[arg(long, default_value_t = 2.0)]
    margin: f64,
    /// Create requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// An existing Redis (`redis://HOST:PORT/DB`); a fresh namespace is used.
    #[arg(long)]
    redis: Option<String>,
}

/// A node's store: the Redis store, counting the desired-time timers this
/// node claimed and fired (a successful write whose newest history entry is
/// the firing; nothing else writes these records during the run).
struct Counting {
    inner: RedisStore,
    claimed: AtomicUsize,
    fired: AtomicUsize,
}

#[async_trait]
impl Store for Counting {
    async fn get(&self, id: &str) -> Result<Option<ServiceRecord>, StoreError> {
        self.inner.get(id).await
    }

    async fn get_many(&self, ids: &[String]) -> Result<Vec<ServiceRecord>, StoreError> {
        self.inner.get_many(ids).await
    }

    async fn put(
        &self,
        record: &ServiceRecord,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        self.inner.put(record, expected_version).await?;
        if expected_version.is_some()
            && record
                .history
                .last()
                .is_some_and(|h| h.event == DESIRED_TIME_REACHED)
        {
            self.fired.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn put_new(
        &self,
        record: &ServiceRecord,
        guard: &engine::store::CreateGuard,
    ) -> Result<(), StoreError> {
        self.inner.put_new(record, guard).await
    }

    async fn find(&self, key: &IndexKey) -> Result<Vec<ServiceRecord>, StoreError> {
        self.inner.find(key).await
    }

    async fn queue(&self, queue: &str) -> Result<Vec<QueueEntry>, StoreError> {
        self.inner.queue(queue).await
    }

    async fn queues(&self) -> Result<Vec<String>, StoreError> {
        self.inner.queues().await
    }

    // The ones with a default answer too: the default would read every
    // queue or record, and the bench would measure that instead.
    async fn device_positions(
        &self,
        devices: &[String],
    ) -> Result<Vec<engine::store::DevicePosition>, StoreError> {
        self.inner.device_positions(devices).await
    }

    async fn queue_len(&self, queue: &str) -> Result<usize, StoreError> {
        self.inner.queue_len(queue).await
    }

    async fn queue_oldest(&self, queue: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.queue_oldest(queue).await
    }

    async fn census(&self) -> Result<engine::store::Census, StoreError> {
        self.inner.census().await
    }

    async fn standing(&self, id: &str) -> Result<Option<engine::store::Standing>, StoreError> {
        self.inner.standing(id).await
    }

    async fn position(&self, queue: &str, id: &str) -> Result<Option<(usize, usize)>, StoreError> {
        self.inner.position(queue, id).await
    }

    async fn due_timers(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueTimer>, StoreError> {
        self.inner.due_timers(now, limit).await
    }

    async fn claim_due_timers(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: usize,
    ) -> Result<Vec<DueTimer>, StoreError> {
        let due = self.inner.claim_due_timers(now, lease, limit).await?;
        let desired = due
            .iter()
            .filter(|t| t.kind == TimerKind::DesiredTime)
            .count();
        self.claimed.fetch_add(desired, Ordering::Relaxed);
        Ok(due)
    }

    async fn next_timer(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.next_timer().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn put_agent(&self, profile: AgentProfile) -> Result<AgentRecord, StoreError> {
        self.inner.put_agent(profile).await
    }

    async fn set_agent_ready(
        &self,
        id: &str,
        ready: bool,
    ) -> Result<Option<AgentRecord>, StoreError> {
        self.inner.set_agent_ready(id, ready).await
    }

    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        self.inner.agent(id).await
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.inner.agents().await
    }

    async fn add_sample(
        &self,
        queue: &str,
        kind: SampleKind,
        seconds: f64,
    ) -> Result<(), StoreError> {
        self.inner.add_sample(queue, kind, seconds).await
    }

    async fn queue_stats(&self, queue: &str) -> Result<QueueStats, StoreError> {
        self.inner.queue_stats(queue).await
    }

    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.inner.purge_expired(now).await
    }

    async fn put_agent_key(&self, key: &AgentKey) -> Result<(), StoreError> {
        self.inner.put_agent_key(key).await
    }

    async fn agent_key(&self, id: &str) -> Result<Option<AgentKey>, StoreError> {
        self.inner.agent_key(id).await
    }

    async fn agent_keys(&self, agent: &str) -> Result<Vec<AgentKey>, StoreError> {
        self.inner.agent_keys(agent).await
    }

    async fn revoke_agent_key(&self, agent: &str, name: &str) -> Result<bool, StoreError> {
        self.inner.revoke_agent_key(agent, name).await
    }

    async fn count_quotas(&self, quotas: &[Quota]) -> Result<QuotaVerdict, StoreError> {
        self.inner.count_quotas(quotas).await
    }

    async fn claim_idempotency(
        &self,
        key: &str,
        lease: chrono::Duration,
    ) -> Result<IdempotencyClaim, StoreError> {
        self.inner.claim_idempotency(key, lease).await
    }

    async fn answer_idempotency(
        &self,
        key: &str,
        answer: &str,
        keep: chrono::Duration,
    ) -> Result<(), StoreError> {
        self.inner.answer_idempotency(key, answer, keep).await
    }

    async fn release_idempotency(&self, key: &str) -> Result<(), StoreError> {
        self.inner.release_idempotency(key).await
    }

    async fn log_webhook_attempt(&self, attempt: &str, keep: usize) -> Result<(), StoreError> {
        self.inner.log_webhook_attempt(attempt, keep).await
    }

    async fn webhook_attempts(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        self.inner.webhook_attempts(limit).await
    }

    async fn seats_taken(
        &self,
        scenario: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<std::collections::BTreeMap<DateTime<Utc>, u32>, StoreError> {
        self.inner.seats_taken(scenario, from, to).await
    }

    async fn room(&self, code: &str) -> Result<Option<String>, StoreError> {
        self.inner.room(code).await
    }
}

/// One callbackd node served from this process.
struct Node {
    base: String,
    store: Arc<Counting>,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start_node(url: &str) -> anyhow::Result<Node> {
    let scenarios = Scenarios::load_dir(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios"
    )))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let clock = Arc::new(SystemClock);
    let inner = RedisStore::connect(RedisConfig::parse(url)?, clock.clone()).await?;
    let timer_wakeups = inner.timer_wakeups();
    let store = Arc::new(Counting {
        inner,
        claimed: AtomicUsize::new(0),
        fired: AtomicUsize::new(0),
    });
    let config = http_front::Config {
        timer_wakeups: Some(timer_wakeups),
        ..http_front::Config::new(scenarios, store.clone(), clock)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(http_front::run(listener, config, async move {
        let _ = stopped.await;
    }));
    Ok(Node {
        base,
        store,
        stop,
        server,
    })
}

fn iso_millis(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Creates one scheduled chat-delay callback; returns its id.
async fn create(
    client: &reqwest::Client,
    base: &str,
    customer: String,
    desired: DateTime<Utc>,
) -> anyhow::Result<String> {
    let form = reqwest::multipart::Form::new()
        .text("_customer_number", customer)
        .text("_desired_time", iso_millis(desired))
        .text("usr_customer_name", "Bob Markel")
        .text("_device_os", "comet");
    let resp = client
        .post(format!("{base}/genesys/1/service/callback/chat-delay"))
        .multipart(form)
        .send()
        .await?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.context("create answer")?;
    anyhow::ensure!(status.is_success(), "create answered {status}: {body}");
    Ok(body["_id"]
        .as_str()
        .context("_id in create answer")?
        .to_owned())
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.services > 0, "--services must be at least 1");
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let namespace = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let server;
    let url = match &args.redis {
        Some(url) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}namespace={namespace}")
        }
        None => {
            server = RedisServer::spawn_local(&namespace);
            server.url.clone()
        }
    };

    let nodes = vec![start_node(&url).await?, start_node(&url).await?];
    let reader = RedisStore::connect(RedisConfig::parse(&url)?, Arc::new(SystemClock)).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;

    // Desired times: evenly spaced, whole milliseconds, earliest created first.
    let first_ms = (SystemClock.now()
        + chrono::Duration::milliseconds((args.lead * 1000.0).round() as i64))
    .timestamp_millis();
    let spread_ms = (args.spread * 1000.0).round() as i64;
    let n = args.services;
    let desired: Arc<Vec<DateTime<Utc>>> = Arc::new(
        (0..n)
            .map(|i| {
                let at = first_ms + spread_ms * i as i64 / n.max(2).saturating_sub(1) as i64;
                Utc.timestamp_millis_opt(at).single().expect("a valid time")
            })
            .collect(),
    );
    let first_due = desired[0];
    let last_due = desired[n - 1];

    let bases: Arc<Vec<String>> = Arc::new(nodes.iter().map(|n| n.base.clone()).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.min(n) {
        let (client, bases, desired, next) =
            (client.clone(), bases.clone(), desired.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut made = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= desired.len() {
                    return anyhow::Ok(made);
                }
                let base = &bases[i % bases.len()];
                let id = create(&client, base, format!("408{i:07}"), desired[i]).await?;
                made.push((id, desired[i]));
            }
        }));
    }
    let mut ids: Vec<(String, DateTime<Utc>)> = Vec::with_capacity(n);
    for worker in workers {
        ids.extend(worker.await??);
    }
    let creation = started.elapsed();
    let created_by = SystemClock.now();
    println!(
        "created {n} scheduled callbacks in {:.2} s ({:.0}/s), first due {} ms later",
        creation.as_secs_f64(),
        n as f64 / creation.as_secs_f64(),
        (first_due - created_by).num_milliseconds()
    );
    if created_by >= first_due {
        for node in nodes {
            let _ = node.stop.send(());
            let _ = node.server.await;
        }
        anyhow::bail!(
            "warning: creation took {:.2} s, longer than the {} s lead; \
             the first timers were due before all were created. \
             Use a longer --lead or fewer --services.",
            creation.as_secs_f64(),
            args.lead
        );
    }

    let until = last_due + chrono::Duration::milliseconds((args.margin * 1000.0).round() as i64);
    let wait = (until - SystemClock.now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    tokio::time::sleep(wait).await;

    // Stop both nodes first, so the records and the nodes' counts agree.
    // A node finishes the batch of timers it is firing before it stops.
    let mut per_node = Vec::new();
    let mut stops = Vec::new();
    for node in nodes {
        let _ = node.stop.send(());
        stops.push((node.server, node.store));
    }
    for (server, store) in stops {
        server.await??;
        per_node.push((
            store.fired.load(Ordering::Relaxed),
            store.claimed.load(Ordering::Relaxed),
        ));
    }
    let stopped = SystemClock.now();

    let mut lateness = Vec::with_capacity(n);
    let mut problems: Vec<String> = Vec::new();
    let mut early = 0usize;
    // The latest firing among the timers due in each second of the window.
    let mut worst: Vec<f64> = Vec::new();
    for (id, asked) in &ids {
        let Some(rec) = reader.get(id).await? else {
            problems.push(format!("{id}: record missing"));
            continue;
        };
        if rec.desired_time != *asked {
            problems.push(format!(
                "{id}: desired time {} stored, {} asked",
                iso_millis(rec.desired_time),
                iso_millis(*asked)
            ));
        }
        let left: Vec<_> = rec
            .history
            .iter()
            .filter(|h| h.from == Some(ServiceState::Scheduled))
            .collect();
        match left.as_slice() {
            [] => problems.push(format!(
                "{id}: still {:?}, its timer did not fire {} ms after its desired time, when the nodes stopped",
                rec.state,
                (stopped - rec.desired_time).num_milliseconds()
            )),
            [h] if h.event != DESIRED_TIME_REACHED => {
                problems.push(format!("{id}: left SCHEDULED by `{}`", h.event))
            }
            [h] => {
                let late = (h.at - rec.desired_time)
                    .num_microseconds()
                    .context("lateness")? as f64
                    / 1000.0;
                if late < 0.0 {
                    early += 1;
                    problems.push(format!("{id}: fired {:.1} ms early", -late));
                }
                lateness.push(late);
                let second = (rec.desired_time - first_due).num_seconds().max(0) as usize;
                if worst.len() <= second {
                    worst.resize(second + 1, f64::NAN);
                }
                worst[second] = worst[second].max(late);
            }
            many => problems.push(format!("{id}: left SCHEDULED {} times", many.len())),
        }
    }

    lateness.sort_by(f64::total_cmp);
    if !lateness.is_empty() {
        let mut histogram: BTreeMap<u64, usize> = BTreeMap::new();
        for l in &lateness {
            // One significant digit: 0..9, 10, 20, .., 100, 200, ..
            let ms = l.max(0.0) as u64;
            let unit = 10u64.pow(ms.max(1).ilog10());
            let bucket = ms / unit * unit;
            *histogram.entry(bucket).or_default() += 1;
        }
        let spread: Vec<String> = histogram
            .iter()
            .map(|(ms, count)| format!("{ms}ms:{count}"))
            .collect();
        println!(
            "lateness histogram (ms bucket: timers): {}",
            spread.join(" ")
        );
        let (p50, p90, p99, max) = (
            percentile(&lateness, 0.50),
            percentile(&lateness, 0.90),
            percentile(&lateness, 0.99),
            lateness[lateness.len() - 1],
        );
        let fired: Vec<String> = per_node
            .iter()
            .zip(["a", "b"])
            .map(|((fired, claimed), name)| {
                format!("node {name} fired {fired} (claimed {claimed})")
            })
            .collect();
        println!("{}", fired.join(", "));
        let worst: Vec<String> = worst.iter().map(|w| format!("{w:.0}")).collect();
        println!(
            "latest firing (ms) among the timers due in each second of the window: {}",
            worst.join(" ")
        );
        println!(
            "{} timers over {} s on 2 nodes: lateness p50 {p50:.1} ms, p90 {p90:.1} ms, p99 {p99:.1} ms, max {max:.1} ms (goal p99 < {GOAL_P99_MS} ms: {})",
            lateness.len(),
            args.spread,
            if p99 < GOAL_P99_MS { "met" } else { "NOT met" }
        );
    }
    let fired_total: usize = per_node.iter().map(|(f, _)| f).sum();
    if fired_total != lateness.len() {
        problems.push(format!(
            "the nodes counted {fired_total} firings, the records show {}",
            lateness.len()
        ));
    }
    if !problems.is_empty() {
        for p in problems.iter().take(10) {
            eprintln!("error: {p}");
        }
        if problems.len() > 10 {
            eprintln!("error: ... and {} more", problems.len() - 10);
        }
        anyhow::bail!(
            "{} problems ({early} early firings) in {n} services",
            problems.len()
        );
    }
    Ok(())
}

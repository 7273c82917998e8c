//! How fast callbackd is at scale, each figure a ratio to a baseline
//! measured in the same run, the absolute numbers beside it.
//!
//! ```text
//! cargo run --release -p examples --bin bench-scale
//! cargo run --release -p examples --bin bench-scale -- --only memory
//! cargo run --release -p examples --bin bench-scale -- --only growth --grow 250000
//! cargo run --release -p examples --bin bench-scale -- --only redis
//! ```
//!
//! The servers are real callbackd processes (this binary started again with
//! `BENCH_SCALE_SERVE=1`, which runs `http_front::cli::main`, what the
//! `callbackd` binary runs), with the default log level (`info`, text), no
//! `--auth`, `--rate-limit 0`, and one scenario: the seed's chat-delay
//! (`ScenarioBuilder::chat_delay`) named `bench`. Every create is the seed's
//! multipart body with a customer number and a device id of its own.
//! The servers (and Redis) run under `taskset -c 0`, this process (the
//! load generator, one thread) on core 1; `--server-cpu`, `--client-cpu`
//! choose others. The load generator (`examples::load`) writes prepared
//! bytes over keep-alive connections; its CPU share is printed, and a
//! figure where it used more than 90% of its core is marked: there the
//! generator, not the server, may be the limit.
//!
//! Parts (`--only` runs one):
//!
//! - `memory`: `GET /healthz` on a fresh memory-store server, `--connections`
//!   connections for `--seconds`; then creates for as long; then `/healthz`
//!   again. The create figure is its rate over the mean of the two
//!   `/healthz` rates, with the create p50 and p99.
//! - `growth`: creates on a fresh memory-store server, `--growth-connections`
//!   at a time, until it holds `--grow` services (all waiting: no agent is
//!   ready). Prints the latency over time (the worst per tenth of the run)
//!   and every create over 5 ms; the server's RSS growth per waiting
//!   service at `--memory-at` services; the log written per create; then,
//!   as the baseline for the latencies, `/healthz` on as many connections
//!   for 10 s (what the machine alone adds). Then
//!   check-queue-position, one client, for the first and the last service
//!   in the queue, in alternating blocks: the last's median over the
//!   first's.
//! - `redis`: a redis-server of its own (no persistence) on the server
//!   core. `redis-benchmark -t set` with `--connections` clients (on the
//!   client core) is the baseline; then creates through callbackd on that
//!   Redis, then check-queue-position of waiting services in a queue with
//!   history (the whole window of wait and handle samples), each over SET's
//!   rate. Then both again with Redis moved to the client core (each of
//!   callbackd and Redis on a core of its own, as deployed; SET's baseline
//!   then runs from the server core): what an operator gets, not the
//!   goal's figure. Then Redis's `used_memory` growth per waiting service,
//!   over `--redis-services` creates.
//!
//! It fails when a request is not answered 200. The servers are killed
//! when it ends (or dies), and its temp dir is removed.

use std::ffi::OsString;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use clap::Parser;
use engine::stats::SampleKind;
use engine::store::Store;
use engine::testing::ScenarioBuilder;
use examples::bench::{median, percentile, pinning, Redis, Server, ServerSpec};
use examples::load::{self, Outcome, Stop};

const SERVE_ENV: &str = "BENCH_SCALE_SERVE";
const SCENARIO: &str = "bench";

#[derive(Parser)]
struct Args {
    /// Run one part only: memory, growth or redis.
    #[arg(long)]
    only: Option<String>,
    /// Seconds per throughput figure.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Connections of the throughput figures.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Services the growth part creates.
    #[arg(long, default_value_t = 250_000)]
    grow: u64,
    /// Connections of the growth part.
    #[arg(long, default_value_t = 8)]
    growth_connections: usize,
    /// When the growth part measures memory per waiting service.
    #[arg(long, default_value_t = 100_000)]
    memory_at: u64,
    /// Services the Redis memory figure creates.
    #[arg(long, default_value_t = 100_000)]
    redis_services: u64,
    /// Profile the server with `perf record` during each create figure
    /// (and check-queue-position on Redis),
    /// and print the top of `perf report` (the data stays in this directory).
    #[arg(long)]
    perf: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    #[arg(long, default_value_t = 1)]
    client_cpu: usize,
}

struct Bench {
    args: Args,
    cpu: Option<usize>,
    dir: tempfile::TempDir,
}

/// A number of its own for each create, so no throttle or guard counts them together.
fn create(seq: u64) -> Vec<u8> {
    load::seed_create(
        SCENARIO,
        &format!("+1408{:07}", seq % 10_000_000),
        &format!("bench-device-{seq}"),
    )
}

impl Bench {
    async fn server(&self, name: &str, store: &str) -> anyhow::Result<Server> {
        let args: Vec<OsString> = [
            "--scenarios",
            &self.dir.path().join("scenarios").to_string_lossy(),
            "--store",
            store,
            "--rate-limit",
            "0",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        Server::start(ServerSpec {
            name,
            serve_env: SERVE_ENV,
            dir: self.dir.path(),
            args,
            env: Vec::new(),
            cpu: self.cpu,
        })
        .await
    }

    async fn load(
        &self,
        server: &Server,
        connections: usize,
        stop: Stop,
        make: &dyn Fn(u64) -> Vec<u8>,
    ) -> anyhow::Result<Outcome> {
        let outcome = load::run(server.addr, connections, stop, make).await?;
        if outcome.failures > 0 {
            bail!(
                "{} answers were not 200; the first: {}",
                outcome.failures,
                outcome.first_failure.as_deref().unwrap_or("")
            );
        }
        Ok(outcome)
    }

    /// `perf record` of the server for as long as a figure runs, with `--perf`.
    fn profile(
        &self,
        server: &Server,
        name: &str,
    ) -> anyhow::Result<Option<(Child, std::path::PathBuf)>> {
        let Some(dir) = &self.args.perf else {
            return Ok(None);
        };
        std::fs::create_dir_all(dir)?;
        let data = dir.join(format!("{name}.data"));
        let child = Command::new("perf")
            .args([
                "record",
                "-F",
                "499",
                // Frame pointers are not kept in release builds; unwind by DWARF.
                "--call-graph=dwarf,32768",
                "-p",
                &server.pid().to_string(),
                "-o",
            ])
            .arg(&data)
            .args(["--", "sleep", &self.args.seconds.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("perf (apt-get install linux-perf)")?;
        Ok(Some((child, data)))
    }

    /// Waits for the profile and prints where the server's time went.
    fn report(&self, profile: Option<(Child, std::path::PathBuf)>) -> anyhow::Result<()> {
        let Some((mut child, data)) = profile else {
            return Ok(());
        };
        child.wait()?;
        let out = Command::new("perf")
            .args([
                "report",
                "--stdio",
                "--no-children",
                "-g",
                "none",
                "--percent-limit",
                "1.5",
                "-i",
            ])
            .arg(&data)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        println!("perf report of {} (self time, over 1.5%):", data.display());
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            println!("  {}", line.trim());
        }
        Ok(())
    }

    async fn memory(&self) -> anyhow::Result<()> {
        println!("\n## memory store: throughput");
        let server = self.server("memory", "memory").await?;
        let seconds = Stop::After(Duration::from_secs(self.args.seconds));
        let n = self.args.connections;
        let health = load::get("/healthz");
        let before = self.load(&server, n, seconds, &|_| health.clone()).await?;
        print_rate("GET /healthz", &before);
        let profile = self.profile(&server, "memory-create")?;
        let created = self.load(&server, n, seconds, &create).await?;
        self.report(profile)?;
        print_rate("create (seed's multipart body)", &created);
        let after = self.load(&server, n, seconds, &|_| health.clone()).await?;
        print_rate("GET /healthz again", &after);
        let baseline = (before.per_second() + after.per_second()) / 2.0;
        println!(
            "create ÷ /healthz: {:.3}   (create {:.0}/s, /healthz {:.0}/s mean of before and after)",
            created.per_second() / baseline,
            created.per_second(),
            baseline
        );
        Ok(())
    }

    async fn growth(&self) -> anyhow::Result<()> {
        println!("\n## memory store: growing to {} services", self.args.grow);
        let server = self.server("growth", "memory").await?;
        let client = reqwest::Client::new();
        let first = create_one(&client, &server, "first").await?;
        let rss_before = server.rss()?;
        let log_before = server.log_len();
        let at = self.args.memory_at.min(self.args.grow);
        let part1 = self
            .load(
                &server,
                self.args.growth_connections,
                Stop::Requests(at),
                &create,
            )
            .await?;
        let rss_at = server.rss()?;
        let log_at = server.log_len();
        let part2 = self
            .load(
                &server,
                self.args.growth_connections,
                Stop::Requests(self.args.grow - at),
                &|seq| create(seq + at),
            )
            .await?;
        let last = create_one(&client, &server, "last").await?;
        let mut samples = part1.samples.clone();
        let offset = part1.elapsed.as_secs_f64();
        samples.extend(part2.samples.iter().map(|s| load::Sample {
            seq: s.seq + at,
            at: s.at + offset,
            ms: s.ms,
        }));
        let total = part1.elapsed + part2.elapsed;
        let mut sorted: Vec<f64> = samples.iter().map(|s| s.ms).collect();
        sorted.sort_by(f64::total_cmp);
        println!(
            "{} creates in {:.1} s ({:.0}/s), {} connections: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms; load generator {:.0}% of a core",
            samples.len(),
            total.as_secs_f64(),
            samples.len() as f64 / total.as_secs_f64(),
            self.args.growth_connections,
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99),
            percentile(&sorted, 0.999),
            sorted.last().copied().unwrap_or(0.0),
            (part1.client_cpu + part2.client_cpu).as_secs_f64() / total.as_secs_f64() * 100.0,
        );
        println!("the worst create per tenth of the services (services when it was sent: ms):");
        let tenth = (samples.len() / 10).max(1);
        let worst: Vec<String> = samples
            .chunks(tenth)
            .map(|c| {
                let w = c
                    .iter()
                    .max_by(|a, b| a.ms.total_cmp(&b.ms))
                    .expect("chunk");
                format!("{}: {:.2}", w.seq + 1, w.ms)
            })
            .collect();
        println!("  {}", worst.join(", "));
        let slow: Vec<String> = samples
            .iter()
            .filter(|s| s.ms > 5.0)
            .map(|s| format!("#{} at {:.2} s: {:.1} ms", s.seq + 1, s.at, s.ms))
            .collect();
        println!("creates over 5 ms: {}", slow.len());
        for s in slow.iter().take(20) {
            println!("  {s}");
        }
        // The same connections on the cheapest request, for as long: what
        // this machine alone adds (a neighbour, the scheduler).
        let health = load::get("/healthz");
        let baseline = self
            .load(
                &server,
                self.args.growth_connections,
                Stop::After(Duration::from_secs(10)),
                &|_| health.clone(),
            )
            .await?;
        let ms = baseline.sorted_ms();
        println!(
            "baseline: GET /healthz on the same {} connections for 10 s: {} requests, {} over 5 ms, p99 {:.2} ms, max {:.2} ms",
            self.args.growth_connections,
            ms.len(),
            ms.iter().filter(|&&m| m > 5.0).count(),
            percentile(&ms, 0.99),
            ms.last().copied().unwrap_or(0.0),
        );
        println!(
            "server RSS growth per waiting service at {at} services: {:.0} bytes ({:.1} MB in all); log written per create: {:.0} bytes",
            (rss_at.saturating_sub(rss_before)) as f64 / at as f64,
            (rss_at.saturating_sub(rss_before)) as f64 / 1e6,
            (log_at.saturating_sub(log_before)) as f64 / at as f64,
        );
        // Positions: the first and the last of the whole queue, one client,
        // blocks alternating so a neighbour's burst falls on both.
        let (mut front, mut back) = (Vec::new(), Vec::new());
        let position =
            |id: &str| load::get(&format!("/genesys/1/service/{id}/check-queue-position"));
        let (front_req, back_req) = (position(&first), position(&last));
        for _ in 0..5 {
            front.extend(
                self.load(&server, 1, Stop::Requests(200), &|_| front_req.clone())
                    .await?
                    .samples,
            );
            back.extend(
                self.load(&server, 1, Stop::Requests(200), &|_| back_req.clone())
                    .await?
                    .samples,
            );
        }
        let med = |s: &[load::Sample]| median(s.iter().map(|s| s.ms).collect());
        println!(
            "check-queue-position, one client, last of {} ÷ first: {:.2}   (median {:.3} ms against {:.3} ms)",
            self.args.grow + 2,
            med(&back) / med(&front),
            med(&back),
            med(&front),
        );
        Ok(())
    }

    async fn redis(&self) -> anyhow::Result<()> {
        println!("\n## Redis");
        let redis = Redis::start(self.cpu)?;
        let server = self
            .server("redis", &format!("redis://127.0.0.1:{}/0", redis.port))
            .await?;
        let n = self.args.connections;
        let set = redis.benchmark_set(n, self.args.client_cpu)?;
        println!("redis-benchmark SET, {n} clients: {set:.0}/s");
        let seconds = Stop::After(Duration::from_secs(self.args.seconds));
        let profile = self.profile(&server, "redis-create")?;
        let cpu = (server.cpu()?, redis.cpu()?);
        redis.cli(&["CONFIG", "RESETSTAT"])?;
        let created = self.load(&server, n, seconds, &create).await?;
        print_cpu(&created, cpu, (server.cpu()?, redis.cpu()?));
        redis.print_commands(created.samples.len())?;
        self.report(profile)?;
        print_rate("create on Redis", &created);
        // A queue with history, as one in service has: the whole window of
        // wait and handle samples, so each check-queue-position reads the
        // averages it would in production (a queue without samples hid
        // what summing them cost).
        let queue = ScenarioBuilder::chat_delay().build().target.queue.clone();
        let url = format!("redis://127.0.0.1:{}/0", redis.port);
        let store = redis_store::RedisStore::connect(
            redis_store::RedisConfig::parse(&url)?,
            std::sync::Arc::new(runtime::clock::SystemClock),
        )
        .await?;
        for i in 0..engine::stats::WINDOW {
            let seconds = i as f64;
            store
                .add_sample(&queue, SampleKind::Wait, 20.0 + seconds)
                .await?;
            store
                .add_sample(&queue, SampleKind::Handle, 200.0 + seconds)
                .await?;
        }
        drop(store);
        // Check-queue-position for waiting services spread over the queue.
        let client = reqwest::Client::new();
        let mut ids = Vec::new();
        for i in 0..64 {
            ids.push(create_one(&client, &server, &format!("probe-{i}")).await?);
        }
        let requests: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| load::get(&format!("/genesys/1/service/{id}/check-queue-position")))
            .collect();
        let profile = self.profile(&server, "redis-position")?;
        let cpu = (server.cpu()?, redis.cpu()?);
        redis.cli(&["CONFIG", "RESETSTAT"])?;
        let positions = self
            .load(&server, n, seconds, &|seq| {
                requests[seq as usize % requests.len()].clone()
            })
            .await?;
        print_cpu(&positions, cpu, (server.cpu()?, redis.cpu()?));
        redis.print_commands(positions.samples.len())?;
        self.report(profile)?;
        print_rate("check-queue-position on Redis", &positions);
        let set_again = redis.benchmark_set(n, self.args.client_cpu)?;
        println!("redis-benchmark SET again: {set_again:.0}/s");
        print_ratios("", &created, &positions, (set + set_again) / 2.0);
        // The same two figures with Redis moved to the load generator's
        // core, so callbackd and Redis each have a core, as they would in
        // a deployment; SET's baseline then runs redis-benchmark from the
        // server's core. Not the goal's figure (that keeps Redis beside
        // the server): what an operator gets with a core for Redis.
        if self.cpu.is_some() {
            let (server_cpu, client_cpu) = (self.args.server_cpu, self.args.client_cpu);
            println!("\n## Redis on core {client_cpu}, beside the load generator");
            redis.pin(client_cpu)?;
            let set = redis.benchmark_set(n, server_cpu)?;
            println!("redis-benchmark SET from core {server_cpu}, {n} clients: {set:.0}/s");
            let cpu = (server.cpu()?, redis.cpu()?);
            let created = self
                .load(&server, n, seconds, &|seq| create(seq + 20_000_000))
                .await?;
            print_cpu(&created, cpu, (server.cpu()?, redis.cpu()?));
            print_rate("create on Redis", &created);
            let cpu = (server.cpu()?, redis.cpu()?);
            let positions = self
                .load(&server, n, seconds, &|seq| {
                    requests[seq as usize % requests.len()].clone()
                })
                .await?;
            print_cpu(&positions, cpu, (server.cpu()?, redis.cpu()?));
            print_rate("check-queue-position on Redis", &positions);
            let set_again = redis.benchmark_set(n, server_cpu)?;
            println!("redis-benchmark SET again: {set_again:.0}/s");
            print_ratios(
                &format!(", Redis on core {client_cpu}"),
                &created,
                &positions,
                (set + set_again) / 2.0,
            );
            redis.pin(server_cpu)?;
        }
        // Memory: a fresh namespace's worth of waiting services.
        let used = redis.used_memory()?;
        let count = self.args.redis_services;
        self.load(&server, n, Stop::Requests(count), &|seq| {
            create(seq + 10_000_000)
        })
        .await?;
        let grown = redis.used_memory()?.saturating_sub(used);
        println!(
            "Redis used_memory per waiting service: {:.0} bytes ({count} services)",
            grown as f64 / count as f64
        );
        Ok(())
    }
}

/// One create through reqwest, answering its id.
async fn create_one(
    client: &reqwest::Client,
    server: &Server,
    tag: &str,
) -> anyhow::Result<String> {
    let form = reqwest::multipart::Form::new()
        .text("_customer_number", format!("+1650555{:04}", tag.len()))
        .text("_device_notification_id", format!("bench-{tag}"))
        .text("usr_customer_name", "Bob Markel");
    let answer: serde_json::Value = client
        .post(format!(
            "{}/genesys/1/service/callback/{SCENARIO}",
            server.base
        ))
        .multipart(form)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(answer["_id"]
        .as_str()
        .context("create answered no _id")?
        .to_owned())
}

/// Creates and check-queue-position over SET's rate (the mean of the
/// runs before and after), `placement` after the figure's name.
fn print_ratios(placement: &str, created: &Outcome, positions: &Outcome, set: f64) {
    println!(
        "create on Redis ÷ SET{placement}: {:.3}   (create {:.0}/s, SET {set:.0}/s mean of before and after)",
        created.per_second() / set,
        created.per_second(),
    );
    println!(
        "check-queue-position on Redis ÷ SET{placement}: {:.3}   ({:.0}/s)",
        positions.per_second() / set,
        positions.per_second(),
    );
}

/// CPU per request of callbackd and of Redis, between two readings.
fn print_cpu(o: &Outcome, before: (Duration, Duration), after: (Duration, Duration)) {
    let per = |d: Duration| d.as_secs_f64() * 1e6 / o.samples.len().max(1) as f64;
    println!(
        "  CPU per request: callbackd {:.0} µs, Redis {:.0} µs",
        per(after.0 - before.0),
        per(after.1 - before.1)
    );
}

fn print_rate(what: &str, o: &Outcome) {
    let ms = o.sorted_ms();
    let share = o.client_share();
    println!(
        "{what:<40} {:>8.0}/s  p50 {:>6.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  load generator {:>3.0}% of a core{}",
        o.per_second(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(0.0),
        share * 100.0,
        if share > 0.9 { "  (the load generator may be the limit: no figure)" } else { "" },
    );
}

async fn bench(args: Args, cpu: Option<usize>) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("bench-scale-").tempdir()?;
    let scenarios = dir.path().join("scenarios");
    std::fs::create_dir_all(&scenarios)?;
    ScenarioBuilder::chat_delay()
        .name(SCENARIO)
        .write_to(&scenarios);
    let only = args.only.clone();
    let bench = Bench { args, cpu, dir };
    let run = |part: &str| only.as_deref().is_none_or(|o| o == part);
    if let Some(o) = &only {
        ensure!(
            ["memory", "growth", "redis"].contains(&o.as_str()),
            "--only: memory, growth or redis"
        );
    }
    if run("memory") {
        bench.memory().await?;
    }
    if run("growth") {
        bench.growth().await?;
    }
    if run("redis") {
        bench.redis().await?;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    if std::env::var_os(SERVE_ENV).is_some() {
        return http_front::cli::main();
    }
    let args = Args::parse();
    let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    println!("cargo run --release -p examples --bin bench-scale -- {command}");
    // Pinned before the runtime starts, so every thread it makes inherits it.
    let cpu = pinning(args.server_cpu, args.client_cpu);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(bench(args, cpu)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

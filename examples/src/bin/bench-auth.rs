//! What checking a credential costs on the create path, as a ratio to an
//! open server measured in the same run.
//!
//! ```text
//! cargo run --release -p examples --bin bench-auth -- --creates 20000 --concurrency 32
//! ```
//!
//! The servers are real callbackd processes: this binary started again with
//! `BENCH_AUTH_SERVE=1`, which runs exactly `http_front::cli::main` (what
//! the `callbackd` binary runs) on a free port on 127.0.0.1, with the
//! embedded memory store (so the store is not what is measured), logging at
//! `warn`, and `--rate-limit 0` (loopback is not limited by default anyway;
//! this says so). Each round starts two of them side by side: one open (no
//! `--auth`), one with a credentials file written into a temp dir: a
//! `client` credential, an `admin`, a few `client` credentials presented
//! once each, and a `[jwt]` section (HS256, `hs256_secret_env`). The secrets
//! are random and hashed with `access::hash_secret` (argon2id with its
//! default parameters, what `callbackd hash-secret` prints).
//!
//! The scenario is the seed's chat-delay (`ScenarioBuilder::chat_delay`) under
//! the name `bench-auth`: no throttle, no in-queue check and no
//! `max_queued_callbacks_per_service` (all off unless a scenario sets them),
//! and every create has a customer number of its own.
//!
//! With `taskset` on the PATH, the servers run under `taskset -c 0` and
//! this process (the load generator, one thread: tokio's current-thread
//! runtime) pins itself to core 1 with `sched_setaffinity`, which is what
//! `taskset -c 1` would do; `--server-cpu` and `--client-cpu` choose other
//! cores. Without `taskset`, or with fewer than two usable cores, it warns
//! and runs unpinned.
//!
//! Each round, on fresh servers:
//!
//! 1. The first check: for each of `--first` credentials never presented
//!    before, one create with it (`Authorization: Basic`) on the idle auth
//!    server, then a second with the same credential (its verdict now
//!    remembered); both timed. The difference is what a new credential pays
//!    once: the argon2 check, run on the blocking pool.
//! 2. For each way of presenting a credential, a pair: `--creates` GMS
//!    creates (multipart, `POST /genesys/1/service/callback/bench-auth`)
//!    to the open server presenting nothing, and as many to the auth server
//!    presenting: `Authorization: Basic` of the client credential,
//!    `x-api-key: name:secret`, or `Authorization: Bearer` with a JWT. Each
//!    server has `--concurrency` clients of its own, one keep-alive
//!    connection each, kept for the pair; `--warmup` creates go to each
//!    first and are not counted (they also get the verdict remembered).
//!    The measured creates go in blocks of `--block`, alternating between
//!    the servers (open, auth, auth, open, ...): a neighbour's burst on a
//!    shared machine lasts longer than a block, so it falls on both sides
//!    alike. Both servers take the same number of creates, so they hold as
//!    many records when compared. A minted agent key (`POST
//!    /api/v1/agents/{id}/keys`) cannot create (an agent may not), so it is
//!    measured on the agent's own `GET /api/v1/agents/{id}`, paired with the
//!    same GET on the open server. The pairs' order rotates from round to
//!    round.
//!
//! A request's latency is from just before it is sent to the last byte of
//! its answer; a side's throughput is its requests over the time its
//! blocks took. The server's CPU per request is its utime + stime
//! (`/proc/<pid>/stat`) over its blocks, divided by the requests; the
//! client's CPU share says whether the load generator, not the server, was
//! the limit. A round's time ratio is the median over its blocks of the
//! auth block's time over its open partner's; the table gives the median
//! over rounds, min and max in brackets: 1.10 is 10% dearer.
//!
//! Printed on the development machine (2 cores, shared with another
//! build), after an accepted JWT was remembered too (the first-check line
//! is wrapped here). Across four runs the create ratios stayed within
//! 1.00-1.05, the minted key's 1.08-1.13, while the absolute rates moved
//! threefold:
//!
//! ```text
//! way                                          req/s  p50 ms  p99 ms  server µs   client   time ×open           server CPU ×open
//! create, open                                  7033    3.25   22.43       62.0      29%
//! create, Basic name:secret                     6691    3.67   14.76       63.5      30%   1.002 (0.923-1.087)  1.01 (0.99-1.08)
//! create, open                                  7566    3.27   13.08       64.5      27%
//! create, x-api-key name:secret                 7394    3.46   15.32       66.5      28%   1.014 (1.010-1.051)  1.00 (0.97-1.03)
//! create, open                                  5428    4.17   20.43       63.0      19%
//! create, Bearer JWT (HS256)                    5394    4.25   18.05       65.5      20%   1.030 (0.987-1.083)  1.03 (1.02-1.06)
//! agent's GET profile, open                    14951    0.72   12.52       19.5      30%
//! agent's GET profile, Bearer minted key       12802    0.83   10.16       20.5      29%   1.132 (1.001-1.135)  1.11 (1.05-1.18)
//!
//! first check of a credential (argon2, then remembered for 5 minutes): a create with a new
//! Basic credential took 35.9 ms median (25.9-87.9, 25 creates on an idle server), the same
//! credential's next create 0.27 ms
//! ```
//!
//! It fails if a request is not answered 200, or if the auth server lets a
//! create without a credential through. It stops by itself; the servers
//! are killed when it ends (or dies: `PR_SET_PDEATHSIG`), and the temp dir
//! is removed.

use std::ffi::OsString;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use base64::Engine as _;
use clap::Parser;
use engine::testing::ScenarioBuilder;
use examples::bench::{median, own_cpu, percentile, pinning, Server, ServerSpec};
use futures_util::future::try_join_all;
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use serde_json::{json, Value};

/// Set in a child: run callbackd instead of the benchmark.
const SERVE_ENV: &str = "BENCH_AUTH_SERVE";
/// Where the auth server finds the JWTs' HS256 secret.
const JWT_ENV: &str = "BENCH_AUTH_JWT_SECRET";
const JWT_ISSUER: &str = "https://idp.bench-auth.invalid";
const JWT_AUDIENCE: &str = "callbackd";
const SCENARIO: &str = "bench-auth";
const AGENT: &str = "bench-agent";

#[derive(Parser)]
struct Args {
    /// Requests measured per way and round, on each server.
    #[arg(long, default_value_t = 20_000)]
    creates: usize,
    /// Clients at once, one keep-alive connection each.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Rounds, each on fresh servers; ratios are the median over rounds.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Requests in a row to one server before the other's turn.
    #[arg(long, default_value_t = 1000)]
    block: usize,
    /// Requests sent first to each server of a pair, on the same
    /// connections, not counted.
    #[arg(long, default_value_t = 1000)]
    warmup: usize,
    /// Credentials whose first (unremembered) check is timed, each round.
    #[arg(long, default_value_t = 5)]
    first: usize,
    /// The core the servers are pinned to.
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// The core this load generator is pinned to.
    #[arg(long, default_value_t = 1)]
    client_cpu: usize,
}

/// The credentials file's secrets, kept in this process only.
struct Secrets {
    app: String,
    admin: String,
    first: Vec<String>,
    jwt: String,
}

/// Writes the scenario and the credentials file into `dir`.
fn write_config(dir: &Path, first: usize) -> anyhow::Result<Secrets> {
    let secret = || uuid::Uuid::new_v4().simple().to_string();
    let secrets = Secrets {
        app: secret(),
        admin: secret(),
        first: (0..first).map(|_| secret()).collect(),
        jwt: secret(),
    };
    let scenarios = dir.join("scenarios");
    std::fs::create_dir_all(&scenarios)?;
    ScenarioBuilder::chat_delay()
        .name(SCENARIO)
        .write_to(&scenarios);
    let entry = |name: &str, role: &str, secret: &str| {
        format!(
            "[[credential]]\nname = \"{name}\"\nrole = \"{role}\"\nsecret_hash = \"{}\"\n\n",
            access::hash_secret(secret)
        )
    };
    let mut file = entry("bench-app", "client", &secrets.app);
    file += &entry("bench-admin", "admin", &secrets.admin);
    for (i, s) in secrets.first.iter().enumerate() {
        file += &entry(&format!("first-{i}"), "client", s);
    }
    file += &format!(
        "[jwt]\nissuer = \"{JWT_ISSUER}\"\naudience = \"{JWT_AUDIENCE}\"\nhs256_secret_env = \"{JWT_ENV}\"\n"
    );
    std::fs::write(dir.join("credentials.toml"), file)?;
    Ok(secrets)
}

fn basic(name: &str, secret: &str) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{name}:{secret}"));
    HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a header value")
}

/// A token as an identity provider would sign it for the app, good for an hour.
fn jwt(secret: &str) -> anyhow::Result<String> {
    let claims = json!({
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "sub": "bench-idp-app",
        "role": "client",
        "exp": chrono::Utc::now().timestamp() + 3600,
    });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// A callbackd process: open, or with the credentials file in `dir`.
async fn start_server(
    dir: &Path,
    name: &'static str,
    auth: bool,
    jwt_secret: &str,
    cpu: Option<usize>,
) -> anyhow::Result<Server> {
    let mut args: Vec<OsString> = vec![
        "--scenarios".into(),
        dir.join("scenarios").into(),
        "--store".into(),
        "memory".into(),
        "--rate-limit".into(),
        "0".into(),
    ];
    if auth {
        args.extend(["--auth".into(), dir.join("credentials.toml").into()]);
    }
    Server::start(ServerSpec {
        name,
        serve_env: SERVE_ENV,
        dir,
        args,
        env: vec![
            ("RUST_LOG".to_owned(), "warn".to_owned()),
            (JWT_ENV.to_owned(), jwt_secret.to_owned()),
        ],
        cpu,
    })
    .await
}

/// What a run sends.
#[derive(Clone, Copy, PartialEq)]
enum Route {
    /// A GMS create.
    Create,
    /// The agent's own profile.
    AgentProfile,
}

impl Route {
    fn request(
        self,
        client: &reqwest::Client,
        base: &str,
        seq: &AtomicUsize,
    ) -> reqwest::RequestBuilder {
        match self {
            Route::Create => {
                // A number of its own each time: no throttle or in-queue
                // check could count two creates together even if one were on.
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let form = reqwest::multipart::Form::new()
                    .text("_customer_number", format!("44{n:010}"))
                    .text("usr_customer_name", "Bob Markel")
                    .text("usr_reason", "billing question");
                client
                    .post(format!("{base}/genesys/1/service/callback/{SCENARIO}"))
                    .multipart(form)
            }
            Route::AgentProfile => client.get(format!("{base}/api/v1/agents/{AGENT}")),
        }
    }
}

/// One way of presenting (or not) a credential.
#[derive(Clone)]
struct Way {
    label: &'static str,
    route: Route,
    header: Option<(HeaderName, HeaderValue)>,
}

/// What one run measured.
struct Run {
    /// Latencies in ms, sorted.
    ms: Vec<f64>,
    elapsed: Duration,
    server_cpu: Duration,
    client_cpu: Duration,
}

impl Run {
    /// The blocks of one side of a pair, as one run.
    fn merge(runs: Vec<Run>) -> Run {
        let mut all = Run {
            ms: Vec::new(),
            elapsed: Duration::ZERO,
            server_cpu: Duration::ZERO,
            client_cpu: Duration::ZERO,
        };
        for run in runs {
            all.ms.extend(run.ms);
            all.elapsed += run.elapsed;
            all.server_cpu += run.server_cpu;
            all.client_cpu += run.client_cpu;
        }
        all.ms.sort_by(f64::total_cmp);
        all
    }

    fn per_second(&self) -> f64 {
        self.ms.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn server_us(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.ms.len() as f64
    }

    fn client_share(&self) -> f64 {
        self.client_cpu.as_secs_f64() / self.elapsed.as_secs_f64()
    }
}

/// `n` requests of `way` by `clients` (each one connection, one request at
/// a time), spread over them as they come free.
async fn send(
    server: &Server,
    way: &Way,
    clients: &[reqwest::Client],
    n: usize,
    seq: &AtomicUsize,
) -> anyhow::Result<Run> {
    let next = AtomicUsize::new(0);
    let work = clients.iter().map(|client| {
        let next = &next;
        async move {
            let mut ms = Vec::with_capacity(n / clients.len() + 1);
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let mut request = way.route.request(client, &server.base, seq);
                if let Some((name, value)) = &way.header {
                    request = request.header(name.clone(), value.clone());
                }
                let at = Instant::now();
                let resp = request.send().await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                ms.push(at.elapsed().as_secs_f64() * 1000.0);
                ensure!(
                    status == 200,
                    "{} on {}: answered {status}: {}",
                    way.label,
                    server.name,
                    String::from_utf8_lossy(&body)
                );
            }
            Ok::<_, anyhow::Error>(ms)
        }
    });
    let (cpu, own, started) = (server.cpu()?, own_cpu(), Instant::now());
    let parts = try_join_all(work).await?;
    let elapsed = started.elapsed();
    let (server_cpu, client_cpu) = (server.cpu()? - cpu, own_cpu() - own);
    let mut ms: Vec<f64> = parts.into_iter().flatten().collect();
    ms.sort_by(f64::total_cmp);
    Ok(Run {
        ms,
        elapsed,
        server_cpu,
        client_cpu,
    })
}

/// `concurrency` clients, one keep-alive connection each.
fn clients(n: usize) -> anyhow::Result<Vec<reqwest::Client>> {
    Ok((0..n)
        .map(|_| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(1)
                .build()
        })
        .collect::<Result<_, _>>()?)
}

/// One way against the open baseline: a warm-up on each server, then
/// `--creates` requests each, sent in blocks of `--block` that alternate
/// between the servers (open, auth, auth, open, open, auth, ...), each
/// server on connections of its own kept for the whole pair. A neighbour's
/// burst on the machine lasts longer than a block, so it falls on both
/// sides alike; the ratio of each block to its partner is what varies.
async fn pair(
    open: &mut Server,
    auth: &mut Server,
    baseline: &Way,
    way: &Way,
    args: &Args,
    seq: &AtomicUsize,
) -> anyhow::Result<Pair> {
    let (open_clients, auth_clients) = (clients(args.concurrency)?, clients(args.concurrency)?);
    if args.warmup > 0 {
        let n = args.warmup.max(args.concurrency);
        send(open, baseline, &open_clients, n, seq).await?;
        send(auth, way, &auth_clients, n, seq).await?;
    }
    let (mut opens, mut auths, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut left = args.creates;
    let mut open_first = true;
    while left > 0 {
        let n = left.min(args.block);
        left -= n;
        let (o, a) = if open_first {
            let o = send(open, baseline, &open_clients, n, seq).await?;
            (o, send(auth, way, &auth_clients, n, seq).await?)
        } else {
            let a = send(auth, way, &auth_clients, n, seq).await?;
            (send(open, baseline, &open_clients, n, seq).await?, a)
        };
        open_first = !open_first;
        ratios.push(a.elapsed.as_secs_f64() / o.elapsed.as_secs_f64());
        opens.push(o);
        auths.push(a);
    }
    open.check_running()?;
    auth.check_running()?;
    Ok(Pair {
        open: Run::merge(opens),
        auth: Run::merge(auths),
        time_ratio: median(ratios),
    })
}

/// An admin's (or, open, anyone's) JSON request; the answer's body.
async fn call(
    request: reqwest::RequestBuilder,
    admin: Option<&HeaderValue>,
    body: Value,
) -> anyhow::Result<Value> {
    let request = match admin {
        Some(v) => request.header(AUTHORIZATION, v.clone()),
        None => request,
    };
    let resp = request.json(&body).send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    ensure!(status.is_success(), "answered {status}: {text}");
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The agent's profile on `server`; with `admin`, also a minted key for it.
async fn set_up_agent(
    server: &Server,
    admin: Option<&HeaderValue>,
) -> anyhow::Result<Option<String>> {
    let http = reqwest::Client::new();
    let profile = json!({"name": "Bench Agent", "queues": ["support"], "max_concurrent": 1});
    call(
        http.put(format!("{}/api/v1/agents/{AGENT}", server.base)),
        admin,
        profile,
    )
    .await
    .context("PUT the agent's profile")?;
    let Some(admin) = admin else {
        return Ok(None);
    };
    let minted = call(
        http.post(format!("{}/api/v1/agents/{AGENT}/keys", server.base)),
        Some(admin),
        json!({"name": "bench"}),
    )
    .await
    .context("mint a key")?;
    Ok(Some(minted["key"].as_str().context("key")?.to_owned()))
}

/// The auth server must refuse a create that presents nothing, or the
/// comparison would be open against open.
async fn check_closed(server: &Server, seq: &AtomicUsize) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let status = Route::Create
        .request(&http, &server.base, seq)
        .send()
        .await?
        .status();
    ensure!(
        status == 401,
        "the auth server answered {status} to a create without a credential"
    );
    Ok(())
}

/// One timed create presenting `header`, on a connection of its own.
async fn timed_create(
    server: &Server,
    header: &HeaderValue,
    seq: &AtomicUsize,
) -> anyhow::Result<f64> {
    let http = reqwest::Client::new();
    // The connection is opened first, so only the request is timed.
    http.get(format!("{}/healthz", server.base)).send().await?;
    let at = Instant::now();
    let resp = Route::Create
        .request(&http, &server.base, seq)
        .header(AUTHORIZATION, header.clone())
        .send()
        .await?;
    let status = resp.status();
    let body = resp.text().await?;
    let ms = at.elapsed().as_secs_f64() * 1000.0;
    ensure!(status == 200, "create answered {status}: {body}");
    Ok(ms)
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// One round of a way against the open baseline, each side's blocks merged.
struct Pair {
    open: Run,
    auth: Run,
    /// Time per request, presenting over open, the median over the blocks:
    /// 1.10 is 10% dearer.
    time_ratio: f64,
}

impl Pair {
    /// Server CPU per request, presenting over open, over the whole round
    /// (a block is too short for the CPU clock's 10 ms ticks).
    fn cpu_ratio(&self) -> f64 {
        self.auth.server_us() / self.open.server_us()
    }
}

fn row(label: &str, runs: &[&Run]) -> String {
    let med = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(|r| f(r)).collect());
    format!(
        "{label:<40} {:>9.0} {:>7.2} {:>7.2} {:>10.1} {:>7.0}%",
        med(&|r| r.per_second()),
        med(&|r| percentile(&r.ms, 0.50)),
        med(&|r| percentile(&r.ms, 0.99)),
        med(&|r| r.server_us()),
        med(&|r| r.client_share() * 100.0),
    )
}

async fn bench(args: Args, server_cpu: Option<usize>) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("bench-auth-").tempdir()?;
    let secrets = write_config(dir.path(), args.first)?;
    let app = basic("bench-app", &secrets.app);
    let admin = basic("bench-admin", &secrets.admin);
    let bearer_jwt = HeaderValue::from_str(&format!("Bearer {}", jwt(&secrets.jwt)?))?;
    let api_key = HeaderValue::from_str(&format!("bench-app:{}", secrets.app))?;
    let x_api_key = HeaderName::from_static("x-api-key");
    let create_ways = [
        Way {
            label: "Basic name:secret",
            route: Route::Create,
            header: Some((AUTHORIZATION, app.clone())),
        },
        Way {
            label: "x-api-key name:secret",
            route: Route::Create,
            header: Some((x_api_key, api_key)),
        },
        Way {
            label: "Bearer JWT (HS256)",
            route: Route::Create,
            header: Some((AUTHORIZATION, bearer_jwt)),
        },
    ];
    let open_create = Way {
        label: "open",
        route: Route::Create,
        header: None,
    };
    let open_profile = Way {
        label: "open",
        route: Route::AgentProfile,
        header: None,
    };
    let seq = AtomicUsize::new(0);
    // Per way (the three create ways, then the minted key), a pair per round.
    let mut pairs: Vec<Vec<Pair>> = (0..create_ways.len() + 1).map(|_| Vec::new()).collect();
    let (mut first, mut second) = (Vec::new(), Vec::new());

    for round in 0..args.rounds {
        let mut open = start_server(dir.path(), "open", false, &secrets.jwt, server_cpu).await?;
        let mut auth = start_server(dir.path(), "auth", true, &secrets.jwt, server_cpu).await?;
        check_closed(&auth, &seq).await?;
        set_up_agent(&open, None).await?;
        let key = set_up_agent(&auth, Some(&admin))
            .await?
            .context("a minted key")?;
        let minted = Way {
            label: "Bearer minted key",
            route: Route::AgentProfile,
            header: Some((
                AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {key}"))?,
            )),
        };

        for (i, secret) in secrets.first.iter().enumerate() {
            let header = basic(&format!("first-{i}"), secret);
            first.push(timed_create(&auth, &header, &seq).await?);
            second.push(timed_create(&auth, &header, &seq).await?);
        }

        // Rotate the order of the pairs, and alternate which side goes
        // first, so drift over a round (a neighbour's build, the servers'
        // growing maps) falls on both sides alike.
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        order.rotate_left(round % pairs.len());
        let mut line = Vec::new();
        for k in order {
            let (way, baseline) = match create_ways.get(k) {
                Some(way) => (way, &open_create),
                None => (&minted, &open_profile),
            };
            let pair = pair(&mut open, &mut auth, baseline, way, &args, &seq).await?;
            line.push(format!("{} {:.3}", way.label, pair.time_ratio));
            pairs[k].push(pair);
        }
        println!("round {}: time ×open: {}", round + 1, line.join(", "));
    }

    let minted_label = "Bearer minted key";
    println!();
    println!(
        "{} requests per way and round on each server, in alternating blocks of {} (after {} not counted), \
         {} connections to each; medians over {} rounds (min-max); a round's time ratio is the median over its blocks:",
        args.creates, args.block, args.warmup, args.concurrency, args.rounds
    );
    println!(
        "{:<40} {:>9} {:>7} {:>7} {:>10} {:>8}   {:<20} server CPU ×open",
        "way", "req/s", "p50 ms", "p99 ms", "server µs", "client", "time ×open"
    );
    let n_create = create_ways.len();
    let labels: Vec<&str> = create_ways
        .iter()
        .map(|w| w.label)
        .chain([minted_label])
        .collect();
    // Each way under the open runs it was paired with: the machine's speed
    // moves between pairs, so only a pair's two sides compare.
    for (k, ps) in pairs.iter().enumerate() {
        let prefix = if k < n_create {
            "create"
        } else {
            "agent's GET profile"
        };
        let open: Vec<&Run> = ps.iter().map(|p| &p.open).collect();
        let auth: Vec<&Run> = ps.iter().map(|p| &p.auth).collect();
        let time: Vec<f64> = ps.iter().map(|p| p.time_ratio).collect();
        let cpu: Vec<f64> = ps.iter().map(Pair::cpu_ratio).collect();
        let (lo, hi) = min_max(&time);
        let (clo, chi) = min_max(&cpu);
        println!("{}", row(&format!("{prefix}, open"), &open));
        println!(
            "{}   {:<20} {:.2} ({clo:.2}-{chi:.2})",
            row(&format!("{prefix}, {}", labels[k]), &auth),
            format!("{:.3} ({lo:.3}-{hi:.3})", median(time.clone())),
            median(cpu.clone()),
        );
    }
    if !first.is_empty() {
        let (lo, hi) = min_max(&first);
        println!();
        println!(
            "first check of a credential (argon2, then remembered for 5 minutes): a create with a new \
             Basic credential took {:.1} ms median ({lo:.1}-{hi:.1}, {} creates on an idle server), \
             the same credential's next create {:.2} ms",
            median(first.clone()),
            first.len(),
            median(second.clone()),
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    if std::env::var_os(SERVE_ENV).is_some() {
        return http_front::cli::main();
    }
    let args = Args::parse();
    if args.creates == 0 || args.concurrency == 0 || args.rounds == 0 || args.block == 0 {
        eprintln!("error: --creates, --concurrency, --rounds and --block must be at least 1");
        return std::process::ExitCode::FAILURE;
    }
    let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    println!(
        "cargo run --release -p examples --bin bench-auth -- {}",
        if command.is_empty() {
            "(defaults)".to_owned()
        } else {
            command
        }
    );
    // Pinned before the runtime starts, so every thread it makes inherits it.
    let server_cpu = pinning(args.server_cpu, args.client_cpu);
    // One thread: the load generator has one core, so more threads would
    // only take turns on it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(bench(args, server_cpu)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

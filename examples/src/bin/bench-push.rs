//! What push costs: server memory per idle subscriber, and how long a
//! notification takes from the HTTP request that makes it to the client.
//!
//! ```text
//! cargo run --release -p examples --bin bench-push -- --subscribers 10000 --notifications 3000 --rate 300
//! ```
//!
//! The servers are real callbackd processes: this binary started again with
//! `BENCH_PUSH_SERVE=1`, which runs exactly `http_front::cli::main` (what
//! the `callbackd` binary runs) with the flags given, on a free port on
//! 127.0.0.1, logging at `warn`. A child of its own, so its memory is its
//! own: `VmRSS` from `/proc/<pid>/status`.
//!
//! 1. Memory: for each kind of subscriber (plain WebSocket
//!    `/api/v1/push/ws?gms_user=`; CometD WebSocket on `/genesys/cometd`,
//!    and CometD long-polling with the `gms_user` header, each after
//!    handshake and subscribe to `/_genesys`, with a `/meta/connect` held),
//!    a fresh server with the memory store and
//!    `--push-max-clients` above N. It opens `--warm` subscribers (kept
//!    open: one-time costs are not counted), reads the server's RSS, opens N
//!    more, each a different device, waits a second and reads it again.
//!    Every subscriber answers pings, as a browser does. Bytes per subscriber
//!    = RSS growth / N (half-way too, to show it grows linearly). Kernel
//!    socket buffers are not in RSS and not counted.
//! 2. Latency: `--services` chat-delay callbacks, each of its own device with
//!    `--listeners` plain WebSocket subscribers (one by default; each
//!    notification is a message to every one of them, so `--rate` ×
//!    `--listeners` messages a second); then `--notifications` internal
//!    notifications (POST `.../internal-notification`, multipart
//!    `_display_message`) at a steady `--rate`, round robin over the
//!    services, each sent at its tick whatever the earlier ones do. The
//!    latency is the time from just before the request is sent to the
//!    frame's arrival at the subscriber (both clocks are this process's).
//!    Once on one node (memory store), once across two nodes on Redis: the
//!    requests go to node B, the subscribers hold their sockets on node A,
//!    so every notification crosses Redis pub/sub. The first `--warmup`
//!    notifications are sent but not counted. The Redis is a redis-server of
//!    its own on a free port, without persistence (`--save '' --appendonly
//!    no`), or `--redis URL` under a fresh namespace.
//!
//! Push at 10,000 messages a second (issue 17), without asking the API for
//! 10,000 writes a second, which on Redis this machine cannot make:
//!
//! ```text
//! cargo run --release -p examples --bin bench-push -- --subscribers 0 --services 50 --listeners 20 --rate 500 --notifications 5000 --warmup 500
//! ```
//!
//! It fails if a notification is lost or arrives twice. One full run takes
//! under a minute on 2 cores, and printed (2 cores, loopback):
//!
//! ```text
//!  plain WebSocket: 10000 idle subscribers opened in 2.3 s; server RSS 17.4 MiB -> 107.8 MiB (+90.4 MiB): 9478 bytes per subscriber (9458 over the first half)
//! CometD WebSocket: 10000 idle subscribers opened in 3.6 s; server RSS 18.1 MiB -> 127.2 MiB (+109.2 MiB): 11445 bytes per subscriber (11466 over the first half)
//! CometD long-polling: 10000 idle subscribers opened in 3.6 s; server RSS 19.4 MiB -> 198.2 MiB (+178.8 MiB): 18745 bytes per subscriber (18632 over the first half)
//!       1 node, memory store: delivered p50 0.31 ms, p95 0.50 ms, p99 0.62 ms, max 4.16 ms; HTTP answered p50 0.33 ms, ...
//!   2 nodes on Redis, B -> A: delivered p50 0.76 ms, p95 1.05 ms, p99 1.38 ms, max 5.47 ms; HTTP answered p50 0.61 ms, ...
//! ```
//!
//! A WebSocket subscriber keeps a 4 KiB read buffer once upgraded; a held
//! long-polling connect keeps what hyper holds for an HTTP/1 connection
//! with a request in flight (8 KiB read and 8 KiB write buffers), the
//! connection's task and the request's future through the layers (one
//! stack of tower layers: see `http_front::layered`).
//!
//! It raises its open-files limit to the hard limit (the servers inherit
//! it); N subscribers need N + `--warm` + some descriptors in each process,
//! and as many loopback ports.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Parser;
use examples::bench::{Server, ServerSpec};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Set in a child: run callbackd instead of the benchmark.
const SERVE_ENV: &str = "BENCH_PUSH_SERVE";

#[derive(Parser)]
struct Args {
    /// Idle subscribers of each kind for the memory figure (0: skip it).
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// Subscribers opened (and kept) before the first RSS reading.
    #[arg(long, default_value_t = 200)]
    warm: usize,
    /// Subscribers being opened at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Notifications measured in each latency run (0: skip them).
    #[arg(long, default_value_t = 3000)]
    notifications: usize,
    /// Notifications sent first, at the same rate, and not counted.
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    /// Notifications per second.
    #[arg(long, default_value_t = 300.0)]
    rate: f64,
    /// Services (each its own device) the notifications go to.
    #[arg(long, default_value_t = 20)]
    services: usize,
    /// Plain WebSocket subscribers of each service's device: each
    /// notification is one message to each of them (a customer's phone and
    /// browser), so `--rate` × this is the messages pushed per second.
    #[arg(long, default_value_t = 1)]
    listeners: usize,
    /// An existing Redis (`redis://HOST:PORT/DB`); a fresh namespace is used.
    #[arg(long)]
    redis: Option<String>,
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// A callbackd process on `store`, logging at `warn`.
async fn start_server(
    dir: &Path,
    name: &str,
    store: &str,
    max_clients: usize,
) -> anyhow::Result<Server> {
    let args: Vec<OsString> = vec![
        "--scenarios".into(),
        scenarios_dir().into(),
        "--store".into(),
        store.into(),
        "--push-max-clients".into(),
        max_clients.to_string().into(),
        // Every subscriber comes from 127.0.0.1, and each held long-polling
        // connect is a connection of its own.
        "--max-connections-per-ip".into(),
        max_clients.to_string().into(),
        // Idle subscribers stay: nothing but pongs comes from them.
        "--push-idle-timeout".into(),
        "10m".into(),
    ];
    Server::start(ServerSpec {
        name,
        serve_env: SERVE_ENV,
        dir,
        args,
        env: vec![("RUST_LOG".to_owned(), "warn".to_owned())],
        cpu: None,
    })
    .await
}

/// The WebSocket URL of `path` on `server`.
fn ws(server: &Server, path: &str) -> String {
    format!("{}{path}", server.base.replacen("http://", "ws://", 1))
}

/// The next text frame, as JSON.
async fn next_json(ws: &mut Socket) -> anyhow::Result<Value> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .context("no frame in 30 s")?
            .context("socket closed")??;
        if let Message::Text(text) = frame {
            return Ok(serde_json::from_str(&text)?);
        }
    }
}

/// A plain WebSocket subscriber of `device`, past its first frame.
async fn open_plain(server: &Server, device: &str) -> anyhow::Result<Socket> {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(ws(server, &format!("/api/v1/push/ws?gms_user={device}")))
            .await?;
    let hello = next_json(&mut ws).await?;
    ensure!(hello["channel"] == "/meta/connected", "first frame {hello}");
    Ok(ws)
}

fn bayeux_connect(client_id: &str, n: u64, now: bool) -> Message {
    let mut connect = json!({"channel": "/meta/connect", "clientId": client_id,
                             "id": n.to_string(), "connectionType": "websocket"});
    if now {
        connect["advice"] = json!({"timeout": 0});
    }
    Message::text(json!([connect]).to_string())
}

/// A CometD WebSocket subscriber of `device`: handshaken, subscribed to
/// `/_genesys`, connected, and with its next `/meta/connect` sent (held).
async fn open_bayeux(server: &Server, device: &str) -> anyhow::Result<(Socket, String)> {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(ws(server, &format!("/genesys/cometd?gms_user={device}")))
            .await?;
    let handshake = json!([{"channel": "/meta/handshake", "version": "1.0", "id": "1",
                            "supportedConnectionTypes": ["websocket"]}]);
    ws.send(Message::text(handshake.to_string())).await?;
    let reply = next_json(&mut ws).await?;
    ensure!(reply[0]["successful"] == true, "handshake: {reply}");
    let client_id = reply[0]["clientId"]
        .as_str()
        .context("clientId")?
        .to_owned();
    let subscribe = json!([{"channel": "/meta/subscribe", "clientId": client_id, "id": "2",
                            "subscription": "/_genesys"}]);
    ws.send(Message::text(subscribe.to_string())).await?;
    let reply = next_json(&mut ws).await?;
    ensure!(reply[0]["successful"] == true, "subscribe: {reply}");
    ws.send(bayeux_connect(&client_id, 3, true)).await?;
    let reply = next_json(&mut ws).await?;
    ensure!(
        reply
            .as_array()
            .and_then(|r| r.last())
            .map(|r| &r["successful"])
            == Some(&json!(true)),
        "connect: {reply}"
    );
    ws.send(bayeux_connect(&client_id, 4, false)).await?;
    Ok((ws, client_id))
}

/// Keeps a subscriber alive: reads (which answers pings) and, for CometD,
/// sends the next `/meta/connect` when the held one answers.
fn keep(mut ws: Socket, client_id: Option<String>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 5;
        while let Some(Ok(frame)) = ws.next().await {
            let (Some(id), Message::Text(text)) = (&client_id, &frame) else {
                continue;
            };
            if text.contains("\"/meta/connect\"") {
                n += 1;
                if ws.send(bayeux_connect(id, n, false)).await.is_err() {
                    return;
                }
            }
        }
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Plain,
    Bayeux,
    LongPolling,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Plain => "plain WebSocket",
            Kind::Bayeux => "CometD WebSocket",
            Kind::LongPolling => "CometD long-polling",
        }
    }
}

/// Opens subscribers `from..to` of this kind, `concurrency` at a time.
/// A CometD long-polling subscriber of `device` (the `gms_user` header):
/// handshaken, subscribed to `/_genesys`, connected; then a task that keeps
/// a `/meta/connect` held, one connection per subscriber.
async fn open_long_polling(
    server: &Server,
    http: &reqwest::Client,
    device: &str,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let url = format!("{}/genesys/cometd", server.base);
    let post = |batch: Value| {
        let request = http
            .post(url.clone())
            .header("gms_user", device)
            .json(&batch);
        async move {
            let resp = request.send().await?;
            ensure!(resp.status() == 200, "cometd answered {}", resp.status());
            Ok::<Value, anyhow::Error>(resp.json().await?)
        }
    };
    let reply = post(
        json!([{"channel": "/meta/handshake", "version": "1.0", "id": "1",
                             "supportedConnectionTypes": ["long-polling"]}]),
    )
    .await?;
    ensure!(reply[0]["successful"] == true, "handshake: {reply}");
    let client_id = reply[0]["clientId"]
        .as_str()
        .context("clientId")?
        .to_owned();
    let reply = post(
        json!([{"channel": "/meta/subscribe", "clientId": client_id, "id": "2",
                             "subscription": "/_genesys"}]),
    )
    .await?;
    ensure!(reply[0]["successful"] == true, "subscribe: {reply}");
    let reply = post(
        json!([{"channel": "/meta/connect", "clientId": client_id, "id": "3",
                             "connectionType": "long-polling", "advice": {"timeout": 0}}]),
    )
    .await?;
    ensure!(
        reply
            .as_array()
            .and_then(|r| r.last())
            .map(|r| &r["successful"])
            == Some(&json!(true)),
        "connect: {reply}"
    );
    let (http, device) = (http.clone(), device.to_owned());
    Ok(tokio::spawn(async move {
        for n in 4u64.. {
            let batch = json!([{"channel": "/meta/connect", "clientId": client_id,
                                "id": n.to_string(), "connectionType": "long-polling"}]);
            let sent = http
                .post(url.clone())
                .header("gms_user", &device)
                .json(&batch)
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status() == 200 => {
                    let _ = resp.bytes().await;
                }
                _ => return,
            }
        }
    }))
}

async fn open_many(
    server: &Server,
    kind: Kind,
    from: usize,
    to: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    // Long-polling: each held connect takes a connection of its own.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let http = &http;
    stream::iter(from..to)
        .map(|i| async move {
            let device = format!("idle-{i}");
            match kind {
                Kind::Plain => Ok(keep(open_plain(server, &device).await?, None)),
                Kind::Bayeux => {
                    let (ws, id) = open_bayeux(server, &device).await?;
                    Ok::<_, anyhow::Error>(keep(ws, Some(id)))
                }
                Kind::LongPolling => open_long_polling(server, http, &device).await,
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await
        .with_context(|| format!("opening {} subscribers", kind.label()))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Memory per idle subscriber of one kind, on a fresh server.
async fn memory(dir: &Path, kind: Kind, args: &Args) -> anyhow::Result<f64> {
    let n = args.subscribers;
    let mut server = start_server(dir, "memory", "memory", n + args.warm + 100).await?;
    let mut held = open_many(&server, kind, 0, args.warm, args.concurrency).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = server.rss()?;
    let started = Instant::now();
    let half = args.warm + n / 2;
    held.extend(open_many(&server, kind, args.warm, half, args.concurrency).await?);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_half = server.rss()?;
    held.extend(open_many(&server, kind, half, args.warm + n, args.concurrency).await?);
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss()?;
    server.check_running()?;
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    let per_half = (at_half.saturating_sub(before)) as f64 / (half - args.warm).max(1) as f64;
    println!(
        "{:>16}: {n} idle subscribers opened in {:.1} s; server RSS {:.1} MiB -> {:.1} MiB \
         (+{:.1} MiB): {per:.0} bytes per subscriber ({per_half:.0} over the first half)",
        kind.label(),
        opened.as_secs_f64(),
        mib(before),
        mib(after),
        mib(after.saturating_sub(before)),
    );
    // The server goes first, so the closed connections wait out TIME_WAIT
    // on its side, not on this process's ephemeral ports.
    drop(server);
    for task in held {
        task.abort();
    }
    Ok(per)
}

/// What one latency run measured.
struct Latency {
    /// Sent to arrived, in ms, sorted.
    delivered: Vec<f64>,
    /// Sent to answered, in ms, sorted.
    answered: Vec<f64>,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(sorted: &[f64]) -> String {
    format!(
        "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(sorted, 0.50),
        percentile(sorted, 0.95),
        percentile(sorted, 0.99),
        sorted[sorted.len() - 1]
    )
}

/// Notifications made through `producer`, received by subscribers on `listener`.
async fn latency(producer: &Server, listener: &Server, args: &Args) -> anyhow::Result<Latency> {
    let total = args.warmup + args.notifications;
    let listeners = args.listeners;
    // Notification i's arrival at listener l is slot i * listeners + l.
    let arrived: Arc<Mutex<Vec<Option<Instant>>>> =
        Arc::new(Mutex::new(vec![None; total * listeners]));
    let twice = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for (k, l) in (0..args.services).flat_map(|k| (0..listeners).map(move |l| (k, l))) {
        let mut ws = open_plain(listener, &format!("lat-{k}")).await?;
        let (arrived, twice) = (arrived.clone(), twice.clone());
        readers.push(tokio::spawn(async move {
            while let Some(Ok(frame)) = ws.next().await {
                let now = Instant::now();
                let Message::Text(text) = frame else { continue };
                let Ok(m) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if !m["tag"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("service.internal."))
                {
                    continue;
                }
                let Some(i) = m["data"]["_display_message"]
                    .as_str()
                    .and_then(|s| s.parse::<usize>().ok())
                else {
                    continue;
                };
                let mut arrived = arrived.lock().unwrap();
                match arrived.get_mut(i * listeners + l) {
                    Some(slot @ None) => *slot = Some(now),
                    _ => {
                        twice.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut ids = Vec::new();
    for k in 0..args.services {
        let form = reqwest::multipart::Form::new()
            .text("_customer_number", format!("555{k:07}"))
            .text("_device_notification_id", format!("lat-{k}"))
            .text("_device_os", "comet");
        let resp = client
            .post(format!(
                "{}/genesys/1/service/callback/chat-delay",
                producer.base
            ))
            .multipart(form)
            .send()
            .await?;
        ensure!(resp.status() == 200, "create answered {}", resp.status());
        let body: Value = resp.json().await?;
        ids.push(body["_id"].as_str().context("_id")?.to_owned());
    }
    let ids = Arc::new(ids);

    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; total]));
    let answered: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = Vec::with_capacity(total);
    let warmup = args.warmup;
    let started = Instant::now();
    for i in 0..total {
        ticks.tick().await;
        let (client, ids, sent, answered, failures) = (
            client.clone(),
            ids.clone(),
            sent.clone(),
            answered.clone(),
            failures.clone(),
        );
        let base = producer.base.clone();
        requests.push(tokio::spawn(async move {
            let id = &ids[i % ids.len()];
            let form = reqwest::multipart::Form::new().text("_display_message", i.to_string());
            let request = client
                .post(format!(
                    "{base}/genesys/1/service/{id}/internal-notification"
                ))
                .multipart(form);
            let at = Instant::now();
            sent.lock().unwrap()[i] = Some(at);
            match request.send().await {
                Ok(resp) if resp.status() == 200 => {
                    let took = at.elapsed().as_secs_f64() * 1000.0;
                    if i >= warmup {
                        answered.lock().unwrap().push(took);
                    }
                }
                Ok(resp) => {
                    let status = resp.status();
                    let body = resp.text().await.unwrap_or_default();
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("#{i}: {status}: {body}"));
                }
                Err(e) => failures
                    .lock()
                    .unwrap()
                    .push(format!("#{i}: {:#}", anyhow::Error::from(e))),
            }
        }));
    }
    let sending = started.elapsed();
    for r in requests {
        r.await?;
    }
    let failures = failures.lock().unwrap().clone();
    ensure!(
        failures.is_empty(),
        "{} requests failed, e.g. {}",
        failures.len(),
        failures[0]
    );
    // Everything sent must arrive; give the stragglers a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while arrived.lock().unwrap().iter().any(Option::is_none) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for r in readers {
        r.abort();
    }
    let sent = sent.lock().unwrap().clone();
    let arrived = arrived.lock().unwrap().clone();
    let lost = arrived.iter().filter(|a| a.is_none()).count();
    let twice = twice.load(Ordering::Relaxed);
    ensure!(
        lost == 0 && twice == 0,
        "{lost} notifications did not arrive, {twice} arrived more than once"
    );
    let mut delivered: Vec<f64> = arrived
        .iter()
        .enumerate()
        .skip(args.warmup * listeners)
        .map(|(slot, a)| (sent[slot / listeners], a))
        .map(|(s, a)| {
            let (s, a) = (s.expect("sent"), a.expect("arrived"));
            a.saturating_duration_since(s).as_secs_f64() * 1000.0
        })
        .collect();
    delivered.sort_by(f64::total_cmp);
    let mut answered = answered.lock().unwrap().clone();
    answered.sort_by(f64::total_cmp);
    let actual_rate = total as f64 / sending.as_secs_f64();
    ensure!(
        actual_rate > args.rate * 0.9,
        "sent only {actual_rate:.0}/s of the {}/s asked",
        args.rate
    );
    Ok(Latency {
        delivered,
        answered,
    })
}

async fn bench(args: Args) -> anyhow::Result<()> {
    ensure!(args.rate > 0.0, "--rate must be above 0");
    ensure!(args.services > 0, "--services must be at least 1");
    ensure!(args.listeners > 0, "--listeners must be at least 1");
    ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    raise_fd_limit(args.subscribers + args.warm + 1000)?;
    let dir = tempfile::Builder::new().prefix("bench-push-").tempdir()?;
    let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    println!(
        "cargo run --release -p examples --bin bench-push -- {}",
        if command.is_empty() {
            "(defaults)".to_owned()
        } else {
            command
        }
    );
    if args.subscribers > 0 {
        println!(
            "memory per idle subscriber (one callbackd process, memory store, {} kept open first):",
            args.warm
        );
        for kind in [Kind::Plain, Kind::Bayeux, Kind::LongPolling] {
            memory(dir.path(), kind, &args).await?;
        }
    }
    if args.notifications > 0 {
        println!(
            "delivery latency, request sent -> frame received ({} notifications at {}/s over {} devices with {} subscriber(s) each: {} messages/s; {} more first as warm-up):",
            args.notifications,
            args.rate,
            args.services,
            args.listeners,
            args.rate * args.listeners as f64,
            args.warmup
        );
        let clients = (args.services * args.listeners + 100).max(1000);
        let one = start_server(dir.path(), "single", "memory", clients).await?;
        let measured = latency(&one, &one, &args).await?;
        report("1 node, memory store", &measured);
        drop(one);

        let own_redis;
        let namespace = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let url = match &args.redis {
            Some(url) => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}namespace={namespace}")
            }
            None => {
                own_redis = examples::bench::Redis::start(None)?;
                format!("{}?namespace={namespace}", own_redis.url())
            }
        };
        let a = start_server(dir.path(), "node-a", &url, clients).await?;
        let b = start_server(dir.path(), "node-b", &url, clients).await?;
        let measured = latency(&b, &a, &args).await?;
        report("2 nodes on Redis, B -> A", &measured);
    }
    Ok(())
}

fn report(label: &str, l: &Latency) {
    println!(
        "{label:>26}: delivered {}; HTTP answered {}",
        summary(&l.delivered),
        summary(&l.answered)
    );
}

/// Raises the soft open-files limit to the hard one; fails if even that is
/// below `need`.
fn raise_fd_limit(need: usize) -> anyhow::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        ensure!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0,
            "getrlimit"
        );
        limit.rlim_cur = limit.rlim_max;
        ensure!(
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0,
            "setrlimit"
        );
    }
    ensure!(
        limit.rlim_cur as usize >= need,
        "{need} open files needed, the hard limit is {}: raise it (ulimit -Hn) or use fewer --subscribers",
        limit.rlim_cur
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    if std::env::var_os(SERVE_ENV).is_some() {
        return http_front::cli::main();
    }
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    match runtime.block_on(bench(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

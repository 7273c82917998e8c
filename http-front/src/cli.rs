//! The command line: flags, environment, start-up errors as one clear line.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use engine::scenario::Scenarios;
use engine::store::memory::MemoryStore;
use engine::store::Store;
use redis_store::{RedisConfig, RedisStore};
use runtime::clock::SystemClock;

/// callbackd: callback orchestration with the GMS Callback API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "CALLBACKD_LISTEN")]
    listen: SocketAddr,
    /// Directory of scenario TOML files.
    #[arg(long, default_value = "./scenarios", env = "CALLBACKD_SCENARIOS")]
    scenarios: PathBuf,
    /// Base URL clients use to reach this server, for dialog URLs (default: the request's Host).
    #[arg(long, env = "CALLBACKD_PUBLIC_URL")]
    public_url: Option<String>,
    /// Where services live: `memory` (this process only), `redis://HOST:PORT/DB`
    /// or `redis+cluster://HOST:PORT,HOST:PORT,...`; add `?namespace=NAME` to
    /// share one Redis between deployments.
    #[arg(long, default_value = "memory", env = "CALLBACKD_STORE")]
    store: String,
    /// Longest a Redis call may take before the request is answered 503.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, env = "CALLBACKD_STORE_TIMEOUT")]
    store_timeout: std::time::Duration,
    /// Push clients (CometD and WebSocket) one node holds at most.
    #[arg(long, default_value_t = 10_000, env = "CALLBACKD_PUSH_MAX_CLIENTS")]
    push_max_clients: usize,
    /// Messages that may wait for one push client; one more and it is dropped as a slow consumer.
    #[arg(long, default_value_t = 1_000, env = "CALLBACKD_PUSH_QUEUE_LIMIT")]
    push_queue_limit: usize,
    /// How long a CometD /meta/connect is held when nothing comes (the heartbeat).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, env = "CALLBACKD_PUSH_CONNECT_TIMEOUT")]
    push_connect_timeout: std::time::Duration,
    /// A CometD client id expires when its client has not connected for this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, env = "CALLBACKD_PUSH_MAX_INTERVAL")]
    push_max_interval: std::time::Duration,
    /// A WebSocket from which nothing (not even a pong) came for this long is closed.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, env = "CALLBACKD_PUSH_IDLE_TIMEOUT")]
    push_idle_timeout: std::time::Duration,
    /// Requests per second (and burst) per client address, on every route;
    /// over it: 429 with Retry-After. 0: no limit. Loopback clients are not
    /// limited unless `--rate-limit-loopback`.
    #[arg(long, default_value_t = crate::rate_limit::DEFAULT_PER_SECOND, env = "CALLBACKD_RATE_LIMIT")]
    rate_limit: u32,
    /// Apply `--rate-limit` to loopback clients too.
    #[arg(long, env = "CALLBACKD_RATE_LIMIT_LOOPBACK")]
    rate_limit_loopback: bool,
    /// A connection that has not sent a request's headers within this is
    /// closed (at most 30s).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, env = "CALLBACKD_HEADER_TIMEOUT")]
    header_timeout: std::time::Duration,
    /// A request body from which nothing arrived for this long is answered 408.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, env = "CALLBACKD_BODY_TIMEOUT")]
    body_timeout: std::time::Duration,
    /// An API request not answered within this is answered 503 (push requests are exempt).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, env = "CALLBACKD_REQUEST_TIMEOUT")]
    request_timeout: std::time::Duration,
    /// Connections one client address may hold open at once; more are answered 503 and closed.
    /// It counts TCP peers: behind a proxy, the proxy.
    #[arg(long, default_value_t = 1024, env = "CALLBACKD_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: usize,
    /// Serve HTTPS with this PEM certificate chain (the server's certificate
    /// first); needs `--tls-key`.
    #[arg(long, value_name = "FILE", env = "CALLBACKD_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, RSA or SEC1) of `--tls-cert`.
    #[arg(long, value_name = "FILE", env = "CALLBACKD_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Behind a proxy: take the client's address (for `--rate-limit`) from
    /// the rightmost address in `X-Forwarded-For`, the one the proxy saw.
    /// Only with a proxy that appends it: otherwise clients choose it.
    #[arg(long, env = "CALLBACKD_TRUST_FORWARDED")]
    trust_forwarded: bool,
    /// SMTP server for appointment e-mails: `smtp://HOST:PORT` (STARTTLS when
    /// offered), `smtps://USER:PASS@HOST`, or `smtp://HOST:PORT?tls=none`.
    /// Without it, e-mails are skipped (SMS still goes).
    #[arg(long, env = "CALLBACKD_SMTP_URL")]
    smtp_url: Option<String>,
    /// The credentials file: who may call, with which role (see the README,
    /// "Running it exposed"). Without it callbackd runs open, on loopback only.
    #[arg(long, env = "CALLBACKD_AUTH")]
    auth: Option<PathBuf>,
    /// A web origin (`https://shop.example`) whose pages may call the API
    /// from a browser; repeat it, or comma-separate them. None by default.
    #[arg(
        long = "cors-origin",
        env = "CALLBACKD_CORS_ORIGINS",
        value_delimiter = ','
    )]
    cors_origins: Vec<String>,
    /// A web origin (`https://shop.example`) whose pages may embed
    /// callbackd's pages in a frame (the site widget); repeat it, or
    /// comma-separate them. None by default: no site may frame them.
    #[arg(
        long = "frame-origin",
        env = "CALLBACKD_FRAME_ORIGINS",
        value_delimiter = ','
    )]
    frame_origins: Vec<String>,
    /// Allow running open (no credentials) on an address other than
    /// loopback: anyone who reaches it may do anything.
    #[arg(long, env = "CALLBACKD_INSECURE_OPEN")]
    insecure_open: bool,
    /// The From of appointment e-mails.
    #[arg(
        long,
        default_value = "callbackd <callbackd@localhost>",
        env = "CALLBACKD_MAIL_FROM"
    )]
    mail_from: String,
    /// How log lines are written: `text` for people, `json` (one object a
    /// line, with the span fields) for log shippers.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "CALLBACKD_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Reads a secret on stdin (its first line) and prints its argon2id
    /// hash, for a `secret_hash` in the credentials file.
    HashSecret,
}

impl Args {
    /// Who may call: the credentials file's, or open where that is safe.
    fn access(&self) -> anyhow::Result<crate::auth::Access> {
        if let Some(path) = &self.auth {
            let credentials = access::Credentials::load(path, |var| std::env::var(var).ok())
                .map_err(|e| anyhow::anyhow!("--auth: {e}"))?;
            if credentials.is_empty() {
                anyhow::bail!(
                    "--auth: {} holds no credential and no [jwt]",
                    path.display()
                );
            }
            tracing::info!(
                credentials = credentials.by_name.len(),
                jwt = credentials.jwt.is_some(),
                "Callers must present a credential."
            );
            return Ok(crate::auth::Access::with(credentials));
        }
        if !self.listen.ip().is_loopback() && !self.insecure_open {
            anyhow::bail!(
                "--listen {}: with no --auth file callbackd runs open, so it listens on loopback only; give --auth FILE, or --insecure-open to run open anyway",
                self.listen
            );
        }
        tracing::warn!(listen = %self.listen, "No credentials configured: callbackd is open; anyone who can reach it may do anything.");
        Ok(crate::auth::Access::open())
    }

    fn mail_config(&self) -> anyhow::Result<Option<runtime::notices::MailConfig>> {
        Ok(self
            .smtp_url
            .as_ref()
            .map(|url| runtime::notices::MailConfig {
                smtp_url: url.clone(),
                from: self.mail_from.clone(),
            }))
    }

    fn http_limits(&self) -> anyhow::Result<crate::HttpLimits> {
        for (flag, value) in [
            ("--header-timeout", self.header_timeout),
            ("--body-timeout", self.body_timeout),
            ("--request-timeout", self.request_timeout),
        ] {
            if value.is_zero() {
                anyhow::bail!("{flag}: must be longer than zero");
            }
        }
        if self.header_timeout > MAX_HEADER_TIMEOUT {
            anyhow::bail!(
                "--header-timeout: must be at most {}s; a client that takes longer holds a connection for nothing",
                MAX_HEADER_TIMEOUT.as_secs()
            );
        }
        if self.max_connections_per_ip == 0 {
            anyhow::bail!("--max-connections-per-ip: must be at least 1");
        }
        Ok(crate::HttpLimits {
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            request_timeout: self.request_timeout,
            max_connections_per_ip: self.max_connections_per_ip,
        })
    }

    /// HTTPS, when both files are given; one without the other is a mistake.
    fn tls(&self) -> anyhow::Result<Option<crate::tls::Tls>> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => crate::tls::Tls::from_pem_files(cert, key).map(Some),
            (Some(cert), None) => anyhow::bail!(
                "--tls-cert {}: needs --tls-key FILE too, the certificate's private key",
                cert.display()
            ),
            (None, Some(key)) => anyhow::bail!(
                "--tls-key {}: needs --tls-cert FILE too, the certificate it is the key of",
                key.display()
            ),
        }
    }

    fn push_limits(&self) -> anyhow::Result<push::Limits> {
        let d = push::Limits::default();
        if self.push_max_clients == 0 {
            anyhow::bail!("--push-max-clients: must be at least 1");
        }
        if self.push_queue_limit == 0 {
            anyhow::bail!("--push-queue-limit: must be at least 1");
        }
        if self.push_idle_timeout <= self.push_connect_timeout {
            anyhow::bail!("--push-idle-timeout: must be longer than --push-connect-timeout, or every idle CometD socket would close");
        }
        Ok(push::Limits {
            max_clients: self.push_max_clients,
            queue_limit: self.push_queue_limit,
            connect_timeout: self.push_connect_timeout,
            max_interval: self.push_max_interval,
            ws_ping: (self.push_idle_timeout / 3).min(d.ws_ping),
            ws_idle: self.push_idle_timeout,
            ..d
        })
    }
}

/// Longest `--header-timeout` allowed.
const MAX_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Deliveries relayed between nodes through the store's Redis.
struct RedisRelay(Arc<RedisStore>);

/// The namespace's pub/sub channel for deliveries.
const PUSH_CHANNEL: &str = "push";

impl push::Relay for RedisRelay {
    fn publish(
        &self,
        messages: Vec<Vec<u8>>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Option<usize>, String>> + Send + '_>,
    > {
        Box::pin(async move {
            self.0
                .publish(PUSH_CHANNEL, messages)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Deliveries from other nodes that may wait to be handed out.
const RELAY_INBOUND: usize = 10_000;

/// Runs callbackd with the process's arguments and environment.
pub fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(Command::HashSecret) = args.command {
        return hash_secret(std::io::stdin().lock());
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("callbackd: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One clear line (or the TOML excerpt), not a backtrace.
            eprintln!("callbackd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `callbackd hash-secret`: the secret comes on stdin, never as an
/// argument, so it stays out of the shell's history and the process list.
fn hash_secret(input: impl std::io::BufRead) -> std::process::ExitCode {
    let mut line = String::new();
    let mut input = input;
    if let Err(e) = input.read_line(&mut line) {
        eprintln!("callbackd: hash-secret: cannot read stdin: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let secret = line.trim_end_matches(['\n', '\r']);
    if secret.chars().count() < 12 {
        eprintln!("callbackd: hash-secret: the secret on stdin must be at least 12 characters");
        return std::process::ExitCode::FAILURE;
    }
    println!("{}", access::hash_secret(secret));
    std::process::ExitCode::SUCCESS
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,tower_http=warn".into());
    match args.log_format {
        // Colours only for a person at a terminal (and not with NO_COLOR):
        // a log file, a journal or a container's log gets no escape codes,
        // and every request's span fields are then formatted without them
        // (callgrind: /healthz 41,700 -> 36,800 instructions).
        LogFormat::Text => tracing_subscriber::fmt()
            .with_ansi(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .fmt_fields(crate::log_fields::PlainFields)
            .with_env_filter(filter)
            .init(),
        // Every span the event is in (the request's, with its id and
        // path, then the handler's) in `spans`: what a shipper indexes.
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .flatten_event(true)
            .with_env_filter(filter)
            .init(),
    }
    let scenarios =
        Scenarios::load_dir(&args.scenarios).map_err(|e| anyhow::anyhow!("scenario error: {e}"))?;
    for s in scenarios.iter() {
        tracing::info!(scenario = %s.name, queue = %s.target.queue, "Scenario loaded.");
    }
    let push_limits = args.push_limits()?;
    let http_limits = args.http_limits()?;
    let tls = args.tls()?;
    let clock = Arc::new(SystemClock);
    let (store, timer_wakeups, relay): (Arc<dyn Store>, _, _) = if args.store == "memory" {
        (Arc::new(MemoryStore::new(clock.clone())), None, None)
    } else {
        let mut config =
            RedisConfig::parse(&args.store).map_err(|e| anyhow::anyhow!("--store: {e}"))?;
        config.op_timeout = args.store_timeout;
        let store = RedisStore::connect(config, clock.clone())
            .await
            .map_err(|e| anyhow::anyhow!("--store: {e}"))?;
        tracing::info!(namespace = store.namespace(), "Using the Redis store.");
        let wakeups = store.timer_wakeups();
        let store = Arc::new(store);
        let subscription = store.messages(PUSH_CHANNEL, RELAY_INBOUND);
        let relay = crate::RelayLink {
            inbound: push::fanout::Inbound {
                messages: subscription.messages,
                listening: subscription.listening,
            },
            relay: Arc::new(RedisRelay(store.clone())),
        };
        (store, Some(wakeups), Some(relay))
    };
    let mail = args.mail_config()?;
    let access = args.access()?;
    let config = crate::Config {
        scenarios,
        store,
        clock,
        public_url: args.public_url,
        timer_wakeups,
        push: push_limits,
        relay,
        mail,
        access,
        cors_origins: args
            .cors_origins
            .iter()
            .map(|o| crate::cors::parse_origin(o.trim()))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("--cors-origin: {e}"))?,
        frame_origins: args
            .frame_origins
            .iter()
            .map(|o| crate::cors::parse_origin(o.trim()))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("--frame-origin: {e}"))?,
        rate_limit: crate::rate_limit::RateLimit {
            per_second: std::num::NonZeroU32::new(args.rate_limit),
            loopback: args.rate_limit_loopback,
        },
        http: http_limits,
        tls,
        trust_forwarded: args.trust_forwarded,
        // From the environment.
        webhook_secrets: None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {}: {e}", args.listen))?;
    crate::run(listener, config, shutdown_signal()).await
}

/// Ctrl-C or SIGTERM (what service managers send) both stop the server cleanly.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("Shutting down.");
}

//! The callbackd HTTP front: the GMS Callback API and the agent API over
//! axum, on top of the [`runtime`] crate.
//!
//! - [`auth`]: who calls (the credential, checked once) and whether they may.
//! - [`routes`]: one file per group of commands (callback, connect,
//!   check-queue-position, chat, notifications, agents, services, video,
//!   schedule, push).
//! - [`form`]: GMS request bodies in multipart, form-urlencoded or JSON.
//! - `requests`: the bodies with rules, each parsed once into a type.
//! - `request_id`: the `X-Request-Id` of every request and its span.
//! - [`wire`]: GMS response shapes.
//! - [`error`]: the one `AppError`, answered as `{"message", "exception"}`.
//! - [`outbound`]: the HTTP client the runtime posts httpcb and SMS through.
//! - [`cli`]: the `callbackd` command line; `log_fields`: the text log's
//!   fields, as tracing-subscriber writes them, for less work per span.
//! - `admission`: the one tower layer of the checks a request passes or is
//!   answered by at once (the body guard, the rate limit).
//! - `guard`: bounds on bodies (size, stalls) and on API request time;
//!   `server`: the accept loop, with bounds on header time and connections
//!   per client address, and the TLS handshake of each connection.
//! - [`tls`]: `--tls-cert` and `--tls-key`, read once at start-up.
//! - `client_addr`: which address is the client (`--trust-forwarded`).
//!
//! Only this crate knows HTTP. [`run`] serves until the shutdown signal.
//!
//! It also names the process's allocator, so `callbackd`, the benchmarks
//! (which run `cli::main`) and the tests all run the same one.

/// jemalloc rather than glibc's malloc: a create on the memory store runs
/// 13% fewer instructions (205,000 -> 177,500), a waiting service holds 9%
/// less memory and a held long-polling connect 19% less. mimalloc saved as
/// much CPU but paused creates over 5 ms while the store grew.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod admission;
pub mod auth;
pub mod cli;
mod client_addr;
pub mod cors;
pub mod error;
mod extract;
pub mod form;
mod guard;
mod log_fields;
pub mod metrics;
pub mod openapi;
pub mod outbound;
pub mod pages;
pub mod rate_limit;
mod request_id;
mod requests;
mod routes;
mod server;
pub mod tls;
pub mod wire;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use engine::clock::Clock;
use engine::scenario::Scenarios;
use engine::store::Store;
use runtime::notices::{MailConfig, Notifier};
use runtime::room_maker::RoomMaker;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use runtime::Shell;

/// What every handler can reach.
pub struct AppState {
    pub shell: Arc<Shell>,
    /// Base URL put into dialogs (`_start_chat_url`, `_comet_url`); the request's Host when absent.
    pub public_url: Option<String>,
    /// Base of links that leave the request (join links in e-mails and
    /// invites): the public URL, else this server's listen address. Never a
    /// request header, which anyone can set.
    pub link_base: String,
    /// How callers are checked (open, or credentials).
    pub access: auth::Access,
    /// Whether this server speaks HTTPS itself (`--tls-cert`): then the
    /// links it makes from a request's Host are `https://`.
    pub tls: bool,
    /// The pages' CSP `frame-ancestors` (`--frame-origin`).
    pub frame_ancestors: String,
}

pub struct Config {
    pub scenarios: Scenarios,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub public_url: Option<String>,
    /// Pinged when any node armed a timer (the Redis store's wake channel),
    /// so this node's timer loop looks again.
    pub timer_wakeups: Option<watch::Receiver<()>>,
    /// Bounds of the push side (clients, queues, timeouts).
    pub push: push::Limits,
    /// The way to the other nodes' push clients, when there are other nodes.
    pub relay: Option<RelayLink>,
    /// Where appointment e-mails go out (SMTP); none: e-mails are skipped.
    pub mail: Option<MailConfig>,
    /// Who may call: open (no credentials), or the credentials file's.
    pub access: auth::Access,
    /// Requests per second per client address (`--rate-limit`).
    pub rate_limit: rate_limit::RateLimit,
    /// Web origins whose pages may call the API (`--cors-origin`); none by default.
    pub cors_origins: Vec<axum::http::HeaderValue>,
    /// Web origins whose pages may embed callbackd's pages in a frame
    /// (`--frame-origin`, the site widget); none by default.
    pub frame_origins: Vec<axum::http::HeaderValue>,
    /// Bounds on what one client may hold: time to send headers and bodies,
    /// time per request, connections per address.
    pub http: HttpLimits,
    /// HTTPS on the listener (`--tls-cert`, `--tls-key`); none: plain HTTP.
    pub tls: Option<tls::Tls>,
    /// Take the client's address from `X-Forwarded-For` (`--trust-forwarded`),
    /// for a server behind a proxy; off: the TCP peer's.
    pub trust_forwarded: bool,
    /// The webhook secrets by variable name; `None`: read from the
    /// environment (each `[[_webhook]]`'s `secret_env`).
    pub webhook_secrets: Option<BTreeMap<String, String>>,
}

impl Config {
    /// One node on `store` with the defaults for everything else: open
    /// access, no public URL, default push limits, no relay, no mail, no
    /// rate limit, the default HTTP bounds, plain HTTP, the peer's address.
    pub fn new(scenarios: Scenarios, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Config {
        Config {
            scenarios,
            store,
            clock,
            public_url: None,
            timer_wakeups: None,
            push: push::Limits::default(),
            relay: None,
            mail: None,
            access: auth::Access::open(),
            rate_limit: rate_limit::RateLimit::default(),
            http: HttpLimits::default(),
            cors_origins: Vec::new(),
            frame_origins: Vec::new(),
            tls: None,
            webhook_secrets: None,
            trust_forwarded: false,
        }
    }
}

/// Bounds against slow or greedy clients.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// A connection that has not sent a request's headers within this is
    /// closed (hyper's `header_read_timeout`, which also runs while a
    /// keep-alive connection waits for its next request).
    pub header_timeout: Duration,
    /// A request body from which nothing arrived for this long is answered 408.
    pub body_timeout: Duration,
    /// An API request not answered within this is answered 503. Push
    /// requests are exempt: a held `/meta/connect` waits by design, bounded
    /// by its own connect timeout.
    pub request_timeout: Duration,
    /// Connections one client address may hold open at once; more are
    /// answered 503 and closed.
    pub max_connections_per_ip: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            // Room for a load test from one address (tests/api races a
            // thousand creates at once), well under a process's file limit.
            max_connections_per_ip: 1024,
        }
    }
}

/// Deliveries out to the other nodes, and theirs in.
pub struct RelayLink {
    pub relay: Arc<dyn push::Relay>,
    pub inbound: push::fanout::Inbound,
}

/// How long shutdown waits for push sockets to close.
const PUSH_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub fn app(state: Arc<AppState>, limits: &HttpLimits, rate_limit: rate_limit::RateLimit) -> Router {
    layered(
        routes::router(state.clone()),
        routes::push_router(state),
        limits,
        rate_limit,
    )
}

/// The API (answered 503 after the request timeout) and the push endpoints
/// under the layers every request passes: a request id, the rate limit, a
/// span, metrics, panics answered 500, the body guard and the body limit.
fn layered(
    api: Router,
    push: Router,
    limits: &HttpLimits,
    rate_limit: rate_limit::RateLimit,
) -> Router {
    use tower_http::catch_panic::CatchPanicLayer;
    // One stack, added with one `layer` call: each `Router::layer` wraps
    // every route in a boxed service of its own, so each call would box a
    // future and a clone of the service below per request, which a held
    // long-polling connect keeps for as long as it is held. Outermost first.
    let every_request = tower::ServiceBuilder::new()
        // Every answer carries the id, the limit's, the timeout's and the
        // panic's too.
        .layer(request_id::RequestIdLayer)
        // Every route, the push endpoints included, is behind the limit.
        .option_layer(rate_limit::layer(rate_limit))
        // The limit's own answer and the ones from below share a body type.
        .map_response(axum::response::IntoResponse::into_response)
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(request_id::span))
        // Sees the route template (routing has run) and every answer below it.
        .layer(metrics::TrackLayer)
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                error::AppError::Internal("the request could not be handled".into())
                    .into_response_owned()
            },
        ))
        .layer(admission::AdmitLayer(guard::BodyGuard {
            idle: limits.body_timeout,
        }))
        // Every extractor, ours or axum's, reads at most the API's limit.
        .layer(axum::extract::DefaultBodyLimit::max(form::BODY_LIMIT));
    api.layer(guard::RequestTimeoutLayer(limits.request_timeout))
        .merge(push)
        .layer(every_request)
}

impl error::AppError {
    fn into_response_owned(self) -> axum::response::Response {
        axum::response::IntoResponse::into_response(self)
    }
}

/// The signing key of every scenario's `[[_webhook]]`, from `given` or the
/// environment; a subscription without one stops start-up, naming the
/// scenario and the variable.
fn webhook_secrets(
    scenarios: &Scenarios,
    given: Option<&BTreeMap<String, String>>,
) -> anyhow::Result<runtime::WebhookSecrets> {
    let mut secrets = runtime::WebhookSecrets::default();
    for scenario in scenarios.iter() {
        for webhook in &scenario.webhooks {
            let env = &webhook.secret_env;
            let value = match given {
                Some(given) => given.get(env).cloned(),
                None => std::env::var(env).ok(),
            }
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "scenario {}: [[_webhook]] {}: the environment variable {env} (secret_env) is not set",
                    scenario.name,
                    webhook.url
                )
            })?;
            secrets
                .insert(env, &value)
                .map_err(|why| anyhow::anyhow!("scenario {}: {why}", scenario.name))?;
        }
    }
    Ok(secrets)
}

/// Serves on `listener` until `shutdown` completes; then stops the background tasks.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (relay, inbound) = match config.relay {
        Some(link) => (Some(link.relay), Some(link.inbound)),
        None => (None, None),
    };
    let http = outbound::ReqwestPost::shared()?;
    let notifier = Arc::new(Notifier::new(config.mail, http.clone())?);
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let link_base = match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("{scheme}://{}", listener.local_addr()?),
    };
    let rooms = Arc::new(RoomMaker::new(
        &config.scenarios,
        link_base.clone(),
        |var| std::env::var(var).ok(),
    )?);
    let webhook_secrets = webhook_secrets(&config.scenarios, config.webhook_secrets.as_ref())?;
    metrics::install();
    let shell = Shell::new(runtime::Parts {
        store: config.store,
        scenarios: config.scenarios,
        clock: config.clock,
        limits: config.push,
        relay,
        notifier,
        rooms,
        http,
        webhook_secrets,
    });
    let state = Arc::new(AppState {
        shell: shell.clone(),
        public_url: config.public_url,
        link_base,
        access: config.access,
        tls: config.tls.is_some(),
        frame_ancestors: pages::frame_ancestors(&config.frame_origins),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks = shell.spawn_background(stop_rx, config.timer_wakeups, inbound);
    let registry = shell.registry().clone();
    let app = app(state, &config.http, config.rate_limit);
    let app = cors::layer(app, &config.cors_origins);
    tracing::info!(
        url = %format!("{scheme}://{}", listener.local_addr()?),
        trust_forwarded = config.trust_forwarded,
        "callbackd listening."
    );
    server::serve(
        listener,
        app,
        &config.http,
        config.tls,
        config.trust_forwarded,
        async move {
            shutdown.await;
            // Held connects answer and sockets close first: hyper waits for
            // open requests, and a held long-poll is one.
            registry.shutdown(PUSH_SHUTDOWN_GRACE).await;
            let _ = stop_tx.send(true);
        },
    )
    .await;
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

/// Every (method, path) the server serves, as the route table lists it
/// (path parameters in braces).
pub fn route_list() -> Vec<(String, String)> {
    routes::routes()
        .iter()
        .map(|r| (r.method.as_str().to_owned(), r.path.to_owned()))
        .collect()
}

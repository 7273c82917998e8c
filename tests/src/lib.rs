//! Test harness: starts the real callbackd server on 127.0.0.1:0 and talks
//! to it as a client would, with multipart bodies like the seed's.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use engine::scenario::Scenarios;
use engine::store::memory::MemoryStore;
use engine::store::Store;
use engine::testing::ScenarioBuilder;
use redis_store::testing::RedisServer;
use redis_store::{RedisConfig, RedisStore};
use reqwest::multipart::Form;
use runtime::clock::SystemClock;
use serde_json::Value;
use tokio::sync::oneshot;

pub mod node;
pub mod seed;
pub mod smtp;
pub mod time;
pub mod video;
pub mod webhooks;

pub use time::iso_utc_in;

/// How long a test waits for what the server does by itself (a state, a
/// delivery, a timer) before it gives up.
pub const WAIT: Duration = Duration::from_secs(10);

/// The string a JSON value holds; panics on anything else.
pub fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
        .to_owned()
}

/// The `[_schedule.hours]` lines of a schedule open all day, every day.
pub use engine::testing::open_every_day;

/// The scenarios shipped in `scenarios/`.
pub fn shipped_scenarios_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// The shipped scenario `shipped` (`video-immediate`), renamed `name`, with
/// `changes` applied (`(from, to)` text replacements that must each match).
pub fn shipped_scenario_copy(shipped: &str, name: &str, changes: &[(&str, &str)]) -> String {
    let file = format!("{shipped}.toml");
    let mut text = std::fs::read_to_string(shipped_scenarios_dir().join(&file))
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut all = vec![(
        format!("name = \"{shipped}\""),
        format!("name = \"{name}\""),
    )];
    all.extend(changes.iter().map(|(a, b)| (a.to_string(), b.to_string())));
    for (from, to) in all {
        assert!(text.contains(&from), "`{from}` is not in {file}");
        text = text.replacen(&from, &to, 1);
    }
    text
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
    /// The throw-away Redis the server stores in (with `.redis()`); held so
    /// it lives exactly as long as the app.
    _redis: Option<RedisServer>,
}

/// Starts a server with the shipped scenarios, in memory: shorthand for
/// `TestApp::builder().spawn()`.
pub async fn spawn_app() -> TestApp {
    TestApp::builder().spawn().await
}

/// How a [`TestApp`] is started: which scenarios besides the shipped ones,
/// which push limits, where e-mail goes, and which store.
#[must_use = "a builder does nothing until `.spawn()`"]
pub struct TestAppBuilder {
    scenarios: Vec<(String, String)>,
    push: push::Limits,
    mail: Option<runtime::notices::MailConfig>,
    redis: bool,
    auth: Option<String>,
    acting_as: Option<String>,
    webhook_secrets: std::collections::BTreeMap<String, String>,
    rate_limit: http_front::rate_limit::RateLimit,
    cors_origins: Vec<String>,
    frame_origins: Vec<String>,
    http: http_front::HttpLimits,
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    trust_forwarded: bool,
}

impl TestApp {
    /// A server with the shipped scenarios, default push limits, no e-mail,
    /// and the in-memory store, until told otherwise.
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            scenarios: Vec::new(),
            push: push::Limits::default(),
            mail: None,
            redis: false,
            auth: None,
            acting_as: None,
            webhook_secrets: Default::default(),
            cors_origins: Vec::new(),
            frame_origins: Vec::new(),
            rate_limit: Default::default(),
            http: http_front::HttpLimits::default(),
            tls: None,
            trust_forwarded: false,
        }
    }
}

impl TestAppBuilder {
    /// One more scenario file `name` with this TOML, besides the shipped
    /// ones (e.g. a copy with short timeouts for the timeout paths).
    pub fn scenario(mut self, name: &str, toml: &str) -> Self {
        self.scenarios.push((name.to_owned(), toml.to_owned()));
        self
    }

    /// One more scenario, as [`ScenarioBuilder`] writes it (into its
    /// [`file_name`](ScenarioBuilder::file_name)).
    pub fn with_scenario(self, scenario: &ScenarioBuilder) -> Self {
        self.scenario(&scenario.file_name(), &scenario.toml())
    }

    /// Several `(file name, TOML)` scenarios, as [`TestAppBuilder::scenario`].
    pub fn scenarios(self, extra: &[(&str, &str)]) -> Self {
        extra
            .iter()
            .fold(self, |builder, (name, toml)| builder.scenario(name, toml))
    }

    /// These push limits (small queues, few clients, short timeouts for the
    /// limit paths) instead of the defaults.
    pub fn push_limits(mut self, limits: push::Limits) -> Self {
        self.push = limits;
        self
    }

    /// Appointment e-mail goes to `mail` (e.g. an [`smtp::SmtpSink`]).
    pub fn mail(mut self, mail: runtime::notices::MailConfig) -> Self {
        self.mail = Some(mail);
        self
    }

    /// Stores in a fresh throw-away Redis ([`RedisServer::start`]: its own
    /// `redis-server`, or a namespace of its own on `REDIS_URL`), kept alive
    /// as long as the app, instead of in memory.
    pub fn redis(mut self) -> Self {
        self.redis = true;
        self
    }

    /// Lets pages from these web origins call the API (`--cors-origin`).
    pub fn cors_origins(mut self, origins: &[&str]) -> Self {
        self.cors_origins = origins.iter().map(|o| o.to_string()).collect();
        self
    }

    /// Lets sites of these web origins frame the pages (`--frame-origin`).
    pub fn frame_origins(mut self, origins: &[&str]) -> Self {
        self.frame_origins = origins.iter().map(|o| o.to_string()).collect();
        self
    }

    /// Checks callers against this credentials file (its TOML text) instead
    /// of running open.
    pub fn auth(mut self, credentials_toml: &str) -> Self {
        self.auth = Some(credentials_toml.to_owned());
        self
    }

    /// Every request of the app's client (and so of its helpers: create,
    /// ready_agent, …) presents this `x-api-key` (a key or `name:secret`).
    pub fn acting_as(mut self, api_key: &str) -> Self {
        self.acting_as = Some(api_key.to_owned());
        self
    }

    /// The webhook secret a scenario's `secret_env` names.
    pub fn webhook_secret(mut self, env: &str, secret: &str) -> Self {
        self.webhook_secrets
            .insert(env.to_owned(), secret.to_owned());
        self
    }

    /// `--rate-limit per_second`, loopback (the test's own address) included.
    pub fn rate_limit(mut self, per_second: u32) -> Self {
        self.rate_limit = http_front::rate_limit::RateLimit {
            per_second: std::num::NonZeroU32::new(per_second),
            loopback: true,
        };
        self
    }

    /// These HTTP bounds (header and body time, connections per address)
    /// instead of the defaults.
    pub fn http_limits(mut self, limits: http_front::HttpLimits) -> Self {
        self.http = limits;
        self
    }

    /// Serves HTTPS with this PEM certificate chain and key (`--tls-cert`,
    /// `--tls-key`); the app's `base` is then `https://127.0.0.1:PORT`.
    /// Its `client` and the helpers built on it speak plain HTTP only: a
    /// test talks TLS with a client that trusts the certificate.
    pub fn tls(mut self, cert: &Path, key: &Path) -> Self {
        self.tls = Some((cert.to_owned(), key.to_owned()));
        self
    }

    /// Takes the client's address from `X-Forwarded-For`
    /// (`--trust-forwarded`), as behind a proxy.
    pub fn trust_forwarded(mut self) -> Self {
        self.trust_forwarded = true;
        self
    }

    pub async fn spawn(self) -> TestApp {
        // Without extra scenarios the shipped directory serves as it is.
        let (dir, keep) = if self.scenarios.is_empty() {
            (shipped_scenarios_dir(), None)
        } else {
            let dir = tempfile::tempdir().expect("temp dir");
            write_scenarios(dir.path(), &self.scenarios);
            (dir.path().to_owned(), Some(dir))
        };
        let scenarios = Scenarios::load_dir(&dir).unwrap_or_else(|e| panic!("scenarios: {e}"));
        let clock = Arc::new(SystemClock);
        let (store, timer_wakeups, redis): (Arc<dyn Store>, _, _) = if self.redis {
            let redis = RedisServer::start();
            let config = RedisConfig::parse(&redis.url)
                .unwrap_or_else(|e| panic!("redis url {}: {e}", redis.url));
            let store = RedisStore::connect(config, clock.clone())
                .await
                .unwrap_or_else(|e| panic!("redis store at {}: {e}", redis.url));
            let wakeups = store.timer_wakeups();
            (Arc::new(store), Some(wakeups), Some(redis))
        } else {
            (Arc::new(MemoryStore::new(clock.clone())), None, None)
        };
        // One node: no other node's push clients to relay to.
        let config = http_front::Config {
            timer_wakeups,
            push: self.push,
            mail: self.mail,
            http: self.http,
            tls: self.tls.as_ref().map(|(cert, key)| {
                http_front::tls::Tls::from_pem_files(cert, key).unwrap_or_else(|e| panic!("{e}"))
            }),
            trust_forwarded: self.trust_forwarded,
            rate_limit: self.rate_limit,
            access: match &self.auth {
                None => http_front::auth::Access::open(),
                Some(text) => http_front::auth::Access::with(
                    access::Credentials::parse(text, Path::new("auth.toml"), |var| {
                        std::env::var(var).ok()
                    })
                    .unwrap_or_else(|e| panic!("credentials: {e}")),
                ),
            },
            cors_origins: self
                .cors_origins
                .iter()
                .map(|o| http_front::cors::parse_origin(o).unwrap_or_else(|e| panic!("{e}")))
                .collect(),
            frame_origins: self
                .frame_origins
                .iter()
                .map(|o| http_front::cors::parse_origin(o).unwrap_or_else(|e| panic!("{e}")))
                .collect(),
            webhook_secrets: Some(self.webhook_secrets.clone()),
            ..http_front::Config::new(scenarios, store, clock)
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let server = tokio::spawn(http_front::run(listener, config, async move {
            let _ = stopped.await;
        }));
        TestApp {
            base: format!("{scheme}://{addr}"),
            client: match &self.acting_as {
                None => reqwest::Client::new(),
                Some(key) => {
                    let mut headers = reqwest::header::HeaderMap::new();
                    headers.insert(
                        "x-api-key",
                        key.parse().unwrap_or_else(|e| panic!("acting_as: {e}")),
                    );
                    reqwest::Client::builder()
                        .default_headers(headers)
                        .build()
                        .expect("client")
                }
            },
            stop: Some(stop),
            server: Some(server),
            _dir: keep,
            _redis: redis,
        }
    }
}

/// Writes the shipped scenarios and the `(file name, TOML)` extra ones
/// into `dir`, for a server (or a node process) to load.
pub fn write_scenarios(dir: &Path, extra: &[(impl AsRef<str>, impl AsRef<str>)]) {
    for entry in std::fs::read_dir(shipped_scenarios_dir()).expect("scenarios dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|x| x == "toml") {
            std::fs::copy(&path, dir.join(path.file_name().expect("file name")))
                .expect("copy scenario");
        }
    }
    for (name, text) in extra {
        std::fs::write(dir.join(name.as_ref()), text.as_ref()).expect("write scenario");
    }
}

impl TestApp {
    /// A client for a server that runs elsewhere (another process).
    pub fn at(base: impl Into<String>) -> TestApp {
        TestApp {
            base: base.into(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            stop: None,
            server: None,
            _dir: None,
            _redis: None,
        }
    }
}

/// A multipart body with these text fields, as the seed's browser sends them.
pub fn multipart(fields: &[(&str, &str)]) -> Form {
    fields.iter().fold(Form::new(), |form, (k, v)| {
        form.text(k.to_string(), v.to_string())
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POST a multipart body; returns (status, JSON body).
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .multipart(multipart(fields))
            .send()
            .await
            .expect("request");
        status_json(resp).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        status_json(
            self.client
                .get(self.url(path))
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        status_json(
            self.client
                .delete(self.url(path))
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        status_json(
            self.client
                .post(self.url(path))
                .json(body)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> (u16, Value) {
        status_json(
            self.client
                .put(self.url(path))
                .json(body)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    /// Creates a callback the way the seed does; returns the service id.
    pub async fn create(&self, scenario: &str, customer: &str) -> String {
        let (status, body) = self
            .post_form(
                &format!("/genesys/1/service/callback/{scenario}"),
                &[
                    ("_customer_number", customer),
                    ("usr_customer_name", "Bob Markel"),
                    (
                        "_device_notification_id",
                        "b16416334828b1d26ef14f329628b55b",
                    ),
                    ("_device_os", "comet"),
                ],
            )
            .await;
        assert_eq!(status, 200, "create answered {body}");
        body["_id"].as_str().expect("_id").to_owned()
    }

    /// Creates an agent serving `queues` and makes it ready.
    pub async fn ready_agent(&self, id: &str, queues: &[&str], max_concurrent: u32) {
        let body = serde_json::json!({"name": id, "queues": queues, "skills": {}, "max_concurrent": max_concurrent});
        let (status, answer) = self.put_json(&format!("/api/v1/agents/{id}"), &body).await;
        assert_eq!(status, 200, "agent upsert answered {answer}");
        let (status, answer) = self
            .post_json(&format!("/api/v1/agents/{id}/ready"), &Value::Null)
            .await;
        assert_eq!(status, 200, "agent ready answered {answer}");
    }

    /// The service's GMS state, e.g. "QUEUED".
    pub async fn state_of(&self, id: &str) -> String {
        let (status, body) = self.get(&format!("/api/v1/services/{id}")).await;
        assert_eq!(status, 200, "service {id}: {body}");
        body["_callback_state"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The full record (`/api/v1/services/{id}`), outboxes included,
    /// without emptying them.
    pub async fn record(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/api/v1/services/{id}")).await;
        assert_eq!(status, 200, "service {id}: {body}");
        body
    }

    /// The service as GMS's query by `_id` answers it (the one record).
    pub async fn query_by_id(&self, id: &str) -> Value {
        let (status, body) = self
            .get(&format!("/genesys/1/service/callback?_id={id}"))
            .await;
        assert_eq!(status, 200, "query {id}: {body}");
        body.as_array()
            .and_then(|a| a.first())
            .cloned()
            .unwrap_or_else(|| panic!("query {id}: {body}"))
    }

    /// Polls the full record until `done` holds for it, or panics after
    /// [`WAIT`] saying `what` did not happen; answers the record.
    pub async fn wait_for_record(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let rec = self.record(id).await;
            if done(&rec) {
                return rec;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{what}: not within {WAIT:?}; the record is {rec}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until the service reaches `state`, or panics after `within`.
    pub async fn wait_for_state(&self, id: &str, state: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (_, body) = self.get(&format!("/api/v1/services/{id}")).await;
            if body["_callback_state"] == state {
                return body;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("service {id} did not reach {state} within {within:?}; it is {body}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub(crate) async fn status_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

impl TestApp {
    /// Sends the shutdown signal and waits (at most 10 s) for the server to
    /// end, as SIGTERM does for the binary.
    pub async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

impl TestApp {
    /// Sends `body` byte for byte with this `Content-Type` (none if `None`);
    /// returns (status, JSON body, or the text as a JSON string if not JSON).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Vec<u8>>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, self.url(path));
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        status_json(request.body(body.into()).send().await.expect("request")).await
    }

    /// POST an application/x-www-form-urlencoded body; returns (status, JSON body).
    pub async fn post_urlencoded(&self, path: &str, fields: &[(&str, &str)]) -> (u16, Value) {
        self.raw(
            "POST",
            path,
            Some("application/x-www-form-urlencoded"),
            urlencoded(fields),
        )
        .await
    }

    /// Creates (or replaces) an agent with skills, without making it ready.
    pub async fn put_agent(
        &self,
        id: &str,
        queues: &[&str],
        skills: &[(&str, u32)],
        max_concurrent: u32,
    ) {
        let skills: serde_json::Map<String, Value> = skills
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        let body = serde_json::json!({"name": id, "queues": queues, "skills": skills, "max_concurrent": max_concurrent});
        let (status, answer) = self.put_json(&format!("/api/v1/agents/{id}"), &body).await;
        assert_eq!(status, 200, "agent upsert answered {answer}");
    }

    /// Makes an existing agent ready (`true`) or not ready (`false`).
    pub async fn set_ready(&self, id: &str, ready: bool) {
        let action = if ready { "ready" } else { "not-ready" };
        let (status, answer) = self
            .post_json(&format!("/api/v1/agents/{id}/{action}"), &Value::Null)
            .await;
        assert_eq!(status, 200, "agent {action} answered {answer}");
    }

    /// The ids of the services an agent holds now.
    pub async fn agent_services(&self, id: &str) -> Vec<String> {
        let (status, agent) = self.get(&format!("/api/v1/agents/{id}")).await;
        assert_eq!(status, 200, "agent {id}: {agent}");
        agent["services"]
            .as_array()
            .expect("services")
            .iter()
            .map(|s| s["_id"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// check-queue-position as the seed sends it (POST, empty multipart body).
    pub async fn queue_position(&self, id: &str) -> Value {
        let (status, body) = self
            .post_form(
                &format!("/genesys/1/service/{id}/check-queue-position"),
                &[],
            )
            .await;
        assert_eq!(status, 200, "check-queue-position of {id}: {body}");
        body
    }
}

/// Fields as an application/x-www-form-urlencoded body.
pub fn urlencoded(fields: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://localhost/").expect("url");
    url.query_pairs_mut().extend_pairs(fields);
    url.query().unwrap_or_default().to_owned()
}

/// A multipart body built by hand, CRLF line endings, as a browser sends it.
pub fn raw_multipart(boundary: &str, fields: &[(&str, &str)]) -> String {
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    body
}

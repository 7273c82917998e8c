//! What the node tests share: a Redis, nodes, a client that behaves like a
//! load balancer, agent desktops, and the checks on the finished records.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::testing::ScenarioBuilder;
use redis_store::testing::RedisServer;
use serde_json::{json, Value};
use tests::node::Node;
use tests::TestApp;

pub const NODE_BIN: &str = env!("CARGO_BIN_EXE_callbackd-node");

/// A scenario without the customer's confirmation: a reserved agent gets the
/// chat at once, so the load is all routing and completing.
fn load_scenario() -> ScenarioBuilder {
    ScenarioBuilder::new("load")
        .key("_wait_for_user_confirm", "false")
        .key("_ttl", r#""1h""#)
        .key("_find_agent_timeout", r#""30m""#)
}

/// Nobody serves queue `nobody`: a service gives up after one second.
fn hurry_scenario() -> ScenarioBuilder {
    ScenarioBuilder::new("hurry")
        .unset("_wait_for_user_confirm")
        .key("_ttl", r#""1h""#)
        .key("_find_agent_timeout", r#""1s""#)
        .key("_target", r#"{ queue = "nobody", priority = 0 }"#)
}

pub struct Site {
    pub redis: RedisServer,
    pub nodes: Vec<Node>,
    /// Every node's extra environment.
    env: Vec<(String, String)>,
    /// Scenarios and node logs; removed with the site.
    dir: tempfile::TempDir,
}

impl Site {
    /// A Redis and `n` nodes named a, b, ... on it.
    pub async fn start(n: usize, redis: RedisServer) -> Site {
        Site::start_with(n, redis, &[]).await
    }

    /// Like [`Site::start`], with extra scenarios.
    pub async fn start_with(n: usize, redis: RedisServer, extra: &[ScenarioBuilder]) -> Site {
        Site::start_with_env(n, redis, extra, &[]).await
    }

    /// Like [`Site::start_with`], with environment variables for every node.
    pub async fn start_with_env(
        n: usize,
        redis: RedisServer,
        extra: &[ScenarioBuilder],
        env: &[(&str, &str)],
    ) -> Site {
        let dir = tempfile::tempdir().expect("temp dir");
        let scenarios = dir.path().join("scenarios");
        std::fs::create_dir(&scenarios).unwrap();
        let all: Vec<(String, String)> = [load_scenario(), hurry_scenario()]
            .iter()
            .chain(extra)
            .map(|b| (b.file_name(), b.toml()))
            .collect();
        tests::write_scenarios(&scenarios, &all);
        let mut nodes = Vec::new();
        for i in 0..n {
            let name = ((b'a' + i as u8) as char).to_string();
            nodes.push(
                Node::start_with_env(NODE_BIN, &name, &redis.url, &scenarios, dir.path(), env)
                    .await,
            );
        }
        Site {
            redis,
            nodes,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            dir,
        }
    }

    /// Starts one more node, named after the last.
    pub async fn add_node(&mut self) -> &Node {
        let name = ((b'a' + self.nodes.len() as u8) as char).to_string();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let dir = self.dir.path();
        let node = Node::start_with_env(
            NODE_BIN,
            &name,
            &self.redis.url,
            &dir.join("scenarios"),
            dir,
            &env,
        )
        .await;
        self.nodes.push(node);
        self.nodes.last().expect("just started")
    }

    pub fn balancer(&self) -> Balancer {
        Balancer::new(self.nodes.iter().map(|n| n.app.base.clone()).collect())
    }

    /// Every node's log, for a failure message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let log = n.log_text();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- node {} ---\n{}", n.name, tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Sends each request to a node, round robin, and on a connection error or
/// a 503 tries the next one, as a load balancer with health checks would.
#[derive(Clone)]
pub struct Balancer {
    apps: Arc<Vec<TestApp>>,
    next: Arc<AtomicUsize>,
    /// 503s seen (Redis down), for the outage test.
    pub unavailable: Arc<AtomicUsize>,
    /// Requests sent again after a lost answer (connection error or 503).
    pub resent: Arc<AtomicUsize>,
}

impl Balancer {
    pub fn new(bases: Vec<String>) -> Balancer {
        Balancer {
            apps: Arc::new(bases.into_iter().map(TestApp::at).collect()),
            next: Arc::new(AtomicUsize::new(0)),
            unavailable: Arc::new(AtomicUsize::new(0)),
            resent: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn app(&self, i: usize) -> &TestApp {
        &self.apps[i % self.apps.len()]
    }

    /// `request` against node `prefer` first, then the others, until an
    /// answer that is not a 503 comes, for at most `within`.
    pub async fn send(
        &self,
        prefer: Option<usize>,
        within: Duration,
        request: impl Fn(&TestApp) -> reqwest::RequestBuilder,
    ) -> (u16, Value) {
        let deadline = tokio::time::Instant::now() + within;
        let mut i = prefer.unwrap_or_else(|| self.next.fetch_add(1, Ordering::Relaxed));
        loop {
            let app = self.app(i);
            match request(app).send().await {
                Ok(resp) if resp.status().as_u16() != 503 => {
                    let status = resp.status().as_u16();
                    let text = resp.text().await.unwrap_or_default();
                    return (
                        status,
                        serde_json::from_str(&text).unwrap_or(Value::String(text)),
                    );
                }
                Ok(resp) => {
                    self.unavailable.fetch_add(1, Ordering::Relaxed);
                    let body: Value = resp.json().await.unwrap_or(Value::Null);
                    assert!(
                        body["message"].as_str().is_some_and(|m| !m.is_empty()),
                        "a 503 says why: {body}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
            if tokio::time::Instant::now() > deadline {
                panic!("no node answered within {within:?}");
            }
            self.resent.fetch_add(1, Ordering::Relaxed);
            i += 1;
        }
    }

    pub async fn create(
        &self,
        prefer: Option<usize>,
        scenario: &str,
        fields: &[(&str, &str)],
    ) -> String {
        let path = format!("/genesys/1/service/callback/{scenario}");
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (status, body) = self
            .send(prefer, Duration::from_secs(60), |app| {
                app.client.post(app.url(&path)).multipart(tests::multipart(
                    &fields
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect::<Vec<_>>(),
                ))
            })
            .await;
        assert_eq!(status, 200, "create answered {body}");
        body["_id"].as_str().expect("_id").to_owned()
    }

    pub async fn get(&self, prefer: Option<usize>, path: &str) -> (u16, Value) {
        self.send(prefer, Duration::from_secs(60), |app| {
            app.client.get(app.url(path))
        })
        .await
    }

    pub async fn post_json(&self, prefer: Option<usize>, path: &str, body: &Value) -> (u16, Value) {
        self.send(prefer, Duration::from_secs(60), |app| {
            app.client.post(app.url(path)).json(body)
        })
        .await
    }

    pub async fn put_json(&self, prefer: Option<usize>, path: &str, body: &Value) -> (u16, Value) {
        self.send(prefer, Duration::from_secs(60), |app| {
            app.client.put(app.url(path)).json(body)
        })
        .await
    }
}

/// What the agent desktops saw and did.
#[derive(Default)]
pub struct Desks {
    /// service id → how many times an agent completed it successfully.
    pub completed: Mutex<HashMap<String, usize>>,
    /// agent → most services it was seen holding at once.
    pub most_held: Mutex<BTreeMap<String, usize>>,
    pub stop: AtomicBool,
}

/// Agents `agent-00`.. serving queue support, each with `max` seats, made
/// ready, each desktop talking to its home node (agent i → node i % nodes).
/// Each desktop completes every PROCESSING service it holds after `hold`.
pub async fn start_agents(
    lb: &Balancer,
    count: usize,
    max: u32,
    hold: Duration,
) -> (Arc<Desks>, Vec<tokio::task::JoinHandle<()>>) {
    let desks = Arc::new(Desks::default());
    let mut tasks = Vec::new();
    for i in 0..count {
        let agent = format!("agent-{i:02}");
        let body =
            json!({"name": agent, "queues": ["support"], "skills": {}, "max_concurrent": max});
        let (status, answer) = lb
            .put_json(Some(i), &format!("/api/v1/agents/{agent}"), &body)
            .await;
        assert_eq!(status, 200, "{answer}");
        let (status, answer) = lb
            .post_json(
                Some(i),
                &format!("/api/v1/agents/{agent}/ready"),
                &Value::Null,
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        let (lb, desks) = (lb.clone(), desks.clone());
        tasks.push(tokio::spawn(async move {
            while !desks.stop.load(Ordering::Relaxed) {
                let (status, view) = lb.get(Some(i), &format!("/api/v1/agents/{agent}")).await;
                assert_eq!(status, 200, "{view}");
                let services = view["services"].as_array().cloned().unwrap_or_default();
                {
                    let mut most = desks.most_held.lock().unwrap();
                    let seen = most.entry(agent.clone()).or_default();
                    *seen = (*seen).max(services.len());
                }
                for s in services {
                    if s["_callback_state"] != "PROCESSING" {
                        continue;
                    }
                    tokio::time::sleep(hold).await;
                    let id = s["_id"].as_str().unwrap().to_owned();
                    let (status, _) = lb
                        .post_json(
                            Some(i),
                            &format!("/api/v1/services/{id}/complete"),
                            &Value::Null,
                        )
                        .await;
                    // 409: a retry after a 503 whose write had in fact landed.
                    assert!(status == 200 || status == 409, "complete {id}: {status}");
                    if status == 200 {
                        *desks.completed.lock().unwrap().entry(id).or_default() += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    (desks, tasks)
}

/// Waits until every service is COMPLETED, or panics with what is missing.
pub async fn wait_all_completed(
    lb: &Balancer,
    ids: &[String],
    within: Duration,
    site: &Site,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    let mut records = Vec::new();
    for id in ids {
        loop {
            let (status, rec) = lb.get(None, &format!("/api/v1/services/{id}")).await;
            assert_eq!(status, 200, "service {id}: {rec}");
            if rec["_callback_state"] == "COMPLETED" {
                records.push(rec);
                break;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "service {id} not completed in {within:?}: {rec}\n{}",
                    site.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    records
}

/// The services the desks completed that are not in `ids`: created by a
/// request whose answer was lost (the node died, or Redis did, after the
/// write) and which the customer sent again. At most one per resent request.
pub async fn orphans(lb: &Balancer, ids: &[String], desks: &Desks) -> Vec<Value> {
    let known: std::collections::HashSet<&String> = ids.iter().collect();
    let extra: Vec<String> = desks
        .completed
        .lock()
        .unwrap()
        .keys()
        .filter(|id| !known.contains(id))
        .cloned()
        .collect();
    assert!(
        extra.len() <= lb.resent.load(Ordering::Relaxed),
        "{} services nobody asked for",
        extra.len()
    );
    let mut records = Vec::new();
    for id in extra {
        let (status, rec) = lb.get(None, &format!("/api/v1/services/{id}")).await;
        assert_eq!(status, 200, "{rec}");
        records.push(rec);
    }
    records
}

/// Every service was routed exactly once, to an agent that then completed
/// it, and no agent ever held more than `max` at once (from the records'
/// own histories: reserved-at to completed-at intervals per agent).
///
/// `resent` is how many requests the balancer sent again after a lost answer:
/// a completion whose answer was lost (the node died after writing it) is
/// answered 409 when sent again, so the desk cannot count it.
pub fn check_routed_exactly_once(records: &[Value], desks: &Desks, max: u32, resent: usize) {
    let mut spans: BTreeMap<String, Vec<(chrono::DateTime<chrono::FixedOffset>, i8)>> =
        BTreeMap::new();
    // As times: RFC 3339 texts with fractions of different lengths do not
    // sort as the times they say ("…:29.123456Z" before "…:29.123Z").
    let time = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    for rec in records {
        let id = rec["id"].as_str().unwrap();
        assert_eq!(rec["_callback_reason"], "AGENT_CONNECTED", "{rec}");
        let history = rec["history"].as_array().unwrap();
        let reservations: Vec<&Value> = history
            .iter()
            .filter(|h| h["event"] == "agent_reserved")
            .collect();
        assert_eq!(
            reservations.len(),
            1,
            "{id} reserved {} times: {rec}",
            reservations.len()
        );
        let agent = reservations[0]["agent"].as_str().unwrap();
        assert_eq!(rec["served_by"], agent, "{rec}");
        let start = time(&reservations[0]["at"]);
        let end = time(&history.last().unwrap()["at"]);
        let agent_spans = spans.entry(agent.to_owned()).or_default();
        agent_spans.push((start, 1));
        agent_spans.push((end, -1));
    }
    for (agent, mut events) in spans {
        // At equal times a release comes first.
        events.sort();
        let mut held = 0i64;
        for (at, delta) in events {
            held += delta as i64;
            assert!(held <= max as i64, "{agent} held {held} > {max} at {at}");
        }
    }
    let completed = desks.completed.lock().unwrap();
    let ids: std::collections::HashSet<&str> =
        records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(completed.keys().all(|id| ids.contains(id.as_str())));
    let unanswered = records.len() - completed.len();
    assert!(
        unanswered <= resent,
        "{unanswered} completions no desk saw answered, but only {resent} requests were resent"
    );
    assert!(
        completed.values().all(|n| *n == 1),
        "a service was completed twice"
    );
    for (agent, most) in desks.most_held.lock().unwrap().iter() {
        assert!(*most <= max as usize, "{agent} was seen holding {most}");
    }
}

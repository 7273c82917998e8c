//! The node side: `client/client.mjs` (the npm `cometd` library) as a child
//! process, its JSON lines read as they come, everything under deadlines.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Longest one client may run, start to finish: past it, it is killed and the test fails.
const LIFETIME: Duration = Duration::from_secs(25);
/// Longest one `expect` waits for its line.
const EXPECT_WITHIN: Duration = Duration::from_secs(10);
/// Longest the client may take to disconnect and exit once told to.
const EXIT_WITHIN: Duration = Duration::from_secs(5);

pub const LONG_POLLING: &str = "long-polling";
pub const WEBSOCKET: &str = "websocket";

/// Who the client says it is in the handshake's `ext`.
pub enum Who<'a> {
    /// A device: `ext.gms_user`.
    Device(&'a str),
    /// An agent desktop: `ext.agent_id`.
    Agent(&'a str),
}

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cometd/client")
}

/// The npm packages must be installed; say how, rather than skip.
fn check_node_modules() {
    let dir = client_dir();
    for package in ["cometd", "cometd-nodejs-client", "ws"] {
        let path = dir.join("node_modules").join(package).join("package.json");
        assert!(
            path.is_file(),
            "{} is missing: the CometD client's npm packages are not installed. \
             Run `npm ci --prefix tests/cometd/client` (scripts/test does it when node_modules is missing).",
            path.display()
        );
    }
}

pub struct CometdClient {
    pub transport: &'static str,
    channels: Vec<String>,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<Value>,
    /// Lines read but not yet taken by an `expect`.
    pending: Vec<Value>,
    /// Every line read, for the failure messages.
    seen: Vec<Value>,
    stderr: Arc<Mutex<String>>,
    deadline: Instant,
}

impl CometdClient {
    /// Starts `node client.mjs <base> <transport> <key> <id> <channels>...`.
    pub async fn start(
        base: &str,
        transport: &'static str,
        who: Who<'_>,
        channels: &[&str],
    ) -> CometdClient {
        Self::start_with(base, transport, who, channels, None).await
    }

    /// [`CometdClient::start`], with `authorization` (an `Authorization`
    /// header's value) in the handshake's `ext`, as a browser sends it.
    pub async fn start_with(
        base: &str,
        transport: &'static str,
        who: Who<'_>,
        channels: &[&str],
        authorization: Option<&str>,
    ) -> CometdClient {
        check_node_modules();
        let (key, id) = match who {
            Who::Device(id) => ("gms_user", id),
            Who::Agent(id) => ("agent_id", id),
        };
        let mut child = Command::new("node")
            .current_dir(client_dir())
            .arg("client.mjs")
            .args([base, transport, key, id])
            .args(channels)
            .env("COMETD_EXT_AUTHORIZATION", authorization.unwrap_or(""))
            .env(
                "COMETD_CLIENT_LIFETIME_MS",
                (LIFETIME + EXIT_WITHIN).as_millis().to_string(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `node` (Node.js 18 or newer must be on PATH): {e}")
            });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({"event": "not-json", "line": line}));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    return;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        CometdClient {
            transport,
            channels: channels.iter().map(|c| c.to_string()).collect(),
            stdin: child.stdin.take(),
            child,
            lines,
            pending: Vec::new(),
            seen: Vec::new(),
            stderr,
            deadline: Instant::now() + LIFETIME,
        }
    }

    /// What the client printed so far, and its stderr, for a failure message.
    fn report(&self) -> String {
        let lines: Vec<String> = self.seen.iter().map(Value::to_string).collect();
        let stderr = self.stderr.lock().unwrap();
        let tail: String = {
            let chars: Vec<char> = stderr.chars().collect();
            chars[chars.len().saturating_sub(4000)..].iter().collect()
        };
        format!(
            "[{}] client printed:\n  {}\nits stderr (end):\n{tail}",
            self.transport,
            lines.join("\n  ")
        )
    }

    /// Kills the client; answers `why` with what it printed, to panic with.
    async fn failure(&mut self, why: String) -> String {
        let _ = self.child.start_kill();
        // Let the readers catch what was still in the pipes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v);
        }
        format!("{why}\n{}", self.report())
    }

    /// The first line (not taken before) that `matches`; fails the test after
    /// [`EXPECT_WITHIN`], or when the client exits first.
    pub async fn expect(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.pending.iter().position(&matches) {
            return self.pending.remove(i);
        }
        let until = self.deadline.min(Instant::now() + EXPECT_WITHIN);
        loop {
            match tokio::time::timeout_at(until, self.lines.recv()).await {
                Ok(Some(v)) => {
                    self.seen.push(v.clone());
                    if matches(&v) {
                        return v;
                    }
                    self.pending.push(v);
                }
                Ok(None) => {
                    let status =
                        tokio::time::timeout(Duration::from_secs(1), self.child.wait()).await;
                    panic!(
                        "{}",
                        self.failure(format!(
                            "waiting for {what}: the client exited ({status:?})"
                        ))
                        .await
                    )
                }
                Err(_) => {
                    panic!(
                        "{}",
                        self.failure(format!("waiting for {what}: nothing came in time"))
                            .await
                    )
                }
            }
        }
    }

    /// The line of `event`.
    pub async fn event(&mut self, event: &str) -> Value {
        self.expect(&format!("event {event}"), |v| v["event"] == event)
            .await
    }

    /// A message the client received on `channel` whose data matches.
    pub async fn message(
        &mut self,
        what: &str,
        channel: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        let transport = self.transport;
        let message = self
            .expect(what, |v| {
                v["event"] == "message" && v["channel"] == channel && matches(&v["data"])
            })
            .await;
        assert_eq!(
            message["transport"], transport,
            "{what} came over another transport: {message}"
        );
        message["data"].clone()
    }

    /// Handshake, connect and subscriptions done over the one transport:
    /// each channel subscribed, but `refused`, which the server must refuse.
    pub async fn wait_ready(&mut self, refused: &[&str]) {
        let handshake = self.event("handshake").await;
        if handshake["successful"] != true || handshake["transport"] != self.transport {
            panic!("{}", self.failure(format!("handshake: {handshake}")).await);
        }
        let connected = self.event("connected").await;
        if connected["transport"] != self.transport || connected["connectionType"] != self.transport
        {
            panic!("{}", self.failure(format!("connect: {connected}")).await);
        }
        for channel in self.channels.clone() {
            let sub = self
                .expect(&format!("subscribe reply for {channel}"), |v| {
                    v["event"] == "subscribed" && v["channel"] == channel.as_str()
                })
                .await;
            let ok = sub["successful"] == true;
            if ok == refused.contains(&channel.as_str()) {
                panic!(
                    "{}",
                    self.failure(format!("subscribe to {channel}: {sub}")).await
                );
            }
            if !ok && !sub["error"].as_str().is_some_and(|e| e.starts_with("403:")) {
                panic!(
                    "{}",
                    self.failure(format!(
                    "subscribe to {channel} should be refused by Bayeux (403), not fail so: {sub}"
                ))
                    .await
                );
            }
        }
    }

    /// Closes stdin: the client disconnects and exits. Checks it used only
    /// its transport the whole time; answers every line it printed.
    pub async fn finish(mut self) -> Vec<Value> {
        drop(self.stdin.take());
        let bye = self.event("bye").await;
        let until = Instant::now() + EXIT_WITHIN;
        match tokio::time::timeout_at(until, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            other => panic!(
                "{}",
                self.failure(format!("the client did not exit well: {other:?}"))
                    .await
            ),
        }
        // Lines after bye (none expected), for the record.
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v);
        }
        let report = self.report();
        assert_eq!(bye["disconnected"], true, "disconnect: {bye}\n{report}");
        assert_eq!(
            bye["connectionTypes"],
            serde_json::json!([self.transport]),
            "the /meta/connect messages used other transports\n{report}"
        );
        let (xhr, ws) = (
            bye["requests"]["xhr"].as_u64().unwrap_or(u64::MAX),
            bye["requests"]["websocket"].as_u64().unwrap_or(u64::MAX),
        );
        match self.transport {
            LONG_POLLING => assert!(xhr > 0 && ws == 0, "long-polling only: {bye}\n{report}"),
            _ => assert!(
                xhr == 0 && ws == 1,
                "one WebSocket and no HTTP request: {bye}\n{report}"
            ),
        }
        let unexpected: Vec<&Value> = self
            .seen
            .iter()
            .filter(|v| {
                !["handshake", "connected", "subscribed", "message", "bye"]
                    .contains(&v["event"].as_str().unwrap_or_default())
            })
            .collect();
        assert!(
            unexpected.is_empty(),
            "unexpected lines: {unexpected:?}\n{report}"
        );
        self.seen
    }
}

//! callbackd as a real process: started on a free port, stopped politely
//! (SIGTERM), killed (SIGKILL) or restarted on the same port, like a node
//! behind a load balancer.
//!
//! The binary is `callbackd-node` from this package (`src/bin`), which runs
//! exactly `http_front::cli::main`; tests pass `env!("CARGO_BIN_EXE_callbackd-node")`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::TestApp;

pub struct Node {
    pub name: String,
    pub app: TestApp,
    pub port: u16,
    bin: PathBuf,
    store: String,
    scenarios: PathBuf,
    log: PathBuf,
    /// Extra environment (`CALLBACKD_AUTH`, …) of every start.
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Node {
    /// Starts a node named `name` on a free port and waits until /healthz answers 200.
    pub async fn start(bin: &str, name: &str, store: &str, scenarios: &Path, logs: &Path) -> Node {
        Node::start_with_env(bin, name, store, scenarios, logs, &[]).await
    }

    /// [`Node::start`] with extra environment variables (every restart
    /// keeps them).
    pub async fn start_with_env(
        bin: &str,
        name: &str,
        store: &str,
        scenarios: &Path,
        logs: &Path,
        env: &[(&str, &str)],
    ) -> Node {
        let port = redis_store::testing::free_port();
        let mut node = Node {
            name: name.to_owned(),
            app: TestApp::at(format!("http://127.0.0.1:{port}")),
            port,
            bin: bin.into(),
            store: store.to_owned(),
            scenarios: scenarios.to_owned(),
            log: logs.join(format!("{name}.log")),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        node.restart().await;
        node
    }

    /// Starts the process again on the same port, with the same store.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "node {} is running", self.name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("node log");
        let child = Command::new(&self.bin)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--scenarios")
            .arg(&self.scenarios)
            .args(["--store", &self.store])
            .env("RUST_LOG", "info,tower_http=warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // The tracing log goes to stdout; errors at start-up to stderr.
            .stdout(log.try_clone().expect("node log"))
            .stderr(log)
            .spawn()
            .expect("start callbackd-node");
        self.child = Some(child);
        self.wait_healthy(Duration::from_secs(30)).await;
    }

    async fn wait_healthy(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "node {} exited with {status}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            let (status, _) = self.app.try_get("/healthz").await;
            if status == Some(200) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "node {} not healthy in {within:?}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(status.success(), "node {} exited with {status}", self.name);
                    return;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("node {} did not stop on SIGTERM", self.name);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGKILL: no goodbye, nothing flushed.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The same process is still alive (it was not restarted and did not exit).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl TestApp {
    /// GET that tolerates a server that is down: (None, Null) if no answer.
    pub async fn try_get(&self, path: &str) -> (Option<u16>, serde_json::Value) {
        match self.client.get(self.url(path)).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.json().await.unwrap_or(serde_json::Value::Null);
                (Some(status), body)
            }
            Err(_) => (None, serde_json::Value::Null),
        }
    }
}

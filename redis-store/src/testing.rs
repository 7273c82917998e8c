//! A throw-away `redis-server` for tests: its own free port, its own
//! directory, killed when dropped. With `REDIS_URL` set, tests use that
//! server instead, each under a namespace of its own, so they never touch
//! another test's (or anyone's) data.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// The URL to give callbackd (`redis://…?namespace=…`).
    pub url: String,
    /// The same server without our namespace parameter, for redis clients.
    pub plain_url: String,
    /// Options given to redis-server after ours.
    options: Vec<String>,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl RedisServer {
    /// `REDIS_URL` (with a fresh namespace) if set, else a new redis-server.
    pub fn start() -> RedisServer {
        let namespace = format!("t{}", uuid_like());
        if let Ok(url) = std::env::var("REDIS_URL") {
            let sep = if url.contains('?') { '&' } else { '?' };
            return RedisServer {
                port: 0,
                child: None,
                dir: tempfile::tempdir().expect("temp dir"),
                url: format!("{url}{sep}namespace={namespace}"),
                plain_url: url,
                options: Vec::new(),
            };
        }
        Self::spawn_local(&namespace)
    }

    /// Always a new redis-server of our own (tests that stop and restart it).
    pub fn spawn_local(namespace: &str) -> RedisServer {
        Self::spawn_local_with(namespace, &[])
    }

    /// A redis-server of our own with more options (`--rename-command
    /// FUNCTION ""` makes it a Redis without functions, as before 7.0).
    pub fn spawn_local_with(namespace: &str, options: &[&str]) -> RedisServer {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = RedisServer {
            port,
            child: None,
            dir,
            url: format!("redis://127.0.0.1:{port}/0?namespace={namespace}"),
            plain_url: format!("redis://127.0.0.1:{port}/0"),
            options: options.iter().map(|o| o.to_string()).collect(),
        };
        server.restart();
        server
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Starts (again) on the same port with the same data directory. The
    /// append-only file keeps what was written, so a restart loses nothing.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(redis_server_binary())
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
                &self.dir.path().to_string_lossy(),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--protected-mode",
                "no",
            ])
            .args(&self.options)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server could not be started; install it (apt-get install redis-server) or set REDIS_URL");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers,
    /// as with a Redis that hangs. `resume` thaws it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("a redis-server of our own");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal}");
    }

    /// Stops the server the hard way (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 64];
                if s.write_all(b"PING\r\n").is_ok() {
                    if let Ok(n) = s.read(&mut buf) {
                        if buf[..n].starts_with(b"+PONG") {
                            return;
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not come up", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_none() && self.port == 0 {
            // REDIS_URL: leave that Redis as we found it.
            self.forget_namespace();
        }
        self.kill();
    }
}

impl RedisServer {
    /// Deletes every key of this server's namespace (with `REDIS_URL`, the
    /// test's own keys, and nothing else).
    fn forget_namespace(&self) {
        let Some(namespace) = self
            .url
            .rsplit_once("namespace=")
            .map(|(_, n)| n.to_owned())
        else {
            return;
        };
        let Ok(client) = redis::Client::open(self.plain_url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
            return;
        };
        let pattern = format!("{{{namespace}}}:*");
        let keys: Vec<String> = match redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .clone()
            .iter::<String>(&mut conn)
        {
            Ok(iter) => iter.filter_map(Result::ok).collect(),
            Err(_) => return,
        };
        for chunk in keys.chunks(500) {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query(&mut conn);
        }
    }
}

fn redis_server_binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A throw-away three-master Redis Cluster (no replicas) on loopback: what
/// `scripts/redis-cluster.sh` starts, on free ports and in a temp directory
/// of its own. Keep the two in step.
///
/// Every node runs under a small `sh` wrapper that stops it as soon as the
/// wrapper's stdin (a pipe from this process) closes: on drop, and also
/// when the test process exits without dropping it (a `static` shared by
/// several tests, a panic that aborts). So no node outlives its tests.
pub struct RedisCluster {
    /// The nodes' client ports; each also listens on port + 10000 (the bus).
    pub ports: [u16; 3],
    /// The URL to give callbackd (`redis+cluster://…?namespace=…`), under a
    /// namespace of its own.
    pub url: String,
    /// `redis://127.0.0.1:PORT` per node, for redis clients.
    pub nodes: Vec<String>,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

/// How long a node may take to listen, and the cluster to form.
const NODE_DEADLINE: Duration = Duration::from_secs(10);
const CLUSTER_DEADLINE: Duration = Duration::from_secs(20);

impl RedisCluster {
    /// Starts the nodes and creates the cluster; panics if that fails three
    /// times (a port taken meanwhile by someone else makes one attempt fail).
    pub fn start() -> RedisCluster {
        let mut why = String::new();
        for _ in 0..3 {
            match Self::try_start() {
                Ok(cluster) => return cluster,
                Err(e) => why = e,
            }
        }
        panic!("no Redis Cluster: {why}");
    }

    fn try_start() -> Result<RedisCluster, String> {
        let ports = cluster_ports();
        let mut cluster = RedisCluster {
            ports,
            url: String::new(),
            nodes: ports
                .iter()
                .map(|p| format!("redis://127.0.0.1:{p}"))
                .collect(),
            children: Vec::new(),
            dir: tempfile::Builder::new()
                .prefix("redis-cluster-")
                .tempdir()
                .expect("temp dir"),
        };
        cluster.url = cluster.url_with_namespace(&format!("t{}", uuid_like()));
        for port in ports {
            let dir = cluster.dir.path().join(port.to_string());
            std::fs::create_dir(&dir).expect("node dir");
            cluster.children.push(spawn_node(port, &dir)?);
        }
        // A node answers once it listens; `CONFIG GET dir` tells it from
        // another server that took the port first.
        for port in ports {
            let dir = cluster.dir.path().join(port.to_string());
            let dir = dir.to_string_lossy();
            wait_for(
                &format!("127.0.0.1:{port} to come up"),
                NODE_DEADLINE,
                || {
                    cli(port, &["config", "get", "dir"])
                        .is_some_and(|out| out.lines().any(|l| l == dir))
                },
            )
            .map_err(|e| format!("{e}; its log: {}", node_log(&cluster.dir(), port)))?;
        }
        // Splits the slots evenly (0-5460, 5461-10922, 10923-16383).
        let mut create = Command::new(redis_cli_binary());
        create.arg("--cluster").arg("create");
        create.args(ports.iter().map(|p| format!("127.0.0.1:{p}")));
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        let out = create
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("redis-cli: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // A node serves requests only once it sees every slot covered.
        for port in ports {
            wait_for(
                &format!("127.0.0.1:{port} to see the cluster ok"),
                CLUSTER_DEADLINE,
                || {
                    cli(port, &["cluster", "info"])
                        .is_some_and(|out| out.lines().any(|l| l.trim_end() == "cluster_state:ok"))
                },
            )?;
        }
        Ok(cluster)
    }

    /// The URL to give callbackd, under `namespace` (several tests can
    /// share one cluster, each in a namespace of its own).
    pub fn url_with_namespace(&self, namespace: &str) -> String {
        let seeds: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}?namespace={namespace}", seeds.join(","))
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        // Closing stdin makes each wrapper stop its node; wait (bounded) so
        // the temp directory goes only after the nodes.
        for child in &mut self.children {
            drop(child.stdin.take());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut self.children {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Three client ports whose bus ports (port + 10000) are free too, none
/// handed out before by this process (tests start clusters in parallel).
fn cluster_ports() -> [u16; 3] {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut ports = [0; 3];
    for slot in &mut ports {
        *slot = loop {
            let port = free_port();
            let Some(bus) = port.checked_add(10000) else {
                continue;
            };
            if ![port, bus].iter().any(|p| taken.contains(p))
                && TcpListener::bind(("127.0.0.1", bus)).is_ok()
            {
                taken.extend([port, bus]);
                break port;
            }
        };
    }
    ports
}

/// `redis-server` for one cluster node, in `dir`, under a wrapper that stops
/// it when its stdin closes (an asynchronous command of a non-interactive
/// shell reads /dev/null, so only `cat` holds the pipe). The wrapper then
/// removes the node's directory, and the cluster's once empty: the
/// `TempDir` of a cluster in a `static` is never dropped.
fn spawn_node(port: u16, dir: &std::path::Path) -> Result<Child, String> {
    Command::new("sh")
        .arg("-c")
        .arg(concat!(
            r#""$@" & pid=$!; cat >/dev/null; kill $pid; wait $pid; "#,
            r#"rm -rf "$NODE_DIR"; rmdir "${NODE_DIR%/*}" 2>/dev/null; exit 0"#
        ))
        .arg("sh")
        .env("NODE_DIR", dir)
        .arg(redis_server_binary())
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--protected-mode", "no", "--daemonize", "no"])
        .args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ])
        .args(["--cluster-node-timeout", "5000"])
        .args([
            "--dir",
            &dir.to_string_lossy(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--logfile", &dir.join("redis.log").to_string_lossy()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("sh (to run redis-server): {e}"))
}

/// `redis-cli -p PORT ARGS…`'s output, if it ran.
fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new(redis_cli_binary())
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("gave up waiting for {what}"))
}

fn node_log(dir: &std::path::Path, port: u16) -> String {
    std::fs::read_to_string(dir.join(port.to_string()).join("redis.log")).unwrap_or_default()
}

fn redis_cli_binary() -> String {
    std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".into())
}

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
            };
        }
        Self::spawn_local(&namespace)
    }

    /// Always a new redis-server of our own (tests that stop and restart it).
    pub fn spawn_local(namespace: &str) -> RedisServer {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = RedisServer {
            port,
            child: None,
            dir,
            url: format!("redis://127.0.0.1:{port}/0?namespace={namespace}"),
            plain_url: format!("redis://127.0.0.1:{port}/0"),
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
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server could not be started; install it (apt-get install redis-server) or set REDIS_URL");
        self.child = Some(child);
        self.wait_ready();
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
        self.kill();
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

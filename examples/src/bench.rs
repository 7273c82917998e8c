//! What the `bench-*` harnesses share: callbackd processes pinned to a
//! core, this process pinned to another, CPU clocks, and percentiles.
//!
//! A harness runs the very server the `callbackd` binary runs: it starts
//! itself again with its serve variable set, and `main` then calls
//! `http_front::cli::main` instead of the benchmark.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};

/// How to start one callbackd process.
pub struct ServerSpec<'a> {
    /// Names it in errors and in its log file's name.
    pub name: &'a str,
    /// The variable that makes this executable serve instead of measuring.
    pub serve_env: &'a str,
    /// Where its stderr (its log) goes: `<dir>/<name>.log`.
    pub dir: &'a Path,
    /// Flags after `--listen`.
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    /// The core it is pinned to (`taskset -c`), if any.
    pub cpu: Option<usize>,
}

/// A callbackd process, killed when dropped (or when this process dies).
pub struct Server {
    pub name: String,
    pub base: String,
    pub addr: std::net::SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Server {
    pub async fn start(spec: ServerSpec<'_>) -> anyhow::Result<Server> {
        let port = redis_store::testing::free_port();
        let log = spec.dir.join(format!("{}.log", spec.name));
        let exe = std::env::current_exe()?;
        let mut command = match spec.cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string()]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        // Only the flags below decide how it runs, not this shell's settings.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CALLBACKD_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        command
            .env(spec.serve_env, "1")
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(&spec.args);
        // SAFETY: prctl is async-signal-safe; it only sets this child's own
        // flag, which survives the exec of taskset and of callbackd.
        unsafe {
            // Killed with this process even when it dies without dropping
            // `Server` (Ctrl-C), so no server outlives the benchmark.
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        // The log goes to stdout; start-up errors to stderr: both kept.
        let file = File::create(&log)?;
        let child = command
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("start callbackd")?;
        let mut server = Server {
            name: spec.name.to_owned(),
            base: format!("http://127.0.0.1:{port}"),
            addr: ([127, 0, 0, 1], port).into(),
            child,
            log,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            server.check_running()?;
            if let Ok(resp) = client.get(format!("{}/healthz", server.base)).send().await {
                if resp.status() == 200 {
                    return Ok(server);
                }
            }
            ensure!(
                Instant::now() < deadline,
                "{} not healthy in 30 s",
                server.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the process has used (all its threads, live and gone).
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        process_cpu(self.child.id())
    }

    /// Resident memory now (`VmRSS`), in bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        process_rss(self.child.id())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The size of its log so far, in bytes.
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited with {status}: {}", self.name, self.log_text());
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) a process has used, all its threads.
pub fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which ends with the last ')':
    // state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("/proc/<pid>/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(Duration::from_secs_f64(ticks as f64 / per_second))
}

/// A process's resident memory (`VmRSS`), in bytes.
pub fn process_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("VmRSS")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()?;
    Ok(kb * 1024)
}

/// Pins a running process (all its threads) to `cpu`.
pub fn pin_process(pid: u32, cpu: usize) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()?;
    ensure!(status.success(), "taskset -p {pid}: {status}");
    Ok(())
}

/// This process's CPU time (user + system).
pub fn own_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The cores this process may run on.
fn usable_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity only writes the set we pass; CPU_ISSET reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Pins the calling thread, and so every thread it starts later, to `cpu`.
fn pin_self(cpu: usize) -> std::io::Result<()> {
    // SAFETY: the set is ours; sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Pins this process to `client_cpu` and answers `Some(server_cpu)`, the
/// core to give the servers, or warns and answers `None` (unpinned) when
/// `taskset` is missing or the two cores are not both usable. Call it
/// before the runtime starts, so every thread inherits it.
pub fn pinning(server_cpu: usize, client_cpu: usize) -> Option<usize> {
    let has_taskset = Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let cpus = usable_cpus();
    let why_not = if !has_taskset {
        Some("taskset is not on the PATH (util-linux)".to_owned())
    } else if server_cpu == client_cpu {
        Some("--server-cpu and --client-cpu are the same core".to_owned())
    } else if !cpus.contains(&server_cpu) || !cpus.contains(&client_cpu) {
        Some(format!(
            "cores {server_cpu} and {client_cpu} are not both usable (usable: {cpus:?})"
        ))
    } else {
        pin_self(client_cpu)
            .err()
            .map(|e| format!("cannot pin this process: {e}"))
    };
    match why_not {
        None => {
            println!(
                "pinned: servers on core {server_cpu} (taskset -c {server_cpu}), load generator on core {client_cpu}"
            );
            Some(server_cpu)
        }
        Some(why) => {
            eprintln!(
                "warning: running unpinned, {why}; the servers and the load generator share the cores"
            );
            None
        }
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// A redis-server of the benchmark's own, without persistence, pinned to
/// `cpu` when given.
pub struct Redis {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Its URL for callbackd and redis clients.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn start(cpu: Option<usize>) -> anyhow::Result<Redis> {
        let port = redis_store::testing::free_port();
        let dir = tempfile::tempdir()?;
        let mut command = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string(), "redis-server"]);
                c
            }
            None => Command::new("redis-server"),
        };
        let child = command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start redis-server (apt-get install redis-server)")?;
        let redis = Redis {
            port,
            child,
            _dir: dir,
        };
        for _ in 0..100 {
            if redis.cli(&["PING"]).is_ok_and(|s| s.trim() == "PONG") {
                return Ok(redis);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("redis-server did not answer")
    }

    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()?;
        ensure!(out.status.success(), "redis-cli {args:?}");
        Ok(String::from_utf8(out.stdout)?)
    }

    /// What Redis ran since its stats were reset, per request: each
    /// command's calls and time (`INFO commandstats`).
    pub fn print_commands(&self, requests: usize) -> anyhow::Result<()> {
        let info = self.cli(&["INFO", "commandstats"])?;
        let mut rows: Vec<(f64, String)> = info
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let field = |key: &str| {
                    rest.split(',')
                        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                        .and_then(|v| v.parse::<f64>().ok())
                };
                let (calls, usec) = (field("calls")?, field("usec")?);
                let per = requests.max(1) as f64;
                Some((
                    usec / per,
                    format!("{name} {:.2} calls, {:.1} µs", calls / per, usec / per),
                ))
            })
            .collect();
        rows.sort_by(|a, b| b.0.total_cmp(&a.0));
        let rows: Vec<String> = rows.into_iter().map(|(_, r)| r).collect();
        println!("  Redis per request: {}", rows.join("; "));
        Ok(())
    }

    pub fn cpu(&self) -> anyhow::Result<Duration> {
        process_cpu(self.child.id())
    }

    /// Moves the running redis-server (every thread of it) to `cpu`.
    pub fn pin(&self, cpu: usize) -> anyhow::Result<()> {
        pin_process(self.child.id(), cpu)
    }

    pub fn used_memory(&self) -> anyhow::Result<u64> {
        let info = self.cli(&["INFO", "memory"])?;
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .context("used_memory")?
            .trim()
            .parse()
            .context("used_memory")
    }

    /// SETs per second, `clients` at once, from the client core.
    pub fn benchmark_set(&self, clients: usize, client_cpu: usize) -> anyhow::Result<f64> {
        let out = Command::new("taskset")
            .args(["-c", &client_cpu.to_string(), "redis-benchmark"])
            .args(["-p", &self.port.to_string(), "-t", "set", "--csv"])
            .args(["-c", &clients.to_string(), "-n", "300000", "-r", "100000"])
            .output()
            .context("redis-benchmark")?;
        ensure!(out.status.success(), "redis-benchmark failed");
        let text = String::from_utf8(out.stdout)?;
        // "test","rps",...  then "SET","61349.69",...
        let line = text
            .lines()
            .find(|l| l.starts_with("\"SET\""))
            .context("redis-benchmark printed no SET line")?;
        line.split(',')
            .nth(1)
            .context("SET rate")?
            .trim_matches('"')
            .parse()
            .context("SET rate")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The seed's create as the engine receives it: a new id, `number`, the
/// app's `device` (comet) and the seed's two `usr_` fields, asked for now.
pub fn seed_service(number: String, device: String) -> engine::machine::NewService {
    engine::machine::NewService {
        id: uuid::Uuid::new_v4().to_string(),
        customer_number: number,
        desired_time: None,
        device_notification_id: Some(device),
        device_os: Some("comet".to_owned()),
        user_data: std::collections::BTreeMap::from([
            ("usr_customer_name".to_owned(), "Bob Markel".to_owned()),
            ("usr_reason".to_owned(), "billing question".to_owned()),
        ]),
        booking: None,
        preferred_agent: None,
        video: None,
    }
}

//! A small HTTP/1.1 load generator for the benchmarks: keep-alive
//! connections, each sending one request at a time and timing it from just
//! before the write to the last byte of the answer.
//!
//! It writes bytes the caller made and reads the answer with as little
//! work as it can (status line, `Content-Length`), so one core of it keeps
//! up with a server on another core; a general client (reqwest) spends
//! several times the server's CPU per request, and then measures itself.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::future::try_join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// When a load ends.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// After this long (requests under way are finished).
    After(Duration),
    /// After this many requests in all.
    Requests(u64),
}

/// One answered request.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Its number, from 0, in the order requests were started.
    pub seq: u64,
    /// When it was sent, from the load's start, in seconds.
    pub at: f64,
    /// From before the write to the answer's last byte, in milliseconds.
    pub ms: f64,
}

/// What a load saw.
pub struct Outcome {
    pub samples: Vec<Sample>,
    pub elapsed: Duration,
    /// This process's CPU time during the load: near `elapsed`, the load
    /// generator was the limit.
    pub client_cpu: Duration,
    /// Answers that were not 200, with the first one's status and body.
    pub failures: u64,
    pub first_failure: Option<String>,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.samples.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Latencies in milliseconds, sorted.
    pub fn sorted_ms(&self) -> Vec<f64> {
        let mut ms: Vec<f64> = self.samples.iter().map(|s| s.ms).collect();
        ms.sort_by(f64::total_cmp);
        ms
    }

    /// The share of one core this process used.
    pub fn client_share(&self) -> f64 {
        self.client_cpu.as_secs_f64() / self.elapsed.as_secs_f64()
    }
}

/// Sends requests made by `make(seq)` over `connections` keep-alive
/// connections to `addr` until `stop`. Run it on a current-thread runtime:
/// it is one core's worth of load.
pub async fn run(
    addr: SocketAddr,
    connections: usize,
    stop: Stop,
    make: &dyn Fn(u64) -> Vec<u8>,
) -> anyhow::Result<Outcome> {
    let next = Cell::new(0u64);
    let samples = RefCell::new(Vec::new());
    let failures = Cell::new(0u64);
    let first_failure = RefCell::new(None);
    let started = Instant::now();
    let cpu = crate::bench::own_cpu();
    let done = |seq: u64| match stop {
        Stop::After(d) => started.elapsed() >= d,
        Stop::Requests(n) => seq >= n,
    };
    let connection = || async {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut buf = Vec::with_capacity(16 * 1024);
        loop {
            let seq = next.get();
            if done(seq) {
                return Ok::<_, anyhow::Error>(());
            }
            next.set(seq + 1);
            let request = make(seq);
            let sent = Instant::now();
            stream.write_all(&request).await?;
            let status = read_answer(&mut stream, &mut buf).await?;
            let ms = sent.elapsed().as_secs_f64() * 1000.0;
            if status == 200 {
                samples.borrow_mut().push(Sample {
                    seq,
                    at: (sent - started).as_secs_f64(),
                    ms,
                });
            } else {
                failures.set(failures.get() + 1);
                first_failure
                    .borrow_mut()
                    .get_or_insert_with(|| format!("{status}: {}", String::from_utf8_lossy(&buf)));
            }
        }
    };
    try_join_all((0..connections).map(|_| connection())).await?;
    let elapsed = started.elapsed();
    let mut samples = samples.into_inner();
    samples.sort_by_key(|s| s.seq);
    Ok(Outcome {
        samples,
        elapsed,
        client_cpu: crate::bench::own_cpu() - cpu,
        failures: failures.get(),
        first_failure: first_failure.into_inner(),
    })
}

/// Reads one answer into `buf` (head and body); answers its status.
async fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<u16> {
    buf.clear();
    let mut scanned: usize = 0;
    let (head_end, length) = loop {
        if let Some(i) = find(&buf[scanned.saturating_sub(3)..], b"\r\n\r\n") {
            let head_end = scanned.saturating_sub(3) + i + 4;
            let head = std::str::from_utf8(&buf[..head_end]).context("answer head")?;
            let length = head
                .split("\r\n")
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .context("an answer without Content-Length")?;
            break (head_end, length);
        }
        scanned = buf.len();
        if read_more(stream, buf).await? == 0 {
            bail!("the server closed the connection");
        }
    };
    while buf.len() < head_end + length {
        if read_more(stream, buf).await? == 0 {
            bail!("the server closed the connection mid-answer");
        }
    }
    let status = std::str::from_utf8(&buf[9..12.min(buf.len())])
        .ok()
        .and_then(|s| s.parse().ok())
        .context("status line")?;
    // A failure's text is its body.
    if status != 200 {
        buf.drain(..head_end);
    }
    Ok(status)
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let len = buf.len();
    buf.resize(len + 8192, 0);
    let n = stream.read(&mut buf[len..]).await?;
    buf.truncate(len + n);
    Ok(n)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A `GET` with no body.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
}

/// The seed's create, to the letter (its multipart body with the browser's
/// boundary and the `gms_user` header), from the app on `device` for the
/// customer number `number`.
pub fn seed_create(scenario: &str, number: &str, device: &str) -> Vec<u8> {
    const BOUNDARY: &str = "----WebKitFormBoundary0WnE36LruxJ4S5nu";
    let field = |name: &str, value: &str| {
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        )
    };
    let body = [
        field("_customer_number", number),
        field("usr_customer_name", "Bob Markel"),
        field("usr_reason", "billing question"),
        field("_device_notification_id", device),
        field("_device_os", "comet"),
        format!("--{BOUNDARY}--\r\n"),
    ]
    .concat();
    format!(
        "POST /genesys/1/service/callback/{scenario} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\ngms_user: {device}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

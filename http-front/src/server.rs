//! The accept loop: hyper's connection builder, in place of `axum::serve`,
//! for what `axum::serve` does not bound: the time a client may take to
//! send its headers, and how many connections one client address may hold.
//! Graceful shutdown works as `axum::serve`'s: stop accepting, let every
//! connection finish its open requests, wait for them.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::HttpLimits;

/// How long a refused connection's 503 may take to write.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` completes, then waits for
/// open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(signal_rx);
    });
    // Every connection task holds a receiver; shutdown waits until all are gone.
    let (close_tx, close_rx) = watch::channel(());
    let per_ip = PerIp::new(limits.max_connections_per_ip);
    // HTTP/1.1 only, as axum::serve served it here (axum's http2 feature
    // is off): no h2 to bound as well.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather
                    // than spin, as axum::serve does.
                    tracing::warn!(error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = signal_tx.closed() => break,
        };
        let Some(slot) = per_ip.take(remote.ip()) else {
            tracing::warn!(client = %remote.ip(), limit = per_ip.limit, "Connection refused: too many from one address.");
            tokio::spawn(refuse(stream, per_ip.limit));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            // The peer's address, as axum's connect info gives it: what
            // `--rate-limit` counts by.
            req.extensions_mut().insert(ConnectInfo(remote));
            tower::ServiceExt::oneshot(app.clone(), req)
        });
        let builder = builder.clone();
        let signal_tx = signal_tx.clone();
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            let mut signalled = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::trace!(error = %e, "Connection ended with an error.");
                        }
                        break;
                    }
                    _ = signal_tx.closed(), if !signalled => {
                        signalled = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(slot);
            drop(close_rx);
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
}

/// Answers a connection over the per-address limit with a 503 in the JSON
/// error shape, then closes it, without reading its request.
async fn refuse(mut stream: TcpStream, limit: usize) {
    let body = serde_json::json!({
        "message": format!("too many connections from this address (limit {limit}); try again later"),
        "exception": "TOO_MANY_CONNECTIONS",
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_WRITE, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent until it closes: closing with its
        // request unread would reset the connection, and the client would
        // see an error instead of the 503.
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Open connections per client address.
#[derive(Clone)]
struct PerIp {
    limit: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open connection, counted until dropped.
struct Slot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerIp {
    fn new(limit: usize) -> Self {
        PerIp {
            limit,
            open: Arc::default(),
        }
    }

    fn take(&self, ip: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            ip,
            open: self.open.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // No entry outlives its last connection.
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_the_limit_and_a_closed_one_frees_its_slot() {
        let per_ip = PerIp::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let one = per_ip.take(a).unwrap();
        let _two = per_ip.take(a).unwrap();
        assert!(per_ip.take(a).is_none());
        assert!(
            per_ip.take(b).is_some(),
            "another address has its own count"
        );
        drop(one);
        assert!(per_ip.take(a).is_some());
    }

    #[test]
    fn no_entry_outlives_its_last_connection() {
        let per_ip = PerIp::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        drop(per_ip.take(a));
        assert!(per_ip.open.lock().unwrap().is_empty());
    }
}

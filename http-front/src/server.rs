//! The accept loop: hyper's connection builder, in place of `axum::serve`,
//! for what `axum::serve` does not bound: the time a client may take to
//! send its headers, and how many connections one client address may hold.
//! Graceful shutdown works as `axum::serve`'s: stop accepting, let every
//! connection finish its open requests, wait for them. With `--tls-cert`
//! each connection's task does its TLS handshake before serving it.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::client_addr::{self, ClientAddr};
use crate::tls::Tls;
use crate::HttpLimits;

/// How long a refused connection's 503 may take to write.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown`
/// completes, then waits for open connections to finish their requests.
/// `trust_forwarded`: take each request's client address from
/// `X-Forwarded-For` (see [`client_addr`](crate::client_addr)).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &HttpLimits,
    tls: Option<Tls>,
    trust_forwarded: bool,
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
    let connection = Connection {
        app,
        builder,
        trust_forwarded,
        signal_tx,
    };
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
            _ = connection.signal_tx.closed() => break,
        };
        // The TCP peer: behind a proxy, the proxy (`--trust-forwarded` is
        // about requests, and no request has been read yet).
        let Some(slot) = per_ip.take(remote.ip()) else {
            tracing::warn!(client = %remote.ip(), limit = per_ip.limit, "Connection refused: too many from one address.");
            if tls.is_none() {
                tokio::spawn(refuse(stream, per_ip.limit));
            }
            // Over TLS the connection is only closed: a 503 would need the
            // handshake first, and the handshake is the costly part (the
            // server's private-key operation), which a client already over
            // its cap should not be able to make us do for each connection
            // it opens. Its client sees a failed handshake instead.
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = connection.clone();
        let tls = tls.clone();
        let header_timeout = limits.header_timeout;
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            match tls {
                None => connection.serve(stream, remote).await,
                // The handshake runs here, in the connection's own task, so
                // a slow one never holds up accepting; it gets the time a
                // client has for its headers, and stops at shutdown.
                Some(tls) => {
                    let handshake = Box::pin(tokio::time::timeout(
                        header_timeout,
                        tls.acceptor().accept(stream),
                    ));
                    let done = tokio::select! {
                        done = handshake => Some(done),
                        _ = connection.signal_tx.closed() => None,
                    };
                    match done {
                        // Boxed: a TLS stream's state is large, and the
                        // task of every plain connection would otherwise
                        // be as large too (it is held for the whole of a
                        // long-polling connect).
                        Some(Ok(Ok(stream))) => Box::pin(connection.serve(stream, remote)).await,
                        Some(Ok(Err(e))) => {
                            tracing::debug!(client = %remote.ip(), error = %e, "TLS handshake failed.");
                        }
                        Some(Err(_)) => {
                            tracing::debug!(client = %remote.ip(), "TLS handshake timed out.");
                        }
                        // Shutdown began first: no request was open to finish.
                        None => {}
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

/// What each connection's task needs to serve HTTP on its stream.
#[derive(Clone)]
struct Connection {
    app: Router,
    builder: http1::Builder,
    trust_forwarded: bool,
    /// Closed when shutdown begins.
    signal_tx: watch::Sender<()>,
}

impl Connection {
    /// Serves requests on `io` (plain TCP, or TLS after its handshake) from
    /// `remote` until the connection ends, or shutdown lets its open
    /// requests finish.
    async fn serve<I>(self, io: I, remote: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            app,
            builder,
            trust_forwarded,
            signal_tx,
        } = self;
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            // The peer's address, as axum's connect info gives it, and the
            // client's, which is what `--rate-limit` counts by.
            let client = client_addr::client_ip(req.headers(), remote.ip(), trust_forwarded);
            req.extensions_mut().insert(ConnectInfo(remote));
            req.extensions_mut().insert(ClientAddr(client));
            tower::ServiceExt::oneshot(app.clone(), req)
        });
        let conn = builder
            .serve_connection(TokioIo::new(io), service)
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
    }
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

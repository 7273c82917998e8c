//! `--rate-limit N`: requests per second per client address, on every route.
//! The client address is the TCP peer's, or with `--trust-forwarded` the one
//! `X-Forwarded-For` names (`client_addr`).
//!
//! In process (`governor`, a GCRA per address): it protects this node's
//! CPU, so it need not be shared. The quotas that must hold for all nodes
//! together (GMS's throttles) are counted in the store instead.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::client_addr::ClientAddr;
use crate::error::{retry_secs, AppError};

/// The CLI's default: far above what one app, one desktop or the load
/// tests send from one address, well below what one client could flood
/// a node with.
pub const DEFAULT_PER_SECOND: u32 = 1000;

/// How the API limits each client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimit {
    /// Requests per second (and the burst) per address; `None`: no limit.
    pub per_second: Option<NonZeroU32>,
    /// Limit loopback clients too. Off by default: on a laptop, or behind
    /// a proxy on the same host, every client is a loopback address.
    pub loopback: bool,
}

struct Limiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    per_second: NonZeroU32,
    loopback: bool,
    checks: AtomicU64,
}

/// Forget idle addresses every this many checks, so the table stays small.
const RETAIN_EVERY: u64 = 4096;

/// `router` with the limit in front of it (nothing when there is none).
pub fn layer(router: Router, limit: RateLimit) -> Router {
    let Some(per_second) = limit.per_second else {
        return router;
    };
    let limiter = Arc::new(Limiter {
        limiter: governor::RateLimiter::keyed(Quota::per_second(per_second)),
        per_second,
        loopback: limit.loopback,
        checks: AtomicU64::new(0),
    });
    router.layer(axum::middleware::from_fn_with_state(limiter, check))
}

async fn check(State(limiter): State<Arc<Limiter>>, request: Request, next: Next) -> Response {
    // The client as the accept loop settled it (the peer, or with
    // `--trust-forwarded` the proxy's word); served by something else, the
    // peer; with neither (a router served without connect info) there is
    // no one to count.
    let extensions = request.extensions();
    let Some(ip) = extensions.get::<ClientAddr>().map(|c| c.0).or_else(|| {
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_canonical())
    }) else {
        return next.run(request).await;
    };
    if ip.is_loopback() && !limiter.loopback {
        return next.run(request).await;
    }
    if limiter.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
        limiter.limiter.retain_recent();
        limiter.limiter.shrink_to_fit();
    }
    match limiter.limiter.check_key(&ip) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            AppError::TooManyRequests {
                message: format!(
                    "rate limit: more than {} requests per second from this address",
                    limiter.per_second
                ),
                retry_after: retry_secs(wait),
            }
            .into_response()
        }
    }
}

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

use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::admission::{Admit, AdmitLayer};
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

/// The limit for every request (none when there is no limit).
pub(crate) fn layer(limit: RateLimit) -> Option<AdmitLayer<RateLimited>> {
    let per_second = limit.per_second?;
    Some(AdmitLayer(RateLimited(Arc::new(Limiter {
        limiter: governor::RateLimiter::keyed(Quota::per_second(per_second)),
        per_second,
        loopback: limit.loopback,
        checks: AtomicU64::new(0),
    }))))
}

#[derive(Clone)]
pub(crate) struct RateLimited(Arc<Limiter>);

impl Admit for RateLimited {
    fn admit(&self, request: Request) -> Result<Request, Response> {
        match self.0.refusal(&request) {
            Some(refused) => Err(refused),
            None => Ok(request),
        }
    }
}

impl Limiter {
    /// The answer for a request over its address's limit; None to let it by.
    fn refusal(&self, request: &Request) -> Option<Response> {
        // The client as the accept loop settled it (the peer, or with
        // `--trust-forwarded` the proxy's word); served by something else,
        // the peer; with neither (a router served without connect info)
        // there is no one to count.
        let extensions = request.extensions();
        let ip = extensions.get::<ClientAddr>().map(|c| c.0).or_else(|| {
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_canonical())
        })?;
        if ip.is_loopback() && !self.loopback {
            return None;
        }
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        let not_until = self.limiter.check_key(&ip).err()?;
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        Some(
            AppError::TooManyRequests {
                message: format!(
                    "rate limit: more than {} requests per second from this address",
                    self.per_second
                ),
                retry_after: retry_secs(wait),
            }
            .into_response(),
        )
    }
}

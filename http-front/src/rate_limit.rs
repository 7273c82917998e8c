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

use std::future::{ready, Ready};
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
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

/// The limit as the outermost layer of every request (none when there is
/// no limit). A tower layer, not `from_fn`, for the reason
/// [`crate::request_id`] gives.
pub(crate) fn layer(limit: RateLimit) -> Option<RateLimitLayer> {
    let per_second = limit.per_second?;
    Some(RateLimitLayer(Arc::new(Limiter {
        limiter: governor::RateLimiter::keyed(Quota::per_second(per_second)),
        per_second,
        loopback: limit.loopback,
        checks: AtomicU64::new(0),
    })))
}

#[derive(Clone)]
pub(crate) struct RateLimitLayer(Arc<Limiter>);

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Limited<S> {
        Limited {
            inner,
            limiter: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Limited<S> {
    inner: S,
    limiter: Arc<Limiter>,
}

impl<S> tower::Service<Request> for Limited<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.limiter.refusal(&request) {
            Some(refused) => Either::Left(ready(Ok(refused))),
            None => Either::Right(self.inner.call(request)),
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

//! `GET /metrics`: Prometheus's text format, through the `metrics` facade
//! and its Prometheus exporter.
//!
//! One recorder serves the process (the facade's recorder is global), so
//! several servers in one test process share it: counters add up across
//! them, which is why tests read differences, or labels of their own.
//! Latencies are real Prometheus histograms (`_bucket`, `_sum`, `_count`)
//! with [`BUCKETS`], not summaries, so they can be aggregated across nodes.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::AppError;
use crate::AppState;

pub const HTTP_REQUESTS: &str = "callbackd_http_requests_total";
pub const HTTP_DURATION: &str = "callbackd_http_request_duration_seconds";

/// Histogram buckets for every `_seconds` metric: from a fast store call
/// (a quarter of a millisecond) to a held long-poll (a minute).
pub const BUCKETS: [f64; 16] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 60.0,
];

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process's recorder, installed on first use.
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            // Someone else's recorder (an embedding program's): ours then
            // renders only what it was given, which is nothing.
            tracing::warn!("A metrics recorder was already installed; /metrics will be empty.");
        }
        // A histogram keeps each sample until upkeep folds it into its
        // buckets; without a scrape that would be never, and an unscraped
        // server would grow by every request it answered.
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "Metrics upkeep not started; histograms are folded on each scrape only.");
        }
        runtime::metrics::describe();
        metrics::describe_counter!(
            HTTP_REQUESTS,
            "HTTP requests answered, by method, route template and status."
        );
        metrics::describe_histogram!(
            HTTP_DURATION,
            metrics::Unit::Seconds,
            "Time to answer an HTTP request, by method and route template (a held CometD connect counts its hold)."
        );
        metrics::describe_gauge!(
            push::registry::PUSH_CLIENTS,
            "Push clients connected to this node, by transport."
        );
        metrics::describe_gauge!(
            push::fanout::PUSH_RELAYING,
            "1 while this node relays push deliveries to other nodes, 0 while no other node listens on the relay."
        );
        metrics::describe_counter!(
            push::registry::PUSH_DELIVERIES,
            "Notifications a push client proved it received, by transport."
        );
        handle
    })
}

/// Installs the recorder, so what happens before the first scrape counts.
pub fn install() {
    handle();
}

/// Counts and times every request by its route template (`MatchedPath`:
/// `/genesys/1/service/{id}/connect`, never the id), method and status. A
/// tower layer, not `from_fn`, for the reason [`crate::request_id`] gives.
#[derive(Clone, Copy, Default)]
pub struct TrackLayer;

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track { inner }
    }
}

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
}

// Generic over the answer's body: the layers below may wrap it.
impl<S, B> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = axum::http::Response<B>>,
{
    type Response = axum::http::Response<B>;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // MatchedPath is an Arc<str>: a clone, not a copy of the text.
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = req.method().clone();
        Tracked {
            inner: self.inner.call(req),
            seen: Some((route, method, Instant::now())),
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer, counted and timed when it comes.
    pub struct Tracked<F> {
        #[pin]
        inner: F,
        seen: Option<(Option<MatchedPath>, Method, Instant)>,
    }
}

impl<F, B, E> Future for Tracked<F>
where
    F: Future<Output = Result<axum::http::Response<B>, E>>,
{
    type Output = Result<axum::http::Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        if let Some((route, method, started)) = this.seen.take() {
            use runtime::metrics::kept;
            let route = route.as_ref().map_or("unmatched", |r| r.as_str());
            let (method, status) = (method.as_str(), response.status());
            kept::histogram(HTTP_DURATION, &[("method", method), ("route", route)])
                .record(started.elapsed().as_secs_f64());
            let labels = [
                ("method", method),
                ("route", route),
                ("status", status.as_str()),
            ];
            kept::counter(HTTP_REQUESTS, &labels).increment(1);
        }
        Poll::Ready(Ok(response))
    }
}

/// GET /metrics: the gauges read from the store now, and every counter
/// and histogram, in Prometheus's text format.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn render(State(state): State<Arc<AppState>>) -> Result<Response, AppError> {
    let handle = handle();
    runtime::metrics::observe(&state.shell).await?;
    handle.run_upkeep();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response())
}

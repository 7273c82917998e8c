//! Estimated wait time for widgets and apps, before any callback exists:
//! GMS's EWT API v1 and v2, as Genesys Widgets' StatsService calls them.
//!
//! StatsService (`_genesys.widgets.stats.ewt`) builds, per `apiVersion`:
//! v1 `<dataURL>?name=<vq>&aqt=<mode>` (modes urs, urs2, stat; with several
//! queues or none it drops `name`), v2 `<dataURL>/<mode>?vq=<vq>,<vq>`
//! (modes ewt1, ewt2, ewt3). It reads `ewt` (seconds, -1 for none) from the
//! answer of one queue, and `<vq>.ewt` from the answer of several.
//!
//! A callbackd queue (`_target.queue`) is GMS's virtual queue. callbackd has
//! one estimator (`QueueStats::eta`), so every mode answers the same number:
//! the wait of a customer joining the queue now, behind those waiting.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::error::AppError;
use crate::extract::{Path, Query};
use crate::AppState;

/// GMS 8.5.1's `aqt` of ewt-for-vq.
const V1_MODES: [&str; 3] = ["urs", "urs2", "stat"];
/// GMS 8.5.2's modes of `/genesys/2/ewt/{mode}`.
const V2_MODES: [&str; 3] = ["ewt1", "ewt2", "ewt3"];

/// GET /genesys/1/service/ewt-for-vq?name=<vq>[,<vq>...]&aqt=urs|urs2|stat
#[tracing::instrument(level = "debug", skip_all)]
pub async fn v1(
    State(state): State<Arc<AppState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, AppError> {
    check_mode(params.get("aqt").map(String::as_str), "aqt", &V1_MODES)?;
    estimate(&state, "name", params.get("name")).await.map(Json)
}

/// GET /genesys/2/ewt/{mode}?vq=<vq>[,<vq>...]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn v2(
    State(state): State<Arc<AppState>>,
    Path(mode): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, AppError> {
    check_mode(Some(&mode), "mode", &V2_MODES)?;
    estimate(&state, "vq", params.get("vq")).await.map(Json)
}

/// GET /genesys/2/ewt?vq=: StatsService always appends a mode, but GMS's
/// default (ewt2) is what a bare URL means.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn v2_default(
    State(state): State<Arc<AppState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, AppError> {
    estimate(&state, "vq", params.get("vq")).await.map(Json)
}

fn check_mode(mode: Option<&str>, field: &str, modes: &[&str]) -> Result<(), AppError> {
    match mode.map(str::trim) {
        None | Some("") => Ok(()),
        Some(m) if modes.contains(&m) => Ok(()),
        Some(m) => Err(AppError::field(
            field,
            format!("`{m}` is not one of {}", modes.join(", ")),
        )),
    }
}

/// One queue's entry, or (several or no queues asked) an object of entries
/// by queue name. An unknown queue is a 404 naming `field`.
async fn estimate(
    state: &AppState,
    field: &str,
    asked: Option<&String>,
) -> Result<Value, AppError> {
    // The virtual queues are the scenarios': `_urs_virtual_queue`, or the
    // simple target's queue, or the first group a URS target list names
    // (all resolved into `_target.queue` when the scenario is read).
    let known: BTreeSet<&str> = state
        .shell
        .scenarios()
        .iter()
        .map(|s| s.target.queue.as_str())
        .collect();
    let names: Vec<&str> = asked
        .map(|a| {
            a.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(unknown) = names.iter().find(|n| !known.contains(**n)) {
        return Err(AppError::NotFound(format!(
            "{field}: no virtual queue `{unknown}`; the queues are the scenarios' _urs_virtual_queue or _target.queue"
        )));
    }
    let agents = state.shell.agents().await?;
    let entry = |queue: &str| {
        let serving = agents
            .iter()
            .filter(|a| a.ready && a.profile.queues.iter().any(|q| q == queue));
        let ready = serving.clone().count();
        let capacity: u32 = serving.map(|a| a.profile.max_concurrent).sum();
        (ready, capacity)
    };
    let mut out = BTreeMap::new();
    let wanted: Vec<&str> = if names.is_empty() {
        known.iter().copied().collect()
    } else {
        names.clone()
    };
    for queue in wanted {
        let waiting = state.shell.waiting_in(queue).await?.len();
        let stats = state.shell.queue_stats(queue).await?;
        let (ready, capacity) = entry(queue);
        // A customer asking now would join behind everyone waiting.
        let ewt = stats.eta(waiting + 1, capacity);
        out.insert(
            queue.to_owned(),
            json!({
                "ewt": ewt.map_or(-1, |s| s as i64),
                "_total_waiting": waiting,
                "_agents_ready": ready,
            }),
        );
    }
    if names.len() == 1 {
        return Ok(out.into_values().next().unwrap_or(Value::Null));
    }
    Ok(Value::Object(out.into_iter().collect()))
}

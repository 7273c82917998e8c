//! The supervisor's chart: services created, answered and completed per
//! hour over the last hours, with the average wait of those answered.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use engine::record::ServiceState;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::AppError;
use crate::extract::Query;
use crate::AppState;

/// At most two days of hours.
const MAX_HOURS: u32 = 48;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoursQuery {
    hours: Option<String>,
    service_name: Option<String>,
}

/// GET /api/v1/stats/hours?hours=12&service_name=: `{"hours": [{"start",
/// "created", "answered", "completed", "average_wait_seconds"}]}`, oldest
/// first, the current hour last. From the stored services (completed ones
/// while they are kept).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn hours(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HoursQuery>,
) -> Result<Json<Value>, AppError> {
    let hours = match q.hours.as_deref() {
        None => 12,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=MAX_HOURS).contains(&n) => n,
            _ => {
                return Err(AppError::field(
                    "hours",
                    format!("must be a whole number from 1 to {MAX_HOURS}"),
                ))
            }
        },
    };
    if let Some(name) = q.service_name.as_deref() {
        super::loaded_scenario(&state, "service_name", name)?;
    }
    let records = state.shell.services_in(&ServiceState::ALL).await?;
    let shown = records
        .iter()
        .filter(|r| q.service_name.as_deref().is_none_or(|s| r.scenario == s));
    let out = engine::stats::hourly(shown, state.shell.now(), hours);
    Ok(Json(json!({ "hours": out })))
}

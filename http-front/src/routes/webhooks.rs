//! The operator's view of webhook deliveries: the recent attempts of every
//! node,
//! and putting a service's given-up events back in line.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use engine::machine::{Event, TransitionError};
use runtime::ShellError;
use serde_json::{json, Value};

use super::check_id;
use crate::error::AppError;
use crate::extract::Path;
use crate::AppState;

/// GET /api/v1/webhooks/deliveries: the most recent attempts of every node
/// (newest first), delivered or not, with the receiver's status or the
/// error.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn deliveries(State(state): State<Arc<AppState>>) -> Result<Json<Value>, AppError> {
    let attempts = state.shell.webhook_attempts().await?;
    let failed = attempts.iter().filter(|a| !a.delivered).count();
    Ok(Json(json!({"attempts": attempts, "failed": failed})))
}

/// POST /api/v1/services/{id}/webhooks/retry: the service's given-up
/// webhook events go back in line, to be delivered again from now.
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn retry(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    let before = state.shell.get(&id).await?;
    match state.shell.transition(&id, &Event::WebhooksRetried).await {
        Ok(after) => Ok(Json(json!({
            "_id": id,
            "retried": before.webhooks.failed.len(),
            "pending": after.webhooks.pending.len(),
        }))),
        Err(ShellError::NotAllowed(TransitionError::Unchanged)) => Err(AppError::Conflict(
            format!("service {id} has no given-up webhook events to retry"),
        )),
        Err(e) => Err(e.into()),
    }
}

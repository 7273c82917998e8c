use std::sync::Arc;

use crate::extract::Path;
use axum::extract::State;
use axum::Json;
use engine::record::ServiceState;
use serde_json::{json, Value};

use super::check_id;
use crate::error::AppError;
use crate::AppState;

/// POST|GET /genesys/1/service/{id}/check-queue-position
#[tracing::instrument(skip_all, fields(service_id = %id))]
pub async fn check(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    let shell = &state.shell;
    let record = shell.get(&id).await?;
    let scenario = shell.scenario(&record.scenario)?;
    let queue = &record.ticket.queue;
    // Only a service outside the queue needs the queue's length read on its
    // own; a queued one gets it with its position.
    let queue_len = || async { shell.waiting_in(queue).await.map(|q| q.len()) };
    let (position, waiting, eta) = match record.state {
        ServiceState::WaitForAgent => {
            let Some((position, waiting)) = shell.position(queue, &id).await? else {
                // Left the queue between the two reads: an agent was just reserved.
                let waiting = queue_len().await?;
                return Ok(Json(answer(0, Some(0), waiting, true, "agent reserved")));
            };
            let capacity = shell.ready_capacity(queue).await?;
            let stats = shell.queue_stats(queue).await?;
            (position, waiting, stats.eta(position, capacity))
        }
        ServiceState::Scheduled => {
            let until = (record.desired_time - shell.now()).num_seconds().max(0) as u64;
            return Ok(Json(answer(
                0,
                Some(until),
                queue_len().await?,
                false,
                "service is SCHEDULED",
            )));
        }
        ServiceState::WaitForUserConfirm | ServiceState::Connected => {
            return Ok(Json(answer(
                0,
                Some(0),
                queue_len().await?,
                true,
                "agent reserved",
            )));
        }
        ServiceState::Completed => {
            let reason = record
                .reason_name()
                .unwrap_or_else(|| "NOT_AVAILABLE".to_owned());
            return Err(AppError::Conflict(format!(
                "service is COMPLETED ({reason}); it is no longer in a queue"
            )));
        }
    };
    let (passed, reason) = scenario.agent_ready_threshold.check(position, eta);
    Ok(Json(answer(position, eta, waiting, passed, &reason)))
}

fn answer(position: usize, eta: Option<u64>, total: usize, passed: bool, reason: &str) -> Value {
    json!({
        "_position": position,
        "_eta": eta.map(Value::from).unwrap_or_else(|| json!("n/a")),
        "_total_waiting": total,
        "_agent_ready_threshold_passed": passed,
        "_agent_ready_threshold_passed_reason": reason,
    })
}

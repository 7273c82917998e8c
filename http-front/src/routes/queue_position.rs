use std::borrow::Cow;
use std::sync::Arc;

use crate::extract::Path;
use axum::extract::State;
use axum::Json;
use engine::record::ServiceState;
use serde::Serialize;

use super::check_id;
use crate::error::AppError;
use crate::AppState;

/// POST|GET /genesys/1/service/{id}/check-queue-position
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn check(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Answer>, AppError> {
    check_id("id", &id)?;
    let shell = &state.shell;
    // One read: on Redis one round trip answers the service's state, its
    // place, the queue's length and the EWT's inputs.
    let standing = shell.standing(&id).await?;
    let scenario = shell.scenario(&standing.scenario)?;
    let waiting = standing.waiting;
    // A service out of its queue comes with its record (a waiting one's
    // answer needs only its place).
    let record = || {
        standing
            .record
            .as_ref()
            .ok_or_else(|| AppError::Internal(format!("the store answered no record for {id}")))
    };
    let (position, eta) = match standing.state {
        ServiceState::WaitForAgent => {
            let Some(position) = standing.position else {
                // Left the queue between the writes and this read: an
                // agent was just reserved.
                return Ok(Json(answer(0, Some(0), waiting, true, "agent reserved")));
            };
            (
                position,
                standing.averages.eta(position, standing.ready_capacity),
            )
        }
        ServiceState::Scheduled => {
            let until = (record()?.desired_time - shell.now()).num_seconds().max(0) as u64;
            return Ok(Json(answer(
                0,
                Some(until),
                waiting,
                false,
                "service is SCHEDULED",
            )));
        }
        ServiceState::WaitForUserConfirm | ServiceState::Connected => {
            return Ok(Json(answer(0, Some(0), waiting, true, "agent reserved")));
        }
        ServiceState::Completed => {
            let reason = record()?
                .reason_name()
                .unwrap_or_else(|| "NOT_AVAILABLE".to_owned());
            return Err(AppError::Conflict(format!(
                "service is COMPLETED ({reason}); it is no longer in a queue"
            )));
        }
    };
    let (passed, reason) = scenario.agent_ready_threshold.check(position, eta);
    Ok(Json(answer(position, eta, waiting, passed, reason)))
}

/// check-queue-position's answer, fields in GMS's order. A struct rather
/// than `json!`: no map of `Value`s built and dropped for every poll.
#[derive(Debug, Serialize)]
pub struct Answer {
    _position: usize,
    /// Seconds, or "n/a".
    _eta: Eta,
    _total_waiting: usize,
    _agent_ready_threshold_passed: bool,
    _agent_ready_threshold_passed_reason: Cow<'static, str>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Eta {
    Seconds(u64),
    Unknown(&'static str),
}

fn answer(
    position: usize,
    eta: Option<u64>,
    total: usize,
    passed: bool,
    reason: impl Into<Cow<'static, str>>,
) -> Answer {
    Answer {
        _position: position,
        _eta: eta.map_or(Eta::Unknown("n/a"), Eta::Seconds),
        _total_waiting: total,
        _agent_ready_threshold_passed: passed,
        _agent_ready_threshold_passed_reason: reason.into(),
    }
}

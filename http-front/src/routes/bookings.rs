//! The customer's own booking, by the secret link the confirmation, its
//! e-mail and invite carry (`/booking/{id}?token=…`): see it, move it to
//! another open slot, cancel it, or download its invite. Knowing a service
//! id is not enough: every call needs the booking's token, and a wrong one
//! is answered as if there were no booking, so ids cannot be probed.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::machine::{Changes, Event};
use engine::record::ServiceRecord;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::check_id;
use super::schedule::{book, booking_answer, refused_seat};
use crate::error::AppError;
use crate::extract::Path;
use crate::form::JsonBody;
use crate::requests::fields;
use crate::requests::room::RoomToken;
use crate::AppState;

/// The booked service `id` if `token` is its manage token; else the same
/// 404 whether the id exists or not.
async fn booking_of(
    state: &AppState,
    id: &str,
    token: RoomToken,
) -> Result<ServiceRecord, AppError> {
    check_id("id", id)?;
    let token = token.require()?;
    let missing = || AppError::NotFound(format!("no booking `{id}` with this link"));
    let record = match state.shell.find_service(id).await? {
        Some(record) => record,
        None => return Err(missing()),
    };
    let stored = record
        .booking
        .as_ref()
        .and_then(|b| b.manage_token.as_deref());
    // Compared as digests: the time taken says nothing of how much matched.
    match stored {
        Some(stored) if Sha256::digest(stored) == Sha256::digest(&token) => Ok(record),
        _ => Err(missing()),
    }
}

/// What the customer's page shows of a booking.
fn view(state: &AppState, record: &ServiceRecord) -> Value {
    let scenario = state.shell.scenario(&record.scenario).ok();
    let answer = json!({
        "_id": record.id,
        "_service_name": record.scenario,
        "_callback_state": record.state.gms_name(),
        "_callback_reason": record.reason_name(),
        "title": scenario
            .and_then(|s| s.schedule.as_ref())
            .map(|s| s.title.clone()),
        // The customer may still move or cancel it.
        "changeable": record.state == engine::record::ServiceState::Scheduled,
    });
    // The booking's times and links, as the create and the reschedule answer them.
    let mut answer = booking_answer(&state.link_base, record, answer);
    let name = scenario
        .and_then(|s| s.schedule.as_ref())
        .and_then(|s| record.user_data.get(&s.notifications.name_field));
    answer["name"] = json!(name);
    answer
}

/// GET /api/v1/bookings/{id}?token=
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    token: RoomToken,
) -> Result<Json<Value>, AppError> {
    let record = booking_of(&state, &id, token).await?;
    Ok(Json(view(&state, &record)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    #[serde(rename = "_new_desired_time")]
    new_desired_time: String,
}

/// PUT /api/v1/bookings/{id}?token= `{"_new_desired_time"}`: to the open
/// slot holding that time (the booking rules, and a 409 with the nearest
/// open slots, as GMS's reschedule).
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn move_booking(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    token: RoomToken,
    JsonBody(body): JsonBody<MoveBody>,
) -> Result<Json<Value>, AppError> {
    let field = "_new_desired_time";
    let desired = fields::time(field, &body.new_desired_time, "2026-11-23T09:00:00Z")?;
    let record = booking_of(&state, &id, token).await?;
    let scenario = state.shell.scenario(&record.scenario)?.clone();
    let Some(schedule) = &scenario.schedule else {
        return Err(AppError::NotFound(format!(
            "no booking `{id}` with this link"
        )));
    };
    let zone = schedule.zone_for(None, record.booking.as_deref());
    let booking = book(&state, &scenario, schedule, field, desired, zone, &id)
        .await?
        .moved_from(record.booking.as_deref());
    let event = Event::Reschedule {
        desired_time: booking.slot,
        booking: Some(booking),
        changes: Changes::default(),
    };
    match state.shell.transition(&id, &event).await {
        Ok(record) => Ok(Json(view(&state, &record))),
        Err(e) => Err(refused_seat(&state, &scenario, schedule, field, e, zone).await),
    }
}

/// DELETE /api/v1/bookings/{id}?token=: cancelled (reason `CANCELLED`);
/// the seat is free again. Only while `SCHEDULED` (409 after).
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    token: RoomToken,
) -> Result<Json<Value>, AppError> {
    let record = booking_of(&state, &id, token).await?;
    // The link changes a booking, not a call under way: once the service
    // has left SCHEDULED, only the agent or a supervisor ends it.
    if record.state != engine::record::ServiceState::Scheduled {
        return Err(AppError::Conflict(format!(
            "booking `{id}` is {}: only a booking still waiting for its time can be cancelled by its link",
            record.state.gms_name()
        )));
    }
    let record = state.shell.transition(&id, &Event::Cancel).await?;
    Ok(Json(view(&state, &record)))
}

/// GET /api/v1/bookings/{id}/invite.ics?token=: the invite, to add the
/// booking to a calendar.
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn invite(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    token: RoomToken,
) -> Result<Response, AppError> {
    let record = booking_of(&state, &id, token).await?;
    let ics = state
        .shell
        .booking_invite(&record)
        .ok_or_else(|| AppError::NotFound(format!("no booking `{id}` with this link")))?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"appointment.ics\"",
            ),
        ],
        ics,
    )
        .into_response())
}

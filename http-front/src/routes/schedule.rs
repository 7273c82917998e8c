//! Booked callbacks: availability (GMS v1 and v2), booking a slot at
//! create, and rescheduling.
//!
//! The schedule (hours, slots, seats) is the scenario's, computed by
//! `engine::schedule`; the seats taken are the store's. A seat is taken by
//! the store's write itself (it refuses a full slot atomically), so the
//! availability answered here is advice, and a booking can still lose the
//! race for the last seat: it is answered 409 with the nearest open slots.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use engine::machine::Event;
use engine::record::Booking;
use engine::scenario::Scenario;
use engine::schedule::{local_time, utc_time, BookingRefused, Schedule, Slot, Tz};
use engine::store::StoreError;
use serde_json::{json, Value};

use super::check_id;
use crate::error::AppError;
use crate::extract::{Path, Query};
use crate::form::GmsForm;
use crate::requests::callback::Reschedule;
use crate::requests::fields;
use crate::AppState;
use runtime::ShellError;

/// Longest window one availability request may ask for.
const MAX_DAYS: i64 = 366;

/// Open slots listed with a refused booking.
const NEAREST: usize = 5;

/// The scenario's schedule, or 404: a scenario without one takes no bookings.
fn schedule_of(scenario: &Scenario) -> Result<&Schedule, AppError> {
    scenario.schedule.as_ref().ok_or_else(|| {
        AppError::NotFound(format!(
            "scenario `{}` takes no bookings: it has no _schedule",
            scenario.name
        ))
    })
}

pub(super) fn time_param(
    params: &HashMap<String, String>,
    name: &str,
) -> Result<Option<DateTime<Utc>>, AppError> {
    match params.get(name).map(|s| s.trim()) {
        None | Some("") => Ok(None),
        Some(text) => fields::time(name, text, "time such as 2026-11-23T14:00:00.000Z").map(Some),
    }
}

pub(super) fn count_param(
    params: &HashMap<String, String>,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>, AppError> {
    match params.get(name).map(|s| s.trim()) {
        None | Some("") => Ok(None),
        Some(text) => match text.parse::<i64>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(AppError::field(
                name,
                format!(
                    "`{text}` is not a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        },
    }
}

fn zone_param(params: &HashMap<String, String>, name: &str) -> Result<Option<Tz>, AppError> {
    match params.get(name).map(|s| s.trim()) {
        None | Some("") => Ok(None),
        Some(text) => fields::zone(name, text).map(Some),
    }
}

/// A slot with what is left of it.
struct Open {
    slot: Slot,
    left: u32,
}

/// The scenario's slots in the window the query asks for (clipped to what
/// can be booked now), with the seats left in each.
async fn open_slots(
    state: &AppState,
    scenario: &Scenario,
    schedule: &Schedule,
    params: &HashMap<String, String>,
) -> Result<Vec<Open>, AppError> {
    let now = state.shell.now();
    let start = time_param(params, "start")?.unwrap_or(now);
    let days = count_param(params, "number-of-days", 1..=MAX_DAYS)?.unwrap_or(1);
    let end = match time_param(params, "end")? {
        Some(end) if end <= start => {
            return Err(AppError::field("end", "must be after start"));
        }
        Some(end) if end - start > Duration::days(MAX_DAYS) => {
            return Err(AppError::field(
                "end",
                format!("must be at most {MAX_DAYS} days after start"),
            ));
        }
        Some(end) => end,
        None => start + Duration::days(days),
    };
    let (earliest, latest) = schedule.bookable(now);
    let from = start.max(earliest);
    // `latest` is the last start allowed, and `slots` takes a half-open window.
    let to = end.min(latest + Duration::milliseconds(1));
    if from >= to {
        return Ok(Vec::new());
    }
    let taken = state.shell.seats_taken(&scenario.name, from, to).await?;
    Ok(schedule
        .slots(from, to)
        .into_iter()
        .map(|slot| Open {
            slot,
            left: slot
                .seats
                .saturating_sub(taken.get(&slot.start).copied().unwrap_or(0)),
        })
        .collect())
}

/// GET /genesys/1/service/callback/{scenario}/availability
/// ?start=&number-of-days=&end=&max-time-slots=
///
/// GMS v1: `{"<slot start, UTC>": <seats left>, ...}`, open slots only, earliest first.
#[tracing::instrument(level = "debug", skip_all, fields(scenario = %scenario))]
pub async fn availability_v1(
    State(state): State<Arc<AppState>>,
    Path(scenario): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, AppError> {
    let scenario = state.shell.scenario(&scenario)?.clone();
    let schedule = schedule_of(&scenario)?;
    let max = count_param(&params, "max-time-slots", 1..=100_000)?.unwrap_or(i64::MAX) as usize;
    let open = open_slots(&state, &scenario, schedule, &params).await?;
    let map: serde_json::Map<String, Value> = open
        .into_iter()
        .filter(|o| o.left > 0)
        .take(max)
        .map(|o| (utc_time(o.slot.start), json!(o.left)))
        .collect();
    Ok(Json(Value::Object(map)))
}

/// GET /genesys/2/service/callback/{scenario}/availability
/// ?start=&number-of-days=&end=&max-time-slots=&timezone=&report-busy=
///
/// `{slots: [{utcTime, localTime, capacity, total}], durationMin, timezone}`:
/// `capacity` is the seats left, `total` the slot's seats; full slots are
/// listed (capacity 0) only with `report-busy=true`.
#[tracing::instrument(level = "debug", skip_all, fields(scenario = %scenario))]
pub async fn availability_v2(
    State(state): State<Arc<AppState>>,
    Path(scenario): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<axum::response::Response, AppError> {
    use axum::response::IntoResponse;
    let scenario = state.shell.scenario(&scenario)?.clone();
    let schedule = schedule_of(&scenario)?;
    let max = count_param(&params, "max-time-slots", 1..=100_000)?.unwrap_or(i64::MAX) as usize;
    let zone = zone_param(&params, "timezone")?.unwrap_or(schedule.timezone);
    let busy = match params
        .get("report-busy")
        .map(|s| s.trim().to_ascii_lowercase())
    {
        None => false,
        Some(v) if v.is_empty() || v == "false" => false,
        Some(v) if v == "true" => true,
        Some(v) => {
            return Err(AppError::field(
                "report-busy",
                format!("`{v}` is not true or false"),
            ))
        }
    };
    let open = open_slots(&state, &scenario, schedule, &params).await?;
    // Typed rather than `json!`: thousands of slots, one map each, add up.
    let slots: Vec<SlotV2> = open
        .into_iter()
        .filter(|o| busy || o.left > 0)
        .take(max)
        .map(|o| SlotV2 {
            utc_time: utc_time(o.slot.start),
            local_time: local_time(o.slot.start, zone),
            capacity: o.left,
            total: o.slot.seats,
        })
        .collect();
    Ok(Json(AvailabilityV2 {
        slots,
        duration_min: schedule.slot_len().num_minutes(),
        timezone: zone.name(),
    })
    .into_response())
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SlotV2 {
    utc_time: String,
    local_time: String,
    capacity: u32,
    total: u32,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct AvailabilityV2 {
    slots: Vec<SlotV2>,
    duration_min: i64,
    timezone: &'static str,
}

/// The nearest slots that can still be booked, for a refusal's body.
async fn nearest(
    state: &AppState,
    scenario: &Scenario,
    schedule: &Schedule,
    t: DateTime<Utc>,
    zone: Tz,
) -> Value {
    let now = state.shell.now();
    let (earliest, latest) = schedule.bookable(now);
    let taken = state
        .shell
        .seats_taken(&scenario.name, earliest, latest + Duration::milliseconds(1))
        .await
        .unwrap_or_default();
    let left = |s: &Slot| {
        s.seats
            .saturating_sub(taken.get(&s.start).copied().unwrap_or(0))
    };
    let slots = schedule.nearest(t, now, NEAREST, |s| left(s) > 0);
    Value::Array(
        slots
            .iter()
            .map(|s| {
                json!({
                    "utcTime": utc_time(s.start),
                    "localTime": local_time(s.start, zone),
                    "capacity": left(s),
                    "total": s.seats,
                })
            })
            .collect(),
    )
}

/// A refusal of `t`: 409 with the nearest open slots.
async fn unavailable(
    state: &AppState,
    scenario: &Scenario,
    schedule: &Schedule,
    field: &str,
    t: DateTime<Utc>,
    zone: Tz,
    why: &str,
) -> AppError {
    AppError::SlotUnavailable {
        message: format!("{field}: {} {why}", utc_time(t)),
        nearest: nearest(state, scenario, schedule, t, zone).await,
    }
}

/// The booking of the slot holding `t` (the engine's rules), or the 409
/// naming `field` with the nearest open slots. The seat itself is taken by
/// the store's write.
pub(super) async fn book(
    state: &AppState,
    scenario: &Scenario,
    schedule: &Schedule,
    field: &str,
    t: DateTime<Utc>,
    zone: Tz,
    service_id: &str,
) -> Result<Booking, AppError> {
    let now = state.shell.now();
    match schedule.book(t, now, zone, service_id, &state.link_base) {
        Ok(booking) => Ok(Booking {
            manage_token: Some(manage_token()),
            ..booking
        }),
        Err(refused) => {
            let why = match refused {
                BookingRefused::Closed => "is not in an open slot",
                BookingRefused::TooSoon => "is too soon to book",
                BookingRefused::TooFar => "is beyond the booking horizon",
            };
            Err(unavailable(state, scenario, schedule, field, t, zone, why).await)
        }
    }
}

/// A booking's secret for the customer's manage link: 244 random bits.
fn manage_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Maps a lost race for the last seat to the 409 with the nearest slots.
pub(super) async fn refused_seat(
    state: &AppState,
    scenario: &Scenario,
    schedule: &Schedule,
    field: &str,
    e: ShellError,
    zone: Tz,
) -> AppError {
    match e {
        ShellError::Store(StoreError::SlotFull { slot }) => {
            unavailable(state, scenario, schedule, field, slot, zone, "is full").await
        }
        other => other.into(),
    }
}

/// PUT /genesys/1/service/callback/{scenario}/{id} with `_new_desired_time`:
/// moves a SCHEDULED service to another time (and another slot: the old
/// seat is freed and the new one taken in the same write).
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn reschedule(
    State(state): State<Arc<AppState>>,
    Path((scenario, id)): Path<(String, String)>,
    form: GmsForm,
) -> Result<Json<Value>, AppError> {
    let scenario = state.shell.scenario(&scenario)?.clone();
    check_id("id", &id)?;
    let request = Reschedule::parse(&form, &scenario)?;
    let now = state.shell.now();
    let desired = request.desired_time.unwrap_or(now);
    let record = state.shell.get(&id).await?;
    if record.scenario != scenario.name {
        return Err(AppError::NotFound(format!(
            "service `{id}` does not exist in scenario `{}`",
            scenario.name
        )));
    }
    let Some(schedule) = &scenario.schedule else {
        let event = Event::Reschedule {
            desired_time: desired.max(now),
            booking: None,
            changes: request.changes,
        };
        let record = state.shell.transition(&id, &event).await?;
        return Ok(Json(rescheduled(&state.link_base, &record)));
    };
    let zone = schedule.zone_for(request.zone, record.booking.as_deref());
    let field = "_new_desired_time";
    let booking = book(&state, &scenario, schedule, field, desired, zone, &id).await?;
    let booking = booking.moved_from(record.booking.as_deref());
    let event = Event::Reschedule {
        desired_time: booking.slot,
        booking: Some(booking),
        changes: request.changes,
    };
    match state.shell.transition(&id, &event).await {
        Ok(record) => Ok(Json(rescheduled(&state.link_base, &record))),
        Err(e) => Err(refused_seat(&state, &scenario, schedule, field, e, zone).await),
    }
}

fn rescheduled(link_base: &str, record: &engine::record::ServiceRecord) -> Value {
    booking_answer(
        link_base,
        record,
        json!({
            "_id": record.id,
            "_callback_state": record.state.gms_name(),
        }),
    )
}

/// Adds the booking's fields to an answer.
pub(super) fn booking_answer(
    link_base: &str,
    record: &engine::record::ServiceRecord,
    mut answer: Value,
) -> Value {
    answer["_desired_time"] = json!(utc_time(record.desired_time));
    if let Some(b) = &record.booking {
        let zone = b.timezone.parse::<Tz>().unwrap_or(Tz::UTC);
        answer["_slot_end"] = json!(utc_time(b.slot_end));
        answer["_local_time"] = json!(local_time(b.slot, zone));
        answer["_timezone"] = json!(zone.name());
        if let Some(url) = &b.join_url {
            answer["_join_url"] = json!(url);
        }
        if let Some(token) = &b.manage_token {
            answer["_manage_url"] =
                json!(runtime::notices::manage_url(link_base, &record.id, token));
        }
    }
    answer
}

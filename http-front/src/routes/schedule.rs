//! Booked callbacks: availability (GMS v1 and v2), booking a slot at
//! create, and rescheduling.
//!
//! The schedule (hours, slots, seats) is the scenario's, computed by
//! `engine::schedule`; the seats taken are the store's. A seat is taken by
//! the store's write itself (it refuses a full slot atomically), so the
//! availability answered here is advice, and a booking can still lose the
//! race for the last seat: it is answered 409 with the nearest open slots.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use engine::machine::Event;
use engine::record::Booking;
use engine::scenario::Scenario;
use engine::schedule::{local_time, utc_time, Schedule, Slot, Tz};
use engine::store::StoreError;
use serde_json::{json, Value};

use super::check_id;
use crate::error::AppError;
use crate::extract::{Path, Query};
use crate::form::GmsForm;
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

/// A time as GMS clients send it: ISO 8601 with a zone, or without one (UTC).
/// Years outside 1970..=9999 are refused: nobody books them, and chrono's
/// extended years would overflow the arithmetic that follows.
pub(super) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    use chrono::Datelike;
    let t = match DateTime::parse_from_rfc3339(text) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()?
            .and_utc(),
    };
    (1970..=9999).contains(&t.year()).then_some(t)
}

fn time_param(
    params: &HashMap<String, String>,
    name: &str,
) -> Result<Option<DateTime<Utc>>, AppError> {
    match params.get(name).map(|s| s.trim()) {
        None | Some("") => Ok(None),
        Some(text) => parse_time(text).map(Some).ok_or_else(|| {
            AppError::field(
                name,
                format!("`{text}` is not an ISO-8601 time such as 2026-11-23T14:00:00.000Z"),
            )
        }),
    }
}

fn count_param(
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
        Some(text) => text.parse::<Tz>().map(Some).map_err(|_| {
            AppError::field(
                name,
                format!("`{text}` is not an IANA time zone such as Europe/London"),
            )
        }),
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
    let taken = seats_taken(state, &scenario.name, from, to).await?;
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

async fn seats_taken(
    state: &AppState,
    scenario: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<BTreeMap<DateTime<Utc>, u32>, AppError> {
    Ok(state.shell.seats_taken(scenario, from, to).await?)
}

/// GET /genesys/1/service/callback/{scenario}/availability
/// ?start=&number-of-days=&end=&max-time-slots=
///
/// GMS v1: `{"<slot start, UTC>": <seats left>, ...}`, open slots only, earliest first.
#[tracing::instrument(skip_all, fields(scenario = %scenario))]
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
#[tracing::instrument(skip_all, fields(scenario = %scenario))]
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

/// What a booking asks for, checked against the schedule: the slot holding
/// `t`, bookable now. The seat itself is taken by the store's write.
#[allow(clippy::too_many_arguments)]
pub(super) async fn booking_for(
    state: &AppState,
    scenario: &Scenario,
    schedule: &Schedule,
    field: &str,
    t: DateTime<Utc>,
    zone: Tz,
    service_id: &str,
    base_url: &str,
) -> Result<Booking, AppError> {
    let now = state.shell.now();
    let Some(slot) = schedule.slot_at(t) else {
        return Err(unavailable(
            state,
            scenario,
            schedule,
            field,
            t,
            zone,
            "is not in an open slot",
        )
        .await);
    };
    let (earliest, latest) = schedule.bookable(now);
    if slot.start < earliest {
        return Err(unavailable(
            state,
            scenario,
            schedule,
            field,
            t,
            zone,
            "is too soon to book",
        )
        .await);
    }
    if slot.start > latest {
        return Err(unavailable(
            state,
            scenario,
            schedule,
            field,
            t,
            zone,
            "is beyond the booking horizon",
        )
        .await);
    }
    // The link goes out in e-mails: its base is the configured public URL
    // (or the listen address), never a request's Host header.
    let join_url = schedule.render_join_url(base_url, service_id);
    Ok(Booking {
        slot: slot.start,
        slot_end: slot.end,
        seats: slot.seats,
        sequence: 0,
        enter_queue_at: slot.start - schedule.enter_queue(),
        reminder_at: schedule.reminder().map(|r| slot.start - r),
        join_url,
        timezone: zone.name().to_owned(),
    })
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

/// The customer's zone for showing times: `_timezone`, else the schedule's.
pub(super) fn customer_zone(form: &GmsForm, schedule: &Schedule) -> Result<Tz, AppError> {
    match form.get("_timezone").map(str::trim) {
        None | Some("") => Ok(schedule.timezone),
        Some(text) => text.parse::<Tz>().map_err(|_| {
            AppError::field(
                "_timezone",
                format!("`{text}` is not an IANA time zone such as Europe/London"),
            )
        }),
    }
}

/// PUT /genesys/1/service/callback/{scenario}/{id} with `_new_desired_time`:
/// moves a SCHEDULED service to another time (and another slot: the old
/// seat is freed and the new one taken in the same write).
#[tracing::instrument(skip_all, fields(service_id = %id))]
pub async fn reschedule(
    State(state): State<Arc<AppState>>,
    Path((scenario, id)): Path<(String, String)>,
    form: GmsForm,
) -> Result<Json<Value>, AppError> {
    let scenario = state.shell.scenario(&scenario)?.clone();
    check_id("id", &id)?;
    let text = form.require("_new_desired_time")?.trim().to_owned();
    let now = state.shell.now();
    let desired = if text.eq_ignore_ascii_case("now") {
        now
    } else {
        parse_time(&text).ok_or_else(|| {
            AppError::field(
                "_new_desired_time",
                format!("`{text}` is not an ISO-8601 time such as 2026-11-23T14:00:00.000Z"),
            )
        })?
    };
    let record = state.shell.get(&id).await?;
    if record.scenario != scenario.name {
        return Err(AppError::NotFound(format!(
            "service `{id}` does not exist in scenario `{}`",
            scenario.name
        )));
    }
    // The zone the customer sees times in, for the answer and a refusal.
    let mut shown = None;
    let event = match &scenario.schedule {
        None => Event::Reschedule {
            desired_time: desired.max(now),
            booking: None,
        },
        Some(schedule) => {
            let zone = match form.get("_timezone") {
                Some(_) => customer_zone(&form, schedule)?,
                None => record
                    .booking
                    .as_ref()
                    .and_then(|b| b.timezone.parse::<Tz>().ok())
                    .unwrap_or(schedule.timezone),
            };
            shown = Some(zone);
            let base = state.link_base.clone();
            let booking = booking_for(
                &state,
                &scenario,
                schedule,
                "_new_desired_time",
                desired,
                zone,
                &id,
                &base,
            )
            .await?;
            let booking = Booking {
                // The link the customer already has stays valid.
                join_url: record
                    .booking
                    .as_ref()
                    .and_then(|b| b.join_url.clone())
                    .or(booking.join_url),
                ..booking
            };
            Event::Reschedule {
                desired_time: booking.slot,
                booking: Some(booking),
            }
        }
    };
    let record = match state.shell.transition(&id, &event).await {
        Ok(r) => r,
        Err(e) => {
            return Err(match &scenario.schedule {
                Some(schedule) => {
                    let zone = shown.unwrap_or(schedule.timezone);
                    refused_seat(&state, &scenario, schedule, "_new_desired_time", e, zone).await
                }
                None => e.into(),
            })
        }
    };
    Ok(Json(booking_answer(
        &record,
        json!({
            "_id": record.id,
            "_callback_state": record.state.gms_name(),
        }),
    )))
}

/// Adds the booking's fields to an answer.
pub(super) fn booking_answer(record: &engine::record::ServiceRecord, mut answer: Value) -> Value {
    answer["_desired_time"] = json!(utc_time(record.desired_time));
    if let Some(b) = &record.booking {
        let zone = b.timezone.parse::<Tz>().unwrap_or(Tz::UTC);
        answer["_slot_end"] = json!(utc_time(b.slot_end));
        answer["_local_time"] = json!(local_time(b.slot, zone));
        answer["_timezone"] = json!(zone.name());
        if let Some(url) = &b.join_url {
            answer["_join_url"] = json!(url);
        }
    }
    answer
}

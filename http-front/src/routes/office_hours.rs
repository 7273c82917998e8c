//! Office hours: GMS's Calendar Service API for a scenario's business
//! hours, and the refusal of an immediate callback while they are closed
//! (`_enable_reject_out_of_office_hours`).
//!
//! GMS answers `GET /genesys/1/service/{office-hours service}` with the
//! office hours per day of a window (`start`, `end`, `number-of-days`; with
//! none, the instant now): an empty list means closed. In callbackd the
//! business hours are a scenario's `[_schedule]`, so the scenario's name
//! stands in for the office-hours service's. What is open, when, is the
//! engine's (`Schedule::is_open`, `openings`, `next_opening`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Duration, NaiveTime, Utc};
use engine::scenario::Scenario;
use engine::schedule::{local_time, utc_time, Opening, Tz};
use serde_json::{json, Value};

use super::schedule::{count_param, time_param};
use crate::error::AppError;
use crate::extract::{Path, Query};
use crate::AppState;

/// Longest window one request may ask for, and how far ahead the next
/// opening is looked for (a schedule's horizon is at most this).
const MAX_DAYS: i64 = 366;

/// GET /genesys/1/service/{scenario}?start=&end=&number-of-days=
///
/// `{error: null, open, nextOpening, timezone, alwaysOpen, periods: [{start,
/// end, localStart, localEnd}]}`: the opening periods (whole, one per range
/// of each local day) that intersect `[start, end]`; `open` is at `start`.
#[tracing::instrument(level = "debug", skip_all, fields(scenario = %name))]
pub async fn calendar(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, AppError> {
    let scenario = state.shell.scenario(&name)?.clone();
    let now = state.shell.now();
    let start = time_param(&params, "start")?.unwrap_or(now);
    let end = match time_param(&params, "end")? {
        Some(end) if end < start => return Err(AppError::field("end", "must not be before start")),
        Some(end) if end - start > Duration::days(MAX_DAYS) => {
            return Err(AppError::field(
                "end",
                format!("must be at most {MAX_DAYS} days after start"),
            ))
        }
        Some(end) => end,
        // GMS: neither `end` nor `number-of-days` means the instant `start`.
        None => {
            start
                + Duration::days(count_param(&params, "number-of-days", 0..=MAX_DAYS)?.unwrap_or(0))
        }
    };
    Ok(Json(answer(&scenario, start, end)))
}

fn answer(scenario: &Scenario, start: DateTime<Utc>, end: DateTime<Utc>) -> Value {
    let Some(schedule) = &scenario.schedule else {
        // No business hours: open around the clock, listed by UTC day.
        let periods = utc_days(start, end);
        return json!({
            "error": Value::Null,
            "open": true,
            "nextOpening": Value::Null,
            "timezone": "UTC",
            "alwaysOpen": true,
            "periods": periods_json(&periods, Tz::UTC),
        });
    };
    let zone = schedule.timezone;
    let open = schedule.is_open(start);
    let next = if open {
        None
    } else {
        schedule.next_opening(start, Duration::days(MAX_DAYS))
    };
    json!({
        "error": Value::Null,
        "open": open,
        "nextOpening": next.map(utc_time),
        "timezone": zone.name(),
        "alwaysOpen": false,
        "periods": periods_json(&schedule.openings(start, end), zone),
    })
}

/// The UTC days that intersect `[start, end]`.
fn utc_days(start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<Opening> {
    let mut out = Vec::new();
    let mut day = start.date_naive().and_time(NaiveTime::MIN).and_utc();
    while day <= end {
        out.push(Opening {
            start: day,
            end: day + Duration::days(1),
        });
        day += Duration::days(1);
    }
    out
}

fn periods_json(periods: &[Opening], zone: Tz) -> Value {
    Value::Array(
        periods
            .iter()
            .map(|p| {
                json!({
                    "start": utc_time(p.start),
                    "end": utc_time(p.end),
                    "localStart": local_time(p.start, zone),
                    "localEnd": local_time(p.end, zone),
                })
            })
            .collect(),
    )
}

/// GMS's `_enable_reject_out_of_office_hours`: an immediate callback (no
/// `_desired_time`) in a scenario whose business hours are closed at `now`
/// is refused, saying when they next open. A desired time is left to the
/// booking's own rules.
pub fn refuse_when_closed(
    scenario: &Scenario,
    desired_time: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let (true, None, Some(schedule)) = (
        scenario.reject_out_of_office_hours,
        desired_time,
        &scenario.schedule,
    ) else {
        return Ok(());
    };
    if schedule.is_open(now) {
        return Ok(());
    }
    let next = schedule.next_opening(now, Duration::days(MAX_DAYS));
    let when = match next {
        Some(t) => format!(
            "it next opens at {} ({})",
            utc_time(t),
            local_time(t, schedule.timezone)
        ),
        None => format!("it does not open in the next {MAX_DAYS} days"),
    };
    Err(AppError::OutOfOfficeHours {
        message: format!(
            "_desired_time: the office is closed now and scenario `{}` takes callbacks for now only in office hours; {when}; ask for a _desired_time in office hours",
            scenario.name
        ),
        next_opening: next,
    })
}

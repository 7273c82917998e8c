//! Times as the server writes them on the wire, and the 5-minute slot grid
//! of the always-open schedules the booking tests use.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

/// `2026-11-23T14:00:00.000Z`, as the server writes UTC times.
pub fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// An ISO-8601 UTC time (`2026-11-21T10:00:00.000Z`) `ahead` of now, from the
/// engine's wall clock (`chrono::Utc::now()`).
pub fn iso_utc_in(ahead: Duration) -> String {
    use engine::clock::Clock;
    iso(runtime::clock::SystemClock.now() + ahead)
}

/// An RFC 3339 time, in UTC.
pub fn parse(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("`{text}` is not a time: {e}"))
        .with_timezone(&Utc)
}

/// A JSON string holding an RFC 3339 time, in UTC.
pub fn time_of(v: &Value) -> DateTime<Utc> {
    let text = v
        .as_str()
        .unwrap_or_else(|| panic!("expected a time, got {v}"));
    parse(text)
}

/// Five minutes, in milliseconds: the slot length of the test schedules.
const FIVE_MIN: i64 = 5 * 60 * 1000;

/// The first multiple of 5 minutes at or after `t`: a slot start of an
/// always-open UTC schedule.
pub fn ceil5(t: DateTime<Utc>) -> DateTime<Utc> {
    let ms = t.timestamp_millis();
    let up = (ms + FIVE_MIN - 1).div_euclid(FIVE_MIN) * FIVE_MIN;
    Utc.timestamp_millis_opt(up).unwrap()
}

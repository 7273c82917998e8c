//! Slots around real offset transitions, and the rules of the schedule
//! (capacity precedence, holidays, exceptions, buffers), data-driven.

use chrono::{DateTime, Utc};
use engine::schedule::{local_time, utc_time, Schedule, Slot};

/// A validated schedule from the body of a `[_schedule]` table.
fn schedule(body: &str) -> Schedule {
    let s: Schedule = toml::from_str(body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    s.validate().unwrap_or_else(|e| panic!("{e:?}\n{body}"));
    s
}

fn at(t: &str) -> DateTime<Utc> {
    t.parse()
        .unwrap_or_else(|e| panic!("`{t}` is not an instant: {e}"))
}

/// One slot as `UTC start | local start | seats`.
fn show(s: &Schedule, slot: &Slot) -> String {
    format!(
        "{} | {} | {}",
        utc_time(slot.start),
        local_time(slot.start, s.timezone),
        slot.seats
    )
}

/// The slots of `[from, to)` are exactly `expected` (`UTC | local | seats`),
/// in that order, each lasting `slot`.
fn check(s: &Schedule, from: &str, to: &str, expected: &[&str]) {
    let slots = s.slots(at(from), at(to));
    let got: Vec<String> = slots.iter().map(|slot| show(s, slot)).collect();
    assert_eq!(
        got,
        expected,
        "\n{} in [{from}, {to})\ngot:\n{}\n",
        s.timezone,
        got.join("\n")
    );
    for slot in &slots {
        assert_eq!(slot.end - slot.start, s.slot_len());
        assert_eq!(s.slot_at(slot.start), Some(*slot), "{}", show(s, slot));
    }
}

// ---------------------------------------------------------------- America/New_York

#[test]
fn new_york_spring_forward() {
    // 2026-03-08 02:00 EST -> 03:00 EDT: 02:00-02:59 does not exist.
    let s = schedule(
        r#"
        timezone = "America/New_York"
        slot = "30m"
        exceptions = { "2026-03-08" = ["00:00-04:00"] }
        "#,
    );
    check(
        &s,
        "2026-03-07T00:00:00Z",
        "2026-03-10T00:00:00Z",
        &[
            "2026-03-08T05:00:00.000Z | 2026-03-08T00:00:00.000-05:00 | 1",
            "2026-03-08T05:30:00.000Z | 2026-03-08T00:30:00.000-05:00 | 1",
            "2026-03-08T06:00:00.000Z | 2026-03-08T01:00:00.000-05:00 | 1",
            "2026-03-08T06:30:00.000Z | 2026-03-08T01:30:00.000-05:00 | 1",
            // 02:00 and 02:30 fall in the gap: skipped.
            "2026-03-08T07:00:00.000Z | 2026-03-08T03:00:00.000-04:00 | 1",
            "2026-03-08T07:30:00.000Z | 2026-03-08T03:30:00.000-04:00 | 1",
        ],
    );
    // A 45-minute grid: 01:30 EST runs over the gap and ends at 03:15 EDT;
    // 02:15 is skipped; 03:45 would end after 04:00.
    let s = schedule(
        r#"
        timezone = "America/New_York"
        slot = "45m"
        exceptions = { "2026-03-08" = ["00:00-04:00"] }
        "#,
    );
    check(
        &s,
        "2026-03-08T00:00:00Z",
        "2026-03-09T00:00:00Z",
        &[
            "2026-03-08T05:00:00.000Z | 2026-03-08T00:00:00.000-05:00 | 1",
            "2026-03-08T05:45:00.000Z | 2026-03-08T00:45:00.000-05:00 | 1",
            "2026-03-08T06:30:00.000Z | 2026-03-08T01:30:00.000-05:00 | 1",
            "2026-03-08T07:00:00.000Z | 2026-03-08T03:00:00.000-04:00 | 1",
        ],
    );
    // before_close across the gap: a 30-minute slot needs 90 open minutes.
    let s = schedule(
        r#"
        timezone = "America/New_York"
        slot = "30m"
        exceptions = { "2026-03-08" = ["00:00-04:00"] }
        buffers = { before_close = "1h" }
        "#,
    );
    check(
        &s,
        "2026-03-08T00:00:00Z",
        "2026-03-09T00:00:00Z",
        &[
            "2026-03-08T05:00:00.000Z | 2026-03-08T00:00:00.000-05:00 | 1",
            "2026-03-08T05:30:00.000Z | 2026-03-08T00:30:00.000-05:00 | 1",
            "2026-03-08T06:00:00.000Z | 2026-03-08T01:00:00.000-05:00 | 1",
            "2026-03-08T06:30:00.000Z | 2026-03-08T01:30:00.000-05:00 | 1",
        ],
    );
}

#[test]
fn new_york_ordinary_hours_around_spring_forward() {
    let s = schedule(
        r#"
        timezone = "America/New_York"
        slot = "120m"
        hours = { sat = ["09:00-17:00"], sun = ["09:00-17:00"], mon = ["09:00-17:00"] }
        "#,
    );
    check(
        &s,
        "2026-03-07T00:00:00Z",
        "2026-03-10T00:00:00Z",
        &[
            "2026-03-07T14:00:00.000Z | 2026-03-07T09:00:00.000-05:00 | 1",
            "2026-03-07T16:00:00.000Z | 2026-03-07T11:00:00.000-05:00 | 1",
            "2026-03-07T18:00:00.000Z | 2026-03-07T13:00:00.000-05:00 | 1",
            "2026-03-07T20:00:00.000Z | 2026-03-07T15:00:00.000-05:00 | 1",
            "2026-03-08T13:00:00.000Z | 2026-03-08T09:00:00.000-04:00 | 1",
            "2026-03-08T15:00:00.000Z | 2026-03-08T11:00:00.000-04:00 | 1",
            "2026-03-08T17:00:00.000Z | 2026-03-08T13:00:00.000-04:00 | 1",
            "2026-03-08T19:00:00.000Z | 2026-03-08T15:00:00.000-04:00 | 1",
            "2026-03-09T13:00:00.000Z | 2026-03-09T09:00:00.000-04:00 | 1",
            "2026-03-09T15:00:00.000Z | 2026-03-09T11:00:00.000-04:00 | 1",
            "2026-03-09T17:00:00.000Z | 2026-03-09T13:00:00.000-04:00 | 1",
            "2026-03-09T19:00:00.000Z | 2026-03-09T15:00:00.000-04:00 | 1",
        ],
    );
}

#[test]
fn new_york_fall_back() {
    // 2026-11-01 02:00 EDT -> 01:00 EST: 01:00-01:59 happens twice.
    let s = schedule(
        r#"
        timezone = "America/New_York"
        slot = "60m"
        exceptions = { "2026-11-01" = ["00:00-04:00"] }
        "#,
    );
    check(
        &s,
        "2026-10-31T00:00:00Z",
        "2026-11-03T00:00:00Z",
        &[
            "2026-11-01T04:00:00.000Z | 2026-11-01T00:00:00.000-04:00 | 1",
            "2026-11-01T05:00:00.000Z | 2026-11-01T01:00:00.000-04:00 | 1",
            "2026-11-01T06:00:00.000Z | 2026-11-01T01:00:00.000-05:00 | 1",
            "2026-11-01T07:00:00.000Z | 2026-11-01T02:00:00.000-05:00 | 1",
            "2026-11-01T08:00:00.000Z | 2026-11-01T03:00:00.000-05:00 | 1",
        ],
    );
    let s = schedule(
        r#"
        timezone = "America/New_York"
        slot = "30m"
        exceptions = { "2026-11-01" = ["00:00-04:00"] }
        "#,
    );
    let expected = [
        "2026-11-01T04:00:00.000Z | 2026-11-01T00:00:00.000-04:00 | 1",
        "2026-11-01T04:30:00.000Z | 2026-11-01T00:30:00.000-04:00 | 1",
        "2026-11-01T05:00:00.000Z | 2026-11-01T01:00:00.000-04:00 | 1",
        "2026-11-01T05:30:00.000Z | 2026-11-01T01:30:00.000-04:00 | 1",
        "2026-11-01T06:00:00.000Z | 2026-11-01T01:00:00.000-05:00 | 1",
        "2026-11-01T06:30:00.000Z | 2026-11-01T01:30:00.000-05:00 | 1",
        "2026-11-01T07:00:00.000Z | 2026-11-01T02:00:00.000-05:00 | 1",
        "2026-11-01T07:30:00.000Z | 2026-11-01T02:30:00.000-05:00 | 1",
        "2026-11-01T08:00:00.000Z | 2026-11-01T03:00:00.000-05:00 | 1",
        "2026-11-01T08:30:00.000Z | 2026-11-01T03:30:00.000-05:00 | 1",
    ];
    check(
        &s,
        "2026-11-01T00:00:00Z",
        "2026-11-02T00:00:00Z",
        &expected,
    );
    // Each ambiguous wall time exactly once per instant.
    let slots = s.slots(at("2026-11-01T00:00:00Z"), at("2026-11-02T00:00:00Z"));
    for local in ["T01:00:00.000", "T01:30:00.000"] {
        let n = slots
            .iter()
            .filter(|x| local_time(x.start, s.timezone).contains(local))
            .count();
        assert_eq!(n, 2, "{local}");
    }
    // A window that cuts the repeated hour keeps only what starts inside it.
    check(
        &s,
        "2026-11-01T05:30:00Z",
        "2026-11-01T06:30:00Z",
        &[
            "2026-11-01T05:30:00.000Z | 2026-11-01T01:30:00.000-04:00 | 1",
            "2026-11-01T06:00:00.000Z | 2026-11-01T01:00:00.000-05:00 | 1",
        ],
    );
    // before_close across the repeated hour: hours until 02:00 local (07:00Z).
    let s = schedule(
        r#"
        timezone = "America/New_York"
        slot = "30m"
        exceptions = { "2026-11-01" = ["00:00-02:00"] }
        buffers = { before_close = "1h" }
        "#,
    );
    check(
        &s,
        "2026-11-01T00:00:00Z",
        "2026-11-02T00:00:00Z",
        &[
            "2026-11-01T04:00:00.000Z | 2026-11-01T00:00:00.000-04:00 | 1",
            "2026-11-01T04:30:00.000Z | 2026-11-01T00:30:00.000-04:00 | 1",
            "2026-11-01T05:00:00.000Z | 2026-11-01T01:00:00.000-04:00 | 1",
            "2026-11-01T05:30:00.000Z | 2026-11-01T01:30:00.000-04:00 | 1",
        ],
    );
}

#[test]
fn new_york_ordinary_hours_around_fall_back() {
    // 09:00 local is 13:00Z before the fall back and 14:00Z after it.
    let s = schedule(
        r#"
        timezone = "America/New_York"
        slot = "120m"
        hours = { sat = ["09:00-17:00"], sun = ["09:00-17:00"], mon = ["09:00-17:00"] }
        "#,
    );
    check(
        &s,
        "2026-10-31T00:00:00Z",
        "2026-11-03T00:00:00Z",
        &[
            "2026-10-31T13:00:00.000Z | 2026-10-31T09:00:00.000-04:00 | 1",
            "2026-10-31T15:00:00.000Z | 2026-10-31T11:00:00.000-04:00 | 1",
            "2026-10-31T17:00:00.000Z | 2026-10-31T13:00:00.000-04:00 | 1",
            "2026-10-31T19:00:00.000Z | 2026-10-31T15:00:00.000-04:00 | 1",
            "2026-11-01T14:00:00.000Z | 2026-11-01T09:00:00.000-05:00 | 1",
            "2026-11-01T16:00:00.000Z | 2026-11-01T11:00:00.000-05:00 | 1",
            "2026-11-01T18:00:00.000Z | 2026-11-01T13:00:00.000-05:00 | 1",
            "2026-11-01T20:00:00.000Z | 2026-11-01T15:00:00.000-05:00 | 1",
            "2026-11-02T14:00:00.000Z | 2026-11-02T09:00:00.000-05:00 | 1",
            "2026-11-02T16:00:00.000Z | 2026-11-02T11:00:00.000-05:00 | 1",
            "2026-11-02T18:00:00.000Z | 2026-11-02T13:00:00.000-05:00 | 1",
            "2026-11-02T20:00:00.000Z | 2026-11-02T15:00:00.000-05:00 | 1",
        ],
    );
}

// ---------------------------------------------------------------- Europe/London

#[test]
fn london_spring_forward() {
    // 2026-03-29 01:00 GMT -> 02:00 BST.
    let s = schedule(
        r#"
        timezone = "Europe/London"
        slot = "60m"
        exceptions = { "2026-03-29" = ["00:00-04:00"] }
        "#,
    );
    check(
        &s,
        "2026-03-28T00:00:00Z",
        "2026-03-31T00:00:00Z",
        &[
            "2026-03-29T00:00:00.000Z | 2026-03-29T00:00:00.000+00:00 | 1",
            "2026-03-29T01:00:00.000Z | 2026-03-29T02:00:00.000+01:00 | 1",
            "2026-03-29T02:00:00.000Z | 2026-03-29T03:00:00.000+01:00 | 1",
        ],
    );
    let s = schedule(
        r#"
        timezone = "Europe/London"
        slot = "120m"
        hours = { sat = ["09:00-17:00"], sun = ["09:00-17:00"], mon = ["09:00-11:00"] }
        "#,
    );
    check(
        &s,
        "2026-03-28T00:00:00Z",
        "2026-03-31T00:00:00Z",
        &[
            "2026-03-28T09:00:00.000Z | 2026-03-28T09:00:00.000+00:00 | 1",
            "2026-03-28T11:00:00.000Z | 2026-03-28T11:00:00.000+00:00 | 1",
            "2026-03-28T13:00:00.000Z | 2026-03-28T13:00:00.000+00:00 | 1",
            "2026-03-28T15:00:00.000Z | 2026-03-28T15:00:00.000+00:00 | 1",
            "2026-03-29T08:00:00.000Z | 2026-03-29T09:00:00.000+01:00 | 1",
            "2026-03-29T10:00:00.000Z | 2026-03-29T11:00:00.000+01:00 | 1",
            "2026-03-29T12:00:00.000Z | 2026-03-29T13:00:00.000+01:00 | 1",
            "2026-03-29T14:00:00.000Z | 2026-03-29T15:00:00.000+01:00 | 1",
            "2026-03-30T08:00:00.000Z | 2026-03-30T09:00:00.000+01:00 | 1",
        ],
    );
}

#[test]
fn london_fall_back() {
    // 2026-10-25 02:00 BST -> 01:00 GMT; local midnight is 23:00Z the day before.
    let s = schedule(
        r#"
        timezone = "Europe/London"
        slot = "60m"
        exceptions = { "2026-10-25" = ["00:00-04:00"] }
        "#,
    );
    check(
        &s,
        "2026-10-24T00:00:00Z",
        "2026-10-27T00:00:00Z",
        &[
            "2026-10-24T23:00:00.000Z | 2026-10-25T00:00:00.000+01:00 | 1",
            "2026-10-25T00:00:00.000Z | 2026-10-25T01:00:00.000+01:00 | 1",
            "2026-10-25T01:00:00.000Z | 2026-10-25T01:00:00.000+00:00 | 1",
            "2026-10-25T02:00:00.000Z | 2026-10-25T02:00:00.000+00:00 | 1",
            "2026-10-25T03:00:00.000Z | 2026-10-25T03:00:00.000+00:00 | 1",
        ],
    );
    let s = schedule(
        r#"
        timezone = "Europe/London"
        slot = "120m"
        hours = { sat = ["09:00-11:00"], sun = ["09:00-13:00"], mon = ["09:00-11:00"] }
        "#,
    );
    check(
        &s,
        "2026-10-24T00:00:00Z",
        "2026-10-27T00:00:00Z",
        &[
            "2026-10-24T08:00:00.000Z | 2026-10-24T09:00:00.000+01:00 | 1",
            "2026-10-25T09:00:00.000Z | 2026-10-25T09:00:00.000+00:00 | 1",
            "2026-10-25T11:00:00.000Z | 2026-10-25T11:00:00.000+00:00 | 1",
            "2026-10-26T09:00:00.000Z | 2026-10-26T09:00:00.000+00:00 | 1",
        ],
    );
}

// ---------------------------------------------------------------- Asia/Kolkata

#[test]
fn kolkata_half_hour_offset_without_dst() {
    let s = schedule(
        r#"
        timezone = "Asia/Kolkata"
        slot = "120m"
        hours = { mon = ["09:00-17:00"], tue = ["00:00-02:00"] }
        "#,
    );
    // 2026-03-09 and 2026-11-02 are Mondays, next to the dates other zones change.
    for (from, to, day) in [
        ("2026-03-08T00:00:00Z", "2026-03-09T18:00:00Z", "2026-03-09"),
        ("2026-11-01T00:00:00Z", "2026-11-02T18:00:00Z", "2026-11-02"),
    ] {
        let e = |utc: &str, local: &str| format!("{day}T{utc}.000Z | {day}T{local}.000+05:30 | 1");
        check(
            &s,
            from,
            to,
            &[
                &e("03:30:00", "09:00:00"),
                &e("05:30:00", "11:00:00"),
                &e("07:30:00", "13:00:00"),
                &e("09:30:00", "15:00:00"),
            ],
        );
    }
    // Tuesday 00:00 local is still Monday in UTC.
    check(
        &s,
        "2026-03-09T18:00:00Z",
        "2026-03-10T00:00:00Z",
        &["2026-03-09T18:30:00.000Z | 2026-03-10T00:00:00.000+05:30 | 1"],
    );
}

// ---------------------------------------------------------------- Australia/Lord_Howe

#[test]
fn lord_howe_half_hour_fall_back() {
    // 2026-04-05 02:00 (+11:00) -> 01:30 (+10:30): 01:30-01:59 happens twice.
    let s = schedule(
        r#"
        timezone = "Australia/Lord_Howe"
        slot = "30m"
        exceptions = { "2026-04-05" = ["00:00-04:00"] }
        "#,
    );
    check(
        &s,
        "2026-04-03T00:00:00Z",
        "2026-04-06T00:00:00Z",
        &[
            "2026-04-04T13:00:00.000Z | 2026-04-05T00:00:00.000+11:00 | 1",
            "2026-04-04T13:30:00.000Z | 2026-04-05T00:30:00.000+11:00 | 1",
            "2026-04-04T14:00:00.000Z | 2026-04-05T01:00:00.000+11:00 | 1",
            "2026-04-04T14:30:00.000Z | 2026-04-05T01:30:00.000+11:00 | 1",
            "2026-04-04T15:00:00.000Z | 2026-04-05T01:30:00.000+10:30 | 1",
            "2026-04-04T15:30:00.000Z | 2026-04-05T02:00:00.000+10:30 | 1",
            "2026-04-04T16:00:00.000Z | 2026-04-05T02:30:00.000+10:30 | 1",
            "2026-04-04T16:30:00.000Z | 2026-04-05T03:00:00.000+10:30 | 1",
            "2026-04-04T17:00:00.000Z | 2026-04-05T03:30:00.000+10:30 | 1",
        ],
    );
    let s = schedule(
        r#"
        timezone = "Australia/Lord_Howe"
        slot = "120m"
        hours = { sat = ["09:00-11:00"], sun = ["09:00-11:00"], mon = ["09:00-11:00"] }
        "#,
    );
    check(
        &s,
        "2026-04-03T00:00:00Z",
        "2026-04-07T00:00:00Z",
        &[
            "2026-04-03T22:00:00.000Z | 2026-04-04T09:00:00.000+11:00 | 1",
            "2026-04-04T22:30:00.000Z | 2026-04-05T09:00:00.000+10:30 | 1",
            "2026-04-05T22:30:00.000Z | 2026-04-06T09:00:00.000+10:30 | 1",
        ],
    );
}

#[test]
fn lord_howe_half_hour_spring_forward() {
    // 2026-10-04 02:00 (+10:30) -> 02:30 (+11:00): 02:00-02:29 does not exist.
    let s = schedule(
        r#"
        timezone = "Australia/Lord_Howe"
        slot = "30m"
        exceptions = { "2026-10-04" = ["00:00-04:00"] }
        "#,
    );
    check(
        &s,
        "2026-10-02T00:00:00Z",
        "2026-10-05T00:00:00Z",
        &[
            "2026-10-03T13:30:00.000Z | 2026-10-04T00:00:00.000+10:30 | 1",
            "2026-10-03T14:00:00.000Z | 2026-10-04T00:30:00.000+10:30 | 1",
            "2026-10-03T14:30:00.000Z | 2026-10-04T01:00:00.000+10:30 | 1",
            "2026-10-03T15:00:00.000Z | 2026-10-04T01:30:00.000+10:30 | 1",
            "2026-10-03T15:30:00.000Z | 2026-10-04T02:30:00.000+11:00 | 1",
            "2026-10-03T16:00:00.000Z | 2026-10-04T03:00:00.000+11:00 | 1",
            "2026-10-03T16:30:00.000Z | 2026-10-04T03:30:00.000+11:00 | 1",
        ],
    );
    let s = schedule(
        r#"
        timezone = "Australia/Lord_Howe"
        slot = "120m"
        hours = { sat = ["09:00-11:00"], sun = ["09:00-11:00"], mon = ["09:00-11:00"] }
        "#,
    );
    check(
        &s,
        "2026-10-02T00:00:00Z",
        "2026-10-06T00:00:00Z",
        &[
            "2026-10-02T22:30:00.000Z | 2026-10-03T09:00:00.000+10:30 | 1",
            "2026-10-03T22:00:00.000Z | 2026-10-04T09:00:00.000+11:00 | 1",
            "2026-10-04T22:00:00.000Z | 2026-10-05T09:00:00.000+11:00 | 1",
        ],
    );
    // The gap holds no slot.
    assert_eq!(s.slot_at(at("2026-10-03T15:45:00Z")), None);
}

// ---------------------------------------------------------------- slot_at, bookable, nearest

#[test]
fn slot_at_finds_the_holding_slot() {
    let s = schedule(
        r#"
        timezone = "America/New_York"
        slot = "30m"
        hours = { mon = ["09:00-11:00"] }
        holidays = ["2026-11-30"]
        buffers = { between_slots = "15m" }
        capacity = { mon = { "10" = 0 } }
        "#,
    );
    // Monday 2026-11-23: 09:00, 09:45 (10:30 has 0 seats), all EST (-05:00).
    let slot = |start: &str, end: &str| {
        Some(Slot {
            start: at(start),
            end: at(end),
            seats: 1,
        })
    };
    let first = slot("2026-11-23T14:00:00Z", "2026-11-23T14:30:00Z");
    let second = slot("2026-11-23T14:45:00Z", "2026-11-23T15:15:00Z");
    for (t, expected) in [
        ("2026-11-23T13:59:59Z", None),
        ("2026-11-23T14:00:00Z", first),
        ("2026-11-23T14:29:59.999Z", first),
        ("2026-11-23T14:30:00Z", None), // the gap between slots
        ("2026-11-23T14:45:00Z", second),
        ("2026-11-23T15:14:00Z", second),
        ("2026-11-23T15:15:00Z", None),
        ("2026-11-23T15:30:00Z", None), // 10:30 has 0 seats
        ("2026-11-30T14:00:00Z", None), // holiday
        ("2026-11-24T14:00:00Z", None), // Tuesday is closed
    ] {
        assert_eq!(s.slot_at(at(t)), expected, "{t}");
    }
    assert_eq!(
        local_time(at("2026-11-23T14:00:00Z"), s.timezone),
        "2026-11-23T09:00:00.000-05:00"
    );
    assert_eq!(
        utc_time(at("2026-11-23T14:00:00.25Z")),
        "2026-11-23T14:00:00.250Z"
    );
    assert_eq!(
        local_time(at("2026-11-23T14:00:00Z"), "UTC".parse().unwrap()),
        "2026-11-23T14:00:00.000+00:00"
    );
}

#[test]
fn bookable_and_nearest() {
    let s = schedule(
        r#"
        timezone = "Europe/London"
        slot = "60m"
        min_notice = "1h"
        horizon = "2d"
        hours = { mon = ["09:00-17:00"], tue = ["09:00-17:00"], wed = ["09:00-17:00"], thu = ["09:00-17:00"] }
        "#,
    );
    let now = at("2026-11-23T09:30:00Z"); // Monday, GMT
    assert_eq!(
        s.bookable(now),
        (at("2026-11-23T10:30:00Z"), at("2026-11-25T09:30:00Z"))
    );
    let starts = |v: Vec<Slot>| v.into_iter().map(|x| utc_time(x.start)).collect::<Vec<_>>();
    // Nearest to 10:00 Monday: 10:00 is before now + 1h; 11:00, 12:00 and 13:00 are next.
    assert_eq!(
        starts(s.nearest(at("2026-11-23T10:00:00Z"), now, 3, |_| true)),
        [
            "2026-11-23T11:00:00.000Z",
            "2026-11-23T12:00:00.000Z",
            "2026-11-23T13:00:00.000Z"
        ]
    );
    // Around 13:20: 13:00 (20 min), then 14:00 (40 min), then 12:00 (80 min).
    assert_eq!(
        starts(s.nearest(at("2026-11-23T13:20:00Z"), now, 3, |_| true)),
        [
            "2026-11-23T12:00:00.000Z",
            "2026-11-23T13:00:00.000Z",
            "2026-11-23T14:00:00.000Z"
        ]
    );
    // Full slots are passed over; a tie takes the earlier.
    let full = at("2026-11-23T13:00:00Z");
    assert_eq!(
        starts(s.nearest(at("2026-11-23T13:30:00Z"), now, 2, |x| x.start != full)),
        ["2026-11-23T12:00:00.000Z", "2026-11-23T14:00:00.000Z"]
    );
    // The horizon itself is bookable: Wednesday 09:30 is now + 2d; 09:00 is
    // inside the window, 10:00 is not.
    assert_eq!(
        starts(s.nearest(at("2026-11-26T12:00:00Z"), now, 2, |_| true)),
        ["2026-11-24T16:00:00.000Z", "2026-11-25T09:00:00.000Z"]
    );
    // Far outside the window: still the nearest bookable ones.
    assert_eq!(
        starts(s.nearest(at("2027-06-01T00:00:00Z"), now, 1, |_| true)),
        ["2026-11-25T09:00:00.000Z"]
    );
    assert!(s.nearest(now, now, 0, |_| true).is_empty());
    assert!(s.nearest(now, now, 5, |_| false).is_empty());
    // Everything in the window, when asked for more than there is.
    assert_eq!(s.nearest(now, now, 1000, |_| true).len(), 6 + 8 + 1);
}

// ---------------------------------------------------------------- capacity, holidays, exceptions, buffers

#[test]
fn capacity_precedence() {
    let s = schedule(
        r#"
        timezone = "UTC"
        slot = "60m"
        [hours]
        mon = ["09:00-17:00"]
        tue = ["09:00-17:00"]
        wed = ["09:00-12:00"]
        thu = ["09:00-12:00"]
        [capacity]
        default = 2
        mon = { "09-12" = 4, "16" = 0 }
        tue = 3
        [capacity.dates]
        "2026-01-06" = { "10" = 7 }
        "2026-01-07" = 5
        "2026-01-12" = { "09" = 1, "13-15" = 0 }
        "#,
    );
    let seats = |t: &str| s.slot_at(at(t)).map(|x| x.seats);
    for (t, expected) in [
        // Monday 2026-01-05: weekday table hit, miss -> default, 0 -> closed.
        ("2026-01-05T09:00:00Z", Some(4)),
        ("2026-01-05T11:00:00Z", Some(4)),
        ("2026-01-05T12:00:00Z", Some(2)),
        ("2026-01-05T15:00:00Z", Some(2)),
        ("2026-01-05T16:00:00Z", None),
        // Tuesday 2026-01-06: date table hit; miss -> weekday number.
        ("2026-01-06T10:00:00Z", Some(7)),
        ("2026-01-06T09:00:00Z", Some(3)),
        ("2026-01-06T16:00:00Z", Some(3)),
        // Wednesday 2026-01-07: date number.
        ("2026-01-07T09:00:00Z", Some(5)),
        // Thursday 2026-01-08: default.
        ("2026-01-08T11:00:00Z", Some(2)),
        // Monday 2026-01-12: date hit; 0 in the date table closes even
        // though the weekday/default would give seats; miss -> weekday table
        // hit; miss both -> default.
        ("2026-01-12T09:00:00Z", Some(1)),
        ("2026-01-12T13:00:00Z", None),
        ("2026-01-12T14:00:00Z", None),
        ("2026-01-12T10:00:00Z", Some(4)),
        ("2026-01-12T15:00:00Z", Some(2)),
        ("2026-01-12T16:00:00Z", None),
    ] {
        assert_eq!(seats(t), expected, "{t}");
    }
    assert_eq!(s.capacity.seats("2026-01-12".parse().unwrap(), 10), 4);
    // The seats of a slot are those of its local start hour.
    let s = schedule(
        r#"
        timezone = "Asia/Kolkata"
        slot = "90m"
        hours = { mon = ["09:30-12:30"] }
        capacity = { mon = { "09" = 3, "11" = 6 } }
        "#,
    );
    check(
        &s,
        "2026-01-05T00:00:00Z",
        "2026-01-06T00:00:00Z",
        &[
            "2026-01-05T04:00:00.000Z | 2026-01-05T09:30:00.000+05:30 | 3",
            "2026-01-05T05:30:00.000Z | 2026-01-05T11:00:00.000+05:30 | 6",
        ],
    );
}

#[test]
fn holidays_and_exceptions() {
    let s = schedule(
        r#"
        timezone = "Europe/London"
        slot = "60m"
        holidays = ["2026-12-25", "2026-12-26"]
        hours = { thu = ["09:00-11:00"], fri = ["09:00-11:00"], sat = ["09:00-11:00"] }
        [exceptions]
        "2026-12-24" = ["15:00-16:00"]
        "2026-12-26" = ["09:00-17:00"] # a holiday wins over an exception
        "2026-12-27" = ["10:00-11:00", "11:00-12:00"] # Sunday, normally closed; merged
        "2027-01-01" = []
        "#,
    );
    check(
        &s,
        "2026-12-24T00:00:00Z",
        "2027-01-03T00:00:00Z",
        &[
            "2026-12-24T15:00:00.000Z | 2026-12-24T15:00:00.000+00:00 | 1",
            "2026-12-27T10:00:00.000Z | 2026-12-27T10:00:00.000+00:00 | 1",
            "2026-12-27T11:00:00.000Z | 2026-12-27T11:00:00.000+00:00 | 1",
            "2026-12-31T09:00:00.000Z | 2026-12-31T09:00:00.000+00:00 | 1",
            "2026-12-31T10:00:00.000Z | 2026-12-31T10:00:00.000+00:00 | 1",
            "2027-01-02T09:00:00.000Z | 2027-01-02T09:00:00.000+00:00 | 1",
            "2027-01-02T10:00:00.000Z | 2027-01-02T10:00:00.000+00:00 | 1",
        ],
    );
}

#[test]
fn between_slots_and_before_close() {
    let base = r#"
        timezone = "UTC"
        slot = "30m"
        hours = { mon = ["09:00-11:00", "13:00-13:45"] }
    "#;
    let day = ("2026-01-05T00:00:00Z", "2026-01-06T00:00:00Z");
    let e = |hm: &str| format!("2026-01-05T{hm}:00.000Z | 2026-01-05T{hm}:00.000+00:00 | 1");
    check(
        &schedule(&format!("{base}buffers = {{ between_slots = \"15m\" }}")),
        day.0,
        day.1,
        &[&e("09:00"), &e("09:45"), &e("10:30"), &e("13:00")],
    );
    check(
        &schedule(&format!(
            "{base}buffers = {{ between_slots = \"15m\", before_close = \"15m\" }}"
        )),
        day.0,
        day.1,
        &[&e("09:00"), &e("09:45"), &e("13:00")],
    );
    check(
        &schedule(&format!("{base}buffers = {{ before_close = \"16m\" }}")),
        day.0,
        day.1,
        &[&e("09:00"), &e("09:30"), &e("10:00")],
    );
    // A slot never crosses local midnight, even into an open next day.
    check(
        &schedule(
            r#"
            timezone = "UTC"
            slot = "60m"
            hours = { mon = ["22:30-24:00"], tue = ["00:00-01:00"] }
            "#,
        ),
        day.0,
        "2026-01-07T00:00:00Z",
        &[
            &e("22:30"),
            "2026-01-06T00:00:00.000Z | 2026-01-06T00:00:00.000+00:00 | 1",
        ],
    );
}

#[test]
fn fourteen_days_of_five_minute_slots() {
    let s = schedule(
        r#"
        timezone = "Europe/London"
        slot = "5m"
        hours = { mon = ["00:00-24:00"], tue = ["00:00-24:00"], wed = ["00:00-24:00"], thu = ["00:00-24:00"], fri = ["00:00-24:00"], sat = ["00:00-24:00"], sun = ["00:00-24:00"] }
        "#,
    );
    // Two weeks around the fall back: one hour more.
    let slots = s.slots(at("2026-10-18T23:00:00Z"), at("2026-11-02T00:00:00Z"));
    assert_eq!(slots.len(), 14 * 288 + 12);
    assert!(slots
        .windows(2)
        .all(|w| w[1].start - w[0].start == s.slot_len()));
}

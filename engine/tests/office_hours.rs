//! Office hours, data-driven: whether a schedule is open at an instant
//! (`Schedule::is_open`), its opening periods per local day
//! (`Schedule::openings`) and the next opening (`Schedule::next_opening`),
//! across holidays, exceptions and both DST transitions.

use chrono::{DateTime, Duration, Utc};
use engine::schedule::{Opening, Schedule};

fn at(t: &str) -> DateTime<Utc> {
    t.parse()
        .unwrap_or_else(|e| panic!("`{t}` is not an instant: {e}"))
}

fn schedule(body: &str) -> Schedule {
    let s: Schedule = toml::from_str(body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    s.validate().unwrap_or_else(|e| panic!("{e:?}\n{body}"));
    s
}

/// New York, weekdays 09:00-12:00 and 13:00-17:00, Saturday 10:00-14:00;
/// closed 2026-12-25; 2026-12-24 open 09:00-12:00 only; 2026-03-08 (the
/// spring-forward Sunday) and 2026-11-01 (fall-back) open 00:00-04:00.
fn new_york() -> Schedule {
    schedule(
        r#"
        timezone = "America/New_York"
        slot = "30m"
        holidays = ["2026-12-25"]
        [hours]
        mon = ["09:00-12:00", "13:00-17:00"]
        tue = ["09:00-12:00", "13:00-17:00"]
        wed = ["09:00-12:00", "13:00-17:00"]
        thu = ["09:00-12:00", "13:00-17:00"]
        fri = ["09:00-12:00", "13:00-17:00"]
        sat = ["10:00-14:00"]
        [exceptions]
        "2026-12-24" = ["09:00-12:00"]
        "2026-03-08" = ["00:00-04:00"]
        "2026-11-01" = ["00:00-04:00"]
        "#,
    )
}

fn check_open(s: &Schedule, t: &str, expected: bool) {
    assert_eq!(s.is_open(at(t)), expected, "is_open({t})");
}

#[test]
fn is_open_table() {
    let s = new_york();
    for (t, open) in [
        // Monday 2026-11-23 (EST, UTC-5): 09:00 local is 14:00Z.
        ("2026-11-23T13:59:59Z", false),
        ("2026-11-23T14:00:00Z", true),
        ("2026-11-23T16:59:59.999Z", true),
        ("2026-11-23T17:00:00Z", false), // 12:00: lunch, the end is not included
        ("2026-11-23T18:00:00Z", true),
        ("2026-11-23T22:00:00Z", false), // 17:00
        // Saturday and Sunday.
        ("2026-11-28T15:00:00Z", true),
        ("2026-11-28T19:00:00Z", false), // 14:00
        ("2026-11-29T15:00:00Z", false),
        // The exception and the holiday.
        ("2026-12-24T16:59:00Z", true),
        ("2026-12-24T18:00:00Z", false), // a Thursday afternoon, but not this one
        ("2026-12-25T15:00:00Z", false), // a Friday morning, but a holiday
        // Summer time (EDT, UTC-4): 09:00 local is 13:00Z.
        ("2026-07-06T13:00:00Z", true),
        ("2026-07-06T12:59:59Z", false),
        // Spring forward: 00:00-04:00 local is 05:00Z-07:00Z (02:00-03:00 never exists).
        ("2026-03-08T04:59:59Z", false),
        ("2026-03-08T05:00:00Z", true),
        ("2026-03-08T06:59:59Z", true), // 01:59:59 EST
        ("2026-03-08T07:00:00Z", true), // 03:00 EDT
        ("2026-03-08T07:59:59Z", true),
        ("2026-03-08T08:00:00Z", false), // 04:00 EDT
        // Fall back: 00:00-04:00 local is 04:00Z-09:00Z (01:00-02:00 twice).
        ("2026-11-01T03:59:59Z", false),
        ("2026-11-01T04:00:00Z", true),
        ("2026-11-01T06:30:00Z", true), // 01:30 EST, the second pass
        ("2026-11-01T08:59:59Z", true),
        ("2026-11-01T09:00:00Z", false),
    ] {
        check_open(&s, t, open);
    }
}

/// The openings intersecting `[from, to]`, as (start, end) text.
fn check_openings(s: &Schedule, from: &str, to: &str, expected: &[(&str, &str)]) {
    let got: Vec<Opening> = s.openings(at(from), at(to));
    let want: Vec<Opening> = expected
        .iter()
        .map(|(a, b)| Opening {
            start: at(a),
            end: at(b),
        })
        .collect();
    assert_eq!(got, want, "openings({from}, {to})");
}

#[test]
fn openings_table() {
    let s = new_york();
    // A Monday: both ranges, whole, in order.
    check_openings(
        &s,
        "2026-11-23T05:00:00Z",
        "2026-11-24T04:59:59Z",
        &[
            ("2026-11-23T14:00:00Z", "2026-11-23T17:00:00Z"),
            ("2026-11-23T18:00:00Z", "2026-11-23T22:00:00Z"),
        ],
    );
    // A single instant inside a range lists that range, whole: open now.
    check_openings(
        &s,
        "2026-11-23T15:00:00Z",
        "2026-11-23T15:00:00Z",
        &[("2026-11-23T14:00:00Z", "2026-11-23T17:00:00Z")],
    );
    // A single instant at lunch lists nothing: closed now.
    check_openings(&s, "2026-11-23T17:30:00Z", "2026-11-23T17:30:00Z", &[]);
    // An end is not open: an instant at closing time lists nothing.
    check_openings(&s, "2026-11-23T22:00:00Z", "2026-11-23T22:00:00Z", &[]);
    // Christmas Eve to Boxing Day: the short day, the holiday, nothing on Saturday's
    // window end (it opens at 15:00Z, after the window).
    check_openings(
        &s,
        "2026-12-24T00:00:00Z",
        "2026-12-26T14:00:00Z",
        &[("2026-12-24T14:00:00Z", "2026-12-24T17:00:00Z")],
    );
    // The DST days: one unbroken real-time period each.
    check_openings(
        &s,
        "2026-03-08T00:00:00Z",
        "2026-03-08T23:00:00Z",
        &[("2026-03-08T05:00:00Z", "2026-03-08T08:00:00Z")],
    );
    check_openings(
        &s,
        "2026-11-01T00:00:00Z",
        "2026-11-01T23:00:00Z",
        &[("2026-11-01T04:00:00Z", "2026-11-01T09:00:00Z")],
    );
}

/// A range inside the repeated hour is open twice, and listed twice.
#[test]
fn a_range_in_the_repeated_hour_is_two_periods() {
    let s = schedule(
        r#"
        timezone = "America/New_York"
        slot = "15m"
        [exceptions]
        "2026-11-01" = ["01:15-01:45"]
        "#,
    );
    check_openings(
        &s,
        "2026-11-01T00:00:00Z",
        "2026-11-02T00:00:00Z",
        &[
            ("2026-11-01T05:15:00Z", "2026-11-01T05:45:00Z"), // EDT pass
            ("2026-11-01T06:15:00Z", "2026-11-01T06:45:00Z"), // EST pass
        ],
    );
    check_open(&s, "2026-11-01T05:50:00Z", false);
    check_open(&s, "2026-11-01T06:20:00Z", true);
}

fn check_next(s: &Schedule, t: &str, within_days: i64, expected: Option<&str>) {
    assert_eq!(
        s.next_opening(at(t), Duration::days(within_days)),
        expected.map(at),
        "next_opening({t}, {within_days}d)"
    );
}

#[test]
fn next_opening_table() {
    let s = new_york();
    // Open: now.
    check_next(&s, "2026-11-23T15:00:00Z", 7, Some("2026-11-23T15:00:00Z"));
    // Lunch: 13:00 local.
    check_next(&s, "2026-11-23T17:00:00Z", 7, Some("2026-11-23T18:00:00Z"));
    // Friday evening: Saturday 10:00 local.
    check_next(&s, "2026-11-27T23:00:00Z", 7, Some("2026-11-28T15:00:00Z"));
    // Saturday evening: skips Sunday to Monday 09:00.
    check_next(&s, "2026-11-28T20:00:00Z", 7, Some("2026-11-30T14:00:00Z"));
    // Christmas Eve afternoon: skips the holiday to Saturday.
    check_next(&s, "2026-12-24T18:00:00Z", 7, Some("2026-12-26T15:00:00Z"));
    // Not within the window asked.
    check_next(&s, "2026-11-28T20:00:00Z", 1, None);
    // A schedule that never opens.
    let never = schedule("timezone = \"UTC\"\nslot = \"15m\"\n");
    check_next(&never, "2026-11-23T15:00:00Z", 366, None);
    assert!(never
        .openings(at("2026-11-23T00:00:00Z"), at("2027-11-23T00:00:00Z"))
        .is_empty());
}

/// `is_open` and `openings` agree at every minute of a year of the New York
/// schedule (both DST days included), and `next_opening` is the first open
/// minute.
#[test]
fn is_open_agrees_with_openings() {
    let s = new_york();
    let from = at("2026-01-01T00:00:00Z");
    let to = at("2027-01-01T00:00:00Z");
    let periods = s.openings(from, to);
    assert!(
        periods.windows(2).all(|w| w[0].end <= w[1].start),
        "sorted, disjoint"
    );
    let mut t = from;
    let mut p = 0;
    while t < to {
        while p < periods.len() && periods[p].end <= t {
            p += 1;
        }
        let listed = p < periods.len() && periods[p].start <= t;
        assert_eq!(s.is_open(t), listed, "at {t}");
        t += Duration::minutes(7);
    }
}

// ------------------------------------------- _enable_reject_out_of_office_hours

const BASE: &str = r#"
name = "t"
_media_type = "voice"
_wait_for_agent = true
_ttl = 3600
_target = { queue = "support" }
"#;

const HOURS: &str =
    "[_schedule]\ntimezone = \"UTC\"\nslot = \"15m\"\n[_schedule.hours]\nmon = [\"09:00-17:00\"]\n";

fn parse(extra: &str) -> Result<engine::scenario::Scenario, String> {
    engine::scenario::Scenario::from_toml(std::path::Path::new("t.toml"), &format!("{BASE}{extra}"))
        .map_err(|e| e.to_string())
}

/// GMS's name; off unless set; only meaningful with business hours.
#[test]
fn reject_out_of_office_hours_key() {
    assert!(!parse("").unwrap().reject_out_of_office_hours);
    assert!(!parse(HOURS).unwrap().reject_out_of_office_hours);
    let s = parse(&format!(
        "_enable_reject_out_of_office_hours = true\n{HOURS}"
    ))
    .unwrap();
    assert!(s.reject_out_of_office_hours);
    // Without hours the scenario is always open: the key could never act.
    let e = parse("_enable_reject_out_of_office_hours = true\n").unwrap_err();
    assert!(e.contains("_enable_reject_out_of_office_hours"), "{e}");
    assert!(e.contains("_schedule"), "{e}");
    let e = parse(&format!(
        "_enable_reject_out_of_office_hours = \"yes\"\n{HOURS}"
    ))
    .unwrap_err();
    assert!(e.contains("_enable_reject_out_of_office_hours"), "{e}");
}

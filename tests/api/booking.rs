//! Booked callbacks over HTTP: availability (GMS v1 and v2), booking a slot,
//! the race for the last seats, rescheduling, cancelling, and a booked
//! service entering the queue at its slot.
//!
//! The server runs on the real clock, so the scenarios here are written by
//! the tests: open around the clock in UTC with 5-minute slots (a slot
//! starts at every multiple of 5 minutes) unless a test is about hours.

use chrono::{DateTime, Datelike, Duration as Span, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use engine::testing::ScenarioBuilder;
use serde_json::Value;
use tests::time::{ceil5, iso, parse};
use tests::{multipart, TestApp, WAIT};

/// A booked video scenario in queue `queue`, without its `[_schedule]`.
pub(crate) fn booked(name: &str, queue: &str) -> ScenarioBuilder {
    ScenarioBuilder::video_call()
        .name(name)
        .unset_table("_video")
        .key("_target", &format!("{{ queue = {queue:?}, priority = 5 }}"))
        .key("_mandatory_fields", r#"["_customer_number"]"#)
        .table("_texts", r#"created = "Your appointment is booked""#)
}

/// Open every day all day in UTC, 5-minute slots of `seats` seats, no notice;
/// `keys` go into `[_schedule]` (horizon, join_url, ...), `tables` after it.
pub(crate) fn always_open(
    name: &str,
    queue: &str,
    keys: &str,
    seats: u32,
    tables: &str,
) -> ScenarioBuilder {
    booked(name, queue).always_open(
        &format!("timezone = \"UTC\"\nslot = \"5m\"\n{keys}"),
        seats,
        tables,
    )
}

/// Slot starts of an always-open 5-minute UTC schedule in `[from, to)`.
fn grid(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut t = ceil5(from);
    while t < to {
        out.push(t);
        t += Span::minutes(5);
    }
    out
}

fn local(t: DateTime<Utc>, zone: Tz) -> String {
    t.with_timezone(&zone)
        .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

/// GMS v1 availability: (slot start, seats left) in the order of the answer's text.
pub(crate) async fn v1(app: &TestApp, scenario: &str, query: &str) -> Vec<(DateTime<Utc>, u64)> {
    let url = app.url(&format!(
        "/genesys/1/service/callback/{scenario}/availability?{query}"
    ));
    let resp = app.client.get(url).send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    assert_eq!(status, 200, "v1 availability ?{query}: {text}");
    let map: serde_json::Map<String, Value> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not an object ({e}): {text}"));
    let mut slots: Vec<(usize, DateTime<Utc>, u64)> = map
        .iter()
        .map(|(k, v)| {
            assert_eq!(iso(parse(k)), *k, "key format");
            let at = text.find(&format!("\"{k}\"")).expect("key in text");
            (at, parse(k), v.as_u64().expect("seats left"))
        })
        .collect();
    slots.sort_by_key(|s| s.0);
    slots.into_iter().map(|(_, t, n)| (t, n)).collect()
}

/// GMS v2 availability, the whole answer.
pub(crate) async fn v2(app: &TestApp, scenario: &str, query: &str) -> Value {
    let (status, body) = app
        .get(&format!(
            "/genesys/2/service/callback/{scenario}/availability?{query}"
        ))
        .await;
    assert_eq!(status, 200, "v2 availability ?{query}: {body}");
    body
}

fn v2_slots(body: &Value) -> &Vec<Value> {
    body["slots"].as_array().expect("slots")
}

/// The v2 entry for slot `t`, if listed.
fn v2_entry(body: &Value, t: DateTime<Utc>) -> Option<Value> {
    v2_slots(body)
        .iter()
        .find(|s| s["utcTime"] == iso(t))
        .cloned()
}

/// Seats left in slot `t` by v1 (0 when not listed).
pub(crate) async fn left(app: &TestApp, scenario: &str, t: DateTime<Utc>) -> u64 {
    let query = format!("start={}&end={}", iso(t), iso(t + Span::minutes(1)));
    let slots = v1(app, scenario, &query).await;
    match slots.as_slice() {
        [] => 0,
        [(at, n)] if *at == t => *n,
        other => panic!("slot {t}: {other:?}"),
    }
}

/// The first open slot starting at least `ahead` from now, by v1.
pub(crate) async fn open_slot(app: &TestApp, scenario: &str, ahead: Span) -> DateTime<Utc> {
    let query = format!("start={}&max-time-slots=1", iso(Utc::now() + ahead));
    v1(app, scenario, &query).await[0].0
}

fn create_path(scenario: &str) -> String {
    format!("/genesys/1/service/callback/{scenario}")
}

/// Books `desired` (ISO text) with extra fields; (status, body).
pub(crate) async fn book(
    app: &TestApp,
    scenario: &str,
    customer: &str,
    desired: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut fields = vec![("_customer_number", customer), ("_desired_time", desired)];
    fields.extend_from_slice(extra);
    app.post_form(&create_path(scenario), &fields).await
}

/// Books slot `t`; the service id.
pub(crate) async fn book_ok(
    app: &TestApp,
    scenario: &str,
    customer: &str,
    t: DateTime<Utc>,
) -> String {
    let (status, body) = book(app, scenario, customer, &iso(t), &[]).await;
    assert_eq!(status, 200, "booking {t}: {body}");
    assert_eq!(body["_desired_time"], iso(t), "{body}");
    body["_id"].as_str().expect("_id").to_owned()
}

/// PUT multipart: reschedule; (status, body).
pub(crate) async fn put_form(app: &TestApp, path: &str, fields: &[(&str, &str)]) -> (u16, Value) {
    let resp = app
        .client
        .put(app.url(path))
        .multipart(multipart(fields))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub(crate) async fn reschedule(app: &TestApp, scenario: &str, id: &str, to: &str) -> (u16, Value) {
    put_form(
        app,
        &format!("/genesys/1/service/callback/{scenario}/{id}"),
        &[("_new_desired_time", to)],
    )
    .await
}

/// A 4xx with this exception whose message starts with `field:`.
fn assert_refused(status: u16, body: &Value, want: u16, exception: &str, field: &str, what: &str) {
    assert_eq!(status, want, "{what}: {body}");
    assert_eq!(body["exception"], exception, "{what}: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("{field}:")),
        "{what}: message should name {field}: {body}"
    );
}

/// A 409 SLOT_UNAVAILABLE whose `_available_slots` are all bookable now
/// (seats left, listed by v1) and none is `not`; returns their starts.
async fn assert_unavailable(
    app: &TestApp,
    scenario: &str,
    (status, body): (u16, Value),
    field: &str,
    why: &str,
    not: Option<DateTime<Utc>>,
) -> Vec<DateTime<Utc>> {
    assert_refused(status, &body, 409, "SLOT_UNAVAILABLE", field, why);
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(why), "message should say `{why}`: {body}");
    let offered = body["_available_slots"]
        .as_array()
        .unwrap_or_else(|| panic!("no _available_slots: {body}"));
    assert!(
        (1..=5).contains(&offered.len()),
        "1 to 5 nearest slots: {body}"
    );
    let starts: Vec<DateTime<Utc>> = offered
        .iter()
        .map(|s| parse(s["utcTime"].as_str().expect("utcTime")))
        .collect();
    let mut sorted = starts.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(starts, sorted, "sorted by start, no repeats: {body}");
    for (s, start) in offered.iter().zip(&starts) {
        assert_ne!(Some(*start), not, "the refused slot offered: {body}");
        assert!(s["capacity"].as_u64().unwrap_or(0) > 0, "{s}");
        assert!(
            s["total"].as_u64().unwrap_or(0) >= s["capacity"].as_u64().unwrap_or(0),
            "{s}"
        );
        assert!(s["localTime"].is_string(), "{s}");
        assert_eq!(
            left(app, scenario, *start).await,
            s["capacity"].as_u64().unwrap(),
            "offered {s} is not bookable as offered"
        );
    }
    starts
}

// ---------------------------------------------------------------- availability

#[tokio::test]
async fn availability_v1_and_v2_list_the_open_slots() {
    let open = always_open("bk-open", "bk-open", "horizon = \"366d\"", 3, "");
    let app = TestApp::builder().with_scenario(&open).spawn().await;
    let start = Utc::now() + Span::hours(1);
    let end = start + Span::hours(1);
    let window = format!("start={}&end={}", iso(start), iso(end));
    let want = grid(start, end);
    assert_eq!(want.len(), 12);

    // v1: every slot of the window with its seats, earliest first.
    let got = v1(&app, "bk-open", &window).await;
    assert_eq!(
        got,
        want.iter().map(|t| (*t, 3)).collect::<Vec<_>>(),
        "v1 {window}"
    );
    let first4: Vec<_> = want.iter().take(4).map(|t| (*t, 3)).collect();
    assert_eq!(
        v1(&app, "bk-open", &format!("{window}&max-time-slots=4")).await,
        first4
    );
    // number-of-days without end.
    let days = v1(
        &app,
        "bk-open",
        &format!("start={}&number-of-days=2", iso(start)),
    )
    .await;
    assert_eq!(days.len(), 2 * 288, "two days of 5-minute slots");
    assert_eq!(days[0].0, want[0]);
    // Defaults: from now, one day.
    let before = Utc::now();
    let default = v1(&app, "bk-open", "").await;
    let after = Utc::now();
    assert!(
        (287..=288).contains(&default.len()),
        "one day: {} slots",
        default.len()
    );
    assert!(default[0].0 >= before, "{:?}", default[0]);
    assert!(default.last().unwrap().0 < after + Span::days(1));

    // v2: the same slots with local time, seats left and total.
    let body = v2(&app, "bk-open", &format!("{window}&max-time-slots=5")).await;
    assert_eq!(body["durationMin"], 5, "{body}");
    assert_eq!(body["timezone"], "UTC", "{body}");
    let slots = v2_slots(&body);
    assert_eq!(slots.len(), 5, "{body}");
    for (slot, t) in slots.iter().zip(&want) {
        assert_eq!(
            *slot,
            serde_json::json!({
                "utcTime": iso(*t),
                "localTime": local(*t, Tz::UTC),
                "capacity": 3,
                "total": 3,
            })
        );
        assert!(slot["localTime"].as_str().unwrap().ends_with("+00:00"));
    }
    let all = v2(&app, "bk-open", &window).await;
    assert_eq!(v2_slots(&all).len(), 12);
}

#[tokio::test]
async fn availability_v2_shows_local_times_in_the_asked_zone() {
    let open = always_open("bk-zones", "bk-zones", "horizon = \"366d\"", 1, "");
    let app = TestApp::builder().with_scenario(&open).spawn().await;
    let today = Utc::now().date_naive();
    // The next 15 January (winter in New York) and 15 July (summer), within the horizon.
    // The first day of `month` at least two days ahead: always within the horizon.
    let next = |month: u32| {
        let mut date = today + chrono::Days::new(2);
        while date.month() != month {
            date = date + chrono::Days::new(1);
        }
        date.and_hms_opt(12, 0, 0).unwrap().and_utc()
    };
    let cases = [
        (next(1), "America/New_York", "-05:00", "07:00"),
        (next(7), "America/New_York", "-04:00", "08:00"),
        (next(1), "Asia/Kolkata", "+05:30", "17:30"),
        (next(7), "Asia/Kolkata", "+05:30", "17:30"),
        (next(7), "UTC", "+00:00", "12:00"),
    ];
    for (start, zone, offset, first_local) in cases {
        let query = format!(
            "start={}&end={}&timezone={zone}",
            iso(start),
            iso(start + Span::minutes(30))
        );
        let body = v2(&app, "bk-zones", &query).await;
        assert_eq!(body["timezone"], zone, "{body}");
        let slots = v2_slots(&body);
        assert_eq!(slots.len(), 6, "{body}");
        let tz: Tz = zone.parse().unwrap();
        for (slot, t) in slots.iter().zip(grid(start, start + Span::minutes(30))) {
            assert_eq!(slot["utcTime"], iso(t));
            let local_time = slot["localTime"].as_str().unwrap();
            assert_eq!(local_time, local(t, tz), "{zone}");
            assert!(local_time.ends_with(offset), "{zone}: {local_time}");
            assert_eq!(parse(local_time), t, "{local_time} is the same instant");
        }
        let first = slots[0]["localTime"].as_str().unwrap();
        assert_eq!(&first[11..16], first_local, "{zone}: {first}");
    }
}

#[tokio::test]
async fn availability_follows_weekday_hours_holidays_and_exceptions() {
    let ny = chrono_tz::America::New_York;
    // A whole local week, Monday to Sunday, starting at least two days ahead.
    let mut monday = Utc::now().with_timezone(&ny).date_naive() + chrono::Days::new(2);
    while monday.weekday() != Weekday::Mon {
        monday = monday + chrono::Days::new(1);
    }
    let day = |n: u64| monday + chrono::Days::new(n);
    let (holiday, short, closed) = (day(2), day(3), day(4)); // Wed, Thu, Fri
    let week = format!(
        r#"timezone = "America/New_York"
slot = "30m"
horizon = "366d"
holidays = ["{holiday}"]

[_schedule.hours]
mon = ["09:00-12:00", "13:00-17:00"]
tue = ["09:00-12:00", "13:00-17:00"]
wed = ["09:00-12:00", "13:00-17:00"]
thu = ["09:00-12:00", "13:00-17:00"]
fri = ["09:00-12:00", "13:00-17:00"]
sat = ["10:00-12:00"]

[_schedule.exceptions]
"{short}" = ["14:00-15:00"]
"{closed}" = []

[_schedule.capacity]
default = 2
sat = 1
"#
    );
    let app = TestApp::builder()
        .with_scenario(&booked("bk-week", "bk-week").schedule(&week))
        .spawn()
        .await;

    let at = |date: NaiveDate, hm: &str| -> DateTime<Utc> {
        let time = NaiveTime::parse_from_str(hm, "%H:%M").unwrap();
        ny.from_local_datetime(&date.and_time(time))
            .single()
            .expect("an unambiguous local time")
            .with_timezone(&Utc)
    };
    let weekday = [("09:00", "12:00"), ("13:00", "17:00")];
    // (local date, opening ranges, seats)
    type Day<'a> = (NaiveDate, Vec<(&'a str, &'a str)>, u64);
    let plan: Vec<Day> = vec![
        (day(0), weekday.to_vec(), 2),
        (day(1), weekday.to_vec(), 2),
        (holiday, vec![], 2),
        (short, vec![("14:00", "15:00")], 2),
        (closed, vec![], 2),
        (day(5), vec![("10:00", "12:00")], 1),
        (day(6), vec![], 2),
    ];
    let mut want: Vec<(DateTime<Utc>, u64)> = Vec::new();
    for (date, ranges, seats) in &plan {
        for (from, to) in ranges {
            let (mut t, end) = (at(*date, from), at(*date, to));
            while t + Span::minutes(30) <= end {
                want.push((t, *seats));
                t += Span::minutes(30);
            }
        }
    }
    assert_eq!(want.len(), 14 + 14 + 2 + 4);

    let (start, end) = (at(day(0), "00:00"), at(day(7), "00:00"));
    let query = format!("start={}&end={}", iso(start), iso(end));
    let body = v2(&app, "bk-week", &query).await;
    assert_eq!(body["timezone"], "America/New_York");
    assert_eq!(body["durationMin"], 30);
    let got: Vec<(DateTime<Utc>, u64)> = v2_slots(&body)
        .iter()
        .map(|s| {
            let t = parse(s["utcTime"].as_str().unwrap());
            assert_eq!(s["localTime"], local(t, ny), "{s}");
            assert_eq!(s["capacity"], s["total"], "{s}");
            (t, s["total"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(got, want, "slots of the week of {monday}");
    let v1_got = v1(&app, "bk-week", &query).await;
    assert_eq!(v1_got, want, "v1 agrees");

    // Closed times are refused with the nearest open slots.
    for (t, what) in [
        (at(day(6), "10:00"), "Sunday"),
        (at(holiday, "10:00"), "holiday"),
        (at(closed, "10:00"), "closed exception"),
        (at(short, "10:00"), "outside the exception's hours"),
        (at(day(0), "12:15"), "lunch"),
        (at(day(0), "08:45"), "before opening"),
    ] {
        let answer = book(&app, "bk-week", "5550100", &iso(t), &[]).await;
        let offered = assert_unavailable(
            &app,
            "bk-week",
            answer,
            "_desired_time",
            "is not in an open slot",
            None,
        )
        .await;
        assert!(
            offered
                .iter()
                .all(|s| want.iter().any(|(w, _)| w == s) || *s >= end),
            "{what}: offered {offered:?}"
        );
    }

    // A time inside an open slot books that slot, shown in the schedule's zone.
    let (status, body) = book(&app, "bk-week", "5550101", &iso(at(day(5), "11:10")), &[]).await;
    assert_eq!(status, 200, "{body}");
    let slot = at(day(5), "11:00");
    assert_eq!(body["_desired_time"], iso(slot), "{body}");
    assert_eq!(body["_slot_end"], iso(slot + Span::minutes(30)), "{body}");
    assert_eq!(body["_local_time"], local(slot, ny), "{body}");
    assert_eq!(body["_timezone"], "America/New_York", "{body}");
    assert!(
        body.get("_join_url").is_none(),
        "no join_url configured: {body}"
    );
    // Saturday has one seat: that slot is gone.
    assert_eq!(left(&app, "bk-week", slot).await, 0);
}

#[tokio::test]
async fn availability_is_clipped_to_notice_and_horizon() {
    let window = always_open(
        "bk-window",
        "bk-window",
        "min_notice = \"30m\"\nhorizon = \"1h\"",
        1,
        "",
    );
    let app = TestApp::builder().with_scenario(&window).spawn().await;
    let before = Utc::now();
    let body = v2(
        &app,
        "bk-window",
        &format!("start={}&number-of-days=3", iso(before - Span::days(1))),
    )
    .await;
    let after = Utc::now();
    let starts: Vec<DateTime<Utc>> = v2_slots(&body)
        .iter()
        .map(|s| parse(s["utcTime"].as_str().unwrap()))
        .collect();
    assert!((6..=7).contains(&starts.len()), "{starts:?}");
    for s in &starts {
        assert!(*s >= before + Span::minutes(30), "too soon: {s}");
        assert!(*s <= after + Span::hours(1), "beyond the horizon: {s}");
    }
    // A window wholly beyond the horizon (or in the past) is empty, not an error.
    let later = format!("start={}", iso(after + Span::hours(2)));
    assert!(v1(&app, "bk-window", &later).await.is_empty());
    let past = format!(
        "start={}&end={}",
        iso(before - Span::days(2)),
        iso(before - Span::days(1))
    );
    assert!(v1(&app, "bk-window", &past).await.is_empty());
    assert_eq!(v2_slots(&v2(&app, "bk-window", &later).await).len(), 0);

    // Booking too soon or beyond the horizon: 409 with slots inside the window.
    let soon = book(
        &app,
        "bk-window",
        "5550110",
        &iso(Utc::now() + Span::minutes(5)),
        &[],
    )
    .await;
    let offered = assert_unavailable(
        &app,
        "bk-window",
        soon,
        "_desired_time",
        "is too soon to book",
        None,
    )
    .await;
    assert!(
        offered.iter().all(|s| *s >= before + Span::minutes(30)),
        "{offered:?}"
    );
    let far = book(
        &app,
        "bk-window",
        "5550111",
        &iso(Utc::now() + Span::hours(2)),
        &[],
    )
    .await;
    let offered = assert_unavailable(
        &app,
        "bk-window",
        far,
        "_desired_time",
        "is beyond the booking horizon",
        None,
    )
    .await;
    assert!(
        offered.iter().all(|s| *s <= Utc::now() + Span::hours(1)),
        "{offered:?}"
    );
    let past = book(
        &app,
        "bk-window",
        "5550112",
        &iso(Utc::now() - Span::hours(1)),
        &[],
    )
    .await;
    assert_unavailable(
        &app,
        "bk-window",
        past,
        "_desired_time",
        "is too soon to book",
        None,
    )
    .await;
}

/// One bad availability request: 400 INVALID_PARAMETER naming `param`.
async fn check_bad_param(app: &TestApp, version: u8, query: &str, param: &str) {
    let path = format!("/genesys/{version}/service/callback/bk-bad/availability?{query}");
    let (status, body) = app.get(&path).await;
    assert_refused(status, &body, 400, "INVALID_PARAMETER", param, &path);
}

#[tokio::test]
async fn bad_availability_parameters_are_400_naming_the_parameter() {
    let bad = always_open("bk-bad", "bk-bad", "", 1, "");
    let app = TestApp::builder().with_scenario(&bad).spawn().await;
    let t = iso(Utc::now() + Span::hours(1));
    let earlier = iso(Utc::now());
    let far = iso(Utc::now() + Span::days(400));
    let both: Vec<(String, &str)> = vec![
        ("start=tomorrow".into(), "start"),
        ("start=2026-13-01T00:00:00Z".into(), "start"),
        ("start=1700000000".into(), "start"),
        ("end=yesterday".into(), "end"),
        (format!("start={t}&end={earlier}"), "end"),
        (format!("start={t}&end={t}"), "end"),
        (format!("start={earlier}&end={far}"), "end"),
        ("number-of-days=0".into(), "number-of-days"),
        ("number-of-days=400".into(), "number-of-days"),
        ("number-of-days=-1".into(), "number-of-days"),
        ("number-of-days=1.5".into(), "number-of-days"),
        ("number-of-days=two".into(), "number-of-days"),
        ("max-time-slots=0".into(), "max-time-slots"),
        ("max-time-slots=abc".into(), "max-time-slots"),
        ("max-time-slots=-3".into(), "max-time-slots"),
    ];
    for (query, param) in &both {
        check_bad_param(&app, 1, query, param).await;
        check_bad_param(&app, 2, query, param).await;
    }
    for (query, param) in [
        ("timezone=Mars/Base", "timezone"),
        ("timezone=UTC%2B2", "timezone"),
        ("report-busy=maybe", "report-busy"),
        ("report-busy=1", "report-busy"),
    ] {
        check_bad_param(&app, 2, query, param).await;
    }
    // The edges that are allowed.
    for query in [
        "number-of-days=1",
        "number-of-days=366",
        "max-time-slots=1",
        "start=&end=",
    ] {
        v1(&app, "bk-bad", query).await;
        v2(&app, "bk-bad", query).await;
    }
    v2(&app, "bk-bad", "report-busy=FALSE&timezone=Europe/Paris").await;

    // Unknown scenario, and a scenario that takes no bookings: 404.
    for scenario in ["no-such-scenario", "chat-delay"] {
        for version in [1, 2] {
            let path = format!("/genesys/{version}/service/callback/{scenario}/availability");
            let (status, body) = app.get(&path).await;
            assert_eq!(status, 404, "{path}: {body}");
            assert_eq!(body["exception"], "NOT_FOUND", "{path}: {body}");
        }
    }
}

// ---------------------------------------------------------------- booking

#[tokio::test]
async fn booking_takes_a_seat_and_a_full_slot_is_refused_with_the_nearest() {
    let seats = always_open(
        "bk-seats",
        "bk-seats",
        "join_url = \"{base_url}/video/{service_id}\"",
        2,
        "",
    );
    let app = TestApp::builder().with_scenario(&seats).spawn().await;
    let slot = open_slot(&app, "bk-seats", Span::minutes(20)).await;
    assert_eq!(left(&app, "bk-seats", slot).await, 2);

    // A time inside the slot books the slot; `_timezone` picks the zone shown.
    let inside = iso(slot + Span::seconds(150));
    let (status, first) = book(
        &app,
        "bk-seats",
        "5550200",
        &inside,
        &[("_timezone", "Asia/Kolkata"), ("name", "Bob")],
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let id = first["_id"].as_str().expect("_id").to_owned();
    assert_eq!(first["_text"], "Your appointment is booked");
    assert_eq!(first["_desired_time"], iso(slot));
    assert_eq!(first["_slot_end"], iso(slot + Span::minutes(5)));
    assert_eq!(first["_timezone"], "Asia/Kolkata");
    let local_time = first["_local_time"].as_str().expect("_local_time");
    assert_eq!(local_time, local(slot, chrono_tz::Asia::Kolkata));
    assert!(local_time.ends_with("+05:30"), "{local_time}");
    assert_eq!(first["_join_url"], format!("{}/video/{id}", app.base));

    // One seat fewer, in both versions.
    assert_eq!(left(&app, "bk-seats", slot).await, 1);
    let window = format!("start={}&end={}", iso(slot), iso(slot + Span::minutes(1)));
    let body = v2(&app, "bk-seats", &window).await;
    let entry = v2_entry(&body, slot).unwrap_or_else(|| panic!("{body}"));
    assert_eq!(
        (&entry["capacity"], &entry["total"]),
        (&1.into(), &2.into())
    );
    // The neighbours keep theirs.
    assert_eq!(left(&app, "bk-seats", slot + Span::minutes(5)).await, 2);

    let gms = app.query_by_id(&id).await;
    assert_eq!(gms["_callback_state"], "SCHEDULED", "{gms}");
    assert_eq!(gms["_desired_time"], iso(slot), "{gms}");
    let full = app.record(&id).await;
    let booking = &full["booking"];
    assert_eq!(parse(booking["slot"].as_str().unwrap()), slot, "{full}");
    assert_eq!(
        parse(booking["slot_end"].as_str().unwrap()),
        slot + Span::minutes(5)
    );
    assert_eq!(booking["seats"], 2, "{full}");
    assert_eq!(booking["sequence"], 0, "{full}");
    assert_eq!(booking["timezone"], "Asia/Kolkata", "{full}");
    assert_eq!(booking["join_url"], first["_join_url"], "{full}");
    assert_eq!(
        parse(booking["enter_queue_at"].as_str().unwrap()),
        slot,
        "{full}"
    );
    assert_eq!(
        parse(
            full["timers"]["desired_time"]
                .as_str()
                .expect("entry timer")
        ),
        slot,
        "{full}"
    );
    assert_eq!(full["user_data"]["name"], "Bob", "{full}");

    // The last seat.
    book_ok(&app, "bk-seats", "5550201", slot).await;
    assert_eq!(left(&app, "bk-seats", slot).await, 0);
    let body = v2(&app, "bk-seats", &window).await;
    assert!(
        v2_entry(&body, slot).is_none(),
        "a full slot is not listed: {body}"
    );
    let body = v2(&app, "bk-seats", &format!("{window}&report-busy=true")).await;
    let entry = v2_entry(&body, slot).unwrap_or_else(|| panic!("report-busy lists it: {body}"));
    assert_eq!(entry["capacity"], 0, "{entry}");
    assert_eq!(entry["total"], 2, "{entry}");

    // A third booking: 409 with the five nearest open slots, not this one.
    let third = book(&app, "bk-seats", "5550202", &iso(slot), &[]).await;
    let offered = assert_unavailable(
        &app,
        "bk-seats",
        third,
        "_desired_time",
        "is full",
        Some(slot),
    )
    .await;
    let step = Span::minutes(5);
    assert_eq!(
        offered,
        vec![
            slot - step * 3,
            slot - step * 2,
            slot - step,
            slot + step,
            slot + step * 2
        ],
        "nearest first, earlier on a tie, sorted"
    );
    assert_eq!(left(&app, "bk-seats", slot).await, 0);

    // The refusal shows local times in the customer's zone.
    let (status, body) = book(
        &app,
        "bk-seats",
        "5550203",
        &iso(slot),
        &[("_timezone", "America/New_York")],
    )
    .await;
    assert_eq!(status, 409, "{body}");
    for s in body["_available_slots"].as_array().unwrap() {
        let t = parse(s["utcTime"].as_str().unwrap());
        assert_eq!(
            s["localTime"],
            local(t, chrono_tz::America::New_York),
            "{s}"
        );
    }

    // Bad fields: 400 naming them, no seat taken.
    let next = slot + Span::minutes(10);
    for (fields, field, exception) in [
        (
            vec![("_desired_time", "soon")],
            "_desired_time",
            "INVALID_PARAMETER",
        ),
        (
            vec![("_desired_time", "2026-02-30T10:00:00Z")],
            "_desired_time",
            "INVALID_PARAMETER",
        ),
        (
            vec![("_desired_time", &*iso(next)), ("_timezone", "Mars/Base")],
            "_timezone",
            "INVALID_PARAMETER",
        ),
    ] {
        let mut all = vec![("_customer_number", "5550204")];
        all.extend(fields.iter().copied());
        let (status, body) = app.post_form(&create_path("bk-seats"), &all).await;
        assert_refused(status, &body, 400, exception, field, &format!("{fields:?}"));
    }
    assert_eq!(left(&app, "bk-seats", next).await, 2);
}

#[tokio::test]
async fn a_thousand_creates_race_for_ten_seats() {
    let race = always_open("bk-race", "bk-race", "horizon = \"1d\"", 10, "");
    let app = TestApp::builder().with_scenario(&race).spawn().await;
    let slot = open_slot(&app, "bk-race", Span::minutes(20)).await;
    assert_eq!(left(&app, "bk-race", slot).await, 10);
    let url = app.url(&create_path("bk-race"));
    let desired = iso(slot);
    let started = std::time::Instant::now();
    let answers = futures_util::future::join_all((0..1000).map(|i| {
        let request = app.client.post(&url).multipart(multipart(&[
            ("_customer_number", &format!("555{i:05}")),
            ("_desired_time", &desired),
        ]));
        async move {
            let resp = request.send().await.expect("request");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.expect("JSON body");
            (status, body)
        }
    }))
    .await;
    let took = started.elapsed();
    let booked: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 409)
        .map(|(_, b)| b)
        .collect();
    let other: Vec<&(u16, Value)> = answers
        .iter()
        .filter(|(s, _)| *s != 200 && *s != 409)
        .take(3)
        .collect();
    assert!(other.is_empty(), "neither 200 nor 409: {other:?}");
    assert_eq!(booked.len(), 10, "exactly the seats (in {took:?})");
    assert_eq!(refused.len(), 990);
    let mut ids: Vec<&str> = booked.iter().map(|b| b["_id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10);
    assert!(booked.iter().all(|b| b["_desired_time"] == desired));
    for body in &refused {
        assert_eq!(body["exception"], "SLOT_UNAVAILABLE", "{body}");
        let offered = body["_available_slots"]
            .as_array()
            .expect("_available_slots");
        assert!(!offered.iter().any(|s| s["utcTime"] == desired), "{body}");
    }
    assert_eq!(left(&app, "bk-race", slot).await, 0);
    let window = format!(
        "start={}&end={}&report-busy=true",
        iso(slot),
        iso(slot + Span::minutes(1))
    );
    let body = v2(&app, "bk-race", &window).await;
    let entry = v2_entry(&body, slot).unwrap_or_else(|| panic!("{body}"));
    assert_eq!(
        (entry["capacity"].clone(), entry["total"].clone()),
        (0.into(), 10.into())
    );
}

// ---------------------------------------------------------------- reschedule, cancel

#[tokio::test]
async fn rescheduling_moves_the_seat_and_cancelling_frees_it() {
    let moving = always_open(
        "bk-move",
        "bk-move",
        "join_url = \"{base_url}/video/{service_id}\"",
        2,
        "",
    );
    let app = TestApp::builder().with_scenario(&moving).spawn().await;
    let s1 = open_slot(&app, "bk-move", Span::minutes(20)).await;
    let (s2, s3) = (s1 + Span::minutes(10), s1 + Span::minutes(20));
    let (status, created) = book(&app, "bk-move", "5550300", &iso(s1), &[]).await;
    assert_eq!(status, 200, "{created}");
    let a = created["_id"].as_str().unwrap().to_owned();
    assert_eq!(left(&app, "bk-move", s1).await, 1);

    // Moved: the old seat is free again, the new one taken.
    let (status, moved) = reschedule(&app, "bk-move", &a, &iso(s2 + Span::minutes(1))).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["_id"], a);
    assert_eq!(moved["_callback_state"], "SCHEDULED");
    assert_eq!(moved["_desired_time"], iso(s2));
    assert_eq!(moved["_slot_end"], iso(s2 + Span::minutes(5)));
    assert_eq!(moved["_join_url"], created["_join_url"], "the link stays");
    assert_eq!(left(&app, "bk-move", s1).await, 2);
    assert_eq!(left(&app, "bk-move", s2).await, 1);
    assert_eq!(app.query_by_id(&a).await["_desired_time"], iso(s2));
    let full = app.record(&a).await;
    assert_eq!(full["booking"]["sequence"], 1, "{full}");
    assert_eq!(parse(full["timers"]["desired_time"].as_str().unwrap()), s2);

    // Into a full slot: 409, and nothing changed.
    book_ok(&app, "bk-move", "5550301", s3).await;
    let b2 = book_ok(&app, "bk-move", "5550302", s3).await;
    let answer = reschedule(&app, "bk-move", &a, &iso(s3)).await;
    assert_unavailable(
        &app,
        "bk-move",
        answer,
        "_new_desired_time",
        "is full",
        Some(s3),
    )
    .await;
    assert_eq!(app.query_by_id(&a).await["_desired_time"], iso(s2));
    let after = app.record(&a).await;
    assert_eq!(after["booking"], full["booking"], "booking unchanged");
    assert_eq!(left(&app, "bk-move", s2).await, 1);
    assert_eq!(left(&app, "bk-move", s3).await, 0);

    // Into the past or a closed time: 409 too.
    let answer = reschedule(&app, "bk-move", &a, &iso(Utc::now() - Span::hours(1))).await;
    assert_unavailable(
        &app,
        "bk-move",
        answer,
        "_new_desired_time",
        "is too soon to book",
        None,
    )
    .await;
    let answer = reschedule(&app, "bk-move", &a, &iso(Utc::now() + Span::days(40))).await;
    assert_unavailable(
        &app,
        "bk-move",
        answer,
        "_new_desired_time",
        "is beyond the booking horizon",
        None,
    )
    .await;
    assert_eq!(app.query_by_id(&a).await["_desired_time"], iso(s2));

    // Bad requests.
    let path = format!("/genesys/1/service/callback/bk-move/{a}");
    let (status, body) = put_form(&app, &path, &[("_desired_time", &iso(s1))]).await;
    assert_refused(
        status,
        &body,
        400,
        "MISSING_PARAMETER",
        "_new_desired_time",
        "missing",
    );
    let (status, body) = reschedule(&app, "bk-move", &a, "next week").await;
    assert_refused(
        status,
        &body,
        400,
        "INVALID_PARAMETER",
        "_new_desired_time",
        "garbage",
    );
    let unknown = "00000000-0000-4000-8000-000000000000";
    let (status, body) = reschedule(&app, "bk-move", unknown, &iso(s1)).await;
    assert_eq!(status, 404, "unknown id: {body}");
    let (status, body) = reschedule(&app, "chat-delay", &a, &iso(s1)).await;
    assert_eq!(status, 404, "another scenario's service: {body}");
    let (status, body) = reschedule(&app, "no-such-scenario", &a, &iso(s1)).await;
    assert_eq!(status, 404, "unknown scenario: {body}");
    assert_eq!(app.query_by_id(&a).await["_desired_time"], iso(s2));

    // Cancelling frees the seat.
    let (status, body) = app.delete(&path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["_callback_state"], "COMPLETED");
    assert_eq!(body["_callback_reason"], "CANCELLED");
    assert_eq!(left(&app, "bk-move", s2).await, 2);
    let (status, body) = app
        .delete(&format!("/genesys/1/service/callback/bk-move/{b2}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(left(&app, "bk-move", s3).await, 1);
    // A cancelled service cannot be moved.
    let (status, body) = reschedule(&app, "bk-move", &a, &iso(s1)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(left(&app, "bk-move", s1).await, 2);
}

#[tokio::test]
async fn a_queued_booking_cannot_be_rescheduled() {
    // Enters the queue an hour before its slot: at once, for a slot 20 minutes away.
    let early = always_open(
        "bk-early",
        "bk-early",
        "",
        2,
        "[_schedule.buffers]\nenter_queue = \"1h\"\n",
    );
    let app = TestApp::builder().with_scenario(&early).spawn().await;
    let slot = open_slot(&app, "bk-early", Span::minutes(20)).await;
    let id = book_ok(&app, "bk-early", "5550400", slot).await;
    app.wait_for_state(&id, "QUEUED", WAIT).await;
    let other = open_slot(&app, "bk-early", Span::minutes(40)).await;
    let (status, body) = reschedule(&app, "bk-early", &id, &iso(other)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["exception"], "INVALID_STATE", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("SCHEDULED"), "{body}");
    let gms = app.query_by_id(&id).await;
    assert_eq!(gms["_desired_time"], iso(slot), "{gms}");
    assert_eq!(gms["_callback_state"], "QUEUED", "{gms}");
    assert_eq!(left(&app, "bk-early", slot).await, 1);
    assert_eq!(left(&app, "bk-early", other).await, 2);
}

// ---------------------------------------------------------------- entering the queue

#[tokio::test]
async fn a_booking_enters_the_queue_at_its_buffer_and_queues_by_its_slot() {
    // The slot at least 6 minutes away (so the one before it can still be
    // booked), and a buffer that makes it enter the queue 2 s from now.
    let now = Utc::now();
    let slot = ceil5(now + Span::minutes(6));
    let buffer = (slot - now - Span::seconds(2)).num_seconds();
    let scenario = always_open(
        "bk-enter",
        "bk-enter",
        "",
        2,
        &format!("[_schedule.buffers]\nenter_queue = \"{buffer}s\"\n"),
    );
    let app = TestApp::builder().with_scenario(&scenario).spawn().await;
    let booked = book_ok(&app, "bk-enter", "5550500", slot).await;
    let full = app.record(&booked).await;
    assert_eq!(full["_callback_state"], "SCHEDULED", "{full}");
    let enter_at = parse(full["booking"]["enter_queue_at"].as_str().unwrap());
    assert_eq!(enter_at, slot - Span::seconds(buffer));
    assert!(
        enter_at > Utc::now() + Span::milliseconds(500),
        "enters at {enter_at}"
    );
    assert_eq!(
        parse(full["timers"]["desired_time"].as_str().unwrap()),
        enter_at
    );

    // A booking made later for the slot before: its entry is already past,
    // so it queues at once, placed at its own slot.
    let earlier = book_ok(&app, "bk-enter", "5550501", slot - Span::minutes(5)).await;
    app.wait_for_state(&earlier, "QUEUED", WAIT).await;

    let queued = app.wait_for_state(&booked, "QUEUED", WAIT).await;
    assert!(
        Utc::now() >= enter_at,
        "queued before its entry time {enter_at}"
    );
    assert_eq!(
        parse(queued["ticket"]["since"].as_str().unwrap()),
        slot,
        "{queued}"
    );

    // A walk-in now is ahead of both: its place is now, theirs their slots.
    let walk_in = app.create("bk-enter", "5550502").await;
    let walk = app.wait_for_state(&walk_in, "QUEUED", WAIT).await;
    assert!(parse(walk["ticket"]["since"].as_str().unwrap()) < slot - Span::minutes(5));
    let mut order = Vec::new();
    for id in [&walk_in, &earlier, &booked] {
        let position = app.queue_position(id).await;
        order.push(position["_position"].as_u64().expect("_position"));
    }
    assert_eq!(order, vec![1, 2, 3], "walk-in, earlier slot, later slot");
}

#[tokio::test]
async fn a_move_within_its_own_full_slot_keeps_the_seat() {
    let single = always_open("bk-single", "bk-single", "", 1, "");
    let app = TestApp::builder().with_scenario(&single).spawn().await;
    let slot = open_slot(&app, "bk-single", Span::minutes(20)).await;
    let id = book_ok(&app, "bk-single", "5550900", slot).await;
    assert_eq!(left(&app, "bk-single", slot).await, 0);
    // Another time inside the same slot: the seat it holds is its own.
    let (status, body) = reschedule(&app, "bk-single", &id, &iso(slot + Span::minutes(2))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["_desired_time"], iso(slot), "{body}");
    assert_eq!(left(&app, "bk-single", slot).await, 0);
    // And it can still move out and back.
    let (status, body) = reschedule(&app, "bk-single", &id, &iso(slot + Span::minutes(5))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(left(&app, "bk-single", slot).await, 1);
    let (status, body) = reschedule(&app, "bk-single", &id, &iso(slot)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(left(&app, "bk-single", slot).await, 0);
    assert_eq!(left(&app, "bk-single", slot + Span::minutes(5)).await, 1);
}

#[tokio::test]
async fn concurrent_moves_into_one_slot_take_only_its_seats() {
    let moves = always_open("bk-moves", "bk-moves", "", 3, "");
    let app = TestApp::builder().with_scenario(&moves).spawn().await;
    let first = open_slot(&app, "bk-moves", Span::minutes(20)).await;
    // 21 services filling 7 slots, all moving at once to an empty slot of 3 seats.
    let olds: Vec<DateTime<Utc>> = (0..7).map(|i| first + Span::minutes(5 * i)).collect();
    let target = first + Span::hours(1);
    let mut ids = Vec::new();
    for (i, old) in olds.iter().enumerate() {
        for j in 0..3 {
            ids.push((
                book_ok(&app, "bk-moves", &format!("55510{i}{j}"), *old).await,
                *old,
            ));
        }
    }
    let to = iso(target);
    let answers = futures_util::future::join_all(
        ids.iter()
            .map(|(id, _)| reschedule(&app, "bk-moves", id, &to)),
    )
    .await;
    let moved: Vec<bool> = answers
        .iter()
        .map(|(status, body)| match status {
            200 => true,
            409 => {
                assert_eq!(body["exception"], "SLOT_UNAVAILABLE", "{body}");
                false
            }
            _ => panic!("neither 200 nor 409: {status} {body}"),
        })
        .collect();
    assert_eq!(moved.iter().filter(|m| **m).count(), 3, "{answers:?}");
    assert_eq!(left(&app, "bk-moves", target).await, 0);
    for ((id, old), moved) in ids.iter().zip(&moved) {
        let want = if *moved { target } else { *old };
        assert_eq!(
            app.query_by_id(id).await["_desired_time"],
            iso(want),
            "{id}"
        );
    }
    let mut freed = 0;
    for old in &olds {
        freed += left(&app, "bk-moves", *old).await;
    }
    assert_eq!(freed, 3, "the winners' old seats are free, no other");
}

/// A customer in Asia/Kolkata: its booking in slot+5m (1 seat each), and a full slot+10m.
async fn kolkata_booking(app: &TestApp) -> (String, DateTime<Utc>, DateTime<Utc>) {
    let slot = open_slot(app, "bk-zoned", Span::minutes(20)).await;
    let (status, body) = book(
        app,
        "bk-zoned",
        "5551200",
        &iso(slot),
        &[("_timezone", "Asia/Kolkata")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["_id"].as_str().unwrap().to_owned();
    let full = slot + Span::minutes(10);
    book_ok(app, "bk-zoned", "5551201", full).await;
    // A move keeps the customer's zone.
    let (status, moved) = reschedule(app, "bk-zoned", &id, &iso(slot + Span::minutes(5))).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["_timezone"], "Asia/Kolkata", "{moved}");
    assert_eq!(
        moved["_local_time"],
        local(slot + Span::minutes(5), chrono_tz::Asia::Kolkata)
    );
    (id, slot, full)
}

/// A 409 whose offered slots show local times in Asia/Kolkata.
fn check_kolkata(what: &str, body: &Value) {
    assert_eq!(body["exception"], "SLOT_UNAVAILABLE", "{what}: {body}");
    let offered = body["_available_slots"]
        .as_array()
        .expect("_available_slots");
    assert!(!offered.is_empty(), "{what}: {body}");
    for s in offered {
        let t = parse(s["utcTime"].as_str().unwrap());
        assert_eq!(
            s["localTime"],
            local(t, chrono_tz::Asia::Kolkata),
            "{what}: {s}"
        );
    }
}

#[tokio::test]
async fn a_move_keeps_the_customers_zone() {
    let zoned = always_open("bk-zoned", "bk-zoned", "", 1, "");
    let app = TestApp::builder().with_scenario(&zoned).spawn().await;
    let (id, _, _) = kolkata_booking(&app).await;
    let (_, too_soon) = reschedule(&app, "bk-zoned", &id, &iso(Utc::now())).await;
    check_kolkata("too soon", &too_soon);
    // `_timezone` on the move changes the zone.
    let later = open_slot(&app, "bk-zoned", Span::minutes(60)).await;
    let path = format!("/genesys/1/service/callback/bk-zoned/{id}");
    let (status, moved) = put_form(
        &app,
        &path,
        &[
            ("_new_desired_time", &iso(later)),
            ("_timezone", "America/New_York"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["_timezone"], "America/New_York", "{moved}");
    assert_eq!(
        moved["_local_time"],
        local(later, chrono_tz::America::New_York)
    );
    let (status, body) = put_form(
        &app,
        &path,
        &[
            ("_new_desired_time", &iso(later)),
            ("_timezone", "Mars/Base"),
        ],
    )
    .await;
    assert_refused(
        status,
        &body,
        400,
        "INVALID_PARAMETER",
        "_timezone",
        "bad zone",
    );
}

#[tokio::test]
async fn a_move_refused_for_a_full_slot_shows_times_in_the_customers_zone() {
    let zoned = always_open("bk-zoned", "bk-zoned", "", 1, "");
    let app = TestApp::builder().with_scenario(&zoned).spawn().await;
    let (id, _, full) = kolkata_booking(&app).await;
    let (_, refused) = reschedule(&app, "bk-zoned", &id, &iso(full)).await;
    check_kolkata("full", &refused);
}

/// Last Sunday of `month` in `year`.
fn last_sunday(year: i32, month: u32) -> NaiveDate {
    let mut d = NaiveDate::from_ymd_opt(year, month + 1, 1).unwrap() - chrono::Days::new(1);
    while d.weekday() != Weekday::Sun {
        d = d - chrono::Days::new(1);
    }
    d
}

#[tokio::test]
async fn daylight_saving_days_skip_the_gap_and_offer_both_passes() {
    let london = booked("bk-dst", "bk-dst").always_open(
        "timezone = \"Europe/London\"\nslot = \"30m\"\nhorizon = \"366d\"",
        1,
        "",
    );
    let app = TestApp::builder().with_scenario(&london).spawn().await;
    let tz = chrono_tz::Europe::London;
    let soon = Utc::now().date_naive() + chrono::Days::new(2);
    let next = |month: u32| {
        let this = last_sunday(soon.year(), month);
        if this > soon {
            this
        } else {
            last_sunday(soon.year() + 1, month)
        }
    };
    // Spring: 01:00-02:00 does not exist (46 slots); autumn: it comes twice (50).
    let spring = next(3);
    let autumn = next(10);
    // The horizon is at most 366 days: a change a year away is not tested
    // (the other one, about six months away, is).
    let reachable = |d: NaiveDate| d < (Utc::now() + Span::days(364)).date_naive();
    for (date, count) in [(spring, 46), (autumn, 50)] {
        if !reachable(date) {
            continue;
        }
        let midnight = |d: NaiveDate| {
            tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
                .single()
                .unwrap()
                .with_timezone(&Utc)
        };
        let (start, end) = (midnight(date), midnight(date + chrono::Days::new(1)));
        let query = format!("start={}&end={}", iso(start), iso(end));
        let body = v2(&app, "bk-dst", &query).await;
        let slots = v2_slots(&body);
        assert_eq!(slots.len(), count, "{date}: {body}");
        let starts: Vec<DateTime<Utc>> = slots
            .iter()
            .map(|s| parse(s["utcTime"].as_str().unwrap()))
            .collect();
        // Every 30 minutes of real time, none twice, all on that local date.
        for pair in starts.windows(2) {
            assert_eq!(pair[1] - pair[0], Span::minutes(30), "{date}: {pair:?}");
        }
        for (s, t) in slots.iter().zip(&starts) {
            assert_eq!(s["localTime"], local(*t, tz), "{s}");
            assert_eq!(t.with_timezone(&tz).date_naive(), date, "{s}");
        }
        let wall: Vec<String> = slots
            .iter()
            .map(|s| s["localTime"].as_str().unwrap()[11..16].to_owned())
            .collect();
        let ones = wall.iter().filter(|w| w.starts_with("01:")).count();
        assert_eq!(ones, if date == spring { 0 } else { 4 }, "{date}: {wall:?}");
    }
    if reachable(autumn) {
        // Each pass of the repeated hour is its own slot.
        let first = tz
            .from_local_datetime(&autumn.and_hms_opt(1, 30, 0).unwrap())
            .earliest()
            .unwrap()
            .with_timezone(&Utc);
        let second = first + Span::hours(1);
        for (t, offset) in [(first, "+01:00"), (second, "+00:00")] {
            let (status, body) = book(&app, "bk-dst", "5551300", &iso(t), &[]).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["_desired_time"], iso(t), "{body}");
            assert_eq!(
                body["_local_time"],
                format!("{autumn}T01:30:00.000{offset}"),
                "{body}"
            );
        }
    }
    if reachable(spring) {
        // Just before the spring jump: the 00:30 slot, which ends at 02:00 BST.
        let gap = spring.and_hms_opt(1, 0, 0).unwrap().and_utc(); // 01:00Z = 02:00 BST
        let (status, body) =
            book(&app, "bk-dst", "5551301", &iso(gap - Span::minutes(1)), &[]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["_desired_time"],
            iso(gap - Span::minutes(30)),
            "{body}"
        );
        assert_eq!(body["_local_time"], format!("{spring}T00:30:00.000+00:00"));
    }
}

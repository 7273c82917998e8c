//! Office hours over HTTP: GMS's Calendar Service for a scenario's business
//! hours, and `_enable_reject_out_of_office_hours` on create.
//!
//! The server runs on the real clock, so "closed now" is a schedule open
//! every day in UTC except yesterday, today and tomorrow (closed all day
//! whichever of them the test runs in), and "open now" one open every day.

use chrono::{DateTime, Duration, NaiveTime, Utc};
use engine::testing::{open_every_day, ScenarioBuilder};
use serde_json::Value;
use tests::time::{iso, parse};
use tests::TestApp;

/// A chat-delay copy in queue `q` with `[_schedule]` = `schedule`.
fn with_hours(name: &str, schedule: &str) -> ScenarioBuilder {
    ScenarioBuilder::chat_delay()
        .name(name)
        .unset("_find_agent_timeout")
        .unset("_chat_parameters")
        .schedule(schedule)
}

fn midnight(t: DateTime<Utc>) -> DateTime<Utc> {
    t.date_naive().and_time(NaiveTime::MIN).and_utc()
}

/// UTC, open all day every day but yesterday, today and tomorrow.
fn closed_now() -> String {
    let today = Utc::now().date_naive();
    let closed: String = [-1, 0, 1]
        .iter()
        .map(|d| format!("\"{}\" = []\n", today + Duration::days(*d)))
        .collect();
    format!(
        "timezone = \"UTC\"\nslot = \"15m\"\n[_schedule.hours]\n{}\n[_schedule.exceptions]\n{closed}",
        open_every_day()
    )
}

fn open_now() -> String {
    format!(
        "timezone = \"UTC\"\nslot = \"15m\"\n[_schedule.hours]\n{}",
        open_every_day()
    )
}

/// London, Mondays 09:00-12:00 and 13:00-17:30: for fixed windows.
const LONDON: &str = "timezone = \"Europe/London\"\nslot = \"30m\"\n[_schedule.hours]\nmon = [\"09:00-12:00\", \"13:00-17:30\"]\n";

const REJECT: (&str, &str) = ("_enable_reject_out_of_office_hours", "true");

async fn app() -> TestApp {
    TestApp::builder()
        .with_scenario(&with_hours("closed", &closed_now()))
        .with_scenario(&with_hours("open", &open_now()))
        .with_scenario(&with_hours("london", LONDON))
        .with_scenario(&with_hours("closed-reject", &closed_now()).key(REJECT.0, REJECT.1))
        .with_scenario(&with_hours("open-reject", &open_now()).key(REJECT.0, REJECT.1))
        .spawn()
        .await
}

async fn calendar(app: &TestApp, scenario: &str, query: &str) -> Value {
    let (status, body) = app
        .get(&format!("/genesys/1/service/{scenario}?{query}"))
        .await;
    assert_eq!(status, 200, "calendar {scenario}?{query}: {body}");
    assert_eq!(body["error"], Value::Null, "{body}");
    body
}

fn periods(body: &Value) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    body["periods"]
        .as_array()
        .unwrap_or_else(|| panic!("periods: {body}"))
        .iter()
        .map(|p| {
            (
                parse(p["start"].as_str().unwrap()),
                parse(p["end"].as_str().unwrap()),
            )
        })
        .collect()
}

/// Without parameters the window is the instant now (GMS): a period is
/// listed iff the office is open now.
#[tokio::test]
async fn open_now_and_closed_now() {
    let app = app().await;
    let open = calendar(&app, "open", "").await;
    assert_eq!(open["open"], true, "{open}");
    assert_eq!(open["nextOpening"], Value::Null);
    assert_eq!(open["alwaysOpen"], false);
    assert_eq!(open["timezone"], "UTC");
    let listed = periods(&open);
    assert_eq!(listed.len(), 1, "{open}");
    let now = Utc::now();
    assert!(listed[0].0 <= now && now < listed[0].1, "{open}");
    assert_eq!(
        listed[0].1 - listed[0].0,
        Duration::days(1),
        "the day's range, whole"
    );

    let closed = calendar(&app, "closed", "").await;
    assert_eq!(closed["open"], false, "{closed}");
    assert!(periods(&closed).is_empty(), "{closed}");
    let reopens = midnight(Utc::now()) + Duration::days(2);
    assert_eq!(closed["nextOpening"], iso(reopens), "{closed}");

    // Four days ahead: the days after tomorrow are open.
    let ahead = calendar(&app, "closed", "number-of-days=4").await;
    assert_eq!(ahead["open"], false);
    let listed = periods(&ahead);
    assert!(listed.len() >= 2, "{ahead}");
    assert_eq!(listed[0], (reopens, reopens + Duration::days(1)), "{ahead}");
}

/// A fixed window: each range of each local day, whole, with local times.
#[tokio::test]
async fn a_window_lists_the_ranges_of_each_day() {
    let app = app().await;
    // Monday 2030-01-07 (GMT) and Monday 2030-07-08 (BST, UTC+1).
    let winter = calendar(
        &app,
        "london",
        "start=2030-01-07T00:00:00.000Z&end=2030-01-07T23:59:00.000Z",
    )
    .await;
    assert_eq!(winter["timezone"], "Europe/London");
    assert_eq!(winter["open"], false, "midnight is closed");
    assert_eq!(winter["nextOpening"], "2030-01-07T09:00:00.000Z");
    let p = &winter["periods"];
    assert_eq!(p.as_array().unwrap().len(), 2, "{winter}");
    assert_eq!(p[0]["start"], "2030-01-07T09:00:00.000Z");
    assert_eq!(p[0]["end"], "2030-01-07T12:00:00.000Z");
    assert_eq!(p[0]["localStart"], "2030-01-07T09:00:00.000+00:00");
    assert_eq!(p[1]["start"], "2030-01-07T13:00:00.000Z");
    assert_eq!(p[1]["localEnd"], "2030-01-07T17:30:00.000+00:00");

    let summer = calendar(&app, "london", "start=2030-07-08T10:00:00.000Z").await;
    assert_eq!(summer["open"], true, "11:00 BST: {summer}");
    assert_eq!(summer["periods"][0]["start"], "2030-07-08T08:00:00.000Z");
    assert_eq!(
        summer["periods"][0]["localStart"],
        "2030-07-08T09:00:00.000+01:00"
    );

    // A week from the Monday with number-of-days: only Mondays are open.
    let week = calendar(
        &app,
        "london",
        "start=2030-01-07T12:30:00.000Z&number-of-days=7",
    )
    .await;
    let starts: Vec<String> = periods(&week).iter().map(|p| iso(p.0)).collect();
    assert_eq!(
        starts,
        ["2030-01-07T13:00:00.000Z", "2030-01-14T09:00:00.000Z"].map(String::from),
        "lunch at the start; the next Monday's afternoon starts after the window: {week}"
    );
}

/// A scenario without `[_schedule]` is always open: its periods are the UTC days.
#[tokio::test]
async fn a_scenario_without_hours_is_always_open() {
    let app = app().await;
    let body = calendar(
        &app,
        "chat-delay",
        "start=2030-01-07T10:00:00.000Z&number-of-days=1",
    )
    .await;
    assert_eq!(body["open"], true);
    assert_eq!(body["alwaysOpen"], true);
    assert_eq!(body["nextOpening"], Value::Null);
    let starts: Vec<String> = periods(&body).iter().map(|p| iso(p.0)).collect();
    assert_eq!(
        starts,
        ["2030-01-07T00:00:00.000Z", "2030-01-08T00:00:00.000Z"].map(String::from)
    );
}

#[tokio::test]
async fn bad_parameters_are_refused_by_name() {
    let app = app().await;
    let cases: &[(&str, u16, &str)] = &[
        ("start=yesterday", 400, "start"),
        ("end=2030-13-01T00:00:00Z", 400, "end"),
        (
            "start=2030-01-07T10:00:00Z&end=2030-01-07T09:00:00Z",
            400,
            "end",
        ),
        (
            "start=2030-01-07T10:00:00Z&end=2031-02-07T09:00:00Z",
            400,
            "end",
        ),
        ("number-of-days=-1", 400, "number-of-days"),
        ("number-of-days=367", 400, "number-of-days"),
        ("number-of-days=two", 400, "number-of-days"),
    ];
    for (query, status, field) in cases {
        let (got, body) = app.get(&format!("/genesys/1/service/london?{query}")).await;
        assert_eq!(got, *status, "?{query}: {body}");
        assert_eq!(body["exception"], "INVALID_PARAMETER", "?{query}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{field}:")),
            "?{query}: {body}"
        );
    }
    let (status, body) = app.get("/genesys/1/service/no-such-scenario").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no-such-scenario"),
        "{body}"
    );
}

async fn create(app: &TestApp, scenario: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut fields = vec![("_customer_number", "4082652649")];
    fields.extend_from_slice(extra);
    app.post_form(&format!("/genesys/1/service/callback/{scenario}"), &fields)
        .await
}

/// `_enable_reject_out_of_office_hours`: an immediate callback while closed
/// is refused naming `_desired_time` and the next opening (with the code
/// Genesys Widgets shows as "Office closed"); while open it is taken; off,
/// closed hours do not matter.
#[tokio::test]
async fn immediate_callbacks_are_refused_while_closed_when_asked() {
    let app = app().await;
    let reopens = iso(midnight(Utc::now()) + Duration::days(2));
    for extra in [&[][..], &[("_desired_time", "now")][..]] {
        let (status, body) = create(&app, "closed-reject", extra).await;
        assert_eq!(status, 400, "{extra:?}: {body}");
        assert_eq!(body["exception"], "OUT_OF_OFFICE_HOURS", "{body}");
        assert_eq!(body["code"], 7042, "{body}");
        assert_eq!(body["_next_opening"], reopens.as_str(), "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.starts_with("_desired_time:"), "{body}");
        assert!(message.contains(&reopens), "says when it opens: {body}");
    }
    let (status, body) = create(&app, "open-reject", &[]).await;
    assert_eq!(status, 200, "open: {body}");
    assert!(body["_id"].is_string(), "{body}");
    let (status, body) = create(&app, "closed", &[]).await;
    assert_eq!(status, 200, "the option is off by default: {body}");
}

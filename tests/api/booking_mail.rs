//! Appointment notices of booked callbacks, end to end: the real server
//! sending to a local SMTP sink (and a local SMS endpoint) when a slot is
//! booked, moved, cancelled, and before it starts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Duration as Span, Utc};
use engine::testing::ScenarioBuilder;
use runtime::notices::MailConfig;
use serde_json::{json, Value};
use tests::smtp::{Received, SmtpSink};
use tests::time::{ceil5, iso};
use tests::{TestApp, WAIT};

use crate::booking::{always_open, book, open_slot, reschedule};

/// How long to wait for a message that must not come.
const QUIET: Duration = Duration::from_millis(700);

async fn app_with_mail(sink: &SmtpSink, scenario: &ScenarioBuilder) -> TestApp {
    TestApp::builder()
        .with_scenario(scenario)
        .mail(MailConfig {
            smtp_url: sink.url(),
            from: "callbackd <noreply@example.com>".into(),
        })
        .spawn()
        .await
}

async fn agent(app: &TestApp, id: &str, queues: &[&str], email: Option<&str>) {
    let body = json!({"name": id, "queues": queues, "max_concurrent": 1, "email": email});
    let (status, answer) = app.put_json(&format!("/api/v1/agents/{id}"), &body).await;
    assert_eq!(status, 200, "agent {id}: {answer}");
}

/// A content line of an ICS text, with folding undone.
fn ics_value(ics: &str, key: &str) -> Option<String> {
    ics.replace("\r\n ", "")
        .split("\r\n")
        .find_map(|l| l.strip_prefix(&format!("{key}:")).map(str::to_owned))
}

fn ics_time(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// The one message of `messages` whose envelope goes to `to`.
fn to<'a>(messages: &'a [Received], to: &str) -> &'a Received {
    let found: Vec<&Received> = messages.iter().filter(|m| m.to == [to]).collect();
    assert_eq!(found.len(), 1, "messages to {to}: {messages:#?}");
    found[0]
}

/// Waits for exactly `n` messages in all, then a moment more for any extra.
async fn exactly(sink: &SmtpSink, n: usize) -> Vec<Received> {
    let got = sink.wait_for(n, WAIT).await;
    assert!(got.len() >= n, "{} of {n} messages: {got:#?}", got.len());
    tokio::time::sleep(QUIET).await;
    let got = sink.received();
    assert_eq!(got.len(), n, "{got:#?}");
    got
}

const CUSTOMER: &str = "bob@example.com";
const AGENTS: [&str; 2] = ["ann@x.example", "carl@x.example"];
const OUTSIDER: &str = "olga@x.example";

/// Checks the invite of each of the three messages of one notice.
fn check_invites(
    messages: &[Received],
    method: &str,
    uid: &str,
    sequence: u32,
    start: DateTime<Utc>,
    join_url: &str,
) {
    for address in [CUSTOMER, AGENTS[0], AGENTS[1]] {
        let message = to(messages, address);
        assert_eq!(message.from, "noreply@example.com");
        assert_eq!(message.ics_method().as_deref(), Some(method), "{address}");
        let ics = message
            .ics()
            .unwrap_or_else(|| panic!("no invite to {address}"));
        assert_eq!(ics_value(&ics, "METHOD").as_deref(), Some(method), "{ics}");
        assert_eq!(ics_value(&ics, "UID").as_deref(), Some(uid), "{ics}");
        assert_eq!(
            ics_value(&ics, "SEQUENCE"),
            Some(sequence.to_string()),
            "{ics}"
        );
        assert_eq!(
            ics_value(&ics, "DTSTART"),
            Some(ics_time(start)),
            "{address}: {ics}"
        );
        assert_eq!(
            ics_value(&ics, "DTEND"),
            Some(ics_time(start + Span::minutes(5))),
            "{ics}"
        );
        assert_eq!(ics_value(&ics, "URL").as_deref(), Some(join_url), "{ics}");
        let status = if method == "CANCEL" {
            "CANCELLED"
        } else {
            "CONFIRMED"
        };
        assert_eq!(ics_value(&ics, "STATUS").as_deref(), Some(status), "{ics}");
    }
    assert!(
        messages.iter().all(|m| !m.to.iter().any(|t| t == OUTSIDER)),
        "an agent of another queue got mail"
    );
}

#[tokio::test]
async fn invites_go_to_the_customer_and_the_queue_agents_and_follow_the_booking() {
    let sink = SmtpSink::start().await;
    let scenario = always_open(
        "bkm-invite",
        "bkm-q",
        "title = \"Video appointment\"\njoin_url = \"{base_url}/video/{service_id}\"",
        2,
        "[_schedule.notifications]\ncustomer_email = true\nagent_email = true\n",
    );
    let app = app_with_mail(&sink, &scenario).await;
    agent(&app, "ann", &["bkm-q"], Some(AGENTS[0])).await;
    agent(&app, "carl", &["other-q", "bkm-q"], Some(AGENTS[1])).await;
    agent(&app, "dora", &["bkm-q"], None).await;
    agent(&app, "olga", &["other-q"], Some(OUTSIDER)).await;

    let slot = open_slot(&app, "bkm-invite", Span::minutes(20)).await;
    let (status, booked) = book(
        &app,
        "bkm-invite",
        "5550600",
        &iso(slot),
        &[("email", CUSTOMER), ("name", "Bob Markel")],
    )
    .await;
    assert_eq!(status, 200, "{booked}");
    let id = booked["_id"].as_str().unwrap().to_owned();
    let join_url = booked["_join_url"].as_str().expect("_join_url").to_owned();
    assert_eq!(join_url, format!("{}/video/{id}", app.base));
    let uid = format!("{id}@callbackd");

    let got = exactly(&sink, 3).await;
    check_invites(&got, "REQUEST", &uid, 0, slot, &join_url);
    let customer = to(&got, CUSTOMER);
    assert_eq!(
        customer.subject().as_deref(),
        Some("Your Video appointment is booked")
    );
    let text = customer.text_body().expect("text");
    assert!(text.contains("Hello Bob Markel"), "{text}");
    assert!(text.contains(&join_url), "{text}");
    for address in AGENTS {
        let subject = to(&got, address).subject().expect("subject");
        assert!(
            subject.starts_with("Booked: Video appointment with Bob Markel"),
            "{subject}"
        );
        let text = to(&got, address).text_body().expect("text");
        assert!(text.contains(&id), "the agent sees the service: {text}");
    }

    // Moved: the same event, a new version, the new start.
    let moved_to = slot + Span::minutes(15);
    let (status, moved) = reschedule(&app, "bkm-invite", &id, &iso(moved_to)).await;
    assert_eq!(status, 200, "{moved}");
    let got = exactly(&sink, 6).await;
    let moved_mail = &got[3..];
    check_invites(moved_mail, "REQUEST", &uid, 1, moved_to, &join_url);
    assert_eq!(
        to(moved_mail, CUSTOMER).subject().as_deref(),
        Some("Your Video appointment has moved")
    );

    // A refused move sends nothing.
    let (status, body) = reschedule(&app, "bkm-invite", &id, &iso(Utc::now())).await;
    assert_eq!(status, 409, "{body}");

    // Cancelled: the same event, cancelled, one more version.
    let (status, body) = app
        .delete(&format!("/genesys/1/service/callback/bkm-invite/{id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    let got = exactly(&sink, 9).await;
    let cancel_mail = &got[6..];
    check_invites(cancel_mail, "CANCEL", &uid, 2, moved_to, &join_url);
    assert_eq!(
        to(cancel_mail, CUSTOMER).subject().as_deref(),
        Some("Your Video appointment is cancelled")
    );
}

type Posts = Arc<Mutex<Vec<Value>>>;

/// A local SMS gateway that keeps every JSON body posted to it; its URL.
async fn sms_gateway() -> (String, Posts) {
    let posts: Posts = Arc::default();
    let app = Router::new()
        .route(
            "/sms",
            post(
                |State(posts): State<Posts>, Json(body): Json<Value>| async move {
                    posts.lock().unwrap().push(body);
                    Json(json!({"ok": true}))
                },
            ),
        )
        .with_state(posts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, posts)
}

#[tokio::test]
async fn the_reminder_goes_by_email_and_sms_before_the_slot() {
    let sink = SmtpSink::start().await;
    let (sms_url, posts) = sms_gateway().await;
    // The slot at least 3 minutes away, the reminder 2 s from now.
    let now = Utc::now();
    let slot = ceil5(now + Span::minutes(3));
    let before = (slot - now - Span::seconds(2)).num_seconds();
    let scenario = always_open(
        "bkm-remind",
        "bkm-remind",
        "title = \"Video appointment\"\njoin_url = \"https://meet.example.com/{service_id}\"",
        2,
        &format!(
            "[_schedule.notifications]\nreminder = \"{before}s\"\nreminder_email = true\n\
             reminder_sms = true\nsms_url = \"{sms_url}\"\n"
        ),
    );
    let app = app_with_mail(&sink, &scenario).await;
    agent(&app, "ann", &["bkm-remind"], Some(AGENTS[0])).await;
    let (status, booked) = book(
        &app,
        "bkm-remind",
        "5550700",
        &iso(slot),
        &[("email", CUSTOMER), ("name", "Bob Markel")],
    )
    .await;
    assert_eq!(status, 200, "{booked}");
    let id = booked["_id"].as_str().unwrap().to_owned();
    let (_, full) = app.get(&format!("/api/v1/services/{id}")).await;
    let remind_at = tests::time::parse(
        full["booking"]["reminder_at"]
            .as_str()
            .expect("reminder_at"),
    );
    assert_eq!(remind_at, slot - Span::seconds(before), "{full}");
    assert_eq!(
        full["timers"]["reminder"].as_str().map(tests::time::parse),
        Some(remind_at),
        "{full}"
    );
    // Only the reminder is on: nothing at booking.
    assert!(sink.received().is_empty(), "{:#?}", sink.received());
    assert!(posts.lock().unwrap().is_empty());

    let got = sink.wait_for(1, WAIT).await;
    assert!(Utc::now() >= remind_at, "reminded early");
    assert_eq!(got.len(), 1, "{got:#?}");
    let reminder = &got[0];
    assert_eq!(
        reminder.to,
        [CUSTOMER],
        "the reminder goes to the customer only"
    );
    let subject = reminder.subject().expect("subject");
    assert!(
        subject.starts_with("Reminder: Video appointment at"),
        "{subject}"
    );
    let text = reminder.text_body().expect("text");
    assert!(
        text.contains(&format!("https://meet.example.com/{id}")),
        "{text}"
    );
    assert!(reminder.ics().is_none(), "a reminder carries no invite");

    let deadline = tokio::time::Instant::now() + WAIT;
    let sms = loop {
        if let Some(body) = posts.lock().unwrap().first().cloned() {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "no SMS");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(sms["to"], "5550700", "{sms}");
    assert_eq!(sms["kind"], "reminder", "{sms}");
    assert_eq!(sms["service_id"], id, "{sms}");
    let text = sms["text"].as_str().expect("text");
    assert!(
        text.starts_with("Reminder: your Video appointment"),
        "{sms}"
    );
    tokio::time::sleep(QUIET).await;
    assert_eq!(sink.received().len(), 1);
    assert_eq!(posts.lock().unwrap().len(), 1, "one SMS");
}

#[tokio::test]
async fn with_notifications_off_a_booking_sends_nothing() {
    let sink = SmtpSink::start().await;
    let scenario = always_open(
        "bkm-quiet",
        "bkm-quiet",
        "join_url = \"{base_url}/video/{service_id}\"",
        2,
        "",
    );
    let app = app_with_mail(&sink, &scenario).await;
    agent(&app, "ann", &["bkm-quiet"], Some(AGENTS[0])).await;
    let slot = open_slot(&app, "bkm-quiet", Span::minutes(20)).await;
    let (status, booked) = book(
        &app,
        "bkm-quiet",
        "5550800",
        &iso(slot),
        &[("email", CUSTOMER), ("name", "Bob Markel")],
    )
    .await;
    assert_eq!(status, 200, "{booked}");
    let id = booked["_id"].as_str().unwrap();
    let (status, body) = reschedule(&app, "bkm-quiet", id, &iso(slot + Span::minutes(5))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .delete(&format!("/genesys/1/service/callback/bkm-quiet/{id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(QUIET * 2).await;
    assert!(sink.received().is_empty(), "{:#?}", sink.received());
}

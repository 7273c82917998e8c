//! Appointment notices through `Notifier` to a local SMTP sink and a local
//! SMS endpoint: who gets which message, the attached invite, retries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{TimeZone, Utc};
use runtime::notices::{
    AppointmentNotice, MailConfig, NoticeKind, Notifier, NotifierStats, SmsTarget,
};
use serde_json::Value;
use tests::smtp::{Received, SmtpSink};

const WAIT: Duration = Duration::from_secs(10);

/// The HTTP client `callbackd` posts SMS through.
fn http() -> Arc<dyn push::outbound::HttpPost> {
    http_front::outbound::ReqwestPost::shared().expect("HTTP client")
}

const MANAGE: &str = "https://cc.example/booking/svc-7?token=s3cr3t";

fn notice(kind: NoticeKind, sequence: u32) -> AppointmentNotice {
    AppointmentNotice {
        kind,
        service_id: "svc-7".into(),
        title: "Video appointment".into(),
        start: Utc.with_ymd_and_hms(2026, 11, 23, 14, 0, 0).unwrap(),
        end: Utc.with_ymd_and_hms(2026, 11, 23, 14, 15, 0).unwrap(),
        timezone: chrono_tz::America::New_York,
        sequence,
        join_url: Some("https://meet.example.com/j/abc".into()),
        manage_url: Some(MANAGE.into()),
        customer_name: Some("Bob Markel".into()),
        customer_email: Some("bob@example.com".into()),
        agent_emails: vec!["ann@example.com".into(), "carl@example.com".into()],
        sms: None,
    }
}

fn notifier(sink: &SmtpSink) -> Arc<Notifier> {
    Arc::new(
        Notifier::new(
            Some(MailConfig {
                smtp_url: sink.url(),
                from: "callbackd <noreply@example.com>".into(),
            }),
            http(),
        )
        .expect("notifier")
        .with_backoff(Duration::from_millis(20)),
    )
}

/// The one message whose envelope goes to `to`.
fn to<'a>(messages: &'a [Received], to: &str) -> &'a Received {
    let found: Vec<&Received> = messages.iter().filter(|m| m.to == [to]).collect();
    assert_eq!(found.len(), 1, "messages to {to}: {messages:#?}");
    found[0]
}

/// A content line of an ICS text, with folding undone.
fn ics_value(ics: &str, key: &str) -> Option<String> {
    ics.replace("\r\n ", "")
        .split("\r\n")
        .find_map(|l| l.strip_prefix(&format!("{key}:")).map(str::to_owned))
}

#[tokio::test]
async fn booked_goes_to_the_customer_and_each_agent_with_the_invite() {
    let sink = SmtpSink::start().await;
    let notifier = notifier(&sink);
    notifier.spawn(notice(NoticeKind::Booked, 0));
    let got = sink.wait_for(3, WAIT).await;
    assert_eq!(got.len(), 3, "{got:#?}");

    let customer = to(&got, "bob@example.com");
    assert_eq!(customer.from, "noreply@example.com");
    assert_eq!(
        customer.subject().as_deref(),
        Some("Your Video appointment is booked")
    );
    // Each message names only its own recipient.
    assert_eq!(customer.header("To").as_deref(), Some("bob@example.com"));
    let message_id = customer.header("Message-ID").expect("Message-ID");
    assert!(message_id.ends_with("@example.com"), "{message_id}");
    assert!(!customer.raw.contains("ann@example.com"));
    let text = customer.text_body().expect("text body");
    assert!(
        text.contains("Mon 23 Nov 2026, 09:00–09:15 (America/New_York)"),
        "{text}"
    );
    assert!(text.contains("https://meet.example.com/j/abc"), "{text}");
    assert!(
        text.contains(&format!("Change or cancel: {MANAGE}")),
        "{text}"
    );
    assert_eq!(customer.content_type().as_deref(), Some("multipart/mixed"));
    assert_eq!(customer.ics_method().as_deref(), Some("REQUEST"));
    assert_eq!(customer.ics_name().as_deref(), Some("invite.ics"));
    let ics = customer.ics().expect("invite");
    assert_eq!(ics_value(&ics, "METHOD").as_deref(), Some("REQUEST"));
    assert_eq!(ics_value(&ics, "UID").as_deref(), Some("svc-7@callbackd"));
    assert_eq!(ics_value(&ics, "SEQUENCE").as_deref(), Some("0"));
    assert_eq!(
        ics_value(&ics, "DTSTART").as_deref(),
        Some("20261123T140000Z")
    );
    assert!(ics.contains("\r\n"), "CRLF lost in transit");
    // The customer's invite carries the link to change or cancel (folded
    // as RFC 5545 folds long lines).
    assert!(ics.replace("\r\n ", "").contains(MANAGE), "{ics}");

    for agent in ["ann@example.com", "carl@example.com"] {
        let message = to(&got, agent);
        assert_eq!(message.header("To").as_deref(), Some(agent));
        assert!(!message.raw.contains("carl@example.com") || agent == "carl@example.com");
        assert!(!message.raw.contains("ann@example.com") || agent == "ann@example.com");
        let subject = message.subject().expect("subject");
        assert!(
            subject.starts_with("Booked: Video appointment with Bob Markel"),
            "{subject}"
        );
        // The customer's link is the customer's alone.
        assert!(!message
            .raw
            .replace("\r\n ", "")
            .replace("=\r\n", "")
            .contains("s3cr3t"));
        let ics = message.ics().expect("agent invite");
        assert_eq!(ics_value(&ics, "UID").as_deref(), Some("svc-7@callbackd"));
        assert_eq!(message.ics_method().as_deref(), Some("REQUEST"));
    }
    // The sink has the messages a moment before the notifier reads its 250s.
    let want = NotifierStats {
        sent: 3,
        failed: 0,
        skipped: 0,
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while notifier.stats() != want && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(notifier.stats(), want);
}

#[tokio::test]
async fn cancelled_and_rescheduled_keep_the_uid_and_raise_the_sequence() {
    let sink = SmtpSink::start().await;
    let notifier = notifier(&sink);
    let mut moved = notice(
        NoticeKind::Rescheduled {
            previous_start: Utc.with_ymd_and_hms(2026, 11, 22, 15, 30, 0).unwrap(),
        },
        1,
    );
    moved.agent_emails.clear();
    notifier.send(moved).await;
    let mut cancelled = notice(NoticeKind::Cancelled, 2);
    cancelled.agent_emails.clear();
    notifier.send(cancelled).await;
    let got = sink.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2, "{got:#?}");

    let moved = &got[0];
    assert_eq!(
        moved.subject().as_deref(),
        Some("Your Video appointment has moved")
    );
    let text = moved.text_body().unwrap();
    assert!(
        text.contains("Sun 22 Nov 2026, 10:30 (America/New_York)"),
        "{text}"
    );
    let moved_ics = moved.ics().unwrap();
    assert_eq!(ics_value(&moved_ics, "SEQUENCE").as_deref(), Some("1"));

    let cancelled = &got[1];
    assert_eq!(
        cancelled.subject().as_deref(),
        Some("Your Video appointment is cancelled")
    );
    assert_eq!(cancelled.ics_method().as_deref(), Some("CANCEL"));
    let ics = cancelled.ics().unwrap();
    assert_eq!(ics_value(&ics, "METHOD").as_deref(), Some("CANCEL"));
    assert_eq!(ics_value(&ics, "STATUS").as_deref(), Some("CANCELLED"));
    assert_eq!(ics_value(&ics, "SEQUENCE").as_deref(), Some("2"));
    assert_eq!(ics_value(&ics, "UID"), ics_value(&moved_ics, "UID"));
}

type Posts = Arc<Mutex<Vec<Value>>>;

/// An SMS gateway on 127.0.0.1 that answers 503 to the first `fail` posts.
async fn sms_gateway(fail: usize) -> (String, Posts) {
    let posts: Posts = Arc::default();
    let app = Router::new()
        .route(
            "/sms",
            post(
                |State((posts, fail)): State<(Posts, usize)>, Json(body): Json<Value>| async move {
                    let mut posts = posts.lock().unwrap();
                    posts.push(body);
                    if posts.len() <= fail {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::ACCEPTED
                    }
                },
            ),
        )
        .with_state((posts.clone(), fail));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, posts)
}

#[tokio::test]
async fn reminder_mails_the_customer_only_and_posts_the_sms() {
    let sink = SmtpSink::start().await;
    let notifier = notifier(&sink);
    let (url, posts) = sms_gateway(1).await;
    let mut reminder = notice(NoticeKind::Reminder, 0);
    reminder.sms = Some(SmsTarget {
        url,
        to: "+15550100".into(),
    });
    notifier.send(reminder).await;

    let got = sink.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].to, ["bob@example.com"]);
    assert_eq!(
        got[0].subject().as_deref(),
        Some("Reminder: Video appointment at Mon 23 Nov 2026, 09:00 (America/New_York)")
    );
    assert!(got[0].ics().is_none(), "a reminder carries no invite");

    // The first post was answered 503 and retried.
    let posts = posts.lock().unwrap().clone();
    assert_eq!(posts.len(), 2, "{posts:#?}");
    let body = &posts[1];
    assert_eq!(body["to"], "+15550100");
    assert_eq!(body["service_id"], "svc-7");
    assert_eq!(body["kind"], "reminder");
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("09:00 (America/New_York)"), "{text}");
    assert!(text.contains("https://meet.example.com/j/abc"), "{text}");
    assert_eq!(
        notifier.stats(),
        NotifierStats {
            sent: 2,
            failed: 0,
            skipped: 0
        }
    );
}

#[tokio::test]
async fn two_451s_then_delivered_on_the_third_attempt() {
    let sink = SmtpSink::start().await;
    let notifier = notifier(&sink);
    sink.fail_next(2);
    let mut booked = notice(NoticeKind::Booked, 0);
    booked.agent_emails.clear();
    notifier.send(booked).await;
    let got = sink.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(sink.refused(), 2);
    assert_eq!(notifier.stats().sent, 1);
    assert_eq!(notifier.stats().failed, 0);

    // Three refusals exhaust the attempts: counted, not delivered.
    sink.fail_next(3);
    let mut booked = notice(NoticeKind::Booked, 0);
    booked.agent_emails.clear();
    notifier.send(booked).await;
    assert_eq!(sink.refused(), 5);
    assert_eq!(sink.received().len(), 1);
    assert_eq!(notifier.stats().failed, 1);
}

#[tokio::test]
async fn bad_addresses_are_skipped_and_the_rest_still_goes() {
    let sink = SmtpSink::start().await;
    let notifier = notifier(&sink);
    let mut booked = notice(NoticeKind::Booked, 0);
    booked.customer_email = Some("not an address".into());
    booked.agent_emails = vec!["ann@example.com".into(), "bad@@example".into()];
    notifier.send(booked).await;
    let got = sink.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, ["ann@example.com"]);
    assert_eq!(
        notifier.stats(),
        NotifierStats {
            sent: 1,
            failed: 0,
            skipped: 2
        }
    );
}

#[tokio::test]
async fn without_a_mail_config_only_the_sms_goes() {
    let notifier = Notifier::new(None, http())
        .unwrap()
        .with_backoff(Duration::from_millis(20));
    let (url, posts) = sms_gateway(0).await;
    let mut reminder = notice(NoticeKind::Reminder, 0);
    reminder.sms = Some(SmsTarget {
        url,
        to: "+15550100".into(),
    });
    notifier.send(reminder).await;
    assert_eq!(posts.lock().unwrap().len(), 1);
    assert_eq!(
        notifier.stats(),
        NotifierStats {
            sent: 1,
            failed: 0,
            skipped: 1
        }
    );
}

#[tokio::test]
async fn an_unreachable_relay_fails_quietly() {
    // A port nothing listens on: bind, note it, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let notifier = Notifier::new(
        Some(MailConfig {
            smtp_url: format!("smtp://127.0.0.1:{port}?tls=none"),
            from: "noreply@example.com".into(),
        }),
        http(),
    )
    .unwrap()
    .with_backoff(Duration::from_millis(10));
    let mut booked = notice(NoticeKind::Booked, 0);
    booked.agent_emails.clear();
    notifier.send(booked).await;
    assert_eq!(notifier.stats().failed, 1);
}

//! The customer's booking link (`_manage_url`, `/api/v1/bookings/{id}`):
//! the token proves the customer; with it the booking is seen, moved,
//! downloaded as an invite and cancelled; without it, or with another
//! booking's, nothing is found, and nothing changes.

use chrono::Duration as Span;
use serde_json::json;
use tests::time::iso;
use tests::TestApp;

use crate::booking::{always_open, book, left, open_slot};

async fn app() -> TestApp {
    TestApp::builder()
        .with_scenario(&always_open("linked", "linked", "", 2, ""))
        // Enters its queue two hours before the slot: at once.
        .with_scenario(&always_open(
            "linked-early",
            "linked",
            "",
            2,
            "[_schedule.buffers]\nenter_queue = \"2h\"",
        ))
        .spawn()
        .await
}

/// Books the first open slot an hour ahead; (id, token, manage url, slot).
async fn booked(
    app: &TestApp,
    customer: &str,
) -> (String, String, String, chrono::DateTime<chrono::Utc>) {
    let t = open_slot(app, "linked", Span::hours(1)).await;
    let (status, body) = book(
        app,
        "linked",
        customer,
        &iso(t),
        &[("name", "Fatima Al-Ali")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["_id"].as_str().unwrap().to_owned();
    let url = body["_manage_url"]
        .as_str()
        .expect("_manage_url")
        .to_owned();
    let (path, token) = url.split_once("?token=").unwrap();
    assert!(path.ends_with(&format!("/booking/{id}")), "{url}");
    assert!(
        token.len() >= 32 && token.chars().all(|c| c.is_ascii_hexdigit()),
        "{token}"
    );
    (id, token.to_owned(), url, t)
}

#[tokio::test]
async fn the_link_shows_moves_downloads_and_cancels_the_booking() {
    let app = app().await;
    let (id, token, _, t) = booked(&app, "5550101").await;
    let path = |tail: &str| format!("/api/v1/bookings/{id}{tail}?token={token}");

    let (status, seen) = app.get(&path("")).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["_desired_time"], iso(t));
    assert_eq!(seen["_callback_state"], "SCHEDULED");
    assert_eq!(seen["changeable"], true);
    assert_eq!(seen["name"], "Fatima Al-Ali");

    // The invite, to add to a calendar, with the link in it.
    let ics = app
        .client
        .get(app.url(&path("/invite.ics")))
        .send()
        .await
        .unwrap();
    assert_eq!(ics.status(), 200);
    assert_eq!(
        ics.headers()["content-type"],
        "text/calendar; charset=utf-8"
    );
    let text = ics.text().await.unwrap();
    assert!(
        text.contains("BEGIN:VCALENDAR") && text.contains("METHOD:REQUEST"),
        "{text}"
    );
    assert!(text.replace("\r\n ", "").contains(&token), "{text}");

    // Moved an hour later: the seat moves with it, the link stays.
    let later = t + Span::hours(1);
    let (status, moved) = app
        .put_json(&path(""), &json!({"_new_desired_time": iso(later)}))
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["_desired_time"], iso(later));
    assert_eq!(left(&app, "linked", t).await, 2);
    assert_eq!(left(&app, "linked", later).await, 1);
    let (status, _) = app.get(&path("")).await;
    assert_eq!(status, 200, "the same link after the move");

    let (status, cancelled) = app.delete(&path("")).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["_callback_state"], "COMPLETED");
    assert_eq!(cancelled["_callback_reason"], "CANCELLED");
    assert_eq!(cancelled["changeable"], false);
    assert_eq!(left(&app, "linked", later).await, 2);
    let ics = app
        .client
        .get(app.url(&path("/invite.ics")))
        .send()
        .await
        .unwrap();
    assert!(ics.text().await.unwrap().contains("METHOD:CANCEL"));
}

#[tokio::test]
async fn without_the_right_token_there_is_no_booking() {
    let app = app().await;
    let (id, token, _, t) = booked(&app, "5550102").await;
    let (other, other_token, _, _) = booked(&app, "5550103").await;
    let wrong = [
        format!("/api/v1/bookings/{id}"),
        format!("/api/v1/bookings/{id}?token="),
        format!("/api/v1/bookings/{id}?token=nope"),
        format!("/api/v1/bookings/{id}?token={other_token}"),
        format!("/api/v1/bookings/{other}?token={token}"),
        format!("/api/v1/bookings/00000000-0000-4000-8000-000000000000?token={token}"),
    ];
    for path in &wrong {
        let (status, body) = app.get(path).await;
        assert!(status == 404 || status == 400, "{path}: {status} {body}");
        if status == 400 {
            assert!(
                body["message"].as_str().unwrap().contains("token"),
                "{body}"
            );
        }
        let (status, _) = app
            .put_json(path, &json!({"_new_desired_time": iso(t + Span::hours(2))}))
            .await;
        assert!(status == 404 || status == 400, "{path}: {status}");
        let (status, _) = app.delete(path).await;
        assert!(status == 404 || status == 400, "{path}: {status}");
    }
    // Nothing changed.
    let (_, seen) = app
        .get(&format!("/api/v1/bookings/{id}?token={token}"))
        .await;
    assert_eq!(seen["_callback_state"], "SCHEDULED");
    assert_eq!(seen["_desired_time"], iso(t));
}

#[tokio::test]
async fn bad_moves_name_the_field() {
    let app = app().await;
    let (id, token, _, _) = booked(&app, "5550104").await;
    let path = format!("/api/v1/bookings/{id}?token={token}");
    for (body, field) in [
        (
            json!({"_new_desired_time": "tomorrow"}),
            "_new_desired_time",
        ),
        (json!({}), "_new_desired_time"),
        (
            json!({"_new_desired_time": "2026-11-23T09:00:00Z", "x": 1}),
            "x",
        ),
    ] {
        let (status, answer) = app.put_json(&path, &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(field),
            "{answer}"
        );
    }
    // A time in the past is no open slot: 409 with the nearest.
    let (status, answer) = app
        .put_json(&path, &json!({"_new_desired_time": "2020-01-01T00:00:00Z"}))
        .await;
    assert_eq!(status, 409, "{answer}");
    assert!(answer["_available_slots"].is_array(), "{answer}");
}

#[tokio::test]
async fn the_link_changes_a_booking_not_a_service_under_way() {
    let app = app().await;
    let t = open_slot(&app, "linked-early", Span::hours(1)).await;
    let (status, body) = book(&app, "linked-early", "5550105", &iso(t), &[]).await;
    assert_eq!(status, 200, "{body}");
    let id = body["_id"].as_str().unwrap();
    let url = body["_manage_url"].as_str().unwrap();
    let token = url.split_once("?token=").unwrap().1;
    let path = format!("/api/v1/bookings/{id}?token={token}");
    let (_, seen) = app.get(&path).await;
    assert_eq!(seen["_callback_state"], "QUEUED", "{seen}");
    assert_eq!(seen["changeable"], false);
    let (status, refused) = app.delete(&path).await;
    assert_eq!(status, 409, "{refused}");
    let (status, _) = app
        .put_json(
            &path,
            &json!({"_new_desired_time": iso(t + Span::hours(1))}),
        )
        .await;
    assert_eq!(status, 409);
    let (_, seen) = app.get(&path).await;
    assert_eq!(seen["_callback_state"], "QUEUED", "nothing changed: {seen}");
}

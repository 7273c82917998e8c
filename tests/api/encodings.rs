//! One request, three body encodings; and the seed's multipart bodies byte for byte.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use tests::{spawn_app, urlencoded, WAIT};

use tests::seed::DEVICE;
const CREATE: &str = "/genesys/1/service/callback/chat-delay";

/// The seed's create fields.
const FIELDS: [(&str, &str); 5] = [
    ("_customer_number", "4082652649"),
    ("usr_customer_name", "Bob Markel"),
    ("usr_reason", "billing question"),
    ("_device_notification_id", DEVICE),
    ("_device_os", "comet"),
];

fn multipart_type(boundary: &str) -> String {
    format!("multipart/form-data; boundary={boundary}")
}

fn id_of(created: &Value) -> String {
    created["_id"]
        .as_str()
        .unwrap_or_else(|| panic!("_id in {created}"))
        .to_owned()
}

#[tokio::test]
async fn create_works_the_same_in_multipart_urlencoded_and_json() {
    let app = spawn_app().await;
    let as_json: serde_json::Map<String, Value> = FIELDS
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();

    let mut ids = Vec::new();
    for (encoding, (status, created)) in [
        ("multipart", app.post_form(CREATE, &FIELDS).await),
        ("urlencoded", app.post_urlencoded(CREATE, &FIELDS).await),
        ("json", app.post_json(CREATE, &Value::Object(as_json)).await),
    ] {
        assert_eq!(status, 200, "{encoding}: {created}");
        assert_eq!(
            created["_text"], "We will notify you when agent is available",
            "{encoding}"
        );
        let id = id_of(&created);
        let found = app.query_by_id(&id).await;
        assert_eq!(found["_customer_number"], "4082652649", "{encoding}");
        assert_eq!(found["usr_customer_name"], "Bob Markel", "{encoding}");
        assert_eq!(found["usr_reason"], "billing question", "{encoding}");
        let keys: BTreeSet<&str> = found
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            !keys.contains("_device_os") && !keys.contains("_device_notification_id"),
            "{encoding}: device fields are not user data: {found}"
        );
        let rec = app.record(&id).await;
        assert_eq!(rec["device_os"], "comet", "{encoding}");
        assert_eq!(rec["device_notification_id"], DEVICE, "{encoding}");
        assert_eq!(rec["_callback_state"], "QUEUED", "{encoding}");
        ids.push(id);
    }
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(app.queue_position(id).await["_position"], i + 1);
    }
}

#[tokio::test]
async fn values_survive_each_encoding() {
    let app = spawn_app().await;
    let note = "a&b=c; \"quoted\" é ü 中文 100% + more";

    let (status, created) = app
        .post_form(CREATE, &[("_customer_number", "1"), ("usr_note", note)])
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(app.query_by_id(&id_of(&created)).await["usr_note"], note);

    let (status, created) = app
        .post_urlencoded(CREATE, &[("_customer_number", "2"), ("usr_note", note)])
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(app.query_by_id(&id_of(&created)).await["usr_note"], note);

    // JSON numbers and booleans become text; null means "not given".
    let (status, created) = app
        .post_json(
            CREATE,
            &json!({"_customer_number": 4082652649u64, "usr_note": note,
                    "usr_vip": true, "usr_score": 4.5, "usr_nothing": null}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let found = app.query_by_id(&id_of(&created)).await;
    assert_eq!(found["_customer_number"], "4082652649");
    assert_eq!(found["usr_note"], note);
    assert_eq!(found["usr_vip"], "true");
    assert_eq!(found["usr_score"], "4.5");
    assert!(found.get("usr_nothing").is_none(), "{found}");

    // A charset parameter on the content type is fine.
    let (status, created) = app
        .raw(
            "POST",
            CREATE,
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            urlencoded(&[("_customer_number", "3"), ("usr_note", note)]),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(app.query_by_id(&id_of(&created)).await["usr_note"], note);
    let (status, created) = app
        .raw(
            "POST",
            CREATE,
            Some("application/json; charset=utf-8"),
            json!({"_customer_number": "4"}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{created}");
}

#[tokio::test]
async fn the_seed_requests_byte_for_byte() {
    let app = spawn_app().await;

    // Create, exactly as the seed's browser sent it.
    let boundary = "----WebKitFormBoundary0WnE36LruxJ4S5nu";
    let body = tests::raw_multipart(boundary, &FIELDS);
    assert_eq!(body.len(), 660, "the seed's Content-Length");
    let resp = app
        .client
        .post(app.url(CREATE))
        .header("Content-Type", multipart_type(boundary))
        .header("Accept", "*/*")
        .header("Accept-Encoding", "gzip,deflate,sdch")
        .header("Accept-Language", "en-US,en;q=0.8")
        .header(
            "Cookie",
            "JSESSIONID=mjjvtphwb8lpce7io23ggxcu; BAYEUX_BROWSER=86721orubxagcqhw0hj14cpyaqk2",
        )
        .header("gms_user", DEVICE)
        .header("Origin", "http://localhost:8080")
        .header("Referer", "http://localhost:8080/gmstester/chat.html")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let created: Value = resp.json().await.expect("JSON");
    assert_eq!(
        created["_text"],
        "We will notify you when agent is available"
    );
    let id = id_of(&created);
    let found = app.query_by_id(&id).await;
    assert_eq!(found["usr_customer_name"], "Bob Markel");
    assert_eq!(found["usr_reason"], "billing question");

    // check-queue-position with the seed's empty multipart body.
    let boundary = "----WebKitFormBoundary2gBrAJX9qPSafKwk";
    let empty = tests::raw_multipart(boundary, &[]);
    assert_eq!(empty.len(), 44, "the seed's Content-Length");
    let path = format!("/genesys/1/service/{id}/check-queue-position");
    let (status, position) = app
        .raw("POST", &path, Some(&multipart_type(boundary)), empty)
        .await;
    assert_eq!(status, 200, "{position}");
    assert_eq!(position["_position"], 1);
    assert_eq!(position["_total_waiting"], 1);

    // Connect with the seed's empty multipart body.
    app.ready_agent("alice", &["support"], 1).await;
    app.wait_for_state(&id, "ROUTING", WAIT).await;
    let boundary = "----WebKitFormBoundaryNY84ld7wm7oHB9fp";
    let empty = tests::raw_multipart(boundary, &[]);
    assert_eq!(empty.len(), 44, "the seed's Content-Length");
    let (status, dialog) = app
        .raw(
            "POST",
            &format!("/genesys/1/service/{id}/connect"),
            Some(&multipart_type(boundary)),
            empty,
        )
        .await;
    assert_eq!(status, 200, "{dialog}");
    assert_eq!(dialog["_action"], "StartChat");
    assert_eq!(dialog["_user_header"], DEVICE);
    assert_eq!(dialog["_id"], id);
    assert_eq!(app.state_of(&id).await, "PROCESSING");

    // Create the chat interaction with the seed's body.
    let boundary = "----WebKitFormBoundaryteXJ8ZpAGGDTAMFN";
    let chat = tests::raw_multipart(boundary, &tests::seed::START_CHAT);
    assert_eq!(chat.len(), 651, "the seed's Content-Length");
    let (status, started) = app
        .raw(
            "POST",
            &format!("/genesys/1/service/{id}/ixn/chat"),
            Some(&multipart_type(boundary)),
            chat,
        )
        .await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started, json!({"_id": id, "comet_channel": "/_genesys"}));
    let rec = app.record(&id).await;
    assert_eq!(rec["chat"]["nickname"], "John Harry", "{rec}");
    assert_eq!(rec["chat"]["subject"], "testing", "{rec}");
    assert_eq!(rec["chat"]["parameters"]["email"], "j.h@gmail.com", "{rec}");
}

#[tokio::test]
async fn empty_bodies_are_accepted_in_every_form() {
    let app = spawn_app().await;
    let id = app.create("chat-delay", "5550200").await;
    let path = format!("/genesys/1/service/{id}/check-queue-position");
    let boundary = "----WebKitFormBoundaryNY84ld7wm7oHB9fp";
    for (content_type, body) in [
        // The seed's closing boundary without, then with, its final CRLF.
        (Some(multipart_type(boundary)), format!("--{boundary}--")),
        (
            Some(multipart_type(boundary)),
            format!("--{boundary}--\r\n"),
        ),
        // A quoted boundary parameter.
        (
            Some(format!("multipart/form-data; boundary=\"{boundary}\"")),
            format!("--{boundary}--\r\n"),
        ),
        (Some(multipart_type(boundary)), String::new()),
        (
            Some("application/x-www-form-urlencoded".to_owned()),
            String::new(),
        ),
        (Some("application/json".to_owned()), String::new()),
        (Some("application/json".to_owned()), "{}".to_owned()),
        (None, String::new()),
    ] {
        let (status, position) = app
            .raw("POST", &path, content_type.as_deref(), body.clone())
            .await;
        assert_eq!(status, 200, "{content_type:?} {body:?}: {position}");
        assert_eq!(position["_position"], 1, "{content_type:?} {body:?}");
    }
}

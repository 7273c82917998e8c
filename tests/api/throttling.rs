//! GMS's throttles, the in-queue check, idempotent creates and the rate
//! limit, over real HTTP with the seed's multipart bodies.

use engine::testing::ScenarioBuilder;
use serde_json::Value;
use tests::{multipart, TestApp};

/// A chat scenario named `name` with these extra keys (`key = value` lines).
fn scenario(name: &str, keys: &str) -> String {
    let extra: Vec<(&str, &str)> = keys.lines().filter_map(|l| l.split_once(" = ")).collect();
    ScenarioBuilder::new(name)
        .unset("_wait_for_user_confirm")
        .key("_ttl", "3600")
        .keys(&extra)
        .toml()
}

async fn create(app: &TestApp, scenario: &str, number: &str) -> (u16, Value) {
    app.post_form(
        &format!("/genesys/1/service/callback/{scenario}"),
        &[("_customer_number", number), ("_device_os", "comet")],
    )
    .await
}

/// A create with headers; answers status, `Retry-After` and body.
async fn create_with(
    app: &TestApp,
    scenario: &str,
    fields: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let mut request = app
        .client
        .post(app.url(&format!("/genesys/1/service/callback/{scenario}")))
        .multipart(multipart(fields));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, response.json().await.expect("JSON body"))
}

#[tokio::test]
async fn a_customer_number_over_its_daily_limit_gets_429_with_retry_after() {
    let app = TestApp::builder()
        .scenario(
            "thr.toml",
            &scenario("thr", "_throttle_customer_number_limit = 3"),
        )
        .spawn()
        .await;
    for _ in 0..3 {
        assert_eq!(create(&app, "thr", "5550001").await.0, 200);
    }
    let (status, retry, body) =
        create_with(&app, "thr", &[("_customer_number", "5550001")], &[]).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["exception"], "TOO_MANY_REQUESTS", "{body}");
    assert_eq!(
        body["message"], "_customer_number: more than 3 callbacks in 24 h",
        "{body}"
    );
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((86_000..=86_400).contains(&retry), "{retry}");
    // Another number, and the same number in another scenario, still pass.
    assert_eq!(create(&app, "thr", "5550002").await.0, 200);
    assert_eq!(create(&app, "chat-delay", "5550001").await.0, 200);
}

#[tokio::test]
async fn per_scenario_windows_and_the_queued_cap_refuse_with_429() {
    let app = TestApp::builder()
        .scenarios(&[
            (
                "win.toml",
                &scenario(
                    "win",
                    "_throttle_callbacks_per_service_1 = 2\n_throttle_ttl_1 = \"5m\"",
                ),
            ),
            (
                "cap.toml",
                &scenario("cap", "max_queued_callbacks_per_service = 2"),
            ),
        ])
        .spawn()
        .await;
    assert_eq!(create(&app, "win", "1").await.0, 200);
    assert_eq!(create(&app, "win", "2").await.0, 200);
    let (status, retry, body) = create_with(&app, "win", &[("_customer_number", "3")], &[]).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        body["message"],
        "_throttle_callbacks_per_service_1 of scenario win: more than 2 callbacks in 300 s"
    );
    assert!(retry.expect("Retry-After").parse::<u64>().unwrap() <= 300);

    let (_, first) = create(&app, "cap", "1").await;
    assert_eq!(create(&app, "cap", "2").await.0, 200);
    let (status, retry, body) = create_with(&app, "cap", &[("_customer_number", "3")], &[]).await;
    assert_eq!(status, 429, "{body}");
    assert!(retry.is_some());
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("max_queued_callbacks_per_service"),
        "{body}"
    );
    // A completed service leaves the cap.
    let id = first["_id"].as_str().unwrap();
    let (status, _) = app
        .delete(&format!("/genesys/1/service/callback/cap/{id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(create(&app, "cap", "3").await.0, 200);
}

#[tokio::test]
async fn request_parameters_are_counted_with_the_header_first() {
    let app = TestApp::builder()
        .scenario(
            "par.toml",
            &scenario(
                "par",
                "_throttle_request_parameters = \"user_id\"\n_throttle_request_parameters_limit = 2",
            ),
        )
        .spawn()
        .await;
    let with_user =
        |body_user: &'static str| [("_customer_number", "5550100"), ("user_id", body_user)];
    // The header names the user: the body's values do not matter.
    for body_user in ["a", "b"] {
        let (status, _, body) =
            create_with(&app, "par", &with_user(body_user), &[("user_id", "u1")]).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _, body) = create_with(&app, "par", &with_user("c"), &[("user_id", "u1")]).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["message"], "user_id: more than 2 callbacks in 24 h");
    // Without the header the body's value counts.
    let (status, _, body) = create_with(&app, "par", &with_user("u2"), &[]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn in_queue_checking_refuses_a_duplicate_with_409_naming_the_number() {
    let app = TestApp::builder()
        .scenarios(&[
            (
                "strict.toml",
                &scenario("strict", "_enable_in_queue_checking = \"strict\""),
            ),
            (
                "gms.toml",
                &scenario("gms", "_enable_in_queue_checking = true"),
            ),
        ])
        .spawn()
        .await;
    let (_, first) = create(&app, "strict", "5550200").await;
    let (status, body) = create(&app, "strict", "5550200").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["exception"], "ALREADY_IN_QUEUE", "{body}");
    assert_eq!(
        body["message"], "_customer_number: already has 1 callback in the queue",
        "{body}"
    );
    // Once the first is completed, the number may ask again.
    let id = first["_id"].as_str().unwrap();
    app.delete(&format!("/genesys/1/service/callback/strict/{id}"))
        .await;
    assert_eq!(create(&app, "strict", "5550200").await.0, 200);

    // `true`: two in the queue, not three.
    assert_eq!(create(&app, "gms", "5550200").await.0, 200);
    assert_eq!(create(&app, "gms", "5550200").await.0, 200);
    let (status, body) = create(&app, "gms", "5550200").await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .starts_with("_customer_number"));
}

#[tokio::test]
async fn an_idempotency_key_retried_answers_the_first_answer_and_creates_nothing() {
    let app = TestApp::builder().redis().spawn().await;
    let fields = [("_customer_number", "5550300"), ("_device_os", "comet")];
    let key = [("Idempotency-Key", "order-7f3a")];
    let (status, _, first) = create_with(&app, "chat-delay", &fields, &key).await;
    assert_eq!(status, 200, "{first}");
    let (status, _, again) = create_with(&app, "chat-delay", &fields, &key).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, first, "the same answer, the same _id");
    let (_, found) = app
        .get("/genesys/1/service/callback/chat-delay?_customer_number=5550300")
        .await;
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    // Another key is another create; a key is scoped by scenario.
    let (_, _, other) = create_with(
        &app,
        "chat-delay",
        &fields,
        &[("Idempotency-Key", "order-8")],
    )
    .await;
    assert_ne!(other["_id"], first["_id"]);
    let (_, _, elsewhere) = create_with(&app, "chat-immediate", &fields, &key).await;
    assert_ne!(elsewhere["_id"], first["_id"]);
    // A failed create releases its key: the retry runs afresh.
    let bad = [("_customer_number", "5550301"), ("_desired_time", "never")];
    let retry = [("Idempotency-Key", "order-9")];
    let (status, _, body) = create_with(&app, "chat-delay", &bad, &retry).await;
    assert_eq!(status, 400, "{body}");
    let good = [("_customer_number", "5550301")];
    let (status, _, body) = create_with(&app, "chat-delay", &good, &retry).await;
    assert_eq!(status, 200, "{body}");
    // A key that is not one.
    let (status, _, body) =
        create_with(&app, "chat-delay", &good, &[("Idempotency-Key", "")]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .starts_with("Idempotency-Key"));
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after_on_any_route() {
    let app = TestApp::builder().rate_limit(5).spawn().await;
    let mut refused = None;
    for _ in 0..20 {
        let response = app
            .client
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("request");
        if response.status() == 429 {
            refused = Some(response);
            break;
        }
    }
    let response = refused.expect("a burst over 5 per second is refused");
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1).contains(&retry), "{retry}");
    // A refusal a caller can quote, like any other answer.
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["exception"], "TOO_MANY_REQUESTS", "{body}");
    assert_eq!(
        body["message"],
        "rate limit: more than 5 requests per second from this address"
    );
    // The push endpoints are behind it too.
    let (status, _) = app.post_json("/genesys/cometd", &Value::Null).await;
    assert_eq!(status, 429);
}

/// GMS's `_disallow_impossible_phone_numbers`, `_disallow_premium_phone_numbers`
/// and `_default_country`: a refused number is a 400 naming
/// `_customer_number` and why; a scenario without them takes any number.
#[tokio::test]
async fn impossible_and_premium_numbers_are_refused_where_the_scenario_says() {
    let checked = scenario(
        "checked",
        "_disallow_impossible_phone_numbers = true\n_disallow_premium_phone_numbers = true\n_default_country = \"GB\"",
    );
    let app = TestApp::builder()
        .scenario("checked.toml", &checked)
        .spawn()
        .await;
    for (number, status, why) in [
        ("020 7946 0958", 200, ""),
        ("+1 408 265 2649", 200, ""),
        ("12", 400, "not a possible phone number in GB"),
        ("call me later", 400, "not a possible phone number in GB"),
        ("+44 909 879 0000", 400, "premium-rate"),
        ("0909 879 0000", 400, "premium-rate"),
    ] {
        let (got, body) = create(&app, "checked", number).await;
        assert_eq!(got, status, "{number}: {body}");
        if status == 400 {
            assert_eq!(body["exception"], "INVALID_PARAMETER", "{body}");
            let message = body["message"].as_str().unwrap();
            assert!(message.contains("_customer_number"), "{body}");
            assert!(message.contains(why), "{number}: {body}");
            assert!(
                !message.contains(number),
                "the number is not echoed: {body}"
            );
        }
    }
    // The shipped scenarios check nothing: the seed's tests use any number.
    let (got, body) = create(&app, "chat-delay", "12").await;
    assert_eq!(got, 200, "{body}");
}

/// The statuses of GET /healthz sent one after another, each with its
/// `X-Forwarded-For` (none for `None`), until the first 429.
async fn until_refused(
    app: &TestApp,
    forwarded: impl IntoIterator<Item = Option<String>>,
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for value in forwarded {
        let mut request = app.client.get(app.url("/healthz"));
        if let Some(value) = value {
            request = request.header("x-forwarded-for", value);
        }
        let status = request.send().await.expect("request").status().as_u16();
        statuses.push(status);
        if status == 429 {
            break;
        }
    }
    statuses
}

#[tokio::test]
async fn without_trust_forwarded_a_client_cannot_dodge_the_rate_limit_with_x_forwarded_for() {
    let app = TestApp::builder().rate_limit(2).spawn().await;
    // A new address claimed in every request: still one client, the peer.
    let statuses = until_refused(&app, (0..20).map(|i| Some(format!("203.0.113.{i}")))).await;
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

#[tokio::test]
async fn with_trust_forwarded_the_rate_limit_counts_the_address_the_proxy_saw() {
    let app = TestApp::builder()
        .rate_limit(2)
        .trust_forwarded()
        .spawn()
        .await;
    // Ten clients behind the proxy, two requests each: each has its own
    // two per second, so none is refused.
    let clients = (0..10).flat_map(|i| {
        [
            Some(format!("203.0.113.{i}")),
            Some(format!("203.0.113.{i}")),
        ]
    });
    let statuses = until_refused(&app, clients).await;
    assert_eq!(statuses, vec![200; 20]);

    // One client asking more often is refused.
    let statuses = until_refused(&app, (0..20).map(|_| Some("203.0.113.50".to_owned()))).await;
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");

    // What the client put before the proxy's entry changes nothing: the
    // rightmost address is the one counted.
    let statuses = until_refused(
        &app,
        (0..20).map(|i| Some(format!("198.51.100.{i}, 203.0.113.60"))),
    )
    .await;
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");

    // No address in the header, or no header: the peer is the client.
    let statuses = until_refused(
        &app,
        (0..20).map(|i| (i % 2 == 0).then(|| "unknown".to_owned())),
    )
    .await;
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

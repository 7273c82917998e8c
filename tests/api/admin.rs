//! The operator's API over HTTP: services by queue, watermarks, bulk
//! cancel, CSV exports, the agent list, move and requeue.

use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use tests::TestApp;

/// A copy of chat-delay that waits in queue `billing`.
fn billing_scenario() -> String {
    tests::shipped_scenario_copy(
        "chat-delay",
        "billing-delay",
        &[(
            "_target = { queue = \"support\", priority = 0 }",
            "_target = { queue = \"billing\", priority = 0 }",
        )],
    )
}

async fn app(redis: bool) -> TestApp {
    let builder = TestApp::builder().scenario("billing-delay.toml", &billing_scenario());
    let builder = if redis { builder.redis() } else { builder };
    builder.spawn().await
}

/// Creates a service with these fields besides the customer number.
async fn create(app: &TestApp, scenario: &str, customer: &str, extra: &[(&str, &str)]) -> String {
    let mut fields = vec![("_customer_number", customer)];
    fields.extend_from_slice(extra);
    let (status, body) = app
        .post_form(&format!("/genesys/1/service/callback/{scenario}"), &fields)
        .await;
    assert_eq!(status, 200, "create: {body}");
    body["_id"].as_str().expect("_id").to_owned()
}

/// The world of most tests here, created in this order:
/// - `routing`: support, offered to ann (ROUTING), ann then not ready;
/// - `queued`: support, QUEUED;
/// - `billing`: billing, QUEUED;
/// - `scheduled`: support, for 2030 (SCHEDULED);
/// - `cancelled`: support, cancelled (COMPLETED, CANCELLED).
struct World {
    app: TestApp,
    routing: String,
    queued: String,
    billing: String,
    scheduled: String,
    cancelled: String,
}

async fn world(redis: bool) -> World {
    let app = app(redis).await;
    let routing = create(&app, "chat-delay", "5550001", &[]).await;
    app.ready_agent("ann", &["support"], 1).await;
    app.wait_for_record(&routing, "ann is offered it", |r| r["agent"] == "ann")
        .await;
    app.set_ready("ann", false).await;
    let queued = create(&app, "chat-delay", "5550002", &[]).await;
    let billing = create(&app, "billing-delay", "5550003", &[]).await;
    let scheduled = create(
        &app,
        "chat-delay",
        "5550004",
        &[("_desired_time", "2030-01-01T10:00:00.000Z")],
    )
    .await;
    let cancelled = create(&app, "chat-delay", "5550005", &[]).await;
    let (status, body) = app
        .delete(&format!(
            "/genesys/1/service/callback/chat-delay/{cancelled}"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    World {
        app,
        routing,
        queued,
        billing,
        scheduled,
        cancelled,
    }
}

fn ids_in(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|r| r["_id"].as_str().expect("_id").to_owned())
        .collect()
}

fn ids(list: &[&String]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A 400 in the JSON error shape whose message names `field`.
fn names_field(status: u16, body: &Value, field: &str) {
    assert_eq!(status, 400, "{field}: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(field), "{field}: {body}");
    assert!(body["exception"].is_string(), "{body}");
}

#[tokio::test]
async fn queues_lists_services_by_queue_in_queue_order_with_filters_and_pages() {
    let w = world(false).await;
    let app = &w.app;
    let (status, all) = app.get("/genesys/1/admin/callback/queues").await;
    assert_eq!(status, 200, "{all}");
    // Active services by default, each queue in routing order (the oldest first).
    assert_eq!(
        ids_in(&all["support"]),
        ids(&[&w.routing, &w.queued, &w.scheduled])
    );
    assert_eq!(ids_in(&all["billing"]), ids(&[&w.billing]));
    assert_eq!(all.as_object().unwrap().len(), 2, "{all}");
    let first = &all["support"][0];
    assert_eq!(first["_queue"], "support");
    assert_eq!(first["_callback_state"], "ROUTING");
    assert_eq!(first["_agent_id"], "ann");
    assert_eq!(first["_service_name"], "chat-delay");
    assert_eq!(first["_customer_number"], "5550001");
    assert_eq!(all["billing"][0]["_agent_id"], Value::Null);

    let (_, billing) = app
        .get("/genesys/1/admin/callback/queues?target=billing")
        .await;
    assert_eq!(ids_in(&billing["billing"]), ids(&[&w.billing]));
    assert_eq!(billing.as_object().unwrap().len(), 1, "{billing}");
    // One scenario's services (the supervisor's board filters by it).
    let (_, of_billing) = app
        .get("/genesys/1/admin/callback/queues?service_name=billing-delay")
        .await;
    assert_eq!(ids_in(&of_billing["billing"]), ids(&[&w.billing]));
    assert_eq!(of_billing.as_object().unwrap().len(), 1, "{of_billing}");

    let (_, queued) = app
        .get("/genesys/1/admin/callback/queues?states=QUEUED,completed")
        .await;
    assert_eq!(ids_in(&queued["support"]), ids(&[&w.queued, &w.cancelled]));
    assert_eq!(ids_in(&queued["billing"]), ids(&[&w.billing]));

    let (_, later) = app
        .get("/genesys/1/admin/callback/queues?start_time=2029-12-31T00:00:00Z&end_time=2030-01-01T10:00:00.000Z")
        .await;
    assert_eq!(ids_in(&later["support"]), ids(&[&w.scheduled]), "{later}");
    let (_, earlier) = app
        .get("/genesys/1/admin/callback/queues?end_time=2029-12-31T00:00:00Z")
        .await;
    assert_eq!(ids_in(&earlier["support"]), ids(&[&w.routing, &w.queued]));

    // Pages of `max` in the same order; the total is a header.
    let res = app
        .client
        .get(app.url("/genesys/1/admin/callback/queues?max=2&page=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-total-count"], "4");
    let page: Value = res.json().await.unwrap();
    // billing, then support's three: the second page holds support's last two.
    assert_eq!(
        ids_in(&page["support"]),
        ids(&[&w.queued, &w.scheduled]),
        "{page}"
    );
    assert!(page.get("billing").is_none(), "{page}");
    let (_, past_end) = app
        .get("/genesys/1/admin/callback/queues?max=2&page=9")
        .await;
    assert_eq!(past_end, json!({}));
}

#[tokio::test]
async fn queues_and_export_refuse_bad_input_naming_the_field() {
    let app = app(false).await;
    for path in [
        "/genesys/1/admin/callback/queues",
        "/genesys/1/admin/callback/export",
    ] {
        for (query, field) in [
            (
                "start_time=2026-01-02T00:00:00Z&end_time=2026-01-01T00:00:00Z",
                "end_time",
            ),
            ("start_time=yesterday", "start_time"),
            ("end_time=2026-13-01T00:00:00Z", "end_time"),
            ("states=QUEUED,WAITING", "states"),
            ("states=", "states"),
            ("target=", "target"),
            ("service_name=nope", "service_name"),
            ("colour=red", "colour"),
        ] {
            let (status, body) = app.get(&format!("{path}?{query}")).await;
            names_field(status, &body, field);
        }
    }
    for (query, field) in [
        ("max=0", "max"),
        ("max=1001", "max"),
        ("max=ten", "max"),
        ("page=0", "page"),
    ] {
        let (status, body) = app
            .get(&format!("/genesys/1/admin/callback/queues?{query}"))
            .await;
        names_field(status, &body, field);
    }
    let (status, body) = app
        .get("/genesys/1/admin/callback/export?properties=_id,,_queue")
        .await;
    names_field(status, &body, "properties");
}

#[tokio::test]
async fn hourly_stats_count_what_happened_in_each_hour() {
    let w = world(false).await;
    let (status, body) = w.app.get("/api/v1/stats/hours?hours=3").await;
    assert_eq!(status, 200, "{body}");
    let hours = body["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 3, "{body}");
    let now = &hours[2];
    // Created within the last few seconds, so in the current hour (unless
    // the hour turned meanwhile: then in the one before).
    let both = |key: &str| now[key].as_u64().unwrap() + hours[1][key].as_u64().unwrap();
    assert_eq!(both("created"), 5, "{body}");
    assert_eq!(both("completed"), 1, "the cancelled one: {body}");
    assert_eq!(both("answered"), 0, "nobody connected yet: {body}");
    assert!(
        now["start"].as_str().unwrap().ends_with(":00:00Z"),
        "{body}"
    );
    let (_, billing) = w
        .app
        .get("/api/v1/stats/hours?hours=1&service_name=billing-delay")
        .await;
    let created: u64 = billing["hours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created"].as_u64().unwrap())
        .sum();
    assert!(created <= 1, "{billing}");
    for (query, field) in [
        ("hours=0", "hours"),
        ("hours=49", "hours"),
        ("hours=twelve", "hours"),
        ("service_name=nope", "service_name"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = w.app.get(&format!("/api/v1/stats/hours?{query}")).await;
        names_field(status, &body, field);
    }
}

#[tokio::test]
async fn watermarks_count_active_services_per_scenario_and_queue() {
    let w = world(false).await;
    let app = &w.app;
    let (status, marks) = app.get("/genesys/1/admin/callback/watermarks").await;
    assert_eq!(status, 200, "{marks}");
    // GMS's counters: on their way to or with an agent, per scenario.
    assert_eq!(marks["services"]["chat-delay"], 2, "{marks}");
    assert_eq!(marks["services"]["billing-delay"], 1, "{marks}");
    assert_eq!(marks["services"]["chat-immediate"], 0, "{marks}");
    assert_eq!(marks["total"], 3, "{marks}");
    let support = &marks["queues"]["support"];
    assert_eq!(
        (
            &support["SCHEDULED"],
            &support["QUEUED"],
            &support["ROUTING"],
            &support["PROCESSING"],
            &support["active"]
        ),
        (&json!(1), &json!(1), &json!(1), &json!(0), &json!(3)),
        "{marks}"
    );
    assert_eq!(support["oldest_waiting_id"], w.queued.as_str());
    let age = support["oldest_waiting_seconds"].as_i64().expect("an age");
    assert!((0..60).contains(&age), "{marks}");
    assert_eq!(
        marks["queues"]["billing"]["oldest_waiting_id"],
        w.billing.as_str()
    );

    let (_, one) = app
        .get("/genesys/1/admin/callback/watermarks?service_name=billing-delay")
        .await;
    assert_eq!(one["services"], json!({"billing-delay": 1}), "{one}");
    assert_eq!(one["total"], 1);
    assert!(one["queues"].get("support").is_none(), "{one}");

    let (status, body) = app
        .get("/genesys/1/admin/callback/watermarks?service_name=nope")
        .await;
    names_field(status, &body, "service_name");
    let (status, body) = app
        .get("/genesys/1/admin/callback/watermarks?queue=support")
        .await;
    names_field(status, &body, "queue");
}

/// Bulk cancel with good, unknown, completed, malformed and repeated ids.
async fn bulk_cancel_mixed(w: &World) {
    let app = &w.app;
    let unknown = uuid::Uuid::new_v4().to_string();
    let body = json!({
        "ids": [w.queued, unknown, w.cancelled, "not an id!", w.billing, w.queued],
        "reason": "storm in the data centre",
    });
    let (status, answer) = app
        .post_json("/genesys/1/admin/callback/cancel", &body)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["cancelled"],
        json!([w.queued, w.billing]),
        "{answer}"
    );
    assert_eq!(answer["reason"], "storm in the data centre");
    let not: Vec<(String, String)> = answer["not_cancelled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            assert!(n["message"].is_string(), "{n}");
            (
                n["_id"].as_str().unwrap().to_owned(),
                n["exception"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        not,
        [
            (unknown, "NOT_FOUND".to_owned()),
            (w.cancelled.clone(), "ALREADY_COMPLETED".to_owned()),
            ("not an id!".to_owned(), "INVALID_ID".to_owned()),
            (w.queued.clone(), "DUPLICATE_ID".to_owned()),
        ]
    );
    let rec = app.record(&w.queued).await;
    assert_eq!(rec["_callback_state"], "COMPLETED");
    assert_eq!(rec["_callback_reason"], "CANCELLED");
    let last = rec["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"], "cancel");
    assert_eq!(last["by"], "staff (bulk cancel: storm in the data centre)");
    // Untouched: the rest of the world.
    assert_eq!(app.state_of(&w.scheduled).await, "SCHEDULED");
}

#[tokio::test]
async fn bulk_cancel_cancels_each_id_and_says_why_not_for_the_rest() {
    let w = world(false).await;
    bulk_cancel_mixed(&w).await;
    let app = &w.app;
    let many: Vec<String> = (0..1001).map(|i| format!("id-{i}")).collect();
    for (body, field) in [
        (json!({"ids": []}), "ids"),
        (json!({"ids": many}), "ids"),
        (json!({"reason": "x"}), "ids"),
        (json!({"ids": [1]}), "ids"),
        (json!({"ids": ["a"], "reason": "x".repeat(257)}), "reason"),
        (json!({"ids": ["a"], "why": "x"}), "why"),
    ] {
        let (status, answer) = app
            .post_json("/genesys/1/admin/callback/cancel", &body)
            .await;
        names_field(status, &answer, field);
    }
}

/// GETs or POSTs and reads the CSV back: (header row, rows, raw text).
async fn csv_of(res: reqwest::Response) -> (Vec<String>, Vec<Vec<String>>, String) {
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()[CONTENT_TYPE], "text/csv; charset=utf-8");
    let text = res.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows, text)
}

#[tokio::test]
async fn exports_are_csv_with_quoting_and_without_formulas() {
    let w = world(false).await;
    let app = &w.app;
    let evil = create(
        app,
        "chat-delay",
        "+4420123456",
        &[
            ("usr_name", "=HYPERLINK(\"http://evil.example\",\"click\")"),
            ("usr_note", "says \"hi\", twice\nand then, bye"),
            ("usr_tab", "\tcmd"),
            ("usr_at", "@SUM(A1)"),
            ("usr_minus", "-2+3"),
        ],
    )
    .await;
    let res = app
        .client
        .get(app.url("/genesys/1/admin/callback/export?states=QUEUED&target=support&properties=_id,usr_name,usr_note,_customer_number,usr_tab,usr_at,usr_minus,_queue"))
        .send()
        .await
        .unwrap();
    let (header, rows, text) = csv_of(res).await;
    assert_eq!(
        header,
        [
            "_id",
            "usr_name",
            "usr_note",
            "_customer_number",
            "usr_tab",
            "usr_at",
            "usr_minus",
            "_queue"
        ]
    );
    assert!(text.contains("\r\n"), "RFC 4180 line ends: {text:?}");
    assert!(
        text.contains("\"says \"\"hi\"\", twice\nand then, bye\""),
        "quoted: {text:?}"
    );
    let row = rows
        .iter()
        .find(|r| r[0] == evil)
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(row[1], "'=HYPERLINK(\"http://evil.example\",\"click\")");
    assert_eq!(row[2], "says \"hi\", twice\nand then, bye");
    assert_eq!(row[3], "'+4420123456");
    assert_eq!(row[4], "'\tcmd");
    assert_eq!(row[5], "'@SUM(A1)");
    assert_eq!(row[6], "'-2+3");
    assert_eq!(row[7], "support");
    let listed: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(listed, [w.queued.as_str(), evil.as_str()], "queue order");

    // The report of cancelled callbacks: GMS's body, the default columns.
    let res = app
        .client
        .post(app.url("/genesys/1/admin/callback/reportcancelled"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let (header, rows, _) = csv_of(res).await;
    assert_eq!(
        header,
        [
            "_id",
            "_service_name",
            "_queue",
            "_callback_state",
            "_callback_reason",
            "_customer_number",
            "_desired_time",
            "_created_time",
            "_completed_time",
            "_agent_id"
        ]
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0], w.cancelled);
    assert_eq!(rows[0][4], "CANCELLED");
    assert!(!rows[0][8].is_empty(), "completed time: {rows:?}");
    let res = app
        .client
        .post(app.url("/genesys/1/admin/callback/reportcancelled"))
        .json(&json!({"callback_reason": "FAIL_TIMEOUT_TTL", "exported_properties": ["_id"]}))
        .send()
        .await
        .unwrap();
    let (header, rows, _) = csv_of(res).await;
    assert_eq!((header, rows.len()), (vec!["_id".to_owned()], 0));

    for (body, field) in [
        (json!({"callback_reason": "BORED"}), "callback_reason"),
        (json!({"exported_properties": []}), "exported_properties"),
        (json!({"exported_properties": [""]}), "exported_properties"),
        (json!({"start_time": "soon"}), "start_time"),
        (json!({"format": "xlsx"}), "format"),
    ] {
        let (status, answer) = app
            .post_json("/genesys/1/admin/callback/reportcancelled", &body)
            .await;
        names_field(status, &answer, field);
    }
}

/// The service's place in its queue, as its customer sees it.
async fn position(app: &TestApp, id: &str) -> (i64, i64) {
    let p = app.queue_position(id).await;
    (
        p["_position"].as_i64().expect("_position"),
        p["_total_waiting"].as_i64().expect("_total_waiting"),
    )
}

async fn move_to(app: &TestApp, id: &str, body: Value) -> (u16, Value) {
    app.post_json(&format!("/api/v1/services/{id}/move"), &body)
        .await
}

/// Moves keep the service's age, so its place in the new queue.
async fn moves_keep_the_place(w: &World) {
    let app = &w.app;
    // carl serves billing, not ready: the move leaves it waiting for him.
    app.put_agent("carl", &["billing", "support"], &[], 1).await;
    let since = app.record(&w.queued).await["ticket"]["since"].clone();
    let (status, moved) = move_to(app, &w.queued, json!({"queue": "billing"})).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["ticket"]["queue"], "billing");
    assert_eq!(moved["ticket"]["since"], since, "its age is kept");
    assert_eq!(moved["_callback_state"], "QUEUED");
    // Older than the billing service, it goes ahead of it.
    assert_eq!(position(app, &w.queued).await, (1, 2));
    assert_eq!(position(app, &w.billing).await, (2, 2));
    let (_, by_queue) = app
        .get("/genesys/1/admin/callback/queues?target=billing")
        .await;
    assert_eq!(ids_in(&by_queue["billing"]), ids(&[&w.queued, &w.billing]));
    let last = moved["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["event"], &last["by"]),
        (&json!("moved"), &json!("staff"))
    );

    // Offered to ann (ROUTING): taken back from her first, her load freed.
    let (status, moved) = move_to(
        app,
        &w.routing,
        json!({"queue": "billing", "agent": "carl"}),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["_callback_state"], "QUEUED");
    assert_eq!(moved["agent"], Value::Null);
    assert_eq!(moved["ticket"]["preferred_agent"], "carl");
    assert!(app.agent_services("ann").await.is_empty());
    assert_eq!(position(app, &w.routing).await, (1, 3));
}

#[tokio::test]
async fn move_keeps_the_place_and_refuses_what_cannot_be() {
    let w = world(false).await;
    moves_keep_the_place(&w).await;
    let app = &w.app;
    let id = &w.billing;
    for (body, field) in [
        (json!({}), "queue or agent"),
        (json!({"queue": "nowhere"}), "queue"),
        (json!({"queue": ""}), "queue"),
        (json!({"agent": "zed"}), "agent"),
        (json!({"agent": "ann"}), "agent"), // ann serves support only
        (json!({"agent": "no such/agent"}), "agent"),
        (json!({"queue": "billing", "priority": 9}), "priority"),
    ] {
        let (status, answer) = move_to(app, id, body).await;
        names_field(status, &answer, field);
    }
    let (status, answer) = move_to(app, "no-such-service", json!({"queue": "billing"})).await;
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = move_to(app, &w.cancelled, json!({"queue": "billing"})).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["exception"], "INVALID_STATE");
}

#[tokio::test]
async fn requeue_frees_the_agent_and_keeps_the_age() {
    let app = app(false).await;
    let first = create(&app, "chat-delay", "5550101", &[]).await;
    app.ready_agent("ann", &["support"], 1).await;
    app.wait_for_record(&first, "ann is offered it", |r| r["agent"] == "ann")
        .await;
    let (status, body) = app
        .post_form(&format!("/genesys/1/service/{first}/connect"), &[])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.state_of(&first).await, "PROCESSING");
    let later = create(&app, "chat-delay", "5550102", &[]).await;
    let since = app.record(&first).await["ticket"]["since"].clone();
    let (_, agents) = app.get("/api/v1/agents").await;
    assert_eq!(agents["agents"][0]["load"], 1, "{agents}");

    // The supervisor takes ann off the queue, then the service off ann.
    app.set_ready("ann", false).await;
    let (status, requeued) = app
        .post_json(&format!("/api/v1/services/{first}/requeue"), &Value::Null)
        .await;
    assert_eq!(status, 200, "{requeued}");
    assert_eq!(requeued["_callback_state"], "QUEUED");
    assert_eq!(requeued["agent"], Value::Null);
    assert_eq!(requeued["ticket"]["since"], since);
    let (_, agents) = app.get("/api/v1/agents").await;
    let ann = &agents["agents"][0];
    assert_eq!(
        (&ann["id"], &ann["state"], &ann["load"], &ann["services"]),
        (&json!("ann"), &json!("not_ready"), &json!(0), &json!([])),
        "{agents}"
    );
    assert_eq!(ann["queues"], json!(["support"]));
    assert_eq!(ann["max_concurrent"], 1);
    // Its age puts it ahead of the one that came later.
    assert_eq!(position(&app, &first).await, (1, 2));
    assert_eq!(position(&app, &later).await, (2, 2));

    let (status, answer) = app
        .post_json(&format!("/api/v1/services/{first}/requeue"), &Value::Null)
        .await;
    assert_eq!(status, 409, "a queued service has no agent: {answer}");
    let (status, answer) = app
        .post_json("/api/v1/services/not%20an%20id/requeue", &Value::Null)
        .await;
    names_field(status, &answer, "id");

    // Ready again, ann gets the oldest first.
    app.set_ready("ann", true).await;
    app.wait_for_record(&first, "ann is offered it again", |r| r["agent"] == "ann")
        .await;
}

#[tokio::test]
async fn bulk_cancel_and_move_on_redis() {
    let w = world(true).await;
    moves_keep_the_place(&w).await;
    bulk_cancel_mixed(&w).await;
    let (_, marks) = w.app.get("/genesys/1/admin/callback/watermarks").await;
    // Left: routing (moved to billing for carl); queued and billing cancelled.
    assert_eq!(marks["services"]["chat-delay"], 1, "{marks}");
    assert_eq!(marks["queues"]["billing"]["QUEUED"], 1, "{marks}");
}

//! GMS callback queries: by customer, state, user data, operand, and by id.

use std::collections::BTreeSet;

use serde_json::Value;
use tests::{spawn_app, TestApp};

const FIXED_KEYS: [&str; 7] = [
    "_id",
    "_desired_time",
    "_service_name",
    "_callback_state",
    "_callback_reason",
    "_expiration_time",
    "_customer_number",
];

/// Creates a service with these fields; returns its id.
async fn create(app: &TestApp, scenario: &str, fields: &[(&str, &str)]) -> String {
    let (status, created) = app
        .post_form(&format!("/genesys/1/service/callback/{scenario}"), fields)
        .await;
    assert_eq!(status, 200, "{created}");
    created["_id"].as_str().expect("_id").to_owned()
}

/// GET a query; asserts 200 and an array; returns the records.
async fn query(app: &TestApp, path_and_query: &str) -> Vec<Value> {
    let (status, found) = app.get(path_and_query).await;
    assert_eq!(status, 200, "{path_and_query}: {found}");
    found
        .as_array()
        .unwrap_or_else(|| panic!("{path_and_query}: not an array: {found}"))
        .clone()
}

fn ids(records: &[Value]) -> BTreeSet<String> {
    records
        .iter()
        .map(|r| r["_id"].as_str().expect("_id").to_owned())
        .collect()
}

fn set<const N: usize>(list: [&String; N]) -> BTreeSet<String> {
    list.into_iter().cloned().collect()
}

fn keys(record: &Value) -> BTreeSet<String> {
    record
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect()
}

fn fixed_plus(extra: &[&str]) -> BTreeSet<String> {
    FIXED_KEYS
        .iter()
        .chain(extra)
        .map(|k| k.to_string())
        .collect()
}

struct World {
    app: TestApp,
    /// chat-delay, customer 111, QUEUED, usr_reason=billing.
    a: String,
    /// chat-delay, customer 111, cancelled.
    b: String,
    /// chat-delay, customer 222, SCHEDULED for 2030-01-01, usr_reason=billing.
    c: String,
    /// chat-immediate, customer 111, QUEUED.
    d: String,
}

async fn world() -> World {
    let app = spawn_app().await;
    let a = create(
        &app,
        "chat-delay",
        &[
            ("_customer_number", "111"),
            ("usr_reason", "billing"),
            ("usr_customer_name", "Bob Markel"),
            ("_device_os", "comet"),
            ("_device_notification_id", "dev-a"),
        ],
    )
    .await;
    let b = create(
        &app,
        "chat-delay",
        &[("_customer_number", "111"), ("usr_reason", "sales")],
    )
    .await;
    let (status, cancelled) = app
        .delete(&format!("/genesys/1/service/callback/chat-delay/{b}"))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    let c = create(
        &app,
        "chat-delay",
        &[
            ("_customer_number", "222"),
            ("_desired_time", "2030-01-01T00:00:00.000Z"),
            ("usr_reason", "billing"),
        ],
    )
    .await;
    let d = create(&app, "chat-immediate", &[("_customer_number", "111")]).await;
    World { app, a, b, c, d }
}

#[tokio::test]
async fn queries_by_customer_state_user_data_and_operand() {
    let World { app, a, b, c, d } = world().await;
    let base = "/genesys/1/service/callback/chat-delay";

    let by_customer = query(&app, &format!("{base}?_customer_number=111")).await;
    assert_eq!(ids(&by_customer), set([&a, &b]), "only this scenario's");
    let other = query(
        &app,
        "/genesys/1/service/callback/chat-immediate?_customer_number=111",
    )
    .await;
    assert_eq!(ids(&other), set([&d]));
    assert_eq!(
        query(&app, &format!("{base}?_customer_number=999")).await,
        Vec::<Value>::new()
    );

    let queued = query(&app, &format!("{base}?_callback_state=QUEUED")).await;
    assert_eq!(ids(&queued), set([&a]));
    let lower = query(&app, &format!("{base}?_callback_state=queued")).await;
    assert_eq!(ids(&lower), set([&a]), "state names ignore case");
    let scheduled = query(&app, &format!("{base}?_callback_state=SCHEDULED")).await;
    assert_eq!(ids(&scheduled), set([&c]));
    let not_completed = query(&app, &format!("{base}?_callback_state=!COMPLETED")).await;
    assert_eq!(ids(&not_completed), set([&a, &c]));
    let completed = query(&app, &format!("{base}?_callback_state=COMPLETED")).await;
    assert_eq!(ids(&completed), set([&b]));
    assert_eq!(completed[0]["_callback_reason"], "CANCELLED");

    let both = query(
        &app,
        &format!("{base}?_customer_number=111&_customer_number=222&operand=OR"),
    )
    .await;
    assert_eq!(ids(&both), set([&a, &b, &c]));
    let neither = query(
        &app,
        &format!("{base}?_customer_number=111&_customer_number=222&operand=AND"),
    )
    .await;
    assert_eq!(neither, Vec::<Value>::new());
    let default_and = query(
        &app,
        &format!("{base}?_customer_number=111&_callback_state=QUEUED"),
    )
    .await;
    assert_eq!(ids(&default_and), set([&a]));
    let or_mixed = query(
        &app,
        &format!("{base}?_customer_number=222&_callback_state=COMPLETED&operand=or"),
    )
    .await;
    assert_eq!(ids(&or_mixed), set([&b, &c]));

    let billing = query(&app, &format!("{base}?usr_reason=billing")).await;
    assert_eq!(ids(&billing), set([&a, &c]));
    let billing_111 = query(
        &app,
        &format!("{base}?usr_reason=billing&_customer_number=111"),
    )
    .await;
    assert_eq!(ids(&billing_111), set([&a]));
    let named = query(&app, &format!("{base}?usr_customer_name=Bob%20Markel")).await;
    assert_eq!(ids(&named), set([&a]));
    let not_billing = query(&app, &format!("{base}?usr_reason=!billing")).await;
    assert_eq!(ids(&not_billing), set([&b]));
}

/// Without a scenario in the path the query covers every scenario, as an
/// app asks "does this customer have a callback waiting anywhere?".
#[tokio::test]
async fn queries_across_every_scenario() {
    let World { app, a, b, c, d } = world().await;
    let all = "/genesys/1/service/callback";
    for (query_string, expected) in [
        ("_customer_number=111", set([&a, &b, &d])),
        (
            "_customer_number=111&_callback_state=!COMPLETED",
            set([&a, &d]),
        ),
        ("_callback_state=QUEUED", set([&a, &d])),
        ("_callback_state=!COMPLETED&_customer_number=222", set([&c])),
        ("usr_reason=billing", set([&a, &c])),
        ("_service_name=chat-immediate", set([&d])),
        (
            "_customer_number=222&_callback_state=COMPLETED&operand=OR",
            set([&b, &c]),
        ),
        ("_customer_number=999", BTreeSet::new()),
    ] {
        let found = query(&app, &format!("{all}?{query_string}")).await;
        assert_eq!(ids(&found), expected, "{query_string}");
    }
    // An id with other conditions is one more condition.
    let found = query(&app, &format!("{all}?_id={a}&_customer_number=111")).await;
    assert_eq!(ids(&found), set([&a]));
    let found = query(&app, &format!("{all}?_id={a}&_customer_number=222")).await;
    assert_eq!(found, Vec::<Value>::new());
    // The records have the same shape as the query by scenario gives.
    let across = query(&app, &format!("{all}?_customer_number=222")).await;
    let by_scenario = query(
        &app,
        "/genesys/1/service/callback/chat-delay?_customer_number=222",
    )
    .await;
    assert_eq!(across, by_scenario);
    // Bad conditions name themselves; no condition at all names `_id`.
    for (query_string, exception, names) in [
        (
            "_callback_state=NOPE",
            "INVALID_PARAMETER",
            "_callback_state",
        ),
        (
            "_customer_number=111&operand=XOR",
            "INVALID_PARAMETER",
            "operand",
        ),
        ("operand=AND", "MISSING_PARAMETER", "_id"),
        ("_id=a%20b&_customer_number=111", "INVALID_PARAMETER", "_id"),
    ] {
        let (status, body) = app.get(&format!("{all}?{query_string}")).await;
        assert_eq!(status, 400, "{query_string}: {body}");
        assert_eq!(body["exception"], exception, "{query_string}: {body}");
        assert!(
            body["message"].as_str().unwrap_or_default().contains(names),
            "{query_string}: {body}"
        );
    }
}

#[tokio::test]
async fn each_record_has_the_gms_keys_plus_its_user_data() {
    let World { app, a, b, c, d } = world().await;
    let all = query(
        &app,
        "/genesys/1/service/callback/chat-delay?_customer_number=111&_customer_number=222&operand=OR",
    )
    .await;
    let by_id = |id: &String| {
        all.iter()
            .find(|r| &r["_id"] == id)
            .unwrap_or_else(|| panic!("{id} in {all:?}"))
            .clone()
    };

    let ra = by_id(&a);
    assert_eq!(keys(&ra), fixed_plus(&["usr_reason", "usr_customer_name"]));
    assert_eq!(ra["usr_reason"], "billing");
    assert_eq!(ra["usr_customer_name"], "Bob Markel");
    assert_eq!(ra["_service_name"], "chat-delay");
    assert_eq!(ra["_callback_state"], "QUEUED");
    assert_eq!(ra["_callback_reason"], Value::Null);
    assert_eq!(ra["_customer_number"], "111");

    let rb = by_id(&b);
    assert_eq!(keys(&rb), fixed_plus(&["usr_reason"]));
    assert_eq!(rb["_callback_reason"], "CANCELLED");

    let rc = by_id(&c);
    assert_eq!(keys(&rc), fixed_plus(&["usr_reason"]));
    assert_eq!(rc["_callback_state"], "SCHEDULED");
    assert_eq!(rc["_desired_time"], "2030-01-01T00:00:00.000Z");
    // chat-delay keeps a service for _ttl = 86400 s after its desired time.
    assert_eq!(rc["_expiration_time"], "2030-01-02T00:00:00.000Z");

    // By id, in any scenario: the same record.
    for (id, record) in [(&a, &ra), (&c, &rc)] {
        let found = query(&app, &format!("/genesys/1/service/callback?_id={id}")).await;
        assert_eq!(found, vec![record.clone()]);
    }
    let rd = query(&app, &format!("/genesys/1/service/callback?_id={d}")).await;
    assert_eq!(rd.len(), 1);
    assert_eq!(keys(&rd[0]), fixed_plus(&[]));
    assert_eq!(rd[0]["_service_name"], "chat-immediate");
}

#[tokio::test]
async fn expiration_is_desired_time_plus_ttl() {
    let app = spawn_app().await;
    // chat-immediate writes its _ttl as "24h".
    for (scenario, desired, expires) in [
        (
            "chat-delay",
            "2031-06-15T12:30:45.123Z",
            "2031-06-16T12:30:45.123Z",
        ),
        (
            "chat-immediate",
            "2031-12-31T23:00:00Z",
            "2032-01-01T23:00:00.000Z",
        ),
        (
            "chat-delay",
            "2031-02-28T10:00:00",
            "2031-03-01T10:00:00.000Z",
        ),
    ] {
        let id = create(
            &app,
            scenario,
            &[("_customer_number", "777"), ("_desired_time", desired)],
        )
        .await;
        let found = query(&app, &format!("/genesys/1/service/callback?_id={id}")).await;
        assert_eq!(
            found[0]["_expiration_time"], expires,
            "{desired}: {found:?}"
        );
    }
}

#[tokio::test]
async fn bad_queries_are_refused_with_the_parameter_named() {
    let World { app, .. } = world().await;
    let base = "/genesys/1/service/callback/chat-delay";
    for (path, status, exception, names) in [
        (
            "/genesys/1/service/callback?_id=00000000-0000-4000-8000-000000000000".to_owned(),
            404,
            "NOT_FOUND",
            "00000000-0000-4000-8000-000000000000",
        ),
        (
            "/genesys/1/service/callback".to_owned(),
            400,
            "MISSING_PARAMETER",
            "_id",
        ),
        (
            "/genesys/1/service/callback?_id=a%20b".to_owned(),
            400,
            "INVALID_PARAMETER",
            "_id",
        ),
        (
            format!("{base}?_callback_state=FOO"),
            400,
            "INVALID_PARAMETER",
            "_callback_state",
        ),
        (
            format!("{base}?_callback_state=!FOO"),
            400,
            "INVALID_PARAMETER",
            "_callback_state",
        ),
        (
            format!("{base}?_customer_number=111&operand=XOR"),
            400,
            "INVALID_PARAMETER",
            "operand",
        ),
        (
            "/genesys/1/service/callback/no-such-scenario?_customer_number=111".to_owned(),
            404,
            "NOT_FOUND",
            "no-such-scenario",
        ),
    ] {
        let (got, body) = app.get(&path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["exception"], exception, "{path}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(names), "{path}: {body}");
    }
}

/// GMS's reschedule (`PUT …/{scenario}/{id}`) takes the customer's number
/// and user data with `_new_desired_time`: all change in one step, the
/// query by number finds the service under its new number only, and a bad
/// number is refused naming the field, changing nothing.
#[tokio::test]
async fn rescheduling_changes_the_number_and_user_data_too() {
    let World { app, c, .. } = world().await;
    let path = format!("/genesys/1/service/callback/chat-delay/{c}");
    let put = |fields: &'static [(&'static str, &'static str)]| {
        let request = app
            .client
            .put(app.url(&path))
            .multipart(tests::multipart(fields))
            .send();
        async move {
            let response = request.await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = put(&[
        ("_new_desired_time", "2030-02-01T09:00:00.000Z"),
        ("_customer_number", ""),
    ])
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("_customer_number"),
        "{body}"
    );
    assert_eq!(
        app.query_by_id(&c).await["_desired_time"],
        "2030-01-01T00:00:00.000Z"
    );

    let (status, body) = put(&[
        ("_new_desired_time", "2030-02-01T09:00:00.000Z"),
        ("_customer_number", "333"),
        ("usr_reason", "sales"),
        ("usr_channel", "app"),
    ])
    .await;
    assert_eq!(status, 200, "{body}");
    let record = app.query_by_id(&c).await;
    assert_eq!(
        record["_desired_time"], "2030-02-01T09:00:00.000Z",
        "{record}"
    );
    assert_eq!(record["_customer_number"], "333", "{record}");
    assert_eq!(record["usr_reason"], "sales", "{record}");
    assert_eq!(record["usr_channel"], "app", "{record}");
    let base = "/genesys/1/service/callback/chat-delay";
    let now_333 = query(&app, &format!("{base}?_customer_number=333")).await;
    assert_eq!(ids(&now_333), set([&c]));
    let was_222 = query(&app, &format!("{base}?_customer_number=222")).await;
    assert_eq!(was_222, Vec::<Value>::new());
}

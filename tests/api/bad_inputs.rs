//! Bad requests, one table: every one gets a 4xx with a JSON body
//! `{"message", "exception"}` whose message names the culprit; none gets a 5xx.

use serde_json::{json, Value};
use tests::{spawn_app, urlencoded};

const CREATE: &str = "/genesys/1/service/callback/chat-delay";
/// A well-formed id that no service has.
const UNKNOWN: &str = "00000000-0000-4000-8000-000000000000";
const BOUNDARY: &str = "----WebKitFormBoundaryNY84ld7wm7oHB9fp";

/// (Content-Type, body) of one request.
type Body = (Option<String>, Vec<u8>);

/// A multipart body, as the seed's browser writes it.
fn mp(fields: &[(&str, &str)]) -> Body {
    (
        Some(format!("multipart/form-data; boundary={BOUNDARY}")),
        tests::raw_multipart(BOUNDARY, fields).into_bytes(),
    )
}

fn form(fields: &[(&str, &str)]) -> Body {
    (
        Some("application/x-www-form-urlencoded".into()),
        urlencoded(fields).into_bytes(),
    )
}

fn js(value: Value) -> Body {
    (
        Some("application/json".into()),
        value.to_string().into_bytes(),
    )
}

fn raw(content_type: &str, body: &str) -> Body {
    (Some(content_type.into()), body.as_bytes().to_vec())
}

fn none() -> Body {
    (None, Vec::new())
}

/// One row: request, then (status, exception, text the message must contain).
struct Case {
    method: &'static str,
    path: String,
    body: Body,
    status: u16,
    exception: &'static str,
    needle: String,
}

fn case(
    method: &'static str,
    path: impl Into<String>,
    body: Body,
    (status, exception, needle): (u16, &'static str, &str),
) -> Case {
    Case {
        method,
        path: path.into(),
        body,
        status,
        exception,
        needle: needle.to_owned(),
    }
}

#[tokio::test]
async fn every_bad_request_gets_a_json_4xx_naming_the_problem() {
    let app = spawn_app().await;
    // A chat-delay service waiting for an agent (there are no agents at all).
    let q = app.create("chat-delay", "5550300").await;
    // A chat-immediate service whose chat was started while it waits.
    let ci = app.create("chat-immediate", "5550301").await;
    let (status, started) = app
        .post_form(
            &format!("/genesys/1/service/{ci}/ixn/chat"),
            &[("firstName", "Ann")],
        )
        .await;
    assert_eq!(status, 200, "{started}");
    // A cancelled one.
    let done = app.create("chat-delay", "5550302").await;
    let (status, _) = app
        .delete(&format!("/genesys/1/service/callback/chat-delay/{done}"))
        .await;
    assert_eq!(status, 200);
    // An agent that exists but is not ready, and so takes nothing.
    app.put_agent("alice", &["elsewhere"], &[], 1).await;

    let long_id = "x".repeat(200);
    let long_number = "1".repeat(65);
    let long_message = "m".repeat(4001);
    let big_value = "v".repeat(9000);
    let long_name = "n".repeat(129);
    let huge = format!("_customer_number=1&usr_big={}", "a".repeat(70 * 1024));
    let many: Vec<(String, String)> = (0..101)
        .map(|i| (format!("usr_{i}"), "x".to_owned()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let agent = |extra: Value| {
        let mut body = json!({"name": "Bob", "queues": ["support"], "max_concurrent": 2});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        js(body)
    };
    let svc = |id: &str, action: &str| format!("/genesys/1/service/{id}/{action}");

    const MISSING: &str = "MISSING_PARAMETER";
    const INVALID: &str = "INVALID_PARAMETER";
    const BODY: &str = "INVALID_BODY";
    const NOT_FOUND: &str = "NOT_FOUND";
    const STATE: &str = "INVALID_STATE";

    let cases = vec![
        // --- create: fields ---
        case("POST", CREATE, mp(&[("usr_reason", "x")]), (400, MISSING, "_customer_number")),
        case("POST", CREATE, none(), (400, MISSING, "_customer_number")),
        case("POST", CREATE, js(json!({})), (400, MISSING, "_customer_number")),
        case("POST", CREATE, mp(&[("_customer_number", "")]), (400, INVALID, "_customer_number")),
        case("POST", CREATE, form(&[("_customer_number", "   ")]), (400, INVALID, "_customer_number")),
        case("POST", CREATE, mp(&[("_customer_number", &long_number)]), (400, INVALID, "_customer_number")),
        case("POST", CREATE, js(json!({"_customer_number": "12\u{7}34"})), (400, INVALID, "_customer_number")),
        case("POST", CREATE, mp(&[("_customer_number", "1"), ("_desired_time", "tomorrow")]), (400, INVALID, "_desired_time")),
        case("POST", CREATE, mp(&[("_customer_number", "1"), ("_desired_time", "2026-13-45T00:00:00Z")]), (400, INVALID, "_desired_time")),
        case("POST", CREATE, js(json!({"_customer_number": "1", "_desired_time": 1_700_000_000})), (400, INVALID, "_desired_time")),
        case("POST", CREATE, form(&[("_customer_number", "1"), ("_device_os", &"o".repeat(33))]), (400, INVALID, "_device_os")),
        // --- unknown scenario ---
        case("POST", "/genesys/1/service/callback/no-such", mp(&[("_customer_number", "1")]), (404, NOT_FOUND, "no-such")),
        case("GET", "/genesys/1/service/callback/no-such?_customer_number=1", none(), (404, NOT_FOUND, "no-such")),
        case("DELETE", format!("/genesys/1/service/callback/no-such/{q}"), none(), (404, NOT_FOUND, "no-such")),
        case("DELETE", format!("/genesys/1/service/callback/chat-immediate/{q}"), none(), (404, NOT_FOUND, &q)),
        // --- unknown service, on every endpoint that takes one ---
        case("DELETE", format!("{CREATE}/{UNKNOWN}"), none(), (404, NOT_FOUND, UNKNOWN)),
        case("GET", format!("/genesys/1/service/callback?_id={UNKNOWN}"), none(), (404, NOT_FOUND, UNKNOWN)),
        case("POST", svc(UNKNOWN, "connect"), mp(&[]), (404, NOT_FOUND, UNKNOWN)),
        case("POST", svc(UNKNOWN, "check-queue-position"), mp(&[]), (404, NOT_FOUND, UNKNOWN)),
        case("GET", svc(UNKNOWN, "check-queue-position"), none(), (404, NOT_FOUND, UNKNOWN)),
        case("POST", svc(UNKNOWN, "ixn/chat"), mp(&[("firstName", "A")]), (404, NOT_FOUND, UNKNOWN)),
        case("POST", svc(UNKNOWN, "ixn/chat/send"), mp(&[("message", "hi")]), (404, NOT_FOUND, UNKNOWN)),
        case("POST", svc(UNKNOWN, "ixn/chat/refresh"), mp(&[]), (404, NOT_FOUND, UNKNOWN)),
        case("GET", svc(UNKNOWN, "ixn/chat/refresh"), none(), (404, NOT_FOUND, UNKNOWN)),
        case("POST", svc(UNKNOWN, "ixn/chat/disconnect"), mp(&[]), (404, NOT_FOUND, UNKNOWN)),
        case("POST", svc(UNKNOWN, "internal-notification"), mp(&[("_display_message", "x")]), (404, NOT_FOUND, UNKNOWN)),
        case("POST", svc(UNKNOWN, "retrieve-notifications"), mp(&[]), (404, NOT_FOUND, UNKNOWN)),
        case("GET", svc(UNKNOWN, "retrieve-notifications"), none(), (404, NOT_FOUND, UNKNOWN)),
        case("POST", svc(UNKNOWN, "agent-notification"), mp(&[("_display_message", "x")]), (404, NOT_FOUND, UNKNOWN)),
        case("POST", svc(UNKNOWN, "retrieve-agent-notifications"), mp(&[]), (404, NOT_FOUND, UNKNOWN)),
        case("GET", svc(UNKNOWN, "retrieve-agent-notifications"), none(), (404, NOT_FOUND, UNKNOWN)),
        case("GET", format!("/api/v1/services/{UNKNOWN}"), none(), (404, NOT_FOUND, UNKNOWN)),
        case("POST", format!("/api/v1/services/{UNKNOWN}/complete"), js(json!({})), (404, NOT_FOUND, UNKNOWN)),
        case("POST", format!("/api/v1/services/{UNKNOWN}/chat"), js(json!({"text": "hi"})), (404, NOT_FOUND, UNKNOWN)),
        // --- malformed ids ---
        case("POST", svc("a%20b", "connect"), mp(&[]), (400, INVALID, "id")),
        case("POST", svc(&long_id, "check-queue-position"), mp(&[]), (400, INVALID, "id")),
        case("POST", svc("a%2Fb", "ixn/chat/send"), mp(&[("message", "hi")]), (400, INVALID, "id")),
        case("POST", svc("%FF", "connect"), mp(&[]), (400, INVALID, "id")),
        case("GET", "/api/v1/services/a%20b", none(), (400, INVALID, "id")),
        case("GET", "/api/v1/agents/%FF", none(), (400, INVALID, "agent_id")),
        case("POST", "/genesys/1/service/callback/%C3%28", mp(&[("_customer_number", "1")]), (400, INVALID, "scenario")),
        case("GET", "/genesys/1/service/callback?_id=%FF", none(), (400, INVALID, "_id")),
        case("GET", format!("/api/v1/services/{long_id}"), none(), (400, INVALID, "id")),
        case("DELETE", format!("{CREATE}/a%20b"), none(), (400, INVALID, "id")),
        case("GET", "/genesys/1/service/callback?_id=a%20b", none(), (400, INVALID, "_id")),
        case("GET", format!("/genesys/1/service/callback?_id={long_id}"), none(), (400, INVALID, "_id")),
        case("GET", "/genesys/1/service/callback", none(), (400, MISSING, "_id")),
        case("PUT", "/api/v1/agents/a%20b", agent(json!({})), (400, INVALID, "agent_id")),
        case("POST", format!("/api/v1/agents/{long_id}/ready"), none(), (400, INVALID, "agent_id")),
        // --- bodies ---
        case("POST", CREATE, raw("multipart/form-data", &tests::raw_multipart(BOUNDARY, &[("_customer_number", "1")])), (400, INVALID, "Content-Type")),
        case("POST", CREATE, raw("multipart/form-data; boundary=AAAA", &tests::raw_multipart("BBBB", &[("_customer_number", "1")])), (400, BODY, "multipart")),
        case("POST", CREATE, raw(&format!("multipart/form-data; boundary={BOUNDARY}"), &format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"_customer_number\"\r\n\r\n40826")), (400, INVALID, "_customer_number")),
        case("POST", CREATE, raw(&format!("multipart/form-data; boundary={BOUNDARY}"), &format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"_customer_number\"\r\n\r\n40826\r\n--{BOUNDARY}\r\nContent-Disp")), (400, BODY, "multipart")),
        case("POST", CREATE, raw(&format!("multipart/form-data; boundary={BOUNDARY}"), &format!("--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\n1\r\n--{BOUNDARY}--\r\n")), (400, BODY, "name")),
        case("POST", CREATE, raw("application/json", r#"{"_customer_number": "1""#), (400, BODY, "JSON")),
        case("POST", CREATE, raw("application/json", r#"["_customer_number", "1"]"#), (400, BODY, "JSON object")),
        case("POST", CREATE, raw("application/json", r#""4082652649""#), (400, BODY, "JSON object")),
        case("POST", CREATE, js(json!({"_customer_number": "1", "usr_nested": {"a": 1}})), (400, INVALID, "usr_nested")),
        case("POST", CREATE, js(json!({"_customer_number": "1", "usr_list": [1, 2]})), (400, INVALID, "usr_list")),
        case("POST", CREATE, raw("text/plain", "_customer_number=1"), (415, "UNSUPPORTED_MEDIA_TYPE", "text/plain")),
        case("POST", CREATE, raw("application/xml", "<_customer_number>1</_customer_number>"), (415, "UNSUPPORTED_MEDIA_TYPE", "application/xml")),
        case("POST", CREATE, (None, b"_customer_number=1".to_vec()), (415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type")),
        case("POST", CREATE, raw("application/x-www-form-urlencoded", &huge), (413, "BODY_TOO_LARGE", "limit")),
        case("PUT", "/api/v1/agents/bob", raw("application/json", &format!("{{\"name\": \"{}\"}}", "b".repeat(70 * 1024))), (413, "BODY_TOO_LARGE", "limit")),
        case("POST", CREATE, mp(&[("_customer_number", "1"), ("_customer_number", "2")]), (400, INVALID, "_customer_number")),
        case("POST", CREATE, form(&[("_customer_number", "1"), ("usr_a", "1"), ("usr_a", "2")]), (400, INVALID, "usr_a")),
        case("POST", CREATE, form(&many), (400, BODY, "fields")),
        case("POST", CREATE, form(&[("_customer_number", "1"), ("usr_big", &big_value)]), (400, INVALID, "usr_big")),
        case("POST", CREATE, form(&[("_customer_number", "1"), (&long_name, "x")]), (400, BODY, "field name")),
        case("POST", CREATE, form(&[("_customer_number", "1"), ("", "x")]), (400, BODY, "name")),
        // --- chat and notification fields ---
        case("POST", svc(&ci, "ixn/chat/send"), mp(&[]), (400, MISSING, "message")),
        case("POST", svc(&ci, "ixn/chat/send"), mp(&[("message", "  ")]), (400, INVALID, "message")),
        case("POST", svc(&ci, "ixn/chat/send"), mp(&[("message", &long_message)]), (400, INVALID, "message")),
        case("POST", svc(&ci, "ixn/chat/refresh"), mp(&[("transcriptPosition", "abc")]), (400, INVALID, "transcriptPosition")),
        case("GET", format!("{}?transcriptPosition=-1", svc(&ci, "ixn/chat/refresh")), none(), (400, INVALID, "transcriptPosition")),
        case("POST", svc(&q, "internal-notification"), mp(&[]), (400, MISSING, "_display_message")),
        case("POST", svc(&q, "internal-notification"), mp(&[("_display_message", " "), ("_application_message", "")]), (400, MISSING, "_display_message")),
        case("POST", svc(&q, "agent-notification"), form(&[]), (400, MISSING, "_display_message")),
        // --- the agent API ---
        case("PUT", "/api/v1/agents/bob", agent(json!({"queues": null})), (400, BODY, "queues")),
        case("PUT", "/api/v1/agents/bob", agent(json!({"queues": []})), (400, INVALID, "queues")),
        case("PUT", "/api/v1/agents/bob", agent(json!({"queues": [""]})), (400, INVALID, "queues")),
        case("PUT", "/api/v1/agents/bob", agent(json!({"max_concurrent": 0})), (400, INVALID, "max_concurrent")),
        case("PUT", "/api/v1/agents/bob", agent(json!({"max_concurrent": 1000})), (400, INVALID, "max_concurrent")),
        case("PUT", "/api/v1/agents/bob", agent(json!({"max_concurrent": "x"})), (400, INVALID, "max_concurrent")),
        case("PUT", "/api/v1/agents/bob", agent(json!({"max_concurrent": -1})), (400, INVALID, "max_concurrent")),
        case("PUT", "/api/v1/agents/bob", agent(json!({"max_concurrent": null})), (400, BODY, "max_concurrent")),
        case("PUT", "/api/v1/agents/bob", agent(json!({"name": null})), (400, BODY, "name")),
        case("PUT", "/api/v1/agents/bob", agent(json!({"name": " "})), (400, INVALID, "name")),
        case("PUT", "/api/v1/agents/bob", agent(json!({"colour": "red"})), (400, INVALID, "colour")),
        case("PUT", "/api/v1/agents/bob", agent(json!({"skills": {"bad name": 3}})), (400, INVALID, "skills")),
        case("PUT", "/api/v1/agents/bob", agent(json!({"skills": {"English": "x"}})), (400, INVALID, "skills")),
        case("PUT", "/api/v1/agents/bob", raw("application/json", ""), (400, BODY, "request body")),
        case("PUT", "/api/v1/agents/bob", raw("application/json", "not json"), (400, BODY, "request body")),
        case("POST", "/api/v1/agents/ghost/ready", none(), (404, NOT_FOUND, "ghost")),
        case("POST", "/api/v1/agents/ghost/not-ready", none(), (404, NOT_FOUND, "ghost")),
        case("GET", "/api/v1/agents/ghost", none(), (404, NOT_FOUND, "ghost")),
        case("POST", format!("/api/v1/services/{q}/chat"), js(json!({"text": ""})), (400, INVALID, "text")),
        case("POST", format!("/api/v1/services/{q}/chat"), js(json!({})), (400, BODY, "text")),
        // --- events the state does not allow ---
        case("POST", format!("/api/v1/services/{q}/complete"), js(json!({})), (409, STATE, "QUEUED")),
        case("POST", svc(&q, "connect"), mp(&[]), (409, STATE, "QUEUED")),
        case("POST", svc(&q, "ixn/chat"), mp(&[("firstName", "A")]), (409, STATE, "connect")),
        case("POST", svc(&q, "ixn/chat/send"), mp(&[("message", "hi")]), (409, STATE, "QUEUED")),
        case("POST", svc(&q, "ixn/chat/refresh"), mp(&[]), (409, STATE, "ixn/chat")),
        case("POST", svc(&q, "ixn/chat/disconnect"), mp(&[]), (409, STATE, "QUEUED")),
        case("POST", svc(&ci, "ixn/chat"), mp(&[("firstName", "A")]), (409, STATE, "already")),
        case("POST", format!("/api/v1/services/{q}/chat"), js(json!({"text": "hi"})), (409, STATE, "QUEUED")),
        case("POST", format!("/api/v1/services/{ci}/chat"), js(json!({"text": "hi"})), (409, STATE, "agent")),
        case("DELETE", format!("{CREATE}/{done}"), none(), (409, STATE, "COMPLETED")),
        case("POST", svc(&done, "check-queue-position"), mp(&[]), (409, STATE, "COMPLETED")),
        case("POST", svc(&done, "internal-notification"), mp(&[("_display_message", "x")]), (409, STATE, "COMPLETED")),
        case("POST", svc(&done, "connect"), mp(&[]), (409, STATE, "COMPLETED")),
        // --- paths and methods ---
        case("GET", "/no-such-path", none(), (404, NOT_FOUND, "/no-such-path")),
        case("POST", "/genesys/2/service/callback/chat-delay", mp(&[("_customer_number", "1")]), (404, NOT_FOUND, "/genesys/2")),
        case("GET", svc(&q, "no-such-action"), none(), (404, NOT_FOUND, "no-such-action")),
        case("DELETE", "/healthz", none(), (405, "METHOD_NOT_ALLOWED", "DELETE")),
        case("PUT", svc(&q, "connect"), mp(&[]), (405, "METHOD_NOT_ALLOWED", "PUT")),
        case("GET", svc(&q, "connect"), none(), (405, "METHOD_NOT_ALLOWED", "GET")),
        case("DELETE", CREATE, none(), (405, "METHOD_NOT_ALLOWED", "DELETE")),
        case("PATCH", "/api/v1/agents/alice", agent(json!({})), (405, "METHOD_NOT_ALLOWED", "PATCH")),
    ];
    assert!(cases.len() >= 30);

    let mut failures = Vec::new();
    for c in &cases {
        let (status, body) = app
            .raw(c.method, &c.path, c.body.0.as_deref(), c.body.1.clone())
            .await;
        let what = format!(
            "{} {} ({:?}, {} bytes)",
            c.method,
            if c.path.len() > 90 {
                &c.path[..90]
            } else {
                &c.path
            },
            c.body.0,
            c.body.1.len()
        );
        let shown = body.to_string();
        let shown = if shown.len() > 300 {
            &shown[..300]
        } else {
            &shown
        };
        if status >= 500 {
            failures.push(format!("{what}: server error {status}: {shown}"));
            continue;
        }
        let (Some(message), Some(exception)) =
            (body["message"].as_str(), body["exception"].as_str())
        else {
            failures.push(format!(
                "{what}: {status} without a JSON {{message, exception}} body: {shown}"
            ));
            continue;
        };
        if status != c.status || exception != c.exception || !message.contains(&c.needle) {
            failures.push(format!(
                "{what}: expected {} {} with `{}` in the message, got {status} {shown}",
                c.status, c.exception, c.needle
            ));
        }
    }

    // The server is still up, and none of it changed anything.
    let (status, health) = app.get("/healthz").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(app.state_of(&q).await, "QUEUED");
    assert_eq!(app.state_of(&ci).await, "QUEUED");
    let (_, queued) = app.get(&format!("{CREATE}?_callback_state=QUEUED")).await;
    assert_eq!(queued.as_array().map(Vec::len), Some(1), "{queued}");
    let (status, bob) = app.get("/api/v1/agents/bob").await;
    assert_eq!(status, 404, "no bad PUT created the agent: {bob}");

    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

//! Every answer carries an `X-Request-Id`: the caller's when it is 1 to 128
//! visible ASCII characters, else a fresh UUID v4. Errors carry it too.

use reqwest::{Method, StatusCode};
use tests::spawn_app;

const HEADER: &str = "x-request-id";

/// The status and the `X-Request-Id` of one request, sent with `id` if given.
async fn ask(
    app: &tests::TestApp,
    method: Method,
    path: &str,
    id: Option<&str>,
) -> (StatusCode, Option<String>) {
    let mut req = app.client.request(method, format!("{}{path}", app.base));
    if let Some(id) = id {
        // As bytes: a non-ASCII id must reach the server as sent.
        req = req.header(HEADER, id.as_bytes());
    }
    let res = req.send().await.expect("request");
    let echoed = res
        .headers()
        .get(HEADER)
        .map(|v| v.to_str().expect("ASCII id").to_owned());
    (res.status(), echoed)
}

fn is_uuid_v4(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 4)
}

/// (method, path, caller's id, status, id answered: `None` for a fresh UUID).
type Case<'a> = (Method, &'a str, Option<&'a str>, u16, Option<&'a str>);

#[tokio::test]
async fn every_answer_has_an_id_and_a_callers_good_id_is_kept() {
    let app = spawn_app().await;
    let create = "/genesys/1/service/callback/chat-delay";
    let cases: &[Case] = &[
        (Method::GET, "/healthz", None, 200, None),
        (
            Method::GET,
            "/healthz",
            Some("abc-123"),
            200,
            Some("abc-123"),
        ),
        (Method::GET, "/no/such/path", None, 404, None),
        (
            Method::GET,
            "/no/such/path",
            Some("trace:42/a.b"),
            404,
            Some("trace:42/a.b"),
        ),
        // A bad input: the create without `_customer_number`.
        (Method::POST, create, None, 400, None),
        (Method::POST, create, Some("mine"), 400, Some("mine")),
        // Not kept: empty, a space, a non-ASCII character, more than 128.
        (Method::GET, "/healthz", Some(""), 200, None),
        (Method::GET, "/healthz", Some("two words"), 200, None),
        (Method::GET, "/healthz", Some("caf\u{e9}"), 200, None),
        (Method::GET, "/healthz", Some(&"x".repeat(129)), 200, None),
        (
            Method::GET,
            "/healthz",
            Some(&"x".repeat(128)),
            200,
            Some(&"x".repeat(128)),
        ),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (method, path, sent, status, expected) in cases {
        let (got_status, got) = ask(&app, method.clone(), path, *sent).await;
        let case = format!("{method} {path} with {sent:?}");
        assert_eq!(got_status.as_u16(), *status, "{case}");
        let got = got.unwrap_or_else(|| panic!("{case}: no {HEADER}"));
        match expected {
            Some(id) => assert_eq!(&got, id, "{case}"),
            None => {
                assert!(is_uuid_v4(&got), "{case}: `{got}` is not a UUID v4");
                assert!(seen.insert(got.clone()), "{case}: `{got}` was given before");
            }
        }
    }
}

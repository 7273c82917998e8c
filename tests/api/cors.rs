//! CORS: only the configured web origins' pages may call the API from a
//! browser, and their preflights are answered before any credential is
//! asked for.

use reqwest::Method;
use tests::TestApp;

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(
            Method::OPTIONS,
            app.url("/genesys/1/service/callback/chat-delay"),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, idempotency-key",
        )
        .send()
        .await
        .unwrap()
}

fn allowed(res: &reqwest::Response) -> Option<&str> {
    res.headers()
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn only_the_configured_origins_may_call_from_a_browser() {
    let app = TestApp::builder()
        .cors_origins(&["https://shop.example"])
        .spawn()
        .await;
    let res = preflight(&app, "https://shop.example").await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(allowed(&res), Some("https://shop.example"));
    let methods = res.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");
    let headers = res.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("idempotency-key"),
        "{headers}"
    );

    let res = preflight(&app, "https://evil.example").await;
    assert_eq!(allowed(&res), None, "another origin is not allowed");
    // A real request from the allowed origin carries the header too.
    let res = reqwest::Client::new()
        .get(app.url("/healthz"))
        .header("origin", "https://shop.example")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed(&res), Some("https://shop.example"));
}

#[tokio::test]
async fn no_origin_is_allowed_by_default() {
    let app = TestApp::builder().spawn().await;
    let res = preflight(&app, "https://shop.example").await;
    assert_eq!(allowed(&res), None);
}

//! The pages over plain HTTP: what each answers, its headers, and what the
//! asset route refuses. (tests/pages drives them in a browser.)

use reqwest::header::{
    CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use tests::{spawn_app, TestApp};

async fn fetch(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.get(app.url(path)).send().await.unwrap()
}

#[tokio::test]
async fn every_page_carries_the_security_headers() {
    let app = spawn_app().await;
    for (path, script) in [
        ("/callback/chat-delay", "/assets/js/callback.js"),
        ("/agent", "/assets/js/agent.js"),
        ("/supervisor", "/assets/js/supervisor.js"),
        ("/room/K7QX4MA", "/assets/js/room.js"),
        (
            "/video/00000000-0000-4000-8000-000000000000",
            "/assets/js/video.js",
        ),
        ("/book/video-scheduled", "/assets/js/book.js"),
        (
            "/booking/00000000-0000-4000-8000-000000000000",
            "/assets/js/booking.js",
        ),
    ] {
        check_page(&app, path, script).await;
    }
}

async fn check_page(app: &TestApp, path: &str, script: &str) {
    let page = fetch(app, path).await;
    assert_eq!(page.status(), 200);
    let h = page.headers();
    assert_eq!(h[CONTENT_TYPE], "text/html; charset=utf-8");
    let csp = h[CONTENT_SECURITY_POLICY].to_str().unwrap();
    for directive in [
        "default-src 'self'",
        "script-src 'self';",
        "style-src 'self';",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'self'",
    ] {
        assert!(csp.contains(directive), "{directive} not in {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h[X_FRAME_OPTIONS], "SAMEORIGIN");
    assert_eq!(h[X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[REFERRER_POLICY], "same-origin");
    let html = page.text().await.unwrap();
    assert!(html.contains(&format!(r#"<script type="module" src="{script}">"#)));
    assert!(
        !html.contains("<script>"),
        "no inline script: the CSP would refuse it"
    );
}

#[tokio::test]
async fn only_the_configured_origins_may_frame_a_page() {
    let app = TestApp::builder()
        .frame_origins(&["https://shop.example", "https://help.example:8443"])
        .spawn()
        .await;
    let page = fetch(&app, "/callback/chat-delay").await;
    let csp = page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.ends_with("frame-ancestors 'self' https://shop.example https://help.example:8443"),
        "{csp}"
    );
    assert!(page.headers().get(X_FRAME_OPTIONS).is_none());
}

#[tokio::test]
async fn an_unknown_scenario_is_a_readable_404() {
    let app = spawn_app().await;
    // No such scenario; and a scenario without a schedule has no booking page.
    for path in [
        "/callback/no-such-scenario",
        "/book/no-such-scenario",
        "/book/chat-delay",
    ] {
        let page = fetch(&app, path).await;
        assert_eq!(page.status(), 404, "{path}");
        assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(page.headers().contains_key(CONTENT_SECURITY_POLICY));
        assert!(page
            .text()
            .await
            .unwrap()
            .contains("This page does not exist"));
    }
}

#[tokio::test]
async fn assets_have_their_types_and_are_revalidated_by_etag() {
    let app = spawn_app().await;
    for (path, kind) in [
        ("/assets/app.css", "text/css; charset=utf-8"),
        ("/assets/js/callback.js", "text/javascript; charset=utf-8"),
        ("/assets/i18n/ar.json", "application/json"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let first = fetch(&app, path).await;
        assert_eq!(first.status(), 200, "{path}");
        assert_eq!(first.headers()[CONTENT_TYPE], kind, "{path}");
        assert_eq!(first.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
        let etag = first.headers()[ETAG].clone();
        let again = app
            .client
            .get(app.url(path))
            .header(IF_NONE_MATCH, etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    // The Arabic translation is whole JSON.
    let ar: serde_json::Value = fetch(&app, "/assets/i18n/ar.json")
        .await
        .json()
        .await
        .unwrap();
    assert!(ar["ask.title"].is_string());
}

#[tokio::test]
async fn the_asset_route_serves_nothing_else() {
    let app = spawn_app().await;
    for path in [
        "/assets/nope.js",
        // Pages are served at their own paths, with the page headers.
        "/assets/pages/callback.html",
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/Cargo.toml",
        "/assets/js//callback.js",
        "/assets/",
    ] {
        let answer = fetch(&app, path).await;
        assert_eq!(answer.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn a_browser_gets_a_page_for_an_unknown_path_an_api_client_json() {
    let app = spawn_app().await;
    let page = app
        .client
        .get(app.url("/nope"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404);
    assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("This page does not exist"));
    let (status, body) = app.get("/nope").await;
    assert_eq!(status, 404);
    assert!(
        body["message"].as_str().unwrap().contains("no resource at"),
        "{body}"
    );
}

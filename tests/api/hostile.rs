//! Clients that send slowly, too much, or never finish, as an attacker
//! would: over raw TCP where a well-behaved HTTP client cannot misbehave.

use std::sync::Arc;
use std::time::Duration;

use engine::scenario::Scenarios;
use engine::store::memory::MemoryStore;
use http_front::HttpLimits;
use runtime::clock::SystemClock;
use serde_json::{json, Value};
use tests::{spawn_app, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A server with the shipped scenarios and these HTTP limits; answers its
/// address and the handle that stops it when dropped.
async fn spawn_with(limits: HttpLimits) -> (String, tokio::sync::oneshot::Sender<()>) {
    let scenarios = Scenarios::load_dir(&tests::shipped_scenarios_dir()).expect("scenarios");
    let clock = Arc::new(SystemClock);
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let config = http_front::Config {
        http: limits,
        ..http_front::Config::new(scenarios, store, clock)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(http_front::run(listener, config, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Short limits, so that tests wait a fraction of a second.
fn short() -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_secs(10),
        max_connections_per_ip: 512,
    }
}

/// Reads what the server sends until it closes or `within` passes.
async fn read_all(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

/// The status and JSON body of one raw HTTP/1.1 response.
fn parse(response: &str) -> (u16, Value) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {response:?}"));
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    let json =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON body ({e}): {response:?}"));
    (status, json)
}

/// Sends headers that promise `length` bytes and only `sent` of them.
async fn stalled_body(addr: &str, method: &str, path: &str, content_type: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {content_type}\r\ncontent-length: 100\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(b"{\"name\":").await.expect("write");
    stream
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408_in_the_json_shape() {
    let (addr, _stop) = spawn_with(short()).await;
    for (method, path, content_type) in [
        (
            "POST",
            "/genesys/1/service/callback/chat-delay",
            "application/json",
        ),
        ("PUT", "/api/v1/agents/slow", "application/json"),
        ("POST", "/api/v1/services/abc/video", "application/json"),
        ("POST", "/genesys/cometd", "application/json"),
    ] {
        let started = Instant::now();
        let mut stream = stalled_body(&addr, method, path, content_type).await;
        let (response, _) = read_all(&mut stream, Duration::from_secs(5)).await;
        let (status, body) = parse(&response);
        assert_eq!(status, 408, "{path}: {response}");
        assert_eq!(body["exception"], "BODY_TIMEOUT", "{path}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("request body"),
            "{body}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{path}: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn the_whole_request_timeout_answers_503_in_the_json_shape() {
    let (addr, _stop) = spawn_with(HttpLimits {
        body_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_millis(300),
        ..short()
    })
    .await;
    let mut stream = stalled_body(&addr, "PUT", "/api/v1/agents/slow", "application/json").await;
    let (response, _) = read_all(&mut stream, Duration::from_secs(5)).await;
    let (status, body) = parse(&response);
    assert_eq!(status, 503, "{response}");
    assert_eq!(body["exception"], "REQUEST_TIMEOUT", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("request"),
        "{body}"
    );
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    let (addr, _stop) = spawn_with(short()).await;
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    stream
        .write_all(format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\nx-slow: ").as_bytes())
        .await
        .expect("write");
    let started = Instant::now();
    let (_, closed) = read_all(&mut stream, Duration::from_secs(5)).await;
    assert!(closed, "still open after {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn one_address_holds_at_most_the_connection_limit() {
    let (addr, _stop) = spawn_with(HttpLimits {
        header_timeout: Duration::from_secs(10),
        max_connections_per_ip: 2,
        ..short()
    })
    .await;
    let first = TcpStream::connect(&addr).await.expect("connect");
    let _second = TcpStream::connect(&addr).await.expect("connect");
    let mut third = TcpStream::connect(&addr).await.expect("connect");
    let (response, closed) = read_all(&mut third, Duration::from_secs(5)).await;
    assert!(closed, "{response}");
    let (status, body) = parse(&response);
    assert_eq!(status, 503, "{response}");
    assert_eq!(body["exception"], "TOO_MANY_CONNECTIONS", "{body}");

    // A closed connection frees its place.
    drop(first);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match client.get(format!("http://{addr}/healthz")).send().await {
            Ok(r) if r.status() == 200 => break,
            other => {
                assert!(Instant::now() < deadline, "no place freed: {other:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn expect_100_continue_over_the_limit_gets_an_early_413() {
    let (addr, _stop) = spawn_with(short()).await;
    for (path, length, wanted) in [
        ("/api/v1/agents/big", 1_000_000, "HTTP/1.1 413"),
        (
            "/genesys/1/service/callback/chat-delay",
            65 * 1024,
            "HTTP/1.1 413",
        ),
        // Within the limit, the client is told to go on.
        ("/api/v1/agents/small", 20, "HTTP/1.1 100"),
    ] {
        let mut stream = TcpStream::connect(&addr).await.expect("connect");
        let head = format!(
            "PUT {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\nexpect: 100-continue\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf))
            .await
            .expect("an answer before the body")
            .expect("read");
        let response = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(response.starts_with(wanted), "{path}: {response}");
        if wanted.ends_with("413") {
            let (_, body) = parse(&response);
            assert_eq!(body["exception"], "BODY_TOO_LARGE", "{body}");
        }
    }
}

/// (status, exception) of an answer that must be in the JSON error shape.
async fn json_error(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "{status}: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(body["message"].is_string(), "{body}");
    (status, body["exception"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn every_route_kind_takes_the_same_body_limit_and_answers_413_as_json() {
    let app = spawn_app().await;
    let id = app.create("chat-delay", "5550001").await;
    let big = "x".repeat(100 * 1024);
    let huge = "x".repeat(3 * 1024 * 1024);
    let video = format!("/api/v1/services/{id}/video");
    let json_of = |n: &str| json!({"routingData": n}).to_string();
    // (kind, method, path, content type, body)
    let cases: Vec<(&str, &str, String, &str, String)> = vec![
        (
            "optional JSON, 100 KiB",
            "POST",
            video.clone(),
            "application/json",
            json_of(&big),
        ),
        (
            "optional JSON, 3 MB",
            "POST",
            video.clone(),
            "application/json",
            json_of(&huge),
        ),
        (
            "JSON",
            "PUT",
            "/api/v1/agents/big".into(),
            "application/json",
            json_of(&big),
        ),
        (
            "GMS form",
            "POST",
            "/genesys/1/service/callback/chat-delay".into(),
            "application/x-www-form-urlencoded",
            format!("a={big}"),
        ),
        (
            "no body extractor",
            "POST",
            "/api/v1/agents/big/ready".into(),
            "application/json",
            json_of(&big),
        ),
        (
            "long polling",
            "POST",
            "/genesys/cometd".into(),
            "application/json",
            json_of(&big),
        ),
    ];
    let client = reqwest::Client::new();
    for (kind, method, path, content_type, body) in cases {
        // Declared (Content-Length), and chunked, which only the read sees.
        let response = client
            .request(method.parse().unwrap(), app.url(&path))
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .expect("send");
        let (status, exception) = json_error(response).await;
        assert_eq!(
            (status, exception.as_str()),
            (413, "BODY_TOO_LARGE"),
            "{kind}"
        );
        if kind == "no body extractor" {
            // It never reads a body it was not told the size of.
            continue;
        }
        let response = chunked(&app, method, &path, content_type, body.as_bytes()).await;
        let (status, body) = parse(&response);
        assert_eq!(
            (status, body["exception"].as_str()),
            (413, Some("BODY_TOO_LARGE")),
            "{kind}, chunked: {response}"
        );
    }
}

/// Sends `body` chunked (no Content-Length), as fast as the server reads it;
/// answers the raw response.
async fn chunked(
    app: &TestApp,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> String {
    let addr = app.url("").trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    for chunk in body.chunks(16 * 1024) {
        // The server may answer and close before all of it is sent.
        if stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
            || stream.write_all(chunk).await.is_err()
            || stream.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    read_all(&mut stream, Duration::from_secs(5)).await.0
}

#[tokio::test]
async fn extractor_rejections_answer_the_json_shape() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let id = app.create("chat-delay", "5550002").await;
    // (what, request); each is a 400 in the JSON shape (checked by json_error)
    let cases = [
        (
            "bad JSON",
            client
                .put(app.url("/api/v1/agents/a"))
                .header("content-type", "application/json")
                .body("{"),
        ),
        (
            "bad optional JSON",
            client
                .post(app.url(&format!("/api/v1/services/{id}/video")))
                .header("content-type", "application/json")
                .body("[1]"),
        ),
        (
            "bad query",
            client.post(app.url(&format!("/api/v1/services/{id}/complete?force=maybe"))),
        ),
        (
            "bad path",
            client.get(app.url(&format!("/api/v1/rooms/{}", "x".repeat(300)))),
        ),
    ];
    for (what, request) in cases {
        let response = request.send().await.expect("send");
        let (status, exception) = json_error(response).await;
        assert_eq!(status, 400, "{what}: {exception}");
        assert!(!exception.is_empty(), "{what}");
    }
}

#[tokio::test]
async fn the_json_api_answers_415_for_a_content_type_it_does_not_take() {
    let app = spawn_app().await;
    let id = app.create("chat-delay", "5550003").await;
    let agent = r#"{"name":"Bob","queues":["support"],"max_concurrent":1}"#;
    for (path, method, content_type) in [
        ("/api/v1/agents/bob".to_owned(), "PUT", "text/plain"),
        (
            "/api/v1/agents/bob".to_owned(),
            "PUT",
            "application/x-www-form-urlencoded",
        ),
        (
            "/api/v1/agents/bob".to_owned(),
            "PUT",
            "multipart/form-data; boundary=x",
        ),
        (format!("/api/v1/services/{id}/chat"), "POST", "text/plain"),
        (
            format!("/api/v1/services/{id}/video"),
            "POST",
            "application/xml",
        ),
    ] {
        let (status, body) = app.raw(method, &path, Some(content_type), agent).await;
        assert_eq!(status, 415, "{path} {content_type}: {body}");
        assert_eq!(body["exception"], "UNSUPPORTED_MEDIA_TYPE", "{body}");
    }
    // JSON, a +json type, and no Content-Type still go through.
    for content_type in [
        Some("application/json"),
        Some("application/merge-patch+json"),
        None,
    ] {
        let (status, body) = app
            .raw("PUT", "/api/v1/agents/bob", content_type, agent)
            .await;
        assert_eq!(status, 200, "{content_type:?}: {body}");
    }
    // The GMS routes keep taking JSON, urlencoded and multipart.
    let (status, body) = app
        .raw(
            "POST",
            "/genesys/1/service/callback/chat-delay",
            Some("application/json"),
            r#"{"_customer_number":"5550004"}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .post_urlencoded(
            "/genesys/1/service/callback/chat-delay",
            &[("_customer_number", "5550005")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .post_form(
            "/genesys/1/service/callback/chat-delay",
            &[("_customer_number", "5550006")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

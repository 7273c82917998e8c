//! HTTPS on the listener (`--tls-cert`, `--tls-key`), as a client that
//! trusts the server's certificate sees it: the GMS API and the plain
//! WebSocket over TLS, nothing in clear, the connection cap, and a stalled
//! handshake that holds up no one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use http_front::HttpLimits;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tests::{raw_multipart, TestApp, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, crypto::ring};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

/// A fresh self-signed certificate for `localhost` and 127.0.0.1, with its
/// PKCS#8 key, in a directory of its own.
struct Cert {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

fn self_signed() -> Cert {
    let dir = tempfile::tempdir().expect("temp dir");
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("a certificate");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    Cert {
        der: certified.cert.der().clone(),
        _dir: dir,
        cert,
        key,
    }
}

/// A server with the shipped scenarios on HTTPS with `cert`, and these limits.
async fn spawn_tls(cert: &Cert, limits: HttpLimits) -> TestApp {
    TestApp::builder()
        .tls(&cert.cert, &cert.key)
        .http_limits(limits)
        .spawn()
        .await
}

/// An HTTPS client of one server that trusts only its certificate and
/// checks it for the name `localhost`; one connection per request.
struct Https {
    addr: String,
    connector: TlsConnector,
}

impl Https {
    /// Offers these ALPN protocols (none: no ALPN, as curl without h2).
    fn new(app: &TestApp, cert: &Cert, alpn: &[&[u8]]) -> Https {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der.clone()).expect("a root");
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Https {
            addr: app
                .base
                .strip_prefix("https://")
                .expect("an https:// base")
                .to_owned(),
            connector: TlsConnector::from(Arc::new(config)),
        }
    }

    async fn connect(&self) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(&self.addr).await?;
        let name = ServerName::try_from("localhost").expect("a name");
        self.connector.connect(name, tcp).await
    }

    /// Sends one request; answers (status, JSON body, or its text as a string).
    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> (u16, Value) {
        let tls = self.connect().await.expect("a TLS connection");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("an HTTP/1.1 connection");
        tokio::spawn(conn);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let request = request.body(Full::new(body.into())).expect("a request");
        let response = sender.send_request(request).await.expect("an answer");
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("the body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, None, Bytes::new()).await
    }

    /// A multipart body, as the seed's browser sends it.
    async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> (u16, Value) {
        let boundary = "callbackd-tls-test";
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let body = raw_multipart(boundary, fields);
        self.send("POST", path, Some(&content_type), body).await
    }

    async fn json(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        self.send(method, path, Some("application/json"), body.to_string())
            .await
    }
}

#[tokio::test]
async fn a_gms_create_over_https_is_answered_with_https_links() {
    let cert = self_signed();
    let app = spawn_tls(&cert, HttpLimits::default()).await;
    let https = Https::new(&app, &cert, &[]);
    let (status, body) = https.get("/healthz").await;
    assert_eq!(status, 200, "{body}");

    let (status, created) = https
        .post_form(
            "/genesys/1/service/callback/chat-immediate",
            &[
                ("_customer_number", "5550701"),
                ("usr_customer_name", "Bob"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["_id"].as_str().expect("_id");
    // Links made from the request's Host say https: that is how it came.
    let chat = created["_start_chat_url"].as_str().expect("a chat URL");
    assert_eq!(
        chat,
        format!("https://localhost/genesys/1/service/{id}/ixn/chat")
    );
    let (status, record) = https.get(&format!("/api/v1/services/{id}")).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["customer_number"], "5550701", "{record}");
    assert_eq!(record["_callback_state"], "QUEUED", "{record}");
}

#[tokio::test]
async fn the_server_settles_on_http_1_1_when_a_client_offers_h2_first() {
    let cert = self_signed();
    let app = spawn_tls(&cert, HttpLimits::default()).await;
    let https = Https::new(&app, &cert, &[b"h2", b"http/1.1"]);
    let tls = https.connect().await.expect("a handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (status, _) = https.get("/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_request_in_clear_to_the_https_port_gets_no_http_answer() {
    let cert = self_signed();
    let app = spawn_tls(&cert, HttpLimits::default()).await;
    let addr = app.base.strip_prefix("https://").unwrap().to_owned();
    let mut plain = TcpStream::connect(&addr).await.expect("connect");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .ok();
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1"),
        "nothing in clear: {answer:?}"
    );
    // A plain HTTP client fails, rather than reading an answer.
    let sent = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await;
    assert!(sent.is_err(), "{sent:?}");
    // And HTTPS still works.
    let (status, _) = Https::new(&app, &cert, &[]).get("/healthz").await;
    assert_eq!(status, 200);
}

/// The next text frame of `ws` as JSON, within [`WAIT`]; pings are answered
/// on the way.
async fn next_json<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let deadline = Instant::now() + WAIT;
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a frame in time")
            .expect("the socket is open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("a JSON frame");
        }
    }
}

#[tokio::test]
async fn the_plain_websocket_works_over_tls() {
    let cert = self_signed();
    let app = spawn_tls(&cert, HttpLimits::default()).await;
    let https = Https::new(&app, &cert, &[]);
    let tls = https.connect().await.expect("a TLS connection");
    let (mut ws, _) =
        tokio_tungstenite::client_async("wss://localhost/api/v1/push/ws?gms_user=phone-tls", tls)
            .await
            .expect("a WebSocket upgrade over TLS");
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["channel"], "/meta/connected", "{hello}");

    // A notification reaches the device through the socket.
    let (status, created) = https
        .post_form(
            "/genesys/1/service/callback/chat-delay",
            &[
                ("_customer_number", "5550702"),
                ("_device_notification_id", "phone-tls"),
                ("_device_os", "comet"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["_id"].as_str().expect("_id");
    let agent = json!({"name": "alice", "queues": ["support"], "skills": {}, "max_concurrent": 1});
    let (status, body) = https.json("PUT", "/api/v1/agents/alice", &agent).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = https
        .json("POST", "/api/v1/agents/alice/ready", &Value::Null)
        .await;
    assert_eq!(status, 200, "{body}");
    let tag = format!("service.agentavailable.{id}");
    loop {
        let frame = next_json(&mut ws).await;
        if frame["tag"] == tag.as_str() {
            assert_eq!(frame["channel"], "/_genesys", "{frame}");
            break;
        }
    }
}

#[tokio::test]
async fn over_tls_a_connection_over_the_cap_is_closed_before_any_handshake() {
    let cert = self_signed();
    let app = spawn_tls(
        &cert,
        HttpLimits {
            max_connections_per_ip: 1,
            ..HttpLimits::default()
        },
    )
    .await;
    let https = Https::new(&app, &cert, &[]);
    let first = https.connect().await.expect("the first connection");
    let refused = https.connect().await;
    assert!(refused.is_err(), "the second is over the cap");

    // A closed connection frees its place.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    while https.connect().await.is_err() {
        assert!(Instant::now() < deadline, "no place freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_stalled_handshake_holds_up_no_one_and_is_closed_after_the_header_timeout() {
    let cert = self_signed();
    let app = spawn_tls(
        &cert,
        HttpLimits {
            header_timeout: Duration::from_millis(500),
            ..HttpLimits::default()
        },
    )
    .await;
    let addr = app.base.strip_prefix("https://").unwrap().to_owned();
    // Connected, and then nothing: no ClientHello.
    let mut silent = TcpStream::connect(&addr).await.expect("connect");
    let started = Instant::now();
    // Meanwhile another client is served.
    let (status, _) = Https::new(&app, &cert, &[]).get("/healthz").await;
    assert_eq!(status, 200);
    let mut sink = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut sink))
        .await
        .expect("the server closes a silent connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
}

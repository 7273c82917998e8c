//! The real binary refuses a bad scenario at start-up, naming file, key and why.

use std::process::Command;

use engine::testing::ScenarioBuilder;

/// Runs `callbackd` on a directory holding one scenario file; returns (success, stderr).
fn start_with(toml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.toml"), toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_callbackd"))
        .args(["--listen", "127.0.0.1:0", "--scenarios"])
        .arg(dir.path())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A good scenario; each check breaks it with one text replacement.
fn good() -> String {
    ScenarioBuilder::new("x")
        .key("_ttl", "60")
        .key("_target", r#"{ queue = "support" }"#)
        .toml()
}

fn check(replace: (&str, &str), expected: &[&str]) {
    let good = good();
    let toml = good.replace(replace.0, replace.1);
    assert_ne!(toml, good, "the replacement must change the file");
    let (ok, stderr) = start_with(&toml);
    assert!(!ok, "start-up must fail for {replace:?}");
    for needle in expected.iter().chain(&["broken.toml"]) {
        assert!(
            stderr.contains(needle),
            "stderr should name `{needle}`:\n{stderr}"
        );
    }
}

#[test]
fn bad_scenarios_stop_start_up() {
    check(("_ttl = 60", "_ttl = 60\n_colour = \"blue\""), &["_colour"]);
    check(("_ttl = 60", "_ttl = \"soon\""), &["_ttl", "soon"]);
    check(("_ttl = 60", "_ttl = -5"), &["_ttl"]);
    check(
        ("_wait_for_agent = true", "_wait_for_agent = false"),
        &["_wait_for_user_confirm", "_wait_for_agent"],
    );
    check(
        (
            "_target = { queue = \"support\" }",
            "_target = { queue = \"support\", skills = \"English >=\" }",
        ),
        &["skills"],
    );
}

/// Runs `callbackd` with the shipped scenarios and these extra arguments.
fn start_with_args(args: &[&str]) -> (bool, String) {
    let scenarios = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
    // Loopback unless the arguments name another address.
    let listen: &[&str] = if args.contains(&"--listen") {
        &[]
    } else {
        &["--listen", "127.0.0.1:0"]
    };
    let out = Command::new(env!("CARGO_BIN_EXE_callbackd"))
        .args(listen)
        .args(["--scenarios", scenarios])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_store_flags_stop_start_up() {
    for (args, needle) in [
        (
            &["--store", "memcached://h:1"][..],
            "--store: `memcached://h:1` is not a Redis URL",
        ),
        (&["--store", "redis://h:1?namespace=a}b"], "namespace `a}b`"),
        (&["--store", "redis://"], "is not a Redis URL"),
        (&["--store-timeout", "soon"], "--store-timeout"),
    ] {
        let (ok, stderr) = start_with_args(args);
        assert!(!ok, "{args:?} must fail");
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr should say `{needle}`:\n{stderr}"
        );
        if args[0] == "--store" {
            assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
        }
    }
}

/// `callbackd hash-secret` reads the secret on stdin and prints a hash the
/// credentials file takes; a short secret is refused with one line.
#[test]
fn hash_secret_prints_an_argon2id_hash_of_stdin() {
    use std::io::Write;
    let run = |stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_callbackd"))
            .arg("hash-secret")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run("correct horse battery\n");
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    let hash = hash.trim();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("correct horse"));
    // The file takes it, and the secret (without its newline) checks.
    let file =
        format!("[[credential]]\nname = \"app\"\nrole = \"client\"\nsecret_hash = \"{hash}\"\n");
    let creds = access::Credentials::parse(&file, std::path::Path::new("auth.toml"), |_| None)
        .expect("the printed hash is accepted");
    let verifier = access::Verifier::new(creds);
    let presented = access::from_headers(None, Some("app:correct horse battery"))
        .unwrap()
        .unwrap();
    assert!(matches!(
        verifier.check(&presented),
        Ok(access::Checked::Principal(_))
    ));

    let short = run("hunter2\n");
    assert!(!short.status.success());
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert!(stderr.contains("at least 12 characters"), "{stderr}");
    assert!(!stderr.contains("hunter2"));
}

/// Open (no credentials) is for loopback: on any other address callbackd
/// refuses to start, in one line naming the flag that allows it; a bad
/// credentials file names its entry and the problem.
#[test]
fn exposed_without_credentials_or_with_a_bad_file_stops_start_up() {
    let (ok, stderr) = start_with_args(&["--listen", "0.0.0.0:0"]);
    assert!(!ok);
    assert!(stderr.contains("--insecure-open"), "{stderr}");
    assert!(stderr.contains("--auth"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    let hash = access::hash_secret("a-long-enough-secret");
    std::fs::write(
        &file,
        format!(
            "[[credential]]\nname = \"ann-desktop\"\nrole = \"agent\"\nsecret_hash = \"{hash}\"\n"
        ),
    )
    .unwrap();
    let (ok, stderr) =
        start_with_args(&["--listen", "0.0.0.0:0", "--auth", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("credential[1] (ann-desktop): agent is required for role agent"),
        "{stderr}"
    );
    assert!(stderr.contains("auth.toml"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");

    let (ok, stderr) = start_with_args(&["--cors-origin", "https://shop.example/path"]);
    assert!(!ok);
    assert!(
        stderr.contains("--cors-origin: `https://shop.example/path` is not an origin"),
        "{stderr}"
    );

    let (ok, stderr) = start_with_args(&["--auth", "/nonexistent/auth.toml"]);
    assert!(!ok);
    assert!(
        stderr.contains("/nonexistent/auth.toml: cannot be read"),
        "{stderr}"
    );
}

/// `--log-format json`: every line on stdout is one JSON object, and an
/// event inside a request carries the request's span (its id, method and
/// path) for a log shipper to index.
#[tokio::test]
async fn json_logs_are_one_object_a_line_with_the_request_span() {
    use tokio::io::AsyncBufReadExt;
    let scenarios = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_callbackd"))
        .args(["--listen", "127.0.0.1:0", "--scenarios", scenarios])
        .args(["--log-format", "json"])
        // A create's own line is DEBUG (at INFO a busy server would log
        // one per request): asked for here, for the runtime only.
        .env("RUST_LOG", "info,runtime=debug")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    async fn next(
        lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    ) -> serde_json::Value {
        let line = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line())
            .await
            .expect("a log line in time")
            .unwrap()
            .expect("callbackd still running");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not one JSON object: {line}: {e}"))
    }
    let addr = loop {
        let line = next(&mut lines).await;
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
        if line["message"] == "callbackd listening." {
            let url = line["url"].as_str().unwrap();
            break url.strip_prefix("http://").unwrap().to_owned();
        }
    };
    let answer = reqwest::Client::new()
        .post(format!(
            "http://{addr}/genesys/1/service/callback/chat-delay"
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-request-id", "json-log-check-1")
        .body("_customer_number=5550123456")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let created = loop {
        let line = next(&mut lines).await;
        if line["message"] == "Service created." {
            break line;
        }
    };
    let request = &created["spans"][0];
    assert_eq!(request["name"], "request", "{created}");
    assert_eq!(request["request_id"], "json-log-check-1", "{created}");
    assert_eq!(request["method"], "POST", "{created}");
    assert_eq!(request["path"], "/genesys/1/service/callback/chat-delay");
    assert!(created["service_id"].is_string(), "{created}");
    assert!(!created.to_string().contains("5550123456"), "{created}");
}

/// A fresh self-signed certificate for `localhost` and 127.0.0.1, written
/// as `cert.pem` and `key.pem` (PKCS#8) into `dir`; answers their paths
/// and the certificate in DER, for a client to trust.
fn self_signed(
    dir: &std::path::Path,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    tokio_rustls::rustls::pki_types::CertificateDer<'static>,
) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key, certified.cert.der().clone())
}

/// Every problem with the TLS files stops start-up with one line that
/// names the flag and the file; so does giving one flag without the other.
#[test]
fn bad_tls_files_stop_start_up_with_one_line_naming_flag_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = self_signed(dir.path());
    let other = tempfile::tempdir().unwrap();
    let (_, other_key, _) = self_signed(other.path());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let unterminated = dir.path().join("unterminated.pem");
    std::fs::write(&unterminated, "-----BEGIN PRIVATE KEY-----\nMIIB\n").unwrap();
    let bad_der = dir.path().join("bad-der.pem");
    std::fs::write(
        &bad_der,
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    let p = |path: &std::path::Path| path.to_str().unwrap().to_owned();
    // (arguments, what stderr must say besides the file's name)
    let cases: Vec<(Vec<String>, String, &str)> = vec![
        (
            vec![
                "--tls-cert".into(),
                p(&missing),
                "--tls-key".into(),
                p(&key),
            ],
            p(&missing),
            "--tls-cert",
        ),
        (
            vec![
                "--tls-cert".into(),
                p(&cert),
                "--tls-key".into(),
                p(&missing),
            ],
            p(&missing),
            "--tls-key",
        ),
        // The key where the certificate should be, and the other way round.
        (
            vec!["--tls-cert".into(), p(&key), "--tls-key".into(), p(&key)],
            p(&key),
            "--tls-cert",
        ),
        (
            vec!["--tls-cert".into(), p(&cert), "--tls-key".into(), p(&cert)],
            p(&cert),
            "--tls-key",
        ),
        (
            vec![
                "--tls-cert".into(),
                p(&garbage),
                "--tls-key".into(),
                p(&key),
            ],
            p(&garbage),
            "--tls-cert",
        ),
        (
            vec![
                "--tls-cert".into(),
                p(&cert),
                "--tls-key".into(),
                p(&unterminated),
            ],
            p(&unterminated),
            "--tls-key",
        ),
        (
            vec![
                "--tls-cert".into(),
                p(&bad_der),
                "--tls-key".into(),
                p(&key),
            ],
            p(&bad_der),
            "--tls-cert",
        ),
        // Another certificate's key.
        (
            vec![
                "--tls-cert".into(),
                p(&cert),
                "--tls-key".into(),
                p(&other_key),
            ],
            p(&other_key),
            "--tls-key",
        ),
        (vec!["--tls-cert".into(), p(&cert)], p(&cert), "--tls-key"),
        (vec!["--tls-key".into(), p(&key)], p(&key), "--tls-cert"),
    ];
    for (args, file, flag) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, stderr) = start_with_args(&args);
        assert!(!ok, "{args:?} must fail");
        assert!(stderr.contains(&file), "{args:?}: names {file}:\n{stderr}");
        assert!(stderr.contains(flag), "{args:?}: names {flag}:\n{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
    }
    let (_, stderr) = start_with_args(&["--tls-cert", &p(&cert), "--tls-key", &p(&other_key)]);
    assert!(
        stderr.contains("is not the private key of the certificate"),
        "{stderr}"
    );
    let (_, stderr) = start_with_args(&["--tls-cert", &p(&cert), "--tls-key", &p(&cert)]);
    assert!(stderr.contains("holds no PEM private key"), "{stderr}");

    // TLS is no credential: open on another address than loopback is still refused.
    let (ok, stderr) = start_with_args(&[
        "--listen",
        "0.0.0.0:0",
        "--tls-cert",
        &p(&cert),
        "--tls-key",
        &p(&key),
    ]);
    assert!(!ok);
    assert!(stderr.contains("--insecure-open"), "{stderr}");
}

/// With a good certificate the binary says it serves https, and does:
/// /healthz answers over TLS, and a request in clear gets no HTTP answer.
#[test]
fn with_tls_files_the_binary_serves_https_and_says_so() {
    use std::io::{BufRead, BufReader};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;

    let dir = tempfile::tempdir().unwrap();
    let (cert, key, der) = self_signed(dir.path());
    let scenarios = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
    let mut child = Command::new(env!("CARGO_BIN_EXE_callbackd"))
        .args(["--listen", "127.0.0.1:0", "--scenarios", scenarios])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed however the test ends.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _child = Kill(child);
    let mut line = String::new();
    let mut lines = BufReader::new(stdout);
    while !line.contains("callbackd listening") {
        line.clear();
        assert!(
            lines.read_line(&mut line).unwrap() > 0,
            "ended before it listened"
        );
    }
    let at = line
        .find("https://127.0.0.1:")
        .unwrap_or_else(|| panic!("the line says https: {line}"));
    let addr: String = line[at + "https://".len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.expect("a TLS handshake");
        tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tls.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

        let mut plain = tokio::net::TcpStream::connect(&addr).await.unwrap();
        plain
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            plain.read_to_end(&mut answer),
        )
        .await
        .expect("the connection is closed");
        assert!(
            !String::from_utf8_lossy(&answer).contains("HTTP/1.1"),
            "no HTTP in clear: {answer:?}"
        );
    });
}

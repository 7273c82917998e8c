//! `GET /openapi.json`: an OpenAPI 3.1 document that describes every route
//! the server serves, valid by the OpenAPI specification's validator
//! (Python's `openapi-spec-validator`, which scripts/test installs).

use serde_json::Value;
use tests::spawn_app;

#[tokio::test]
async fn every_route_the_server_serves_is_described_and_the_document_is_valid() {
    let app = spawn_app().await;
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");

    let routes = http_front::route_list();
    assert!(routes.len() > 50, "{}", routes.len());
    let mut ids = std::collections::BTreeSet::new();
    for (method, path) in &routes {
        let op = &doc["paths"][path.as_str()][method.to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {path} is not in the document");
        assert!(
            ids.insert(op["operationId"].as_str().unwrap().to_owned()),
            "{method} {path}"
        );
        for name in path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            assert!(
                op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path"),
                "{method} {path}: no parameter {name}"
            );
        }
        // The server serves it: a request reaches a handler, not the
        // router's answers for an unknown path or method.
        let concrete = path
            .split('/')
            .map(|s| {
                if s.starts_with('{') {
                    "00000000-0000-4000-8000-000000000000"
                } else {
                    s
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let response = app
            .client
            .request(method.parse().unwrap(), app.url(&concrete))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(
            !(status == 404
                && body["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("no resource at"))),
            "{method} {path} is described but not served: {body}"
        );
    }
    // And nothing else is described.
    let described: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(described, routes.len());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))\nprint('valid')",
        ])
        .arg(&file)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the OpenAPI validator refused the document (pip install openapi-spec-validator if it is missing):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

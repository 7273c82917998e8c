//! Access control over real HTTP: every route with each kind of caller.

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tests::{TestApp, WAIT};

/// The credentials file every test here runs with: one credential per role,
/// two agents. Each secret is `<name>-secret-1`.
fn credentials() -> &'static str {
    static FILE: OnceLock<String> = OnceLock::new();
    FILE.get_or_init(|| {
        let mut file = String::new();
        for (name, role, agent) in [
            ("ios-app", "client", None),
            ("crm", "backend", None),
            ("ann-desktop", "agent", Some("ann")),
            ("bob-desktop", "agent", Some("bob")),
            ("floor", "supervisor", None),
            ("root", "admin", None),
        ] {
            let hash = access::hash_secret(&format!("{name}-secret-1"));
            file += &format!(
                "[[credential]]\nname = \"{name}\"\nrole = \"{role}\"\nsecret_hash = \"{hash}\"\n"
            );
            if let Some(agent) = agent {
                file += &format!("agent = \"{agent}\"\n");
            }
        }
        file
    })
}

/// How a request presents itself.
#[derive(Debug, Clone, Copy, PartialEq)]
enum As {
    Nobody,
    WrongSecret,
    /// A file credential by name, over Basic.
    Basic(&'static str),
    /// A file credential as `name:secret` in `x-api-key`.
    ApiKey(&'static str),
}

fn secret(name: &str) -> String {
    format!("{name}-secret-1")
}

async fn call(
    app: &TestApp,
    who: As,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method, app.url(path));
    req = match who {
        As::Nobody => req,
        As::WrongSecret => req.basic_auth("root", Some("not-the-secret")),
        As::Basic(name) => req.basic_auth(name, Some(secret(name))),
        As::ApiKey(name) => req.header("x-api-key", format!("{name}:{}", secret(name))),
    };
    if let Some(body) = body {
        req = req.json(body);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    if status == 401 {
        assert!(
            res.headers().contains_key("www-authenticate"),
            "a 401 says which schemes to use"
        );
    }
    let body = res.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// A seed-style create by `who`; the id.
async fn create(app: &TestApp, who: As, customer: &str) -> String {
    let client = reqwest::Client::new();
    let form = tests::multipart(&[
        ("_customer_number", customer),
        (
            "_device_notification_id",
            "b16416334828b1d26ef14f329628b55b",
        ),
        ("_device_os", "comet"),
    ]);
    let As::Basic(name) = who else {
        panic!("create as a named credential")
    };
    let res = client
        .post(app.url("/genesys/1/service/callback/chat-delay"))
        .basic_auth(name, Some(secret(name)))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["_id"].as_str().unwrap().to_owned()
}

/// A server with the credentials, agents ann and bob on `support`, and a
/// service reserved for ann.
async fn world() -> (TestApp, String) {
    let app = TestApp::builder().auth(credentials()).spawn().await;
    let root = As::Basic("root");
    for agent in ["ann", "bob"] {
        let profile = json!({"name": agent, "queues": ["support"], "max_concurrent": 1});
        let (status, body) = call(
            &app,
            root,
            Method::PUT,
            &format!("/api/v1/agents/{agent}"),
            Some(&profile),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let id = create(&app, As::Basic("ios-app"), "4082652649").await;
    let (status, _) = call(
        &app,
        As::Basic("ann-desktop"),
        Method::POST,
        "/api/v1/agents/ann/ready",
        None,
    )
    .await;
    assert_eq!(status, 200);
    // The router reserves ann for the service.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, rec) = call(
            &app,
            root,
            Method::GET,
            &format!("/api/v1/services/{id}"),
            None,
        )
        .await;
        if rec["agent"] == "ann" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ann was never reserved: {rec}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (app, id)
}

const ROLES: [(&str, &str); 6] = [
    ("client", "ios-app"),
    ("backend", "crm"),
    ("agent", "ann-desktop"),
    ("other-agent", "bob-desktop"),
    ("supervisor", "floor"),
    ("admin", "root"),
];

/// Every route, with who may call it (by the names in `ROLES`; `agent`
/// is ann, who holds the service, `other-agent` is bob, who does not).
#[tokio::test]
async fn every_route_with_every_kind_of_caller() {
    let (app, id) = world().await;
    let customer = "client backend supervisor admin";
    let staff_on_service = "agent supervisor admin";
    let ann_or_staff = "agent supervisor admin";
    let unknown = uuid::Uuid::new_v4().to_string();
    let table: Vec<(Method, String, Option<Value>, &str)> =
        vec![
        (
            Method::GET,
            format!("/genesys/1/service/callback?_id={id}"),
            None,
            customer,
        ),
        (
            Method::GET,
            "/genesys/1/service/callback/chat-delay?_customer_number=4082652649".into(),
            None,
            "backend supervisor admin",
        ),
        (
            Method::GET,
            "/genesys/1/service/callback?_customer_number=4082652649&_callback_state=!COMPLETED"
                .into(),
            None,
            "backend supervisor admin",
        ),
        (Method::GET, "/metrics".into(), None, "supervisor admin"),
        (
            Method::GET,
            "/api/v1/webhooks/deliveries".into(),
            None,
            "supervisor admin",
        ),
        (
            Method::GET,
            "/genesys/2/service/callback/video-scheduled/availability".into(),
            None,
            customer,
        ),
        (
            Method::POST,
            format!("/genesys/1/service/{id}/check-queue-position"),
            None,
            customer,
        ),
        (
            Method::GET,
            format!("/genesys/1/service/{id}/retrieve-notifications"),
            None,
            customer,
        ),
        (
            Method::GET,
            format!("/genesys/1/service/{id}/ixn/video"),
            None,
            customer,
        ),
        (
            Method::GET,
            format!("/genesys/1/service/{id}/retrieve-agent-notifications"),
            None,
            staff_on_service,
        ),
        (
            Method::GET,
            format!("/api/v1/services/{id}"),
            None,
            staff_on_service,
        ),
        (
            Method::POST,
            format!("/api/v1/services/{id}/chat/typing"),
            Some(json!({"typing": true})),
            staff_on_service,
        ),
        (Method::GET, "/api/v1/agents/ann".into(), None, ann_or_staff),
        (
            Method::POST,
            "/api/v1/agents/ann/ready".into(),
            None,
            ann_or_staff,
        ),
        (
            Method::PUT,
            "/api/v1/agents/carl".into(),
            Some(json!({"name": "Carl", "queues": ["support"], "max_concurrent": 1})),
            "supervisor admin",
        ),
        (Method::GET, "/api/v1/agents/ann/keys".into(), None, "admin"),
        // The operator's API: supervisors and admins only.
        (
            Method::GET,
            "/genesys/1/admin/callback/queues?target=support".into(),
            None,
            "supervisor admin",
        ),
        (
            Method::GET,
            "/genesys/1/admin/callback/watermarks".into(),
            None,
            "supervisor admin",
        ),
        (
            Method::POST,
            "/genesys/1/admin/callback/cancel".into(),
            Some(json!({"ids": [unknown]})),
            "supervisor admin",
        ),
        (
            Method::POST,
            "/genesys/1/admin/callback/reportcancelled".into(),
            Some(json!({})),
            "supervisor admin",
        ),
        (
            Method::GET,
            "/genesys/1/admin/callback/export".into(),
            None,
            "supervisor admin",
        ),
        (Method::GET, "/api/v1/agents".into(), None, "supervisor admin"),
        (
            Method::POST,
            format!("/api/v1/services/{id}/move"),
            // Refused (400) once past the gate: the service stays with ann.
            Some(json!({})),
            "supervisor admin",
        ),
        (
            Method::POST,
            format!("/api/v1/services/{unknown}/requeue"),
            None,
            "supervisor admin",
        ),
        (Method::GET, "/api/v1/scenarios".into(), None, customer),
        (
            Method::GET,
            "/genesys/1/service/ewt-for-vq?name=support&aqt=urs2".into(),
            None,
            customer,
        ),
        (
            Method::GET,
            "/genesys/2/ewt/ewt2?vq=support".into(),
            None,
            customer,
        ),
        (Method::GET, "/genesys/2/ewt?vq=support".into(), None, customer),
        (
            Method::GET,
            "/genesys/1/service/video-scheduled?number-of-days=1".into(),
            None,
            customer,
        ),
    ];
    for (method, path, body, allowed) in &table {
        for who in [As::Nobody, As::WrongSecret] {
            let (status, answer) = call(&app, who, method.clone(), path, body.as_ref()).await;
            assert_eq!(status, 401, "{method} {path} as {who:?}: {answer}");
            assert_eq!(answer["exception"], "UNAUTHORIZED");
        }
        for (role, name) in ROLES {
            let (status, answer) =
                call(&app, As::Basic(name), method.clone(), path, body.as_ref()).await;
            let may = allowed.split(' ').any(|r| r == role);
            if may {
                assert!(
                    status != 401 && status != 403,
                    "{method} {path} as {role}: refused {status} {answer}"
                );
            } else {
                assert_eq!(status, 403, "{method} {path} as {role}: {answer}");
                assert_eq!(answer["exception"], "FORBIDDEN");
            }
        }
    }
    // The same credential works as `x-api-key: name:secret`.
    let (status, _) = call(
        &app,
        As::ApiKey("crm"),
        Method::GET,
        "/genesys/1/service/callback/chat-delay?_customer_number=4082652649",
        None,
    )
    .await;
    assert_eq!(status, 200);
    // The room API proves its side with room tokens, and health checks need nothing.
    let (status, _) = call(&app, As::Nobody, Method::GET, "/healthz", None).await;
    assert_eq!(status, 200);
    let (status, answer) = call(&app, As::Nobody, Method::GET, "/api/v1/rooms/ACDEFGH", None).await;
    assert_ne!(status, 401, "{answer}");
}

/// Acting routes: an agent acts on the service it holds, not another's;
/// agents may not create or cancel.
#[tokio::test]
async fn agents_act_only_on_their_own_services() {
    let (app, id) = world().await;
    let bob = As::Basic("bob-desktop");
    let ann = As::Basic("ann-desktop");
    let (status, answer) = call(
        &app,
        bob,
        Method::POST,
        &format!("/api/v1/services/{id}/complete"),
        None,
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("bob-desktop"),
        "{answer}"
    );
    let (status, _) = call(
        &app,
        bob,
        Method::POST,
        "/api/v1/agents/ann/not-ready",
        None,
    )
    .await;
    assert_eq!(status, 403);
    // Ann may not answer a preview in bob's name, nor bob in ann's.
    for (who, other) in [(ann, "bob"), (bob, "ann")] {
        let (status, answer) = call(
            &app,
            who,
            Method::POST,
            &format!("/api/v1/services/{id}/accept"),
            Some(&json!({"agent_id": other})),
        )
        .await;
        assert_eq!(status, 403, "{who:?} for {other}: {answer}");
    }
    let (status, _) = call(
        &app,
        ann,
        Method::DELETE,
        &format!("/genesys/1/service/callback/chat-delay/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 403, "an agent may not cancel");
    let (status, _) = call(
        &app,
        ann,
        Method::POST,
        "/api/v1/agents/ann/keys",
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 403, "only an admin mints keys");
    // Ann, who holds it, may act on it.
    let (status, answer) = call(
        &app,
        ann,
        Method::GET,
        &format!("/api/v1/services/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // A client cancels by id, as GMS apps do.
    let (status, answer) = call(
        &app,
        As::Basic("ios-app"),
        Method::DELETE,
        &format!("/genesys/1/service/callback/chat-delay/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}

/// A supervisor may set any agent not ready (and ready again); the
/// operator's actions name the supervisor in the record's history.
#[tokio::test]
async fn a_supervisor_sets_any_agent_not_ready_and_moves_services() {
    let (app, id) = world().await;
    let floor = As::Basic("floor");
    for agent in ["ann", "bob"] {
        let (status, answer) = call(
            &app,
            floor,
            Method::POST,
            &format!("/api/v1/agents/{agent}/not-ready"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["state"], "not_ready");
    }
    let (status, listed) = call(&app, floor, Method::GET, "/api/v1/agents", None).await;
    assert_eq!(status, 200, "{listed}");
    let states: Vec<(&str, &str, u64)> = listed["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap(),
                a["state"].as_str().unwrap(),
                a["load"].as_u64().unwrap(),
            )
        })
        .collect();
    // Not ready keeps what ann holds.
    assert_eq!(states, [("ann", "not_ready", 1), ("bob", "not_ready", 0)]);
    let (status, answer) = call(
        &app,
        floor,
        Method::POST,
        &format!("/api/v1/services/{id}/requeue"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let last = answer["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (&last["event"], &last["by"]),
        (&json!("requeued"), &json!("floor"))
    );
    let (_, listed) = call(&app, floor, Method::GET, "/api/v1/agents", None).await;
    assert_eq!(listed["agents"][0]["load"], 0, "{listed}");
}

/// An admin mints a key for an agent; the key works at once (as
/// `x-api-key` and Bearer), says who it is, and stops working when revoked.
#[tokio::test]
async fn minted_keys_work_until_revoked() {
    let app = TestApp::builder().auth(credentials()).spawn().await;
    let root = As::Basic("root");
    let (status, minted) = call(
        &app,
        root,
        Method::POST,
        "/api/v1/agents/ann/keys",
        Some(&json!({"name": "laptop"})),
    )
    .await;
    assert_eq!(status, 201, "{minted}");
    assert_eq!(minted["name"], "laptop");
    let key = minted["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("cbk_"), "{key}");
    let (status, again) = call(
        &app,
        root,
        Method::POST,
        "/api/v1/agents/ann/keys",
        Some(&json!({"name": "laptop"})),
    )
    .await;
    assert_eq!(status, 409, "one name per agent: {again}");
    let (status, listed) = call(&app, root, Method::GET, "/api/v1/agents/ann/keys", None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["keys"][0]["name"], "laptop");
    assert!(
        !listed.to_string().contains(&key),
        "a listing never shows a key"
    );

    let client = reqwest::Client::new();
    let with_key = |path: &str, header: (&str, String)| {
        client.post(app.url(path)).header(header.0, header.1).send()
    };
    for header in [
        ("x-api-key", key.clone()),
        ("authorization", format!("Bearer {key}")),
    ] {
        let res = with_key("/api/v1/agents/ann/ready", header.clone())
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            404,
            "ann has no profile yet, but the key is accepted"
        );
        let res = with_key("/api/v1/agents/bob/ready", header).await.unwrap();
        assert_eq!(res.status(), 403, "ann's key is not bob's");
    }
    let (status, revoked) = call(
        &app,
        root,
        Method::DELETE,
        "/api/v1/agents/ann/keys/laptop",
        None,
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    let res = with_key("/api/v1/agents/ann/ready", ("x-api-key", key.clone()))
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "a revoked key is refused at once");
    let (status, _) = call(
        &app,
        root,
        Method::DELETE,
        "/api/v1/agents/ann/keys/laptop",
        None,
    )
    .await;
    assert_eq!(status, 404);
    // A malformed key is a 401 that does not repeat it.
    let res = with_key("/api/v1/agents/ann/ready", ("x-api-key", "hunter2".into()))
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(!res.text().await.unwrap().contains("hunter2"));
}

/// An agent desktop with single sign-on: a JWT from the identity provider
/// (RS256 here) acts as the agent its `sub` names; an expired one, or one
/// for another audience, is refused with a 401 that says why.
#[tokio::test]
async fn jwts_from_the_identity_provider() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../access/tests/fixtures");
    let file = format!(
        "{}[jwt]\nissuer = \"https://idp.example\"\naudience = \"callbackd\"\npublic_key_file = \"{fixtures}/rsa_public.pem\"\n",
        credentials()
    );
    let app = TestApp::builder().auth(&file).spawn().await;
    let key =
        EncodingKey::from_rsa_pem(&std::fs::read(format!("{fixtures}/rsa_private.pem")).unwrap())
            .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = |sub: &str, role: &str, exp: u64, aud: &str| {
        let claims =
            json!({"sub": sub, "role": role, "iss": "https://idp.example", "aud": aud, "exp": exp});
        encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap()
    };
    let client = reqwest::Client::new();
    let ready = |agent: &str, token: String| {
        client
            .post(app.url(&format!("/api/v1/agents/{agent}/not-ready")))
            .bearer_auth(token)
            .send()
    };
    let res = ready("ann", token("ann", "agent", now + 300, "callbackd"))
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "accepted: ann has no profile yet");
    let res = ready("bob", token("ann", "agent", now + 300, "callbackd"))
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = ready("bob", token("lead", "supervisor", now + 300, "callbackd"))
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "a supervisor's token acts for any agent");
    for (bad, why) in [
        (token("ann", "agent", now - 600, "callbackd"), "has expired"),
        (
            token("ann", "agent", now + 300, "elsewhere"),
            "is for another audience",
        ),
    ] {
        let res = ready("ann", bad).await.unwrap();
        assert_eq!(res.status(), 401);
        let body: Value = res.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains(why), "{body}");
    }
}

/// An `Idempotency-Key` belongs to its caller: the same key from another
/// credential is another create, while a retry by the same caller answers
/// the first answer.
#[tokio::test]
async fn idempotency_keys_are_per_caller() {
    let app = TestApp::builder().auth(credentials()).spawn().await;
    let client = reqwest::Client::new();
    let create = |name: &'static str| {
        client
            .post(app.url("/genesys/1/service/callback/chat-delay"))
            .basic_auth(name, Some(secret(name)))
            .header("idempotency-key", "order-42")
            .multipart(tests::multipart(&[("_customer_number", "4082652649")]))
            .send()
    };
    let id_of = |v: Value| v["_id"].as_str().expect("_id").to_owned();
    let first = id_of(create("ios-app").await.unwrap().json().await.unwrap());
    let retry = id_of(create("ios-app").await.unwrap().json().await.unwrap());
    let other = id_of(create("crm").await.unwrap().json().await.unwrap());
    assert_eq!(first, retry);
    assert_ne!(first, other);
}

/// The routes that change a service, each on a world of its own: every
/// caller that may not is refused before anything changes, then the least
/// of those that may is let through.
#[tokio::test]
async fn every_acting_route_with_every_kind_of_caller() {
    let customer = "client backend supervisor admin";
    let staff = "agent supervisor admin";
    let multipart_like = json!({"_customer_number": "4082652649"});
    let routes: Vec<(Method, &str, Option<Value>, &str)> = vec![
        (
            Method::POST,
            "/genesys/1/service/callback/chat-delay",
            Some(multipart_like),
            customer,
        ),
        (
            Method::DELETE,
            "/genesys/1/service/callback/chat-delay/{id}",
            None,
            customer,
        ),
        (
            Method::PUT,
            "/genesys/1/service/callback/chat-delay/{id}",
            Some(json!({"_new_desired_time": "2030-01-01T10:00:00.000Z"})),
            customer,
        ),
        (
            Method::POST,
            "/genesys/1/service/{id}/connect",
            None,
            customer,
        ),
        (
            Method::POST,
            "/genesys/1/service/{id}/ixn/chat",
            None,
            customer,
        ),
        (
            Method::POST,
            "/genesys/1/service/{id}/ixn/chat/send",
            Some(json!({"message": "hi"})),
            customer,
        ),
        (
            Method::POST,
            "/genesys/1/service/{id}/ixn/chat/refresh",
            None,
            customer,
        ),
        (
            Method::POST,
            "/genesys/1/service/{id}/ixn/chat/startTyping",
            None,
            customer,
        ),
        (
            Method::POST,
            "/genesys/1/service/{id}/ixn/chat/stopTyping",
            None,
            customer,
        ),
        (
            Method::POST,
            "/genesys/1/service/{id}/ixn/chat/disconnect",
            None,
            customer,
        ),
        (
            Method::POST,
            "/genesys/1/service/{id}/internal-notification",
            Some(json!({"_display_message": "x", "_internal_message": "y"})),
            customer,
        ),
        (
            Method::POST,
            "/genesys/1/service/{id}/agent-notification",
            Some(json!({"message": "x"})),
            customer,
        ),
        (
            Method::POST,
            "/genesys/1/service/{id}/ixn/video",
            None,
            customer,
        ),
        (
            Method::GET,
            "/genesys/1/service/callback/video-scheduled/availability",
            None,
            customer,
        ),
        (Method::POST, "/api/v1/services/{id}/complete", None, staff),
        // Preview answers: an agent answers for itself (the service here is
        // offered without preview, so the one allowed call meets a 409).
        (Method::POST, "/api/v1/services/{id}/accept", None, staff),
        (Method::POST, "/api/v1/services/{id}/reject", None, staff),
        (
            Method::POST,
            "/api/v1/services/{id}/chat",
            Some(json!({"text": "hello"})),
            staff,
        ),
        (
            Method::POST,
            "/api/v1/services/{id}/video",
            Some(json!({})),
            staff,
        ),
        (Method::POST, "/api/v1/agents/ann/not-ready", None, staff),
        (
            Method::POST,
            "/api/v1/services/{id}/webhooks/retry",
            None,
            "supervisor admin",
        ),
        (
            Method::POST,
            "/api/v1/agents/ann/keys",
            Some(json!({})),
            "admin",
        ),
        (
            Method::DELETE,
            "/api/v1/agents/ann/keys/none",
            None,
            "admin",
        ),
    ];
    for (method, template, body, allowed) in routes {
        let (app, id) = world().await;
        let path = template.replace("{id}", &id);
        for who in [As::Nobody, As::WrongSecret] {
            let (status, answer) = call(&app, who, method.clone(), &path, body.as_ref()).await;
            assert_eq!(status, 401, "{method} {path} as {who:?}: {answer}");
        }
        let mut first_allowed = None;
        for (role, name) in ROLES {
            if allowed.split(' ').any(|r| r == role) {
                first_allowed.get_or_insert(name);
                continue;
            }
            let (status, answer) =
                call(&app, As::Basic(name), method.clone(), &path, body.as_ref()).await;
            assert_eq!(status, 403, "{method} {path} as {role}: {answer}");
        }
        let name = first_allowed.expect("someone may call it");
        let (status, answer) =
            call(&app, As::Basic(name), method.clone(), &path, body.as_ref()).await;
        assert!(
            status != 401 && status != 403,
            "{method} {path} as {name}: refused {status} {answer}"
        );
    }
}

/// Each transition in a record's history names who caused it.
#[tokio::test]
async fn the_history_names_who_caused_each_change() {
    let (app, id) = world().await;
    let ann = As::Basic("ann-desktop");
    let (status, answer) = call(
        &app,
        As::Basic("ios-app"),
        Method::POST,
        &format!("/genesys/1/service/{id}/connect"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = call(
        &app,
        ann,
        Method::POST,
        &format!("/api/v1/services/{id}/complete"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (_, record) = call(
        &app,
        As::Basic("floor"),
        Method::GET,
        &format!("/api/v1/services/{id}"),
        None,
    )
    .await;
    let causes: Vec<(String, String)> = record["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| {
            (
                h["event"].as_str().unwrap().to_owned(),
                h["by"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    let first = |event: &str| {
        causes
            .iter()
            .find(|(e, _)| e == event)
            .unwrap_or_else(|| panic!("no {event} in {causes:?}"))
            .1
            .clone()
    };
    assert_eq!(first("created"), "customer (ios-app)", "{causes:?}");
    assert_eq!(first("agent_reserved"), "router", "{causes:?}");
    assert_eq!(first("complete"), "agent ann (ann-desktop)", "{causes:?}");
}

/// `[anonymous] role = "client"`: a caller with no credential at all (the
/// customer pages, the site widget) acts as a customer, and as nothing more:
/// a staff route asks it for a credential, and a wrong credential is still
/// refused.
#[tokio::test]
async fn callers_without_a_credential_may_be_customers_and_nothing_more() {
    let file = format!("{}\n[anonymous]\nrole = \"client\"\n", credentials());
    let app = TestApp::builder().auth(&file).spawn().await;
    let client = reqwest::Client::new();
    let res = client
        .post(app.url("/genesys/1/service/callback/chat-delay"))
        .multipart(tests::multipart(&[("_customer_number", "5550100")]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let created: Value = res.json().await.unwrap();
    let id = created["_id"].as_str().unwrap();
    let (status, position) = call(
        &app,
        As::Nobody,
        Method::GET,
        &format!("/genesys/1/service/{id}/check-queue-position"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{position}");
    for path in [
        "/api/v1/agents",
        "/genesys/1/admin/callback/watermarks",
        "/metrics",
    ] {
        let res = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 401, "{path}");
        assert!(res.headers().contains_key("www-authenticate"), "{path}");
    }
    // A query by properties is a backend's, not a customer's.
    let (status, _) = call(
        &app,
        As::Nobody,
        Method::GET,
        "/genesys/1/service/callback/chat-delay?_customer_number=5550100",
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = call(
        &app,
        As::WrongSecret,
        Method::GET,
        &format!("/genesys/1/service/{id}/check-queue-position"),
        None,
    )
    .await;
    assert_eq!(status, 401);
    // The history names the anonymous customer.
    let (_, record) = call(
        &app,
        As::Basic("floor"),
        Method::GET,
        &format!("/api/v1/services/{id}"),
        None,
    )
    .await;
    assert_eq!(
        record["history"][0]["by"], "customer (anonymous)",
        "{record}"
    );
}

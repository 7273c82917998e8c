//! Video over push: the room's events reach the device (`/_genesys`) and
//! the agent desktop (`/agents/<id>`), each with its own link and token;
//! WebRTC signalling of relay rooms passes from one side to the other only
//! through the push channels; template (Jitsi-style) rooms hand each side
//! a link holding a token signed with the scenario's secret.

use engine::testing::ScenarioBuilder;
use reqwest::Method;
use serde_json::{json, Value};
use tests::video::{Auth, ROUTING};
use tests::{spawn_app, text, TestApp};

use crate::client::{
    agent_message, create_for, customer, open_socket, outbox_tags, refusal, BayeuxWs, LongPoll,
    PlainWs, Who, WAIT,
};

/// The status of a refused WebSocket upgrade at `path`.
async fn tests_refusal(app: &TestApp, path: &str) -> (u16, Value) {
    refusal(open_socket(app, path).await)
}

const DEVICE: &str = "video-push-device-5e0b";
const SDP: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

/// A device delivery of this video event of this service.
fn device_video(m: &Value, id: &str, event: &str) -> bool {
    m["channel"] == "/_genesys"
        && m["data"]["_action"] == "video"
        && m["data"]["_id"] == id
        && m["data"]["_event"] == event
}

/// An agent-channel delivery of this video event (kept: JSON text in `message`).
fn agent_video(m: &Value, id: &str, event: &str) -> bool {
    m["data"]["tag"] == format!("agent.video.{id}")
        && m["data"]["message"]
            .as_str()
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .is_some_and(|msg| msg["_event"] == event)
}

/// A relayed signal of this type (not kept: the data is the signal notice).
fn signal_of(m: &Value, kind: &str) -> bool {
    m["data"]["signal"]["type"] == kind
}

/// A chat-immediate service for `DEVICE`, its chat opened by Bob and taken by alice.
async fn chat_taken_by_alice(app: &TestApp) -> String {
    app.ready_agent("alice", &["support"], 1).await;
    let id = create_for(app, "chat-immediate", DEVICE).await;
    customer(app, &id, "ixn/chat", &[("nickname", "Bob")]).await;
    let rec = app.wait_for_state(&id, "PROCESSING", WAIT).await;
    assert_eq!(rec["agent"], "alice", "{rec}");
    id
}

#[tokio::test]
async fn room_events_and_relayed_signals_reach_each_side_over_push() {
    let app = spawn_app().await;
    let mut device = LongPoll::device(&app, DEVICE).await;
    let mut agent = BayeuxWs::open(&app, Who::AgentExt("alice".into()), "/agents/alice").await;
    let (mut plain, _) = PlainWs::open(&app, &format!("gms_user={DEVICE}&agent_id=alice")).await;
    let id = chat_taken_by_alice(&app).await;

    let video = customer(&app, &id, "ixn/video", &[("routingData", ROUTING)]).await;
    let code = text(&video["_room_code"]);
    let customer_token = text(&video["_room_token"]);

    // Ringing: each side with its own link and token.
    let ring = device
        .wait_for("device ringing", |m| device_video(m, &id, "ringing"))
        .await;
    assert_eq!(ring["data"]["_meet_url"], video["_meet_url"], "{ring}");
    assert_eq!(ring["data"]["_room_token"], customer_token.as_str());
    assert_eq!(ring["data"]["_room_code"], code.as_str());
    assert_eq!(ring["data"]["_ringing"], "agent");
    assert_eq!(ring["data"]["_routed"], "same_agent");
    let ring = agent
        .wait_for("agent ringing", |m| agent_video(m, &id, "ringing"))
        .await;
    assert_eq!(ring["channel"], "/agents/alice");
    let to_agent = agent_message(&ring);
    let agent_token = text(&to_agent["_room_token"]);
    assert_ne!(agent_token, customer_token);
    assert_eq!(
        to_agent["_meet_url"],
        format!("{}/room/{code}?token={agent_token}", app.base),
        "{to_agent}"
    );
    assert_eq!(to_agent["_agent_id"], "alice");
    let video_tag = format!("service.video.{id}");
    let agent_tag = format!("agent.video.{id}");
    plain
        .wait_for("device ringing frame", |f| {
            f["tag"] == video_tag.as_str() && f["data"]["_event"] == "ringing"
        })
        .await;
    plain
        .wait_for("agent ringing frame", |f| f["tag"] == agent_tag.as_str())
        .await;

    // The room pages: each side's socket by its room token, no device id.
    let (mut customer_room, _) =
        PlainWs::open(&app, &format!("room={code}&token={customer_token}")).await;
    let (mut agent_room, _) =
        PlainWs::open(&app, &format!("room={code}&token={agent_token}")).await;

    // No signalling before joining.
    for token in [&customer_token, &agent_token] {
        let offer = json!({"type": "offer", "sdp": SDP});
        let (status, body) = app
            .room_request(
                Method::POST,
                &code,
                "signal",
                Auth::Query(token),
                Some(&offer),
            )
            .await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["exception"], "INVALID_STATE", "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("join"),
            "{body}"
        );
    }

    // The agent answers, both join: the call starts, both are told each step.
    app.room_ok(&code, "accept", Auth::Query(&agent_token))
        .await;
    app.room_ok(&code, "join", Auth::Query(&customer_token))
        .await;
    app.room_ok(&code, "join", Auth::Query(&agent_token)).await;
    for event in ["accepted", "joined", "started"] {
        device
            .wait_for(event, |m| device_video(m, &id, event))
            .await;
        agent.wait_for(event, |m| agent_video(m, &id, event)).await;
    }

    // Customer → agent: the offer, on the agent's channel only.
    let sent = app
        .room_send(
            &code,
            "signal",
            Auth::Query(&customer_token),
            &json!({"type": "offer", "sdp": SDP}),
        )
        .await;
    assert_eq!(sent, json!({"code": code, "sent": true}));
    let offer = agent.wait_for("offer", |m| signal_of(m, "offer")).await;
    assert_eq!(offer["channel"], "/agents/alice");
    assert_eq!(
        offer["data"],
        json!({"_id": id, "_room_code": code, "from": "customer",
               "signal": {"type": "offer", "sdp": SDP}})
    );
    let signal_to_agent = format!("agent.video.signal.{id}");
    plain
        .wait_for("offer frame", |f| f["tag"] == signal_to_agent.as_str())
        .await;
    let offered = agent_room
        .wait_for("offer on the agent's room page", |f| {
            f["tag"] == signal_to_agent.as_str()
        })
        .await;
    assert_eq!(offered["channel"], format!("/rooms/{code}/agent"));
    assert_eq!(offered["data"]["signal"]["type"], "offer");

    // Agent → customer: the answer and an ICE candidate, on the device's channel.
    app.room_send(
        &code,
        "signal",
        Auth::Query(&agent_token),
        &json!({"type": "answer", "sdp": SDP}),
    )
    .await;
    let candidate = json!({"candidate": "candidate:1 1 UDP 2122252543 192.0.2.7 54400 typ host",
                           "sdpMid": "0", "sdpMLineIndex": 0});
    app.room_send(
        &code,
        "signal",
        Auth::Query(&agent_token),
        &json!({"type": "candidate", "candidate": candidate}),
    )
    .await;
    let answer = device.wait_for("answer", |m| signal_of(m, "answer")).await;
    assert_eq!(answer["channel"], "/_genesys");
    assert_eq!(
        answer["data"],
        json!({"_id": id, "_room_code": code, "from": "agent",
               "signal": {"type": "answer", "sdp": SDP}})
    );
    let ice = device
        .wait_for("candidate", |m| signal_of(m, "candidate"))
        .await;
    assert_eq!(ice["data"]["signal"]["candidate"], candidate);
    assert_eq!(ice["data"]["from"], "agent");
    let signal_to_device = format!("service.video.signal.{id}");
    plain
        .wait_for("answer frame", |f| {
            f["tag"] == signal_to_device.as_str() && f["data"]["signal"]["type"] == "answer"
        })
        .await;
    let answered = customer_room
        .wait_for("answer on the customer's room page", |f| {
            f["tag"] == signal_to_device.as_str() && f["data"]["signal"]["type"] == "answer"
        })
        .await;
    assert_eq!(answered["channel"], format!("/rooms/{code}/customer"));
    // Each room page hears its own side only.
    assert!(customer_room
        .log
        .iter()
        .all(|f| f["tag"] != signal_to_agent.as_str()));
    // A wrong token opens no room socket; nor does a room with other owners.
    let (status, _) = tests_refusal(
        &app,
        &format!("/api/v1/push/ws?room={code}&token=not-the-token"),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = tests_refusal(
        &app,
        &format!("/api/v1/push/ws?room={code}&token={agent_token}&agent_id=alice"),
    )
    .await;
    assert_eq!(status, 400);
    // The customer's candidate and bye go to the agent.
    app.room_send(
        &code,
        "signal",
        Auth::Query(&customer_token),
        &json!({"type": "candidate", "candidate": candidate}),
    )
    .await;
    app.room_send(
        &code,
        "signal",
        Auth::Query(&customer_token),
        &json!({"type": "bye"}),
    )
    .await;
    let ice = agent
        .wait_for("customer candidate", |m| signal_of(m, "candidate"))
        .await;
    assert_eq!(ice["data"]["from"], "customer");
    agent.wait_for("bye", |m| signal_of(m, "bye")).await;
    // Neither side hears its own signals back.
    assert!(
        !device.log.iter().any(|m| m["data"]["from"] == "customer"),
        "{:#?}",
        device.log
    );
    assert!(
        !agent.log.iter().any(|m| m["data"]["from"] == "agent"),
        "{:#?}",
        agent.log
    );
    // Signals are passed on, never kept.
    let rec = app.record(&id).await;
    for outbox in ["outbox", "agent_outbox"] {
        let tags = outbox_tags(&rec, outbox);
        assert!(
            tags.iter().all(|t| !t.contains(".signal.")),
            "{outbox}: {tags:?}"
        );
    }

    // The customer leaves: the call ended, the survey is open.
    app.room_ok(&code, "leave", Auth::Query(&customer_token))
        .await;
    let ended = device
        .wait_for("device ended", |m| device_video(m, &id, "ended"))
        .await;
    assert_eq!(ended["data"]["_survey"], true, "{ended}");
    assert_eq!(ended["data"]["_room_status"], "ended", "{ended}");
    let ended = agent
        .wait_for("agent ended", |m| agent_video(m, &id, "ended"))
        .await;
    assert_eq!(agent_message(&ended)["_survey"], true);
    let offer = json!({"type": "offer", "sdp": SDP});
    let (status, body) = app
        .room_request(
            Method::POST,
            &code,
            "signal",
            Auth::Query(&agent_token),
            Some(&offer),
        )
        .await;
    assert_eq!(status, 409, "no signalling after the call: {body}");
}

// ---------------------------------------------------------------- template rooms

/// SHA-256 (FIPS 180-4), to check the tokens without a crypto crate.
fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(chunk[4 * i..4 * i + 4].try_into().unwrap());
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (i, v) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// HMAC-SHA-256 (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha256(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(message);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&sha256(&inner));
    sha256(&outer)
}

/// Base64url without padding, as JWTs use it.
fn base64url(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn unbase64url(text: &str) -> Vec<u8> {
    const ABC: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.chars() {
        let v = ABC
            .find(c)
            .unwrap_or_else(|| panic!("`{c}` is not base64url in {text}"));
        bits = bits << 6 | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}

/// The claims of an HS256 JWT whose signature `secret` verifies; None if it does not.
fn verified_claims(jwt: &str, secret: &str) -> Option<Value> {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {jwt}");
    let header: Value = serde_json::from_slice(&unbase64url(parts[0])).expect("header JSON");
    assert_eq!(header["alg"], "HS256", "{header}");
    let signed = format!("{}.{}", parts[0], parts[1]);
    let mac = hmac_sha256(secret.as_bytes(), signed.as_bytes());
    if base64url(&mac) != parts[2] {
        return None;
    }
    Some(serde_json::from_slice(&unbase64url(parts[1])).expect("claims JSON"))
}

/// The `jwt=` query value of a link.
fn jwt_of(url: &str) -> String {
    let query = url
        .split_once('?')
        .unwrap_or_else(|| panic!("no query in {url}"))
        .1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("jwt="))
        .unwrap_or_else(|| panic!("no jwt in {url}"))
        .to_owned()
}

/// A video scenario on a Jitsi-style meeting system whose tokens are
/// signed with the secret in the environment variable `var`.
fn jitsi_scenario(var: &str) -> ScenarioBuilder {
    ScenarioBuilder::video_call()
        .name("video-jitsi")
        .key("_find_agent_timeout", r#""15m""#)
        .key("_mandatory_fields", r#"["_customer_number"]"#)
        .video(&format!(
            r#"room_ttl = "1h"

[_video.provider]
kind = "template"
url = "https://meet.example/{{room}}?jwt={{jwt}}&name={{name}}&role={{role}}"
jwt = {{ app_id = "callbackd", secret_env = "{var}", subject = "meet.example", ttl = "15m" }}"#
        ))
}

#[test]
fn the_token_checker_is_right() {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(
        hex(&sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    // RFC 4231, test case 2.
    assert_eq!(
        hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    // RFC 7515, appendix A.1.
    let key = unbase64url(
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
    );
    let signed = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
    assert_eq!(
        base64url(&hmac_sha256(&key, signed.as_bytes())),
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    );
}

#[tokio::test]
async fn template_rooms_give_each_side_a_link_with_a_token_signed_by_the_secret() {
    // The secret comes from the environment at start-up, never from the file.
    let (var, secret) = jitsi_secret();
    let scenario = jitsi_scenario(&var);
    let app = TestApp::builder().with_scenario(&scenario).spawn().await;
    let mut device = LongPoll::device(&app, DEVICE).await;
    let mut agent = BayeuxWs::open(&app, Who::AgentExt("alice".into()), "/agents/alice").await;
    let id = chat_taken_by_alice(&app).await;

    let video = customer(
        &app,
        &id,
        "ixn/video",
        &[("routingData", ROUTING), ("_video_scenario", "video-jitsi")],
    )
    .await;
    let code = text(&video["_room_code"]);
    let customer_url = text(&video["_meet_url"]);
    let jwt = jwt_of(&customer_url);
    assert_eq!(
        customer_url,
        format!("https://meet.example/{code}?jwt={jwt}&name=Bob&role=customer")
    );
    let claims =
        verified_claims(&jwt, secret).expect("the customer's token is signed by the secret");
    assert!(
        verified_claims(&jwt, "another-secret-0123456789abcdef012345").is_none(),
        "checked against another secret, it must fail"
    );
    assert_eq!(claims["room"], code.as_str(), "{claims}");
    assert_eq!(claims["iss"], "callbackd", "{claims}");
    assert_eq!(claims["aud"], "jitsi", "{claims}");
    assert_eq!(claims["sub"], "meet.example", "{claims}");
    assert_eq!(
        claims["context"]["user"],
        json!({"name": "Bob", "moderator": false, "role": "customer"}),
        "{claims}"
    );
    let iat = claims["iat"].as_i64().expect("iat");
    assert_eq!(claims["exp"].as_i64(), Some(iat + 15 * 60), "{claims}");
    assert!(claims["nbf"].as_i64().expect("nbf") <= iat, "{claims}");
    let now = chrono::Utc::now().timestamp();
    assert!((now - 60..=now + 1).contains(&iat), "{claims}");

    let ring = device
        .wait_for("device ringing", |m| device_video(m, &id, "ringing"))
        .await;
    assert_eq!(ring["data"]["_meet_url"], customer_url.as_str());
    let ring = agent
        .wait_for("agent ringing", |m| agent_video(m, &id, "ringing"))
        .await;
    let to_agent = agent_message(&ring);
    let agent_url = text(&to_agent["_meet_url"]);
    let agent_jwt = jwt_of(&agent_url);
    assert_ne!(agent_jwt, jwt);
    assert_eq!(
        agent_url,
        format!("https://meet.example/{code}?jwt={agent_jwt}&name=alice&role=agent")
    );
    let claims = verified_claims(&agent_jwt, secret).expect("the agent's token is signed");
    assert_eq!(claims["room"], code.as_str(), "{claims}");
    assert_eq!(
        claims["context"]["user"],
        json!({"name": "alice", "moderator": true, "role": "agent"}),
        "{claims}"
    );

    // The room API works the same; only the signalling is the meeting system's.
    let customer_token = text(&video["_room_token"]);
    let agent_token = text(&to_agent["_room_token"]);
    app.room_ok(&code, "join", Auth::Query(&customer_token))
        .await;
    let started = app.room_ok(&code, "join", Auth::Query(&agent_token)).await;
    assert_eq!(started["status"], "started", "{started}");
    assert_eq!(started["provider"], "template", "{started}");
    assert_eq!(started["meet_url"], agent_url.as_str(), "{started}");
    assert!(started.get("ice_servers").is_none(), "{started}");
    let offer = json!({"type": "offer", "sdp": SDP});
    let (status, body) = app
        .room_request(
            Method::POST,
            &code,
            "signal",
            Auth::Query(&customer_token),
            Some(&offer),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("template"),
        "{body}"
    );
    device
        .wait_for("device started", |m| device_video(m, &id, "started"))
        .await;
}

/// The environment variable holding the test secret, set before any server starts.
fn jitsi_secret() -> (String, &'static str) {
    let var = format!("CALLBACKD_VIDEO_PUSH_TEST_SECRET_{}", std::process::id());
    let secret = "push-tests-jitsi-secret-0123456789abcdef";
    std::env::set_var(&var, secret);
    (var, secret)
}

/// A room made before its agent is known (the seed's create, or a chat
/// escalated through the queue) still names, in the agent's link and
/// token, the agent who takes it.
#[tokio::test]
async fn a_template_room_routed_through_the_queue_names_the_agent_who_takes_it() {
    let (var, secret) = jitsi_secret();
    let app = TestApp::builder()
        .with_scenario(&jitsi_scenario(&var))
        .spawn()
        .await;
    let mut agent = BayeuxWs::open(&app, Who::AgentExt("bob".into()), "/agents/bob").await;
    app.put_agent("bob", &["video"], &[("Arabic", 5), ("Video", 3)], 1)
        .await;
    app.set_ready("bob", true).await;
    let (status, created) = app
        .post_form(
            "/genesys/1/service/callback/video-jitsi",
            &[
                ("_customer_number", "5550090"),
                ("_desired_time", "now"),
                ("conversationId", "genesys-conv-42"),
                ("routingData", ROUTING),
                ("name", "Dana"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = text(&created["_id"]);
    let code = text(&created["_room_code"]);
    let customer_url = text(&created["_meet_url"]);
    let claims = verified_claims(&jwt_of(&customer_url), secret).expect("signed");
    assert_eq!(claims["context"]["user"]["name"], "Dana", "{claims}");
    assert_eq!(claims["room"], code.as_str(), "{claims}");

    let ring = agent
        .wait_for("bob rung", |m| agent_video(m, &id, "ringing"))
        .await;
    let to_bob = agent_message(&ring);
    assert_eq!(to_bob["_agent_id"], "bob", "{to_bob}");
    let agent_url = text(&to_bob["_meet_url"]);
    let claims = verified_claims(&jwt_of(&agent_url), secret).expect("signed");
    assert_eq!(claims["context"]["user"]["moderator"], true, "{claims}");
    assert_eq!(
        claims["context"]["user"]["name"], "bob",
        "bob took the call; his link is {agent_url}"
    );
    assert!(agent_url.ends_with("&name=bob&role=agent"), "{agent_url}");
}

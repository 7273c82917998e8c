//! Video over HTTP, as the seed's clients use it: a chat escalated to video
//! (by the customer and by the agent, to the same agent or through the
//! queue by routingData), the seed's create with `desired_time=now` and a
//! `conversationId`, preferred agents, booked video appointments and their
//! waiting room, the room API (ring, answer, join, leave, survey), the
//! room's TTL, one room per agent, completing while a room is live, and
//! refused input.
//!
//! What reaches the device and the agent desktop is read here through the
//! outboxes (`retrieve-notifications`, `retrieve-agent-notifications`); the
//! push channels themselves are in `tests/push/video.rs`.

use std::time::Duration;

use chrono::{Duration as Span, Utc};
use engine::testing::ScenarioBuilder;
use serde_json::{json, Value};
use tests::time::{ceil5, iso, time_of};
use tests::video::{assert_code, events, last_room, Auth, ROUTING};
use tests::{spawn_app, text, TestApp, WAIT};
use tokio::time::Instant;

const DEVICE: &str = "video-device-0d1f6c2e";

// ---------------------------------------------------------------- helpers

/// A 4xx whose exception is `exception` and whose message starts with `field:`.
fn assert_refused(status: u16, body: &Value, want: u16, exception: &str, field: &str) {
    assert_eq!(status, want, "{field}: {body}");
    assert_eq!(body["exception"], exception, "{field}: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("{field}:")),
        "the message should name {field}: {body}"
    );
}

/// The shipped `video-immediate` scenario, renamed, with `changes` applied.
fn video_immediate_copy(name: &str, changes: &[(&str, &str)]) -> String {
    tests::shipped_scenario_copy("video-immediate", name, changes)
}

// ------------------------------------------------- escalation, same agent

#[tokio::test]
async fn a_customer_escalates_a_chat_to_video_with_the_same_agent_through_a_whole_call() {
    let app = spawn_app().await;
    app.ready_agent("alice", &["support"], 2).await;
    let id = app.chat_with("alice", "5550001", DEVICE).await;

    let (status, video) = app
        .customer_video(
            &id,
            &[("routingData", ROUTING), ("conversationId", id.as_str())],
        )
        .await;
    assert_eq!(status, 200, "{video}");
    assert_eq!(video["_id"], id.as_str(), "{video}");
    assert_eq!(video["_callback_state"], "PROCESSING", "{video}");
    assert_eq!(video["status"], "ringing", "{video}");
    assert_eq!(video["_routed"], "same_agent", "{video}");
    assert_eq!(video["_agent_id"], "alice", "{video}");
    assert_eq!(video["_conversation_id"], id.as_str(), "{video}");
    assert_eq!(
        video["_routing"],
        json!({"queue": "video", "skills": "Arabic & Video", "priority": 5,
               "attributes": {"productLine": "Post-paid"}}),
        "{video}"
    );
    let code = text(&video["_room_code"]);
    assert_code(&code);
    let customer_token = text(&video["_room_token"]);
    assert_eq!(
        video["_meet_url"],
        format!("{}/room/{code}?token={customer_token}", app.base)
    );
    assert_eq!(
        video["_room_url"],
        app.url(&format!("/api/v1/rooms/{code}"))
    );
    let expires = time_of(&video["_expires_at"]);
    let ttl = expires - Utc::now();
    assert!(
        ttl > Span::minutes(59) && ttl <= Span::minutes(60),
        "video-immediate rooms live an hour: {video}"
    );

    // The agent is told on its channel, with its own link and token.
    let to_agent = app.agent_video_notes(&id).await;
    assert_eq!(events(&to_agent), ["ringing"], "{to_agent:?}");
    let ring = &to_agent[0];
    let agent_token = text(&ring["_room_token"]);
    assert_ne!(agent_token, customer_token);
    assert_eq!(
        ring["_meet_url"],
        format!("{}/room/{code}?token={agent_token}", app.base)
    );
    assert_eq!(ring["_room_code"], code.as_str());
    assert_eq!(ring["_ringing"], "agent");
    assert_eq!(ring["_routed"], "same_agent");
    // The device too, with the customer's.
    let to_device = app.device_video_notes(&id).await;
    assert_eq!(events(&to_device), ["ringing"], "{to_device:?}");
    assert_eq!(to_device[0]["_meet_url"], video["_meet_url"]);
    assert_eq!(to_device[0]["_room_token"], customer_token.as_str());

    // Each side sees the room, the token in the query or as a bearer.
    let seen = app.room_view(&code, Auth::Query(&customer_token)).await;
    assert_eq!(seen["side"], "customer", "{seen}");
    assert_eq!(seen["status"], "ringing", "{seen}");
    assert_eq!(seen["ringing"], "agent", "{seen}");
    assert_eq!(seen["provider"], "relay", "{seen}");
    assert_eq!(seen["ice_servers"], json!([]), "{seen}");
    assert_eq!(seen["meet_url"], video["_meet_url"]);
    assert_eq!(seen["agent_id"], "alice");
    assert_eq!(seen["service_state"], "PROCESSING");
    assert_eq!(seen["survey"]["open"], false, "{seen}");
    let seen = app.room_view(&code, Auth::Bearer(&agent_token)).await;
    assert_eq!(seen["side"], "agent", "{seen}");
    assert_eq!(seen["meet_url"], ring["_meet_url"]);
    let (_, agent) = app.get("/api/v1/agents/alice").await;
    assert_eq!(
        agent["room"],
        id.as_str(),
        "a ringing room holds the agent: {agent}"
    );

    // The agent answers, the customer joins, then the agent: the call starts.
    let accepted = app
        .room_ok(&code, "accept", Auth::Bearer(&agent_token))
        .await;
    assert_eq!(accepted["status"], "accepted", "{accepted}");
    assert_eq!(accepted["answered_by"], "agent", "{accepted}");
    let joined = app
        .room_ok(&code, "join", Auth::Query(&customer_token))
        .await;
    assert_eq!(joined["status"], "accepted", "{joined}");
    assert_eq!(joined["participants"][0]["side"], "customer", "{joined}");
    assert_eq!(joined["participants"][0]["name"], "Bob", "{joined}");
    let started = app.room_ok(&code, "join", Auth::Bearer(&agent_token)).await;
    assert_eq!(started["status"], "started", "{started}");
    assert_eq!(started["participants"][1]["side"], "agent", "{started}");
    assert_eq!(started["participants"][1]["name"], "alice", "{started}");
    // Joining again (another tab) changes nothing.
    let again = app
        .room_ok(&code, "join", Auth::Query(&customer_token))
        .await;
    assert_eq!(
        again["participants"].as_array().unwrap().len(),
        2,
        "{again}"
    );

    // The survey opens only once the call has ended.
    let (status, early) = app
        .room_request(
            reqwest::Method::POST,
            &code,
            "survey",
            Auth::Query(&customer_token),
            Some(&json!({"score": 4})),
        )
        .await;
    assert_eq!(status, 409, "{early}");

    let ended = app
        .room_ok(&code, "leave", Auth::Query(&customer_token))
        .await;
    assert_eq!(ended["status"], "ended", "{ended}");
    assert_eq!(ended["end_reason"], "left", "{ended}");
    assert_eq!(ended["survey"]["open"], true, "{ended}");
    let (_, agent) = app.get("/api/v1/agents/alice").await;
    assert_eq!(agent["room"], Value::Null, "{agent}");

    let (status, long) = app
        .room_request(
            reqwest::Method::POST,
            &code,
            "survey",
            Auth::Query(&customer_token),
            Some(&json!({"score": 4, "comment": "x".repeat(2001)})),
        )
        .await;
    assert_refused(status, &long, 400, "INVALID_PARAMETER", "comment");
    let (status, answered) = app
        .room_request(
            reqwest::Method::POST,
            &code,
            "survey",
            Auth::Query(&customer_token),
            Some(&json!({"score": 4, "comment": "  clear picture  "})),
        )
        .await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(answered["survey"]["open"], false, "{answered}");
    assert_eq!(answered["survey"]["answer"]["score"], 4, "{answered}");
    let (status, twice) = app
        .room_request(
            reqwest::Method::POST,
            &code,
            "survey",
            Auth::Query(&customer_token),
            Some(&json!({"score": 5})),
        )
        .await;
    assert_eq!(status, 409, "the survey is answered once: {twice}");

    let to_device = app.device_video_notes(&id).await;
    assert_eq!(
        events(&to_device),
        ["accepted", "joined", "started", "ended"],
        "{to_device:?}"
    );
    assert_eq!(to_device[3]["_survey"], true, "{to_device:?}");
    let to_agent = app.agent_video_notes(&id).await;
    assert_eq!(
        events(&to_agent),
        ["accepted", "joined", "started", "ended"],
        "{to_agent:?}"
    );
    let (status, shown) = app.get(&format!("/genesys/1/service/{id}/ixn/video")).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["status"], "ended", "{shown}");
    assert_eq!(shown["_survey"]["answer"]["score"], 4, "{shown}");

    // One record: the chat, the video leg, user data, the routing attributes.
    let (status, done) = app
        .post_json(&format!("/api/v1/services/{id}/complete"), &Value::Null)
        .await;
    assert_eq!(status, 200, "no live room, so complete is fine: {done}");
    let rec = app.record(&id).await;
    assert_eq!(rec["_callback_state"], "COMPLETED", "{rec}");
    assert_eq!(rec["scenario"], "chat-immediate");
    assert_eq!(rec["user_data"]["usr_customer_name"], "Bob Markel", "{rec}");
    assert_eq!(rec["user_data"]["usr_segment"], "gold", "{rec}");
    let mut texts: Vec<(String, String, String)> = rec["chat"]["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .map(|e| (text(&e["kind"]), text(&e["party"]), text(&e["text"])))
        .collect();
    texts.truncate(3);
    texts.sort();
    let row = |k: &str, p: &str, t: &str| (k.to_owned(), p.to_owned(), t.to_owned());
    assert_eq!(
        texts,
        [
            row("Message.Text", "CLIENT", "can we talk on video?"),
            row("Notice.Joined", "AGENT", "has joined the session"),
            row("Notice.Joined", "CLIENT", "has joined the session"),
        ],
        "{rec}"
    );
    let leg = &rec["video"];
    assert_eq!(leg["requested_by"], "CLIENT", "{leg}");
    assert_eq!(leg["scenario"], "video-immediate", "{leg}");
    assert_eq!(leg["agent"], "alice", "{leg}");
    assert_eq!(leg["routed"], "same_agent", "{leg}");
    assert_eq!(leg["conversation_id"], id.as_str(), "{leg}");
    assert_eq!(leg["routing"]["attributes"]["productLine"], "Post-paid");
    assert_eq!(leg["routing"]["skills"], "Arabic & Video");
    assert_eq!(leg["survey"]["score"], 4, "{leg}");
    assert_eq!(leg["survey"]["comment"], "clear picture", "{leg}");
    assert_eq!(leg["survey"]["scale"], 5, "{leg}");
    assert_eq!(
        leg["survey"]["question"],
        "How satisfied are you with your video call?"
    );
    let rooms = leg["rooms"].as_array().expect("rooms");
    assert_eq!(rooms.len(), 1, "{leg}");
    let room = &rooms[0];
    assert_eq!(room["code"], code.as_str());
    for key in ["ringing_at", "accepted_at", "started_at", "ended_at"] {
        assert!(room[key].is_string(), "{key} in {room}");
    }
    assert!(room.get("declined_at").is_none(), "{room}");
    assert!(time_of(&room["ringing_at"]) <= time_of(&room["accepted_at"]));
    assert!(time_of(&room["accepted_at"]) <= time_of(&room["started_at"]));
    assert!(time_of(&room["started_at"]) <= time_of(&room["ended_at"]));
    assert_eq!(room["end_reason"], "left");
    assert_eq!(room["answered_by"], "AGENT");
    let parties: Vec<String> = room["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| text(&p["party"]))
        .collect();
    assert_eq!(parties, ["CLIENT", "AGENT"], "{room}");
    for p in room["participants"].as_array().unwrap() {
        assert!(
            p["joined_at"].is_string() && p["left_at"].is_string(),
            "{p}"
        );
    }
}

#[tokio::test]
async fn an_agent_escalates_its_chat_to_video_and_calls_again_after_the_call() {
    let app = spawn_app().await;
    app.ready_agent("alice", &["support"], 1).await;
    let id = app.chat_with("alice", "5550002", DEVICE).await;

    // The agent has no video leg yet and no agent can start video for a
    // service it does not hold: first, the chat's own agent does.
    let (status, video) = app.agent_video(&id, &json!({})).await;
    assert_eq!(status, 200, "{video}");
    assert_eq!(video["_id"], id.as_str());
    assert_eq!(video["status"], "ringing", "{video}");
    assert_eq!(video["_routed"], "same_agent", "{video}");
    assert_eq!(video["_agent_id"], "alice", "{video}");
    let code = text(&video["_room_code"]);
    let agent_token = text(&video["_room_token"]);
    assert_eq!(
        video["_meet_url"],
        format!("{}/room/{code}?token={agent_token}", app.base),
        "the agent gets its own link: {video}"
    );
    let to_agent = app.agent_video_notes(&id).await;
    assert_eq!(events(&to_agent), ["ringing"], "{to_agent:?}");
    assert_eq!(to_agent[0]["_meet_url"], video["_meet_url"]);

    // The customer's phone rings, with the customer's link.
    let to_device = app.device_video_notes(&id).await;
    assert_eq!(events(&to_device), ["ringing"], "{to_device:?}");
    assert_eq!(to_device[0]["_ringing"], "customer");
    let customer_token = text(&to_device[0]["_room_token"]);
    assert_ne!(customer_token, agent_token);
    assert_eq!(
        to_device[0]["_meet_url"],
        format!("{}/room/{code}?token={customer_token}", app.base)
    );
    let (status, shown) = app.get(&format!("/genesys/1/service/{id}/ixn/video")).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["_meet_url"], to_device[0]["_meet_url"], "{shown}");

    let accepted = app
        .room_ok(&code, "accept", Auth::Query(&customer_token))
        .await;
    assert_eq!(accepted["answered_by"], "customer", "{accepted}");
    app.room_ok(&code, "join", Auth::Bearer(&agent_token)).await;
    let started = app
        .room_ok(&code, "join", Auth::Bearer(&customer_token))
        .await;
    assert_eq!(started["status"], "started", "{started}");
    let ended = app
        .room_ok(&code, "leave", Auth::Bearer(&agent_token))
        .await;
    assert_eq!(ended["status"], "ended", "{ended}");
    assert_eq!(ended["end_reason"], "left", "{ended}");

    // The agent calls again: a new room, a new code; the customer declines.
    let (status, again) = app.agent_video(&id, &json!({})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["status"], "ringing", "{again}");
    let code2 = text(&again["_room_code"]);
    assert_ne!(code2, code);
    let (status, old) = app
        .room_request(
            reqwest::Method::GET,
            &code,
            "",
            Auth::Query(&customer_token),
            None,
        )
        .await;
    assert_eq!(status, 404, "only the latest room is reachable: {old}");
    let to_device = app.device_video_notes(&id).await;
    let ring2 = to_device.last().expect("a ring");
    assert_eq!(ring2["_event"], "ringing", "{to_device:?}");
    assert_eq!(ring2["_room_code"], code2.as_str());
    let customer_token2 = text(&ring2["_room_token"]);
    let declined = app
        .room_ok(&code2, "decline", Auth::Query(&customer_token2))
        .await;
    assert_eq!(declined["status"], "ended", "{declined}");
    assert_eq!(declined["end_reason"], "declined", "{declined}");
    // The first call took place: the survey is open in the latest room.
    assert_eq!(declined["survey"]["open"], true, "{declined}");
    let (status, answered) = app
        .room_request(
            reqwest::Method::POST,
            &code2,
            "survey",
            Auth::Query(&customer_token2),
            Some(&json!({"score": 2})),
        )
        .await;
    assert_eq!(status, 200, "{answered}");

    let rec = app.record(&id).await;
    let leg = &rec["video"];
    assert_eq!(leg["requested_by"], "AGENT", "{leg}");
    assert_eq!(leg["routed"], "same_agent", "{leg}");
    assert_eq!(leg["survey"]["score"], 2, "{leg}");
    let rooms = leg["rooms"].as_array().expect("rooms");
    assert_eq!(rooms.len(), 2, "{leg}");
    assert_eq!(rooms[0]["end_reason"], "left");
    assert_eq!(rooms[0]["answered_by"], "CLIENT");
    assert_eq!(rooms[1]["end_reason"], "declined");
    assert!(rooms[1]["declined_at"].is_string(), "{leg}");
    assert!(rooms[1].get("started_at").is_none(), "{leg}");
}

/// The side that asked for video is not the one being rung: it can neither
/// answer its own ring nor, by joining first, mark it answered.
#[tokio::test]
async fn only_the_called_side_answers_the_ring() {
    let app = spawn_app().await;
    app.ready_agent("alice", &["support"], 1).await;
    let id = app.chat_with("alice", "5550003", DEVICE).await;
    let (status, video) = app.customer_video(&id, &[("routingData", ROUTING)]).await;
    assert_eq!(status, 200, "{video}");
    let code = text(&video["_room_code"]);
    let token = text(&video["_room_token"]);

    for action in ["accept", "decline"] {
        let (status, body) = app
            .room_request(
                reqwest::Method::POST,
                &code,
                action,
                Auth::Query(&token),
                None,
            )
            .await;
        assert!(
            status == 409 || status == 403,
            "the customer rang the agent; the customer's {action} must be refused, got {status}: {body}"
        );
    }
    let joined = app.room_ok(&code, "join", Auth::Query(&token)).await;
    assert_eq!(
        joined["status"], "ringing",
        "the agent has not answered yet: {joined}"
    );
    assert_eq!(joined["answered_by"], Value::Null, "{joined}");
}

// ------------------------------------------------- escalation by routingData

#[tokio::test]
async fn escalation_goes_by_routing_data_to_a_skilled_agent_when_the_chats_agent_is_in_another_room(
) {
    let app = spawn_app().await;
    app.ready_agent("alice", &["support"], 2).await;
    // Video agents: only bob has both skills.
    app.put_agent("carol", &["video"], &[("Arabic", 5)], 2)
        .await;
    app.set_ready("carol", true).await;
    app.put_agent("bob", &["video"], &[("Arabic", 5), ("Video", 3)], 2)
        .await;
    app.set_ready("bob", true).await;

    // Alice is in the room of her first chat.
    let first = app.chat_with("alice", "5550010", DEVICE).await;
    let (status, video) = app
        .customer_video(&first, &[("routingData", ROUTING)])
        .await;
    assert_eq!(status, 200, "{video}");
    assert_eq!(video["_routed"], "same_agent", "{video}");

    // Her second chat escalates: it goes to the queue of routingData.
    let second = app.chat_with("alice", "5550011", DEVICE).await;
    let (status, video) = app
        .customer_video(
            &second,
            &[
                ("routingData", ROUTING),
                ("conversationId", second.as_str()),
            ],
        )
        .await;
    assert_eq!(status, 200, "{video}");
    assert_eq!(video["_id"], second.as_str());
    assert!(video["_meet_url"].is_string(), "{video}");
    let code = text(&video["_room_code"]);
    let rec = app.wait_for_state(&second, "PROCESSING", WAIT).await;
    assert_eq!(rec["agent"], "bob", "{rec}");
    assert_eq!(rec["served_by"], "bob", "{rec}");
    assert_eq!(rec["ticket"]["queue"], "video", "{rec}");
    assert_eq!(rec["ticket"]["skills"], "Arabic & Video", "{rec}");
    assert_eq!(rec["ticket"]["priority"], 5, "{rec}");
    let leg = &rec["video"];
    assert_eq!(leg["routed"], "queue", "{leg}");
    assert_eq!(leg["agent"], "bob", "{leg}");
    let room = last_room(&rec);
    assert_eq!(
        room["code"],
        code.as_str(),
        "the room made at the request: {rec}"
    );
    assert!(room["ringing_at"].is_string(), "bob is rung: {rec}");
    assert_eq!(app.agent_services("alice").await, vec![first.clone()]);
    assert_eq!(app.agent_services("bob").await, vec![second.clone()]);
    assert_eq!(app.agent_services("carol").await, Vec::<String>::new());

    // The transcript: alice left, bob joined.
    let rows: Vec<(String, String, String)> = rec["chat"]["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (text(&e["kind"]), text(&e["party"]), text(&e["nickname"])))
        .collect();
    let at = |kind: &str, nick: &str| {
        rows.iter()
            .position(|r| r.0 == kind && r.1 == "AGENT" && r.2 == nick)
            .unwrap_or_else(|| panic!("no {kind} of {nick} in {rows:?}"))
    };
    assert!(at("Notice.Joined", "alice") < at("Notice.Left", "alice"));
    assert!(at("Notice.Left", "alice") < at("Notice.Joined", "bob"));

    let (status, shown) = app
        .get(&format!("/genesys/1/service/{second}/ixn/video"))
        .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["_routed"], "queue", "{shown}");
    assert_eq!(shown["_agent_id"], "bob", "{shown}");
    assert_eq!(shown["status"], "ringing", "{shown}");
    let to_bob = app.agent_video_notes(&second).await;
    let ring = to_bob
        .iter()
        .find(|n| n["_event"] == "ringing")
        .unwrap_or_else(|| panic!("bob is not rung: {to_bob:?}"));
    assert_eq!(ring["_agent_id"], "bob");
    assert_eq!(ring["_routed"], "queue");

    let to_device = app.device_video_notes(&second).await;
    assert_eq!(events(&to_device), ["routing", "ringing"], "{to_device:?}");
    assert_eq!(to_device[1]["_agent_id"], "bob", "{to_device:?}");

    // The chat goes on with bob.
    let (status, said) = app
        .post_json(
            &format!("/api/v1/services/{second}/chat"),
            &json!({"text": "bob here, joining the video"}),
        )
        .await;
    assert_eq!(status, 200, "{said}");
}

// ------------------------------------------------- the seed's create

#[tokio::test]
async fn the_seeds_create_with_a_live_chats_conversation_id_adds_video_to_that_chat() {
    let app = spawn_app().await;
    app.ready_agent("alice", &["support"], 1).await;
    let chat = app.chat_with("alice", "5550020", DEVICE).await;
    let (status, created) = app
        .post_form(
            "/genesys/1/service/callback/video-immediate",
            &[
                ("_customer_number", "5550020"),
                ("_desired_time", "now"),
                ("conversationId", chat.as_str()),
                ("routingData", ROUTING),
            ],
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["_id"], chat.as_str(), "one record: {created}");
    assert_eq!(created["_text"], "Your video call is being set up");
    assert_eq!(created["_routed"], "same_agent", "{created}");
    assert_eq!(created["status"], "ringing", "{created}");
    assert!(
        created["_meet_url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&format!("{}/room/", app.base))),
        "{created}"
    );
    let (_, listed) = app.get("/genesys/1/service/callback/video-immediate").await;
    assert_eq!(listed, json!([]), "no second service: {listed}");
    let rec = app.record(&chat).await;
    assert_eq!(rec["scenario"], "chat-immediate");
    assert_eq!(rec["video"]["scenario"], "video-immediate");
    assert_eq!(rec["video"]["conversation_id"], chat.as_str());
    assert_eq!(
        rec["video"]["routing"]["attributes"]["productLine"],
        "Post-paid"
    );
    assert!(rec["chat"]["transcript"].as_array().unwrap().len() >= 3);
    let (_, agent) = app.get("/api/v1/agents/alice").await;
    assert_eq!(agent["room"], chat.as_str(), "{agent}");
}

#[tokio::test]
async fn the_seeds_create_for_an_unknown_conversation_makes_a_video_service_routed_by_routing_data()
{
    let app = spawn_app().await;
    app.put_agent("carol", &["video"], &[("Arabic", 5)], 2)
        .await;
    app.set_ready("carol", true).await;
    app.put_agent("bob", &["video"], &[("Arabic", 5), ("Video", 3)], 2)
        .await;
    app.set_ready("bob", true).await;
    let (status, created) = app
        .post_form(
            "/genesys/1/service/callback/video-immediate",
            &[
                ("_customer_number", "5550021"),
                ("_desired_time", "now"),
                ("conversationId", "genesys-conv-8c1e77"),
                ("routingData", ROUTING),
                ("name", "Dana"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = text(&created["_id"]);
    assert_ne!(id, "genesys-conv-8c1e77");
    assert_eq!(created["_text"], "Your video call is being set up");
    assert_eq!(
        created["_conversation_id"], "genesys-conv-8c1e77",
        "{created}"
    );
    let code = text(&created["_room_code"]);
    assert_code(&code);
    let customer_token = text(&created["_room_token"]);
    assert_eq!(
        created["_meet_url"],
        format!("{}/room/{code}?token={customer_token}", app.base),
        "the room is there from the start: {created}"
    );

    let rec = app.wait_for_state(&id, "PROCESSING", WAIT).await;
    assert_eq!(rec["scenario"], "video-immediate");
    assert_eq!(rec["agent"], "bob", "only bob has both skills: {rec}");
    assert_eq!(rec["ticket"]["queue"], "video");
    assert_eq!(rec["ticket"]["skills"], "Arabic & Video");
    assert_eq!(rec["video"]["routed"], "queue", "{rec}");
    assert_eq!(rec["video"]["agent"], "bob", "{rec}");
    assert_eq!(rec["video"]["conversation_id"], "genesys-conv-8c1e77");
    let rooms = rec["video"]["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 1, "{rec}");
    assert_eq!(rooms[0]["code"], code.as_str());
    let rec = app
        .wait_for_record(&id, "ringing", |r| last_room(r)["ringing_at"].is_string())
        .await;
    assert_eq!(last_room(&rec)["code"], code.as_str());
    let to_bob = app.agent_video_notes(&id).await;
    let ring = to_bob
        .iter()
        .find(|n| n["_event"] == "ringing")
        .unwrap_or_else(|| panic!("bob is not rung: {to_bob:?}"));
    assert_eq!(ring["_room_code"], code.as_str());
    assert_ne!(ring["_room_token"], customer_token.as_str());

    // Both join: the call starts.
    let agent_token = text(&ring["_room_token"]);
    app.room_ok(&code, "join", Auth::Query(&customer_token))
        .await;
    let started = app.room_ok(&code, "join", Auth::Query(&agent_token)).await;
    assert_eq!(started["status"], "started", "{started}");
    let (_, agent) = app.get("/api/v1/agents/bob").await;
    assert_eq!(agent["room"], id.as_str(), "{agent}");
}

// ------------------------------------------------- preferred agent

fn preferred_scenario() -> String {
    video_immediate_copy(
        "video-pref",
        &[
            (
                "_preferred_agent_timeout = \"30s\"",
                "_preferred_agent_timeout = \"2s\"",
            ),
            (
                "_target = { queue = \"video\", priority = 5 }",
                "_target = { queue = \"vpref\", priority = 5 }",
            ),
        ],
    )
}

#[tokio::test]
async fn a_preferred_agent_who_is_not_ready_loses_the_service_to_the_queue_after_its_timeout() {
    let app = TestApp::builder()
        .scenario("video-pref.toml", &preferred_scenario())
        .spawn()
        .await;
    app.put_agent("pat", &["vpref"], &[], 2).await;
    app.ready_agent("bob", &["vpref"], 2).await;
    let asked = Instant::now();
    let (status, created) = app
        .post_form(
            "/genesys/1/service/callback/video-pref",
            &[
                ("_customer_number", "5550030"),
                ("_desired_time", "now"),
                ("_preferred_agent", "pat"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = text(&created["_id"]);
    assert_eq!(created["_routing"]["preferred_agent"], "pat", "{created}");

    // Bob is ready, but the service is kept for pat for 2 s.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let rec = app.record(&id).await;
    assert_eq!(rec["_callback_state"], "QUEUED", "{rec}");
    assert_eq!(rec["ticket"]["preferred_agent"], "pat", "{rec}");
    assert!(rec["timers"]["preferred_agent"].is_string(), "{rec}");

    let rec = app.wait_for_state(&id, "PROCESSING", WAIT).await;
    assert!(
        asked.elapsed() >= Duration::from_millis(1900),
        "taken after {:?}, before the preferred agent's 2 s",
        asked.elapsed()
    );
    assert_eq!(rec["agent"], "bob", "{rec}");
    assert_eq!(rec["video"]["routed"], "queue", "{rec}");
    assert_eq!(rec["video"]["agent"], "bob", "{rec}");
}

#[tokio::test]
async fn a_preferred_agent_who_is_ready_takes_the_service_first() {
    let app = TestApp::builder()
        .scenario("video-pref.toml", &preferred_scenario())
        .spawn()
        .await;
    // Bob would win without the preference (same load, first by id).
    app.ready_agent("bob", &["vpref"], 2).await;
    app.ready_agent("pat", &["vpref"], 2).await;
    let asked = Instant::now();
    let (status, created) = app
        .post_form(
            "/genesys/1/service/callback/video-pref",
            &[
                ("_customer_number", "5550031"),
                ("_desired_time", "now"),
                ("routingData", r#"{"preferredAgentId":"pat","priority":7}"#),
            ],
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = text(&created["_id"]);
    assert_eq!(created["_routing"]["queue"], "vpref", "{created}");
    assert_eq!(created["_routing"]["priority"], 7, "{created}");
    let rec = app.wait_for_state(&id, "PROCESSING", WAIT).await;
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(rec["agent"], "pat", "{rec}");
    assert_eq!(rec["video"]["routed"], "preferred_agent", "{rec}");
    let (status, shown) = app.get(&format!("/genesys/1/service/{id}/ixn/video")).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["_routed"], "preferred_agent", "{shown}");
    assert_eq!(shown["_agent_id"], "pat", "{shown}");
}

// ------------------------------------------------- booked appointments

/// A booked video scenario open around the clock in UTC, 5-minute slots;
/// it enters the queue `enter_queue_secs` before the slot.
fn booked_video_scenario(enter_queue_secs: i64) -> ScenarioBuilder {
    ScenarioBuilder::video_call()
        .name("video-booked")
        .key("_preferred_agent_timeout", r#""2s""#)
        .key("_target", r#"{ queue = "vbooked", priority = 5 }"#)
        .key("_mandatory_fields", r#"["_customer_number"]"#)
        .table("_texts", r#"created = "Your video appointment is booked""#)
        .video(
            r#"room_ttl = "1h"
waiting_room = { image = "/static/waiting-room.jpg", message = "Your advisor will be with you at your appointment time." }"#,
        )
        .always_open(
            "timezone = \"UTC\"\nslot = \"5m\"\njoin_url = \"{base_url}/video/{service_id}\"",
            2,
            &format!("[_schedule.buffers]\nenter_queue = \"{enter_queue_secs}s\""),
        )
}

#[tokio::test]
async fn a_booked_video_appointment_shows_the_waiting_room_then_the_room_once_an_agent_takes_it() {
    // The slot at least 6 minutes away, entering the queue 3 s from now.
    let now = Utc::now();
    let slot = ceil5(now + Span::minutes(6));
    let buffer = (slot - now - Span::seconds(3)).num_seconds();
    let app = TestApp::builder()
        .with_scenario(&booked_video_scenario(buffer))
        .spawn()
        .await;
    app.put_agent("pat", &["vbooked"], &[], 1).await;
    app.ready_agent("bob", &["vbooked"], 1).await;

    let (status, booked) = app
        .post_form(
            "/genesys/1/service/callback/video-booked",
            &[
                ("_customer_number", "5550040"),
                ("_desired_time", &iso(slot)),
                ("_preferred_agent", "pat"),
                ("_device_notification_id", DEVICE),
                ("_device_os", "comet"),
                ("name", "Dana"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{booked}");
    let id = text(&booked["_id"]);
    assert_eq!(booked["_desired_time"], iso(slot), "{booked}");
    assert_eq!(
        booked["_join_url"],
        app.url(&format!("/video/{id}")),
        "{booked}"
    );
    assert!(
        booked.get("_meet_url").is_none(),
        "no room before an agent: {booked}"
    );

    // The link opened early: the waiting room.
    let (status, waiting) = app.get(&format!("/genesys/1/service/{id}/ixn/video")).await;
    assert_eq!(status, 200, "{waiting}");
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    assert_eq!(waiting["_callback_state"], "SCHEDULED", "{waiting}");
    assert_eq!(waiting["_desired_time"], iso(slot), "{waiting}");
    let left = waiting["_seconds_left"].as_i64().expect("_seconds_left");
    let expected = (slot - Utc::now()).num_seconds();
    assert!(
        (expected - 2..=expected + 1).contains(&left),
        "{left} vs {expected}"
    );
    assert_eq!(
        waiting["_waiting_room"],
        json!({"image": "/static/waiting-room.jpg",
               "message": "Your advisor will be with you at your appointment time."}),
        "{waiting}"
    );
    assert_eq!(waiting["_join_url"], booked["_join_url"]);
    assert!(waiting.get("_meet_url").is_none(), "{waiting}");

    // It enters the queue (slot less enter_queue), kept for pat for 2 s,
    // then bob takes it; a room opens and rings.
    app.wait_for_state(&id, "QUEUED", WAIT).await;
    let rec = app.wait_for_state(&id, "PROCESSING", WAIT).await;
    assert_eq!(rec["agent"], "bob", "{rec}");
    let rec = app
        .wait_for_record(&id, "a room", |r| {
            r["video"]["rooms"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .await;
    assert_eq!(rec["video"]["routed"], "queue", "{rec}");
    assert_eq!(rec["video"]["agent"], "bob", "{rec}");
    let room = last_room(&rec);
    let code = text(&room["code"]);
    assert!(room["ringing_at"].is_string(), "{room}");
    let tags: Vec<String> = rec["outbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| text(&n["tag"]))
        .collect();
    assert!(
        tags.contains(&format!("service.video.{id}")),
        "the device is told: {tags:?}"
    );
    let to_device = app.device_video_notes(&id).await;
    let ring = to_device
        .iter()
        .find(|n| n["_event"] == "ringing")
        .unwrap_or_else(|| panic!("no ringing for the device: {to_device:?}"));
    assert_eq!(ring["_room_code"], code.as_str());
    let meet_url = text(&ring["_meet_url"]);
    assert!(meet_url.starts_with(&format!("{}/room/{code}?token=", app.base)));

    // The link now shows the room, not the waiting room, though the slot
    // is minutes away: the advisor is ringing.
    let (status, shown) = app.get(&format!("/genesys/1/service/{id}/ixn/video")).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(
        shown["status"], "ringing",
        "an advisor took the appointment and its room is ringing, but the customer's view is: {shown}"
    );
    assert_eq!(shown["_meet_url"], meet_url.as_str(), "{shown}");
    assert_eq!(shown["_routed"], "queue", "{shown}");
}

// ------------------------------------------------- room TTL

#[tokio::test]
async fn a_room_nobody_started_expires_with_its_ttl_and_a_started_call_goes_on() {
    let short = video_immediate_copy(
        "video-short",
        &[("room_ttl = \"1h\"", "room_ttl = \"10s\"")],
    );
    let app = TestApp::builder()
        .scenario("video-short.toml", &short)
        .spawn()
        .await;
    app.ready_agent("alice", &["support"], 1).await;
    let idle = app.chat_with("alice", "5550050", DEVICE).await;
    app.ready_agent("bob", &["support"], 1).await;
    let busy = app.chat_with("bob", "5550051", DEVICE).await;

    let fields = [("routingData", ROUTING), ("_video_scenario", "video-short")];
    let (status, idle_video) = app.customer_video(&idle, &fields).await;
    assert_eq!(status, 200, "{idle_video}");
    let (status, busy_video) = app.customer_video(&busy, &fields).await;
    assert_eq!(status, 200, "{busy_video}");
    let expires = time_of(&idle_video["_expires_at"]);
    let ttl = expires - Utc::now();
    assert!(
        ttl > Span::seconds(8) && ttl <= Span::seconds(10),
        "{idle_video}"
    );
    let rec = app.record(&idle).await;
    assert_eq!(rec["video"]["scenario"], "video-short", "{rec}");

    // The busy one starts; the idle one nobody joins.
    let busy_code = text(&busy_video["_room_code"]);
    let busy_token = text(&busy_video["_room_token"]);
    let to_bob = app.agent_video_notes(&busy).await;
    let bob_token = text(&to_bob[0]["_room_token"]);
    app.room_ok(&busy_code, "join", Auth::Query(&busy_token))
        .await;
    let started = app
        .room_ok(&busy_code, "join", Auth::Query(&bob_token))
        .await;
    assert_eq!(started["status"], "started");

    let idle_code = text(&idle_video["_room_code"]);
    let idle_token = text(&idle_video["_room_token"]);
    let wait = (expires - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(300);
    tokio::time::sleep(wait).await;
    let rec = app
        .wait_for_record(&idle, "the room expired", |r| {
            last_room(r)["ended_at"].is_string()
        })
        .await;
    let room = last_room(&rec);
    assert_eq!(room["end_reason"], "expired", "{room}");
    assert!(time_of(&room["ended_at"]) >= expires, "{room}");
    assert_eq!(
        rec["_callback_state"], "PROCESSING",
        "the chat goes on: {rec}"
    );
    let (status, late) = app
        .room_request(
            reqwest::Method::POST,
            &idle_code,
            "join",
            Auth::Query(&idle_token),
            None,
        )
        .await;
    assert_eq!(status, 409, "joining an expired room: {late}");
    assert_eq!(late["exception"], "INVALID_STATE", "{late}");
    let to_device = app.device_video_notes(&idle).await;
    assert_eq!(events(&to_device).last().map(String::as_str), Some("ended"));
    let (_, agent) = app.get("/api/v1/agents/alice").await;
    assert_eq!(agent["room"], Value::Null, "{agent}");
    let (_, shown) = app
        .get(&format!("/genesys/1/service/{idle}/ixn/video"))
        .await;
    assert_eq!(shown["status"], "ended", "{shown}");

    // The started call is not cut by the code's expiry.
    let rec = app.record(&busy).await;
    let room = last_room(&rec);
    assert_eq!(room["ended_at"], Value::Null, "{room}");
    let seen = app.room_view(&busy_code, Auth::Query(&busy_token)).await;
    assert_eq!(seen["status"], "started", "{seen}");
}

// ------------------------------------------------- one room per agent

#[tokio::test]
async fn an_agent_in_a_live_room_gets_no_other_video_until_it_ends() {
    let app = spawn_app().await;
    app.put_agent(
        "alice",
        &["support", "video"],
        &[("Arabic", 5), ("Video", 5)],
        3,
    )
    .await;
    app.set_ready("alice", true).await;
    let first = app.chat_with("alice", "5550060", DEVICE).await;
    let (status, video) = app
        .customer_video(&first, &[("routingData", ROUTING)])
        .await;
    assert_eq!(status, 200, "{video}");
    assert_eq!(video["_routed"], "same_agent");
    let (_, agent) = app.get("/api/v1/agents/alice").await;
    assert_eq!(agent["room"], first.as_str(), "{agent}");

    // A second chat still reaches her: chats are not held by a room.
    let second = app.chat_with("alice", "5550061", DEVICE).await;
    // She cannot start video on it herself...
    let (status, refused) = app.agent_video(&second, &json!({})).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["exception"], "INVALID_STATE", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("another video room"),
        "{refused}"
    );
    // ...and the customer's request goes to the queue, where it waits.
    let (status, video2) = app
        .customer_video(&second, &[("routingData", ROUTING)])
        .await;
    assert_eq!(status, 200, "{video2}");
    assert_eq!(video2["_routed"], Value::Null, "{video2}");
    assert_eq!(video2["status"], "open", "{video2}");
    assert_eq!(video2["_callback_state"], "QUEUED", "{video2}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let rec = app.record(&second).await;
    assert_eq!(
        rec["_callback_state"], "QUEUED",
        "alice is in a room: {rec}"
    );
    assert_eq!(rec["video"]["agent"], Value::Null, "{rec}");
    assert_eq!(app.agent_services("alice").await, vec![first.clone()]);
    let (_, agent) = app.get("/api/v1/agents/alice").await;
    assert_eq!(agent["room"], first.as_str(), "{agent}");

    // She declines the first room: free again, she gets the second video.
    let to_alice = app.agent_video_notes(&first).await;
    let token = text(&to_alice[0]["_room_token"]);
    let code = text(&video["_room_code"]);
    let declined = app.room_ok(&code, "decline", Auth::Query(&token)).await;
    assert_eq!(declined["end_reason"], "declined", "{declined}");
    let freed = Instant::now();
    let rec = app.wait_for_state(&second, "PROCESSING", WAIT).await;
    let latency = freed.elapsed();
    assert_eq!(rec["video"]["agent"], "alice", "{rec}");
    assert_eq!(rec["video"]["routed"], "queue", "{rec}");
    let (_, agent) = app.get("/api/v1/agents/alice").await;
    assert_eq!(agent["room"], second.as_str(), "{agent}");
    // Freed capacity is routed at once (as when an agent gets ready or
    // lets a service go), not at the router's next periodic pass.
    assert!(
        latency < Duration::from_secs(2),
        "the waiting video reached the freed agent only after {latency:?}"
    );
}

// ------------------------------------------------- complete while live

#[tokio::test]
async fn complete_is_refused_while_the_room_is_live_and_force_ends_the_room() {
    let app = spawn_app().await;
    app.ready_agent("alice", &["support"], 1).await;
    let id = app.chat_with("alice", "5550070", DEVICE).await;
    let (_, video) = app.customer_video(&id, &[("routingData", ROUTING)]).await;
    let code = text(&video["_room_code"]);
    let customer_token = text(&video["_room_token"]);
    let agent_token = text(&app.agent_video_notes(&id).await[0]["_room_token"]);
    app.room_ok(&code, "join", Auth::Query(&customer_token))
        .await;
    app.room_ok(&code, "join", Auth::Query(&agent_token)).await;

    for path in ["complete", "complete?force=false"] {
        let (status, refused) = app
            .post_json(&format!("/api/v1/services/{id}/{path}"), &Value::Null)
            .await;
        assert_eq!(status, 409, "{path}: {refused}");
        assert_eq!(refused["exception"], "INVALID_STATE", "{refused}");
        let message = refused["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&code) && message.contains("force"),
            "{refused}"
        );
    }
    assert_eq!(app.state_of(&id).await, "PROCESSING");

    let (status, done) = app
        .post_json(
            &format!("/api/v1/services/{id}/complete?force=true"),
            &Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["_callback_state"], "COMPLETED", "{done}");
    assert_eq!(done["_callback_reason"], "AGENT_CONNECTED", "{done}");
    let room = last_room(&done);
    assert_eq!(room["end_reason"], "forced", "{room}");
    assert!(room["ended_at"].is_string(), "{room}");
    for p in room["participants"].as_array().unwrap() {
        assert!(p["left_at"].is_string(), "everyone left: {room}");
    }
    assert_eq!(app.agent_services("alice").await, Vec::<String>::new());
    let (_, agent) = app.get("/api/v1/agents/alice").await;
    assert_eq!(agent["room"], Value::Null, "{agent}");
    let to_device = app.device_video_notes(&id).await;
    assert_eq!(events(&to_device).last().map(String::as_str), Some("ended"));

    // The room is over; the survey still comes after the completion.
    let seen = app.room_view(&code, Auth::Query(&customer_token)).await;
    assert_eq!(seen["status"], "ended", "{seen}");
    assert_eq!(seen["service_state"], "COMPLETED", "{seen}");
    let (status, late) = app
        .room_request(
            reqwest::Method::POST,
            &code,
            "join",
            Auth::Query(&customer_token),
            None,
        )
        .await;
    assert_eq!(status, 409, "{late}");
    let (status, answered) = app
        .room_request(
            reqwest::Method::POST,
            &code,
            "survey",
            Auth::Query(&customer_token),
            Some(&json!({"score": 5})),
        )
        .await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(app.record(&id).await["video"]["survey"]["score"], 5);
}

#[tokio::test]
async fn cancelling_a_video_service_ends_its_live_room_and_frees_the_agent() {
    let app = spawn_app().await;
    app.put_agent("bob", &["video"], &[("Arabic", 5), ("Video", 3)], 1)
        .await;
    app.set_ready("bob", true).await;
    let (status, created) = app
        .post_form(
            "/genesys/1/service/callback/video-immediate",
            &[
                ("_customer_number", "5550075"),
                ("_desired_time", "now"),
                ("routingData", ROUTING),
            ],
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = text(&created["_id"]);
    let code = text(&created["_room_code"]);
    let token = text(&created["_room_token"]);
    app.wait_for_state(&id, "PROCESSING", WAIT).await;
    app.room_ok(&code, "join", Auth::Query(&token)).await;
    let (_, agent) = app.get("/api/v1/agents/bob").await;
    assert_eq!(agent["room"], id.as_str(), "{agent}");

    let (status, cancelled) = app
        .delete(&format!("/genesys/1/service/callback/video-immediate/{id}"))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["_callback_reason"], "CANCELLED", "{cancelled}");
    let rec = app.record(&id).await;
    let room = last_room(&rec);
    assert_eq!(room["end_reason"], "service_ended", "{room}");
    assert!(room["participants"][0]["left_at"].is_string(), "{room}");
    let (_, agent) = app.get("/api/v1/agents/bob").await;
    assert_eq!(agent["room"], Value::Null, "{agent}");
    assert_eq!(agent["services"], json!([]), "{agent}");
    let seen = app.room_view(&code, Auth::Query(&token)).await;
    assert_eq!(seen["status"], "ended", "{seen}");
    let (status, shown) = app.get(&format!("/genesys/1/service/{id}/ixn/video")).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["status"], "ended", "{shown}");
    assert_eq!(shown["_callback_state"], "COMPLETED", "{shown}");
}

// ------------------------------------------------- bad input

#[tokio::test]
async fn bad_video_input_is_refused_naming_the_field() {
    let app = spawn_app().await;
    app.ready_agent("alice", &["support"], 1).await;
    let id = app.chat_with("alice", "5550080", DEVICE).await;

    // routingData, as the customer sends it and in the seed's create.
    let cases = [
        ("{not json", "routingData"),
        (r#"["video"]"#, "routingData"),
        (r#"{"queue_id":"video"}"#, "routingData.queue_id"),
        (r#"{"queueId":""}"#, "routingData.queueId"),
        (r#"{"skills":["Arabic",3]}"#, "routingData.skills"),
        (r#"{"skills":"Arabic &"}"#, "routingData.skills"),
        (r#"{"skills":{"Arabic":5}}"#, "routingData.skills"),
        (r#"{"priority":1000001}"#, "routingData.priority"),
        (r#"{"priority":"high"}"#, "routingData.priority"),
        (r#"{"attributes":["x"]}"#, "routingData.attributes"),
        (
            r#"{"attributes":{"a":{"b":1}}}"#,
            "routingData.attributes.a",
        ),
        (r#"{"preferredAgentId":5}"#, "routingData.preferredAgentId"),
    ];
    for (routing, field) in cases {
        let (status, body) = app.customer_video(&id, &[("routingData", routing)]).await;
        assert_refused(status, &body, 400, "INVALID_PARAMETER", field);
        let (status, body) = app
            .post_form(
                "/genesys/1/service/callback/video-immediate",
                &[
                    ("_customer_number", "5550081"),
                    ("_desired_time", "now"),
                    ("routingData", routing),
                ],
            )
            .await;
        assert_refused(status, &body, 400, "INVALID_PARAMETER", field);
    }
    // The agent's JSON body.
    let (status, body) = app
        .agent_video(&id, &json!({"routingData": {"priority": -1000001}}))
        .await;
    assert_refused(
        status,
        &body,
        400,
        "INVALID_PARAMETER",
        "routingData.priority",
    );
    let (status, body) = app.agent_video(&id, &json!({"routing": {}})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("routing"),
        "{body}"
    );
    // Scenarios that cannot make rooms.
    for (scenario, why) in [
        ("no-such-scenario", "does not exist"),
        ("chat-immediate", "[_video]"),
    ] {
        let (status, body) = app
            .customer_video(&id, &[("_video_scenario", scenario)])
            .await;
        assert_refused(status, &body, 400, "INVALID_PARAMETER", "_video_scenario");
        assert!(body["message"].as_str().unwrap().contains(why), "{body}");
    }
    let long = "c".repeat(129);
    let (status, body) = app.customer_video(&id, &[("conversationId", &long)]).await;
    assert_refused(status, &body, 400, "INVALID_PARAMETER", "conversationId");
    // Nothing of that changed the service.
    let rec = app.record(&id).await;
    assert!(rec.get("video").is_none(), "{rec}");
    let (status, body) = app.get(&format!("/genesys/1/service/{id}/ixn/video")).await;
    assert_eq!(status, 404, "no video yet: {body}");

    let (_, video) = app.customer_video(&id, &[("routingData", ROUTING)]).await;
    let code = text(&video["_room_code"]);
    let token = text(&video["_room_token"]);
    // A second request while the room is live.
    let (status, body) = app.customer_video(&id, &[]).await;
    assert_eq!(status, 409, "{body}");

    // Rooms: unknown code, wrong or missing token, not a code.
    let (status, body) = app
        .room_request(
            reqwest::Method::GET,
            "QQQQQQQ",
            "",
            Auth::Query(&token),
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["exception"], "NOT_FOUND", "{body}");
    for action in ["", "join", "accept"] {
        let method = if action.is_empty() {
            reqwest::Method::GET
        } else {
            reqwest::Method::POST
        };
        let (status, body) = app
            .room_request(method, &code, action, Auth::Bearer("not-the-token"), None)
            .await;
        assert_eq!(status, 403, "{action}: {body}");
        assert_eq!(body["exception"], "FORBIDDEN", "{body}");
    }
    let (status, body) = app.get(&format!("/api/v1/rooms/{code}")).await;
    assert_refused(status, &body, 400, "MISSING_PARAMETER", "token");
    let (status, body) = app.get("/api/v1/rooms/no%20code?token=x").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app
        .room_request(
            reqwest::Method::POST,
            &code,
            "dance",
            Auth::Query(&token),
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");

    // The survey: not before a call, scores in 1..=5, the customer only.
    let survey = |score: Value| json!({"score": score});
    let (status, body) = app
        .room_request(
            reqwest::Method::POST,
            &code,
            "survey",
            Auth::Query(&token),
            Some(&survey(json!(4))),
        )
        .await;
    assert_eq!(status, 409, "no call yet: {body}");
    assert_eq!(body["exception"], "INVALID_STATE", "{body}");
    for score in [json!(0), json!(6), json!(300), json!("four")] {
        let (status, body) = app
            .room_request(
                reqwest::Method::POST,
                &code,
                "survey",
                Auth::Query(&token),
                Some(&survey(score.clone())),
            )
            .await;
        assert_eq!(status, 400, "score {score}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("score"),
            "score {score}: {body}"
        );
    }
    let agent_token = text(&app.agent_video_notes(&id).await[0]["_room_token"]);
    let (status, body) = app
        .room_request(
            reqwest::Method::POST,
            &code,
            "survey",
            Auth::Query(&agent_token),
            Some(&survey(json!(5))),
        )
        .await;
    assert_eq!(status, 403, "the agent does not answer the survey: {body}");

    // Signals: a type that is not one, an offer without SDP, a bad candidate.
    let signal_cases = [
        (json!({"type": "hello"}), "type"),
        (json!({"type": "offer"}), "sdp"),
        (json!({"type": "answer", "sdp": "  "}), "sdp"),
        (
            json!({"type": "candidate", "candidate": "a=candidate"}),
            "candidate",
        ),
    ];
    for (body, field) in signal_cases {
        let (status, answer) = app
            .room_request(
                reqwest::Method::POST,
                &code,
                "signal",
                Auth::Query(&token),
                Some(&body),
            )
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&format!("{field}:")),
            "{body}: {answer}"
        );
    }
    let (status, body) = app
        .room_request(
            reqwest::Method::POST,
            &code,
            "signal",
            Auth::Query(&token),
            Some(&json!({"type": "offer", "sdp": "v=0", "extra": 1})),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // Leaving a room one is not in.
    let (status, body) = app
        .room_request(
            reqwest::Method::POST,
            &code,
            "leave",
            Auth::Query(&token),
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");

    // The agent cannot start video on a service no agent holds.
    let (status, created) = app
        .post_form(
            "/genesys/1/service/callback/chat-immediate",
            &[("_customer_number", "5550082")],
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let queued = text(&created["_id"]);
    let (status, body) = app.agent_video(&queued, &json!({})).await;
    assert_eq!(status, 409, "{body}");
    // Unknown services.
    let (status, body) = app.customer_video("no-such-service", &[]).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = app.agent_video("no-such-service", &json!({})).await;
    assert_eq!(status, 404, "{body}");
}

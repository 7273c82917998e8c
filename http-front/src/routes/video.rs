//! Video: escalating a chat, the customer's view (waiting room, the call,
//! the survey), the agent's commands, and the room API both sides use.
//!
//! | who | request | what |
//! |---|---|---|
//! | customer | `POST /genesys/1/service/{id}/ixn/video` | start video from the chat (`routingData`) |
//! | customer | `GET /genesys/1/service/{id}/ixn/video` | waiting room before a booked time, else the room |
//! | agent | `POST /api/v1/services/{id}/video` | start video from the chat, or call again |
//! | either | `GET /api/v1/rooms/{code}` | the room, as that side sees it |
//! | either | `POST /api/v1/rooms/{code}/{accept,decline,join,leave}` | the call session |
//! | either | `POST /api/v1/rooms/{code}/signal` | SDP / ICE for the other side (relay rooms) |
//! | customer | `POST /api/v1/rooms/{code}/survey` | the one-question survey after the call |
//!
//! Room requests prove their side with the room token from the links and
//! notifications: `?token=…` or `Authorization: Bearer …`.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use engine::machine::Event;
use engine::record::{Party, ServiceRecord};
use engine::scenario::Scenario;
use engine::video::{looks_like_code, ProviderConfig, Room};
use serde::Deserialize;
use serde_json::{json, Value};

use super::check_id;
use crate::error::AppError;
use crate::extract::Path;
use crate::form::{GmsForm, JsonBody, OptionalJsonBody};
use crate::requests::callback::conversation_id;
use crate::requests::room::RoomToken;
use crate::requests::routing::RoutingRequest;
use crate::AppState;

/// The scenario whose rooms a request uses (see [`Scenarios::video_for`]);
/// `field` names the request field that may name it.
///
/// [`Scenarios::video_for`]: engine::scenario::Scenarios::video_for
fn video_scenario(
    state: &AppState,
    named: Option<&str>,
    field: &str,
    record: &ServiceRecord,
) -> Result<Arc<Scenario>, AppError> {
    state
        .shell
        .scenarios()
        .video_for(named, Some(record))
        .map_err(|e| AppError::field(field, e))
}

/// What a customer sees of a service's video: the GMS-style answer of
/// start-video and create, and of `GET .../ixn/video`.
pub fn customer_view(state: &AppState, record: &ServiceRecord) -> Value {
    let now = state.shell.now();
    let mut v = json!({
        "_id": record.id,
        "_callback_state": record.state.gms_name(),
    });
    let leg = record.video.as_ref();
    let room = leg.and_then(|l| l.last_room());
    // A booked appointment opened early: the waiting room, until a room opens.
    let early = record.booking.as_ref().filter(|b| now < b.slot);
    if let Some(booking) = early.filter(|_| room.is_none()) {
        let config = state.shell.video_config(record);
        v["status"] = json!("waiting");
        v["_desired_time"] = json!(crate::wire::time(booking.slot));
        v["_seconds_left"] = json!((booking.slot - now).num_seconds().max(0));
        v["_join_url"] = json!(booking.join_url);
        v["_waiting_room"] = json!(config.waiting_room);
        return v;
    }
    v["status"] = json!(match room {
        Some(r) => r.status(),
        None if record.state == engine::record::ServiceState::Completed => "ended",
        None => "routing",
    });
    if let Some(leg) = leg {
        v["_routed"] = json!(leg.routed);
        v["_agent_id"] = json!(leg.agent);
        v["_routing"] = json!(leg.routing);
        v["_conversation_id"] = json!(leg.conversation_id);
    }
    if let Some(r) = room {
        v["_room_code"] = json!(r.code);
        v["_meet_url"] = json!(r.customer_url);
        v["_room_token"] = json!(r.customer_token);
        v["_room_url"] = json!(format!("{}/api/v1/rooms/{}", state.link_base, r.code));
        v["_expires_at"] = json!(crate::wire::time(r.expires_at));
    }
    if let Some(leg) = leg.filter(|l| l.had_call()) {
        let config = state.shell.video_config(record);
        v["_survey"] = json!({
            "question": config.survey.question,
            "scale": config.survey.scale,
            "answer": leg.survey,
        });
    }
    v
}

/// POST /genesys/1/service/{id}/ixn/video: the customer asks for video
/// from the chat. Fields: `routingData` (JSON, the seed's shape),
/// `_video_scenario`, `conversationId`.
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn start_by_customer(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    form: GmsForm,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    let record = state.shell.get(&id).await?;
    let named = form.get("_video_scenario");
    let video = video_scenario(&state, named, "_video_scenario", &record)?;
    let routing =
        RoutingRequest::from_text("routingData", form.get("routingData"))?.over(&video.target);
    let conversation = conversation_id(&form)?;
    let record = state
        .shell
        .start_video(record, Party::Client, &video, routing, conversation)
        .await?;
    Ok(Json(customer_view(&state, &record)))
}

/// GET /genesys/1/service/{id}/ixn/video: the waiting room before a
/// booked time, else the video as it stands (links, status, survey).
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn show_to_customer(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    let record = state.shell.get(&id).await?;
    if record.video.is_none() && record.booking.is_none() {
        return Err(AppError::NotFound(format!(
            "service `{id}` has no video; start it with POST"
        )));
    }
    Ok(Json(customer_view(&state, &record)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentVideoBody {
    /// The seed's routingData; the video scenario's target when absent.
    #[serde(default, rename = "routingData")]
    routing_data: Option<Value>,
    /// The scenario whose `[_video]` makes the room.
    #[serde(default)]
    scenario: Option<String>,
}

/// What the agent desktop sees of a service's video.
fn agent_view(state: &AppState, record: &ServiceRecord) -> Value {
    let leg = record.video.as_ref();
    let room = leg.and_then(|l| l.last_room());
    json!({
        "_id": record.id,
        "_callback_state": record.state.gms_name(),
        "status": room.map_or("routing", Room::status),
        "_routed": leg.and_then(|l| l.routed),
        "_agent_id": leg.and_then(|l| l.agent.clone()),
        "_room_code": room.map(|r| r.code.clone()),
        "_meet_url": room.map(|r| r.agent_url.clone()),
        "_room_token": room.map(|r| r.agent_token.clone()),
        "_room_url": room.map(|r| format!("{}/api/v1/rooms/{}", state.link_base, r.code)),
        "_expires_at": room.map(|r| crate::wire::time(r.expires_at)),
    })
}

/// POST /api/v1/services/{id}/video: the agent starts video from the chat
/// (Twilio's video button), or opens a new room after a call ended.
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn start_by_agent(
    State(state): State<Arc<AppState>>,
    caller: crate::auth::Caller,
    Path(id): Path<String>,
    // The body is optional: none means "the video scenario's target".
    OptionalJsonBody(body): OptionalJsonBody<AgentVideoBody>,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    let record = state.shell.get(&id).await?;
    caller.for_service(&record)?;
    let has_leg_agent = record
        .video
        .as_ref()
        .is_some_and(|v| v.agent.is_some() && v.agent == record.agent);
    if has_leg_agent && record.live_room().is_none() && body.routing_data.is_none() {
        // The agent already has the video: a new call in a new room.
        let record = state.shell.open_room(&id).await?;
        return Ok(Json(agent_view(&state, &record)));
    }
    let video = video_scenario(&state, body.scenario.as_deref(), "scenario", &record)?;
    let routing = RoutingRequest::from_value("routingData", body.routing_data)?.over(&video.target);
    let record = state
        .shell
        .start_video(record, Party::Agent, &video, routing, None)
        .await?;
    Ok(Json(agent_view(&state, &record)))
}

// ---- the room API --------------------------------------------------------

/// The room with `code` and the side `token` proves.
pub(super) async fn room_and_party(
    state: &AppState,
    code: &str,
    token: RoomToken,
) -> Result<(ServiceRecord, Party), AppError> {
    if !looks_like_code(code) {
        return Err(AppError::field("code", "is not a room code"));
    }
    let token = token.require()?;
    let missing = || AppError::NotFound(format!("room `{code}` does not exist"));
    let id = state
        .shell
        .service_in_room(code)
        .await?
        .ok_or_else(missing)?;
    let record = state.shell.get(&id).await.map_err(|_| missing())?;
    let room = record
        .video
        .as_ref()
        .and_then(|v| v.last_room())
        .filter(|r| r.code == code)
        .ok_or_else(missing)?;
    let party = room
        .party_of(&token)
        .ok_or_else(|| AppError::Forbidden("token: does not open this room".into()))?;
    Ok((record, party))
}

pub(super) fn side(party: Party) -> &'static str {
    match party {
        Party::Agent => "agent",
        _ => "customer",
    }
}

/// The room as one side sees it.
fn room_view(state: &AppState, record: &ServiceRecord, party: Party) -> Value {
    let leg = record.video.as_ref().expect("a room belongs to a leg");
    let room = leg.last_room().expect("looked up by its code");
    let config = state.shell.video_config(record);
    let mut v = json!({
        "code": room.code,
        "side": side(party),
        "status": room.status(),
        "provider": room.provider,
        "meet_url": room.url_for(party),
        "opened_at": room.opened_at,
        "expires_at": room.expires_at,
        "ringing": match leg.requested_by { Party::Agent => "customer", _ => "agent" },
        "ringing_at": room.ringing_at,
        "accepted_at": room.accepted_at,
        "declined_at": room.declined_at,
        "answered_by": room.answered_by.map(side),
        "started_at": room.started_at,
        "ended_at": room.ended_at,
        "end_reason": room.end_reason,
        "participants": room.participants.iter().map(|p| json!({
            "side": side(p.party), "name": p.name, "joined_at": p.joined_at, "left_at": p.left_at,
        })).collect::<Vec<_>>(),
        "agent_id": leg.agent,
        "service_state": record.state.gms_name(),
    });
    if let ProviderConfig::Relay { ice_servers } = &config.provider {
        v["ice_servers"] = json!(ice_servers);
    }
    if party == Party::Client {
        v["survey"] = json!({
            "question": config.survey.question,
            "scale": config.survey.scale,
            "open": leg.had_call() && leg.survey.is_none(),
            "answer": leg.survey,
        });
    } else {
        v["survey"] = json!({"answer": leg.survey});
    }
    v
}

/// GET /api/v1/rooms/{code}
#[tracing::instrument(level = "debug", skip_all, fields(room = %code))]
pub async fn show_room(
    State(state): State<Arc<AppState>>,
    Path(code): Path<String>,
    token: RoomToken,
) -> Result<Json<Value>, AppError> {
    let (record, party) = room_and_party(&state, &code, token).await?;
    Ok(Json(room_view(&state, &record, party)))
}

/// POST /api/v1/rooms/{code}/{action}: accept, decline, join, leave.
#[tracing::instrument(level = "debug", skip_all, fields(room = %code, action = %action))]
pub async fn room_action(
    State(state): State<Arc<AppState>>,
    Path((code, action)): Path<(String, String)>,
    token: RoomToken,
) -> Result<Json<Value>, AppError> {
    let event: fn(Party) -> Event = match action.as_str() {
        "accept" => |by| Event::RoomAnswered { by, accept: true },
        "decline" => |by| Event::RoomAnswered { by, accept: false },
        "join" => |party| Event::RoomJoined { party },
        "leave" => |party| Event::RoomLeft { party },
        other => {
            return Err(AppError::NotFound(format!(
                "room action `{other}` does not exist; use accept, decline, join, leave, signal or survey"
            )))
        }
    };
    let (record, party) = room_and_party(&state, &code, token).await?;
    let record = state.shell.transition_on(record, &event(party)).await?;
    Ok(Json(room_view(&state, &record, party)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalBody {
    /// `offer`, `answer`, `candidate` or `bye`.
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    sdp: Option<String>,
    #[serde(default)]
    candidate: Option<Value>,
}

/// POST /api/v1/rooms/{code}/signal: SDP or ICE for the other side, passed
/// on through the push channel (`service.video.signal.<id>` to the
/// device, `agent.video.signal.<id>` to the agent). Nothing is stored.
#[tracing::instrument(level = "debug", skip_all, fields(room = %code))]
pub async fn signal(
    State(state): State<Arc<AppState>>,
    Path(code): Path<String>,
    token: RoomToken,
    JsonBody(body): JsonBody<SignalBody>,
) -> Result<Json<Value>, AppError> {
    let signal = match body.kind.as_str() {
        "offer" | "answer" => {
            let sdp = body
                .sdp
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| AppError::missing("sdp"))?;
            json!({"type": body.kind, "sdp": sdp})
        }
        "candidate" => {
            let candidate = body
                .candidate
                .filter(|c| c.is_object())
                .ok_or_else(|| AppError::field("candidate", "must be an RTCIceCandidate object"))?;
            json!({"type": "candidate", "candidate": candidate})
        }
        "bye" => json!({"type": "bye"}),
        other => {
            return Err(AppError::field(
                "type",
                format!("`{other}` is not one of offer, answer, candidate, bye"),
            ))
        }
    };
    let (record, party) = room_and_party(&state, &code, token).await?;
    let event = Event::RoomSignal {
        from: party,
        signal,
    };
    state.shell.signal_on(&record, &event).await?;
    Ok(Json(json!({"code": code, "sent": true})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveyBody {
    score: u8,
    #[serde(default)]
    comment: Option<String>,
}

/// POST /api/v1/rooms/{code}/survey `{"score": 1..=scale, "comment"?}`:
/// the customer's answer after the call, stored on the service.
#[tracing::instrument(level = "debug", skip_all, fields(room = %code))]
pub async fn survey(
    State(state): State<Arc<AppState>>,
    Path(code): Path<String>,
    token: RoomToken,
    JsonBody(body): JsonBody<SurveyBody>,
) -> Result<Json<Value>, AppError> {
    let (record, party) = room_and_party(&state, &code, token).await?;
    if party != Party::Client {
        return Err(AppError::Forbidden(
            "token: only the customer answers the survey".into(),
        ));
    }
    let config = state.shell.video_config(&record);
    if body.score == 0 || body.score > config.survey.scale {
        return Err(AppError::field(
            "score",
            format!("must be 1 to {}", config.survey.scale),
        ));
    }
    let comment = body
        .comment
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    if comment.as_ref().is_some_and(|c| c.chars().count() > 2000) {
        return Err(AppError::field(
            "comment",
            "must be at most 2000 characters",
        ));
    }
    let event = Event::SurveyAnswered {
        question: config.survey.question.clone(),
        scale: config.survey.scale,
        score: body.score,
        comment,
    };
    let record = state.shell.transition_on(record, &event).await?;
    Ok(Json(room_view(&state, &record, party)))
}

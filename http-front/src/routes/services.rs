//! The agent desktop's view of a service: the full record, completing, chatting.

use std::sync::Arc;

use crate::extract::{Path, Query};
use axum::extract::State;
use axum::Json;
use engine::machine::Event;
use engine::record::{Party, ServiceRecord};
use serde::Deserialize;
use serde_json::Value;

use super::check_id;
use crate::auth::Caller;
use crate::error::AppError;
use crate::form::{JsonBody, OptionalJsonBody};
use crate::AppState;

/// The full record, as the agent API shows it.
pub(super) fn full(record: &ServiceRecord) -> Value {
    let mut v = serde_json::to_value(record).unwrap_or(Value::Null);
    v["_callback_state"] = Value::from(record.state.gms_name());
    v["_callback_reason"] = record.reason_name().map(Value::from).unwrap_or(Value::Null);
    v
}

/// GET /api/v1/services/{id}: the full record, with its history.
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    let record = state.shell.get(&id).await?;
    caller.for_service(&record)?;
    Ok(Json(full(&record)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteQuery {
    #[serde(default)]
    force: bool,
}

/// POST /api/v1/services/{id}/complete[?force=true]: refused while the
/// service's video room is live, unless forced (the room then ends).
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn complete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<CompleteQuery>,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    let read = caller.checked_service(&state, &id).await?;
    let event = if query.force {
        Event::ForceComplete
    } else {
        Event::Complete
    };
    Ok(Json(full(&act(&state, read, &id, &event).await?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatBody {
    text: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypingBody {
    typing: bool,
}

/// POST /api/v1/services/{id}/chat/typing `{"typing": true|false}`: the
/// agent started or stopped typing; the customer's device is told.
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn typing(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<TypingBody>,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    let read = caller.checked_service(&state, &id).await?;
    let event = Event::ChatTyping {
        by: Party::Agent,
        typing: body.typing,
    };
    match read {
        Some(record) => state.shell.signal_on(&record, &event).await?,
        None => state.shell.signal(&id, &event).await?,
    }
    Ok(Json(serde_json::json!({"typing": body.typing})))
}

/// POST /api/v1/services/{id}/chat: a message from the agent.
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn chat(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ChatBody>,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    let read = caller.checked_service(&state, &id).await?;
    if body.text.trim().is_empty() {
        return Err(AppError::field("text", "must not be empty"));
    }
    if body.text.chars().count() > super::chat::MAX_MESSAGE {
        return Err(AppError::field(
            "text",
            format!("is longer than {} characters", super::chat::MAX_MESSAGE),
        ));
    }
    let event = Event::ChatMessage {
        from: Party::Agent,
        text: body.text,
    };
    Ok(Json(full(&act(&state, read, &id, &event).await?)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    #[serde(default)]
    agent_id: Option<String>,
}

/// The agent answering a preview: the one the credential names, else (a
/// supervisor, or a server running open) the body's `agent_id`.
fn answering_agent(caller: &Caller, body: AnswerBody) -> Result<String, AppError> {
    let agent = match (&caller.0.agent, body.agent_id) {
        (Some(own), None) => own.clone(),
        (_, Some(named)) => named,
        (None, None) => {
            return Err(AppError::field(
                "agent_id",
                "is required: name the agent whose preview this answers",
            ))
        }
    };
    check_id("agent_id", &agent)?;
    caller.for_agent(&agent)?;
    Ok(agent)
}

/// POST /api/v1/services/{id}/accept: the agent accepts the preview it was
/// offered (`_agent_preview`); the customer is asked or told now.
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn accept(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<AnswerBody>,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    let agent = answering_agent(&caller, body)?;
    let read = caller.checked_service(&state, &id).await?;
    let event = Event::AgentAccepted { agent };
    Ok(Json(full(&act(&state, read, &id, &event).await?)))
}

/// POST /api/v1/services/{id}/reject: the agent turns the preview down; the
/// service waits in its queue again, with its age, for another agent.
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn reject(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<AnswerBody>,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    let agent = answering_agent(&caller, body)?;
    let read = caller.checked_service(&state, &id).await?;
    let event = Event::AgentRejected { agent };
    Ok(Json(full(&act(&state, read, &id, &event).await?)))
}

/// Applies `event` to the service: on the record the caller's check read,
/// when it read one (no second read), else by id.
async fn act(
    state: &AppState,
    read: Option<ServiceRecord>,
    id: &str,
    event: &Event,
) -> Result<ServiceRecord, AppError> {
    Ok(match read {
        Some(record) => state.shell.transition_on(record, event).await?,
        None => state.shell.transition(id, event).await?,
    })
}

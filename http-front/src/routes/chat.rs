//! The customer's side of the chat (GMS Chat API v1 shapes).

use std::sync::Arc;

use crate::extract::{Path, Query};
use axum::extract::State;
use axum::Json;
use engine::machine::Event;
use engine::record::{Chat, Party, ServiceRecord};
use serde_json::{json, Value};

use super::check_id;
use crate::error::AppError;
use crate::form::GmsForm;
use crate::AppState;

/// Longest chat message we accept, in characters.
pub(super) const MAX_MESSAGE: usize = 4000;

/// POST /genesys/1/service/{id}/ixn/chat: starts the chat and routes it to the reserved agent.
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn start(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    form: GmsForm,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    let first = form.get("firstName").unwrap_or("").trim();
    let last = form.get("lastName").unwrap_or("").trim();
    let nickname = match form
        .get("nickname")
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        Some(n) => n.to_owned(),
        None if !first.is_empty() || !last.is_empty() => {
            format!("{first} {last}").trim().to_owned()
        }
        None => "Customer".to_owned(),
    };
    let subject = form.get("subject").unwrap_or("None").to_owned();
    let parameters = form.fields.iter().cloned().collect();
    let event = Event::ChatStarted {
        nickname,
        subject,
        parameters,
    };
    let record = state.shell.transition(&id, &event).await?;
    Ok(Json(
        json!({"_id": record.id, "comet_channel": "/_genesys"}),
    ))
}

/// POST /genesys/1/service/{id}/ixn/chat/startTyping: the agent is told.
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn start_typing(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    typing(&state, &id, true).await
}

/// POST /genesys/1/service/{id}/ixn/chat/stopTyping
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn stop_typing(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    typing(&state, &id, false).await
}

async fn typing(state: &AppState, id: &str, typing: bool) -> Result<Json<Value>, AppError> {
    check_id("id", id)?;
    let event = Event::ChatTyping {
        by: Party::Client,
        typing,
    };
    state.shell.signal(id, &event).await?;
    Ok(Json(json!({"_id": id, "typing": typing})))
}

/// POST /genesys/1/service/{id}/ixn/chat/send (field `message`)
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn send(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    form: GmsForm,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    let text = form.require("message")?;
    if text.chars().count() > MAX_MESSAGE {
        return Err(AppError::field(
            "message",
            format!("is longer than {MAX_MESSAGE} characters"),
        ));
    }
    let event = Event::ChatMessage {
        from: Party::Client,
        text: text.to_owned(),
    };
    let record = state.shell.transition(&id, &event).await?;
    Ok(Json(chat_state(&record, None)))
}

/// POST|GET /genesys/1/service/{id}/ixn/chat/refresh (field `transcriptPosition`, default 1):
/// the transcript from that position on.
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn refresh(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    form: GmsForm,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    let raw = form
        .get("transcriptPosition")
        .map(str::to_owned)
        .or_else(|| {
            query
                .iter()
                .find(|(k, _)| k == "transcriptPosition")
                .map(|(_, v)| v.clone())
        });
    let from = match raw.as_deref().map(str::trim) {
        None | Some("") => 1,
        Some(text) => text.parse::<u32>().map_err(|_| {
            AppError::field(
                "transcriptPosition",
                format!("`{text}` is not a whole number >= 0"),
            )
        })?,
    };
    let record = state.shell.get(&id).await?;
    if record.chat.is_none() {
        return Err(AppError::Conflict(format!(
            "service is {}: no chat has been started; start it with ixn/chat",
            record.state.gms_name()
        )));
    }
    Ok(Json(chat_state(&record, Some(from.max(1)))))
}

/// POST /genesys/1/service/{id}/ixn/chat/disconnect
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn disconnect(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    _form: GmsForm,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    let record = state
        .shell
        .transition(&id, &Event::ChatLeft { by: Party::Client })
        .await?;
    Ok(Json(chat_state(&record, None)))
}

fn ixn_state(chat: &Chat) -> &'static str {
    if !chat.is_open() {
        "DISCONNECTED"
    } else if chat.agent_joined {
        "CONNECTED"
    } else {
        "WAITING"
    }
}

/// GMS v1 chat state; `transcriptToShow` rows are [kind, nickname, text, seconds since start, party].
fn chat_state(record: &ServiceRecord, from: Option<u32>) -> Value {
    let Some(chat) = record.chat.as_ref() else {
        return json!({"_id": record.id, "chatIxnState": "DISCONNECTED", "transcriptPosition": 1});
    };
    let mut answer = json!({
        "_id": record.id,
        "chatIxnState": ixn_state(chat),
        "chatSessionId": record.id,
        // The next position to ask for.
        "transcriptPosition": chat.transcript.len() + 1,
    });
    if let Some(from) = from {
        let rows: Vec<Value> = chat
            .transcript
            .iter()
            .filter(|e| e.index >= from)
            .map(|e| {
                json!([
                    e.kind,
                    e.nickname,
                    e.text,
                    (e.at - chat.started_at).num_seconds().max(0).to_string(),
                    e.party,
                ])
            })
            .collect();
        answer["transcriptToShow"] = Value::Array(rows);
    }
    answer
}

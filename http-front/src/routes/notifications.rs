//! Notifications between the agent desktop and the customer's device, through the outboxes.

use std::sync::Arc;

use crate::extract::Path;
use axum::extract::State;
use axum::Json;
use engine::machine::Event;
use serde_json::{json, Value};

use super::check_id;
use crate::error::AppError;
use crate::form::GmsForm;
use crate::AppState;

/// Reads `_display_message` / `_application_message` and applies the event they make.
async fn notify(
    state: &AppState,
    id: &str,
    form: &GmsForm,
    event: fn(String, String) -> Event,
) -> Result<Json<Value>, AppError> {
    check_id("id", id)?;
    let display = form.get("_display_message").unwrap_or("").to_owned();
    let application = form.get("_application_message").unwrap_or("").to_owned();
    if display.trim().is_empty() && application.trim().is_empty() {
        return Err(AppError::missing("_display_message"));
    }
    state
        .shell
        .transition(id, &event(display, application))
        .await?;
    Ok(Json(json!({"message": "Notification Sent"})))
}

/// POST /genesys/1/service/{id}/internal-notification: agent desktop → device.
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn internal(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    form: GmsForm,
) -> Result<Json<Value>, AppError> {
    notify(&state, &id, &form, |display, application| {
        Event::InternalNotification {
            display,
            application,
        }
    })
    .await
}

/// POST /genesys/1/service/{id}/agent-notification: device → agent desktop.
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn to_agent(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    form: GmsForm,
) -> Result<Json<Value>, AppError> {
    notify(&state, &id, &form, |display, application| {
        Event::AgentNotification {
            display,
            application,
        }
    })
    .await
}

/// POST /genesys/1/service/{id}/retrieve-notifications: the device's outbox, emptied.
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn retrieve(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    // One atomic step: what is answered is exactly what left the outbox.
    let (before, _) = state
        .shell
        .transition_from(&id, &Event::NotificationsRetrieved)
        .await?;
    Ok(Json(Value::Array(
        before.outbox.into_iter().map(|n| n.payload).collect(),
    )))
}

/// POST /genesys/1/service/{id}/retrieve-agent-notifications: the agent outbox, emptied.
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn retrieve_agent(
    State(state): State<Arc<AppState>>,
    caller: crate::auth::Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    let record = state.shell.get(&id).await?;
    caller.for_service(&record)?;
    if record.agent_outbox.is_empty() {
        return Ok(Json(Value::Array(Vec::new())));
    }
    let (before, _) = state
        .shell
        .transition_from(&id, &Event::AgentNotificationsRetrieved)
        .await?;
    Ok(Json(Value::Array(
        before
            .agent_outbox
            .into_iter()
            .map(|n| json!({"message": n.message, "tag": n.tag}))
            .collect(),
    )))
}

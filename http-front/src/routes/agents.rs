//! The agent API: profiles, readiness, and what an agent is handling.

use std::sync::Arc;

use crate::extract::Path;
use axum::extract::State;
use axum::Json;
use engine::store::AgentRecord;
use serde_json::{json, Value};

use super::check_id;
use crate::error::AppError;
use crate::form::JsonBody;
use crate::requests::agent::AgentBody;
use crate::AppState;

/// PUT /api/v1/agents/{agent_id}
#[tracing::instrument(level = "debug", skip_all, fields(agent_id = %agent_id))]
pub async fn upsert(
    State(state): State<Arc<AppState>>,
    Path(agent_id): Path<String>,
    JsonBody(body): JsonBody<AgentBody>,
) -> Result<Json<Value>, AppError> {
    check_id("agent_id", &agent_id)?;
    let profile = body.into_profile(agent_id)?;
    let agent = state.shell.save_agent(profile).await?;
    Ok(Json(view(&state, &agent).await?))
}

/// GET /api/v1/agents/{agent_id}
#[tracing::instrument(level = "debug", skip_all, fields(agent_id = %agent_id))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    caller: crate::auth::Caller,
    Path(agent_id): Path<String>,
) -> Result<Json<Value>, AppError> {
    check_id("agent_id", &agent_id)?;
    caller.for_agent(&agent_id)?;
    let agent = find(&state, &agent_id).await?;
    Ok(Json(view(&state, &agent).await?))
}

/// POST /api/v1/agents/{agent_id}/ready
#[tracing::instrument(level = "debug", skip_all, fields(agent_id = %agent_id))]
pub async fn ready(
    State(state): State<Arc<AppState>>,
    caller: crate::auth::Caller,
    Path(agent_id): Path<String>,
) -> Result<Json<Value>, AppError> {
    caller.for_agent(&agent_id)?;
    set_ready(state, agent_id, true).await
}

/// POST /api/v1/agents/{agent_id}/not-ready
#[tracing::instrument(level = "debug", skip_all, fields(agent_id = %agent_id))]
pub async fn not_ready(
    State(state): State<Arc<AppState>>,
    caller: crate::auth::Caller,
    Path(agent_id): Path<String>,
) -> Result<Json<Value>, AppError> {
    caller.for_agent(&agent_id)?;
    set_ready(state, agent_id, false).await
}

async fn set_ready(
    state: Arc<AppState>,
    agent_id: String,
    ready: bool,
) -> Result<Json<Value>, AppError> {
    check_id("agent_id", &agent_id)?;
    let agent = state
        .shell
        .set_agent_ready(&agent_id, ready)
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "agent `{agent_id}` does not exist; create it with PUT first"
            ))
        })?;
    Ok(Json(view(&state, &agent).await?))
}

async fn find(state: &AppState, agent_id: &str) -> Result<AgentRecord, AppError> {
    state
        .shell
        .agent(agent_id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("agent `{agent_id}` does not exist")))
}

async fn view(state: &AppState, agent: &AgentRecord) -> Result<Value, AppError> {
    let mut services = Vec::new();
    for id in &agent.services {
        if let Some(rec) = state.shell.find_service(id).await? {
            services.push(json!({
                "_id": rec.id,
                "_service_name": rec.scenario,
                "_callback_state": rec.state.gms_name(),
                "_customer_number": rec.customer_number,
                "chat_started": rec.chat.is_some(),
                "user_data": rec.user_data,
            }));
        }
    }
    Ok(json!({
        "id": agent.profile.id,
        "name": agent.profile.name,
        "queues": agent.profile.queues,
        "skills": agent.profile.skills,
        "max_concurrent": agent.profile.max_concurrent,
        "email": agent.profile.email,
        "state": if agent.ready { "ready" } else { "not_ready" },
        "services": services,
        // The service whose live video room the agent is in (one at a time).
        "room": agent.room,
    }))
}

//! Agent keys, minted and revoked by an admin.
//!
//! | request | what |
//! |---|---|
//! | `POST /api/v1/agents/{agent_id}/keys` (`{}` or `{"name"}`) | mints a key; the answer holds it, once |
//! | `GET /api/v1/agents/{agent_id}/keys` | the agent's keys by name (never the keys) |
//! | `DELETE /api/v1/agents/{agent_id}/keys/{name}` | revokes it, on every node at once |

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::check_id;
use crate::error::AppError;
use crate::extract::Path;
use crate::form::JsonBody;
use crate::requests::fields::at_most;
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintBody {
    name: Option<String>,
}

/// POST /api/v1/agents/{agent_id}/keys
#[tracing::instrument(level = "debug", skip_all, fields(agent_id = %agent_id))]
pub async fn mint(
    State(state): State<Arc<AppState>>,
    Path(agent_id): Path<String>,
    JsonBody(body): JsonBody<MintBody>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    check_id("agent_id", &agent_id)?;
    if let Some(name) = &body.name {
        check_id("name", name)?;
        at_most("name", name, 64)?;
    }
    let (text, key) = access::mint(&agent_id, body.name.as_deref().unwrap_or("-"));
    // Without a name the key is known by its id, which is unique.
    let name = body.name.unwrap_or_else(|| format!("key-{}", key.id));
    let stored = engine::store::AgentKey {
        id: key.id,
        agent: key.agent,
        name: name.clone(),
        secret_sha256: key.secret_sha256,
        created_at: state.shell.now(),
    };
    state.shell.add_agent_key(&stored).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"agent_id": agent_id, "name": name, "key": text})),
    ))
}

/// GET /api/v1/agents/{agent_id}/keys
#[tracing::instrument(level = "debug", skip_all, fields(agent_id = %agent_id))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Path(agent_id): Path<String>,
) -> Result<Json<Value>, AppError> {
    check_id("agent_id", &agent_id)?;
    let keys = state.shell.agent_keys(&agent_id).await?;
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| json!({"name": k.name, "created_at": crate::wire::time(k.created_at)}))
        .collect();
    Ok(Json(json!({"agent_id": agent_id, "keys": keys})))
}

/// DELETE /api/v1/agents/{agent_id}/keys/{name}
#[tracing::instrument(level = "debug", skip_all, fields(agent_id = %agent_id))]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Path((agent_id, name)): Path<(String, String)>,
) -> Result<Json<Value>, AppError> {
    check_id("agent_id", &agent_id)?;
    if !state.shell.revoke_agent_key(&agent_id, &name).await? {
        return Err(AppError::NotFound(format!(
            "agent {agent_id} has no key named {name}"
        )));
    }
    Ok(Json(
        json!({"agent_id": agent_id, "name": name, "revoked": true}),
    ))
}

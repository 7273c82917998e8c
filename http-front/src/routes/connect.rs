use std::sync::Arc;

use crate::extract::Path;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use engine::machine::Event;
use serde_json::Value;

use super::check_id;
use crate::error::AppError;
use crate::form::GmsForm;
use crate::wire;
use crate::AppState;

/// POST /genesys/1/service/{id}/connect: the customer confirms; answers the StartChat dialog.
#[tracing::instrument(level = "debug", skip_all, fields(service_id = %id))]
pub async fn connect(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    _form: GmsForm,
) -> Result<Json<Value>, AppError> {
    check_id("id", &id)?;
    let record = state.shell.transition(&id, &Event::UserConfirmed).await?;
    let scenario = state.shell.scenario(&record.scenario)?;
    let base = wire::base_url(state.public_url.as_deref(), state.tls, &headers);
    Ok(Json(Value::Object(wire::start_chat_dialog(
        &record, scenario, &base,
    ))))
}

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, Uri};
use axum::Json;
use serde_json::{json, Value};

use crate::error::AppError;
use crate::AppState;

#[tracing::instrument(level = "debug", skip_all)]
pub async fn scenarios(State(state): State<Arc<AppState>>) -> Json<Value> {
    let list: Vec<Value> = state
        .shell
        .scenarios()
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(&**s).unwrap_or(Value::Null);
            v["url"] = json!(format!("/genesys/1/service/callback/{}", s.name));
            v
        })
        .collect();
    Json(Value::Array(list))
}

/// Up, and able to reach its store: a load balancer takes a node whose
/// Redis is unreachable out of rotation (503) until it recovers.
pub async fn healthz(State(state): State<Arc<AppState>>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match state.shell.store_reachable().await {
        Ok(()) => Json(json!({"status": "ok", "store": "ok"})).into_response(),
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "store": e.to_string()})),
        )
            .into_response(),
    }
}

/// No route: the JSON error an API client expects, or, for a browser
/// navigating (it asks for HTML), the page a person can read.
pub async fn not_found(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let wants_html = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html {
        return crate::pages::missing(&state, &headers);
    }
    AppError::NotFound(format!("no resource at `{}`", uri.path())).into_response()
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({
            "message": format!("method {method} is not allowed on `{}`", uri.path()),
            "exception": "METHOD_NOT_ALLOWED",
        })),
    )
        .into_response()
}

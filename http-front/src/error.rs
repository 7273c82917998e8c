//! One error type for every handler. Every 4xx and 5xx answers
//! `{"message": "...", "exception": "<stable code>"}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::machine::TransitionError;
use engine::store::StoreError;
use serde_json::json;

use runtime::ShellError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A missing or malformed field or body; the message names the field.
    #[error("{message}")]
    BadRequest {
        message: String,
        exception: &'static str,
    },
    #[error("{0}")]
    NotFound(String),
    /// The request does not prove it may do this (a wrong room token).
    #[error("{0}")]
    Forbidden(String),
    /// An event the service's state does not allow.
    #[error("{0}")]
    Conflict(String),
    /// The asked-for time is not a bookable slot with a seat left; the body
    /// lists the nearest slots that are (`_available_slots`).
    #[error("{message}")]
    SlotUnavailable {
        message: String,
        nearest: serde_json::Value,
    },
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The body stopped arriving before it was complete.
    #[error("request body: {0}")]
    BodyTimeout(String),
    /// The request as a whole took too long; the message says what.
    #[error("{0}")]
    TimedOut(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Unavailable(String),
    /// This node cannot take more (push clients); try later or elsewhere.
    #[error("{0}")]
    Busy(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn field(field: &str, problem: impl std::fmt::Display) -> AppError {
        AppError::BadRequest {
            message: format!("{field}: {problem}"),
            exception: "INVALID_PARAMETER",
        }
    }

    pub fn missing(field: &str) -> AppError {
        AppError::BadRequest {
            message: format!("{field}: is required"),
            exception: "MISSING_PARAMETER",
        }
    }

    pub fn body(problem: impl std::fmt::Display) -> AppError {
        AppError::BadRequest {
            message: format!("request body: {problem}"),
            exception: "INVALID_BODY",
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::BadRequest { exception, .. } => (StatusCode::BAD_REQUEST, exception),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            AppError::Conflict(_) => (StatusCode::CONFLICT, "INVALID_STATE"),
            AppError::SlotUnavailable { .. } => (StatusCode::CONFLICT, "SLOT_UNAVAILABLE"),
            AppError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_LARGE"),
            AppError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "BODY_TIMEOUT"),
            AppError::TimedOut(_) => (StatusCode::SERVICE_UNAVAILABLE, "REQUEST_TIMEOUT"),
            AppError::Unsupported(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")
            }
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "STORE_UNAVAILABLE"),
            AppError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "TOO_MANY_CLIENTS"),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        }
    }
}

impl From<ShellError> for AppError {
    fn from(e: ShellError) -> Self {
        match e {
            ShellError::UnknownService(_) | ShellError::UnknownScenario(_) => {
                AppError::NotFound(e.to_string())
            }
            ShellError::NotAllowed(TransitionError::NotAllowed { message, .. }) => {
                AppError::Conflict(message)
            }
            ShellError::NotAllowed(
                t @ (TransitionError::StaleTimer { .. } | TransitionError::Unchanged),
            ) => AppError::Conflict(t.to_string()),
            ShellError::Contended(_) => AppError::Conflict(e.to_string()),
            ShellError::Store(StoreError::Unavailable(m)) => {
                AppError::Unavailable(format!("store unavailable: {m}"))
            }
            ShellError::Store(
                s @ (StoreError::Conflict(_)
                | StoreError::AgentUnavailable { .. }
                | StoreError::AgentInRoom { .. }
                | StoreError::RoomTaken { .. }
                | StoreError::KeyExists { .. }),
            ) => AppError::Conflict(s.to_string()),
            ShellError::Store(s @ StoreError::Exists(_)) => AppError::Conflict(s.to_string()),
            ShellError::Store(s @ StoreError::SlotFull { .. }) => AppError::SlotUnavailable {
                message: format!("_desired_time: {s}"),
                nearest: serde_json::Value::Array(Vec::new()),
            },
            ShellError::Store(s @ StoreError::Missing(_)) => AppError::NotFound(s.to_string()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, exception) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "Request failed.");
        }
        let mut body = json!({"message": self.to_string(), "exception": exception});
        if let AppError::SlotUnavailable { nearest, .. } = &self {
            body["_available_slots"] = nearest.clone();
        }
        (status, Json(body)).into_response()
    }
}

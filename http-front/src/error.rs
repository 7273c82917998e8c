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
    /// No credential, or one that does not check; the message says which
    /// header and why, never what was sent.
    #[error("{0}")]
    Unauthorized(String),
    /// The request does not prove it may do this (a wrong room token, a
    /// role or agent that may not act on this).
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
    /// An immediate callback while the scenario's business hours are
    /// closed (`_enable_reject_out_of_office_hours`); the body says when
    /// they next open (`_next_opening`) and carries `code` 7042, the code
    /// Genesys Widgets' Callback shows as "Office closed".
    #[error("{message}")]
    OutOfOfficeHours {
        message: String,
        next_opening: Option<chrono::DateTime<chrono::Utc>>,
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
    /// Over a limit (a throttle, the rate limit, a scenario's cap): 429
    /// with `Retry-After` in whole seconds.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    /// The customer number already has the callbacks in the queue that
    /// `_enable_in_queue_checking` allows.
    #[error("{0}")]
    Duplicate(String),
    /// Another request with this `Idempotency-Key` is being answered.
    #[error("{0}")]
    IdempotencyInProgress(String),
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

    /// The stable code of the JSON body's `exception`.
    pub(crate) fn exception(&self) -> &'static str {
        self.status_and_code().1
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::BadRequest { exception, .. } => (StatusCode::BAD_REQUEST, exception),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            AppError::Conflict(_) => (StatusCode::CONFLICT, "INVALID_STATE"),
            AppError::SlotUnavailable { .. } => (StatusCode::CONFLICT, "SLOT_UNAVAILABLE"),
            AppError::OutOfOfficeHours { .. } => (StatusCode::BAD_REQUEST, "OUT_OF_OFFICE_HOURS"),
            AppError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_LARGE"),
            AppError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "BODY_TIMEOUT"),
            AppError::TimedOut(_) => (StatusCode::SERVICE_UNAVAILABLE, "REQUEST_TIMEOUT"),
            AppError::Unsupported(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")
            }
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "STORE_UNAVAILABLE"),
            AppError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "TOO_MANY_CLIENTS"),
            AppError::TooManyRequests { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS")
            }
            AppError::Duplicate(_) => (StatusCode::CONFLICT, "ALREADY_IN_QUEUE"),
            AppError::IdempotencyInProgress(_) => (StatusCode::CONFLICT, "IDEMPOTENCY_KEY_IN_USE"),
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
            ShellError::Throttled { what, retry_after } => AppError::TooManyRequests {
                message: what,
                retry_after: retry_secs(retry_after),
            },
            ShellError::Store(StoreError::CustomerActive { limit }) => AppError::Duplicate(format!(
                "_customer_number: already has {limit} callback{} in the queue",
                if limit == 1 { "" } else { "s" }
            )),
            ShellError::Store(StoreError::ScenarioFull { scenario, limit }) => {
                AppError::TooManyRequests {
                    message: format!(
                        "max_queued_callbacks_per_service: scenario {scenario} already holds {limit} callbacks"
                    ),
                    retry_after: SCENARIO_FULL_RETRY.as_secs(),
                }
            }
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

/// The error code Genesys Widgets' Callback reads from a refused create's
/// `code` and shows as "Office closed. Please try scheduling within the
/// office hours." (its `Errors` table, key 7042).
const OFFICE_CLOSED_CODE: u32 = 7042;

/// When to try again after a scenario was full: it empties as agents take
/// calls, at no time anyone knows.
const SCENARIO_FULL_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// `Retry-After` is whole seconds; a wait of less than one is one.
pub fn retry_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
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
        if let AppError::OutOfOfficeHours { next_opening, .. } = &self {
            body["code"] = json!(OFFICE_CLOSED_CODE);
            body["_next_opening"] = json!(next_opening.map(engine::schedule::utc_time));
        }
        let mut res = (status, Json(body)).into_response();
        if let AppError::Unauthorized(_) = self {
            // The schemes a client may answer with (RFC 9110, 11.6.1).
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(r#"Basic realm="callbackd", Bearer"#),
            );
        } else if let AppError::TooManyRequests { retry_after, .. } = &self {
            res.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(*retry_after),
            );
        }
        res
    }
}

//! Room access: the room token from the links and notifications, as
//! `?token=…` or `Authorization: Bearer …`.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::Deserialize;

use crate::error::AppError;
use crate::extract::Query;

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The token a room request brings, if any. A missing token is refused by
/// the handler, after the room code is checked (the order errors had).
#[derive(Debug)]
pub struct RoomToken(pub Option<String>);

impl RoomToken {
    /// The token, or 400 naming `token`.
    pub fn require(self) -> Result<String, AppError> {
        self.0.ok_or_else(|| AppError::missing("token"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RoomToken {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let Query(query) = Query::<TokenQuery>::from_request_parts(parts, state).await?;
        let token = query
            .token
            .or_else(|| {
                parts
                    .headers
                    .get(AUTHORIZATION)
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| h.strip_prefix("Bearer "))
                    .map(|t| t.trim().to_owned())
            })
            .filter(|t| !t.is_empty());
        Ok(RoomToken(token))
    }
}

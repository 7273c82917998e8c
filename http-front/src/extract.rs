//! axum's `Path` and `Query`, with rejections answered as our JSON errors.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum_macros::FromRequestParts;

use crate::error::AppError;

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct Path<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct Query<T>(pub T);

impl From<PathRejection> for AppError {
    fn from(r: PathRejection) -> Self {
        AppError::BadRequest {
            message: format!("path: {}", r.body_text()),
            exception: "INVALID_PARAMETER",
        }
    }
}

impl From<QueryRejection> for AppError {
    fn from(r: QueryRejection) -> Self {
        AppError::BadRequest {
            message: format!("query string: {}", r.body_text()),
            exception: "INVALID_PARAMETER",
        }
    }
}

//! Every refusal of the server, with its HTTP status and its machine code (OpenEnv's
//! spelling where OpenEnv has one: `CAPACITY_REACHED`).
//!
//! Owns: the mapping from what went wrong to what the client reads. Does not own:
//! deciding it (the engine and the handlers do).

use crate::api::ErrorBody;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why a request was not served.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    PathNotAllowed(String),
    #[error("{0}")]
    UnknownRepo(String),
    #[error("{0}")]
    UnknownTask(String),
    #[error("{0}")]
    UnknownEpisode(String),
    #[error("{0}")]
    Duplicate(String),
    #[error("all {0} slots are busy; retry later")]
    CapacityReached(usize),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("the episode was cancelled")]
    Cancelled,
    #[error("{0}")]
    Infra(String),
}

impl ApiError {
    /// The machine-readable code of the error body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BAD_REQUEST",
            ApiError::PathNotAllowed(_) => "PATH_NOT_ALLOWED",
            ApiError::UnknownRepo(_) => "UNKNOWN_REPO",
            ApiError::UnknownTask(_) => "UNKNOWN_TASK",
            ApiError::UnknownEpisode(_) => "UNKNOWN_EPISODE",
            ApiError::Duplicate(_) => "DUPLICATE_ID",
            ApiError::CapacityReached(_) => "CAPACITY_REACHED",
            ApiError::Unauthorized => "UNAUTHORIZED",
            ApiError::Cancelled => "CANCELLED",
            ApiError::Infra(_) => "INFRA_ERROR",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::PathNotAllowed(_) => StatusCode::BAD_REQUEST,
            ApiError::UnknownRepo(_) | ApiError::UnknownTask(_) | ApiError::UnknownEpisode(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::Duplicate(_) => StatusCode::CONFLICT,
            ApiError::CapacityReached(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Cancelled => StatusCode::OK,
            ApiError::Infra(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code().into(),
            message: self.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), axum::Json(self.body())).into_response()
    }
}

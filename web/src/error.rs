//! The one error type of the HTTP layer and its mapping to a status, done
//! once: `{"error":{"code","message"}}` with a stable machine-readable code.
//! 5xx causes are logged, never returned.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed JSON, a missing field, a wrong type, a bad value.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// Wrong username or password (never says which).
    #[error("invalid username or password")]
    InvalidCredentials,
    /// No credential, or a bad one.
    #[error("authentication required")]
    Unauthorized,
    /// Another tenant's resource, or an admin-only route. No data in the body.
    #[error("forbidden")]
    Forbidden,
    #[error("{0}")]
    NotFound(String),
    /// The resource is in the wrong state for this request.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Refused for now; retry after `retry_after_secs`.
    #[error("{message}")]
    TooManyRequests {
        code: &'static str,
        message: String,
        retry_after_secs: u64,
        details: serde_json::Value,
    },
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized() -> Self {
        ApiError::Unauthorized
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            code,
            message: message.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::TooManyRequests { code, .. } => (StatusCode::TOO_MANY_REQUESTS, code),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            ApiError::Internal(cause) => tracing::error!(cause, "request failed"),
            ApiError::Unavailable(cause) => tracing::warn!(cause, "request refused: unavailable"),
            _ => {}
        }
        let mut error = json!({"code": code, "message": self.to_string()});
        let mut retry_after = None;
        if let ApiError::TooManyRequests {
            retry_after_secs,
            details,
            ..
        } = &self
        {
            retry_after = Some(*retry_after_secs);
            if let (Some(obj), Some(extra)) = (error.as_object_mut(), details.as_object()) {
                obj.extend(extra.clone());
            }
        }
        let mut response =
            (status, Json(json!({ "success": false, "error": error }))).into_response();
        if let Some(secs) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert("retry-after", v);
            }
        }
        response
    }
}

/// Maps account-store errors: duplicates are 409, the rest internal.
pub fn from_account(e: centinela_actors::store::AccountError) -> ApiError {
    use centinela_actors::store::AccountError;
    match e {
        AccountError::Exists(what) => {
            ApiError::conflict("already_exists", format!("{what} already exists"))
        }
        AccountError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
        AccountError::Store(e) => ApiError::Internal(e.to_string()),
    }
}

/// Maps store errors (always internal).
pub fn from_store(e: centinela_actors::store::StoreError) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// The fallback for unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

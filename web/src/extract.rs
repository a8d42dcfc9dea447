//! `AppJson`, `AppPath` and `AppQuery`: axum's `Json`, `Path` and `Query`
//! whose rejections (malformed JSON, wrong types, missing fields, wrong
//! content type; a path parameter that is not UTF-8; a query parameter of
//! the wrong type or an unknown value) become our `400` error format
//! instead of axum's plain-text answers.

use crate::error::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::{DeserializeOwned, IgnoredAny};

pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // Buffered first (within the body limit), so a rejection can look
        // at what was sent.
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|r| match r.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
                _ => ApiError::bad_request("bad_request", r.body_text()),
            })?;
        let req = Request::from_parts(parts, Body::from(bytes.clone()));
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(AppJson(v)),
            Err(rejection) => Err(rejection_to_error(rejection, &bytes)),
        }
    }
}

fn rejection_to_error(rejection: JsonRejection, body: &[u8]) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge;
    }
    let code = match &rejection {
        JsonRejection::JsonDataError(_) => "invalid_field",
        // serde_json calls a wrong-typed enum field (`"role": 5`) a syntax
        // error ("expected ident"); well-formed JSON is a wrong field.
        JsonRejection::JsonSyntaxError(_) if serde_json::from_slice::<IgnoredAny>(body).is_ok() => {
            "invalid_field"
        }
        JsonRejection::JsonSyntaxError(_) => "malformed_json",
        JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
        _ => "bad_request",
    };
    ApiError::bad_request(code, rejection.body_text())
}

pub struct AppPath<T>(pub T);

impl<S, T> FromRequestParts<S> for AppPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(AppPath(v)),
            Err(rejection) => Err(path_rejection_to_error(rejection)),
        }
    }
}

/// A parameter that does not decode is the client's 400; a handler whose
/// parameters do not match its route is our 500.
fn path_rejection_to_error(rejection: PathRejection) -> ApiError {
    if rejection.status().is_server_error() {
        return ApiError::internal(rejection);
    }
    ApiError::bad_request("invalid_path", rejection.body_text())
}

pub struct AppQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(AppQuery(v)),
            Err(rejection) => Err(query_rejection_to_error(rejection)),
        }
    }
}

fn query_rejection_to_error(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", rejection.body_text())
}

//! `/webhooks/meta`: where Meta's WhatsApp Cloud API calls us. No login
//! (Meta cannot log in); the only public write route. The handshake
//! (`GET`, Meta's "Getting started" with webhooks) answers the challenge
//! only to a running cloud session's verify token; a delivery (`POST`) is
//! checked by the cloud engine against the number's app secret
//! (`X-Hub-Signature-256` over the raw body) and answered 200 at once —
//! also for a number we do not know (counted), since Meta retries any
//! other answer for days. 200 means kept: incoming messages are in the
//! store before it. A stopped session's number, or a delivery that cannot
//! be kept now, is 503 with `Retry-After`, so Meta's retry brings it when
//! it can be. A wrong or missing signature is 401 and changes nothing.
//! Its own body limit, below the API's.

use crate::error::ApiError;
use crate::extract::AppQuery;
use crate::openapi::{Access, Doc, Routes};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use centinela_actors::engine::cloud::HookOutcome;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// What a 503 asks Meta to wait (Meta keeps its own schedule, for days).
const RETRY_SECS: u64 = 60;

/// Meta's webhook payloads are a few KB; nothing bigger is read.
pub const META_BODY_LIMIT: usize = 256 * 1024;

pub fn routes() -> Routes {
    Routes::new().route(
        "/webhooks/meta",
        get(handshake)
            .post(deliver)
            .layer(DefaultBodyLimit::max(META_BODY_LIMIT)),
        vec![
            Doc::new(
                "GET",
                "webhooks",
                "Meta's subscription handshake: the hub.challenge, for a cloud session's verify token",
                Access::Public,
                &[(200, "the challenge"), (400, "bad query"), (403, "wrong token or mode")],
            )
            .query::<Handshake>()
            .content("text/plain"),
            Doc::new(
                "POST",
                "webhooks",
                "A delivery from Meta, signed with X-Hub-Signature-256 (statuses and incoming messages of cloud sessions)",
                Access::Public,
                &[(200, "received"), (400, "not Meta's JSON"), (401, "wrong or missing signature"), (413, "too large"), (503, "a stopped session's number, or not kept now: Meta retries")],
            )
            .reply::<Received>(),
        ],
    )
}

/// `?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`.
#[derive(Deserialize, IntoParams)]
pub struct Handshake {
    #[serde(rename = "hub.mode")]
    #[param(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    #[param(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    #[param(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// What a delivery did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Received {
    /// Events handed to sessions.
    pub events: usize,
    /// Events already handed over before (Meta's retries): dropped.
    pub duplicates: usize,
    /// The payload named no number of a running cloud session.
    pub unknown_number: bool,
}

async fn handshake(
    State(state): State<AppState>,
    AppQuery(q): AppQuery<Handshake>,
) -> Result<(StatusCode, String), ApiError> {
    let (Some(mode), Some(token), Some(challenge)) = (q.mode, q.verify_token, q.challenge) else {
        return Err(ApiError::bad_request(
            "invalid_handshake",
            "hub.mode, hub.verify_token and hub.challenge are required",
        ));
    };
    if challenge.len() > 256 {
        return Err(ApiError::bad_request(
            "invalid_handshake",
            "hub.challenge is too long",
        ));
    }
    let known = state
        .cloud
        .as_ref()
        .is_some_and(|c| c.verify_token_matches(&token));
    if mode != "subscribe" || !known {
        tracing::info!(mode = %mode.chars().take(32).collect::<String>(), "Meta webhook handshake refused");
        return Err(ApiError::Forbidden);
    }
    Ok((StatusCode::OK, challenge))
}

async fn deliver(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::Json<Received>, ApiError> {
    let body = body.map_err(|_| ApiError::PayloadTooLarge)?;
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    let outcome = match &state.cloud {
        Some(cloud) => cloud.deliver(signature, &body),
        None => HookOutcome::UnknownNumber,
    };
    let received = match outcome {
        HookOutcome::Accepted { events, duplicates } => Received {
            events,
            duplicates,
            unknown_number: false,
        },
        HookOutcome::UnknownNumber => {
            tracing::info!(
                bytes = body.len(),
                "Meta webhook for a number no running cloud session has: acknowledged, counted"
            );
            Received {
                events: 0,
                duplicates: 0,
                unknown_number: true,
            }
        }
        HookOutcome::BadSignature => {
            tracing::warn!(
                bytes = body.len(),
                "Meta webhook with a wrong or missing signature: refused"
            );
            return Err(ApiError::BadSignature);
        }
        HookOutcome::Malformed => {
            return Err(ApiError::bad_request(
                "malformed_webhook",
                "not a WhatsApp Business Account webhook payload",
            ))
        }
        HookOutcome::Stopped => {
            return Err(ApiError::Later {
                code: "session_stopped",
                message: "this number's session is stopped: retry when it runs".into(),
                retry_after_secs: RETRY_SECS,
            })
        }
        HookOutcome::NotNow => {
            return Err(ApiError::Later {
                code: "not_kept",
                message: "the delivery could not be kept now: retry".into(),
                retry_after_secs: RETRY_SECS,
            })
        }
    };
    Ok(axum::Json(received))
}

//! `/api/v1/otp`: send a verification code through one of the caller's
//! READY sessions, verify it, send a new one, read where it is. The rules
//! (limits, expiry, tries, the new-contact budget) are the OTP service's
//! (`centinela_actors::otp`); this layer checks the caller, the input and
//! the session, and maps the answers to statuses. No answer carries the
//! code: only the phone that received it knows it.

use crate::auth::Caller;
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::extract::{AppJson, AppPath};
use crate::openapi::{Access, Doc, Routes};
use crate::sessions::visible;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use centinela_actors::clock::Timestamp;
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::otp::rules::Verdict;
use centinela_actors::otp::NewOtp;
use centinela_actors::session::SessionState;
use centinela_actors::store::{OtpPurpose, OtpRecord, OtpStatus};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

pub fn routes() -> Routes {
    const ONE: &[(u16, &str)] = &[
        (200, "ok"),
        (401, "no credentials"),
        (403, "another tenant's"),
        (404, "not found"),
    ];
    Routes::new()
        .route(
            "/api/v1/otp",
            post(create),
            vec![Doc::new(
                "POST",
                "otp",
                "Send a 6-digit verification code through a READY session (only its HMAC is kept; valid otp.ttl)",
                Access::Authenticated,
                &[
                    (201, "sent (queued durably)"),
                    (400, "bad input, invalid_phone"),
                    (401, "no credentials"),
                    (403, "another tenant's session"),
                    (404, "session not found"),
                    (409, "not_ready"),
                    (429, "phone_limit, address_limit or new_contact_budget, with Retry-After"),
                ],
            )
            .body::<CreateOtp>(json!({"phone": "+5491122334455", "session_id": "s_1a2b", "purpose": "registration"}))
            .reply::<OtpBody>()],
        )
        .route(
            "/api/v1/otp/{id}",
            get(get_otp),
            vec![Doc::new("GET", "otp", "Where a verification code is (never the code)", Access::Authenticated, ONE)
                .reply::<OtpBody>()],
        )
        .route(
            "/api/v1/otp/{id}/verify",
            post(verify),
            vec![Doc::new(
                "POST",
                "otp",
                "Check a code (one try; single use; compared in constant time)",
                Access::Authenticated,
                &[
                    (200, "verified"),
                    (400, "invalid_code (with attempts_left) or too_many_attempts (voided)"),
                    (401, "no credentials"),
                    (403, "another tenant's"),
                    (404, "not found"),
                    (409, "already_used"),
                    (410, "expired, superseded or undelivered"),
                ],
            )
            .body::<VerifyOtp>(json!({"code": "123456"}))
            .reply::<Verified>()],
        )
        .route(
            "/api/v1/otp/{id}/resend",
            post(resend),
            vec![Doc::new(
                "POST",
                "otp",
                "Send a new code (the old one stops working) once otp.resend_after has passed",
                Access::Authenticated,
                &[
                    (200, "a new code was sent"),
                    (401, "no credentials"),
                    (403, "another tenant's"),
                    (404, "not found"),
                    (409, "already_used, too_many_attempts, superseded, undelivered or not_ready"),
                    (429, "resend_cooldown or a limit, with Retry-After"),
                ],
            )
            .reply::<OtpBody>()],
        )
}

/// A code to send: `phone` in international format (`+` and country
/// code), through the caller's `session_id`, for a `purpose`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOtp {
    phone: String,
    session_id: String,
    purpose: OtpPurpose,
}

/// A code as the user typed it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyOtp {
    code: String,
}

/// A verification code's state; the code itself is never shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct OtpBody {
    pub id: String,
    pub tenant_id: TenantId,
    pub session_id: SessionId,
    /// E.164.
    pub phone: String,
    pub purpose: OtpPurpose,
    pub status: OtpStatus,
    /// The current code is refused from this time on.
    pub expires_at: Timestamp,
    /// A new code may be asked for from this time on.
    pub resend_at: Timestamp,
    pub attempts_left: u32,
    /// The outgoing message carrying the current code (its text reads
    /// redacted in the messages API).
    pub message_id: Option<String>,
    pub created_at: Timestamp,
}

impl From<&OtpRecord> for OtpBody {
    fn from(r: &OtpRecord) -> Self {
        OtpBody {
            id: r.id.clone(),
            tenant_id: r.tenant.clone(),
            session_id: r.session.clone(),
            phone: r.phone.clone(),
            purpose: r.purpose,
            status: r.status,
            expires_at: r.expires_at,
            resend_at: r.resend_at,
            attempts_left: r.attempts_left,
            message_id: r.message_id.clone(),
            created_at: r.created_at,
        }
    }
}

/// The right code.
#[derive(Debug, Serialize, ToSchema)]
pub struct Verified {
    /// Always true (every other outcome is an error).
    pub verified: bool,
    pub id: String,
    pub phone: String,
    pub purpose: OtpPurpose,
}

/// 409 unless the session is READY: a code that waits in the queue for a
/// session to come back would expire there.
fn ready(state: &SessionState) -> Result<(), ApiError> {
    match state {
        SessionState::Ready { .. } => Ok(()),
        _ => Err(ApiError::conflict(
            "not_ready",
            "the session is not READY: a code could not go out in time",
        )),
    }
}

/// Sends a code: answered 201 once the OTP and its message are on disk.
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    client: ClientAddr,
    AppJson(body): AppJson<CreateOtp>,
) -> Result<(StatusCode, Json<OtpBody>), ApiError> {
    let d = visible(&state, &caller, &body.session_id).await?;
    ready(&d.view.state)?;
    let r = state
        .otp
        .create(NewOtp {
            tenant: d.view.tenant,
            session: d.view.id,
            phone: body.phone,
            purpose: body.purpose,
            client: client.0,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(OtpBody::from(&r))))
}

/// The OTP, if the caller may see it (403 before any data).
fn visible_otp(state: &AppState, caller: &Caller, id: &str) -> Result<OtpRecord, ApiError> {
    let r = state
        .otp
        .get(id)?
        .ok_or_else(|| ApiError::NotFound(format!("OTP {id} not found")))?;
    caller.check_tenant(&r.tenant)?;
    Ok(r)
}

async fn get_otp(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<OtpBody>, ApiError> {
    Ok(Json(OtpBody::from(&visible_otp(&state, &caller, &id)?)))
}

/// Longest input checked as a code; anything longer is bad input, not a try.
const MAX_CODE_LEN: usize = 32;

async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<VerifyOtp>,
) -> Result<Json<Verified>, ApiError> {
    visible_otp(&state, &caller, &id)?;
    if body.code.len() > MAX_CODE_LEN {
        return Err(ApiError::bad_request(
            "invalid_request",
            "a code is 6 digits",
        ));
    }
    let (verdict, r) = state.otp.verify(&id, body.code.trim())?;
    match verdict {
        Verdict::Verified => Ok(Json(Verified {
            verified: true,
            id: r.id,
            phone: r.phone,
            purpose: r.purpose,
        })),
        Verdict::Wrong { attempts_left } => Err(ApiError::WrongCode { attempts_left }),
        Verdict::TooManyAttempts => Err(ApiError::bad_request(
            "too_many_attempts",
            "too many wrong codes: this one is voided, ask for a new one",
        )),
        Verdict::Expired => Err(gone("expired", "this code expired: ask for a new one")),
        Verdict::AlreadyUsed => Err(ApiError::conflict(
            "already_used",
            "this code was used already",
        )),
        Verdict::Superseded => Err(gone(
            "superseded",
            "a newer code was sent to this phone: use that one",
        )),
        Verdict::Undelivered => Err(gone(
            "undelivered",
            "this code could not be delivered: ask for a new one",
        )),
    }
}

fn gone(code: &'static str, message: &str) -> ApiError {
    ApiError::Gone {
        code,
        message: message.to_owned(),
    }
}

async fn resend(
    State(state): State<AppState>,
    caller: Caller,
    client: ClientAddr,
    AppPath(id): AppPath<String>,
) -> Result<Json<OtpBody>, ApiError> {
    let current = visible_otp(&state, &caller, &id)?;
    let d = state.supervisor.describe(current.session.clone()).await?;
    ready(&d.view.state)?;
    let r = state.otp.resend(&id, client.0).await?;
    Ok(Json(OtpBody::from(&r)))
}

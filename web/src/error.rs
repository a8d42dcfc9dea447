//! The one error type of the HTTP layer and its mapping to a status, done
//! once: `{"error":{"code","message"}}` with a stable machine-readable code.
//! The domain's errors (supervisor, store, accounts, tenants, campaigns,
//! outbox, webhook targets)
//! convert with `From`, so handlers end in a bare `?`; a 5xx keeps its
//! source error, which is logged with its whole chain, never returned.
//! It does not decide policy: a 429's fields come from the denial.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use centinela_actors::clock::Timestamp;
use centinela_actors::engine::EngineError;
use centinela_actors::messaging::campaigns::CampaignError;
use centinela_actors::messaging::template::RenderError;
use centinela_actors::messaging::webhooks::TargetError;
use centinela_actors::messaging::OutboxError;
use centinela_actors::otp::service::LimitReason;
use centinela_actors::otp::OtpError;
use centinela_actors::store::OtpStatus;
use centinela_actors::store::{AccountError, StoreError};
use centinela_actors::supervisor::admission::{Denial, DenyReason};
use centinela_actors::supervisor::SupervisorError;
use centinela_actors::tenants::TenantError;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

/// Every error answer: `{"success": false, "error": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always false.
    pub success: bool,
    pub error: ErrorDetail,
}

/// What went wrong: a stable code and a message for people; a 429 from the
/// anti-ban policy adds why, for how long and until when.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `invalid_json`, `not_found`, `daily_limit`, ...
    pub code: String,
    pub message: String,
    /// A 429's reason: the anti-ban policy's (`server_rate_limit`,
    /// `daily_limit`, `cooldown_after_failure`, `error_515_block`,
    /// `capacity`, `tenant_session_limit`, `pairing_code_limit`, `cloud_connect_limit`,
    /// `proxy_block`) or a verification code's (`phone_limit`,
    /// `address_limit`, `new_contact_budget`, `resend_cooldown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub reason: Option<&'static str>,
    /// A wrong verification code: the tries left before it is voided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_time_minutes: Option<u64>,
    /// When the refusal ends; null for a hold that lasts until someone acts.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Timestamp>)]
    pub block_until: Option<Option<Timestamp>>,
    /// The refused network path, for a proxy hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
}

/// An anti-ban refusal's fields in a 429.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The policy's name for it ([`DenyReason::as_str`], or an OTP limit's).
    pub reason: &'static str,
    pub wait_time_minutes: u64,
    pub block_until: Option<Timestamp>,
    pub proxy: Option<String>,
}

/// The cause behind a 5xx, kept for the log.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

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
    /// It existed, and is no more (an expired verification code).
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    /// A wrong verification code, with the tries left.
    #[error("wrong code")]
    WrongCode { attempts_left: u32 },
    /// Refused for now; retry after `retry_after_secs`.
    #[error("{message}")]
    TooManyRequests {
        code: &'static str,
        message: String,
        retry_after_secs: u64,
        /// The anti-ban refusal behind it, if it is one.
        refusal: Option<Refusal>,
    },
    #[error("request body too large")]
    PayloadTooLarge,
    /// A webhook from Meta whose `X-Hub-Signature-256` is wrong or missing.
    #[error("wrong or missing X-Hub-Signature-256")]
    BadSignature,
    /// A public demo's simulator control API without its token.
    #[error("this demo's simulator control API wants the X-Sim-Token header printed when the server started")]
    SimTokenMissing,
    /// A public demo's simulator control API with a wrong token.
    #[error("wrong X-Sim-Token: use the one printed when the server started")]
    SimTokenWrong,
    /// A simulator request whose `Host` is not this server (DNS rebinding).
    #[error("this server does not answer to that Host on /sim: use localhost or its IP address")]
    HostNotAllowed,
    /// The path exists, but not with this method.
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    /// Too much work in flight (password hashes); retry in a second.
    #[error("busy: try again in a moment")]
    Busy,
    /// Cannot be done now, by design; retry after `retry_after_secs` (a
    /// webhook from Meta for a stopped session: Meta retries it).
    #[error("{message}")]
    Later {
        code: &'static str,
        message: String,
        retry_after_secs: u64,
    },
    /// Fleet mode: another node hosts the tenant (or it is between
    /// nodes). 503 `tenant_moving`; the response carries
    /// [`crate::forward::Elsewhere`], so the forwarder can send the
    /// request on to the owner instead.
    #[error("{message}")]
    Elsewhere { tenant: String, message: String },
    /// A request that says another node of the fleet forwarded it, with
    /// a token this node does not accept.
    #[error("{0}")]
    BadFleetToken(String),
    #[error("service unavailable: {0}")]
    Unavailable(#[source] Cause),
    #[error("internal error")]
    Internal(#[source] Cause),
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

    /// A 500 caused by `e` (logged, not shown).
    pub fn internal(e: impl Into<Cause>) -> Self {
        ApiError::Internal(e.into())
    }

    /// A 503 caused by `e` (its message is shown).
    pub fn unavailable(e: impl Into<Cause>) -> Self {
        ApiError::Unavailable(e.into())
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
            ApiError::Gone { code, .. } => (StatusCode::GONE, code),
            ApiError::WrongCode { .. } => (StatusCode::BAD_REQUEST, "invalid_code"),
            ApiError::TooManyRequests { code, .. } => (StatusCode::TOO_MANY_REQUESTS, code),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::BadSignature => (StatusCode::UNAUTHORIZED, "invalid_signature"),
            ApiError::SimTokenMissing => (StatusCode::UNAUTHORIZED, "sim_token_required"),
            ApiError::SimTokenWrong => (StatusCode::UNAUTHORIZED, "sim_token_invalid"),
            ApiError::HostNotAllowed => (StatusCode::FORBIDDEN, "host_not_allowed"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            ApiError::Later { code, .. } => (StatusCode::SERVICE_UNAVAILABLE, code),
            ApiError::Elsewhere { .. } => (StatusCode::SERVICE_UNAVAILABLE, "tenant_moving"),
            ApiError::BadFleetToken(_) => (StatusCode::UNAUTHORIZED, "invalid_fleet_token"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            ApiError::Internal(cause) => {
                tracing::error!(cause = %chain(cause.as_ref()), "request failed")
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(cause = %chain(cause.as_ref()), "request refused: unavailable")
            }
            _ => {}
        }
        let mut error = ErrorDetail {
            code: code.to_owned(),
            message: self.to_string(),
            reason: None,
            attempts_left: None,
            wait_time_minutes: None,
            block_until: None,
            proxy: None,
        };
        if let ApiError::WrongCode { attempts_left } = self {
            error.attempts_left = Some(attempts_left);
        }
        let elsewhere = match &self {
            ApiError::Elsewhere { tenant, .. } => {
                centinela_actors::ids::TenantId::new(tenant.as_str()).ok()
            }
            _ => None,
        };
        let mut retry_after = match &self {
            ApiError::Busy | ApiError::Elsewhere { .. } => Some(1),
            ApiError::Later {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        if let ApiError::TooManyRequests {
            retry_after_secs,
            refusal,
            ..
        } = self
        {
            retry_after = Some(retry_after_secs);
            if let Some(r) = refusal {
                error.reason = Some(r.reason);
                error.wait_time_minutes = Some(r.wait_time_minutes);
                error.block_until = Some(r.block_until);
                error.proxy = r.proxy;
            }
        }
        let body = ErrorBody {
            success: false,
            error,
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert("retry-after", v);
            }
        }
        if let Some(tenant) = elsewhere {
            response
                .extensions_mut()
                .insert(crate::forward::Elsewhere(tenant));
        }
        response
    }
}

/// An error and its sources, `outer: inner: innermost`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// Duplicates are 409, missing records 404, the rest internal.
impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Exists(what) => {
                ApiError::conflict("already_exists", format!("{what} already exists"))
            }
            AccountError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            AccountError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotHeld(ref tenant) => ApiError::Elsewhere {
                tenant: tenant.clone(),
                message: e.to_string(),
            },
            StoreError::Unavailable(_) => ApiError::Later {
                code: "fleet_unavailable",
                message: e.to_string(),
                retry_after_secs: 5,
            },
            e => ApiError::internal(e),
        }
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<OutboxError> for ApiError {
    fn from(e: OutboxError) -> Self {
        match e {
            OutboxError::SessionGone(id) => ApiError::NotFound(format!("session {id} not found")),
            OutboxError::Store(e @ (StoreError::NotHeld(_) | StoreError::Unavailable(_))) => {
                e.into()
            }
            OutboxError::Closed | OutboxError::Store(_) => ApiError::unavailable(e),
        }
    }
}

impl From<TargetError> for ApiError {
    fn from(e: TargetError) -> Self {
        let code = match e {
            TargetError::InvalidUrl => "invalid_url",
            TargetError::Forbidden => "forbidden_target",
        };
        ApiError::bad_request(code, e.to_string())
    }
}

impl From<CampaignError> for ApiError {
    fn from(e: CampaignError) -> Self {
        match e {
            CampaignError::NotFound(id) => ApiError::NotFound(format!("campaign {id} not found")),
            CampaignError::State(why) => ApiError::conflict("campaign_state", why),
            CampaignError::Limit(n) => ApiError::conflict(
                "campaign_limit",
                format!("at most {n} campaigns may run at once"),
            ),
            CampaignError::Render { index, error } => {
                let code = match error {
                    RenderError::TooLong => "rendered_too_long",
                    RenderError::TooManyVars(_)
                    | RenderError::BadName
                    | RenderError::ValueTooLong => "invalid_recipients",
                };
                ApiError::bad_request(code, format!("recipient {index}: {error}"))
            }
            CampaignError::Store(e) => e.into(),
            CampaignError::Outbox(e) => e.into(),
        }
    }
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> Self {
        match e {
            TenantError::Supervisor(e) => e.into(),
            TenantError::Store(e) => e.into(),
        }
    }
}

/// One place maps supervisor errors to statuses.
impl From<SupervisorError> for ApiError {
    fn from(e: SupervisorError) -> Self {
        match e {
            SupervisorError::NotFound(id) => ApiError::NotFound(format!("session {id} not found")),
            SupervisorError::NotShowingQr => {
                ApiError::conflict("not_showing_qr", "the session is not showing a QR")
            }
            SupervisorError::Engine(EngineError::NotReady) => {
                ApiError::conflict("not_ready", "the session is not READY")
            }
            e @ (SupervisorError::Engine(_) | SupervisorError::Unavailable) => {
                ApiError::unavailable(e)
            }
            SupervisorError::Store(e) => e.into(),
            SupervisorError::Live => ApiError::conflict(
                "session_live",
                "the session is live or queued: disconnect it first",
            ),
            SupervisorError::Denied(d) => d.into(),
            SupervisorError::NumberTaken(number) => ApiError::conflict(
                "phone_number_id_taken",
                format!("phone_number_id {number} belongs to another cloud session"),
            ),
            e @ SupervisorError::FleetUnavailable(_) => ApiError::Later {
                code: "fleet_unavailable",
                message: format!("{e}: nothing is admitted until it is back"),
                retry_after_secs: 5,
            },
            SupervisorError::NotOwner(ref tenant) => ApiError::Elsewhere {
                tenant: tenant.to_string(),
                message: e.to_string(),
            },
            e @ SupervisorError::Deciding => ApiError::Later {
                code: "connect_deciding",
                message: e.to_string(),
                retry_after_secs: 1,
            },
            e @ SupervisorError::Interrupted => {
                ApiError::conflict("connect_interrupted", e.to_string())
            }
        }
    }
}

impl From<Denial> for ApiError {
    fn from(d: Denial) -> Self {
        too_many(d.reason, d.wait, d.ends_at(), d.proxy.as_deref())
    }
}

/// A 429 with seed 003's fields and `Retry-After`. A hold (a refused
/// proxy) has no end time: `block_until` is null and `proxy` names the path.
pub fn too_many(
    reason: DenyReason,
    wait: Duration,
    block_until: Option<Timestamp>,
    proxy: Option<&str>,
) -> ApiError {
    let minutes = wait.as_secs().div_ceil(60);
    let retry = match reason {
        DenyReason::Capacity => 30,
        // Nothing changes by waiting; ask again in an hour at most.
        DenyReason::ProxyBlock => 3600,
        _ => wait.as_secs().max(1),
    };
    let message = match proxy {
        Some(p) => format!(
            "WhatsApp refused this tenant's network path {p} (PROXYBLOCK): connections through it are held until the session's proxy is changed or an admin unblocks the tenant"
        ),
        None => format!(
            "connection refused by the anti-ban policy: {}",
            reason.as_str()
        ),
    };
    ApiError::TooManyRequests {
        code: reason.as_str(),
        message,
        retry_after_secs: retry,
        refusal: Some(Refusal {
            reason: reason.as_str(),
            wait_time_minutes: minutes,
            block_until,
            proxy: proxy.map(str::to_owned),
        }),
    }
}

/// One place maps the OTP service's refusals to statuses: limits are 429
/// with the reason and `Retry-After`, a used code 409, a voided one 409
/// with what voided it.
impl From<OtpError> for ApiError {
    fn from(e: OtpError) -> Self {
        match e {
            OtpError::Phone(e) => ApiError::bad_request("invalid_phone", e.to_string()),
            OtpError::SessionNotFound(id) => ApiError::NotFound(format!("session {id} not found")),
            OtpError::NotFound(id) => ApiError::NotFound(format!("OTP {id} not found")),
            OtpError::Limited {
                reason,
                retry_at,
                wait,
            } => {
                let message = match reason {
                    LimitReason::PhoneLimit => "too many codes to this phone number in 24 hours",
                    LimitReason::AddressLimit => "too many codes asked from this address in an hour",
                    LimitReason::NewContactBudget => "the session's new-contact budget is spent: a code to this number could not go out before it expired",
                };
                otp_too_many(reason.as_str(), message, retry_at, wait)
            }
            OtpError::TooSoon { at, wait } => otp_too_many(
                "resend_cooldown",
                "a new code may not be sent yet",
                at,
                wait,
            ),
            OtpError::AlreadyUsed => {
                ApiError::conflict("already_used", "this code was used already")
            }
            OtpError::Voided(status) => {
                let code = match status {
                    OtpStatus::Exhausted => "too_many_attempts",
                    OtpStatus::Superseded => "superseded",
                    OtpStatus::Undelivered => "undelivered",
                    OtpStatus::Pending | OtpStatus::Verified => "voided",
                };
                ApiError::conflict(code, "this code was voided: ask for a new one")
            }
            OtpError::Store(e) => e.into(),
            OtpError::Outbox(e) => e.into(),
        }
    }
}

/// A verification code's 429: `code` and `reason` alike, the wait in
/// minutes, when it ends and `Retry-After`.
fn otp_too_many(code: &'static str, message: &str, until: Timestamp, wait: Duration) -> ApiError {
    ApiError::TooManyRequests {
        code,
        message: message.to_owned(),
        retry_after_secs: wait.as_millis().div_ceil(1000).max(1) as u64,
        refusal: Some(Refusal {
            reason: code,
            wait_time_minutes: wait.as_secs().div_ceil(60),
            block_until: Some(until),
            proxy: None,
        }),
    }
}

/// The fallback for unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(e)
    }
}

/// The fallback for a known path asked with a method it does not have.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;
    use centinela_actors::ids::TenantId;
    use http_body_util::BodyExt;

    async fn answer(e: SupervisorError) -> (StatusCode, Option<String>, serde_json::Value) {
        let res = ApiError::from(e).into_response();
        let status = res.status();
        let retry = res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().expect("ascii").to_owned());
        let body = res.into_body().collect().await.expect("body").to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        (status, retry, json["error"].clone())
    }

    #[tokio::test]
    async fn the_fleets_refusals_are_503s_that_say_why_and_when_to_retry() {
        let down = SupervisorError::FleetUnavailable("connection refused".into());
        let (status, retry, error) = answer(down).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry.as_deref(), Some("5"));
        assert_eq!(error["code"], "fleet_unavailable");
        let message = error["message"].as_str().expect("message");
        assert!(message.contains("connection refused"), "{message}");

        let moving = SupervisorError::NotOwner(TenantId::new("clinic").expect("id"));
        let (status, retry, error) = answer(moving).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(error["code"], "tenant_moving");

        let (status, _, error) = answer(SupervisorError::Interrupted).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(error["code"], "connect_interrupted");
    }
}

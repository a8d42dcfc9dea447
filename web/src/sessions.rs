//! `/api/v1/sessions`: create, list, get, delete, connect, disconnect,
//! logout, QR, and a direct text send. A thin layer: every handler checks
//! the caller's tenant, then sends one message to the supervisor.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::AppJson;
use crate::openapi::{Access, Doc, Routes};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use centinela_actors::engine::{EngineError, EngineKind};
use centinela_actors::ids::SessionId;
use centinela_actors::ractor::{call, ActorRef};
use centinela_actors::session::{Refusal, SessionState};
use centinela_actors::supervisor::admission::DenyReason;
use centinela_actors::supervisor::{
    ConnectOutcome, NewSession, SessionChange, SessionDetail, SupervisorError, SupervisorMsg,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

pub fn routes() -> Routes {
    const ONE: &[(u16, &str)] = &[
        (200, "the session"),
        (400, "bad id"),
        (401, "no credentials"),
        (403, "another tenant's"),
        (404, "not found"),
    ];
    Routes::new()
        .route(
            "/api/v1/sessions",
            get(list).post(create),
            vec![
                Doc::new(
                    "GET",
                    "sessions",
                    "List the sessions the caller may see",
                    Access::Authenticated,
                    &[(200, "sessions"), (401, "no credentials")],
                ),
                Doc::new(
                    "POST",
                    "sessions",
                    "Create a session",
                    Access::Authenticated,
                    &[
                        (201, "created"),
                        (400, "bad input"),
                        (401, "no credentials"),
                        (403, "another tenant"),
                        (429, "session limit"),
                    ],
                )
                .body(json!({"tenant_id": "clinic", "name": "front desk", "engine": "webjs"})),
            ],
        )
        .route(
            "/api/v1/sessions/{id}",
            get(get_one).patch(update).delete(delete_one),
            vec![
                Doc::new(
                    "GET",
                    "sessions",
                    "Get a session with its state and admission status",
                    Access::Authenticated,
                    ONE,
                ),
                Doc::new(
                    "PATCH",
                    "sessions",
                    "Change a stopped session's name or proxy (\"proxy\": null removes it); a new proxy lifts a PROXYBLOCK hold for this session",
                    Access::Authenticated,
                    &[
                        (200, "changed"),
                        (400, "bad input"),
                        (403, "another tenant's"),
                        (404, "not found"),
                        (409, "live or queued"),
                    ],
                )
                .body(json!({"proxy": "http://user:pass@proxy.example:3128"})),
                Doc::new(
                    "DELETE",
                    "sessions",
                    "Delete a session (unpairs, stops, forgets)",
                    Access::Authenticated,
                    &[
                        (204, "deleted"),
                        (403, "another tenant's"),
                        (404, "not found"),
                    ],
                ),
            ],
        )
        .route(
            "/api/v1/sessions/{id}/connect",
            post(connect),
            vec![Doc::new(
                "POST",
                "sessions",
                "Ask to connect: queued with ETA, already live, or refused",
                Access::Authenticated,
                &[
                    (200, "already live"),
                    (202, "queued"),
                    (403, "another tenant's"),
                    (404, "not found"),
                    (429, "refused by the anti-ban policy"),
                ],
            )],
        )
        .route(
            "/api/v1/sessions/{id}/disconnect",
            post(disconnect),
            vec![Doc::new(
                "POST",
                "sessions",
                "Stop, keeping the pairing",
                Access::Authenticated,
                ONE,
            )],
        )
        .route(
            "/api/v1/sessions/{id}/logout",
            post(logout),
            vec![Doc::new(
                "POST",
                "sessions",
                "Unpair and delete the profile",
                Access::Authenticated,
                ONE,
            )],
        )
        .route(
            "/api/v1/sessions/{id}/pairing-code",
            post(pairing_code),
            vec![Doc::new(
                "POST",
                "sessions",
                "Link with a phone number instead of the QR: {phone} → {code: XXXX-XXXX, expires_at}; refreshed every 180 s while unscanned",
                Access::Authenticated,
                &[
                    (200, "the code to type on the phone"),
                    (400, "not a phone number"),
                    (403, "another tenant's"),
                    (404, "not found"),
                    (409, "not showing a QR"),
                    (429, "refused by the anti-ban policy (pairing_code_limit)"),
                ],
            )],
        )
        .route(
            "/api/v1/sessions/{id}/qr",
            get(crate::qr::qr),
            vec![Doc::new(
                "GET",
                "sessions",
                "The QR shown now (?format=json|svg|png)",
                Access::Authenticated,
                &[
                    (200, "the QR"),
                    (403, "another tenant's"),
                    (404, "not found"),
                    (409, "not showing a QR"),
                ],
            )],
        )
}

/// One place maps supervisor errors to statuses.
pub fn from_supervisor(e: SupervisorError) -> ApiError {
    match e {
        SupervisorError::NotFound(id) => ApiError::NotFound(format!("session {id} not found")),
        SupervisorError::Refused(Refusal::SessionPaired) => {
            ApiError::conflict("session_paired", "the session is paired and live")
        }
        SupervisorError::Refused(Refusal::NotShowingQr) => {
            ApiError::conflict("not_showing_qr", "the session is not showing a QR")
        }
        SupervisorError::Engine(EngineError::NotReady) => {
            ApiError::conflict("not_ready", "the session is not READY")
        }
        SupervisorError::Engine(e) => ApiError::Unavailable(e.to_string()),
        SupervisorError::Store(e) => ApiError::Internal(e),
        SupervisorError::Unavailable => {
            ApiError::Unavailable("the session actor is unavailable".into())
        }
        SupervisorError::Live => ApiError::conflict(
            "session_live",
            "the session is live or queued: disconnect it first",
        ),
        SupervisorError::Denied(d) => too_many(d.reason, d.wait, d.ends_at(), d.proxy.as_deref()),
    }
}

/// A 429 with seed 003's fields and `Retry-After`. A hold (a refused
/// proxy) has no end time: `block_until` is null and `proxy` names the path.
pub fn too_many(
    reason: DenyReason,
    wait: Duration,
    block_until: Option<centinela_actors::clock::Timestamp>,
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
    let mut details = json!({
        "reason": reason,
        "wait_time_minutes": minutes,
        "block_until": block_until,
    });
    if let Some(p) = proxy {
        details["proxy"] = json!(p);
    }
    ApiError::TooManyRequests {
        code: reason.as_str(),
        message,
        retry_after_secs: retry,
        details,
    }
}

pub(crate) fn unavailable<E: std::fmt::Display>(e: E) -> ApiError {
    ApiError::Unavailable(format!("supervisor: {e}"))
}

/// The API's JSON for a session.
pub fn session_json(d: &SessionDetail) -> Value {
    let v = &d.view;
    let (qr_expires_at, phone) = match &v.state {
        SessionState::Qr { expires_at, .. } => (Some(*expires_at), None),
        SessionState::Ready { me } => (None, Some(me.clone())),
        _ => (None, None),
    };
    json!({
        "id": v.id,
        "tenant_id": v.tenant,
        "name": v.name,
        "state": v.state.name(),
        "reason": v.state.reason(),
        "since": v.since,
        "qr_expires_at": qr_expires_at,
        "pairing_code": v.pairing_code.as_ref().map(|p| json!({"code": p.code, "expires_at": p.expires_at})),
        "phone": phone,
        "pairing_durable_at": v.pairing_durable_at,
        "admission": d.admission,
        "egress": d.egress,
        "recovery": d.recovery,
    })
}

pub fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    SessionId::new(raw).map_err(|e| ApiError::bad_request("invalid_session_id", e.to_string()))
}

async fn describe(sup: &ActorRef<SupervisorMsg>, id: SessionId) -> Result<SessionDetail, ApiError> {
    call!(sup, |r| SupervisorMsg::Describe { id, reply: r })
        .map_err(unavailable)?
        .map_err(from_supervisor)
}

/// The session, if it exists and the caller may see it (403 before any data).
pub async fn visible(
    state: &AppState,
    caller: &Caller,
    raw: &str,
) -> Result<SessionDetail, ApiError> {
    let detail = describe(&state.supervisor, session_id(raw)?).await?;
    caller.check_tenant(&detail.view.tenant)?;
    Ok(detail)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    tenant_id: Option<String>,
    name: String,
    engine: Option<EngineKind>,
    user_agent: Option<String>,
    proxy: Option<String>,
}

fn valid_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad_request(
            "invalid_name",
            "name must be 1-100 characters",
        ));
    }
    Ok(name.to_owned())
}

fn valid_proxy(p: &str) -> Result<(), ApiError> {
    let ok = ["http://", "https://", "socks5://"]
        .iter()
        .any(|s| p.starts_with(s))
        && p.len() <= 512
        && !p.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_proxy",
            "proxy must be an http://, https:// or socks5:// URL",
        ))
    }
}

/// A present field, even `null` (so `"proxy": null` removes the proxy).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    proxy: Option<Option<String>>,
}

/// Changes a stopped session's name or proxy. Moving a session to another
/// proxy is how a tenant held on a refused path (PROXYBLOCK) gets going.
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    AppJson(body): AppJson<Update>,
) -> Result<Json<Value>, ApiError> {
    let name = body.name.as_deref().map(valid_name).transpose()?;
    if let Some(Some(p)) = &body.proxy {
        valid_proxy(p)?;
    }
    let d = visible(&state, &caller, &id).await?;
    let change = SessionChange {
        name,
        proxy: body.proxy,
    };
    let (id, by) = (d.view.id, caller.name());
    call!(state.supervisor, |r| SupervisorMsg::Update {
        id: id.clone(),
        change,
        by,
        reply: r
    })
    .map_err(unavailable)?
    .map_err(from_supervisor)?;
    Ok(Json(session_json(&describe(&state.supervisor, id).await?)))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<Create>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tenant = match (body.tenant_id, caller.tenant()) {
        (Some(t), _) => crate::accounts::tenant_id(&t)?,
        (None, Some(own)) => own.clone(),
        (None, None) => {
            return Err(ApiError::bad_request(
                "missing_field",
                "tenant_id is required",
            ))
        }
    };
    caller.check_tenant(&tenant)?;
    let exists = state
        .auth
        .store()
        .tenant(&tenant)
        .map_err(crate::error::from_store)?
        .is_some();
    if !exists {
        return Err(ApiError::bad_request(
            "unknown_tenant",
            format!("tenant {tenant} does not exist"),
        ));
    }
    let name = valid_name(&body.name)?;
    if let Some(ua) = &body.user_agent {
        if ua.is_empty() || ua.len() > 512 || ua.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "invalid_user_agent",
                "user_agent must be 1-512 printable characters",
            ));
        }
    }
    if let Some(p) = &body.proxy {
        valid_proxy(p)?;
    }
    let new = NewSession {
        tenant,
        name,
        engine: body.engine.unwrap_or(EngineKind::Webjs),
        user_agent: body.user_agent,
        proxy: body.proxy,
    };
    let view = call!(state.supervisor, |r| SupervisorMsg::Create {
        new,
        reply: r
    })
    .map_err(unavailable)?
    .map_err(from_supervisor)?;
    let detail = describe(&state.supervisor, view.id).await?;
    Ok((StatusCode::CREATED, Json(session_json(&detail))))
}

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let tenant = if caller.is_admin() {
        None
    } else {
        caller.tenant().cloned()
    };
    if !caller.is_admin() && tenant.is_none() {
        return Err(ApiError::Forbidden);
    }
    let all = call!(state.supervisor, |r| SupervisorMsg::DescribeAll {
        tenant,
        reply: r
    })
    .map_err(unavailable)?;
    Ok(Json(
        json!({ "sessions": all.iter().map(session_json).collect::<Vec<_>>() }),
    ))
}

async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(session_json(&visible(&state, &caller, &id).await?)))
}

async fn delete_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let d = visible(&state, &caller, &id).await?;
    let id = d.view.id;
    call!(state.supervisor, |r| SupervisorMsg::Delete { id, reply: r })
        .map_err(unavailable)?
        .map_err(from_supervisor)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn connect(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let d = visible(&state, &caller, &id).await?;
    let id = d.view.id;
    let outcome = call!(state.supervisor, |r| SupervisorMsg::Connect {
        id: id.clone(),
        reply: r
    })
    .map_err(unavailable)?
    .map_err(from_supervisor)?;
    let detail = describe(&state.supervisor, id).await?;
    match outcome {
        ConnectOutcome::AlreadyLive { .. } => Ok((
            StatusCode::OK,
            Json(json!({ "outcome": "already_live", "session": session_json(&detail) })),
        )
            .into_response()),
        ConnectOutcome::Queued {
            start_at, position, ..
        } => Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "outcome": "queued",
                "session": session_json(&detail),
                "start_at": start_at,
                "position": position,
            })),
        )
            .into_response()),
        ConnectOutcome::Denied {
            reason,
            wait,
            block_until,
            proxy,
        } => Err(too_many(reason, wait, block_until, proxy.as_deref())),
    }
}

async fn stop(
    state: &AppState,
    caller: &Caller,
    raw: &str,
    logout: bool,
) -> Result<Json<Value>, ApiError> {
    let d = visible(state, caller, raw).await?;
    let id = d.view.id;
    let out = if logout {
        call!(state.supervisor, |r| SupervisorMsg::Logout {
            id: id.clone(),
            reply: r
        })
    } else {
        call!(state.supervisor, |r| SupervisorMsg::Disconnect {
            id: id.clone(),
            reply: r
        })
    };
    out.map_err(unavailable)?.map_err(from_supervisor)?;
    Ok(Json(session_json(&describe(&state.supervisor, id).await?)))
}

async fn disconnect(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    stop(&state, &caller, &id, false).await
}

#[derive(Deserialize)]
struct PairingCodeRequest {
    phone: String,
}

async fn pairing_code(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    AppJson(req): AppJson<PairingCodeRequest>,
) -> Result<Json<Value>, ApiError> {
    let phone = crate::messages::normalize_phone(&req.phone)?;
    let d = visible(&state, &caller, &id).await?;
    let code = call!(state.supervisor, |r| SupervisorMsg::PairingCode {
        id: d.view.id,
        phone,
        reply: r
    })
    .map_err(unavailable)?
    .map_err(from_supervisor)?;
    Ok(Json(json!({
        "code": code.code,
        "phone": code.phone,
        "expires_at": code.expires_at,
    })))
}

async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    stop(&state, &caller, &id, true).await
}

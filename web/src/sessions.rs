//! `/api/v1/sessions`: create, list, get, update, delete, connect,
//! disconnect, logout, pairing code and QR. A thin layer: every handler
//! validates its input and checks the caller's tenant (403 before any
//! data), then makes one call on the supervisor's handle; sending messages
//! is in `messages.rs`, the QR rendering in `qr.rs`.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{AppJson, AppPath};
use crate::openapi::{Access, Doc, Routes};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use centinela_actors::engine::EngineKind;
use centinela_actors::ids::SessionId;
use centinela_actors::session::SessionState;
use centinela_actors::supervisor::{ConnectOutcome, NewSession, SessionChange, SessionDetail};
use serde::Deserialize;
use serde_json::{json, Value};

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
            )
            .body(json!({"phone": "5491122334455"}))],
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

/// The session, if it exists and the caller may see it (403 before any data).
pub async fn visible(
    state: &AppState,
    caller: &Caller,
    raw: &str,
) -> Result<SessionDetail, ApiError> {
    let detail = state.supervisor.describe(session_id(raw)?).await?;
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
    AppPath(id): AppPath<String>,
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
    state.supervisor.update(id.clone(), change, by).await?;
    Ok(Json(session_json(&state.supervisor.describe(id).await?)))
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
    let exists = state.data.tenant(&tenant)?.is_some();
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
    let view = state.supervisor.create(new).await?;
    let detail = state.supervisor.describe(view.id).await?;
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
    let all = state.supervisor.describe_all(tenant).await?;
    Ok(Json(
        json!({ "sessions": all.iter().map(session_json).collect::<Vec<_>>() }),
    ))
}

async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(session_json(&visible(&state, &caller, &id).await?)))
}

async fn delete_one(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let d = visible(&state, &caller, &id).await?;
    state.supervisor.delete(d.view.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn connect(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Response, ApiError> {
    let d = visible(&state, &caller, &id).await?;
    let id = d.view.id;
    let outcome = state.supervisor.connect(id.clone()).await?;
    let detail = state.supervisor.describe(id).await?;
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
        } => Err(crate::error::too_many(
            reason,
            wait,
            block_until,
            proxy.as_deref(),
        )),
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
    if logout {
        state.supervisor.logout(id.clone()).await?;
    } else {
        state.supervisor.disconnect(id.clone()).await?;
    }
    Ok(Json(session_json(&state.supervisor.describe(id).await?)))
}

async fn disconnect(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    stop(&state, &caller, &id, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PairingCodeRequest {
    phone: String,
}

async fn pairing_code(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppJson(req): AppJson<PairingCodeRequest>,
) -> Result<Json<Value>, ApiError> {
    let phone = crate::messages::normalize_phone(&req.phone)?;
    let d = visible(&state, &caller, &id).await?;
    let code = state.supervisor.pairing_code(d.view.id, phone).await?;
    Ok(Json(json!({
        "code": code.code,
        "phone": code.phone,
        "expires_at": code.expires_at,
    })))
}

async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    stop(&state, &caller, &id, true).await
}

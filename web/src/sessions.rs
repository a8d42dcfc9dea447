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
use centinela_actors::clock::Timestamp;
use centinela_actors::engine::cloud::{CloudAccount, CloudSecrets};
use centinela_actors::engine::{DisconnectReason, EngineKind};
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::messaging::risk::{BudgetStatus, RiskLevel};
use centinela_actors::secret::Secret;
use centinela_actors::session::SessionState;
use centinela_actors::supervisor::recovery::RecoveryStatus;
use centinela_actors::supervisor::SupervisorError;
use centinela_actors::supervisor::{
    AdmissionStatus, ConnectOutcome, NewSession, SessionChange, SessionDetail,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

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
                )
                .reply::<SessionList>(),
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
                        (409, "the cloud phone_number_id has a session already"),
                        (429, "session limit"),
                    ],
                )
                .body::<CreateSession>(json!({"tenant_id": "clinic", "name": "front desk", "engine": "webjs"}))
                .reply::<SessionBody>(),
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
                )
                .reply::<SessionBody>(),
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
                .body::<UpdateSession>(json!({"proxy": "http://user:pass@proxy.example:3128"}))
                .reply::<SessionBody>(),
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
            )
            .reply::<ConnectReply>()],
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
            )
            .reply::<SessionBody>()],
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
            )
            .reply::<SessionBody>()],
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
            .body::<PairingCodeRequest>(json!({"phone": "5491122334455"}))
            .reply::<PairingCodeReply>()],
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
            )
            .query::<crate::qr::Format>()
            .reply::<crate::qr::QrBody>()
            .content("image/svg+xml")
            .content("image/png")],
        )
}

/// A session as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionBody {
    pub id: SessionId,
    pub tenant_id: TenantId,
    pub name: String,
    /// `DISCONNECTED`, `CONNECTING`, `QR`, `AUTHENTICATED` or `READY`.
    #[schema(example = "READY")]
    pub state: &'static str,
    /// Why it is `DISCONNECTED`.
    pub reason: Option<DisconnectReason>,
    /// When it entered this state.
    pub since: Timestamp,
    /// While `QR`: when the QR shown now stops being valid.
    pub qr_expires_at: Option<Timestamp>,
    /// The pairing code shown beside the QR, if one was asked for.
    pub pairing_code: Option<PairingCodeShown>,
    /// While `READY`: the linked number.
    pub phone: Option<String>,
    /// While `READY`: when the pairing was confirmed on disk.
    pub pairing_durable_at: Option<Timestamp>,
    pub admission: Option<AdmissionStatus>,
    /// The network path it connects through: its proxy without
    /// credentials, or `server`.
    pub egress: String,
    /// The automatic restore after a local fault, while one is going on.
    pub recovery: Option<RecoveryStatus>,
    pub engine: EngineKind,
    /// A cloud session's account, its secrets masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud: Option<CloudShown>,
    /// The new-contact budget of the day, and what is left of it.
    pub contact_budget: Option<BudgetStatus>,
    /// The ban-risk level; `GET /api/v1/sessions/{id}/risk` tells why.
    pub risk: Option<RiskLevel>,
}

impl SessionBody {
    /// `d` as the API shows it, with its budget and risk (left out, and
    /// logged, when the store cannot be read).
    pub fn shown(state: &AppState, d: &SessionDetail) -> Self {
        let mut body = SessionBody::from(d);
        match state.risk.report(&d.view.id) {
            Ok(Some(r)) => {
                // The official API has no new-contact budget.
                if d.engine != EngineKind::Cloud {
                    body.contact_budget = Some(r.budget);
                }
                body.risk = Some(r.level);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(session = %d.view.id, error = %e, "could not read the session's budget and risk")
            }
        }
        body
    }
}

/// A pairing code in a session's view.
#[derive(Debug, Serialize, ToSchema)]
pub struct PairingCodeShown {
    /// `XXXX-XXXX`.
    pub code: String,
    pub expires_at: Timestamp,
}

impl From<&SessionDetail> for SessionBody {
    fn from(d: &SessionDetail) -> Self {
        let v = &d.view;
        let (qr_expires_at, phone) = match &v.state {
            SessionState::Qr { expires_at, .. } => (Some(*expires_at), None),
            SessionState::Ready { me } => (None, Some(me.clone())),
            _ => (None, None),
        };
        SessionBody {
            id: v.id.clone(),
            tenant_id: v.tenant.clone(),
            name: v.name.clone(),
            state: v.state.name(),
            reason: v.state.reason(),
            since: v.since,
            qr_expires_at,
            pairing_code: v.pairing_code.as_ref().map(|p| PairingCodeShown {
                code: p.code.clone(),
                expires_at: p.expires_at,
            }),
            phone,
            pairing_durable_at: v.pairing_durable_at,
            admission: d.admission.clone(),
            egress: d.egress.clone(),
            recovery: d.recovery,
            engine: d.engine,
            cloud: d.cloud.as_ref().map(|c| CloudShown {
                phone_number_id: c.phone_number_id.clone(),
                waba_id: c.waba_id.clone(),
                api_version: c.api_version.clone(),
                access_token: MASK,
                app_secret: MASK,
                verify_token: MASK,
            }),
            contact_budget: None,
            risk: None,
        }
    }
}

/// The sessions the caller may see.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionBody>,
}

/// What a connect did: `already_live` (200) or `queued` (202, with when
/// and where in the queue).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectReply {
    /// `already_live` or `queued`.
    pub outcome: &'static str,
    pub session: SessionBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_at: Option<Timestamp>,
    /// 1-based.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
}

/// A pairing code to type on the phone.
#[derive(Debug, Serialize, ToSchema)]
pub struct PairingCodeReply {
    /// `XXXX-XXXX`.
    pub code: String,
    /// The phone number it links (digits).
    pub phone: String,
    /// When a fresh code replaces it (every 180 s while unscanned).
    pub expires_at: Timestamp,
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
    let detail = match state.supervisor.describe(session_id(raw)?).await {
        // Fleet: hosted by another node. Said only to whoever may see it.
        Err(SupervisorError::NotOwner(tenant)) => {
            caller.check_tenant(&tenant)?;
            return Err(SupervisorError::NotOwner(tenant).into());
        }
        other => other?,
    };
    caller.check_tenant(&detail.view.tenant)?;
    Ok(detail)
}

/// A new session.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    tenant_id: Option<String>,
    name: String,
    engine: Option<EngineKind>,
    user_agent: Option<String>,
    proxy: Option<String>,
    /// Required with `"engine":"cloud"`, refused otherwise.
    cloud: Option<CloudInput>,
}

/// A Cloud API session's account. The three secrets are write-only: they
/// are sealed (AES-256-GCM) before they are stored and shown masked.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudInput {
    /// The business phone number's id in the Graph API (digits).
    phone_number_id: String,
    access_token: String,
    /// The Meta app's secret: it signs the webhooks (X-Hub-Signature-256).
    app_secret: String,
    /// What Meta's subscription handshake must present.
    verify_token: String,
    waba_id: Option<String>,
    /// `v20.0`; the server's `engine.cloud_api_version` when absent.
    api_version: Option<String>,
}

/// A cloud session's account as shown: ids, and the secrets masked.
#[derive(Debug, Serialize, ToSchema)]
pub struct CloudShown {
    pub phone_number_id: String,
    pub waba_id: Option<String>,
    pub api_version: Option<String>,
    /// Always `***`: the secrets are write-only.
    pub access_token: &'static str,
    pub app_secret: &'static str,
    pub verify_token: &'static str,
}

const MASK: &str = "***";

fn digits_id(field: &'static str, raw: &str) -> Result<String, ApiError> {
    if (1..=32).contains(&raw.len()) && raw.chars().all(|c| c.is_ascii_digit()) {
        return Ok(raw.to_owned());
    }
    Err(ApiError::bad_request(
        "invalid_cloud",
        format!("cloud.{field} must be 1-32 digits"),
    ))
}

fn secret_field(field: &'static str, raw: &str, max: usize) -> Result<Secret, ApiError> {
    if raw.is_empty() || raw.len() > max || raw.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ApiError::bad_request(
            "invalid_cloud",
            format!("cloud.{field} must be 1-{max} printable characters without spaces"),
        ));
    }
    Ok(Secret::new(raw))
}

/// Checks a cloud account and seals its secrets.
fn cloud_account(state: &AppState, input: CloudInput) -> Result<CloudAccount, ApiError> {
    let phone_number_id = digits_id("phone_number_id", &input.phone_number_id)?;
    let waba_id = input
        .waba_id
        .as_deref()
        .map(|w| digits_id("waba_id", w))
        .transpose()?;
    if let Some(v) = &input.api_version {
        let ok = v.len() <= 10
            && v.strip_prefix('v').is_some_and(|n| {
                let mut parts = n.split('.');
                let all_digits = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
                parts.next().is_some_and(all_digits)
                    && parts.next().is_some_and(all_digits)
                    && parts.next().is_none()
            });
        if !ok {
            return Err(ApiError::bad_request(
                "invalid_cloud",
                "cloud.api_version looks like v20.0",
            ));
        }
    }
    let secrets = CloudSecrets {
        access_token: secret_field("access_token", &input.access_token, 2048)?,
        app_secret: secret_field("app_secret", &input.app_secret, 256)?,
        verify_token: secret_field("verify_token", &input.verify_token, 256)?,
    };
    Ok(CloudAccount {
        phone_number_id,
        waba_id,
        api_version: input.api_version,
        secrets: secrets.seal(&state.secrets),
    })
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

/// A change to a stopped session; `"proxy": null` removes its proxy.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSession {
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    proxy: Option<Option<String>>,
}

/// Changes a stopped session's name or proxy. Moving a session to another
/// proxy is how a tenant held on a refused path (PROXYBLOCK) gets going.
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<UpdateSession>,
) -> Result<Json<SessionBody>, ApiError> {
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
    Ok(Json(SessionBody::shown(
        &state,
        &state.supervisor.describe(id).await?,
    )))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<CreateSession>,
) -> Result<(StatusCode, Json<SessionBody>), ApiError> {
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
    let exists = state.accounts.tenant(&tenant)?.is_some();
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
    let engine = body.engine.unwrap_or(EngineKind::Webjs);
    let cloud = match (engine, body.cloud) {
        (EngineKind::Cloud, Some(input)) => Some(cloud_account(&state, input)?),
        (EngineKind::Cloud, None) => {
            return Err(ApiError::bad_request(
                "missing_field",
                "a cloud session needs \"cloud\": {phone_number_id, access_token, app_secret, verify_token}",
            ))
        }
        (EngineKind::Webjs, Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_cloud",
                "\"cloud\" is only for \"engine\": \"cloud\"",
            ))
        }
        (EngineKind::Webjs, None) => None,
    };
    let new = NewSession {
        tenant,
        name,
        engine,
        user_agent: body.user_agent,
        proxy: body.proxy,
        cloud,
    };
    let view = state.supervisor.create(new).await?;
    let detail = state.supervisor.describe(view.id).await?;
    Ok((
        StatusCode::CREATED,
        Json(SessionBody::shown(&state, &detail)),
    ))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<SessionList>, ApiError> {
    let tenant = if caller.is_admin() {
        None
    } else {
        caller.tenant().cloned()
    };
    if !caller.is_admin() && tenant.is_none() {
        return Err(ApiError::Forbidden);
    }
    let all = state.supervisor.describe_all(tenant).await?;
    Ok(Json(SessionList {
        sessions: all.iter().map(|d| SessionBody::shown(&state, d)).collect(),
    }))
}

async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<SessionBody>, ApiError> {
    Ok(Json(SessionBody::shown(
        &state,
        &visible(&state, &caller, &id).await?,
    )))
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
            Json(ConnectReply {
                outcome: "already_live",
                session: SessionBody::shown(&state, &detail),
                start_at: None,
                position: None,
            }),
        )
            .into_response()),
        ConnectOutcome::Queued {
            start_at, position, ..
        } => Ok((
            StatusCode::ACCEPTED,
            Json(ConnectReply {
                outcome: "queued",
                session: SessionBody::shown(&state, &detail),
                start_at: Some(start_at),
                position: Some(position),
            }),
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
) -> Result<Json<SessionBody>, ApiError> {
    let d = visible(state, caller, raw).await?;
    let id = d.view.id;
    if logout {
        state.supervisor.logout(id.clone()).await?;
    } else {
        state.supervisor.disconnect(id.clone()).await?;
    }
    Ok(Json(SessionBody::shown(
        state,
        &state.supervisor.describe(id).await?,
    )))
}

async fn disconnect(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<SessionBody>, ApiError> {
    stop(&state, &caller, &id, false).await
}

/// The phone number to link, in international format.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PairingCodeRequest {
    phone: String,
}

async fn pairing_code(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppJson(req): AppJson<PairingCodeRequest>,
) -> Result<Json<PairingCodeReply>, ApiError> {
    let phone = crate::messages::normalize_phone(&req.phone)?;
    let d = visible(&state, &caller, &id).await?;
    let code = state.supervisor.pairing_code(d.view.id, phone).await?;
    Ok(Json(PairingCodeReply {
        code: code.code,
        phone: code.phone,
        expires_at: code.expires_at,
    }))
}

async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<SessionBody>, ApiError> {
    stop(&state, &caller, &id, true).await
}

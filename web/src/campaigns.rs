//! `/api/v1/sessions/{id}/campaigns`: create a campaign (a template and
//! recipients with variables), read its progress, and start, pause, resume
//! or cancel it. Sending is the runner's and the session's pacing's job.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{AppJson, AppPath};
use crate::messages::normalize_phone;
use crate::openapi::{Access, Doc, Routes};
use crate::sessions::visible;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use centinela_actors::clock::Timestamp;
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::store::{CampaignRecord, CampaignStatus, Recipient};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

pub fn routes() -> Routes {
    const ONE: &[(u16, &str)] = &[
        (200, "the campaign"),
        (401, "no credentials"),
        (403, "another tenant's"),
        (404, "not found"),
        (409, "wrong state or too many running"),
    ];
    let action = |s: &'static str| {
        vec![Doc::new("POST", "campaigns", s, Access::Authenticated, ONE).reply::<CampaignBody>()]
    };
    Routes::new()
        .route(
            "/api/v1/sessions/{id}/campaigns",
            get(list).post(create),
            vec![
                Doc::new("GET", "campaigns", "A session's campaigns with progress", Access::Authenticated, ONE).reply::<CampaignList>(),
                Doc::new("POST", "campaigns", "Create a campaign (draft)", Access::Authenticated, &[(201, "created"), (400, "bad input"), (403, "another tenant's"), (404, "not found")])
                    .body::<NewCampaign>(json!({"name": "turnos", "template": "Hola {name}, tu turno es el {date}", "recipients": [{"to": "5491122334455", "vars": {"name": "Ana", "date": "lunes"}}]}))
                    .reply::<CampaignBody>(),
            ],
        )
        .route("/api/v1/sessions/{id}/campaigns/{cid}", get(get_one), vec![Doc::new("GET", "campaigns", "A campaign with its progress", Access::Authenticated, ONE).reply::<CampaignBody>()])
        .route("/api/v1/sessions/{id}/campaigns/{cid}/start", post(start), action("Start a draft campaign"))
        .route("/api/v1/sessions/{id}/campaigns/{cid}/pause", post(pause), action("Pause a running campaign"))
        .route("/api/v1/sessions/{id}/campaigns/{cid}/resume", post(start), action("Resume a paused campaign"))
        .route("/api/v1/sessions/{id}/campaigns/{cid}/cancel", post(cancel), action("Cancel a campaign"))
}

/// A campaign and its progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignBody {
    pub id: String,
    pub session_id: SessionId,
    pub tenant_id: TenantId,
    pub name: String,
    pub template: String,
    pub status: CampaignStatus,
    /// Recipients in all.
    pub total: usize,
    /// Recipients handed to the outbox so far.
    pub queued_so_far: usize,
    pub sent: usize,
    pub failed: usize,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<&CampaignRecord> for CampaignBody {
    fn from(c: &CampaignRecord) -> Self {
        CampaignBody {
            id: c.id.clone(),
            session_id: c.session.clone(),
            tenant_id: c.tenant.clone(),
            name: c.name.clone(),
            template: c.template.clone(),
            status: c.status,
            total: c.recipients.len(),
            queued_so_far: c.next,
            sent: c.sent,
            failed: c.failed,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignList {
    pub campaigns: Vec<CampaignBody>,
}

/// A draft campaign: a template with `{variables}` and up to 10,000
/// recipients, each with up to 20 values (names of 1-32 letters, digits,
/// `_`, `-` or `.`; values up to 1,000 characters). Every recipient's text
/// must render within 4,096 characters: else 400 `rendered_too_long`, and
/// 400 `invalid_recipients` for variables over those limits. Values are
/// copied as written: a placeholder inside a value is not filled.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    name: String,
    template: String,
    recipients: Vec<Recipient>,
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<NewCampaign>,
) -> Result<(StatusCode, Json<CampaignBody>), ApiError> {
    let d = visible(&state, &caller, &id).await?;
    if body.name.trim().is_empty() || body.name.chars().count() > 100 {
        return Err(ApiError::bad_request(
            "invalid_name",
            "name must be 1-100 characters",
        ));
    }
    if body.template.trim().is_empty() || body.template.chars().count() > 4096 {
        return Err(ApiError::bad_request(
            "invalid_template",
            "template must be 1-4096 characters",
        ));
    }
    if body.recipients.is_empty() || body.recipients.len() > 10_000 {
        return Err(ApiError::bad_request(
            "invalid_recipients",
            "1 to 10,000 recipients",
        ));
    }
    let mut recipients = Vec::with_capacity(body.recipients.len());
    for r in body.recipients {
        recipients.push(Recipient {
            to: normalize_phone(&r.to)?,
            vars: r.vars,
        });
    }
    let now = state.clock.now();
    let c = CampaignRecord {
        id: format!("c_{}", uuid::Uuid::new_v4().simple()),
        tenant: d.view.tenant,
        session: d.view.id,
        name: body.name.trim().to_owned(),
        template: body.template,
        recipients,
        status: CampaignStatus::Draft,
        next: 0,
        sent: 0,
        failed: 0,
        created_at: now,
        updated_at: now,
        paused: None,
    };
    state.campaigns.create(&c)?;
    Ok((StatusCode::CREATED, Json(CampaignBody::from(&c))))
}

/// The campaign, if it belongs to the session and the caller may see it.
async fn owned(
    state: &AppState,
    caller: &Caller,
    id: &str,
    cid: &str,
) -> Result<CampaignRecord, ApiError> {
    let d = visible(state, caller, id).await?;
    let c = state.campaigns.get(cid)?;
    if c.session != d.view.id {
        return Err(ApiError::NotFound(format!("campaign {cid} not found")));
    }
    Ok(c)
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<CampaignList>, ApiError> {
    let d = visible(&state, &caller, &id).await?;
    let all = state.campaigns.list()?;
    let campaigns = all
        .iter()
        .filter(|c| c.session == d.view.id)
        .map(CampaignBody::from)
        .collect();
    Ok(Json(CampaignList { campaigns }))
}

async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    AppPath((id, cid)): AppPath<(String, String)>,
) -> Result<Json<CampaignBody>, ApiError> {
    Ok(Json(CampaignBody::from(
        &owned(&state, &caller, &id, &cid).await?,
    )))
}

/// Applies one state change to a campaign the caller may see.
async fn change(
    state: &AppState,
    caller: &Caller,
    id: &str,
    cid: &str,
    action: &str,
) -> Result<Json<CampaignBody>, ApiError> {
    owned(state, caller, id, cid).await?;
    let c = match action {
        "pause" => state.campaigns.pause(cid).await,
        "cancel" => state.campaigns.cancel(cid).await,
        _ => state.campaigns.run(cid).await,
    };
    Ok(Json(CampaignBody::from(&c?)))
}

/// Start (from draft) and resume (from paused) are one operation.
async fn start(
    State(state): State<AppState>,
    caller: Caller,
    AppPath((id, cid)): AppPath<(String, String)>,
) -> Result<Json<CampaignBody>, ApiError> {
    change(&state, &caller, &id, &cid, "run").await
}

async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    AppPath((id, cid)): AppPath<(String, String)>,
) -> Result<Json<CampaignBody>, ApiError> {
    change(&state, &caller, &id, &cid, "pause").await
}

async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    AppPath((id, cid)): AppPath<(String, String)>,
) -> Result<Json<CampaignBody>, ApiError> {
    change(&state, &caller, &id, &cid, "cancel").await
}

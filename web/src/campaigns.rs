//! `/api/v1/sessions/{id}/campaigns`: create a campaign (a template and
//! recipients with variables), read its progress, and start, pause, resume
//! or cancel it. Sending is the runner's and the session's pacing's job.
//! Every campaign still to run shows its outlook under the new-contact
//! budget (how many recipients are new to the number, when the last
//! should go, how many days that takes), and `…/campaigns/preview` shows
//! it before anything is stored, with the first texts and every row it
//! would reject and why (a bad number, a missing variable); creating
//! refuses a bad number with 400. A session at high ban risk starts and
//! resumes none (409 `risk_high`).

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
use centinela_actors::messaging::risk::{BudgetStatus, RiskLevel};
use centinela_actors::messaging::template::{placeholders, render, RenderError};
use centinela_actors::store::{
    CampaignPause, CampaignRecord, CampaignStatus, MessageStatus, Recipient,
};
use centinela_actors::supervisor::SessionDetail;
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
        .route(
            "/api/v1/sessions/{id}/campaigns/preview",
            post(preview),
            vec![Doc::new("POST", "campaigns", "What a campaign would do, without storing it: new contacts, ETA under the new-contact budget, the first texts, the rows it would reject and why", Access::Authenticated, &[(200, "the preview"), (400, "bad input"), (403, "another tenant's"), (404, "not found")])
                .body::<NewCampaign>(json!({"name": "turnos", "template": "Hola {name}, tu turno es el {date}", "recipients": [{"to": "5491122334455", "vars": {"name": "Ana", "date": "lunes"}}]}))
                .reply::<CampaignPreview>()],
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
    /// Why the server paused it (`risk_high`), while it is paused for that.
    pub paused: Option<CampaignPause>,
    /// Its current recipient waits for the new-contact budget until then.
    pub deferred_until: Option<Timestamp>,
    /// While it has recipients to go: what the budget makes of them.
    pub outlook: Option<CampaignOutlook>,
}

/// What the new-contact budget makes of a campaign's recipients still to go.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignOutlook {
    /// Recipients the number never exchanged a message with.
    pub new_contacts: usize,
    pub known_contacts: usize,
    /// When the last recipient should go out, at the session's budget,
    /// warm-up, pacing and typing.
    pub eta: Timestamp,
    /// How many days that is, counting today as the first.
    pub days_needed: u32,
    /// Set when the new contacts are more than today's budget has left.
    pub warning: Option<String>,
}

/// A campaign as it would run, nothing stored: the recipients that would
/// be sent (and what the budget makes of them), and the rows that would
/// not, each with why.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignPreview {
    /// Recipients that would be sent (the rows given less the rejected).
    pub total: usize,
    /// Null when every row is rejected.
    pub outlook: Option<CampaignOutlook>,
    /// The session's new-contact budget as it stands.
    pub budget: Option<BudgetStatus>,
    /// The first accepted recipient's text ("" when none is).
    pub first_text: String,
    /// The first three accepted recipients' texts.
    pub samples: Vec<String>,
    /// The rows that cannot be sent, in order.
    pub rejected: Vec<RejectedRow>,
}

/// A recipient row a campaign could not send.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedRow {
    /// Its position among the recipients given, from 0.
    pub index: usize,
    /// Its number as given.
    pub to: String,
    /// `invalid_phone`, `missing_variables`, `rendered_too_long` or
    /// `invalid_recipients` (variables over the limits).
    pub code: String,
    pub message: String,
}

/// `c` as the API shows it: with its outlook while it has recipients to go
/// (left out, and logged, when the store cannot be read).
fn shown(state: &AppState, c: &CampaignRecord) -> CampaignBody {
    let mut body = CampaignBody::from(c);
    if matches!(
        c.status,
        CampaignStatus::Cancelled | CampaignStatus::Completed
    ) {
        return body;
    }
    let current = match state.campaigns.current(c) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(campaign = %c.id, error = %e, "could not read the campaign's current message");
            None
        }
    };
    body.deferred_until = current
        .filter(|m| m.status == MessageStatus::Deferred)
        .and_then(|m| m.deferred)
        .map(|d| d.next_attempt_at);
    match outlook(state, c, body.deferred_until) {
        Ok(o) => body.outlook = Some(o),
        Err(e) => {
            tracing::warn!(campaign = %c.id, error = %e, "could not work out the campaign's outlook")
        }
    }
    body
}

fn outlook(
    state: &AppState,
    c: &CampaignRecord,
    waiting_until: Option<Timestamp>,
) -> Result<CampaignOutlook, ApiError> {
    let o = state.risk.outlook(c, waiting_until)?;
    let budget = state.risk.budget(&c.session)?;
    let warning = budget.filter(|b| o.new_contacts > b.remaining as usize).map(|b| {
        format!(
            "{} of the {} recipients still to go are new contacts of this number; its new-contact budget allows {} in 24 h ({} left now), so reaching them all takes {} days: the last should go out at {}",
            o.new_contacts,
            o.new_contacts + o.known_contacts,
            b.allowance,
            b.remaining,
            o.days_needed,
            o.eta
        )
    });
    Ok(CampaignOutlook {
        new_contacts: o.new_contacts,
        known_contacts: o.known_contacts,
        eta: o.eta,
        days_needed: o.days_needed,
        warning,
    })
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
            paused: c.paused.clone(),
            deferred_until: None,
            outlook: None,
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

/// A draft of `body` for the session `d`, every input checked (its texts
/// are checked by the runner's rules when it is stored or previewed).
fn draft(
    state: &AppState,
    d: SessionDetail,
    body: NewCampaign,
) -> Result<CampaignRecord, ApiError> {
    check_header(&body)?;
    let mut recipients = Vec::with_capacity(body.recipients.len());
    for r in body.recipients {
        recipients.push(Recipient {
            to: normalize_phone(&r.to)?,
            vars: r.vars,
        });
    }
    Ok(record(state, d, body.name, body.template, recipients))
}

/// The name, the template and the number of recipients.
fn check_header(body: &NewCampaign) -> Result<(), ApiError> {
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
    Ok(())
}

/// A new draft of the session `d`.
fn record(
    state: &AppState,
    d: SessionDetail,
    name: String,
    template: String,
    recipients: Vec<Recipient>,
) -> CampaignRecord {
    let now = state.clock.now();
    CampaignRecord {
        id: format!("c_{}", uuid::Uuid::new_v4().simple()),
        tenant: d.view.tenant,
        session: d.view.id,
        name: name.trim().to_owned(),
        template,
        recipients,
        status: CampaignStatus::Draft,
        next: 0,
        sent: 0,
        failed: 0,
        created_at: now,
        updated_at: now,
        paused: None,
    }
}

/// Why `r` cannot be sent with `template`, if it cannot: a bad number, a
/// variable the template names and the row lacks, a text over the limits.
fn rejection(template: &str, index: usize, r: &Recipient) -> Result<Recipient, RejectedRow> {
    let reject = |code: &str, message: String| RejectedRow {
        index,
        to: r.to.clone(),
        code: code.to_owned(),
        message,
    };
    let to = normalize_phone(&r.to).map_err(|e| reject("invalid_phone", e.to_string()))?;
    let missing: Vec<&str> = placeholders(template)
        .into_iter()
        .filter(|name| r.vars.get(*name).is_none_or(|v| v.trim().is_empty()))
        .collect();
    if !missing.is_empty() {
        return Err(reject(
            "missing_variables",
            format!("no value for {}", missing.join(", ")),
        ));
    }
    if let Err(error) = render(template, &r.vars) {
        let code = match error {
            RenderError::TooLong => "rendered_too_long",
            RenderError::TooManyVars(_) | RenderError::BadName | RenderError::ValueTooLong => {
                "invalid_recipients"
            }
        };
        return Err(reject(code, error.to_string()));
    }
    Ok(Recipient {
        to,
        vars: r.vars.clone(),
    })
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<NewCampaign>,
) -> Result<(StatusCode, Json<CampaignBody>), ApiError> {
    let d = visible(&state, &caller, &id).await?;
    let c = draft(&state, d, body)?;
    state.campaigns.create(&c)?;
    Ok((StatusCode::CREATED, Json(shown(&state, &c))))
}

/// Every row is checked and either kept or listed as rejected (with why);
/// only the name, the template and the number of rows fail the request.
async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<NewCampaign>,
) -> Result<Json<CampaignPreview>, ApiError> {
    let d = visible(&state, &caller, &id).await?;
    check_header(&body)?;
    let (mut accepted, mut rejected) = (Vec::new(), Vec::new());
    for (index, r) in body.recipients.iter().enumerate() {
        match rejection(&body.template, index, r) {
            Ok(r) => accepted.push(r),
            Err(row) => rejected.push(row),
        }
    }
    let samples: Vec<String> = accepted
        .iter()
        .take(3)
        .map(|r| render(&body.template, &r.vars).unwrap_or_default())
        .collect();
    let c = record(&state, d, body.name, body.template, accepted);
    let outlook = match c.recipients.is_empty() {
        true => None,
        false => Some(outlook(&state, &c, None)?),
    };
    Ok(Json(CampaignPreview {
        total: c.recipients.len(),
        outlook,
        budget: state.risk.budget(&c.session)?,
        first_text: samples.first().cloned().unwrap_or_default(),
        samples,
        rejected,
    }))
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
        .map(|c| shown(&state, c))
        .collect();
    Ok(Json(CampaignList { campaigns }))
}

async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    AppPath((id, cid)): AppPath<(String, String)>,
) -> Result<Json<CampaignBody>, ApiError> {
    Ok(Json(shown(
        &state,
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
    let c = owned(state, caller, id, cid).await?;
    let c = match action {
        "pause" => state.campaigns.pause(cid).await,
        "cancel" => state.campaigns.cancel(cid).await,
        _ => {
            refuse_at_high_risk(state, &c)?;
            state.campaigns.run(cid).await
        }
    };
    Ok(Json(shown(state, &c?)))
}

/// 409 `risk_high` while the campaign's session is at high ban risk (and
/// `risk.pause_campaigns` is on): it would only pause itself again.
fn refuse_at_high_risk(state: &AppState, c: &CampaignRecord) -> Result<(), ApiError> {
    if !state.risk.policy().pause_campaigns {
        return Ok(());
    }
    let Some(report) = state.risk.report(&c.session)? else {
        return Ok(());
    };
    if report.level != RiskLevel::High {
        return Ok(());
    }
    let reasons: Vec<&str> = report.reasons.iter().map(|r| r.as_str()).collect();
    Err(ApiError::conflict(
        "risk_high",
        format!(
            "session {} is at high ban risk ({}): no campaign of it runs until the risk falls; GET /api/v1/sessions/{}/risk tells why",
            c.session,
            reasons.join(", "),
            c.session
        ),
    ))
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

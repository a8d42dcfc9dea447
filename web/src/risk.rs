//! `GET /api/v1/sessions/{id}/risk`: a session's ban-risk view — what its
//! number sent, to whom, and who answered over the last 24 h and 7 days,
//! its new-contact budget, and the level the thresholds give
//! (`messaging/risk.rs` has the rules, the README the reasons).

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::AppPath;
use crate::openapi::{Access, Doc, Routes};
use crate::sessions::visible;
use crate::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::Json;
use centinela_actors::clock::Timestamp;
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::messaging::risk::{BudgetStatus, RiskLevel, RiskPolicy, RiskReason, Window};
use serde::Serialize;
use utoipa::ToSchema;

pub fn routes() -> Routes {
    Routes::new().route(
        "/api/v1/sessions/{id}/risk",
        get(risk),
        vec![Doc::new(
            "GET",
            "sessions",
            "The session's ban risk: sends, new contacts, replies and failures over 24 h and 7 days, its new-contact budget, and the level",
            Access::Authenticated,
            &[
                (200, "the risk view"),
                (400, "bad id"),
                (401, "no credentials"),
                (403, "another tenant's"),
                (404, "not found"),
            ],
        )
        .reply::<RiskBody>()],
    )
}

/// A session's ban-risk view.
#[derive(Debug, Serialize, ToSchema)]
pub struct RiskBody {
    pub session_id: SessionId,
    pub tenant_id: TenantId,
    /// `low`, `elevated` or `high`.
    pub level: RiskLevel,
    /// What raised the level, highest first.
    pub reasons: Vec<RiskReason>,
    /// The last 24 h.
    pub day: Window,
    /// The last 7 days.
    pub week: Window,
    /// The new-contact budget of the day, and what is left of it.
    pub budget: BudgetStatus,
    /// The thresholds the level came from (`[risk]`).
    pub thresholds: RiskPolicy,
    pub at: Timestamp,
}

async fn risk(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<RiskBody>, ApiError> {
    let d = visible(&state, &caller, &id).await?;
    let report = state
        .risk
        .report(&d.view.id)?
        .ok_or_else(|| ApiError::NotFound(format!("session {id} not found")))?;
    Ok(Json(RiskBody {
        session_id: d.view.id,
        tenant_id: d.view.tenant,
        level: report.level,
        reasons: report.reasons,
        day: report.day,
        week: report.week,
        budget: report.budget,
        thresholds: *state.risk.policy(),
        at: report.at,
    }))
}

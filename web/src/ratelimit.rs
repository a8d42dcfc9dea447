//! The anti-ban status (`GET /api/rate-limit-status`, seed 003's fields) and
//! the admin overrides (`POST /api/v1/tenants/{id}/unblock|reset-cooldown`).

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{AppPath, AppQuery};
use crate::openapi::{Access, Doc, Routes};
use crate::AppState;
use axum::extract::State;
use axum::routing::{get, post};
use axum::Json;
use centinela_actors::ids::TenantId;
use centinela_actors::supervisor::admission::{GlobalStatus, TenantStatus};
use centinela_actors::supervisor::RateLimitReport;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub fn routes() -> Routes {
    const OVERRIDE: &[(u16, &str)] = &[
        (200, "done"),
        (400, "bad id"),
        (401, "no credentials"),
        (403, "not an admin"),
        (404, "no such tenant"),
    ];
    Routes::new()
        .route(
            "/api/rate-limit-status",
            get(status),
            vec![Doc::new(
                "GET",
                "antiban",
                "Anti-ban status (seed 003 fields); ?organization_id= for one",
                Access::Authenticated,
                &[
                    (200, "status"),
                    (401, "no credentials"),
                    (403, "another tenant"),
                ],
            )
            .query::<Filter>()
            .reply::<RateLimitReply>()],
        )
        .route(
            "/api/v1/tenants/{id}/unblock",
            post(unblock),
            vec![Doc::new(
                "POST",
                "antiban",
                "Lift a tenant's ban block (audited)",
                Access::Admin,
                OVERRIDE,
            )
            .reply::<Unblocked>()],
        )
        .route(
            "/api/v1/tenants/{id}/reset-cooldown",
            post(reset_cooldown),
            vec![Doc::new(
                "POST",
                "antiban",
                "End a tenant's cooldown (audited)",
                Access::Admin,
                OVERRIDE,
            )
            .reply::<CooldownReset>()],
        )
}

/// Whose status.
#[derive(Deserialize, IntoParams)]
pub struct Filter {
    /// One organization (tenant): the answer is then seed 003's flat shape.
    organization_id: Option<String>,
}

/// Every organization the caller may see, or one in the flat shape.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum RateLimitReply {
    All(RateLimitReport),
    One(OrganizationReport),
}

/// Seed 003's single-organization answer: the global fields and the
/// organization's side by side.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationReport {
    #[serde(flatten)]
    pub global: GlobalStatus,
    #[serde(flatten)]
    pub organization: TenantStatus,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Unblocked {
    pub success: bool,
    /// Whether there was a block to lift.
    pub was_blocked: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CooldownReset {
    pub success: bool,
    /// Whether there was a cooldown to end.
    pub was_cooling: bool,
}

/// Admins see every organization (or the one asked for); anyone else only
/// their own, and with `?organization_id=` the seed's flat shape.
async fn status(
    State(state): State<AppState>,
    caller: Caller,
    AppQuery(f): AppQuery<Filter>,
) -> Result<Json<RateLimitReply>, ApiError> {
    let asked = f
        .organization_id
        .as_deref()
        .map(crate::accounts::tenant_id)
        .transpose()?;
    if let Some(t) = &asked {
        caller.check_tenant(t)?;
    }
    let tenant = asked.clone().or_else(|| {
        (!caller.is_admin())
            .then(|| caller.tenant().cloned())
            .flatten()
    });
    if !caller.is_admin() && tenant.is_none() {
        return Err(ApiError::Forbidden);
    }
    let mut report = state.supervisor.rate_limit_status(tenant).await?;
    if asked.is_some() {
        if let Some(organization) = report.organizations.pop() {
            return Ok(Json(RateLimitReply::One(OrganizationReport {
                global: report.global,
                organization,
            })));
        }
    }
    Ok(Json(RateLimitReply::All(report)))
}

/// An admin's override applies to a tenant that exists (404 otherwise:
/// nothing is written to the ledger for it).
fn existing(state: &AppState, caller: &Caller, raw: &str) -> Result<TenantId, ApiError> {
    caller.require_admin()?;
    Ok(crate::accounts::existing_tenant(state, caller, raw)?.id)
}

async fn unblock(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<Unblocked>, ApiError> {
    let tenant = existing(&state, &caller, &id)?;
    let by = caller.name();
    let was = state.supervisor.unblock(tenant, by).await?;
    Ok(Json(Unblocked {
        success: true,
        was_blocked: was,
    }))
}

async fn reset_cooldown(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<CooldownReset>, ApiError> {
    let tenant = existing(&state, &caller, &id)?;
    let by = caller.name();
    let was = state.supervisor.reset_cooldown(tenant, by).await?;
    Ok(Json(CooldownReset {
        success: true,
        was_cooling: was,
    }))
}

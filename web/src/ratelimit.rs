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
use serde::Deserialize;
use serde_json::{json, Value};

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
            )],
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
            )],
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
            )],
        )
}

#[derive(Deserialize)]
struct Filter {
    organization_id: Option<String>,
}

/// Admins see every organization (or the one asked for); anyone else only
/// their own, and with `?organization_id=` the seed's flat shape.
async fn status(
    State(state): State<AppState>,
    caller: Caller,
    AppQuery(f): AppQuery<Filter>,
) -> Result<Json<Value>, ApiError> {
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
    let report = state.supervisor.rate_limit_status(tenant).await?;
    if asked.is_some() {
        // The seed's single-organization answer: global fields and the
        // organization's fields side by side.
        let mut flat = serde_json::to_value(&report.global)?;
        if let (Some(obj), Some(org)) = (flat.as_object_mut(), report.organizations.first()) {
            if let Value::Object(fields) = serde_json::to_value(org)? {
                obj.extend(fields);
            }
        }
        return Ok(Json(flat));
    }
    Ok(Json(serde_json::to_value(&report)?))
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
) -> Result<Json<Value>, ApiError> {
    let tenant = existing(&state, &caller, &id)?;
    let by = caller.name();
    let was = state.supervisor.unblock(tenant, by).await?;
    Ok(Json(json!({ "success": true, "was_blocked": was })))
}

async fn reset_cooldown(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = existing(&state, &caller, &id)?;
    let by = caller.name();
    let was = state.supervisor.reset_cooldown(tenant, by).await?;
    Ok(Json(json!({ "success": true, "was_cooling": was })))
}

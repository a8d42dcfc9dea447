//! `GET /api/v1/fleet` (admin): the nodes of this node's fleet — where each
//! is reached, its egress, capacity and last heartbeat, and the tenants it
//! holds a live lease on, at which epoch. A single node answers
//! `enabled: false`.
//!
//! `POST /api/v1/fleet/tenants/{id}/move` (admin) `{"to": "<node>"}` moves a
//! tenant to that node: its owner gives it up as on a drain (browsers
//! closed, profiles stored) and the target, for which it is reserved a
//! while, claims it and brings its sessions back without a QR.
//!
//! The fleet's side is behind [`FleetStatus`] (the binary implements it on
//! PostgreSQL), so this crate never sees it.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{AppJson, AppPath};
use crate::openapi::{Access, Doc, Routes};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use centinela_actors::clock::Timestamp;
use centinela_actors::ids::TenantId;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

/// What the fleet looks like from this node.
#[async_trait::async_trait]
pub trait FleetStatus: Send + Sync + 'static {
    /// `Err` when the fleet's database cannot be read (said in the 503).
    async fn status(&self) -> Result<FleetView, String>;
    /// Asks for `tenant` to move to node `to`.
    async fn move_tenant(&self, tenant: &TenantId, to: &str) -> Result<MoveView, MoveRefusal>;
}

/// A move asked for.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MoveView {
    pub tenant: String,
    /// The node that hosts it now; absent when none does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub to: String,
    /// Reserved for `to` until then; after that any node may take it.
    pub until: Timestamp,
}

/// Why a move was not asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveRefusal {
    /// No such node (404 `unknown_node`).
    UnknownNode(String),
    /// 409 with the code (`node_not_live`, `node_full`, `already_there`,
    /// `not_hosted`) and why.
    Refused(&'static str, String),
    /// The fleet's database cannot be reached (503).
    Unavailable(String),
}

/// Where to move a tenant.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveTo {
    /// The node's id (`GET /api/v1/fleet` lists them).
    to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FleetView {
    /// False on a single node (no `fleet.database_url`).
    pub enabled: bool,
    /// This node's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub nodes: Vec<NodeView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct NodeView {
    pub id: String,
    pub advertise_url: String,
    /// The egress identity its direct sessions are counted against.
    pub egress: String,
    /// Tenants it may own.
    pub capacity: u32,
    /// Its last heartbeat (the database's clock).
    pub heartbeat_at: Timestamp,
    /// How many tenants it holds now.
    pub owned: usize,
    pub tenants: Vec<OwnedTenant>,
}

/// A tenant a node holds a live lease on.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OwnedTenant {
    pub tenant: String,
    /// Grows each time the tenant changes hands.
    pub epoch: i64,
    pub lease_until: Timestamp,
    /// The node an operator is moving it to, while that move is pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moving_to: Option<String>,
}

pub fn routes() -> Routes {
    Routes::new()
        .route(
            "/api/v1/fleet/tenants/{id}/move",
            post(move_tenant),
            vec![Doc::new(
                "POST",
                "fleet",
                "Move a tenant to another node: its sessions close there and come back on that node without a QR (admin)",
                Access::Admin,
                &[
                    (202, "asked: the owner gives it up at its next round, the target takes it"),
                    (400, "bad input"),
                    (401, "no credentials"),
                    (403, "not an admin"),
                    (404, "unknown tenant or node"),
                    (409, "not_in_a_fleet, node_not_live, node_full, already_there or not_hosted"),
                    (503, "the fleet's database is unavailable"),
                ],
            )
            .body::<MoveTo>(json!({"to": "node-b"}))
            .reply::<MoveView>()],
        )
        .route(
        "/api/v1/fleet",
        get(fleet),
        vec![Doc::new(
            "GET",
            "fleet",
            "The fleet's nodes and the tenants each holds (admin)",
            Access::Admin,
            &[
                (200, "the fleet, or enabled: false on a single node"),
                (401, "no credentials"),
                (403, "not an admin"),
                (503, "the fleet's database is unavailable"),
            ],
        )
        .reply::<FleetView>()],
    )
}

async fn fleet(State(state): State<AppState>, caller: Caller) -> Result<Json<FleetView>, ApiError> {
    caller.require_admin()?;
    let Some(fleet) = &state.fleet else {
        return Ok(Json(FleetView {
            enabled: false,
            node: None,
            nodes: Vec::new(),
        }));
    };
    fleet
        .status()
        .await
        .map(Json)
        .map_err(|why| ApiError::Later {
            code: "fleet_unavailable",
            message: format!("the fleet's database is unavailable: {why}"),
            retry_after_secs: 5,
        })
}

async fn move_tenant(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<MoveTo>,
) -> Result<(StatusCode, Json<MoveView>), ApiError> {
    caller.require_admin()?;
    let tenant = crate::accounts::existing_tenant(&state, &caller, &id)?.id;
    let Some(fleet) = &state.fleet else {
        return Err(ApiError::conflict(
            "not_in_a_fleet",
            "this server is a single node: there is nowhere to move a tenant to",
        ));
    };
    let to = body.to.trim();
    if to.is_empty() || to.len() > 255 {
        return Err(ApiError::bad_request(
            "invalid_node",
            "to must be a node's id",
        ));
    }
    match fleet.move_tenant(&tenant, to).await {
        Ok(asked) => {
            tracing::info!(tenant = %tenant, to = %asked.to, from = ?asked.from, by = %caller.name(), "tenant move asked");
            Ok((StatusCode::ACCEPTED, Json(asked)))
        }
        Err(MoveRefusal::UnknownNode(node)) => Err(ApiError::NotFound(format!(
            "node {node} is not in the fleet"
        ))),
        Err(MoveRefusal::Refused(code, why)) => Err(ApiError::conflict(code, why)),
        Err(MoveRefusal::Unavailable(why)) => Err(ApiError::Later {
            code: "fleet_unavailable",
            message: format!("the fleet's database is unavailable: {why}"),
            retry_after_secs: 5,
        }),
    }
}

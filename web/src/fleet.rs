//! `GET /api/v1/fleet` (admin): the nodes of this node's fleet — where each
//! is reached, its egress, capacity and last heartbeat, and the tenants it
//! holds a live lease on, at which epoch. A single node answers
//! `enabled: false`. The fleet's side is behind [`FleetStatus`] (the
//! binary implements it on PostgreSQL), so this crate never sees it.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::openapi::{Access, Doc, Routes};
use crate::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::Json;
use centinela_actors::clock::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

/// What the fleet looks like from this node.
#[async_trait::async_trait]
pub trait FleetStatus: Send + Sync + 'static {
    /// `Err` when the fleet's database cannot be read (said in the 503).
    async fn status(&self) -> Result<FleetView, String>;
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
}

pub fn routes() -> Routes {
    Routes::new().route(
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

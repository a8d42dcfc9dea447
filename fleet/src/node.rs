//! The `nodes` table: who is in the fleet, where to reach them, which egress
//! their direct sessions leave through, and how many tenants each may own.
//! A node registers at start and heartbeats while it runs; whether a node
//! is alive for ownership is decided by its leases ([`crate::lease`]), not
//! by its heartbeat.

use crate::{Fleet, FleetError};
use std::fmt;

/// A node's id (`fleet.node_id`, by default the host name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    /// Any non-blank string of at most 255 characters.
    pub fn new(id: impl Into<String>) -> Option<Self> {
        let id = id.into();
        (!id.trim().is_empty() && id.chars().count() <= 255).then_some(Self(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a node says about itself when it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub id: NodeId,
    /// Where other nodes (and a router in front) reach this one.
    pub advertise_url: String,
    /// The egress identity of its direct sessions: the hourly budget is
    /// counted per egress, so nodes behind one address share one.
    pub egress: String,
    /// Tenants it owns at most ([`crate::Leases::claim_orphans`] stops there).
    pub capacity: u32,
}

impl Fleet {
    /// Adds the node, or updates it if it registered before (a restart);
    /// the heartbeat is the database's now.
    pub async fn register(&self, spec: &NodeSpec) -> Result<(), FleetError> {
        sqlx::query(
            "INSERT INTO nodes (id, advertise_url, egress, capacity, heartbeat_at)
             VALUES ($1, $2, $3, $4, now())
             ON CONFLICT (id) DO UPDATE SET advertise_url = EXCLUDED.advertise_url,
                 egress = EXCLUDED.egress, capacity = EXCLUDED.capacity, heartbeat_at = now()",
        )
        .bind(spec.id.as_str())
        .bind(&spec.advertise_url)
        .bind(&spec.egress)
        .bind(i32::try_from(spec.capacity).unwrap_or(i32::MAX))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Stamps the node's heartbeat with the database's now. Fails with
    /// [`FleetError::UnknownNode`] if it is not registered.
    pub async fn heartbeat(&self, node: &NodeId) -> Result<(), FleetError> {
        let done = sqlx::query("UPDATE nodes SET heartbeat_at = now() WHERE id = $1")
            .bind(node.as_str())
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(FleetError::UnknownNode(node.clone()));
        }
        Ok(())
    }
}

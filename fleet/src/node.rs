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

/// A node as the `nodes` table has it, with the tenants it holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub spec: NodeSpec,
    /// The database's time of its last heartbeat.
    pub heartbeat_at: centinela_actors::clock::Timestamp,
    /// Tenants with a live lease of this node.
    pub tenants: Vec<HeldTenant>,
}

/// A tenant a node holds a live lease on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldTenant {
    pub tenant: String,
    pub epoch: i64,
    pub lease_until: centinela_actors::clock::Timestamp,
    /// The node an operator is moving it to, while that move is pending.
    pub moving_to: Option<String>,
}

impl Fleet {
    /// Every registered node, by id, with the tenants it holds a live lease
    /// on (the database's clock decides which leases are live).
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, FleetError> {
        use sqlx::Row;
        let nodes = sqlx::query(
            "SELECT id, advertise_url, egress, capacity,
                    (extract(epoch FROM heartbeat_at) * 1000)::bigint AS heartbeat_ms
             FROM nodes ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        let leases = sqlx::query(
            "SELECT owner, tenant, epoch,
                    (extract(epoch FROM lease_until) * 1000)::bigint AS until_ms,
                    CASE WHEN move_until >= now() AND move_to <> owner THEN move_to END
                        AS moving_to
             FROM tenant_owners WHERE owner IS NOT NULL AND lease_until >= now()
             ORDER BY owner, tenant",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(nodes.len());
        for row in &nodes {
            let id: String = row.try_get("id")?;
            let capacity: i32 = row.try_get("capacity")?;
            let tenants = leases
                .iter()
                .filter(|l| l.try_get::<String, _>("owner").ok().as_deref() == Some(id.as_str()))
                .map(|l| {
                    Ok(HeldTenant {
                        tenant: l.try_get("tenant")?,
                        epoch: l.try_get("epoch")?,
                        lease_until: centinela_actors::clock::Timestamp::from_millis(
                            l.try_get("until_ms")?,
                        ),
                        moving_to: l.try_get("moving_to")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            out.push(NodeRow {
                spec: NodeSpec {
                    id: NodeId::new(id).ok_or_else(|| FleetError::Corrupt {
                        table: "nodes",
                        why: "blank id".into(),
                    })?,
                    advertise_url: row.try_get("advertise_url")?,
                    egress: row.try_get("egress")?,
                    capacity: u32::try_from(capacity).unwrap_or(0),
                },
                heartbeat_at: centinela_actors::clock::Timestamp::from_millis(
                    row.try_get("heartbeat_ms")?,
                ),
                tenants,
            });
        }
        Ok(out)
    }
}

impl Fleet {
    /// The node holding a live lease on `tenant` (the database's clock) and
    /// where it is reached: `(node id, advertise_url)`.
    pub async fn owner_at(
        &self,
        tenant: &centinela_actors::ids::TenantId,
    ) -> Result<Option<(String, String)>, FleetError> {
        use sqlx::Row;
        let row = sqlx::query(
            "SELECT n.id, n.advertise_url FROM tenant_owners o JOIN nodes n ON n.id = o.owner
             WHERE o.tenant = $1 AND o.lease_until >= now()",
        )
        .bind(tenant.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| Ok((r.try_get("id")?, r.try_get("advertise_url")?)))
            .transpose()
    }
}

impl Fleet {
    /// Every node whose heartbeat is at most `within` old (the database's
    /// clock): `(node id, advertise_url)`, by id.
    pub async fn live_nodes(
        &self,
        within: std::time::Duration,
    ) -> Result<Vec<(String, String)>, FleetError> {
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT id, advertise_url FROM nodes
             WHERE heartbeat_at >= now() - make_interval(secs => $1) ORDER BY id",
        )
        .bind(within.as_secs_f64())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("advertise_url")?)))
            .collect()
    }
}

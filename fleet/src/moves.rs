//! Moving a tenant to a chosen node ([`Fleet::move_tenant`]): an
//! operator's rebalancing, one tenant at a time — onto a node just added,
//! or off a node about to be drained. Nothing moves by itself: a tenant
//! changing hands restarts its sessions' browsers, which WhatsApp sees, so
//! it happens only when asked.
//!
//! Asking writes the target into the tenant's ownership row. The owner's
//! membership loop finds it at its next round ([`crate::Leases::moving`])
//! and gives the tenant up as on a drain — its browsers closed, their
//! profiles stored, the lease released — and the target claims it at its
//! next round (the tenant is reserved for it: no other node's claim
//! matches it), restores the profiles and starts the sessions without a
//! QR. If the target does not claim it within the move's time (it died,
//! or filled up), the reservation lapses and any node may.

use crate::{Fleet, FleetError, NodeId};
use centinela_actors::clock::Timestamp;
use centinela_actors::ids::TenantId;
use sqlx::Row;
use std::time::Duration;

/// A move asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveAsked {
    pub tenant: TenantId,
    /// The node that hosts it now; `None` when nobody does (the target
    /// claims it at its next round).
    pub from: Option<NodeId>,
    pub to: NodeId,
    /// Until when only the target may claim it.
    pub until: Timestamp,
}

/// Why a move is not asked for.
#[derive(Debug, thiserror::Error)]
pub enum MoveRefused {
    #[error("node {0} is not in the fleet")]
    UnknownNode(String),
    #[error("node {0} has not been heard from within a lease: it may be down")]
    NotLive(String),
    #[error("node {0} hosts as many tenants as its capacity")]
    Full(String),
    #[error("tenant {0} is on node {1} already")]
    AlreadyThere(TenantId, String),
    #[error(
        "no node has hosted tenant {0} yet: its first session starts on the node that creates it"
    )]
    NotHosted(TenantId),
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

impl From<sqlx::Error> for MoveRefused {
    fn from(e: sqlx::Error) -> Self {
        Self::Fleet(FleetError::Db(e))
    }
}

impl Fleet {
    /// Asks for `tenant` to move to node `to` (live within `ttl`, with room
    /// for one more tenant): reserved for it for `max(4 ttl, 60 s)`.
    pub async fn move_tenant(
        &self,
        tenant: &TenantId,
        to: &str,
        ttl: Duration,
    ) -> Result<MoveAsked, MoveRefused> {
        let mut tx = self.pool().begin().await?;
        let target = sqlx::query(
            "SELECT capacity, heartbeat_at >= now() - make_interval(secs => $2) AS live
             FROM nodes WHERE id = $1 FOR SHARE",
        )
        .bind(to)
        .bind(ttl.as_secs_f64())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| MoveRefused::UnknownNode(to.to_owned()))?;
        if !target.try_get::<bool, _>("live")? {
            return Err(MoveRefused::NotLive(to.to_owned()));
        }
        let row = sqlx::query(
            "SELECT owner, lease_until >= now() AS live FROM tenant_owners
             WHERE tenant = $1 FOR UPDATE",
        )
        .bind(tenant.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| MoveRefused::NotHosted(tenant.clone()))?;
        let owner: Option<String> = row.try_get("owner")?;
        let live: Option<bool> = row.try_get("live")?;
        let from = owner.filter(|_| live == Some(true));
        if from.as_deref() == Some(to) {
            return Err(MoveRefused::AlreadyThere(tenant.clone(), to.to_owned()));
        }
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tenant_owners WHERE owner = $1 AND lease_until >= now()",
        )
        .bind(to)
        .fetch_one(&mut *tx)
        .await?;
        if held >= i64::from(target.try_get::<i32, _>("capacity")?) {
            return Err(MoveRefused::Full(to.to_owned()));
        }
        let grace = (ttl * 4).max(Duration::from_secs(60));
        let until_ms: i64 = sqlx::query_scalar(
            "UPDATE tenant_owners
             SET move_to = $2, move_until = now() + make_interval(secs => $3)
             WHERE tenant = $1
             RETURNING (extract(epoch FROM move_until) * 1000)::bigint",
        )
        .bind(tenant.as_str())
        .bind(to)
        .bind(grace.as_secs_f64())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let node = |id: String| {
            NodeId::new(id).ok_or_else(|| FleetError::Corrupt {
                table: "tenant_owners",
                why: "blank node id".into(),
            })
        };
        Ok(MoveAsked {
            tenant: tenant.clone(),
            from: from.map(node).transpose()?,
            to: node(to.to_owned())?,
            until: Timestamp::from_millis(until_ms),
        })
    }
}

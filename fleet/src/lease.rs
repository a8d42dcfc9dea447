//! Tenant ownership: each tenant is owned by at most one node, for a lease
//! that the owner renews. Taking a tenant — free, orphaned by a node whose
//! lease ran out, or first seen — is one conditional `UPDATE` that bumps the
//! tenant's `epoch`, and every lease end is `now() + ttl` on the database's
//! clock, so a node with a wrong clock can neither keep nor steal a tenant.
//!
//! The epoch is the fence: a write about a tenant carries `AND epoch =
//! $epoch` ([`Leases::fence`], [`Leases::release`]), and a node that was
//! paused past its lease and comes back matches zero rows and gets
//! [`FleetError::Fenced`] — its cue to stop that tenant's browsers at once.
//! The renewal loop with its margin, and what a node does on losing a
//! tenant, are [`crate::member`]'s.

use crate::{Fleet, FleetError, NodeId};
use centinela_actors::ids::TenantId;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{PgConnection, Row};
use std::fmt;
use std::time::Duration;

/// How many times a tenant has changed hands; grows with every claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub i64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A tenant this node holds, at the epoch it won it with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lease {
    pub tenant: TenantId,
    pub epoch: Epoch,
}

/// What a fenced write carries: the lease, and the node's side of the
/// table that can check it ([`Fence::check`]).
#[derive(Debug, Clone, Copy)]
pub struct Fence<'a> {
    pub leases: &'a Leases,
    pub lease: &'a Lease,
}

impl Fence<'_> {
    /// [`Leases::fence`] for a write about `tenant`: a lease on another
    /// tenant fences too.
    pub async fn check(
        &self,
        conn: &mut PgConnection,
        tenant: &TenantId,
    ) -> Result<(), FleetError> {
        if self.lease.tenant != *tenant {
            return Err(FleetError::Fenced {
                tenant: tenant.clone(),
                epoch: self.lease.epoch,
            });
        }
        self.leases.fence(conn, self.lease).await
    }
}

/// One node's side of the ownership table.
#[derive(Debug, Clone)]
pub struct Leases {
    pool: PgPool,
    node: NodeId,
    ttl_ms: i64,
}

impl Leases {
    /// The leases of `node` (registered with [`Fleet::register`]), each
    /// lasting `ttl` from its last claim or renewal.
    pub fn new(fleet: &Fleet, node: NodeId, ttl: Duration) -> Self {
        Self {
            pool: fleet.pool().clone(),
            node,
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
        }
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// Makes the tenant known to the fleet, unowned, if it is not yet: an
    /// orphan any node may claim.
    pub async fn enroll(&self, tenant: &TenantId) -> Result<(), FleetError> {
        sqlx::query("INSERT INTO tenant_owners (tenant) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(tenant.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Takes the tenant if nobody holds a live lease on it: free, expired,
    /// or ours already (then the lease is extended and the epoch kept).
    /// `None`: another node holds it. A claim by name does not look at the
    /// node's capacity; [`Leases::claim_orphans`] does.
    ///
    /// One statement: a tenant not known yet is inserted already owned
    /// (epoch 1), never as an orphan first, which another node's
    /// [`Leases::claim_orphans`] could take between two statements.
    pub async fn claim(&self, tenant: &TenantId) -> Result<Option<Lease>, FleetError> {
        let row = sqlx::query(
            "INSERT INTO tenant_owners AS o (tenant, owner, epoch, lease_until)
             VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond')
             ON CONFLICT (tenant) DO UPDATE
             SET epoch = CASE WHEN o.owner = $2 AND o.lease_until >= now()
                              THEN o.epoch ELSE o.epoch + 1 END,
                 owner = $2,
                 lease_until = EXCLUDED.lease_until,
                 move_to = CASE WHEN o.owner = $2 AND o.lease_until >= now()
                                THEN o.move_to END,
                 move_until = CASE WHEN o.owner = $2 AND o.lease_until >= now()
                                   THEN o.move_until END
             WHERE (o.owner = $2 AND o.lease_until >= now())
                OR ((o.owner IS NULL OR o.lease_until < now())
                    AND (o.move_to IS NULL OR o.move_to = $2 OR o.move_until < now()))
             RETURNING o.tenant, o.epoch",
        )
        .bind(tenant.as_str())
        .bind(self.node.as_str())
        .bind(self.ttl_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(lease_of).transpose()
    }

    /// Extends every live lease of this node in one statement and answers
    /// the ones it still holds. A lease that ran out is not revived (another
    /// node may have it, or may be about to): the caller treats every
    /// tenant missing from the answer as lost.
    pub async fn renew(&self) -> Result<Vec<Lease>, FleetError> {
        let rows = sqlx::query(
            "UPDATE tenant_owners SET lease_until = now() + $2 * interval '1 millisecond'
             WHERE owner = $1 AND lease_until >= now()
             RETURNING tenant, epoch",
        )
        .bind(self.node.as_str())
        .bind(self.ttl_ms)
        .fetch_all(&self.pool)
        .await?;
        sorted(rows.iter().map(lease_of).collect())
    }

    /// Claims up to `limit` orphaned tenants (no owner, or a lease that ran
    /// out), never beyond this node's free capacity (its `capacity` less the
    /// live leases it holds). Rows another node is claiming at the same
    /// moment are skipped (`FOR UPDATE SKIP LOCKED`), so two nodes never
    /// take the same tenant and neither waits for the other.
    pub async fn claim_orphans(&self, limit: u32) -> Result<Vec<Lease>, FleetError> {
        let mut tx = self.pool.begin().await?;
        // Locking our own node row serialises this node's claims, so two of
        // its own loops cannot both fill the same free capacity.
        let capacity: Option<i32> =
            sqlx::query_scalar("SELECT capacity FROM nodes WHERE id = $1 FOR UPDATE")
                .bind(self.node.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(capacity) = capacity else {
            return Err(FleetError::UnknownNode(self.node.clone()));
        };
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tenant_owners WHERE owner = $1 AND lease_until >= now()",
        )
        .bind(self.node.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let free = (i64::from(capacity) - held).clamp(0, i64::from(limit));
        if free == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "WITH picked AS (
                 SELECT tenant FROM tenant_owners
                 WHERE (owner IS NULL OR lease_until < now())
                   AND (move_to IS NULL OR move_to = $1 OR move_until < now())
                 ORDER BY move_to = $1 IS NOT TRUE, tenant
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED)
             UPDATE tenant_owners o
             SET owner = $1, epoch = o.epoch + 1,
                 lease_until = now() + $2 * interval '1 millisecond',
                 move_to = NULL, move_until = NULL
             FROM picked WHERE o.tenant = picked.tenant
             RETURNING o.tenant, o.epoch",
        )
        .bind(self.node.as_str())
        .bind(self.ttl_ms)
        .bind(free)
        .fetch_all(&mut *tx)
        .await?;
        let leases = sorted(rows.iter().map(lease_of).collect())?;
        tx.commit().await?;
        Ok(leases)
    }

    /// The live leases of this node whose tenant an operator is moving to
    /// another node ([`Fleet::move_tenant`]): the node gives each up like
    /// on a drain, and only the target may claim it until the move's time
    /// is up.
    pub async fn moving(&self) -> Result<Vec<Lease>, FleetError> {
        let rows = sqlx::query(
            "SELECT tenant, epoch FROM tenant_owners
             WHERE owner = $1 AND lease_until >= now()
               AND move_to IS NOT NULL AND move_to <> $1 AND move_until >= now()",
        )
        .bind(self.node.as_str())
        .fetch_all(&self.pool)
        .await?;
        sorted(rows.iter().map(lease_of).collect())
    }

    /// Gives the tenant up (a drain): unowned, an orphan for any node.
    /// [`FleetError::Fenced`] if we no longer held it at that epoch.
    pub async fn release(&self, lease: &Lease) -> Result<(), FleetError> {
        let done = sqlx::query(
            "UPDATE tenant_owners SET owner = NULL, lease_until = NULL
             WHERE tenant = $1 AND owner = $2 AND epoch = $3",
        )
        .bind(lease.tenant.as_str())
        .bind(self.node.as_str())
        .bind(lease.epoch.0)
        .execute(&self.pool)
        .await?;
        fenced_unless_one(done.rows_affected(), lease)
    }

    /// The fence for a write about a tenant, inside the caller's
    /// transaction: passes only while this node holds a live lease on the
    /// tenant at `lease.epoch`, and holds the ownership row (`FOR SHARE`)
    /// until the transaction ends, so no claim can take the tenant between
    /// the check and the commit. Zero rows is [`FleetError::Fenced`].
    ///
    /// ```no_run
    /// # use centinela_fleet::{Fleet, FleetError, Lease, Leases};
    /// # async fn write(fleet: &Fleet, leases: &Leases, lease: &Lease) -> Result<(), FleetError> {
    /// let mut tx = fleet.pool().begin().await?;
    /// leases.fence(&mut tx, lease).await?;
    /// sqlx::query("UPDATE nodes SET heartbeat_at = now() WHERE id = $1")
    ///     .bind(leases.node().as_str())
    ///     .execute(&mut *tx)
    ///     .await?;
    /// tx.commit().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn fence(&self, conn: &mut PgConnection, lease: &Lease) -> Result<(), FleetError> {
        let held = sqlx::query(
            "SELECT 1 FROM tenant_owners
             WHERE tenant = $1 AND owner = $2 AND epoch = $3 AND lease_until >= now()
             FOR SHARE",
        )
        .bind(lease.tenant.as_str())
        .bind(self.node.as_str())
        .bind(lease.epoch.0)
        .fetch_optional(conn)
        .await?;
        fenced_unless_one(u64::from(held.is_some()), lease)
    }

    /// Who owns the tenant now (a live lease) and at which epoch.
    pub async fn owner_of(&self, tenant: &TenantId) -> Result<Option<(NodeId, Epoch)>, FleetError> {
        let row = sqlx::query(
            "SELECT owner, epoch FROM tenant_owners
             WHERE tenant = $1 AND owner IS NOT NULL AND lease_until >= now()",
        )
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let owner: String = row.try_get("owner")?;
        let node = NodeId::new(owner).ok_or_else(|| corrupt("blank owner"))?;
        Ok(Some((node, Epoch(row.try_get("epoch")?))))
    }
}

/// A fenced write's affected-row count: exactly one, or the lease is gone.
fn fenced_unless_one(rows: u64, lease: &Lease) -> Result<(), FleetError> {
    if rows == 1 {
        return Ok(());
    }
    Err(FleetError::Fenced {
        tenant: lease.tenant.clone(),
        epoch: lease.epoch,
    })
}

fn lease_of(row: &PgRow) -> Result<Lease, FleetError> {
    let tenant: String = row.try_get("tenant")?;
    Ok(Lease {
        tenant: TenantId::new(tenant).map_err(|e| corrupt(&e.to_string()))?,
        epoch: Epoch(row.try_get("epoch")?),
    })
}

fn sorted(leases: Result<Vec<Lease>, FleetError>) -> Result<Vec<Lease>, FleetError> {
    let mut leases = leases?;
    leases.sort();
    Ok(leases)
}

fn corrupt(why: &str) -> FleetError {
    FleetError::Corrupt {
        table: "tenant_owners",
        why: why.to_owned(),
    }
}

//! Sealed profile snapshots in PostgreSQL: the owner of a tenant stores
//! each session's packed browser profile ([`crate::profile`]) here, and a
//! node that wins the tenant reads it back and unpacks it before it
//! launches Chromium, so the session comes back READY without a QR.
//!
//! Writes are fenced: [`Snapshots::put`] and [`Snapshots::delete`] run
//! [`Leases::fence`] in their transaction, so a node that lost the tenant
//! (paused past its lease, cut off) can neither put an old pairing over
//! the new owner's nor bring back a pairing that was logged out. Reads are
//! not fenced: the reader has just won the lease.
//!
//! The database never sees a profile in the clear: the caller seals the
//! packed bytes with `SecretBox::seal_bytes(&packed.bytes, &aad(tenant,
//! session))` ([`seal`] does it), and the associated data ties a snapshot
//! to its tenant and session, so a row copied onto another session's does
//! not open. Not here: when to snapshot, and deleting a purged tenant's
//! rows (the purge should, by the `tenant` index).

use crate::lease::{Epoch, Lease, Leases};
use crate::profile::Packed;
use crate::{Fleet, FleetError};
use centinela_actors::clock::Timestamp;
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::secret::{SecretBox, SecretError};
use sqlx::postgres::PgPool;
use sqlx::Row;

/// The associated data a session's snapshot is sealed with:
/// `profile\0<tenant>\0<session>`. Ids cannot hold NUL, so no two
/// (tenant, session) pairs share one.
pub fn aad(tenant: &TenantId, session: &SessionId) -> Vec<u8> {
    [
        &b"profile\0"[..],
        tenant.as_str().as_bytes(),
        b"\0",
        session.as_str().as_bytes(),
    ]
    .concat()
}

/// `packed`'s bytes sealed for `tenant`'s `session`, ready for
/// [`Snapshots::put`].
pub fn seal(
    secrets: &SecretBox,
    tenant: &TenantId,
    session: &SessionId,
    packed: &Packed,
) -> Vec<u8> {
    secrets.seal_bytes(&packed.bytes, &aad(tenant, session))
}

/// A stored snapshot, still sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub tenant: TenantId,
    /// The lease epoch of the node that wrote it.
    pub epoch: Epoch,
    /// When it was written, on the database's clock.
    pub taken_at: Timestamp,
    /// The packed profile's length and SHA-256, before sealing.
    pub size: u64,
    pub sha256: [u8; 32],
    pub sealed: Vec<u8>,
}

impl Snapshot {
    /// The packed profile, opened with the associated data of `session`
    /// and this row's tenant. [`SecretError::Open`] if the key is not the
    /// one it was sealed with, or if the row was sealed for another
    /// session or tenant.
    pub fn open(&self, secrets: &SecretBox, session: &SessionId) -> Result<Vec<u8>, SecretError> {
        secrets.open_bytes(&self.sealed, &aad(&self.tenant, session))
    }
}

/// The `profile_snapshots` table.
#[derive(Debug, Clone)]
pub struct Snapshots {
    pool: PgPool,
}

impl Snapshots {
    pub fn new(fleet: &Fleet) -> Self {
        Self {
            pool: fleet.pool().clone(),
        }
    }

    /// Stores `sealed` as `session`'s snapshot, with the packed profile's
    /// `sha256` and `size`, if `lease` (this node's, on the session's
    /// tenant) is still live: else [`FleetError::Fenced`] and nothing is
    /// written. A row written at a higher epoch is never replaced (also
    /// `Fenced`), and a session whose row belongs to another tenant is
    /// [`FleetError::ForeignSession`].
    pub async fn put(
        &self,
        leases: &Leases,
        lease: &Lease,
        session: &SessionId,
        sealed: &[u8],
        sha256: &[u8; 32],
        size: u64,
    ) -> Result<(), FleetError> {
        let mut tx = self.pool.begin().await?;
        leases.fence(&mut tx, lease).await?;
        let existing = sqlx::query(
            "SELECT tenant, epoch FROM profile_snapshots WHERE session = $1 FOR UPDATE",
        )
        .bind(session.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let tenant: String = row.try_get("tenant")?;
            if tenant != lease.tenant.as_str() {
                return Err(FleetError::ForeignSession(session.clone()));
            }
            if row.try_get::<i64, _>("epoch")? > lease.epoch.0 {
                return Err(fenced(lease));
            }
        }
        let written = sqlx::query(
            "INSERT INTO profile_snapshots (session, tenant, epoch, size, sha256, sealed)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (session) DO UPDATE
             SET epoch = EXCLUDED.epoch, taken_at = now(), size = EXCLUDED.size,
                 sha256 = EXCLUDED.sha256, sealed = EXCLUDED.sealed
             WHERE profile_snapshots.tenant = EXCLUDED.tenant
               AND profile_snapshots.epoch <= EXCLUDED.epoch",
        )
        .bind(session.as_str())
        .bind(lease.tenant.as_str())
        .bind(lease.epoch.0)
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .bind(&sha256[..])
        .bind(sealed)
        .execute(&mut *tx)
        .await?;
        // The checks above hold the row; this only backs them up.
        if written.rows_affected() != 1 {
            return Err(fenced(lease));
        }
        tx.commit().await?;
        Ok(())
    }

    /// `session`'s snapshot, if one is stored.
    pub async fn get(&self, session: &SessionId) -> Result<Option<Snapshot>, FleetError> {
        let row = sqlx::query(
            "SELECT tenant, epoch, size, sha256, sealed,
                    (extract(epoch FROM taken_at) * 1000)::bigint AS taken_ms
             FROM profile_snapshots WHERE session = $1",
        )
        .bind(session.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let tenant: String = row.try_get("tenant")?;
        let sha256: Vec<u8> = row.try_get("sha256")?;
        let size: i64 = row.try_get("size")?;
        Ok(Some(Snapshot {
            tenant: TenantId::new(tenant).map_err(|e| corrupt(e.to_string()))?,
            epoch: Epoch(row.try_get("epoch")?),
            taken_at: Timestamp::from_millis(row.try_get("taken_ms")?),
            size: u64::try_from(size).map_err(|_| corrupt("negative size".into()))?,
            sha256: sha256
                .try_into()
                .map_err(|_| corrupt("sha256 is not 32 bytes".into()))?,
            sealed: row.try_get("sealed")?,
        }))
    }

    /// Deletes `session`'s snapshot (a logout: that pairing must not come
    /// back on any node), if `lease` is still live, else
    /// [`FleetError::Fenced`] and the row stays. `false` if there was none
    /// of the lease's tenant.
    pub async fn delete(
        &self,
        leases: &Leases,
        lease: &Lease,
        session: &SessionId,
    ) -> Result<bool, FleetError> {
        let mut tx = self.pool.begin().await?;
        leases.fence(&mut tx, lease).await?;
        let done = sqlx::query("DELETE FROM profile_snapshots WHERE session = $1 AND tenant = $2")
            .bind(session.as_str())
            .bind(lease.tenant.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}

fn fenced(lease: &Lease) -> FleetError {
    FleetError::Fenced {
        tenant: lease.tenant.clone(),
        epoch: lease.epoch,
    }
}

fn corrupt(why: String) -> FleetError {
    FleetError::Corrupt {
        table: "profile_snapshots",
        why,
    }
}

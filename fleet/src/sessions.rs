//! Session records shared by the fleet ([`FleetSessions`]): PostgreSQL is
//! the truth that every node reads and a new owner restores from; the
//! node's own redb store keeps a mirror of the sessions it hosts, because
//! what reads session records there (the risk view, the verification
//! codes' sends) checks a session's tenant in that store.
//!
//! Only the tenant's owner writes: every write is fenced on the lease this
//! node holds ([`Owned`]) inside the write's transaction, so a node that
//! lost the tenant writes nothing ([`StoreError::NotHeld`]).
//!
//! The store trait is synchronous: each call runs its query through
//! [`crate::blocking`] (`block_in_place` on the multi-threaded runtime).

use crate::blocking::block_on;
use crate::fencing::Fencing;
use crate::lease::Leases;
use crate::owned::Owned;
use crate::{Fleet, FleetError};
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::store::{SessionRecord, SessionRepo, Store, StoreError};

/// The fleet's session records, fenced, mirrored into the node's store.
#[derive(Clone, Debug)]
pub struct FleetSessions {
    fencing: Fencing,
    local: Store,
}

impl FleetSessions {
    pub fn new(fleet: &Fleet, leases: Leases, owned: Owned, local: Store) -> Self {
        Self {
            fencing: Fencing::new(fleet, leases, owned),
            local,
        }
    }

    /// Copies `tenant`'s records from the fleet into the node's own store
    /// (before the node hosts it), and drops local records of the tenant
    /// the fleet no longer has. Answers the records, oldest first.
    pub async fn mirror_tenant(&self, tenant: &TenantId) -> Result<Vec<SessionRecord>, FleetError> {
        let records = self.tenant_records(tenant).await?;
        let local = self.local.clone();
        let tenant = tenant.clone();
        let copy = records.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            let records = copy;
            let keep: std::collections::HashSet<_> = records.iter().map(|r| r.id.clone()).collect();
            for old in local.list_sessions()? {
                if old.tenant == tenant && !keep.contains(&old.id) {
                    local.delete_session(&old.id)?;
                }
            }
            for record in &records {
                local.put_session(record)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| corrupt(&e.to_string()))?
        .map_err(|e| corrupt(&e.to_string()))?;
        Ok(records)
    }

    /// `tenant`'s records in the fleet, oldest first.
    pub async fn tenant_records(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<SessionRecord>, FleetError> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT record::text FROM sessions WHERE tenant = $1 ORDER BY id")
                .bind(tenant.as_str())
                .fetch_all(self.fencing.pool())
                .await?;
        let mut records = rows
            .iter()
            .map(|r| decode(r))
            .collect::<Result<Vec<_>, _>>()?;
        records.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(records)
    }

    async fn put(&self, record: &SessionRecord) -> Result<(), FleetError> {
        let json = serde_json::to_string(record).map_err(|e| corrupt(&e.to_string()))?;
        let mut tx = self.fencing.pool().begin().await?;
        let lease = self.fencing.fence(&mut tx, &record.tenant).await?;
        sqlx::query(
            "INSERT INTO sessions (id, tenant, record, epoch) VALUES ($1, $2, $3::text::jsonb, $4)
             ON CONFLICT (id) DO UPDATE SET tenant = EXCLUDED.tenant,
                 record = EXCLUDED.record, epoch = EXCLUDED.epoch",
        )
        .bind(record.id.as_str())
        .bind(record.tenant.as_str())
        .bind(json)
        .bind(lease.epoch.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, FleetError> {
        let Some(record) = self.get(id).await? else {
            return Ok(false);
        };
        let mut tx = self.fencing.pool().begin().await?;
        self.fencing.fence(&mut tx, &record.tenant).await?;
        let done = sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        // Its pairing must not outlive it (sealed, but a pairing still).
        sqlx::query("DELETE FROM profile_snapshots WHERE session = $1 AND tenant = $2")
            .bind(id.as_str())
            .bind(record.tenant.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn get(&self, id: &SessionId) -> Result<Option<SessionRecord>, FleetError> {
        let row: Option<String> =
            sqlx::query_scalar("SELECT record::text FROM sessions WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(self.fencing.pool())
                .await?;
        row.as_deref().map(decode).transpose()
    }

    async fn list(&self) -> Result<Vec<SessionRecord>, FleetError> {
        let rows: Vec<String> = sqlx::query_scalar("SELECT record::text FROM sessions")
            .fetch_all(self.fencing.pool())
            .await?;
        rows.iter().map(|r| decode(r)).collect()
    }
}

impl SessionRepo for FleetSessions {
    fn put_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        block_on(self.put(record))?;
        self.local.put_session(record)
    }

    fn get_session(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        block_on(self.get(id))
    }

    fn list_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        block_on(self.list())
    }

    fn delete_session(&self, id: &SessionId) -> Result<bool, StoreError> {
        let existed = block_on(self.delete(id))?;
        self.local.delete_session(id)?;
        Ok(existed)
    }
}

fn decode(json: &str) -> Result<SessionRecord, FleetError> {
    serde_json::from_str(json).map_err(|e| corrupt(&e.to_string()))
}

fn corrupt(why: &str) -> FleetError {
    FleetError::Corrupt {
        table: "sessions",
        why: why.to_owned(),
    }
}

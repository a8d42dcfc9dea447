//! Each tenant's webhook target and auto-reply rules, shared by the fleet
//! ([`FleetSettings`]): PostgreSQL is their truth, which every node reads
//! and writes; the node that hosts the tenant also keeps them in its own
//! store, because its deliveries and auto-replies read them there (the
//! messages they act on are that node's). A node that starts hosting a
//! tenant copies them into its store first ([`FleetSettings::mirror_tenant`]).
//!
//! Who may write. The node that holds the tenant's lease writes fenced on
//! it, into the fleet and its own store; a node that does not host the
//! tenant writes only into the fleet, and only while no node hosts it (a
//! call for a hosted tenant is sent to its owner: here it is
//! [`StoreError::NotHeld`], 503 `tenant_moving`). A write and a new
//! owner's copy take the tenant's advisory lock, and the copy runs after
//! the lease is won, so a write either lands before the copy reads it or
//! sees the new owner and is refused: the new owner never starts on
//! settings older than the fleet's. The owner's store is written inside
//! the write's transaction, so two writes for one tenant leave the store
//! as they leave the fleet.
//!
//! The webhook target holds the tenant's signing secret: it is stored
//! sealed ([`SecretBox::seal_bytes`], bound to the tenant) under
//! `storage.secret_key`, which every node of a fleet has.

use crate::admission::lock;
use crate::blocking::block_on;
use crate::lease::Leases;
use crate::owned::Owned;
use crate::{Fleet, FleetError};
use centinela_actors::ids::TenantId;
use centinela_actors::secret::SecretBox;
use centinela_actors::store::{
    AutoReplyRepo, AutoReplyRules, Store, StoreError, TenantSettingsRepo, WebhookRepo,
    WebhookTarget,
};
use sqlx::postgres::{PgConnection, PgPool};
use std::sync::Arc;

const WEBHOOK: &str = "webhook";
const AUTO_REPLIES: &str = "auto_replies";

/// The fleet's tenant settings, fenced by this node's leases and copied
/// into its store for the tenants it hosts.
#[derive(Clone)]
pub struct FleetSettings {
    pool: PgPool,
    leases: Leases,
    owned: Owned,
    local: Store,
    sealing: Arc<SecretBox>,
}

impl std::fmt::Debug for FleetSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetSettings")
            .field("node", self.leases.node())
            .finish_non_exhaustive()
    }
}

/// A tenant's settings as the fleet has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantSettings {
    pub webhook: Option<WebhookTarget>,
    pub auto_replies: AutoReplyRules,
}

impl FleetSettings {
    pub fn new(
        fleet: &Fleet,
        leases: Leases,
        owned: Owned,
        local: Store,
        sealing: Arc<SecretBox>,
    ) -> Self {
        Self {
            pool: fleet.pool().clone(),
            leases,
            owned,
            local,
            sealing,
        }
    }

    /// Copies `tenant`'s settings from the fleet into the node's store
    /// (before the node hosts it; the tenant's record must be there
    /// already), replacing what the store had of them. Answers them.
    pub async fn mirror_tenant(&self, tenant: &TenantId) -> Result<TenantSettings, FleetError> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, "settings", tenant.as_str()).await?;
        let settings = self.read(&mut tx, tenant).await?;
        let local = self.local.clone();
        let copy = settings.clone();
        let tenant_id = tenant.clone();
        // Written while the lock is held: a write that waits for it finds
        // this node the owner and writes the store after this copy.
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            match &copy.webhook {
                Some(target) => {
                    local.set_target(target)?;
                }
                None => {
                    local.delete_target(&tenant_id)?;
                }
            }
            local.set_auto_replies(&tenant_id, &copy.auto_replies)?;
            Ok(())
        })
        .await
        .map_err(|e| corrupt(&e.to_string()))?
        .map_err(|e| corrupt(&e.to_string()))?;
        tx.commit().await?;
        Ok(settings)
    }

    async fn read(
        &self,
        conn: &mut PgConnection,
        tenant: &TenantId,
    ) -> Result<TenantSettings, FleetError> {
        let rows: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT kind, value FROM tenant_settings WHERE tenant = $1")
                .bind(tenant.as_str())
                .fetch_all(conn)
                .await?;
        let mut settings = TenantSettings::default();
        for (kind, value) in rows {
            match kind.as_str() {
                WEBHOOK => settings.webhook = Some(self.unseal(tenant, &value)?),
                AUTO_REPLIES => {
                    settings.auto_replies =
                        serde_json::from_slice(&value).map_err(|e| corrupt(&e.to_string()))?
                }
                other => return Err(corrupt(&format!("unknown kind {other}"))),
            }
        }
        Ok(settings)
    }

    async fn read_one(&self, tenant: &TenantId) -> Result<TenantSettings, FleetError> {
        let mut conn = self.pool.acquire().await?;
        self.read(&mut conn, tenant).await
    }

    /// Writes `value` (`None`: removes it) as `tenant`'s `kind`, and, when
    /// this node hosts the tenant, into its store with `local` in the same
    /// transaction. Answers false when the tenant is not on record
    /// (writing: nothing written) or had no such row (removing).
    async fn write(
        &self,
        tenant: &TenantId,
        kind: &'static str,
        value: Option<Vec<u8>>,
        local: impl FnOnce(&Store) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<bool, FleetError> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, "settings", tenant.as_str()).await?;
        let held = self.owned.get(tenant);
        match &held {
            Some(lease) => self.leases.fence(&mut tx, lease).await?,
            None => self.unhosted(&mut tx, tenant).await?,
        }
        let done = match value {
            Some(value) => sqlx::query(
                "INSERT INTO tenant_settings (tenant, kind, value, node) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant, kind) DO UPDATE SET value = EXCLUDED.value,
                     node = EXCLUDED.node, updated_at = now()",
            )
            .bind(tenant.as_str())
            .bind(kind)
            .bind(value)
            .bind(self.leases.node().as_str())
            .execute(&mut *tx)
            .await
            .map(|r| r.rows_affected() == 1),
            None => sqlx::query("DELETE FROM tenant_settings WHERE tenant = $1 AND kind = $2")
                .bind(tenant.as_str())
                .bind(kind)
                .execute(&mut *tx)
                .await
                .map(|r| r.rows_affected() == 1),
        };
        let done = match done {
            Ok(done) => done,
            // The tenant is not on record (or went meanwhile).
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if held.is_some() {
            let store = self.local.clone();
            tokio::task::spawn_blocking(move || local(&store))
                .await
                .map_err(|e| corrupt(&e.to_string()))?
                .map_err(|e| corrupt(&e.to_string()))?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Passes while no node hosts `tenant` (a live lease), else
    /// [`FleetError::Fenced`]: its owner writes its settings.
    async fn unhosted(&self, conn: &mut PgConnection, tenant: &TenantId) -> Result<(), FleetError> {
        let hosted: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM tenant_owners
             WHERE tenant = $1 AND owner IS NOT NULL AND lease_until >= now())",
        )
        .bind(tenant.as_str())
        .fetch_one(conn)
        .await?;
        match hosted {
            true => Err(FleetError::Fenced {
                tenant: tenant.clone(),
                epoch: crate::Epoch(-1),
            }),
            false => Ok(()),
        }
    }

    fn seal(&self, target: &WebhookTarget) -> Result<Vec<u8>, FleetError> {
        let json = serde_json::to_vec(target).map_err(|e| corrupt(&e.to_string()))?;
        Ok(self.sealing.seal_bytes(&json, &aad(&target.tenant)))
    }

    fn unseal(&self, tenant: &TenantId, sealed: &[u8]) -> Result<WebhookTarget, FleetError> {
        let json = self
            .sealing
            .open_bytes(sealed, &aad(tenant))
            .map_err(|e| corrupt(&format!("webhook target of {tenant}: {e}")))?;
        let target: WebhookTarget =
            serde_json::from_slice(&json).map_err(|e| corrupt(&e.to_string()))?;
        if &target.tenant != tenant {
            return Err(corrupt(&format!(
                "webhook target of {tenant} names another tenant"
            )));
        }
        Ok(target)
    }
}

/// What binds a sealed target to its tenant (no row can be moved to
/// another tenant and still open).
fn aad(tenant: &TenantId) -> Vec<u8> {
    format!("webhook\0{tenant}").into_bytes()
}

fn corrupt(why: &str) -> FleetError {
    FleetError::Corrupt {
        table: "tenant_settings",
        why: why.to_owned(),
    }
}

impl TenantSettingsRepo for FleetSettings {
    fn webhook_target(&self, tenant: &TenantId) -> Result<Option<WebhookTarget>, StoreError> {
        Ok(block_on(self.read_one(tenant))?.webhook)
    }

    fn set_webhook_target(&self, t: &WebhookTarget) -> Result<bool, StoreError> {
        let sealed = self.seal(t).map_err(crate::blocking::store_error)?;
        let target = t.clone();
        block_on(self.write(&t.tenant, WEBHOOK, Some(sealed), move |store| {
            // Not on record here yet (the copy on adoption brings it):
            // the fleet's row is what counts.
            store.set_target(&target).map(drop)
        }))
    }

    fn delete_webhook_target(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        let id = tenant.clone();
        block_on(self.write(tenant, WEBHOOK, None, move |store| {
            store.delete_target(&id).map(drop)
        }))
    }

    fn auto_reply_rules(&self, tenant: &TenantId) -> Result<AutoReplyRules, StoreError> {
        Ok(block_on(self.read_one(tenant))?.auto_replies)
    }

    fn set_auto_reply_rules(
        &self,
        tenant: &TenantId,
        rules: &AutoReplyRules,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_vec(rules)
            .map_err(|e| crate::blocking::store_error(corrupt(&e.to_string())))?;
        let (id, copy) = (tenant.clone(), rules.clone());
        block_on(self.write(tenant, AUTO_REPLIES, Some(json), move |store| {
            store.set_auto_replies(&id, &copy).map(drop)
        }))
    }
}

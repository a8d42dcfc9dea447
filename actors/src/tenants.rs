//! Deleting a tenant, in the one order that leaves nothing behind: the
//! supervisor stops and deletes its sessions (browsers logged out), the
//! event hub writes out what they reported on the way, and then — with the
//! campaign runner held — everything keyed by the tenant goes in one store
//! transaction ([`AccountRepo::purge_tenant`]). A tenant created later with
//! the same id starts empty: no webhook target or secret, deliveries,
//! auto-replies, idempotency keys, campaigns, messages, inbox or audit
//! entries of the old one. Writers racing the deletion (an HTTP request
//! past its tenant check, an event handled late) are refused by the
//! store's checks in their own transactions, not here. The admission
//! ledger is kept (see `store/purge.rs`). Who may delete a tenant is the
//! web layer's business, not this module's.

use crate::hub::Hub;
use crate::ids::TenantId;
use crate::messaging::Campaigns;
use crate::store::{AccountRepo, StoreError, TenantPurged};
use crate::supervisor::{Supervisor, SupervisorError};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Handle for tenant deletion; cheap to clone.
#[derive(Clone)]
pub struct Tenants {
    supervisor: Supervisor,
    hub: Hub,
    campaigns: Campaigns,
    repo: Arc<dyn AccountRepo>,
}

impl Tenants {
    pub fn new(
        supervisor: Supervisor,
        hub: Hub,
        campaigns: Campaigns,
        repo: Arc<dyn AccountRepo>,
    ) -> Self {
        Self {
            supervisor,
            hub,
            campaigns,
            repo,
        }
    }

    /// Deletes `tenant` with everything it owns; answers what the store
    /// removed. A store failure leaves the tenant in place (the purge is
    /// one transaction) with its sessions already deleted; deleting again
    /// finishes the job.
    pub async fn delete(&self, tenant: &TenantId) -> Result<TenantPurged, TenantError> {
        let sessions = self.supervisor.delete_tenant(tenant.clone()).await?;
        let purged = self.purge(tenant).await?;
        // A session created for the tenant while this ran passed the tenant
        // check before the purge, and its record went with it: take it out
        // of the supervisor too, and what it left in the store.
        let late = self.supervisor.delete_tenant(tenant.clone()).await?;
        // `purged_tenant`, not `tenant`: the audit log files a line under
        // its `tenant` field, and these come after the purge — they are the
        // admins' record, not the first rows of a tenant re-created later.
        if late > 0 {
            tracing::warn!(purged_tenant = %tenant, sessions = late, "sessions created during the tenant's deletion deleted too");
            self.purge(tenant).await?;
        }
        tracing::info!(
            purged_tenant = %tenant,
            sessions,
            users = purged.users,
            messages = purged.messages,
            incoming = purged.incoming,
            campaigns = purged.campaigns,
            deliveries = purged.deliveries,
            audit_entries = purged.audit_entries,
            "tenant purged"
        );
        Ok(purged)
    }

    async fn purge(&self, tenant: &TenantId) -> Result<TenantPurged, TenantError> {
        self.hub.flush().await;
        let _runner = self.campaigns.hold().await;
        let (repo, tenant) = (self.repo.clone(), tenant.clone());
        let purged = tokio::task::spawn_blocking(move || repo.purge_tenant(&tenant))
            .await
            .unwrap_or_else(|e| Err(StoreError::Db(e.to_string())))?;
        Ok(purged)
    }
}

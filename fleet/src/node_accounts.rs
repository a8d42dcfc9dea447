//! The accounts as a node of the fleet uses them ([`NodeAccounts`]): the
//! fleet's ([`PgAccounts`]) for every read and write, so a tenant, user or
//! API key made through any node works on all of them, with the tenant
//! records also kept in the node's own store — the node-local tables
//! (webhook targets, auto-reply rules) accept a tenant's rows only while
//! its record is there, checked in their own redb transactions.
//!
//! A tenant's record reaches a node's store when the tenant is created
//! through that node and when the node starts hosting it
//! ([`NodeAccounts::mirror_tenant`]).
//!
//! A write that may end a credential somewhere (a token revoked, a user
//! changed or deleted, a key revoked, a tenant purged) is announced to
//! every node once it is done ([`credentials::nudge`]), so their open
//! WebSockets check theirs again.
//!
//! What a purge does in fleet mode. It runs only on the node that hosts
//! the tenant (holds its lease), or on any node when no node ever hosted
//! it (it has no sessions anywhere): elsewhere it is refused with
//! [`StoreError::NotHeld`] (503 `tenant_moving`) before anything is
//! removed, because the tenant's sessions, browsers and messages live on
//! the node that hosts it and only that node's supervisor can stop them
//! (`tenants::Tenants::delete` stops them first, then purges). Then: the
//! tenant's profile snapshots go from PostgreSQL (fenced on the lease),
//! the tenant, its users and its API keys go from PostgreSQL (so no node
//! lets them in any more; its webhook target and auto-reply rules go
//! with the tenant's row), everything the tenant has in *this* node's
//! store (its record, messages, inbox, webhooks, campaigns, audit entries,
//! OTPs) goes in one redb transaction, as on a single node, and last this
//! node's ownership row, so no lease outlives the tenant. The stores of
//! nodes that hosted the tenant before are not reached: rows it left
//! there stay until that node's data dir goes. The fleet's admission
//! ledger is kept, as on a single node (`store/purge.rs`).

use crate::accounts::PgAccounts;
use crate::blocking::block_on;
use crate::credentials;
use crate::lease::{Epoch, Leases};
use crate::owned::Owned;
use crate::{Fleet, FleetError};
use centinela_actors::clock::Timestamp;
use centinela_actors::ids::{TenantId, UserId};
use centinela_actors::store::{
    AccountError, AccountRepo, ApiKeyRecord, Store, StoreError, TenantPurged, TenantRecord,
    UserRecord,
};
use sqlx::postgres::PgPool;

/// The fleet's accounts, tenant records mirrored into `local`; purges
/// only of tenants this node may purge (the leases it holds, `owned`).
#[derive(Clone)]
pub struct NodeAccounts {
    fleet: PgAccounts,
    pool: PgPool,
    leases: Leases,
    owned: Owned,
    local: Store,
}

impl std::fmt::Debug for NodeAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAccounts")
            .field("node", self.leases.node())
            .finish_non_exhaustive()
    }
}

impl NodeAccounts {
    pub fn new(fleet: &Fleet, leases: Leases, owned: Owned, local: Store) -> Self {
        Self {
            fleet: PgAccounts::new(fleet),
            pool: fleet.pool().clone(),
            leases,
            owned,
            local,
        }
    }

    /// Announces a credential change to every node. The change itself is
    /// written already: a failed announcement is logged, not an error
    /// (new requests see the change; only open WebSockets miss the nudge).
    fn nudge(&self) {
        if let Err(e) = block_on(credentials::nudge(&self.pool)) {
            tracing::warn!(error = %e, "credential change not announced to the fleet");
        }
    }

    /// Ends this node's ownership of a purged tenant: its row in the
    /// ownership table goes (only if this node holds it), so no node keeps
    /// a lease, or a slot of its capacity, for a tenant that is gone, and a
    /// drain does not hand it on as an orphan. The membership loop's next
    /// renewal finds it missing and releases it (it has no sessions left).
    async fn disown(&self, tenant: &TenantId) -> Result<(), FleetError> {
        sqlx::query("DELETE FROM tenant_owners WHERE tenant = $1 AND owner = $2")
            .bind(tenant.as_str())
            .bind(self.leases.node().as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Readies `tenant`'s purge in the fleet: with its lease held here,
    /// removes its profile snapshots (fenced) and answers how many; with
    /// no lease here, answers 0 if no node ever hosted it, else
    /// [`FleetError::Fenced`] (another node hosts it, or will).
    async fn unhost(&self, tenant: &TenantId) -> Result<u64, FleetError> {
        let Some(lease) = self.owned.get(tenant) else {
            let known: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenant_owners WHERE tenant = $1)")
                    .bind(tenant.as_str())
                    .fetch_one(&self.pool)
                    .await?;
            return match known {
                true => Err(FleetError::Fenced {
                    tenant: tenant.clone(),
                    epoch: Epoch(-1),
                }),
                false => Ok(0),
            };
        };
        let mut tx = self.pool.begin().await?;
        self.leases.fence(&mut tx, &lease).await?;
        let gone = sqlx::query("DELETE FROM profile_snapshots WHERE tenant = $1")
            .bind(tenant.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(gone.rows_affected())
    }

    /// Copies `tenant`'s record from the fleet into the node's store, when
    /// the fleet has it and the store does not yet (before the node hosts
    /// the tenant). Answers whether the fleet has it. Async, unlike the
    /// trait: the membership loop adopts several tenants at once.
    pub async fn mirror_tenant(&self, tenant: &TenantId) -> Result<bool, FleetError> {
        let Some(record) = self.fleet.select_tenants(Some(tenant)).await?.pop() else {
            return Ok(false);
        };
        let node = self.clone();
        tokio::task::spawn_blocking(move || node.mirror(&record))
            .await
            .map_err(|e| corrupt(&e.to_string()))?
            .map_err(|e| corrupt(&e.to_string()))?;
        Ok(true)
    }

    fn mirror(&self, record: &TenantRecord) -> Result<(), StoreError> {
        match self.local.create_tenant(record) {
            Ok(()) | Err(AccountError::Exists(_)) => Ok(()),
            Err(AccountError::NotFound(why)) => Err(StoreError::Db(why)),
            Err(AccountError::Store(e)) => Err(e),
        }
    }
}

fn corrupt(why: &str) -> FleetError {
    FleetError::Corrupt {
        table: "tenants",
        why: why.to_owned(),
    }
}

impl AccountRepo for NodeAccounts {
    /// In the fleet first (where a duplicate is refused), then here.
    fn create_tenant(&self, t: &TenantRecord) -> Result<(), AccountError> {
        self.fleet.create_tenant(t)?;
        Ok(self.mirror(t)?)
    }

    fn tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        self.fleet.tenant(id)
    }

    fn tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        self.fleet.tenants()
    }

    /// Refused unless this node may purge the tenant; then its profile
    /// snapshots and account rows in the fleet, then this node's rows of
    /// the tenant (see the module's doc). The counts are both stores'
    /// together.
    fn purge_tenant(&self, id: &TenantId) -> Result<TenantPurged, StoreError> {
        let snapshots = block_on(self.unhost(id))?;
        if snapshots > 0 {
            tracing::info!(purged_tenant = %id, snapshots, "tenant's profile snapshots removed from the fleet");
        }
        let fleet = self.fleet.purge_tenant(id)?;
        let local = self.local.purge_tenant(id)?;
        block_on(self.disown(id))?;
        self.nudge();
        Ok(TenantPurged {
            existed: fleet.existed || local.existed,
            users: fleet.users + local.users,
            api_keys: fleet.api_keys + local.api_keys,
            deliveries: fleet.deliveries + local.deliveries,
            campaigns: fleet.campaigns + local.campaigns,
            messages: fleet.messages + local.messages,
            incoming: fleet.incoming + local.incoming,
            contacts: fleet.contacts + local.contacts,
            activity_hours: fleet.activity_hours + local.activity_hours,
            ..local
        })
    }

    fn create_user(&self, u: &UserRecord) -> Result<(), AccountError> {
        self.fleet.create_user(u)
    }

    fn update_user(&self, u: &UserRecord) -> Result<(), AccountError> {
        self.fleet.update_user(u)?;
        self.nudge();
        Ok(())
    }

    fn user(&self, id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        self.fleet.user(id)
    }

    fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.fleet.user_by_name(username)
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.fleet.users()
    }

    fn delete_user(&self, id: &UserId) -> Result<bool, AccountError> {
        let deleted = self.fleet.delete_user(id)?;
        if deleted {
            self.nudge();
        }
        Ok(deleted)
    }

    fn create_api_key(&self, k: &ApiKeyRecord) -> Result<(), AccountError> {
        self.fleet.create_api_key(k)
    }

    fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.fleet.api_key_by_hash(hash)
    }

    fn api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.fleet.api_keys(tenant)
    }

    fn revoke_api_key(
        &self,
        tenant: &TenantId,
        id: &str,
        at: Timestamp,
    ) -> Result<bool, AccountError> {
        let revoked = self.fleet.revoke_api_key(tenant, id, at)?;
        if revoked {
            self.nudge();
        }
        Ok(revoked)
    }

    fn revoke_token(
        &self,
        jti: &str,
        expires: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.fleet.revoke_token(jti, expires, now)?;
        self.nudge();
        Ok(())
    }

    fn is_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        self.fleet.is_token_revoked(jti)
    }

    fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.fleet.setting(key)
    }

    fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        self.fleet.setting_or_insert(key, value)
    }
}

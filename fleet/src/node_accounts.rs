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
//! What a purge does in fleet mode: the tenant, its users and its API keys
//! go from PostgreSQL (so no node lets them in any more), then everything
//! the tenant has in *this* node's store (its record, messages, inbox,
//! webhooks, campaigns, audit entries, OTPs) goes in one redb transaction,
//! as on a single node. Another node's store is not reached: rows the
//! tenant left on a node it was hosted on before stay there until that
//! node purges it.

use crate::accounts::PgAccounts;
use centinela_actors::clock::Timestamp;
use centinela_actors::ids::{TenantId, UserId};
use centinela_actors::store::{
    AccountError, AccountRepo, ApiKeyRecord, Store, StoreError, TenantPurged, TenantRecord,
    UserRecord,
};

/// The fleet's accounts, tenant records mirrored into `local`.
#[derive(Debug, Clone)]
pub struct NodeAccounts {
    fleet: PgAccounts,
    local: Store,
}

impl NodeAccounts {
    pub fn new(fleet: PgAccounts, local: Store) -> Self {
        Self { fleet, local }
    }

    /// Copies `tenant`'s record from the fleet into the node's store, when
    /// the fleet has it and the store does not yet. Answers whether the
    /// fleet has it.
    pub fn mirror_tenant(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        let Some(record) = self.fleet.tenant(tenant)? else {
            return Ok(false);
        };
        self.mirror(&record)?;
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

    /// The fleet's account rows first, then this node's rows of the tenant
    /// (see the module's doc); the counts are both stores' together.
    fn purge_tenant(&self, id: &TenantId) -> Result<TenantPurged, StoreError> {
        let fleet = self.fleet.purge_tenant(id)?;
        let local = self.local.purge_tenant(id)?;
        Ok(TenantPurged {
            existed: fleet.existed || local.existed,
            users: fleet.users + local.users,
            api_keys: fleet.api_keys + local.api_keys,
            ..local
        })
    }

    fn create_user(&self, u: &UserRecord) -> Result<(), AccountError> {
        self.fleet.create_user(u)
    }

    fn update_user(&self, u: &UserRecord) -> Result<(), AccountError> {
        self.fleet.update_user(u)
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
        self.fleet.delete_user(id)
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
        self.fleet.revoke_api_key(tenant, id, at)
    }

    fn revoke_token(
        &self,
        jti: &str,
        expires: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.fleet.revoke_token(jti, expires, now)
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

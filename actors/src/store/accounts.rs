//! Accounts: tenants, users, per-tenant API keys (only their SHA-256 is
//! kept), revoked token ids, and server settings such as the generated JWT
//! secret. Password hashing and token checks are the web crate's job; this
//! module stores what they produce. Deleting a tenant purges every table
//! keyed by it (`purge.rs`), not only these.

use super::{remove_where, Store, StoreError, TenantPurged};
use crate::clock::Timestamp;
use crate::ids::{TenantId, UserId};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const USERNAMES: TableDefinition<&str, &str> = TableDefinition::new("usernames");
const API_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");
const API_KEY_HASHES: TableDefinition<&str, &str> = TableDefinition::new("api_key_hashes");
const REVOKED: TableDefinition<&str, i64> = TableDefinition::new("revoked_tokens");
const SETTINGS: TableDefinition<&str, &str> = TableDefinition::new("settings");

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(TENANTS)?;
    txn.open_table(USERS)?;
    txn.open_table(USERNAMES)?;
    txn.open_table(API_KEYS)?;
    txn.open_table(API_KEY_HASHES)?;
    txn.open_table(REVOKED)?;
    txn.open_table(SETTINGS)?;
    Ok(())
}

/// Every row of this module's tables, for tests ([`super::rows`]).
#[cfg(test)]
pub(super) fn rows(
    txn: &redb::ReadTransaction,
    out: &mut super::rows::Rows,
) -> Result<(), StoreError> {
    super::rows::table(txn, TENANTS, out)?;
    super::rows::table(txn, USERS, out)?;
    super::rows::table(txn, USERNAMES, out)?;
    super::rows::table(txn, API_KEYS, out)?;
    super::rows::table(txn, API_KEY_HASHES, out)?;
    super::rows::table(txn, REVOKED, out)?;
    super::rows::table(txn, SETTINGS, out)?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub id: TenantId,
    pub name: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Every tenant, the supervisor log, user and tenant management.
    Admin,
    /// One tenant's sessions only.
    Tenant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: UserId,
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
    /// Set for tenant users; `None` for admins.
    pub tenant: Option<TenantId>,
    pub created_at: Timestamp,
    /// Bumped on every password change; tokens carry it, so older tokens die.
    pub password_version: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub tenant: TenantId,
    pub name: String,
    /// Hex SHA-256 of the key.
    pub hash: String,
    /// The key's first characters, for listings.
    pub prefix: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Db(e.to_string()))
}

fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table,
        why: e.to_string(),
    })
}

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for AccountError {
            fn from(e: $t) -> Self {
                AccountError::Store(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Tenants, users, API keys, revoked tokens and settings: what the
/// web layer reads and writes of accounts, behind a trait so another store
/// (fleet mode) can stand in.
pub trait AccountRepo: Send + Sync + 'static {
    fn create_tenant(&self, t: &TenantRecord) -> Result<(), AccountError>;
    fn tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError>;
    fn tenants(&self) -> Result<Vec<TenantRecord>, StoreError>;
    /// Deletes a tenant and everything keyed by it — users, API keys,
    /// session records, the webhook target and deliveries, auto-replies,
    /// campaigns, messages with their queue, idempotency keys and engine
    /// ids, the inbox and audit entries — in one write transaction, so a
    /// tenant created later with the same id starts empty. Live sessions
    /// are the supervisor's to stop first (`tenants::Tenants::delete`
    /// does both, in order).
    fn purge_tenant(&self, id: &TenantId) -> Result<TenantPurged, StoreError>;
    fn create_user(&self, u: &UserRecord) -> Result<(), AccountError>;
    /// Replaces a user (password change).
    fn update_user(&self, u: &UserRecord) -> Result<(), AccountError>;
    fn user(&self, id: &UserId) -> Result<Option<UserRecord>, StoreError>;
    /// Case-insensitive lookup.
    fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;
    fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    fn delete_user(&self, id: &UserId) -> Result<bool, AccountError>;
    fn create_api_key(&self, k: &ApiKeyRecord) -> Result<(), AccountError>;
    /// The live (not revoked) key with this hash.
    fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    fn api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Revokes a tenant's key; false when it has no such key.
    fn revoke_api_key(
        &self,
        tenant: &TenantId,
        id: &str,
        at: Timestamp,
    ) -> Result<bool, AccountError>;
    /// Records a token id as revoked until `expires` (after that it is dead anyway).
    fn revoke_token(&self, jti: &str, expires: Timestamp, now: Timestamp)
        -> Result<(), StoreError>;
    fn is_token_revoked(&self, jti: &str) -> Result<bool, StoreError>;
    fn setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Sets `key` unless it is set; returns the value in force.
    fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError>;
}

impl AccountRepo for Store {
    fn create_tenant(&self, t: &TenantRecord) -> Result<(), AccountError> {
        let txn = self.db().begin_write()?;
        {
            let mut table = txn.open_table(TENANTS)?;
            if table.get(t.id.as_str())?.is_some() {
                return Err(AccountError::Exists(format!("tenant {}", t.id)));
            }
            table.insert(t.id.as_str(), encode(t)?.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    fn tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(TENANTS)?;
        let v = table.get(id.as_str())?;
        v.map(|v| decode("tenants", v.value())).transpose()
    }

    fn tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        self.all(TENANTS, "tenants")
    }

    fn purge_tenant(&self, id: &TenantId) -> Result<TenantPurged, StoreError> {
        super::purge::purge_tenant(self, id)
    }

    fn create_user(&self, u: &UserRecord) -> Result<(), AccountError> {
        let txn = self.db().begin_write()?;
        if let Some(t) = &u.tenant {
            if !tenant_exists(&txn, t)? {
                return Err(AccountError::NotFound(format!("tenant {t}")));
            }
        }
        {
            let mut names = txn.open_table(USERNAMES)?;
            let key = u.username.to_lowercase();
            if names.get(key.as_str())?.is_some() {
                return Err(AccountError::Exists(format!("user {}", u.username)));
            }
            names.insert(key.as_str(), u.id.as_str())?;
            txn.open_table(USERS)?
                .insert(u.id.as_str(), encode(u)?.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Replaces a user (password change).
    fn update_user(&self, u: &UserRecord) -> Result<(), AccountError> {
        let txn = self.db().begin_write()?;
        {
            let mut table = txn.open_table(USERS)?;
            if table.get(u.id.as_str())?.is_none() {
                return Err(AccountError::NotFound(format!("user {}", u.id)));
            }
            table.insert(u.id.as_str(), encode(u)?.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    fn user(&self, id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(USERS)?;
        let v = table.get(id.as_str())?;
        v.map(|v| decode("users", v.value())).transpose()
    }

    /// Case-insensitive lookup.
    fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let id = {
            let txn = self.db().begin_read()?;
            let names = txn.open_table(USERNAMES)?;
            let v = names.get(username.to_lowercase().as_str())?;
            v.map(|v| v.value().to_owned())
        };
        match id {
            Some(id) => self.user(&UserId::new(id).map_err(|e| StoreError::Corrupt {
                table: "usernames",
                why: e.to_string(),
            })?),
            None => Ok(None),
        }
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.all(USERS, "users")
    }

    fn delete_user(&self, id: &UserId) -> Result<bool, AccountError> {
        let Some(user) = self.user(id)? else {
            return Ok(false);
        };
        let txn = self.db().begin_write()?;
        {
            txn.open_table(USERS)?.remove(id.as_str())?;
            txn.open_table(USERNAMES)?
                .remove(user.username.to_lowercase().as_str())?;
        }
        txn.commit()?;
        Ok(true)
    }

    fn create_api_key(&self, k: &ApiKeyRecord) -> Result<(), AccountError> {
        let txn = self.db().begin_write()?;
        if !tenant_exists(&txn, &k.tenant)? {
            return Err(AccountError::NotFound(format!("tenant {}", k.tenant)));
        }
        {
            txn.open_table(API_KEYS)?
                .insert(k.id.as_str(), encode(k)?.as_slice())?;
            txn.open_table(API_KEY_HASHES)?
                .insert(k.hash.as_str(), k.id.as_str())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The live (not revoked) key with this hash.
    fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let hashes = txn.open_table(API_KEY_HASHES)?;
        let Some(id) = hashes.get(hash)?.map(|v| v.value().to_owned()) else {
            return Ok(None);
        };
        let keys = txn.open_table(API_KEYS)?;
        let v = keys.get(id.as_str())?;
        let key: Option<ApiKeyRecord> = v.map(|v| decode("api_keys", v.value())).transpose()?;
        Ok(key.filter(|k| k.revoked_at.is_none()))
    }

    fn api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let all: Vec<ApiKeyRecord> = self.all(API_KEYS, "api_keys")?;
        Ok(all.into_iter().filter(|k| k.tenant == *tenant).collect())
    }

    /// Revokes a tenant's key; false when it has no such key.
    fn revoke_api_key(
        &self,
        tenant: &TenantId,
        id: &str,
        at: Timestamp,
    ) -> Result<bool, AccountError> {
        let txn = self.db().begin_write()?;
        let found;
        {
            let mut keys = txn.open_table(API_KEYS)?;
            let current: Option<ApiKeyRecord> = {
                let v = keys.get(id)?;
                v.map(|v| decode("api_keys", v.value())).transpose()?
            };
            found = match current {
                Some(mut k) if k.tenant == *tenant => {
                    k.revoked_at.get_or_insert(at);
                    keys.insert(id, encode(&k)?.as_slice())?;
                    txn.open_table(API_KEY_HASHES)?.remove(k.hash.as_str())?;
                    true
                }
                _ => false,
            };
        }
        txn.commit()?;
        Ok(found)
    }

    /// Records a token id as revoked until `expires` (after that it is dead anyway).
    fn revoke_token(
        &self,
        jti: &str,
        expires: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let txn = self.db().begin_write()?;
        {
            let mut table = txn.open_table(REVOKED)?;
            table.insert(jti, expires.as_millis())?;
            let stale: Vec<String> = table
                .iter()?
                .filter_map(|r| r.ok())
                .filter(|(_, exp)| exp.value() < now.as_millis())
                .map(|(k, _)| k.value().to_owned())
                .take(100)
                .collect();
            for k in stale {
                table.remove(k.as_str())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn is_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        let txn = self.db().begin_read()?;
        Ok(txn.open_table(REVOKED)?.get(jti)?.is_some())
    }

    fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(SETTINGS)?;
        let v = table.get(key)?;
        Ok(v.map(|v| v.value().to_owned()))
    }

    /// Sets `key` unless it is set; returns the value in force.
    fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let txn = self.db().begin_write()?;
        let current;
        {
            let mut table = txn.open_table(SETTINGS)?;
            let existing = table.get(key)?.map(|v| v.value().to_owned());
            current = match existing {
                Some(v) => v,
                None => {
                    table.insert(key, value)?;
                    value.to_owned()
                }
            };
        }
        txn.commit()?;
        Ok(current)
    }
}

/// Whether `tenant` is on record, within `txn`. Rows of a tenant (users,
/// API keys, its webhook and rules) are written only while it is, checked
/// in the writing transaction, so none can land behind a purge for a
/// tenant re-created under the same id to inherit.
pub(super) fn tenant_exists(txn: &WriteTransaction, tenant: &TenantId) -> Result<bool, StoreError> {
    Ok(txn.open_table(TENANTS)?.get(tenant.as_str())?.is_some())
}

/// Removes, within `txn`, the tenant record, its users and its API keys
/// (with their lookup rows); answers whether the tenant existed, and how
/// many users and keys went.
pub(super) fn purge(
    txn: &WriteTransaction,
    tenant: &TenantId,
) -> Result<(bool, usize, usize), StoreError> {
    let existed = txn.open_table(TENANTS)?.remove(tenant.as_str())?.is_some();
    let users: Vec<UserRecord> = remove_where(txn, USERS, "users", |u: &UserRecord| {
        u.tenant.as_ref() == Some(tenant)
    })?;
    let mut names = txn.open_table(USERNAMES)?;
    for u in &users {
        names.remove(u.username.to_lowercase().as_str())?;
    }
    let keys: Vec<ApiKeyRecord> = remove_where(txn, API_KEYS, "api_keys", |k: &ApiKeyRecord| {
        k.tenant == *tenant
    })?;
    let mut hashes = txn.open_table(API_KEY_HASHES)?;
    for k in &keys {
        hashes.remove(k.hash.as_str())?;
    }
    Ok((existed, users.len(), keys.len()))
}

impl Store {
    fn all<T: DeserializeOwned>(
        &self,
        def: TableDefinition<&str, &[u8]>,
        name: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(def)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            out.push(decode(name, v.value())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, tenant: Option<&str>) -> UserRecord {
        UserRecord {
            id: UserId::generate(),
            username: name.into(),
            password_hash: "$argon2id$fake".into(),
            role: if tenant.is_some() {
                Role::Tenant
            } else {
                Role::Admin
            },
            tenant: tenant.map(|t| TenantId::new(t).expect("id")),
            created_at: Timestamp::from_millis(1),
            password_version: 0,
        }
    }

    #[test]
    fn a_user_or_key_of_a_tenant_not_on_record_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let gone = TenantId::new("gone").expect("id");
        let key = ApiKeyRecord {
            id: "k0".into(),
            tenant: gone.clone(),
            name: "crm".into(),
            hash: "cd".repeat(32),
            prefix: "cnt_cdcd".into(),
            created_at: Timestamp::from_millis(1),
            revoked_at: None,
        };
        assert!(matches!(
            store.create_user(&user("ana", Some("gone"))),
            Err(AccountError::NotFound(_))
        ));
        assert!(matches!(
            store.create_api_key(&key),
            Err(AccountError::NotFound(_))
        ));
        assert_eq!(store.user_by_name("ana").expect("read"), None);
        assert_eq!(store.api_keys(&gone).expect("read"), vec![]);
    }

    #[test]
    fn usernames_are_unique_case_insensitively_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store.create_user(&user("Ana", None)).expect("create");
            assert!(matches!(
                store.create_user(&user("ana", None)),
                Err(AccountError::Exists(_))
            ));
        }
        let store = Store::open(dir.path()).expect("reopen");
        let ana = store.user_by_name("ANA").expect("lookup").expect("exists");
        assert_eq!(ana.username, "Ana");
        assert!(store.delete_user(&ana.id).expect("delete"));
        assert_eq!(store.user_by_name("ana").expect("lookup"), None);
    }

    #[test]
    fn api_keys_are_found_by_hash_until_revoked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let t = TenantId::new("t1").expect("id");
        store
            .create_tenant(&TenantRecord {
                id: t.clone(),
                name: "t1".into(),
                created_at: Timestamp::from_millis(1),
            })
            .expect("tenant");
        let k = ApiKeyRecord {
            id: "k1".into(),
            tenant: t.clone(),
            name: "crm".into(),
            hash: "ab".repeat(32),
            prefix: "cnt_abcd".into(),
            created_at: Timestamp::from_millis(1),
            revoked_at: None,
        };
        store.create_api_key(&k).expect("create");
        assert_eq!(
            store.api_key_by_hash(&k.hash).expect("lookup"),
            Some(k.clone())
        );
        let other = TenantId::new("t2").expect("id");
        assert!(!store
            .revoke_api_key(&other, "k1", Timestamp::from_millis(2))
            .expect("revoke"));
        assert!(store
            .revoke_api_key(&t, "k1", Timestamp::from_millis(2))
            .expect("revoke"));
        assert_eq!(store.api_key_by_hash(&k.hash).expect("lookup"), None);
        assert!(store.api_keys(&t).expect("list")[0].revoked_at.is_some());
    }

    #[test]
    fn revoked_tokens_and_settings_persist() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store
                .revoke_token(
                    "jti1",
                    Timestamp::from_millis(10_000),
                    Timestamp::from_millis(1),
                )
                .expect("revoke");
            assert_eq!(
                store.setting_or_insert("jwt_secret", "a").expect("set"),
                "a"
            );
            assert_eq!(
                store.setting_or_insert("jwt_secret", "b").expect("set"),
                "a"
            );
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert!(store.is_token_revoked("jti1").expect("check"));
        assert!(!store.is_token_revoked("jti2").expect("check"));
        assert_eq!(
            store.setting("jwt_secret").expect("get").as_deref(),
            Some("a")
        );
    }
}

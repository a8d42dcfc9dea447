//! Accounts shared by the fleet ([`PgAccounts`]): tenants, users, API keys
//! (only their SHA-256), revoked token ids and server settings in
//! PostgreSQL (`migrations/0004_accounts.sql`), behind the same
//! [`AccountRepo`] the single-node store implements, with the same
//! answers: a duplicate tenant id or username (case-insensitively) is
//! [`AccountError::Exists`], a user or key of a tenant not on record
//! [`AccountError::NotFound`] — both decided by the database's constraints
//! inside the insert, so two nodes racing get one winner and nothing lands
//! behind a purge. [`AccountRepo::setting_or_insert`] is one insert that
//! does nothing on a conflict and then a read, so nodes starting together
//! agree on one JWT secret.
//!
//! It owns only the account rows: [`AccountRepo::purge_tenant`] here
//! removes the tenant with its users and keys and reports nothing else.
//! What else a tenant has on a node (messages, webhooks, the audit log) is
//! that node's store's; [`crate::NodeAccounts`] puts the two together.
//!
//! The trait is synchronous: each call runs its query through
//! [`crate::blocking`].

use crate::blocking::{block_on, run, store_error};
use crate::{Fleet, FleetError};
use centinela_actors::clock::Timestamp;
use centinela_actors::ids::{TenantId, UserId};
use centinela_actors::store::{
    AccountError, AccountRepo, ApiKeyRecord, Role, StoreError, TenantPurged, TenantRecord,
    UserRecord,
};
use sqlx::postgres::PgPool;
use std::future::Future;

/// The fleet's accounts on its database; cheap to clone.
#[derive(Debug, Clone)]
pub struct PgAccounts {
    pool: PgPool,
}

/// A user row: id, username, password hash, role, tenant, created, version.
type UserRow = (String, String, String, String, Option<String>, i64, i64);
/// An API key row: id, tenant, name, hash, prefix, created, revoked.
type KeyRow = (String, String, String, String, String, i64, Option<i64>);

const USER_BY_ID: &str = "SELECT id, username, password_hash, role, tenant, created_ms,
    password_version FROM users WHERE id = $1";
const USER_BY_NAME: &str = "SELECT id, username, password_hash, role, tenant, created_ms,
    password_version FROM users WHERE username_key = $1";
const ALL_USERS: &str = "SELECT id, username, password_hash, role, tenant, created_ms,
    password_version FROM users WHERE $1::text IS NULL ORDER BY id";
const LIVE_KEY_BY_HASH: &str = "SELECT id, tenant, name, hash, prefix, created_ms, revoked_ms
    FROM api_keys WHERE hash = $1 AND revoked_ms IS NULL ORDER BY id";
const KEYS_OF_TENANT: &str = "SELECT id, tenant, name, hash, prefix, created_ms, revoked_ms
    FROM api_keys WHERE tenant = $1 ORDER BY id";

impl PgAccounts {
    pub fn new(fleet: &Fleet) -> Self {
        Self {
            pool: fleet.pool().clone(),
        }
    }

    async fn insert_tenant(&self, t: &TenantRecord) -> Result<(), FleetError> {
        sqlx::query("INSERT INTO tenants (id, name, created_ms) VALUES ($1, $2, $3)")
            .bind(t.id.as_str())
            .bind(&t.name)
            .bind(t.created_at.as_millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The tenant `id`, or every tenant, by id.
    pub(crate) async fn select_tenants(
        &self,
        id: Option<&TenantId>,
    ) -> Result<Vec<TenantRecord>, FleetError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT id, name, created_ms FROM tenants WHERE $1::text IS NULL OR id = $1 ORDER BY id",
        )
        .bind(id.map(TenantId::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, name, created)| {
                Ok(TenantRecord {
                    id: TenantId::new(id).map_err(|e| corrupt("tenants", e))?,
                    name,
                    created_at: Timestamp::from_millis(created),
                })
            })
            .collect()
    }

    async fn purge(&self, id: &TenantId) -> Result<TenantPurged, FleetError> {
        let mut tx = self.pool.begin().await?;
        let keys = sqlx::query("DELETE FROM api_keys WHERE tenant = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let users = sqlx::query("DELETE FROM users WHERE tenant = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        // Its deliveries, campaigns and messages would go with the tenant's row (the
        // tables cascade); deleted first to be counted.
        let mut gone = [0; 6];
        for (n, query) in [
            "DELETE FROM webhook_deliveries WHERE tenant = $1",
            "DELETE FROM campaigns WHERE tenant = $1",
            "DELETE FROM messages WHERE tenant = $1",
            "DELETE FROM inbox WHERE tenant = $1",
            "DELETE FROM contacts WHERE tenant = $1",
            "DELETE FROM activity WHERE tenant = $1",
        ]
        .into_iter()
        .enumerate()
        {
            gone[n] = count(
                sqlx::query(query)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
            );
        }
        let tenant = sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(TenantPurged {
            existed: tenant.rows_affected() == 1,
            users: count(users.rows_affected()),
            api_keys: count(keys.rows_affected()),
            deliveries: gone[0],
            campaigns: gone[1],
            messages: gone[2],
            incoming: gone[3],
            contacts: gone[4],
            activity_hours: gone[5],
            ..TenantPurged::default()
        })
    }

    async fn insert_user(&self, u: &UserRecord) -> Result<(), FleetError> {
        bind_user(
            sqlx::query(
                "INSERT INTO users (id, username, username_key, password_hash, role, tenant,
                     created_ms, password_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            ),
            u,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replaces the user's row; false when there is none.
    async fn replace_user(&self, u: &UserRecord) -> Result<bool, FleetError> {
        let done = bind_user(
            sqlx::query(
                "UPDATE users SET username = $2, username_key = $3, password_hash = $4,
                     role = $5, tenant = $6, created_ms = $7, password_version = $8 WHERE id = $1",
            ),
            u,
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The users `sql` selects (one of the `USER…` queries, on `$1`).
    async fn select_users(
        &self,
        sql: &'static str,
        value: Option<String>,
    ) -> Result<Vec<UserRecord>, FleetError> {
        let rows: Vec<UserRow> = sqlx::query_as(sql)
            .bind(value)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(user_record).collect()
    }

    async fn remove_user(&self, id: &UserId) -> Result<bool, FleetError> {
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_key(&self, k: &ApiKeyRecord) -> Result<(), FleetError> {
        sqlx::query(
            "INSERT INTO api_keys (id, tenant, name, hash, prefix, created_ms, revoked_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&k.id)
        .bind(k.tenant.as_str())
        .bind(&k.name)
        .bind(&k.hash)
        .bind(&k.prefix)
        .bind(k.created_at.as_millis())
        .bind(k.revoked_at.map(Timestamp::as_millis))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The keys `sql` selects (one of the `…KEY…` queries, on `$1`).
    async fn select_keys(
        &self,
        sql: &'static str,
        value: &str,
    ) -> Result<Vec<ApiKeyRecord>, FleetError> {
        let rows: Vec<KeyRow> = sqlx::query_as(sql)
            .bind(value)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(key_record).collect()
    }

    async fn revoke_key(
        &self,
        tenant: &TenantId,
        id: &str,
        at: Timestamp,
    ) -> Result<bool, FleetError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_ms = COALESCE(revoked_ms, $3) WHERE id = $1 AND tenant = $2",
        )
        .bind(id)
        .bind(tenant.as_str())
        .bind(at.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records `jti`, and sweeps up to 100 ids whose tokens expired.
    async fn insert_revoked(
        &self,
        jti: &str,
        expires: Timestamp,
        now: Timestamp,
    ) -> Result<(), FleetError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, expires_ms) VALUES ($1, $2)
             ON CONFLICT (jti) DO UPDATE SET expires_ms = EXCLUDED.expires_ms",
        )
        .bind(jti)
        .bind(expires.as_millis())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM revoked_tokens WHERE jti IN
                 (SELECT jti FROM revoked_tokens WHERE expires_ms < $1 LIMIT 100)",
        )
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoked(&self, jti: &str) -> Result<bool, FleetError> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $1)")
                .bind(jti)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn select_setting(&self, key: &str) -> Result<Option<String>, FleetError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// An insert that does nothing when the key is set (it waits for a
    /// racing insert to commit, then yields to it), then the value in force.
    async fn first_setting(&self, key: &str, value: &str) -> Result<String, FleetError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        let current: Option<String> = self.select_setting(key).await?;
        current.ok_or_else(|| FleetError::Corrupt {
            table: "settings",
            why: format!("{key} was set and is gone"),
        })
    }
}

/// Runs a write whose constraint violations are the caller's answer: a
/// duplicate is [`AccountError::Exists`] (`what`), a missing tenant
/// [`AccountError::NotFound`] (`tenant`).
fn write<T>(
    query: impl Future<Output = Result<T, FleetError>>,
    what: impl FnOnce() -> String,
    tenant: impl FnOnce() -> String,
) -> Result<T, AccountError> {
    match run(query)? {
        Ok(v) => Ok(v),
        Err(FleetError::Db(sqlx::Error::Database(e))) if e.is_unique_violation() => {
            Err(AccountError::Exists(what()))
        }
        Err(FleetError::Db(sqlx::Error::Database(e))) if e.is_foreign_key_violation() => {
            Err(AccountError::NotFound(tenant()))
        }
        Err(e) => Err(store_error(e).into()),
    }
}

impl AccountRepo for PgAccounts {
    fn create_tenant(&self, t: &TenantRecord) -> Result<(), AccountError> {
        let id = || format!("tenant {}", t.id);
        write(self.insert_tenant(t), id, id)
    }

    fn tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        Ok(block_on(self.select_tenants(Some(id)))?.pop())
    }

    fn tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        block_on(self.select_tenants(None))
    }

    /// Removes the tenant, its users and its API keys, in one transaction;
    /// the other counts are zero (those rows are the nodes').
    fn purge_tenant(&self, id: &TenantId) -> Result<TenantPurged, StoreError> {
        block_on(self.purge(id))
    }

    fn create_user(&self, u: &UserRecord) -> Result<(), AccountError> {
        let tenant = || match &u.tenant {
            Some(t) => format!("tenant {t}"),
            None => "tenant".to_owned(),
        };
        write(
            self.insert_user(u),
            || format!("user {}", u.username),
            tenant,
        )
    }

    fn update_user(&self, u: &UserRecord) -> Result<(), AccountError> {
        let tenant = || format!("tenant of user {}", u.id);
        let found = write(
            self.replace_user(u),
            || format!("user {}", u.username),
            tenant,
        )?;
        match found {
            true => Ok(()),
            false => Err(AccountError::NotFound(format!("user {}", u.id))),
        }
    }

    fn user(&self, id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        let found = block_on(self.select_users(USER_BY_ID, Some(id.as_str().to_owned())))?;
        Ok(found.into_iter().next())
    }

    fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let key = Some(username.to_lowercase());
        Ok(block_on(self.select_users(USER_BY_NAME, key))?
            .into_iter()
            .next())
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        block_on(self.select_users(ALL_USERS, None))
    }

    fn delete_user(&self, id: &UserId) -> Result<bool, AccountError> {
        Ok(block_on(self.remove_user(id))?)
    }

    fn create_api_key(&self, k: &ApiKeyRecord) -> Result<(), AccountError> {
        let tenant = || format!("tenant {}", k.tenant);
        write(self.insert_key(k), || format!("api key {}", k.id), tenant)
    }

    fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let live = block_on(self.select_keys(LIVE_KEY_BY_HASH, hash))?;
        Ok(live.into_iter().next())
    }

    fn api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        block_on(self.select_keys(KEYS_OF_TENANT, tenant.as_str()))
    }

    fn revoke_api_key(
        &self,
        tenant: &TenantId,
        id: &str,
        at: Timestamp,
    ) -> Result<bool, AccountError> {
        Ok(block_on(self.revoke_key(tenant, id, at))?)
    }

    fn revoke_token(
        &self,
        jti: &str,
        expires: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        block_on(self.insert_revoked(jti, expires, now))
    }

    fn is_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        block_on(self.revoked(jti))
    }

    fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        block_on(self.select_setting(key))
    }

    fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        block_on(self.first_setting(key, value))
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Tenant => "tenant",
    }
}

fn user_record(row: UserRow) -> Result<UserRecord, FleetError> {
    let (id, username, password_hash, role, tenant, created, version) = row;
    Ok(UserRecord {
        id: UserId::new(id).map_err(|e| corrupt("users", e))?,
        username,
        password_hash,
        role: match role.as_str() {
            "admin" => Role::Admin,
            "tenant" => Role::Tenant,
            other => return Err(corrupt("users", format!("role {other:?}"))),
        },
        tenant: tenant
            .map(TenantId::new)
            .transpose()
            .map_err(|e| corrupt("users", e))?,
        created_at: Timestamp::from_millis(created),
        password_version: u32::try_from(version).map_err(|e| corrupt("users", e))?,
    })
}

fn key_record(row: KeyRow) -> Result<ApiKeyRecord, FleetError> {
    let (id, tenant, name, hash, prefix, created, revoked) = row;
    Ok(ApiKeyRecord {
        id,
        tenant: TenantId::new(tenant).map_err(|e| corrupt("api_keys", e))?,
        name,
        hash,
        prefix,
        created_at: Timestamp::from_millis(created),
        revoked_at: revoked.map(Timestamp::from_millis),
    })
}

fn count(rows: u64) -> usize {
    usize::try_from(rows).unwrap_or(usize::MAX)
}

fn corrupt(table: &'static str, why: impl std::fmt::Display) -> FleetError {
    FleetError::Corrupt {
        table,
        why: why.to_string(),
    }
}

/// A user's columns as `$1`..`$8` (id, username, its lowercased key,
/// password hash, role, tenant, created, password version), for the insert
/// and the replace alike.
fn bind_user<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    u: &'q UserRecord,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(u.id.as_str())
        .bind(&u.username)
        .bind(u.username.to_lowercase())
        .bind(&u.password_hash)
        .bind(role_name(u.role))
        .bind(u.tenant.as_ref().map(TenantId::as_str))
        .bind(u.created_at.as_millis())
        .bind(i64::from(u.password_version))
}

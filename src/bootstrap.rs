//! First-start set-up: the JWT secret (from config, else generated once and
//! kept in the store) and the first admin (from `CENTINELA_ADMIN_USER` /
//! `CENTINELA_ADMIN_PASSWORD`, else a random password printed once). No
//! default credential exists anywhere.
//!
//! "The store" is the accounts the server runs on: the node's own on a
//! single node, the fleet's in fleet mode — then the first node to start
//! makes the admin and the secrets, and every later node finds them (nodes
//! starting together race to one: the store keeps the first secret
//! written, and a node whose admin lost the race to another's prints
//! nothing).

use centinela_actors::clock::Timestamp;
use centinela_actors::config::Config;
use centinela_actors::ids::{TenantId, UserId};
use centinela_actors::store::{
    AccountError, AccountRepo, Role, StoreError, TenantRecord, UserRecord,
};
use centinela_web::auth::{check_password_policy, hash_password_sync, random_token};

/// How the first admin is made when the store has no user.
#[derive(Debug, Clone, Default)]
pub enum AdminBootstrap {
    /// From `CENTINELA_ADMIN_USER` / `CENTINELA_ADMIN_PASSWORD`, else
    /// `admin` with a random password printed once.
    #[default]
    FromEnvironment,
    /// These credentials (tests).
    Given { username: String, password: String },
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("{0}")]
    Invalid(String),
}

/// The token-signing secret in force.
pub fn jwt_secret(config: &Config, store: &dyn AccountRepo) -> Result<Vec<u8>, StoreError> {
    if !config.auth.jwt_secret.is_empty() {
        return Ok(config.auth.jwt_secret.as_bytes().to_vec());
    }
    Ok(store
        .setting_or_insert("jwt_secret", &random_token(64))?
        .into_bytes())
}

/// The HMAC key verification codes are stored under: `otp.secret`, or
/// one made on the first start and kept in the store (a restart must
/// still verify the codes it sent).
pub fn otp_secret(config: &Config, store: &dyn AccountRepo) -> Result<Vec<u8>, StoreError> {
    if !config.otp.secret.is_empty() {
        return Ok(config.otp.secret.as_bytes().to_vec());
    }
    Ok(store
        .setting_or_insert("otp_secret", &random_token(64))?
        .into_bytes())
}

/// Creates the first admin if there is no user. Returns the credentials
/// when the password was generated (to be shown once) and this call made
/// the admin: when another node made a user of that name meanwhile, it
/// is theirs, and nothing is shown.
pub fn ensure_admin(
    store: &dyn AccountRepo,
    how: &AdminBootstrap,
    now: Timestamp,
) -> Result<Option<(String, String)>, BootstrapError> {
    if !store.users()?.is_empty() {
        return Ok(None);
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (username, password, generated) = match how {
        AdminBootstrap::Given { username, password } => (username.clone(), password.clone(), false),
        AdminBootstrap::FromEnvironment => {
            match (env("CENTINELA_ADMIN_USER"), env("CENTINELA_ADMIN_PASSWORD")) {
                (user, Some(pass)) => (user.unwrap_or_else(|| "admin".into()), pass, false),
                (user, None) => (
                    user.unwrap_or_else(|| "admin".into()),
                    random_token(20),
                    true,
                ),
            }
        }
    };
    match add_user(store, &username, &password, Role::Admin, None, now) {
        Ok(_) => Ok(generated.then_some((username, password))),
        Err(BootstrapError::Account(AccountError::Exists(_))) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates a user (and its tenant, if new). Used by bootstrap and by
/// `centinela user add`.
pub fn add_user(
    store: &dyn AccountRepo,
    username: &str,
    password: &str,
    role: Role,
    tenant: Option<&TenantId>,
    now: Timestamp,
) -> Result<UserRecord, BootstrapError> {
    check_password_policy(password).map_err(|e| BootstrapError::Invalid(e.to_string()))?;
    if let Some(t) = tenant {
        if store.tenant(t)?.is_none() {
            let made = store.create_tenant(&TenantRecord {
                id: t.clone(),
                name: t.to_string(),
                created_at: now,
            });
            // Made meanwhile (another node): the user joins it.
            match made {
                Ok(()) | Err(AccountError::Exists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let user = UserRecord {
        id: UserId::generate(),
        username: username.to_owned(),
        password_hash: hash_password_sync(password).map_err(BootstrapError::Invalid)?,
        role,
        tenant: tenant.cloned(),
        created_at: now,
        password_version: 0,
    };
    store.create_user(&user)?;
    Ok(user)
}

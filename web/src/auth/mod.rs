//! Authentication: argon2id passwords, HS256 JWTs with a pinned algorithm,
//! an issuer, an expiry, a `jti` that logout revokes (persisted, so a
//! restart does not resurrect it) and a password version that a password
//! change bumps (so older tokens die); and per-tenant API keys, stored as
//! their SHA-256. Login throttling lives in [`throttle`]. Password hashes
//! (19 MiB and most of a core each) run a few at a time: past
//! [`Auth::hashing_limit`] at once a request is answered 503 `busy`.

mod caller;
pub mod routes;
pub mod throttle;

pub(crate) use caller::credential_of;
pub use caller::Caller;

use crate::error::ApiError;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use centinela_actors::clock::{SharedClock, Timestamp};
use centinela_actors::ids::{TenantId, UserId};
use centinela_actors::store::{AccountRepo, ApiKeyRecord, Role, UserRecord};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The issuer of login tokens (one purpose, one issuer).
const ISSUER: &str = "centinela-login";

/// The claims of a login token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub usr: String,
    pub role: Role,
    pub tnt: Option<String>,
    /// The user's password version when the token was issued.
    pub pv: u32,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub iss: String,
}

pub struct Auth {
    store: Arc<dyn AccountRepo>,
    clock: SharedClock,
    encoding: EncodingKey,
    decoding: DecodingKey,
    token_ttl: Duration,
    pub throttle: throttle::Throttle,
    /// A real argon2id hash of a random string, checked when a login names
    /// no user, so timing does not tell which part was wrong.
    pub(crate) dummy_hash: String,
    /// Bumped whenever a credential may have stopped working (a logout, a
    /// password change, a user, key or tenant deleted): open WebSockets
    /// check theirs again.
    changes: tokio::sync::watch::Sender<u64>,
    /// One permit per password hash running now.
    hashing: Arc<tokio::sync::Semaphore>,
    hashing_limit: usize,
    hashing_peak: AtomicUsize,
}

/// The most characters a username has (creation enforces it; login and
/// its throttle keys and logs refuse longer ones before any work).
pub const MAX_USERNAME: usize = 64;

/// Random URL-safe characters (passwords, API keys, secrets).
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Hex SHA-256, for API keys (they are long and random: no salt needed).
pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// argon2id with a random salt, on this thread (the CLI, startup).
pub fn hash_password_sync(password: &str) -> Result<String, String> {
    let salt: [u8; 16] = rand::rng().random();
    let hash: PasswordHash = Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| e.to_string())?;
    Ok(hash.to_string())
}

/// Whether `password` matches its PHC string, on this thread.
fn verify_password_sync(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// The minimum a password must be.
pub fn check_password_policy(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < 10 {
        return Err(ApiError::bad_request(
            "weak_password",
            "passwords need at least 10 characters",
        ));
    }
    Ok(())
}

impl Auth {
    pub fn new(
        store: Arc<dyn AccountRepo>,
        clock: SharedClock,
        secret: &[u8],
        token_ttl: Duration,
    ) -> Self {
        let hashing_limit = 2 * std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            store,
            clock: clock.clone(),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            token_ttl,
            throttle: throttle::Throttle::new(clock, 5, Duration::from_secs(15 * 60)),
            dummy_hash: hash_password_sync(&random_token(24)).unwrap_or_default(),
            changes: tokio::sync::watch::Sender::new(0),
            hashing: Arc::new(tokio::sync::Semaphore::new(hashing_limit)),
            hashing_limit,
            hashing_peak: AtomicUsize::new(0),
        }
    }

    /// Says that some credential may have stopped working.
    pub fn credentials_changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever [`Auth::credentials_changed`] is called.
    pub fn watch_credentials(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether a credential (a bearer token, else an API key) still works.
    pub fn still_valid(&self, bearer: bool, secret: &str) -> bool {
        if bearer {
            self.verify_token(secret).is_ok()
        } else {
            self.verify_api_key(secret).is_ok()
        }
    }

    /// How many password hashes may run at once: two per core.
    pub fn hashing_limit(&self) -> usize {
        self.hashing_limit
    }

    /// The most password hashes that ran at once since the start.
    pub fn hashing_peak(&self) -> usize {
        self.hashing_peak.load(Ordering::Relaxed)
    }

    /// Runs `work` (an argon2 hash) on the blocking pool if a slot is free,
    /// else answers 503 `busy`. The slot is held until the hash ends, even
    /// if the request that asked is gone.
    async fn hashing<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = self
            .hashing
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Busy)?;
        let running = self.hashing_limit - self.hashing.available_permits();
        self.hashing_peak.fetch_max(running, Ordering::Relaxed);
        let result = tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await?;
        Ok(result)
    }

    /// argon2id with a random salt.
    pub async fn hash_password(&self, password: String) -> Result<String, ApiError> {
        self.hashing(move || hash_password_sync(&password))
            .await?
            .map_err(ApiError::internal)
    }

    /// Whether `password` matches `hash`.
    pub async fn verify_password(&self, password: String, hash: String) -> Result<bool, ApiError> {
        self.hashing(move || verify_password_sync(&password, &hash))
            .await
    }

    /// The accounts (tenants, users, keys) behind authentication.
    pub fn accounts(&self) -> &dyn AccountRepo {
        self.store.as_ref()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// A token for `user`, and when it expires.
    pub fn issue(&self, user: &UserRecord) -> Result<(String, Timestamp), ApiError> {
        let now = self.now();
        let exp = now.plus(self.token_ttl);
        let claims = Claims {
            sub: user.id.to_string(),
            usr: user.username.clone(),
            role: user.role,
            tnt: user.tenant.as_ref().map(|t| t.to_string()),
            pv: user.password_version,
            iat: now.as_millis() / 1000,
            exp: exp.as_millis() / 1000,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            iss: ISSUER.into(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)?;
        Ok((token, exp))
    }

    /// Verifies a login token: signature (HS256 only), issuer, expiry,
    /// revocation, and that the user still exists with the same password.
    pub fn verify_token(&self, token: &str) -> Result<(UserRecord, Claims), ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 0;
        let data = decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| ApiError::unauthorized())?;
        let claims = data.claims;
        if claims.exp * 1000 <= self.now().as_millis() {
            return Err(ApiError::unauthorized());
        }
        if self.store.is_token_revoked(&claims.jti)? {
            return Err(ApiError::unauthorized());
        }
        let id = UserId::new(claims.sub.clone()).map_err(|_| ApiError::unauthorized())?;
        let user = self.store.user(&id)?.ok_or_else(ApiError::unauthorized)?;
        if user.password_version != claims.pv {
            return Err(ApiError::unauthorized());
        }
        Ok((user, claims))
    }

    /// The live API key behind `key`, if any. A store that cannot be read
    /// (the fleet's database down) is the store's answer (503), not a 401.
    pub fn verify_api_key(&self, key: &str) -> Result<ApiKeyRecord, ApiError> {
        self.store
            .api_key_by_hash(&sha256_hex(key))?
            .ok_or_else(ApiError::unauthorized)
    }

    /// Creates an API key for `tenant`; returns the record and the key,
    /// which is shown this once.
    pub fn create_api_key(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<(ApiKeyRecord, String), ApiError> {
        let key = format!("cnt_{}", random_token(40));
        let record = ApiKeyRecord {
            id: format!("k_{}", random_token(12)),
            tenant: tenant.clone(),
            name: name.to_owned(),
            hash: sha256_hex(&key),
            prefix: key.chars().take(10).collect(),
            created_at: self.now(),
            revoked_at: None,
        };
        self.store.create_api_key(&record)?;
        Ok((record, key))
    }
}

//! Tenant, user and API-key management: `/api/v1/tenants`, `/api/v1/users`,
//! `/api/v1/tenants/{id}/api-keys`. Tenants and users are admin business;
//! a tenant's users may manage their own tenant's API keys.

use crate::auth::routes::UserBody;
use crate::auth::{check_password_policy, Caller};
use crate::error::ApiError;
use crate::extract::{AppJson, AppPath};
use crate::openapi::{Access, Doc, Routes};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Json;
use centinela_actors::clock::Timestamp;
use centinela_actors::ids::{TenantId, UserId};
use centinela_actors::store::{ApiKeyRecord, Role, TenantRecord, UserRecord};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

pub fn routes() -> Routes {
    const ADMIN: &[(u16, &str)] = &[(200, "ok"), (401, "no credentials"), (403, "not an admin")];
    const CREATED: &[(u16, &str)] = &[
        (201, "created"),
        (400, "bad input"),
        (401, "no credentials"),
        (403, "forbidden"),
        (409, "already exists"),
    ];
    const ONE: &[(u16, &str)] = &[
        (200, "ok"),
        (400, "bad id"),
        (401, "no credentials"),
        (403, "another tenant's"),
        (404, "not found"),
    ];
    const GONE: &[(u16, &str)] = &[
        (204, "deleted"),
        (400, "bad id"),
        (401, "no credentials"),
        (403, "forbidden"),
        (404, "not found"),
    ];
    const TENANT_GONE: &[(u16, &str)] = &[
        (204, "deleted"),
        (400, "bad id"),
        (401, "no credentials"),
        (403, "forbidden"),
        (404, "not found"),
        (
            503,
            "fleet: another node hosts the tenant (`tenant_moving`: delete it there), or the database is down",
        ),
    ];
    Routes::new()
        .route(
            "/api/v1/tenants",
            get(list_tenants).post(create_tenant),
            vec![
                Doc::new("GET", "tenants", "List tenants", Access::Admin, ADMIN).reply::<TenantList>(),
                Doc::new("POST", "tenants", "Create a tenant", Access::Admin, CREATED).body::<NewTenant>(json!({"id": "clinic", "name": "Clinic"})).reply::<TenantBody>(),
            ],
        )
        .route(
            "/api/v1/tenants/{id}",
            get(get_tenant).delete(delete_tenant),
            vec![
                Doc::new("GET", "tenants", "Get a tenant", Access::Authenticated, ONE).reply::<TenantBody>(),
                Doc::new("DELETE", "tenants", "Delete a tenant and everything it owns (its sessions are stopped first)", Access::Admin, TENANT_GONE),
            ],
        )
        .route(
            "/api/v1/tenants/{id}/api-keys",
            get(list_keys).post(create_key),
            vec![
                Doc::new("GET", "tenants", "List a tenant's API keys (masked)", Access::Authenticated, ONE).reply::<ApiKeyList>(),
                Doc::new("POST", "tenants", "Create an API key (shown once)", Access::Authenticated, CREATED).body::<NewKey>(json!({"name": "crm"})).reply::<ApiKeyBody>(),
            ],
        )
        .route(
            "/api/v1/tenants/{id}/api-keys/{key}",
            delete(revoke_key),
            vec![Doc::new("DELETE", "tenants", "Revoke an API key", Access::Authenticated, GONE)],
        )
        .route(
            "/api/v1/users",
            get(list_users).post(create_user),
            vec![
                Doc::new("GET", "users", "List users", Access::Admin, ADMIN).reply::<UserList>(),
                Doc::new("POST", "users", "Create a user", Access::Admin, CREATED)
                    .body::<NewUser>(json!({"username": "ana", "password": "**********", "role": "tenant", "tenant_id": "clinic"}))
                    .reply::<UserBody>(),
            ],
        )
        .route(
            "/api/v1/users/{id}",
            get(get_user).delete(delete_user),
            vec![
                Doc::new("GET", "users", "Get a user", Access::Admin, ONE).reply::<UserBody>(),
                Doc::new("DELETE", "users", "Delete a user", Access::Admin, GONE),
            ],
        )
        .route(
            "/api/v1/users/{id}/password",
            post(reset_password),
            vec![Doc::new(
                "POST",
                "users",
                "Set a user's password (an admin's reset): the user's tokens stop working",
                Access::Admin,
                &[
                    (200, "set"),
                    (400, "weak password or bad id"),
                    (401, "no credentials"),
                    (403, "not an admin"),
                    (404, "not found"),
                ],
            )
            .body::<NewPassword>(json!({"password": "**********"}))
            .reply::<UserBody>()],
        )
}

pub fn tenant_id(raw: &str) -> Result<TenantId, ApiError> {
    TenantId::new(raw).map_err(|e| ApiError::bad_request("invalid_tenant_id", e.to_string()))
}

/// A tenant (organization).
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantBody {
    pub id: TenantId,
    pub name: String,
    pub created_at: Timestamp,
}

impl From<&TenantRecord> for TenantBody {
    fn from(t: &TenantRecord) -> Self {
        TenantBody {
            id: t.id.clone(),
            name: t.name.clone(),
            created_at: t.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<TenantBody>,
}

/// An API key, masked; the key itself only in the answer that created it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyBody {
    pub id: String,
    pub name: String,
    pub tenant_id: TenantId,
    /// The key's first characters and `…`.
    pub key_prefix: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// The key, shown once: send it as `X-API-Key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl From<&ApiKeyRecord> for ApiKeyBody {
    fn from(k: &ApiKeyRecord) -> Self {
        ApiKeyBody {
            id: k.id.clone(),
            name: k.name.clone(),
            tenant_id: k.tenant.clone(),
            key_prefix: format!("{}…", k.prefix),
            created_at: k.created_at,
            revoked_at: k.revoked_at,
            key: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKeyBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserBody>,
}

/// The tenant, or 404; 403 first when the caller may not see it.
pub(crate) fn existing_tenant(
    state: &AppState,
    caller: &Caller,
    raw: &str,
) -> Result<TenantRecord, ApiError> {
    let id = tenant_id(raw)?;
    caller.check_tenant(&id)?;
    state
        .accounts
        .tenant(&id)?
        .ok_or_else(|| ApiError::NotFound(format!("tenant {id} not found")))
}

/// A new tenant: its id (1-64 of `A-Z a-z 0-9 _ -`) and display name.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    id: String,
    name: String,
}

async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<NewTenant>,
) -> Result<(StatusCode, Json<TenantBody>), ApiError> {
    caller.require_admin()?;
    let name = body.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::bad_request(
            "invalid_name",
            "name must be 1-200 characters",
        ));
    }
    let record = TenantRecord {
        id: tenant_id(&body.id)?,
        name: name.to_owned(),
        created_at: state.auth.now(),
    };
    state.accounts.create_tenant(&record)?;
    tracing::info!(tenant = %record.id, by = %caller.name(), "tenant created");
    Ok((StatusCode::CREATED, Json(TenantBody::from(&record))))
}

async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TenantList>, ApiError> {
    caller.require_admin()?;
    let tenants = state.accounts.tenants()?;
    Ok(Json(TenantList {
        tenants: tenants.iter().map(TenantBody::from).collect(),
    }))
}

async fn get_tenant(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<TenantBody>, ApiError> {
    Ok(Json(TenantBody::from(&existing_tenant(
        &state, &caller, &id,
    )?)))
}

/// Deletes a tenant with everything it owns (the domain's
/// `Tenants::delete`: sessions stopped first, then one purge).
async fn delete_tenant(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    let tenant = existing_tenant(&state, &caller, &id)?;
    state.tenants.delete(&tenant.id).await?;
    state.auth.credentials_changed();
    tracing::info!(tenant = %tenant.id, by = %caller.name(), "tenant deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A new API key's name.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    name: String,
}

async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<NewKey>,
) -> Result<(StatusCode, Json<ApiKeyBody>), ApiError> {
    if matches!(caller, Caller::ApiKey { .. }) {
        return Err(ApiError::Forbidden);
    }
    let tenant = existing_tenant(&state, &caller, &id)?;
    let name = body.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::bad_request(
            "invalid_name",
            "name must be 1-100 characters",
        ));
    }
    let (record, key) = state.auth.create_api_key(&tenant.id, name)?;
    tracing::info!(tenant = %tenant.id, key = %record.id, by = %caller.name(), "api key created");
    let body = ApiKeyBody {
        key: Some(key),
        ..ApiKeyBody::from(&record)
    };
    Ok((StatusCode::CREATED, Json(body)))
}

async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<ApiKeyList>, ApiError> {
    let tenant = existing_tenant(&state, &caller, &id)?;
    let keys = state.accounts.api_keys(&tenant.id)?;
    Ok(Json(ApiKeyList {
        api_keys: keys.iter().map(ApiKeyBody::from).collect(),
    }))
}

async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    AppPath((id, key)): AppPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if matches!(caller, Caller::ApiKey { .. }) {
        return Err(ApiError::Forbidden);
    }
    let tenant = existing_tenant(&state, &caller, &id)?;
    let found = state
        .accounts
        .revoke_api_key(&tenant.id, &key, state.auth.now())?;
    if !found {
        return Err(ApiError::NotFound(format!("api key {key} not found")));
    }
    state.auth.credentials_changed();
    tracing::info!(tenant = %tenant.id, key, by = %caller.name(), "api key revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// A new user; tenant users need a `tenant_id`, admins have none.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    username: String,
    password: String,
    role: Role,
    tenant_id: Option<String>,
}

async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<NewUser>,
) -> Result<(StatusCode, Json<UserBody>), ApiError> {
    caller.require_admin()?;
    let username = body.username.trim().to_owned();
    let valid = (3..=crate::auth::MAX_USERNAME).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_alphanumeric() || "._-@".contains(c));
    if !valid {
        return Err(ApiError::bad_request(
            "invalid_username",
            "usernames are 3-64 letters, digits or . _ - @",
        ));
    }
    check_password_policy(&body.password)?;
    let tenant = match (body.role, body.tenant_id) {
        (Role::Admin, None) => None,
        (Role::Tenant, Some(t)) => {
            let t = tenant_id(&t)?;
            if state.accounts.tenant(&t)?.is_none() {
                return Err(ApiError::bad_request(
                    "unknown_tenant",
                    format!("tenant {t} does not exist"),
                ));
            }
            Some(t)
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_role",
                "admins have no tenant_id; tenant users need one",
            ))
        }
    };
    let user = UserRecord {
        id: UserId::generate(),
        username,
        password_hash: state.auth.hash_password(body.password).await?,
        role: body.role,
        tenant,
        created_at: state.auth.now(),
        password_version: 0,
    };
    state.accounts.create_user(&user)?;
    tracing::info!(user = %user.username, by = %caller.name(), "user created");
    Ok((StatusCode::CREATED, Json(UserBody::from(&user))))
}

async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<UserList>, ApiError> {
    caller.require_admin()?;
    let users = state.accounts.users()?;
    Ok(Json(UserList {
        users: users.iter().map(UserBody::from).collect(),
    }))
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::new(raw).map_err(|e| ApiError::bad_request("invalid_user_id", e.to_string()))
}

async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<UserBody>, ApiError> {
    caller.require_admin()?;
    let id = user_id(&id)?;
    let user = state.accounts.user(&id)?;
    let user = user.ok_or_else(|| ApiError::NotFound(format!("user {id} not found")))?;
    Ok(Json(UserBody::from(&user)))
}

async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    let id = user_id(&id)?;
    if let Caller::User { id: me, .. } = &caller {
        if *me == id {
            return Err(ApiError::conflict(
                "cannot_delete_self",
                "you cannot delete your own account",
            ));
        }
    }
    if !state.accounts.delete_user(&id)? {
        return Err(ApiError::NotFound(format!("user {id} not found")));
    }
    state.auth.credentials_changed();
    tracing::info!(user = %id, by = %caller.name(), "user deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The password an admin sets for a user (the password policy applies).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    password: String,
}

/// An admin's reset: the new hash, and the password version bumped so the
/// user's older tokens (and open WebSockets) die.
async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<NewPassword>,
) -> Result<Json<UserBody>, ApiError> {
    caller.require_admin()?;
    let id = user_id(&id)?;
    check_password_policy(&body.password)?;
    let user = state.accounts.user(&id)?;
    let mut user = user.ok_or_else(|| ApiError::NotFound(format!("user {id} not found")))?;
    user.password_hash = state.auth.hash_password(body.password).await?;
    user.password_version += 1;
    state.accounts.update_user(&user)?;
    state.auth.credentials_changed();
    tracing::info!(user = %user.username, by = %caller.name(), "password reset");
    Ok(Json(UserBody::from(&user)))
}

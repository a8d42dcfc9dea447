//! Tenant, user and API-key management: `/api/v1/tenants`, `/api/v1/users`,
//! `/api/v1/tenants/{id}/api-keys`. Tenants and users are admin business;
//! a tenant's users may manage their own tenant's API keys.

use crate::auth::routes::user_json;
use crate::auth::{check_password_policy, hash_password, Caller};
use crate::error::ApiError;
use crate::extract::{AppJson, AppPath};
use crate::openapi::{Access, Doc, Routes};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::Json;
use centinela_actors::ids::{TenantId, UserId};
use centinela_actors::store::{ApiKeyRecord, Role, TenantRecord, UserRecord};
use serde::Deserialize;
use serde_json::{json, Value};

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
    Routes::new()
        .route(
            "/api/v1/tenants",
            get(list_tenants).post(create_tenant),
            vec![
                Doc::new("GET", "tenants", "List tenants", Access::Admin, ADMIN),
                Doc::new("POST", "tenants", "Create a tenant", Access::Admin, CREATED).body(json!({"id": "clinic", "name": "Clinic"})),
            ],
        )
        .route(
            "/api/v1/tenants/{id}",
            get(get_tenant).delete(delete_tenant),
            vec![
                Doc::new("GET", "tenants", "Get a tenant", Access::Authenticated, ONE),
                Doc::new("DELETE", "tenants", "Delete a tenant (its sessions are stopped and deleted first)", Access::Admin, GONE),
            ],
        )
        .route(
            "/api/v1/tenants/{id}/api-keys",
            get(list_keys).post(create_key),
            vec![
                Doc::new("GET", "tenants", "List a tenant's API keys (masked)", Access::Authenticated, ONE),
                Doc::new("POST", "tenants", "Create an API key (shown once)", Access::Authenticated, CREATED).body(json!({"name": "crm"})),
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
                Doc::new("GET", "users", "List users", Access::Admin, ADMIN),
                Doc::new("POST", "users", "Create a user", Access::Admin, CREATED)
                    .body(json!({"username": "ana", "password": "**********", "role": "tenant", "tenant_id": "clinic"})),
            ],
        )
        .route(
            "/api/v1/users/{id}",
            get(get_user).delete(delete_user),
            vec![
                Doc::new("GET", "users", "Get a user", Access::Admin, ONE),
                Doc::new("DELETE", "users", "Delete a user", Access::Admin, GONE),
            ],
        )
}

pub fn tenant_id(raw: &str) -> Result<TenantId, ApiError> {
    TenantId::new(raw).map_err(|e| ApiError::bad_request("invalid_tenant_id", e.to_string()))
}

fn tenant_json(t: &TenantRecord) -> Value {
    json!({ "id": t.id, "name": t.name, "created_at": t.created_at })
}

fn key_json(k: &ApiKeyRecord) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "tenant_id": k.tenant,
        "key_prefix": format!("{}…", k.prefix),
        "created_at": k.created_at,
        "revoked_at": k.revoked_at,
    })
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
        .data
        .tenant(&id)?
        .ok_or_else(|| ApiError::NotFound(format!("tenant {id} not found")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    id: String,
    name: String,
}

async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<NewTenant>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
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
    state.data.create_tenant(&record)?;
    tracing::info!(tenant = %record.id, by = %caller.name(), "tenant created");
    Ok((StatusCode::CREATED, Json(tenant_json(&record))))
}

async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let tenants = state.data.tenants()?;
    Ok(Json(
        json!({ "tenants": tenants.iter().map(tenant_json).collect::<Vec<_>>() }),
    ))
}

async fn get_tenant(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(tenant_json(&existing_tenant(&state, &caller, &id)?)))
}

/// Deletes a tenant: its sessions are stopped and deleted first.
async fn delete_tenant(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    let tenant = existing_tenant(&state, &caller, &id)?;
    state.supervisor.delete_tenant(tenant.id.clone()).await?;
    state.data.delete_tenant(&tenant.id)?;
    tracing::info!(tenant = %tenant.id, by = %caller.name(), "tenant deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
}

async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<NewKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
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
    let mut body = key_json(&record);
    body["key"] = json!(key);
    Ok((StatusCode::CREATED, Json(body)))
}

async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = existing_tenant(&state, &caller, &id)?;
    let keys = state.data.api_keys(&tenant.id)?;
    Ok(Json(
        json!({ "api_keys": keys.iter().map(key_json).collect::<Vec<_>>() }),
    ))
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
        .data
        .revoke_api_key(&tenant.id, &key, state.auth.now())?;
    if !found {
        return Err(ApiError::NotFound(format!("api key {key} not found")));
    }
    tracing::info!(tenant = %tenant.id, key, by = %caller.name(), "api key revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    password: String,
    role: Role,
    tenant_id: Option<String>,
}

async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<NewUser>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_admin()?;
    let username = body.username.trim().to_owned();
    let valid = (3..=64).contains(&username.len())
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
            if state.data.tenant(&t)?.is_none() {
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
        password_hash: hash_password(body.password).await?,
        role: body.role,
        tenant,
        created_at: state.auth.now(),
        password_version: 0,
    };
    state.data.create_user(&user)?;
    tracing::info!(user = %user.username, by = %caller.name(), "user created");
    Ok((StatusCode::CREATED, Json(user_json(&user))))
}

async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let users = state.data.users()?;
    Ok(Json(
        json!({ "users": users.iter().map(user_json).collect::<Vec<_>>() }),
    ))
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::new(raw).map_err(|e| ApiError::bad_request("invalid_user_id", e.to_string()))
}

async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let id = user_id(&id)?;
    let user = state.data.user(&id)?;
    let user = user.ok_or_else(|| ApiError::NotFound(format!("user {id} not found")))?;
    Ok(Json(user_json(&user)))
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
    if !state.data.delete_user(&id)? {
        return Err(ApiError::NotFound(format!("user {id} not found")));
    }
    tracing::info!(user = %id, by = %caller.name(), "user deleted");
    Ok(StatusCode::NO_CONTENT)
}

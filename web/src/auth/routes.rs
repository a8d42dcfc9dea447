//! `/auth/*` (seed 000's API): login with `usuario` or `username`, verify,
//! logout (revokes the token for good), change-password (older tokens die),
//! me.

use super::{check_password_policy, Caller, MAX_USERNAME};
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::extract::AppJson;
use crate::openapi::{Access, Doc, Routes};
use crate::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Json;
use centinela_actors::clock::Timestamp;
use centinela_actors::ids::{TenantId, UserId};
use centinela_actors::store::{Role, UserRecord};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use utoipa::ToSchema;

pub fn routes() -> Routes {
    const LOGIN: &[(u16, &str)] = &[
        (200, "token and user"),
        (400, "missing username"),
        (401, "invalid credentials"),
        (429, "too many failed logins"),
    ];
    const AUTHED: &[(u16, &str)] = &[(200, "ok"), (401, "no or bad credentials")];
    Routes::new()
        .route(
            "/auth/login",
            post(login),
            vec![Doc::new(
                "POST",
                "auth",
                "Log in with username (or usuario) and password",
                Access::Public,
                LOGIN,
            )
            .body::<Login>(json!({"username": "ana", "password": "********"}))
            .reply::<LoginReply>()],
        )
        .route(
            "/auth/verify",
            post(verify),
            vec![Doc::new(
                "POST",
                "auth",
                "Is this token valid, and for whom (the bearer header, or the token in the body)",
                Access::Public,
                AUTHED,
            )
            .optional_body::<VerifyBody>()
            .reply::<VerifyReply>()],
        )
        .route(
            "/auth/logout",
            post(logout),
            vec![Doc::new(
                "POST",
                "auth",
                "Revoke this token (also across restarts)",
                Access::Authenticated,
                AUTHED,
            )
            .reply::<Done>()],
        )
        .route(
            "/auth/change-password",
            post(change_password),
            vec![Doc::new(
                "POST",
                "auth",
                "Change the password; older tokens stop working",
                Access::Authenticated,
                &[
                    (200, "new token"),
                    (400, "weak password"),
                    (401, "wrong current password"),
                ],
            )
            .body::<ChangePassword>(
                json!({"current_password": "********", "new_password": "**********"}),
            )
            .reply::<TokenReply>()],
        )
        .route(
            "/auth/me",
            get(me),
            vec![
                Doc::new("GET", "auth", "Who am I", Access::Authenticated, AUTHED)
                    .reply::<MeReply>(),
            ],
        )
}

/// A user account (never its password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserBody {
    pub id: UserId,
    pub username: String,
    pub role: Role,
    /// Set for tenant users; null for admins.
    pub tenant_id: Option<TenantId>,
}

impl From<&UserRecord> for UserBody {
    fn from(u: &UserRecord) -> Self {
        UserBody {
            id: u.id.clone(),
            username: u.username.clone(),
            role: u.role,
            tenant_id: u.tenant.clone(),
        }
    }
}

/// A token and who it is for.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginReply {
    pub success: bool,
    /// Send it as `Authorization: Bearer <token>`.
    pub token: String,
    pub expires_at: Timestamp,
    pub user: UserBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyReply {
    pub success: bool,
    pub valid: bool,
    pub user: UserBody,
    pub expires_at: Timestamp,
}

/// Done.
#[derive(Debug, Serialize, ToSchema)]
pub struct Done {
    pub success: bool,
}

/// A fresh token (the older ones stopped working).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenReply {
    pub success: bool,
    pub token: String,
    pub expires_at: Timestamp,
}

/// The caller: a logged-in user, or a tenant's API key.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeReply {
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyCaller>,
}

/// The API key a request came with.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyCaller {
    pub id: String,
    pub name: String,
    pub tenant_id: TenantId,
}

/// `username` (or seed 000's `usuario`) and password.
#[derive(Deserialize, ToSchema)]
pub struct Login {
    usuario: Option<String>,
    username: Option<String>,
    password: String,
}

/// Refused by the throttle: retry after `wait`.
fn too_many_attempts(wait: Duration) -> ApiError {
    ApiError::TooManyRequests {
        code: "too_many_attempts",
        message: "too many failed attempts; try again later".into(),
        retry_after_secs: wait.as_secs().max(1),
        refusal: None,
    }
}

async fn login(
    State(state): State<AppState>,
    client: ClientAddr,
    AppJson(body): AppJson<Login>,
) -> Result<Json<LoginReply>, ApiError> {
    let username = body
        .username
        .or(body.usuario)
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("missing_field", "username (or usuario) is required")
        })?;
    if username.chars().count() > MAX_USERNAME {
        return Err(ApiError::bad_request(
            "invalid_username",
            format!("usernames have at most {MAX_USERNAME} characters"),
        ));
    }
    let auth = &state.auth;
    let user_key = format!("user:{}", username.to_lowercase());
    // The socket peer, or behind a trusted proxy the client it names.
    let keys = [user_key.clone(), format!("ip:{client}")];
    let attempt = auth.throttle.attempt(&keys).map_err(too_many_attempts)?;
    let user = auth.accounts().user_by_name(&username)?;
    // Same work either way, so timing does not reveal which part was wrong.
    let hash = user
        .as_ref()
        .map_or_else(|| auth.dummy_hash.clone(), |u| u.password_hash.clone());
    let ok = auth.verify_password(body.password, hash).await? && user.is_some();
    let Some(user) = user.filter(|_| ok) else {
        tracing::warn!(username = %username, client = %client, "login failed");
        return Err(ApiError::InvalidCredentials);
    };
    attempt.succeeded(&user_key);
    let (token, expires_at) = auth.issue(&user)?;
    tracing::info!(username = %user.username, client = %client, "login");
    Ok(Json(LoginReply {
        success: true,
        token,
        expires_at,
        user: UserBody::from(&user),
    }))
}

/// The token to check, when it is not in the `Authorization` header.
#[derive(Deserialize, Default, ToSchema)]
pub struct VerifyBody {
    token: Option<String>,
}

/// The token to check: the bearer header, else `{"token": ...}` in the body.
async fn verify(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<VerifyReply>, ApiError> {
    let from_header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let from_body = || {
        if body.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice::<VerifyBody>(&body)
            .map(|b| b.token)
            .map_err(|e| ApiError::bad_request("malformed_json", e.to_string()))
    };
    let token = match from_header {
        Some(t) => t,
        None => from_body()?.ok_or_else(ApiError::unauthorized)?,
    };
    let (user, claims) = state.auth.verify_token(&token)?;
    Ok(Json(VerifyReply {
        success: true,
        valid: true,
        user: UserBody::from(&user),
        expires_at: Timestamp::from_millis(claims.exp * 1000),
    }))
}

async fn logout(State(state): State<AppState>, caller: Caller) -> Result<Json<Done>, ApiError> {
    let Caller::User {
        jti, exp, username, ..
    } = caller
    else {
        return Err(ApiError::bad_request(
            "not_a_session",
            "API keys are revoked, not logged out",
        ));
    };
    let auth = &state.auth;
    auth.accounts()
        .revoke_token(&jti, Timestamp::from_millis(exp * 1000), auth.now())?;
    auth.credentials_changed();
    tracing::info!(username = %username, "logout");
    Ok(Json(Done { success: true }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<ChangePassword>,
) -> Result<Json<TokenReply>, ApiError> {
    let Caller::User { id, .. } = caller else {
        return Err(ApiError::Forbidden);
    };
    check_password_policy(&body.new_password)?;
    let auth = &state.auth;
    let mut user = auth
        .accounts()
        .user(&id)?
        .ok_or_else(ApiError::unauthorized)?;
    let key = format!("password:{id}");
    let attempt = auth
        .throttle
        .attempt(std::slice::from_ref(&key))
        .map_err(too_many_attempts)?;
    let right = auth
        .verify_password(body.current_password, user.password_hash.clone())
        .await?;
    if !right {
        return Err(ApiError::InvalidCredentials);
    }
    attempt.succeeded(&key);
    user.password_hash = auth.hash_password(body.new_password).await?;
    user.password_version += 1;
    auth.accounts().update_user(&user)?;
    auth.credentials_changed();
    let (token, expires_at) = auth.issue(&user)?;
    tracing::info!(username = %user.username, "password changed");
    Ok(Json(TokenReply {
        success: true,
        token,
        expires_at,
    }))
}

async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<MeReply>, ApiError> {
    match caller {
        Caller::User { id, .. } => {
            let user = state
                .auth
                .accounts()
                .user(&id)?
                .ok_or_else(ApiError::unauthorized)?;
            Ok(Json(MeReply {
                success: true,
                user: Some(UserBody::from(&user)),
                api_key: None,
            }))
        }
        Caller::ApiKey { id, name, tenant } => Ok(Json(MeReply {
            success: true,
            user: None,
            api_key: Some(ApiKeyCaller {
                id,
                name,
                tenant_id: tenant,
            }),
        })),
    }
}

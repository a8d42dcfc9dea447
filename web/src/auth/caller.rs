//! `Caller`: who is making a request, from `Authorization: Bearer <token>`
//! or `X-API-Key`. Handlers take it as an extractor; a missing or bad
//! credential is a 401 before the handler runs.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use centinela_actors::ids::{TenantId, UserId};
use centinela_actors::store::Role;

#[derive(Debug, Clone)]
pub enum Caller {
    User {
        id: UserId,
        username: String,
        role: Role,
        tenant: Option<TenantId>,
        jti: String,
        exp: i64,
    },
    ApiKey {
        id: String,
        name: String,
        tenant: TenantId,
    },
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Caller::User {
                role: Role::Admin,
                ..
            }
        )
    }

    /// The caller's tenant; `None` for admins.
    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            Caller::User { tenant, .. } => tenant.as_ref(),
            Caller::ApiKey { tenant, .. } => Some(tenant),
        }
    }

    /// Who, for the audit log.
    pub fn name(&self) -> String {
        match self {
            Caller::User { username, .. } => username.clone(),
            Caller::ApiKey { name, id, .. } => format!("api-key:{name}:{id}"),
        }
    }

    /// Admins see every tenant; everyone else their own.
    pub fn may_access(&self, tenant: &TenantId) -> bool {
        self.is_admin() || self.tenant() == Some(tenant)
    }

    /// 403 unless the caller may access `tenant`.
    pub fn check_tenant(&self, tenant: &TenantId) -> Result<(), ApiError> {
        if self.may_access(tenant) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// The credential in the request: a bearer token (header, or `?token=` for
/// WebSocket handshakes, which browsers cannot give headers) or an API key.
pub(crate) fn credential(parts: &Parts) -> Option<(bool, String)> {
    credential_of(&parts.headers, &parts.uri)
}

/// [`credential`] from a request's headers and URI.
pub(crate) fn credential_of(
    headers: &axum::http::HeaderMap,
    uri: &axum::http::Uri,
) -> Option<(bool, String)> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(v) = header("authorization") {
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))?;
        return Some((true, token.trim().to_owned()));
    }
    if let Some(k) = header("x-api-key") {
        return Some((false, k.to_owned()));
    }
    // In a query string a credential lands in proxy and access logs: only
    // the WebSocket handshake, which a browser cannot give headers, may.
    if uri.path() != crate::ws::WS_PATH {
        return None;
    }
    let query = uri.query()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        match k {
            "token" => Some((true, v.to_owned())),
            "api_key" => Some((false, v.to_owned())),
            _ => None,
        }
    })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (bearer, secret) = credential(parts).ok_or_else(ApiError::unauthorized)?;
        if bearer {
            let (user, claims) = state.auth.verify_token(&secret)?;
            Ok(Caller::User {
                id: user.id,
                username: user.username,
                role: user.role,
                tenant: user.tenant,
                jti: claims.jti,
                exp: claims.exp,
            })
        } else {
            let key = state.auth.verify_api_key(&secret)?;
            Ok(Caller::ApiKey {
                id: key.id,
                name: key.name,
                tenant: key.tenant,
            })
        }
    }
}

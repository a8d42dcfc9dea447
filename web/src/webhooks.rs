//! `/api/v1/tenants/{id}/webhook`: a tenant's webhook target (its URL, which
//! must not point at a non-public address — 400 `forbidden_target` — and the
//! signing secret, shown once), a test event, its deliveries
//! (`?status=pending|delivered|dead`, failures as generic codes), and
//! redelivery of one. Tenant users manage their own; admins any. The
//! delivering itself is `centinela_actors::messaging::webhooks`'s.

use crate::auth::{random_token, Caller};
use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, AppQuery};
use crate::openapi::{Access, Doc, Routes};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use centinela_actors::ids::TenantId;
use centinela_actors::store::{Delivery, DeliveryStatus, WebhookTarget};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

pub fn routes() -> Routes {
    const OK: &[(u16, &str)] = &[
        (200, "ok"),
        (400, "bad input"),
        (401, "no credentials"),
        (403, "another tenant's"),
        (404, "not found"),
    ];
    Routes::new()
        .route(
            "/api/v1/tenants/{id}/webhook",
            get(get_target).put(set_target).delete(delete_target),
            vec![
                Doc::new(
                    "GET",
                    "webhooks",
                    "The tenant's webhook URL (secret masked)",
                    Access::Authenticated,
                    OK,
                )
                .reply::<TargetShown>(),
                Doc::new(
                    "PUT",
                    "webhooks",
                    "Set the webhook URL (public addresses only, else 400 forbidden_target); the signing secret is shown once",
                    Access::Authenticated,
                    OK,
                )
                .body::<SetTarget>(json!({"url": "https://crm.example/hooks/whatsapp"}))
                .reply::<TargetSet>(),
                Doc::new(
                    "DELETE",
                    "webhooks",
                    "Remove the webhook",
                    Access::Authenticated,
                    &[
                        (204, "removed"),
                        (403, "another tenant's"),
                        (404, "none set"),
                    ],
                ),
            ],
        )
        .route(
            "/api/v1/tenants/{id}/webhook/deliveries",
            get(list_deliveries),
            vec![Doc::new(
                "GET",
                "webhooks",
                "Deliveries, newest first (?status=pending|delivered|dead)",
                Access::Authenticated,
                OK,
            )
            .query::<Filter>()
            .reply::<DeliveryList>()],
        )
        .route(
            "/api/v1/tenants/{id}/webhook/test",
            post(send_test),
            vec![Doc::new(
                "POST",
                "webhooks",
                "Queue a signed webhook.test event to the tenant's URL (listed with the deliveries)",
                Access::Authenticated,
                &[
                    (202, "queued"),
                    (401, "no credentials"),
                    (403, "another tenant's"),
                    (404, "no webhook is set"),
                ],
            )
            .reply::<Redelivered>()],
        )
        .route(
            "/api/v1/tenants/{id}/webhook/deliveries/{did}/redeliver",
            post(redeliver),
            vec![Doc::new(
                "POST",
                "webhooks",
                "Queue a delivery again (e.g. from the dead-letter list)",
                Access::Authenticated,
                OK,
            )
            .reply::<Redelivered>()],
        )
}

/// The tenant, if the caller may manage it (403 first) and it exists (404:
/// nothing is read or stored for a tenant that does not exist).
pub(crate) fn own_tenant(
    state: &AppState,
    caller: &Caller,
    raw: &str,
) -> Result<TenantId, ApiError> {
    if matches!(caller, Caller::ApiKey { .. }) {
        return Err(ApiError::Forbidden);
    }
    Ok(crate::accounts::existing_tenant(state, caller, raw)?.id)
}

/// Where to POST the tenant's events; without a `secret` (16-256
/// characters) one is generated.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetTarget {
    url: String,
    secret: Option<String>,
}

async fn set_target(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<SetTarget>,
) -> Result<Json<TargetSet>, ApiError> {
    let tenant = own_tenant(&state, &caller, &id)?;
    let url = body.url.trim().to_owned();
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() <= 2048
        && !url.contains(char::is_whitespace);
    if !ok {
        return Err(ApiError::bad_request(
            "invalid_url",
            "url must be an http:// or https:// URL",
        ));
    }
    // Before anything is stored: not a loopback, private or other
    // non-public address, nor a name that resolves only to such.
    state.webhooks.check_target(&url).await?;
    let secret = match body.secret {
        Some(s) if s.len() < 16 || s.len() > 256 => {
            return Err(ApiError::bad_request(
                "invalid_secret",
                "secret must be 16-256 characters",
            ))
        }
        Some(s) => s,
        None => random_token(40),
    };
    let target = WebhookTarget {
        tenant: tenant.clone(),
        url: url.clone(),
        secret: secret.clone(),
    };
    if !state.settings.set_webhook_target(&target)? {
        return Err(ApiError::NotFound(format!("tenant {tenant} not found")));
    }
    tracing::info!(tenant = %tenant, by = %caller.name(), "webhook set");
    Ok(Json(TargetSet { url, secret }))
}

async fn get_target(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<TargetShown>, ApiError> {
    let tenant = own_tenant(&state, &caller, &id)?;
    let t = state.settings.webhook_target(&tenant)?;
    let t = t.ok_or_else(|| ApiError::NotFound("no webhook is set".into()))?;
    Ok(Json(TargetShown {
        url: t.url,
        secret_prefix: format!("{}…", t.secret.chars().take(4).collect::<String>()),
    }))
}

async fn delete_target(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = own_tenant(&state, &caller, &id)?;
    if !state.settings.delete_webhook_target(&tenant)? {
        return Err(ApiError::NotFound("no webhook is set".into()));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Which deliveries to list.
#[derive(Deserialize, IntoParams)]
pub struct Filter {
    #[param(inline)]
    status: Option<DeliveryStatus>,
}

/// The webhook just set, with its signing secret (shown only now).
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetSet {
    pub url: String,
    /// Signs every delivery (HMAC-SHA256, `X-Centinela-Signature`).
    pub secret: String,
}

/// The webhook, its secret masked.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetShown {
    pub url: String,
    /// The secret's first characters and `…`.
    pub secret_prefix: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Redelivered {
    pub delivery: Delivery,
}

async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppQuery(f): AppQuery<Filter>,
) -> Result<Json<DeliveryList>, ApiError> {
    let tenant = own_tenant(&state, &caller, &id)?;
    let list = state.data.deliveries(&tenant, f.status)?;
    Ok(Json(DeliveryList { deliveries: list }))
}

async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    AppPath((id, did)): AppPath<(String, String)>,
) -> Result<Json<Redelivered>, ApiError> {
    let tenant = own_tenant(&state, &caller, &id)?;
    let d = state.data.delivery(&did)?;
    let d = d
        .filter(|d| d.tenant == tenant)
        .ok_or_else(|| ApiError::NotFound(format!("delivery {did} not found")))?;
    let d = state
        .webhooks
        .redeliver(d)?
        .ok_or_else(|| ApiError::NotFound(format!("delivery {did} not found")))?;
    Ok(Json(Redelivered { delivery: d }))
}

/// A `webhook.test` event through the tenant's own queue: the answer is the
/// pending delivery, whose outcome the deliveries list shows.
async fn send_test(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<(StatusCode, Json<Redelivered>), ApiError> {
    let tenant = own_tenant(&state, &caller, &id)?;
    let d = state
        .webhooks
        .test_event(&tenant)?
        .ok_or_else(|| ApiError::NotFound("no webhook is set".into()))?;
    tracing::info!(tenant = %tenant, delivery = %d.id, by = %caller.name(), "webhook test queued");
    Ok((StatusCode::ACCEPTED, Json(Redelivered { delivery: d })))
}

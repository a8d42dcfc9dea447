//! `/api/v1/sessions/{id}/messages`: queue a text (durable before the 202,
//! idempotent by key, optionally scheduled with `send_at`), read one
//! message, list a session's messages. Sending is the session's paced
//! sender's job; this layer only accepts and reads.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, AppQuery};
use crate::openapi::{Access, Doc, Routes};
use crate::sessions::visible;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Json;
use centinela_actors::clock::Timestamp;
use centinela_actors::store::MessageRecord;
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Routes {
    const ONE: &[(u16, &str)] = &[
        (200, "ok"),
        (400, "bad id"),
        (401, "no credentials"),
        (403, "another tenant's"),
        (404, "not found"),
    ];
    Routes::new()
        .route(
            "/api/v1/sessions/{id}/messages",
            get(list_messages).post(send_message),
            vec![
                Doc::new(
                    "GET",
                    "messages",
                    "A session's messages, newest first (?limit, ?before)",
                    Access::Authenticated,
                    ONE,
                ),
                Doc::new(
                    "POST",
                    "messages",
                    "Queue a text (durable before the 202; paced; idempotent by key)",
                    Access::Authenticated,
                    &[
                        (202, "queued"),
                        (400, "bad input"),
                        (401, "no credentials"),
                        (403, "another tenant's"),
                        (404, "not found"),
                    ],
                )
                .body(
                    json!({"to": "5491122334455", "text": "hola", "idempotency_key": "order-42"}),
                ),
            ],
        )
        .route(
            "/api/v1/sessions/{id}/inbox",
            get(inbox),
            vec![Doc::new("GET", "messages", "Incoming messages, newest first (?limit, ?before=seq); the last 1,000 per session are kept", Access::Authenticated, ONE)],
        )
        .route(
            "/api/v1/sessions/{id}/messages/{mid}",
            get(get_message),
            vec![Doc::new(
                "GET",
                "messages",
                "One message and its status",
                Access::Authenticated,
                ONE,
            )],
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Send {
    to: String,
    text: String,
    idempotency_key: Option<String>,
    send_at: Option<String>,
}

/// Normalizes an E.164-ish number: optional `+`, spaces and dashes removed,
/// then 6 to 15 digits.
pub fn normalize_phone(raw: &str) -> Result<String, ApiError> {
    let digits: String = raw
        .trim()
        .trim_start_matches('+')
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .collect();
    if (6..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) {
        Ok(digits)
    } else {
        Err(ApiError::bad_request(
            "invalid_phone",
            "a phone number is 6 to 15 digits in international format",
        ))
    }
}

pub fn message_json(m: &MessageRecord) -> Value {
    json!({
        "id": m.id,
        "session_id": m.session,
        "tenant_id": m.tenant,
        "to": m.to,
        "text": m.text,
        "status": m.status,
        "idempotency_key": m.idempotency_key,
        "created_at": m.created_at,
        "send_at": m.send_at,
        "updated_at": m.updated_at,
        "error": m.error,
    })
}

/// Queues a text: answered 202 only once the message is on disk. The
/// session's paced sender hands it to the engine when the session is READY.
async fn send_message(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<Send>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let to = normalize_phone(&body.to)?;
    if body.text.trim().is_empty() || body.text.chars().count() > 4096 {
        return Err(ApiError::bad_request(
            "invalid_text",
            "text must be 1-4096 characters",
        ));
    }
    if body
        .idempotency_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 128)
    {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "idempotency_key must be 1-128 characters",
        ));
    }
    let send_at = body
        .send_at
        .as_deref()
        .map(|s| {
            Timestamp::parse_rfc3339(s).ok_or_else(|| {
                ApiError::bad_request("invalid_send_at", "send_at must be an RFC 3339 time")
            })
        })
        .transpose()?;
    let d = visible(&state, &caller, &id).await?;
    let now = state.clock.now();
    let record = MessageRecord::queued(d.view.tenant, d.view.id, to, body.text, now)
        .with_key(body.idempotency_key)
        .not_before(send_at);
    let stored = state.outbox.accept(record).await?;
    Ok((StatusCode::ACCEPTED, Json(message_json(&stored))))
}

/// A message of a session the caller may see.
async fn get_message(
    State(state): State<AppState>,
    caller: Caller,
    AppPath((id, mid)): AppPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let d = visible(&state, &caller, &id).await?;
    let m = state.data.message(&mid)?;
    let m = m
        .filter(|m| m.session == d.view.id)
        .ok_or_else(|| ApiError::NotFound(format!("message {mid} not found")))?;
    Ok(Json(message_json(&m)))
}

#[derive(Deserialize)]
struct Page {
    limit: Option<usize>,
    before: Option<String>,
}

/// A session's messages, newest first; `?before=<id>` for the next page.
async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppQuery(p): AppQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    let d = visible(&state, &caller, &id).await?;
    let limit = p.limit.unwrap_or(50).clamp(1, 500);
    let page = state
        .data
        .messages(&d.view.id, limit, p.before.as_deref())?;
    let next = (page.len() == limit)
        .then(|| page.last().map(|m| m.id.clone()))
        .flatten();
    Ok(Json(
        json!({ "messages": page.iter().map(message_json).collect::<Vec<_>>(), "next_before": next }),
    ))
}

#[derive(Deserialize)]
struct InboxPage {
    limit: Option<usize>,
    before: Option<u64>,
}

/// A session's incoming messages, newest first.
async fn inbox(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppQuery(p): AppQuery<InboxPage>,
) -> Result<Json<Value>, ApiError> {
    let d = visible(&state, &caller, &id).await?;
    let limit = p.limit.unwrap_or(50).clamp(1, 500);
    let page = state.data.incoming(&d.view.id, limit, p.before)?;
    let next = (page.len() == limit)
        .then(|| page.last().map(|m| m.seq))
        .flatten();
    Ok(Json(json!({ "messages": page, "next_before": next })))
}

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
use centinela_actors::engine::cloud::Template;
use centinela_actors::engine::EngineKind;
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::store::{Deferral, IncomingRecord, MessageRecord, MessageStatus};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

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
                )
                .query::<Page>()
                .reply::<MessageList>(),
                Doc::new(
                    "POST",
                    "messages",
                    "Queue a text, or a template on a cloud session (durable before the 202; paced; idempotent by key)",
                    Access::Authenticated,
                    &[
                        (202, "queued"),
                        (400, "bad input"),
                        (401, "no credentials"),
                        (403, "another tenant's"),
                        (404, "not found"),
                    ],
                )
                .body::<SendText>(json!({"to": "5491122334455", "text": "hola", "idempotency_key": "order-42"}))
                .reply::<MessageBody>(),
            ],
        )
        .route(
            "/api/v1/sessions/{id}/inbox",
            get(inbox),
            vec![Doc::new("GET", "messages", "Incoming messages, newest first (?limit, ?before=seq); the last 1,000 per session are kept", Access::Authenticated, ONE).query::<InboxPage>().reply::<InboxList>()],
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
            )
            .reply::<MessageBody>()],
        )
}

/// A message to send: `to` in international format and exactly one of
/// `text` (1-4096 characters) or `template` (cloud sessions only: an
/// approved template by name, language and components); an
/// `idempotency_key` makes a retry return the first message; `send_at`
/// (RFC 3339) holds it until then.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendText {
    to: String,
    text: Option<String>,
    template: Option<Template>,
    idempotency_key: Option<String>,
    send_at: Option<String>,
}

/// Components passed to Meta as given, within reason.
const MAX_TEMPLATE_BYTES: usize = 16 * 1024;

/// `text` or `template`, exactly one, each within its bounds.
fn content(
    text: Option<String>,
    template: Option<Template>,
) -> Result<(String, Option<Template>), ApiError> {
    match (text, template) {
        (Some(text), None) => {
            if text.trim().is_empty() || text.chars().count() > 4096 {
                return Err(ApiError::bad_request(
                    "invalid_text",
                    "text must be 1-4096 characters",
                ));
            }
            Ok((text, None))
        }
        (None, Some(t)) => {
            let name_ok = (1..=512).contains(&t.name.len())
                && t.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            let lang_ok = (2..=15).contains(&t.language.code.len())
                && t.language
                    .code
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            let size = serde_json::to_vec(&t.components).map_or(usize::MAX, |b| b.len());
            if !name_ok || !lang_ok || size > MAX_TEMPLATE_BYTES {
                return Err(ApiError::bad_request(
                    "invalid_template",
                    "template.name is 1-512 of a-z, 0-9 and _; template.language.code like en_US; components at most 16 KB",
                ));
            }
            Ok((String::new(), Some(t)))
        }
        _ => Err(ApiError::bad_request(
            "invalid_content",
            "give exactly one of text or template",
        )),
    }
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

/// An outgoing message and its status.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageBody {
    pub id: String,
    pub session_id: SessionId,
    pub tenant_id: TenantId,
    /// The recipient's number (digits).
    pub to: String,
    pub text: String,
    /// A template message's template (its `text` is empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<Template>,
    pub status: MessageStatus,
    pub idempotency_key: Option<String>,
    pub created_at: Timestamp,
    /// Not sent before this time.
    pub send_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    /// Why it failed (`not_on_whatsapp`, ...).
    pub error: Option<String>,
    /// While `deferred`: why it waits (`new_contact_budget`) and when it is
    /// tried again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferred: Option<Deferral>,
}

impl From<&MessageRecord> for MessageBody {
    fn from(m: &MessageRecord) -> Self {
        MessageBody {
            id: m.id.clone(),
            session_id: m.session.clone(),
            tenant_id: m.tenant.clone(),
            to: m.to.clone(),
            // A verification code's message never shows its code.
            text: m.visible_text().to_owned(),
            template: m.visible_template(),
            status: m.status,
            idempotency_key: m.idempotency_key.clone(),
            created_at: m.created_at,
            send_at: m.send_at,
            updated_at: m.updated_at,
            error: m.error.clone(),
            deferred: m.deferred,
        }
    }
}

/// A page of outgoing messages, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    pub messages: Vec<MessageBody>,
    /// Pass as `?before=` for the next page; null on the last.
    pub next_before: Option<String>,
}

/// A page of incoming messages, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboxList {
    pub messages: Vec<IncomingRecord>,
    /// Pass as `?before=` for the next page; null on the last.
    pub next_before: Option<u64>,
}

/// Queues a text: answered 202 only once the message is on disk. The
/// session's paced sender hands it to the engine when the session is READY.
async fn send_message(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<SendText>,
) -> Result<(StatusCode, Json<MessageBody>), ApiError> {
    let to = normalize_phone(&body.to)?;
    let (text, template) = content(body.text, body.template)?;
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
    if template.is_some() && d.engine != EngineKind::Cloud {
        return Err(ApiError::bad_request(
            "template_needs_cloud",
            "templates are sent by cloud sessions only",
        ));
    }
    let now = state.clock.now();
    let record = MessageRecord::queued(d.view.tenant, d.view.id, to, text, now)
        .with_key(body.idempotency_key)
        .with_template(template)
        .not_before(send_at);
    let stored = state.outbox.accept(record).await?;
    Ok((StatusCode::ACCEPTED, Json(MessageBody::from(&stored))))
}

/// A message of a session the caller may see.
async fn get_message(
    State(state): State<AppState>,
    caller: Caller,
    AppPath((id, mid)): AppPath<(String, String)>,
) -> Result<Json<MessageBody>, ApiError> {
    let d = visible(&state, &caller, &id).await?;
    let m = state.data.message(&mid)?;
    let m = m
        .filter(|m| m.session == d.view.id)
        .ok_or_else(|| ApiError::NotFound(format!("message {mid} not found")))?;
    Ok(Json(MessageBody::from(&m)))
}

/// A page of a list.
#[derive(Deserialize, IntoParams)]
pub struct Page {
    /// 1-500, default 50.
    limit: Option<usize>,
    /// The `next_before` of the page before.
    before: Option<String>,
}

/// A session's messages, newest first; `?before=<id>` for the next page.
async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppQuery(p): AppQuery<Page>,
) -> Result<Json<MessageList>, ApiError> {
    let d = visible(&state, &caller, &id).await?;
    let limit = p.limit.unwrap_or(50).clamp(1, 500);
    let page = state
        .data
        .messages(&d.view.id, limit, p.before.as_deref())?;
    let next = (page.len() == limit)
        .then(|| page.last().map(|m| m.id.clone()))
        .flatten();
    Ok(Json(MessageList {
        messages: page.iter().map(MessageBody::from).collect(),
        next_before: next,
    }))
}

/// A page of the inbox.
#[derive(Deserialize, IntoParams)]
pub struct InboxPage {
    /// 1-500, default 50.
    limit: Option<usize>,
    /// The `next_before` of the page before.
    before: Option<u64>,
}

/// A session's incoming messages, newest first.
async fn inbox(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppQuery(p): AppQuery<InboxPage>,
) -> Result<Json<InboxList>, ApiError> {
    let d = visible(&state, &caller, &id).await?;
    let limit = p.limit.unwrap_or(50).clamp(1, 500);
    let page = state.data.incoming(&d.view.id, limit, p.before)?;
    let next = (page.len() == limit)
        .then(|| page.last().map(|m| m.seq))
        .flatten();
    Ok(Json(InboxList {
        messages: page,
        next_before: next,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verification_codes_message_reads_redacted_while_it_is_queued() {
        let m = MessageRecord::queued(
            TenantId::new("t").expect("id"),
            SessionId::new("s").expect("id"),
            "5491122334466".into(),
            "482913 es tu código de verificación de Centinela".into(),
            Timestamp::from_millis(1),
        );
        assert_eq!(MessageBody::from(&m).text, m.text, "an ordinary text shows");
        let code = m
            .clone()
            .carrying_code("otp_1".into(), Timestamp::from_millis(2));
        let body = MessageBody::from(&code);
        assert_eq!(body.text, centinela_actors::store::REDACTED_TEXT);
        let json = serde_json::to_string(&body).expect("json");
        assert!(!json.contains("482913"), "{json}");
    }
}

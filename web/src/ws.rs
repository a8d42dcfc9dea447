//! `GET /api/v1/ws`: the live event stream, and `GET /api/v1/logs?since=`,
//! its catch-up. Authenticated at the handshake (bearer token, `?token=`, or
//! API key); a tenant receives only its own sessions' events; admins receive
//! everything and, with `?logs=1`, the supervisor log stream (filterable by
//! `log_level` and `log_tenant`).
//!
//! The credential is checked again whenever one may have stopped working
//! (a logout, a password change, a user, key or tenant deleted) and when a
//! token expires: the socket is then closed with code 4001 and the reason.
//!
//! Each client has its own reader of the hub's broadcast: a client that
//! reads too slowly falls behind, gets `{"type":"resync"}` and skips ahead;
//! one whose socket stays blocked past [`SEND_TIMEOUT`] is dropped. Neither
//! slows the hub or the other clients. Pings keep idle connections alive and
//! detect dead ones.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::AppQuery;
use crate::hub::HubEvent;
use crate::openapi::{Access, Doc, Routes};
use crate::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Json;
use centinela_actors::ids::TenantId;
use centinela_actors::messaging::webhooks::WebhookEvent;
use centinela_actors::store::AuditEntry;
use futures::{Sink, SinkExt, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};

/// A send that takes longer than this drops the client.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const PING_EVERY: Duration = Duration::from_secs(20);

/// The WebSocket's path: the one route that takes `?token=` or `?api_key=`.
pub const WS_PATH: &str = "/api/v1/ws";

pub fn routes() -> Routes {
    Routes::new()
        .route(
            WS_PATH,
            get(upgrade),
            vec![Doc::new(
                "GET",
                "events",
                "WebSocket: live events (?token=, ?logs=1 for admins, log_level, log_tenant)",
                Access::Authenticated,
                &[
                    (101, "switching protocols"),
                    (401, "no credentials"),
                    (403, "logs are for admins"),
                ],
            )
            .query::<WsQuery>()],
        )
        .route(
            "/api/v1/logs",
            get(logs),
            vec![Doc::new(
                "GET",
                "events",
                "The audit log after ?since= (catch-up)",
                Access::Authenticated,
                &[
                    (200, "entries"),
                    (400, "bad query"),
                    (401, "no credentials"),
                ],
            )
            .query::<Since>()
            .reply::<LogPage>()],
        )
}

/// What an admin's stream carries beside the events.
#[derive(Deserialize, Default, IntoParams)]
pub struct WsQuery {
    /// `1`: the supervisor log stream too (admins).
    logs: Option<String>,
    /// The least severe log level to stream (`info`, `warn`, ...).
    log_level: Option<String>,
    /// Only this tenant's log lines.
    log_tenant: Option<String>,
}

/// What one client may and wants to see.
#[derive(Debug, Clone)]
pub struct Filter {
    admin: bool,
    tenant: Option<TenantId>,
    logs: bool,
    log_level: tracing::Level,
    log_tenant: Option<TenantId>,
}

impl Filter {
    pub fn new(caller: &Caller, q: &WsQuery) -> Result<Filter, ApiError> {
        let logs = matches!(q.logs.as_deref(), Some("1" | "true"));
        if logs && !caller.is_admin() {
            return Err(ApiError::Forbidden);
        }
        let log_level = match q.log_level.as_deref().unwrap_or("info") {
            "trace" => tracing::Level::TRACE,
            "debug" => tracing::Level::DEBUG,
            "info" => tracing::Level::INFO,
            "warn" => tracing::Level::WARN,
            "error" => tracing::Level::ERROR,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_log_level",
                    "log_level is trace, debug, info, warn or error",
                ))
            }
        };
        let log_tenant = q
            .log_tenant
            .as_deref()
            .map(crate::accounts::tenant_id)
            .transpose()?;
        Ok(Filter {
            admin: caller.is_admin(),
            tenant: caller.tenant().cloned(),
            logs,
            log_level,
            log_tenant,
        })
    }

    pub fn allows(&self, e: &HubEvent) -> bool {
        match e.log_level {
            Some(level) => {
                self.admin
                    && self.logs
                    && level <= self.log_level
                    && self
                        .log_tenant
                        .as_ref()
                        .is_none_or(|t| e.tenant.as_ref() == Some(t))
            }
            None => self.admin || (self.tenant.is_some() && e.tenant == self.tenant),
        }
    }

    /// Whether an event of `tenant` (outside the hub) is this client's.
    pub fn allows_tenant(&self, tenant: &TenantId) -> bool {
        self.admin || self.tenant.as_ref() == Some(tenant)
    }
}

/// What a client's stream is fed from: the hub's numbered events, and the
/// webhook attempts as they are recorded (not audited: each delivery's
/// outcome is in the deliveries list), sent as `{"type":"webhook"}`.
pub struct Feeds {
    pub hub: broadcast::Receiver<Arc<HubEvent>>,
    pub webhooks: broadcast::Receiver<WebhookEvent>,
}

/// The `webhook` event of an attempt the client may see, if it is one.
fn webhook_json(
    filter: &Filter,
    ev: Result<WebhookEvent, broadcast::error::RecvError>,
) -> Option<String> {
    match ev {
        Ok(WebhookEvent::Attempted(d)) if filter.allows_tenant(&d.tenant) => Some(
            json!({"type": "webhook", "tenant_id": d.tenant, "delivery_id": d.id, "status": d.status,
                   "attempts": d.attempts, "last_error": d.last_error, "at": d.last_attempt_at})
            .to_string(),
        ),
        // A lagging client reads the list again on its next action.
        Ok(_) | Err(_) => None,
    }
}

/// The close code for a credential that stopped working.
pub const CLOSE_REVOKED: u16 = 4001;

/// How a client's credential is kept honest while its socket is open.
pub struct Guard {
    /// Changes when some credential may have stopped working.
    pub changes: tokio::sync::watch::Receiver<u64>,
    /// Whether this client's credential still works.
    pub still_valid: Box<dyn Fn() -> bool + Send>,
    /// When its token expires (API keys do not).
    pub expires: Option<Instant>,
}

impl Guard {
    /// Completes with the reason to close, once there is one.
    async fn revoked(&mut self) -> &'static str {
        let expiry = async {
            match self.expires {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expiry);
        loop {
            tokio::select! {
                () = &mut expiry => return "token expired",
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        // No more changes can come; only expiry is left.
                        (&mut expiry).await;
                        return "token expired";
                    }
                    if !(self.still_valid)() {
                        return "credentials revoked";
                    }
                }
            }
        }
    }
}

async fn upgrade(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
    AppQuery(q): AppQuery<WsQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // The caller is checked first; a plain GET gets our error body, not
    // axum's text.
    let ws = ws.map_err(|e| ApiError::BadRequest {
        code: "websocket_upgrade_required",
        message: format!("this route is a WebSocket: {e}"),
    })?;
    let filter = Filter::new(&caller, &q)?;
    let (bearer, secret) =
        crate::auth::credential_of(&headers, &uri).ok_or_else(ApiError::unauthorized)?;
    let auth = state.auth.clone();
    let expires = match &caller {
        Caller::User { exp, .. } => {
            let left = (exp * 1000 - auth.now().as_millis()).max(0);
            Some(Instant::now() + Duration::from_millis(left.unsigned_abs()))
        }
        Caller::ApiKey { .. } => None,
    };
    let guard = Guard {
        changes: auth.watch_credentials(),
        still_valid: Box::new(move || auth.still_valid(bearer, &secret)),
        expires,
    };
    let feeds = Feeds {
        hub: state.hub.subscribe(),
        webhooks: state.webhooks.events(),
    };
    let stats = state.hub.stats.clone();
    let shutdown = state.shutdown.clone();
    Ok(ws
        .max_message_size(MAX_INCOMING)
        .max_frame_size(MAX_INCOMING)
        .on_upgrade(move |socket: WebSocket| async move {
            stats.clients.fetch_add(1, Ordering::Relaxed);
            let (sink, stream) = socket.split();
            serve_client(sink, stream, feeds, filter, guard, PING_EVERY, shutdown).await;
            stats.clients.fetch_sub(1, Ordering::Relaxed);
        }))
}

/// The largest frame or message a client may send (it only needs pongs
/// and close frames): 64 KiB.
pub const MAX_INCOMING: usize = 64 * 1024;

async fn send<S: Sink<Message> + Unpin>(sink: &mut S, text: String) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}

/// Completes when the server shuts down.
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await.map(|_| ());
}

/// Pumps hub events to one client until either side goes away. Generic over
/// the socket halves so tests can drive it with channels.
pub async fn serve_client<Si, St, E>(
    mut sink: Si,
    mut stream: St,
    feeds: Feeds,
    filter: Filter,
    mut guard: Guard,
    ping_every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) where
    Si: Sink<Message> + Unpin,
    St: Stream<Item = Result<Message, E>> + Unpin,
{
    if !send(&mut sink, json!({"type": "hello"}).to_string()).await {
        return;
    }
    let mut ticker = tokio::time::interval(ping_every);
    ticker.tick().await;
    let mut last_seen = Instant::now();
    let Feeds {
        hub: mut rx,
        webhooks: mut hooks,
    } = feeds;
    let mut hooks_open = true;
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            reason = guard.revoked() => {
                let close = Message::Close(Some(axum::extract::ws::CloseFrame {
                    code: CLOSE_REVOKED,
                    reason: reason.into(),
                }));
                let _ = tokio::time::timeout(SEND_TIMEOUT, sink.send(close)).await;
                return;
            }
            ev = rx.recv() => {
                let text = match ev {
                    Ok(e) if filter.allows(&e) => e.json.clone(),
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(missed)) => json!({"type": "resync", "missed": missed}).to_string(),
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                if !send(&mut sink, text).await {
                    break;
                }
            }
            ev = hooks.recv(), if hooks_open => {
                if matches!(ev, Err(broadcast::error::RecvError::Closed)) {
                    hooks_open = false;
                    continue;
                }
                if let Some(text) = webhook_json(&filter, ev) {
                    if !send(&mut sink, text).await {
                        break;
                    }
                }
            }
            msg = stream.next() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => last_seen = Instant::now(),
            },
            _ = ticker.tick() => {
                if last_seen.elapsed() > ping_every * 3 {
                    break;
                }
                let ping = tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Ping(Vec::new().into()))).await;
                if !matches!(ping, Ok(Ok(()))) {
                    break;
                }
            }
        }
    }
    let _ = sink.close().await;
}

/// Where to pick the audit log up.
#[derive(Deserialize, IntoParams)]
pub struct Since {
    /// The `last_seq` seen (entries after it).
    since: Option<u64>,
    /// 1-5000, default 500.
    limit: Option<usize>,
}

/// Audit entries after `since`, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `?since=` next time.
    pub last_seq: u64,
}

/// The audit log after `since`: what a reconnecting client missed. Tenants
/// see their own entries (without supervisor log lines).
async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    AppQuery(q): AppQuery<Since>,
) -> Result<Json<LogPage>, ApiError> {
    let limit = q.limit.unwrap_or(500).clamp(1, 5000);
    let data = state.data.clone();
    let since = q.since.unwrap_or(0);
    let entries = tokio::task::spawn_blocking(move || data.audit_since(since, limit)).await??;
    let last_seq = entries.last().map_or(since, |e| e.seq);
    let visible: Vec<_> = entries
        .into_iter()
        .filter(|e| {
            caller.is_admin()
                || (e.action != "supervisor.log"
                    && e.tenant.as_ref().is_some_and(|t| caller.may_access(t)))
        })
        .collect();
    Ok(Json(LogPage {
        entries: visible,
        last_seq,
    }))
}

//! The Graph API simulator: Meta's WhatsApp Business Cloud API for cloud
//! sessions with no internet (`--demo`, tests). It plays both sides of the
//! contract Meta documents: the API our cloud engine calls (number check,
//! sends) and the webhooks Meta sends back (incoming messages, statuses),
//! signed as Meta signs them. State is in memory and bounded.
//!
//! Each behaviour cites the part of Meta's contract it mirrors
//! (`shared/CLOUD-API.md` collects the sources):
//! - `GET /{version}/{phone_number_id}` answers the number's
//!   `display_phone_number` to its bearer token; any other token is
//!   HTTP 401 with error 190 (Graph API "Error codes": 190, access token
//!   expired or invalid).
//! - `POST /{version}/{phone_number_id}/messages` takes Meta's text and
//!   template bodies (`messaging_product: whatsapp`, `type: text|template`,
//!   a text body of at most 4096 characters) and answers
//!   `{"messaging_product","contacts":[{input,wa_id}],"messages":[{id}]}`
//!   with a fresh `wamid` (Cloud API "Text messages" reference).
//! - Errors have Meta's shape `{"error":{message,type,code,error_data,
//!   fbtrace_id}}`; 190 is HTTP 401, the others HTTP 400.
//! - Webhooks are `{"object":"whatsapp_business_account","entry":[{"id",
//!   "changes":[{"field":"messages","value":{messaging_product, metadata:
//!   {display_phone_number, phone_number_id}, contacts|messages|statuses}}]}]}`
//!   (webhooks reference, messages and statuses), POSTed with
//!   `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(raw body, app secret)>`
//!   (Graph API webhooks "Getting started").
//!
//! Control (for tests and the demo, behind the simulator's guard):
//! `GET /sim/graph/messages` (what was sent), `POST /sim/graph/inbound`
//! (a user writes), `POST /sim/graph/status` (a status for a `wamid`),
//! `POST /sim/graph/fail-next` (the next send answers that code),
//! `POST /sim/graph/numbers` (a number, its token and app secret).

use super::guard::{self, Guard};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Sends remembered (the oldest dropped first).
const MAX_SENT: usize = 1_000;
/// Numbers the simulator plays at most.
const MAX_NUMBERS: usize = 100;
/// Failures queued at most.
const MAX_FAILURES: usize = 100;

/// A business number the simulator answers for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphNumber {
    pub phone_number_id: String,
    /// Digits, as the number shows (`15550001111`).
    pub display_phone_number: String,
    /// The only bearer token its calls accept.
    pub access_token: String,
    /// What its webhooks are signed with.
    pub app_secret: String,
}

/// One send the simulator accepted.
#[derive(Debug, Clone, Serialize)]
pub struct GraphSent {
    pub wamid: String,
    pub phone_number_id: String,
    /// The API version in the path.
    pub version: String,
    /// The request body, as received.
    pub body: Value,
}

#[derive(Default)]
struct State_ {
    numbers: HashMap<String, GraphNumber>,
    sent: VecDeque<GraphSent>,
    fail_next: VecDeque<u32>,
    seq: u64,
}

/// The Graph API simulator; clones share one state.
#[derive(Clone)]
pub struct GraphSim {
    state: Arc<Mutex<State_>>,
    /// Where its webhooks go (the service's `/webhooks/meta`).
    webhook_url: String,
    http: reqwest::Client,
}

impl GraphSim {
    /// A simulator delivering its webhooks to `webhook_url`.
    pub fn new(webhook_url: impl Into<String>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(20))
            .no_proxy()
            .build()
            .expect("a plain HTTP client builds");
        Self {
            state: Arc::default(),
            webhook_url: webhook_url.into(),
            http,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State_> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Plays `number` from now on (replacing one with its id).
    pub fn add_number(&self, number: GraphNumber) -> bool {
        let mut st = self.lock();
        if st.numbers.len() >= MAX_NUMBERS && !st.numbers.contains_key(&number.phone_number_id) {
            return false;
        }
        st.numbers.insert(number.phone_number_id.clone(), number);
        true
    }

    pub fn sent(&self) -> Vec<GraphSent> {
        self.lock().sent.iter().cloned().collect()
    }

    fn wamid(st: &mut State_) -> String {
        st.seq += 1;
        format!("wamid.SIM{:012}", st.seq)
    }

    /// Signs `body` as Meta does and POSTs it to the webhook URL; the
    /// service's HTTP status.
    async fn deliver(&self, app_secret: &str, body: Value) -> Result<u16, String> {
        let raw = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(app_secret.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(&raw);
        let tag: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let res = self
            .http
            .post(&self.webhook_url)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", format!("sha256={tag}"))
            .body(raw)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        Ok(res.status().as_u16())
    }
}

/// Meta's error shape (Graph API "Error codes").
fn graph_error(code: u32, message: &str) -> Response {
    let status = match code {
        190 => StatusCode::UNAUTHORIZED,
        _ => StatusCode::BAD_REQUEST,
    };
    let body = json!({"error": {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": message},
        "fbtrace_id": "SIMTRACE",
    }});
    (status, Json(body)).into_response()
}

/// The text Meta gives each simulated code.
fn message_of(code: u32) -> &'static str {
    match code {
        100 => "Unsupported request. Object does not exist.",
        190 => "Error validating access token: Session has expired.",
        130_429 => "Rate limit hit",
        131_047 => "Re-engagement message",
        131_056 => "(Business Account, Consumer Account) pair rate limit hit",
        131_026 => "Message undeliverable",
        131_048 => "Spam rate limit hit",
        131_049 => "This message was not delivered to maintain healthy ecosystem engagement.",
        _ => "Simulated error",
    }
}

/// The number for `pnid` if `headers` carry its token; else the code
/// Meta answers: 190 for a missing or wrong token, 100 for no such number.
fn authorized(sim: &GraphSim, pnid: &str, headers: &HeaderMap) -> Result<GraphNumber, u32> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let st = sim.lock();
    match (st.numbers.get(pnid), token) {
        (Some(n), Some(t)) if n.access_token == t => Ok(n.clone()),
        (None, Some(_)) => Err(100),
        _ => Err(190),
    }
}

async fn number(
    State(sim): State<GraphSim>,
    Path((_version, pnid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    match authorized(&sim, &pnid, &headers) {
        Ok(n) => Json(json!({
            "id": n.phone_number_id,
            "display_phone_number": n.display_phone_number,
            "verified_name": "Centinela Demo",
        }))
        .into_response(),
        Err(code) => graph_error(code, message_of(code)),
    }
}

/// What a send body must be (Cloud API messages reference).
fn check_send(body: &Value) -> Result<String, &'static str> {
    if body["messaging_product"] != "whatsapp" {
        return Err("messaging_product must be whatsapp");
    }
    let to = body["to"].as_str().ok_or("to is required")?;
    match body["type"].as_str() {
        Some("text") => {
            let text = body["text"]["body"]
                .as_str()
                .ok_or("text.body is required")?;
            if text.is_empty() || text.chars().count() > 4096 {
                return Err("text.body must be 1-4096 characters");
            }
        }
        Some("template") => {
            let t = &body["template"];
            if t["name"].as_str().is_none() || t["language"]["code"].as_str().is_none() {
                return Err("template.name and template.language.code are required");
            }
        }
        _ => return Err("type must be text or template"),
    }
    Ok(to.trim_start_matches('+').to_owned())
}

async fn send(
    State(sim): State<GraphSim>,
    Path((version, pnid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let number = match authorized(&sim, &pnid, &headers) {
        Ok(n) => n,
        Err(code) => return graph_error(code, message_of(code)),
    };
    let Ok(Json(body)) = body else {
        return graph_error(100, "Invalid parameter: the body is not JSON");
    };
    let to = match check_send(&body) {
        Ok(to) => to,
        Err(why) => return graph_error(100, why),
    };
    let mut st = sim.lock();
    if let Some(code) = st.fail_next.pop_front() {
        return graph_error(code, message_of(code));
    }
    let wamid = GraphSim::wamid(&mut st);
    if st.sent.len() >= MAX_SENT {
        st.sent.pop_front();
    }
    st.sent.push_back(GraphSent {
        wamid: wamid.clone(),
        phone_number_id: number.phone_number_id,
        version,
        body,
    });
    Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": wamid}],
    }))
    .into_response()
}

async fn list(State(sim): State<GraphSim>) -> Json<Value> {
    Json(json!({ "messages": sim.sent() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Inbound {
    phone_number_id: String,
    from: String,
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusIn {
    wamid: String,
    status: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailNext {
    code: u32,
}

fn control_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn now_secs() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string()
}

/// Meta's webhook envelope around one change value.
fn envelope(number: &GraphNumber, value: Value) -> Value {
    let mut value = value;
    value["messaging_product"] = json!("whatsapp");
    value["metadata"] = json!({
        "display_phone_number": number.display_phone_number,
        "phone_number_id": number.phone_number_id,
    });
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "SIMWABA", "changes": [{"field": "messages", "value": value}]}],
    })
}

async fn delivered(sim: &GraphSim, secret: &str, payload: Value, wamid: &str) -> Response {
    match sim.deliver(secret, payload).await {
        Ok(status) => Json(json!({"wamid": wamid, "webhook_status": status})).into_response(),
        Err(e) => control_error(StatusCode::BAD_GATEWAY, "webhook_failed", &e),
    }
}

async fn inbound(
    State(sim): State<GraphSim>,
    body: Result<Json<Inbound>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(m)) = body else {
        return control_error(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "want {phone_number_id, from, text}",
        );
    };
    let digits =
        !m.from.is_empty() && m.from.len() <= 15 && m.from.chars().all(|c| c.is_ascii_digit());
    if !digits || m.text.is_empty() || m.text.chars().count() > 4096 {
        return control_error(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "from is digits, text 1-4096 characters",
        );
    }
    let (number, wamid) = {
        let mut st = sim.lock();
        let Some(n) = st.numbers.get(&m.phone_number_id).cloned() else {
            return control_error(
                StatusCode::NOT_FOUND,
                "unknown_number",
                "no such phone_number_id",
            );
        };
        (n, GraphSim::wamid(&mut st))
    };
    let value = json!({
        "contacts": [{"profile": {"name": "Simulated user"}, "wa_id": m.from}],
        "messages": [{"from": m.from, "id": wamid, "timestamp": now_secs(), "type": "text", "text": {"body": m.text}}],
    });
    let payload = envelope(&number, value);
    delivered(&sim, &number.app_secret, payload, &wamid).await
}

async fn status(
    State(sim): State<GraphSim>,
    body: Result<Json<StatusIn>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(s)) = body else {
        return control_error(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "want {wamid, status}",
        );
    };
    if !matches!(s.status.as_str(), "sent" | "delivered" | "read" | "failed") {
        return control_error(
            StatusCode::BAD_REQUEST,
            "invalid_status",
            "status is sent, delivered, read or failed",
        );
    }
    let found = {
        let st = sim.lock();
        st.sent.iter().find(|m| m.wamid == s.wamid).and_then(|m| {
            Some((
                st.numbers.get(&m.phone_number_id)?.clone(),
                m.body["to"].clone(),
            ))
        })
    };
    let Some((number, to)) = found else {
        return control_error(
            StatusCode::NOT_FOUND,
            "unknown_wamid",
            "no message sent with that wamid",
        );
    };
    let mut entry =
        json!({"id": s.wamid, "status": s.status, "timestamp": now_secs(), "recipient_id": to});
    if s.status == "failed" {
        entry["errors"] = json!([{"code": 131026, "title": message_of(131_026)}]);
    }
    let payload = envelope(&number, json!({ "statuses": [entry] }));
    delivered(&sim, &number.app_secret, payload, &s.wamid).await
}

async fn fail_next(
    State(sim): State<GraphSim>,
    body: Result<Json<FailNext>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(f)) = body else {
        return control_error(StatusCode::BAD_REQUEST, "invalid_body", "want {code}");
    };
    let mut st = sim.lock();
    if st.fail_next.len() >= MAX_FAILURES {
        return control_error(
            StatusCode::CONFLICT,
            "too_many",
            "at most 100 failures queued",
        );
    }
    st.fail_next.push_back(f.code);
    Json(json!({"queued": st.fail_next.len()})).into_response()
}

async fn numbers(
    State(sim): State<GraphSim>,
    body: Result<Json<GraphNumber>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(n)) = body else {
        return control_error(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "want {phone_number_id, display_phone_number, access_token, app_secret}",
        );
    };
    let pnid = n.phone_number_id.clone();
    if !sim.add_number(n) {
        return control_error(StatusCode::CONFLICT, "too_many", "at most 100 numbers");
    }
    (StatusCode::CREATED, Json(json!({"phone_number_id": pnid}))).into_response()
}

/// What our engine (or any Cloud API client) calls: Meta's side.
fn api_routes() -> Router<GraphSim> {
    Router::new()
        .route("/sim/graph/{version}/{pnid}", get(number))
        .route("/sim/graph/{version}/{pnid}/messages", post(send))
}

/// The simulator's own control API.
fn control_routes() -> Router<GraphSim> {
    Router::new()
        .route("/sim/graph/messages", get(list))
        .route("/sim/graph/inbound", post(inbound))
        .route("/sim/graph/status", post(status))
        .route("/sim/graph/fail-next", post(fail_next))
        .route("/sim/graph/numbers", post(numbers))
}

/// Every route, unguarded (`centinela sim`, tests of the simulator).
pub fn router(sim: GraphSim) -> Router {
    api_routes().merge(control_routes()).with_state(sim)
}

/// As `serve --demo` mounts it: every route behind `guard`'s `Host`
/// check, the control routes behind its token too.
pub fn guarded(sim: GraphSim, guard: Guard) -> Router {
    let control = control_routes().route_layer(axum::middleware::from_fn_with_state(
        guard.clone(),
        guard::check_control,
    ));
    api_routes()
        .merge(control)
        .route_layer(axum::middleware::from_fn_with_state(
            guard,
            guard::check_host,
        ))
        .with_state(sim)
}

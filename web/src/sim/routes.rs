//! The simulator's HTTP surface: the page (`/sim/wa/`, and `/` when served
//! as web.whatsapp.com), the page's own API (`/sim/api/...`, what WhatsApp's
//! servers would answer) and the control API (`/sim/...`, what the phone and
//! WhatsApp do to a device).

use super::guard::{self, Guard};
use super::{ChatState, ChatStateMark, Device, DeviceState, SeenMark, SentMessage, Simulator};
use crate::error::ApiError;
use crate::extract::{AppJson, AppQuery};
use axum::extract::{Path, State};
use axum::http::header;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::stream::Stream;
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::time::Instant;
use tokio::sync::mpsc;

const PAGE: &str = include_str!("../../sim/index.html");
const SCRIPT: &str = include_str!("../../sim/sim.js");
/// The page's styles: a file, not inline, so the API's CSP (`style-src
/// 'self'`) fits the page too.
const STYLE: &str = include_str!("../../sim/sim.css");
/// Longest text a message may carry (WhatsApp's own limit is 65,536).
const MAX_TEXT: usize = 65_536;

/// Every simulator route, with its own state. `at_root` also serves the
/// page at `/`, as web.whatsapp.com does (`centinela sim --tls`).
pub fn router(sim: Simulator) -> Router {
    router_with(sim, false)
}

/// [`router`], with the page at `/` too when `at_root`.
pub fn router_with(sim: Simulator, at_root: bool) -> Router {
    let mut r = page_routes().merge(control_routes());
    if at_root {
        r = r.route("/", get(page));
    }
    r.with_state(sim)
}

/// The simulator as `serve --demo` mounts it beside the API: every route
/// behind `guard`'s `Host` check, the control routes behind its token too
/// (see [`super::guard`]).
pub fn guarded(sim: Simulator, guard: Guard) -> Router {
    let control = control_routes().route_layer(axum::middleware::from_fn_with_state(
        guard.clone(),
        guard::check_control,
    ));
    page_routes()
        .merge(control)
        .route_layer(axum::middleware::from_fn_with_state(
            guard,
            guard::check_host,
        ))
        .with_state(sim)
}

/// The page and its own API: WhatsApp Web and WhatsApp's servers, which
/// the engine's browser reaches without any secret. The auth probe's
/// challenge is here too (the page asks for it itself).
fn page_routes() -> Router<Simulator> {
    Router::new()
        .route("/sim/wa", get(|| async { Redirect::permanent("/sim/wa/") }))
        .route("/sim/wa/", get(page))
        .route("/sim/wa/sim.js", get(script))
        .route("/sim/wa/sim.css", get(style))
        .route("/sim/api/hello", post(hello))
        .route("/sim/api/devices/{id}/events", get(events))
        .route("/sim/api/devices/{id}/heartbeat", post(heartbeat))
        .route("/sim/api/devices/{id}/send", post(send))
        .route("/sim/api/devices/{id}/exists", post(exists))
        .route("/sim/api/devices/{id}/chatstate", post(chat_state))
        .route("/sim/api/devices/{id}/seen", post(seen))
        .route("/sim/api/devices/{id}/logout-self", post(logout_self))
        .route("/sim/api/devices/{id}/refresh-qr", post(refresh_qr))
        .route("/sim/api/devices/{id}/pairing-code", post(pairing_code))
        .route("/sim/api/devices/{id}/takeover", post(takeover))
        .route("/sim/auth-probe", get(auth_probe))
}

/// The control API: what the phone and WhatsApp do to any device, and
/// what the tests read back (sent messages, the auth probe's log).
fn control_routes() -> Router<Simulator> {
    Router::new()
        .route("/sim/devices", get(devices))
        .route("/sim/overlaps", get(overlaps))
        .route("/sim/devices/{id}/wait", get(wait))
        .route("/sim/scan", post(scan))
        .route("/sim/pair", post(pair))
        .route("/sim/unregistered", post(unregistered))
        .route("/sim/devices/{id}/logout", post(logout))
        .route("/sim/devices/{id}/conflict", post(conflict))
        .route("/sim/devices/{id}/tos-block", post(tos_block))
        .route("/sim/devices/{id}/smb-tos-block", post(smb_tos_block))
        .route("/sim/devices/{id}/proxy-block", post(proxy_block))
        .route("/sim/devices/{id}/rotate-qr", post(rotate_qr))
        .route("/sim/devices/{id}/incoming", post(incoming))
        .route("/sim/devices/{id}/sent", get(sent))
        .route("/sim/devices/{id}/chatstates", get(chat_marks))
        .route("/sim/devices/{id}/ack", post(ack))
        .route("/sim/auth-probe/log", get(auth_probe_log))
}

async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE)
}

/// A web server asking for HTTP credentials (a test switch: the page
/// requests it when loaded with `?auth_probe=1`). It records any
/// `Authorization` it is sent and always answers 401.
async fn auth_probe(State(sim): State<Simulator>, headers: axum::http::HeaderMap) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(256).collect());
    sim.probe_auth(given);
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"sim\"")],
        "credentials required",
    )
        .into_response()
}

async fn auth_probe_log(State(sim): State<Simulator>) -> Json<super::AuthProbeLog> {
    Json(sim.auth_probe_log())
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

fn device_id_ok(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_device_id",
            "device ids are 1-64 of A-Z a-z 0-9 - _",
        ))
    }
}

fn phone_ok(phone: &str) -> Result<(), ApiError> {
    let ok = (6..=15).contains(&phone.len()) && phone.bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_phone",
            "phone numbers are 6-15 digits",
        ))
    }
}

fn text_ok(text: &str) -> Result<(), ApiError> {
    if text.chars().count() <= MAX_TEXT {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "text_too_long",
            "texts are at most 65,536 characters",
        ))
    }
}

/// Runs `f` on a known device.
fn with_device<T>(
    sim: &Simulator,
    id: &str,
    f: impl FnOnce(&mut Device) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut devices = sim.lock();
    let device = devices
        .get_mut(id)
        .ok_or_else(|| ApiError::NotFound(format!("no device {id}")))?;
    device.seen = Instant::now();
    f(device)
}

fn not_connected() -> ApiError {
    ApiError::conflict("not_connected", "the device is not connected")
}

fn ok() -> Json<Value> {
    Json(json!({ "ok": true }))
}

// ---------- The page's own API (WhatsApp's servers) ----------

#[derive(Deserialize)]
struct Hello {
    device_id: String,
    /// The pairing the page found in its IndexedDB.
    paired_phone: Option<String>,
    /// Automation marks the page sees in its own world (bounded).
    #[serde(default)]
    automation: Vec<String>,
}

/// The page starts: it registers its device and says whether its profile
/// holds a pairing. A device the simulator saw unpaired stays unpaired.
async fn hello(
    State(sim): State<Simulator>,
    AppJson(h): AppJson<Hello>,
) -> Result<Json<Value>, ApiError> {
    device_id_ok(&h.device_id)?;
    if let Some(p) = &h.paired_phone {
        phone_ok(p)?;
    }
    let lid = h.paired_phone.as_deref().map(|p| sim.lid_of(p));
    let mut devices = sim.lock();
    let known = devices.contains_key(&h.device_id);
    if !known {
        Simulator::evict_if_full(&mut devices);
    }
    let d = devices
        .entry(h.device_id.clone())
        .or_insert_with(Device::new);
    d.seen = Instant::now();
    d.automation = h
        .automation
        .iter()
        .take(16)
        .map(|m| m.chars().take(64).collect())
        .collect();
    match (&h.paired_phone, known) {
        // A profile paired before this simulator started (demo restarts).
        (Some(phone), false) => {
            d.state = DeviceState::Connected;
            d.phone = Some(phone.clone());
            d.lid = lid;
        }
        (Some(_), true) if !d.state.is_unpaired() => {}
        (Some(_), true) | (None, _) => {
            if !d.state.is_unpaired() {
                d.unpair();
            }
        }
    }
    let options = sim.options();
    Ok(Json(json!({
        "state": d.state.as_str(),
        "ref": (d.state == DeviceState::Unpaired).then(|| d.reference.clone()),
        "static_key": d.static_key,
        "identity_key": d.identity_key,
        "adv_secret": d.adv_secret,
        "phone": d.phone,
        "lid": d.lid,
        "options": {
            "serialized_keys": options.serialized_keys,
            "without_modules": options.without_modules,
        },
    })))
}

async fn events(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    with_device(&sim, &id, |d| {
        // A snapshot first: whatever happened between hello and now.
        let snapshot = match (d.state, &d.phone) {
            (DeviceState::Connected, Some(phone)) => {
                json!({"type": "paired", "phone": phone, "lid": d.lid})
            }
            (DeviceState::Unpaired, _) => json!({"type": "ref", "ref": d.reference}),
            (state, _) => json!({"type": "state", "state": state.as_str()}),
        };
        let _ = tx.send(snapshot.to_string());
        d.subscribers.retain(|s| !s.is_closed());
        if d.subscribers.len() >= super::MAX_SUBSCRIBERS {
            d.subscribers.remove(0);
        }
        d.subscribers.push(tx);
        Ok(())
    })?;
    // Dropped in order: the receiver (the stream counts as closed), then
    // the guard (waiters look again).
    let open = (rx, sim.stream_guard());
    let stream = futures::stream::unfold(open, |(mut rx, guard)| async move {
        rx.recv()
            .await
            .map(|data| (Ok(Event::default().data(data)), (rx, guard)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(Deserialize)]
struct Heartbeat {
    /// An id the page made for its document (a reload makes a new one).
    page: String,
}

/// The page is alive (sim.js, every second). Two pages of one device heard at
/// once are an overlap (see `super::pages`); the answer says how many the
/// device has had.
async fn heartbeat(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    AppJson(h): AppJson<Heartbeat>,
) -> Result<Json<Value>, ApiError> {
    device_id_ok(&h.page)?;
    let overlaps = sim
        .heartbeat(&id, &h.page)
        .ok_or_else(|| ApiError::NotFound(format!("no device {id}")))?;
    Ok(Json(json!({ "overlaps": overlaps })))
}

#[derive(Deserialize)]
struct Send {
    /// The key's raw id, made by the page (`WAWebMsgKey.newId()`).
    id: String,
    /// The chat's jid: `<digits>@c.us` or `<lid>@lid`.
    to: String,
    text: String,
}

fn raw_id_ok(id: &str) -> Result<(), ApiError> {
    let ok = (8..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_message_id",
            "message ids are 8-64 letters and digits",
        ))
    }
}

/// The relay accepts a message (the server ack, 1).
async fn send(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    AppJson(s): AppJson<Send>,
) -> Result<Json<Value>, ApiError> {
    raw_id_ok(&s.id)?;
    text_ok(&s.text)?;
    let (user, server) =
        s.to.split_once('@')
            .ok_or_else(|| ApiError::bad_request("invalid_jid", "a jid is user@server"))?;
    phone_ok(user)?;
    let to = match server {
        "c.us" => user.to_owned(),
        "lid" => sim
            .numbers()
            .lids
            .iter()
            .find(|(_, l)| l.as_str() == user)
            .map(|(p, _)| p.clone())
            .ok_or_else(|| ApiError::NotFound(format!("no account has lid {user}")))?,
        _ => return Err(ApiError::bad_request("invalid_jid", "only 1:1 chats")),
    };
    if !sim.is_registered(&to) {
        return Err(ApiError::NotFound(format!("{to} is not on WhatsApp")));
    }
    with_device(&sim, &id, |d| {
        if d.state != DeviceState::Connected {
            return Err(not_connected());
        }
        d.record_sent(SentMessage {
            message_id: s.id.clone(),
            to,
            jid: s.to.clone(),
            text: s.text,
            ack: 1,
            at: super::now(),
        });
        Ok(Json(json!({ "ack": 1 })))
    })
}

/// A 1:1 chat's jid, as the page addresses it: `<digits>@c.us` or `<lid>@lid`.
fn chat_ok(chat: &str) -> Result<(), ApiError> {
    match chat.split_once('@') {
        Some((user, "c.us" | "lid")) => phone_ok(user),
        _ => Err(ApiError::bad_request(
            "invalid_jid",
            "a chat is <digits>@c.us or <lid>@lid",
        )),
    }
}

#[derive(Deserialize)]
struct ChatStateBody {
    chat: String,
    state: ChatState,
}

/// `WAWebChatStateBridge.sendChatState*(wid)`: the device tells the chat it
/// is typing, recording or has stopped (the server stamps when it heard it).
async fn chat_state(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    AppJson(c): AppJson<ChatStateBody>,
) -> Result<Json<Value>, ApiError> {
    chat_ok(&c.chat)?;
    to_connected(&sim, &id, |d| {
        d.record_chat_state(ChatStateMark {
            chat: c.chat,
            state: c.state,
            at: super::now(),
        })
    })
}

#[derive(Deserialize)]
struct SeenBody {
    chat: String,
}

/// `WAWebUpdateUnreadChatAction.sendSeen({chat})`: the device marks a chat read.
async fn seen(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    AppJson(s): AppJson<SeenBody>,
) -> Result<Json<Value>, ApiError> {
    chat_ok(&s.chat)?;
    to_connected(&sim, &id, |d| {
        d.record_seen(SeenMark {
            chat: s.chat,
            at: super::now(),
        })
    })
}

#[derive(Deserialize)]
struct Exists {
    phone: String,
}

/// `queryWidExists`: whether a number has WhatsApp.
async fn exists(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    AppJson(e): AppJson<Exists>,
) -> Result<Json<Value>, ApiError> {
    phone_ok(&e.phone)?;
    with_device(&sim, &id, |d| {
        if d.state != DeviceState::Connected {
            return Err(not_connected());
        }
        Ok(())
    })?;
    Ok(Json(json!({ "exists": sim.is_registered(&e.phone) })))
}

/// `Socket.logout()`: the device unpairs itself.
async fn logout_self(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    with_device(&sim, &id, |d| {
        d.unpair();
        Ok(ok())
    })
}

/// `Cmd.refreshQR()`: an idle QR comes back with a new ref.
async fn refresh_qr(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    with_device(&sim, &id, |d| {
        if !d.state.is_unpaired() {
            return Err(ApiError::conflict(
                "not_unpaired",
                "only an unpaired device shows a QR",
            ));
        }
        d.rotations = 0;
        d.state = DeviceState::Unpaired;
        d.reference = super::random_ref();
        Ok(Json(json!({ "ref": d.reference })))
    })
}

#[derive(Deserialize)]
struct CodeRequest {
    phone: String,
}

/// `startAltLinkingFlow`: a code to type on the phone instead of a scan.
async fn pairing_code(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    AppJson(c): AppJson<CodeRequest>,
) -> Result<Json<Value>, ApiError> {
    phone_ok(&c.phone)?;
    with_device(&sim, &id, |d| {
        if !d.state.is_unpaired() {
            return Err(ApiError::conflict(
                "not_unpaired",
                "pairing codes are only for an unpaired device",
            ));
        }
        let code = super::random_pairing_code();
        d.pairing_code = Some(super::PairingCode {
            code: code.clone(),
            phone: c.phone,
        });
        Ok(Json(json!({ "code": code.replace('-', "") })))
    })
}

/// `Socket.takeover()`: this page takes the account back after a CONFLICT.
async fn takeover(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    with_device(&sim, &id, |d| {
        if d.state != DeviceState::Conflict {
            return Err(ApiError::conflict(
                "not_in_conflict",
                "nothing to take over",
            ));
        }
        d.state = DeviceState::Connected;
        Ok(ok())
    })
}

// ---------- The control API (the phone and WhatsApp) ----------

async fn devices(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!(sim.devices()))
}

/// Every overlap seen: `{"total": n, "devices": {"<id>": n}}` (devices
/// with none are left out). Fleet tests assert `total` stays 0.
async fn overlaps(State(sim): State<Simulator>) -> Json<super::Overlaps> {
    Json(sim.overlaps())
}

/// The longest `GET /sim/devices/{id}/wait` holds a request.
const MAX_WAIT_MS: u64 = 120_000;

#[derive(Deserialize)]
struct Wait {
    /// Wait for exactly this many open event streams.
    streams: Option<usize>,
    /// Wait for at least this many overlaps.
    overlaps: Option<u64>,
    /// At most this long (default 30 s, at most 120 s).
    timeout_ms: Option<u64>,
}

/// Waits until the device has exactly `streams` open event streams and at
/// least `overlaps` overlaps (each if given), or the timeout:
/// `{"streams": n, "overlaps": n, "reached": bool}`. A test waits on this
/// for a page to leave (its stream closes) or for an overlap, instead of
/// polling.
async fn wait(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    AppQuery(w): AppQuery<Wait>,
) -> Result<Json<Value>, ApiError> {
    let ms = w.timeout_ms.unwrap_or(30_000).min(MAX_WAIT_MS);
    let limit = std::time::Duration::from_millis(ms);
    let now = sim
        .wait_pages(&id, w.streams, w.overlaps, limit)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("no device {id}")))?;
    Ok(Json(json!({
        "streams": now.streams,
        "overlaps": now.overlaps,
        "reached": now.satisfies(w.streams, w.overlaps),
    })))
}

#[derive(Deserialize)]
struct Scan {
    qr: String,
    phone: String,
}

/// The phone scans a QR: pairs the device currently showing exactly it.
async fn scan(
    State(sim): State<Simulator>,
    AppJson(s): AppJson<Scan>,
) -> Result<Json<Value>, ApiError> {
    phone_ok(&s.phone)?;
    let lid = sim.lid_of(&s.phone);
    let mut devices = sim.lock();
    let (id, d) = devices
        .iter_mut()
        .find(|(_, d)| d.qr().as_deref() == Some(s.qr.as_str()))
        .ok_or_else(|| ApiError::NotFound("no device shows that QR (stale or unknown)".into()))?;
    d.pair(&s.phone, lid);
    Ok(Json(json!({ "device_id": id, "phone": s.phone })))
}

#[derive(Deserialize)]
struct Pair {
    code: String,
    phone: String,
}

/// The phone types a pairing code: pairs the unpaired device that asked for
/// that code for that number.
async fn pair(
    State(sim): State<Simulator>,
    AppJson(p): AppJson<Pair>,
) -> Result<Json<Value>, ApiError> {
    phone_ok(&p.phone)?;
    let wanted = p.code.to_ascii_uppercase().replace('-', "");
    let lid = sim.lid_of(&p.phone);
    let mut devices = sim.lock();
    let (id, d) = devices
        .iter_mut()
        .find(|(_, d)| {
            d.state.is_unpaired()
                && d.pairing_code
                    .as_ref()
                    .is_some_and(|c| c.code.replace('-', "") == wanted && c.phone == p.phone)
        })
        .ok_or_else(|| ApiError::NotFound("no device shows that code for that number".into()))?;
    d.pair(&p.phone, lid);
    Ok(Json(json!({ "device_id": id, "phone": p.phone })))
}

#[derive(Deserialize)]
struct Unregistered {
    phone: String,
}

/// Marks a number as not on WhatsApp (`queryWidExists` answers null).
async fn unregistered(
    State(sim): State<Simulator>,
    AppJson(u): AppJson<Unregistered>,
) -> Result<Json<Value>, ApiError> {
    phone_ok(&u.phone)?;
    sim.mark_unregistered(&u.phone);
    Ok(ok())
}

/// A change WhatsApp makes to a connected device; 409 when it is not connected.
fn to_connected(
    sim: &Simulator,
    id: &str,
    f: impl FnOnce(&mut Device),
) -> Result<Json<Value>, ApiError> {
    with_device(sim, id, |d| {
        if d.state != DeviceState::Connected {
            return Err(not_connected());
        }
        f(d);
        Ok(ok())
    })
}

/// The phone removes the linked device: the page hears `logout_from_bridge`,
/// wipes its storage and navigates to `?post_logout=1`.
async fn logout(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    to_connected(&sim, &id, |d| {
        d.push(json!({"type": "logout"}));
        d.unpair();
    })
}

async fn conflict(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    to_connected(&sim, &id, |d| d.set_state(DeviceState::Conflict))
}

async fn tos_block(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    to_connected(&sim, &id, |d| d.set_state(DeviceState::TosBlock))
}

async fn smb_tos_block(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    to_connected(&sim, &id, |d| d.set_state(DeviceState::SmbTosBlock))
}

async fn proxy_block(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    to_connected(&sim, &id, |d| d.set_state(DeviceState::ProxyBlock))
}

/// Pushes a new QR `ref` to the page whatever its state (WhatsApp Web can
/// emit one after pairing; seed 002's LOGOUT bug reacted to it).
async fn rotate_qr(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    with_device(&sim, &id, |d| {
        d.new_ref();
        Ok(ok())
    })
}

/// What kind of message arrives (`POST /sim/devices/{id}/incoming`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    /// A new 1:1 text.
    #[default]
    Chat,
    /// A text in a group (`…@g.us`).
    Group,
    /// A status update (`status@broadcast`).
    Status,
    /// An old message a history sync loads (`isNewMsg: false`).
    History,
    /// A new text not decrypted yet: `ciphertext`, then `chat` a moment later.
    Ciphertext,
}

#[derive(Deserialize)]
struct Incoming {
    from: String,
    text: String,
    #[serde(default)]
    kind: Kind,
    /// From the sender's `@lid` identity (the page's contacts know its phone).
    #[serde(default)]
    lid: bool,
}

async fn incoming(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    AppJson(m): AppJson<Incoming>,
) -> Result<Json<Value>, ApiError> {
    phone_ok(&m.from)?;
    text_ok(&m.text)?;
    let message_id = sim.message_id("3A");
    let lid = m.lid.then(|| sim.lid_of(&m.from));
    let group = (m.kind == Kind::Group).then(|| {
        let n = u64::from_be_bytes(super::random_bytes::<8>()) % 1_000_000_000_000;
        format!("120363{n:012}")
    });
    let event = json!({"type": "incoming", "message": {
        "id": message_id,
        "from": m.from,
        "lid": lid,
        "kind": m.kind,
        "text": m.text,
        "group": group,
    }});
    let _pushed = to_connected(&sim, &id, |d| d.push(event))?;
    Ok(Json(json!({ "message_id": message_id })))
}

async fn sent(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let sent = sim
        .sent(&id)
        .ok_or_else(|| ApiError::NotFound(format!("no device {id}")))?;
    Ok(Json(json!(sent)))
}

/// The chat states and seen marks the device sent, oldest first.
async fn chat_marks(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Json<super::ChatMarks>, ApiError> {
    sim.chat_marks(&id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no device {id}")))
}

#[derive(Deserialize)]
struct Ack {
    message_id: String,
    ack: i8,
}

/// The recipient's phone moves a sent message's ack (2 delivered, 3 read, …).
async fn ack(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    AppJson(a): AppJson<Ack>,
) -> Result<Json<Value>, ApiError> {
    if !(-1..=4).contains(&a.ack) {
        return Err(ApiError::bad_request(
            "invalid_ack",
            "ack is -1 (error) to 4 (played)",
        ));
    }
    with_device(&sim, &id, |d| {
        let m = d
            .sent
            .iter_mut()
            .find(|m| m.message_id == a.message_id)
            .ok_or_else(|| {
                ApiError::NotFound(format!("device {id} sent no message {}", a.message_id))
            })?;
        m.ack = a.ack;
        d.push(json!({"type": "ack", "message_id": a.message_id, "ack": a.ack}));
        Ok(ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use std::time::Duration;
    use tower::ServiceExt;

    async fn call(app: &Router, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .expect("request");
        let res = app.clone().oneshot(req).await.expect("response");
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn beat(app: &Router, device: &str, page: &str) -> u64 {
        let path = format!("/sim/api/devices/{device}/heartbeat");
        let (status, body) = call(app, "POST", &path, Some(json!({ "page": page }))).await;
        assert_eq!(status, 200, "{body}");
        body["overlaps"].as_u64().expect("overlaps")
    }

    #[tokio::test]
    async fn two_pages_of_one_device_heard_at_once_show_on_the_control_api() {
        let app = router(Simulator::new(Duration::from_secs(20)));
        for device in ["dev-a", "dev-b"] {
            let hello = json!({"device_id": device, "paired_phone": "5491100000001"});
            assert_eq!(
                call(&app, "POST", "/sim/api/hello", Some(hello)).await.0,
                200
            );
        }
        // dev-a reloads: its old page stops before the new one starts.
        assert_eq!(beat(&app, "dev-a", "old").await, 0);
        assert_eq!(beat(&app, "dev-a", "new").await, 0);
        assert_eq!(beat(&app, "dev-a", "new").await, 0);
        // dev-b has two pages beating side by side.
        assert_eq!(beat(&app, "dev-b", "one").await, 0);
        assert_eq!(beat(&app, "dev-b", "two").await, 0);
        assert_eq!(beat(&app, "dev-b", "one").await, 1);
        assert_eq!(beat(&app, "dev-b", "two").await, 1, "counted once");

        let path = "/sim/devices/dev-b/wait?overlaps=1&timeout_ms=50";
        let (_, waited) = call(&app, "GET", path, None).await;
        assert_eq!(waited["reached"], true, "{waited}");
        let path = "/sim/devices/dev-a/wait?overlaps=1&timeout_ms=50";
        let (_, waited) = call(&app, "GET", path, None).await;
        assert_eq!(waited["reached"], false, "{waited}");
        let (status, all) = call(&app, "GET", "/sim/overlaps", None).await;
        assert_eq!(status, 200);
        assert_eq!(all, json!({"total": 1, "devices": {"dev-b": 1}}));
        let (_, devices) = call(&app, "GET", "/sim/devices", None).await;
        let overlaps: Vec<(String, u64)> = devices
            .as_array()
            .expect("devices")
            .iter()
            .map(|d| {
                (
                    d["id"].as_str().expect("id").to_owned(),
                    d["overlaps"].as_u64().expect("n"),
                )
            })
            .collect();
        assert_eq!(overlaps, [("dev-a".into(), 0), ("dev-b".into(), 1)]);

        let unknown = call(
            &app,
            "POST",
            "/sim/api/devices/nope/heartbeat",
            Some(json!({"page": "p"})),
        )
        .await;
        assert_eq!(unknown.0, 404);
        let bad = call(
            &app,
            "POST",
            "/sim/api/devices/dev-a/heartbeat",
            Some(json!({"page": "a b"})),
        )
        .await;
        assert_eq!(bad.0, 400);
    }

    #[tokio::test]
    async fn a_wait_for_streams_returns_when_the_page_stream_closes() {
        let app = router(Simulator::new(Duration::from_secs(20)));
        let hello = json!({"device_id": "dev", "paired_phone": null});
        assert_eq!(
            call(&app, "POST", "/sim/api/hello", Some(hello)).await.0,
            200
        );
        let (_, none) = call(
            &app,
            "GET",
            "/sim/devices/dev/wait?streams=1&timeout_ms=50",
            None,
        )
        .await;
        assert_eq!(none, json!({"streams": 0, "overlaps": 0, "reached": false}));

        let req = Request::get("/sim/api/devices/dev/events")
            .body(Body::empty())
            .expect("request");
        let stream = app.clone().oneshot(req).await.expect("response");
        assert_eq!(stream.status(), 200);
        let (_, open) = call(
            &app,
            "GET",
            "/sim/devices/dev/wait?streams=1&timeout_ms=50",
            None,
        )
        .await;
        assert_eq!(open, json!({"streams": 1, "overlaps": 0, "reached": true}));

        // The page leaves: its response body is dropped.
        let waiting = tokio::spawn({
            let app = app.clone();
            async move {
                call(
                    &app,
                    "GET",
                    "/sim/devices/dev/wait?streams=0&timeout_ms=20000",
                    None,
                )
                .await
            }
        });
        drop(stream);
        let (status, closed) = waiting.await.expect("no panic");
        assert_eq!(status, 200);
        assert_eq!(
            closed,
            json!({"streams": 0, "overlaps": 0, "reached": true})
        );
        let unknown = call(&app, "GET", "/sim/devices/nope/wait?streams=0", None).await;
        assert_eq!(unknown.0, 404);
    }
}

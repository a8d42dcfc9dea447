//! The simulator's HTTP surface: the page (`/sim/wa/`), the page's own API
//! (`/sim/api/...`, what WhatsApp's servers would answer) and the control
//! API (`/sim/...`, what the phone and WhatsApp do to a device).

use super::{Device, DeviceState, Simulator};
use crate::error::ApiError;
use crate::extract::AppJson;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::stream::Stream;
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use tokio::sync::mpsc;

const PAGE: &str = include_str!("../../sim/index.html");
const SCRIPT: &str = include_str!("../../sim/sim.js");

/// Every simulator route, with its own state.
pub fn router(sim: Simulator) -> Router {
    Router::new()
        .route("/sim/wa", get(|| async { Redirect::permanent("/sim/wa/") }))
        .route("/sim/wa/", get(page))
        .route("/sim/wa/sim.js", get(script))
        .route("/sim/api/hello", post(hello))
        .route("/sim/api/devices/{id}/events", get(events))
        .route("/sim/api/devices/{id}/send", post(send))
        .route("/sim/api/devices/{id}/logout-self", post(logout_self))
        .route("/sim/devices", get(devices))
        .route("/sim/scan", post(scan))
        .route("/sim/devices/{id}/logout", post(logout))
        .route("/sim/devices/{id}/conflict", post(conflict))
        .route("/sim/devices/{id}/ban", post(ban))
        .route("/sim/devices/{id}/tos-block", post(tos_block))
        .route("/sim/devices/{id}/restart-required", post(restart_required))
        .route("/sim/devices/{id}/rotate-qr", post(rotate_qr))
        .route("/sim/devices/{id}/incoming", post(incoming))
        .route("/sim/devices/{id}/sent", get(sent))
        .route("/sim/devices/{id}/ack", post(ack))
        .with_state(sim)
}

async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE)
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
    f(device)
}

#[derive(Deserialize)]
struct Hello {
    device_id: String,
    paired_phone: Option<String>,
}

/// The page starts: it registers its device and says whether its profile
/// holds a pairing. A device the simulator saw logged out stays logged out.
async fn hello(
    State(sim): State<Simulator>,
    AppJson(h): AppJson<Hello>,
) -> Result<Json<Value>, ApiError> {
    device_id_ok(&h.device_id)?;
    let mut devices = sim.lock();
    let known = devices.contains_key(&h.device_id);
    let d = devices
        .entry(h.device_id.clone())
        .or_insert_with(Device::new);
    match (&h.paired_phone, known, d.state) {
        (Some(phone), false, _) => {
            d.state = DeviceState::Connected;
            d.phone = Some(phone.clone());
        }
        (Some(_), true, DeviceState::Connected) => {}
        (Some(_), true, _) | (None, _, _) => {
            if d.state != DeviceState::Unpaired {
                d.state = DeviceState::Unpaired;
                d.phone = None;
                d.reference = super::random_b64(12);
            }
        }
    }
    let state = if d.state == DeviceState::Connected {
        "CONNECTED"
    } else {
        "UNPAIRED"
    };
    Ok(Json(json!({
        "state": state,
        "ref": (d.state == DeviceState::Unpaired).then(|| d.reference.clone()),
        "static_key": d.static_key,
        "identity_key": d.identity_key,
        "adv_secret": d.adv_secret,
        "phone": d.phone,
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
            (DeviceState::Connected, Some(phone)) => json!({"type": "paired", "phone": phone}),
            _ => json!({"type": "ref", "ref": d.reference}),
        };
        let _ = tx.send(snapshot.to_string());
        d.subscribers.push(tx);
        Ok(())
    })?;
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|data| (Ok(Event::default().data(data)), rx))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(Deserialize)]
struct Send {
    to: String,
    text: String,
}

async fn send(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    AppJson(s): AppJson<Send>,
) -> Result<Json<Value>, ApiError> {
    phone_ok(&s.to)?;
    let message_id = sim.message_id("3EB0");
    with_device(&sim, &id, |d| {
        if d.state != DeviceState::Connected {
            return Err(ApiError::conflict(
                "not_connected",
                "the device is not connected",
            ));
        }
        d.sent.push(super::SentMessage {
            message_id: message_id.clone(),
            to: s.to,
            text: s.text,
        });
        Ok(())
    })?;
    Ok(Json(json!({ "message_id": message_id })))
}

fn unpair(d: &mut Device) {
    d.state = DeviceState::Unpaired;
    d.phone = None;
    d.reference = super::random_b64(12);
}

async fn logout_self(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    with_device(&sim, &id, |d| {
        unpair(d);
        Ok(Json(json!({ "ok": true })))
    })
}

async fn devices(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!(sim.devices()))
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
    let mut devices = sim.lock();
    let (id, d) = devices
        .iter_mut()
        .find(|(_, d)| d.qr().as_deref() == Some(s.qr.as_str()))
        .ok_or_else(|| ApiError::NotFound("no device shows that QR (stale or unknown)".into()))?;
    d.state = DeviceState::Connected;
    d.phone = Some(s.phone.clone());
    d.push(json!({"type": "paired", "phone": s.phone}));
    Ok(Json(json!({ "device_id": id, "phone": s.phone })))
}

/// A push to a connected device; 409 when it is not connected.
fn push_connected(
    sim: &Simulator,
    id: &str,
    event: Value,
    after: impl FnOnce(&mut Device),
) -> Result<Json<Value>, ApiError> {
    with_device(sim, id, |d| {
        if d.state != DeviceState::Connected {
            return Err(ApiError::conflict(
                "not_connected",
                "the device is not connected",
            ));
        }
        d.push(event);
        after(d);
        Ok(Json(json!({ "ok": true })))
    })
}

async fn logout(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    push_connected(&sim, &id, json!({"type": "logout"}), unpair)
}

async fn conflict(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    push_connected(&sim, &id, json!({"type": "conflict"}), |d| {
        d.state = DeviceState::Conflict
    })
}

async fn tos_block(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    push_connected(&sim, &id, json!({"type": "tos_block"}), |d| {
        d.state = DeviceState::TosBlock
    })
}

/// Pushes a new QR `ref` to the page whatever its state (WhatsApp Web can
/// emit one after pairing; seed 002's LOGOUT bug reacted to it).
async fn rotate_qr(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    with_device(&sim, &id, |d| {
        d.rotate();
        Ok(Json(json!({ "ok": true })))
    })
}

async fn ban(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    push_connected(&sim, &id, json!({"type": "ban"}), |_| {})
}

async fn restart_required(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    push_connected(&sim, &id, json!({"type": "restart_required"}), |_| {})
}

#[derive(Deserialize)]
struct Incoming {
    from: String,
    text: String,
}

async fn incoming(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    AppJson(m): AppJson<Incoming>,
) -> Result<Json<Value>, ApiError> {
    phone_ok(&m.from)?;
    let message_id = sim.message_id("IN");
    let event = json!({"type": "incoming", "message": {
        "id": message_id, "from": m.from, "text": m.text,
    }});
    let _pushed = push_connected(&sim, &id, event, |_| {})?;
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

#[derive(Deserialize)]
struct Ack {
    message_id: String,
    ack: i8,
}

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
    let known = sim
        .sent(&id)
        .is_some_and(|s| s.iter().any(|m| m.message_id == a.message_id));
    if !known {
        return Err(ApiError::NotFound(format!(
            "device {id} sent no message {}",
            a.message_id
        )));
    }
    let event = json!({"type": "ack", "message_id": a.message_id, "ack": a.ack});
    push_connected(&sim, &id, event, |_| {})
}

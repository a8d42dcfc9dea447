//! The human signals around a send, end to end: the whole service
//! in-process with the real webjs engine (real Chromium) on the simulator,
//! which stamps every message, chat state and seen mark with the time its
//! server heard it. A message from the outbox is preceded by `composing` for
//! its typing time and followed by `paused`; an auto-reply marks the
//! incoming chat seen before it types and arrives. Waits are on the
//! WebSocket's events: the page sends its stanzas in order, so a message's
//! ack 1 means everything the page sent before it was heard.

mod common;

use centinela::{engines_for, AdminBootstrap, Services};
use centinela_actors::clock::Timestamp;
use common::api::{Api, Cred, Ws, ADMIN, ADMIN_PASSWORD};
use common::browser::{browser_slot, engine_config, Sim};
use common::Server;
use serde_json::{json, Value};
use std::time::Duration;

const PHONE: &str = "5491122334455";
const PEER: &str = "5491100000007";
/// 15 characters: 1 s of typing at the default 15 a second.
const ONE_SECOND_TEXT: &str = "hola, que tal?!";

/// A tenant's READY session on the real engine, paired through the simulator.
struct Paired {
    server: Server,
    api: Api,
    token: String,
    id: String,
    device: String,
    ws: Ws,
}

async fn paired(sim: &Sim, dir: &std::path::Path, tenant: &str) -> Paired {
    centinela_web::logstream::install_global();
    let mut config = engine_config(dir, &sim.wa_url());
    config.messaging.send_delay_min = Duration::ZERO;
    config.messaging.send_delay_max = Duration::from_millis(50);
    assert_eq!(
        config.messaging.typing_chars_per_second, 15,
        "the shipped default"
    );
    assert!(config.messaging.send_seen, "the shipped default");
    let services = Services {
        engines: engines_for(&config),
        admin: AdminBootstrap::Given {
            username: ADMIN.into(),
            password: ADMIN_PASSWORD.into(),
        },
        ..Services::default()
    };
    let server = common::start(config, services).await;
    let api = Api::new(&server.url(""));
    let admin = api.login(ADMIN, ADMIN_PASSWORD).await;
    let (token, _) = api.tenant_with_user(&admin, tenant).await;
    let id = api.create_session(&token, None, "desk").await;
    let mut ws = Ws::connect(&api.base, &format!("token={token}")).await;
    let r = api.session_action(&token, &id, "connect").await;
    assert!(r.status == 200 || r.status == 202, "{}", r.text);
    let mut qr = ws.until_state(&id, "QR").await;
    let device = loop {
        let code = qr["to"]["code"].as_str().expect("a QR code").to_owned();
        let (status, body) = sim
            .post("/sim/scan", json!({"qr": code, "phone": PHONE}))
            .await;
        if status == 200 {
            break body["device_id"].as_str().expect("device").to_owned();
        }
        assert_eq!(status, 404, "{body}");
        qr = ws.until_state(&id, "QR").await; // rotated meanwhile: the next one
    };
    ws.until_state(&id, "READY").await;
    Paired {
        server,
        api,
        token,
        id,
        device,
        ws,
    }
}

fn at(v: &Value) -> Timestamp {
    Timestamp::parse_rfc3339(v["at"].as_str().expect("at")).expect("an RFC 3339 time")
}

/// Waits for `n` server acks (1) of the session's messages.
async fn server_acks(p: &mut Paired, n: usize) {
    for _ in 0..n {
        let id = p.id.clone();
        p.ws.next(|v| v["type"] == "ack" && v["session_id"] == id.as_str() && v["ack"] == 1)
            .await;
    }
}

/// The message the phone's server received with `text`.
async fn arrival(sim: &Sim, device: &str, text: &str) -> Value {
    let sent = sim.get(&format!("/sim/devices/{device}/sent")).await;
    sent.as_array()
        .and_then(|l| l.iter().find(|m| m["text"] == text))
        .unwrap_or_else(|| panic!("the server got no {text:?}: {sent}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_message_is_typed_for_its_length_first_then_paused() {
    let _slot = browser_slot().await;
    let sim = Sim::start(Duration::from_secs(20)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = paired(&sim, dir.path(), "clinic").await;
    // Two messages: the second's ack says the first's `paused` was heard.
    for text in [ONE_SECOND_TEXT, "ok"] {
        let r = p
            .api
            .call(
                "POST",
                &format!("/api/v1/sessions/{}/messages", p.id),
                Cred::Token(&p.token),
                Some(json!({"to": PEER, "text": text})),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
    }
    server_acks(&mut p, 2).await;

    let marks = sim
        .get(&format!("/sim/devices/{}/chatstates", p.device))
        .await;
    let chat = format!("{PEER}@c.us");
    let states: Vec<&Value> = marks["chat_states"]
        .as_array()
        .expect("chat states")
        .iter()
        .filter(|s| s["chat"] == chat.as_str())
        .collect();
    let names: Vec<&str> = states.iter().filter_map(|s| s["state"].as_str()).collect();
    assert!(
        names.starts_with(&["composing", "paused", "composing"]),
        "{marks}"
    );
    let first = arrival(&sim, &p.device, ONE_SECOND_TEXT).await;
    let typed = at(&first).since(at(states[0]));
    assert!(
        typed >= Duration::from_secs(1),
        "typing shown {typed:?} before a 15-character text arrived; 1 s expected"
    );
    assert!(typed < Duration::from_secs(20), "typed for {typed:?}");
    assert!(
        at(states[1]) >= at(&first),
        "paused after the message: {marks}"
    );
    let second = arrival(&sim, &p.device, "ok").await;
    assert!(
        at(states[1]) <= at(states[2]) && at(states[2]) <= at(&second),
        "the second message is typed too: {marks}"
    );
    assert_eq!(marks["seen"], json!([]), "nothing was answered");
    p.server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_reply_marks_the_incoming_chat_seen_before_it_answers() {
    let _slot = browser_slot().await;
    let sim = Sim::start(Duration::from_secs(20)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = paired(&sim, dir.path(), "shop").await;
    let rules =
        json!({"enabled": true, "rules": [{"keyword": "horario", "reply": "Abrimos de 9 a 18"}]});
    let r = p
        .api
        .call(
            "PUT",
            "/api/v1/tenants/shop/auto-replies",
            Cred::Token(&p.token),
            Some(rules),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (status, body) = sim
        .post(
            &format!("/sim/devices/{}/incoming", p.device),
            json!({"from": PEER, "text": "hola, ¿qué horario tienen?"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    server_acks(&mut p, 1).await;

    let reply = arrival(&sim, &p.device, "Abrimos de 9 a 18").await;
    assert_eq!(reply["to"], PEER);
    let marks = sim
        .get(&format!("/sim/devices/{}/chatstates", p.device))
        .await;
    let chat = format!("{PEER}@c.us");
    let seen = marks["seen"]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["chat"] == chat.as_str()))
        .unwrap_or_else(|| panic!("the incoming chat was not marked seen: {marks}"));
    let composing = marks["chat_states"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|s| s["chat"] == chat.as_str() && s["state"] == "composing")
        })
        .unwrap_or_else(|| panic!("the reply was not typed: {marks}"));
    assert!(
        at(seen) <= at(composing) && at(composing) < at(&reply),
        "read, then typed, then answered: {marks} / {reply}"
    );
    assert!(
        at(&reply).since(at(composing)) >= Duration::from_millis(1133),
        "17 characters take 1.13 s to type: {marks} / {reply}"
    );
    p.server.shutdown().await.expect("shutdown");
}

//! The webjs engine end to end: real Chromium, the real engine, the bundled
//! simulator playing the phone and WhatsApp. No state is faked: every
//! transition comes from the page through the DevTools binding.

mod common;

use centinela_actors::bus::BusEvent;
use centinela_actors::session::{DisconnectReason, SessionState};
use centinela_actors::supervisor::ConnectOutcome;
use common::browser::{
    browser_main_pid, browser_slot, chromium_processes_under, engine_config, ready_session,
    still_running, wait_for, Centinela, Sim,
};
use serde_json::json;
use std::time::Duration;

fn qr_of(state: &SessionState) -> String {
    match state {
        SessionState::Qr { code, .. } => code.clone(),
        other => panic!("not a QR state: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_scan_ready_then_restart_restores_without_qr() {
    let _slot = browser_slot().await;
    let sim = Sim::start(Duration::from_millis(1500)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = engine_config(dir.path(), &sim.wa_url());
    let c = Centinela::start(config.clone()).await;
    let mut rx = c.bus.subscribe();
    let id = c.create("clinic").await;
    assert!(matches!(
        c.connect(&id).await,
        ConnectOutcome::Queued { .. }
    ));
    let seen = wait_for(&mut rx, &id, "QR").await;
    let first_qr = qr_of(&seen.last().expect("qr").to);
    assert_eq!(
        first_qr.split(',').count(),
        5,
        "ref,staticKey,identityKey,advSecret,platform"
    );
    let device = sim
        .device_showing(&first_qr)
        .await
        .expect("the simulator shows the same QR");

    // Unscanned, the QR rotates and the new one is reported.
    let seen = wait_for(&mut rx, &id, "QR").await;
    let rotated = qr_of(&seen.last().expect("qr").to);
    assert_ne!(rotated, first_qr);
    let (status, _) = sim
        .post(
            "/sim/scan",
            json!({"qr": first_qr, "phone": "5491122334455"}),
        )
        .await;
    assert_eq!(status, 404, "a stale QR does not pair");

    let current = qr_of(&c.get(&id).await.state);
    let (status, body) = sim
        .post(
            "/sim/scan",
            json!({"qr": current, "phone": "5491122334455"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["device_id"], device.as_str());
    wait_for(&mut rx, &id, "AUTHENTICATED").await;
    wait_for(&mut rx, &id, "READY").await;
    assert_eq!(
        c.get(&id).await.state,
        SessionState::Ready {
            me: "5491122334455".into()
        }
    );

    // A QR pushed after READY changes nothing (seed 002).
    let (status, _) = sim
        .post(&format!("/sim/devices/{device}/rotate-qr"), json!({}))
        .await;
    assert_eq!(status, 200);
    // WhatsApp's normal 515 right after the scan: a restart on the same
    // pairing, no QR, no ban. Being the next transition, it also proves the
    // rotated QR above moved nothing.
    let (status, _) = sim
        .post(
            &format!("/sim/devices/{device}/restart-required"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let seen = wait_for(&mut rx, &id, "READY").await;
    let states: Vec<&str> = seen.iter().map(|t| t.to.name()).collect();
    assert_eq!(states, ["CONNECTING", "AUTHENTICATED", "READY"]);
    c.stop().await;
    assert!(
        chromium_processes_under(dir.path()).is_empty(),
        "no Chromium left after shutdown"
    );

    // The whole service restarts on the same data dir: back to READY, no QR.
    let c = Centinela::start(config).await;
    let mut rx = c.bus.subscribe();
    let seen = wait_for(&mut rx, &id, "READY").await;
    assert!(
        seen.iter()
            .filter(|t| t.session == id)
            .all(|t| t.to.name() != "QR"),
        "{seen:#?}"
    );
    c.stop().await;
    assert!(chromium_processes_under(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_logout_conflict_and_ban_map_to_their_reasons() {
    let _slot = browser_slot().await;
    let sim = Sim::start(Duration::from_secs(20)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = engine_config(dir.path(), &sim.wa_url());
    config.antiban.restart_grace = Duration::from_millis(1);
    let c = Centinela::start(config).await;
    let mut rx = c.bus.subscribe();
    for (n, (action, reason)) in [
        ("logout", DisconnectReason::Logout),
        ("conflict", DisconnectReason::Conflict),
        ("ban", DisconnectReason::Banned),
    ]
    .into_iter()
    .enumerate()
    {
        let phone = format!("54911000000{n}");
        let id = ready_session(&c, &sim, &mut rx, &format!("tenant{n}"), &phone).await;
        let device = sim.device_of(&phone).await.expect("paired device");
        let (status, _) = sim
            .post(&format!("/sim/devices/{device}/{action}"), json!({}))
            .await;
        assert_eq!(status, 200);
        let seen = wait_for(&mut rx, &id, "DISCONNECTED").await;
        assert_eq!(seen.last().and_then(|t| t.reason), Some(reason), "{action}");
        let profile = dir.path().join("profiles").join(id.as_str());
        assert_eq!(
            profile.exists(),
            reason != DisconnectReason::Logout,
            "{action}: profile kept unless logged out"
        );
    }
    c.stop().await;
    assert!(chromium_processes_under(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_chromium_is_browser_crashed_and_the_other_session_stays_ready() {
    let _slot = browser_slot().await;
    let sim = Sim::start(Duration::from_secs(20)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Centinela::start(engine_config(dir.path(), &sim.wa_url())).await;
    let mut rx = c.bus.subscribe();
    let mut ids = Vec::new();
    for (n, tenant) in ["shop", "crm"].iter().enumerate() {
        let phone = format!("5491100000{n}0");
        ids.push(ready_session(&c, &sim, &mut rx, tenant, &phone).await);
    }
    let victim_profile = dir.path().join("profiles").join(ids[0].as_str());
    let pids = chromium_processes_under(&victim_profile);
    assert!(
        pids.len() > 1,
        "the victim's browser runs with its children: {pids:?}"
    );
    let main = browser_main_pid(&victim_profile).expect("the browser's main process");
    // Only the main process dies, as in a crash: its children are orphaned
    // and the engine must still find and reap them.
    let status = std::process::Command::new("kill")
        .args(["-KILL", &main.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let seen = wait_for(&mut rx, &ids[0], "DISCONNECTED").await;
    assert_eq!(
        seen.last().and_then(|t| t.reason),
        Some(DisconnectReason::BrowserCrashed)
    );
    assert!(
        seen.iter().all(|t| t.session == ids[0]),
        "the other session never moved: {seen:#?}"
    );
    assert_eq!(c.get(&ids[1]).await.state.name(), "READY");
    let left = still_running(&pids);
    let cmds: Vec<String> = left
        .iter()
        .map(|p| {
            String::from_utf8_lossy(
                &std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default(),
            )
            .replace('\0', " ")
        })
        .collect();
    assert!(
        left.is_empty(),
        "nothing of the crashed browser is left: {cmds:#?}"
    );
    c.stop().await;
    assert!(chromium_processes_under(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_go_out_come_in_and_acks_arrive() {
    let _slot = browser_slot().await;
    let sim = Sim::start(Duration::from_secs(20)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Centinela::start(engine_config(dir.path(), &sim.wa_url())).await;
    let mut rx = c.bus.subscribe();
    let id = ready_session(&c, &sim, &mut rx, "clinic", "5491122334455").await;
    let device = sim.device_of("5491122334455").await.expect("device");

    let sent = centinela_actors::ractor::call!(c.sup, |r| {
        centinela_actors::supervisor::SupervisorMsg::SendText {
            id: id.clone(),
            to: "5491100000000".into(),
            text: "hola, turno confirmado".into(),
            reply: r,
        }
    })
    .expect("call")
    .expect("sent");
    let on_phone = sim.get(&format!("/sim/devices/{device}/sent")).await;
    assert_eq!(on_phone[0]["to"], "5491100000000");
    assert_eq!(on_phone[0]["text"], "hola, turno confirmado");
    assert_eq!(on_phone[0]["message_id"], sent.as_str());

    let (status, _) = sim
        .post(
            &format!("/sim/devices/{device}/ack"),
            json!({"message_id": sent, "ack": 3}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = sim
        .post(
            &format!("/sim/devices/{device}/incoming"),
            json!({"from": "5491100000000", "text": "gracias"}),
        )
        .await;
    assert_eq!(status, 200);
    let incoming_id = body["message_id"].as_str().expect("id").to_owned();
    let (mut got_ack, mut got_msg) = (None, None);
    while got_ack.is_none() || got_msg.is_none() {
        let ev = tokio::time::timeout(common::WAIT, rx.recv())
            .await
            .expect("events arrive")
            .expect("bus");
        match ev {
            BusEvent::Ack(a) if a.session == id => got_ack = Some(a),
            BusEvent::MessageIn(m) if m.session == id => got_msg = Some(m),
            _ => {}
        }
    }
    let ack = got_ack.expect("ack");
    assert_eq!((ack.message_id.as_str(), ack.ack), (sent.as_str(), 3));
    let msg = got_msg.expect("message");
    assert_eq!(
        (msg.id.as_str(), msg.from.as_str(), msg.text.as_str()),
        (incoming_id.as_str(), "5491100000000", "gracias")
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_failures_are_clear_engine_errors() {
    let _slot = browser_slot().await;
    let sim = Sim::start(Duration::from_secs(20)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // A page that never becomes WhatsApp Web: the injection wait times out.
    let mut config = engine_config(dir.path(), &format!("http://{}/sim/devices", sim.addr));
    config.engine.page_timeout = Duration::from_secs(3);
    let c = Centinela::start(config).await;
    let mut rx = c.bus.subscribe();
    let id = c.create("clinic").await;
    c.connect(&id).await;
    let seen = wait_for(&mut rx, &id, "DISCONNECTED").await;
    assert_eq!(
        seen.last().and_then(|t| t.reason),
        Some(DisconnectReason::EngineError)
    );
    c.stop().await;
    assert!(
        chromium_processes_under(dir.path()).is_empty(),
        "a failed start leaves no Chromium"
    );

    // A browser that cannot start.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = engine_config(dir.path(), &sim.wa_url());
    config.engine.chromium_path = "/nonexistent/chromium".into();
    config.engine.headless_shell = false;
    let c = Centinela::start(config).await;
    let mut rx = c.bus.subscribe();
    let id = c.create("shop").await;
    c.connect(&id).await;
    let seen = wait_for(&mut rx, &id, "DISCONNECTED").await;
    assert_eq!(
        seen.last().and_then(|t| t.reason),
        Some(DisconnectReason::EngineError)
    );
    c.stop().await;
}

//! The webjs engine end to end: real Chromium, the real engine, the bundled
//! simulator playing the phone and WhatsApp. No state is faked: every
//! transition comes from the page through the DevTools binding.

mod common;

use centinela_actors::bus::{BusEvent, MessageEvent, TransitionEvent};
use centinela_actors::engine::EngineError;
use centinela_actors::ids::SessionId;
use centinela_actors::session::{DisconnectReason, SessionState};
use centinela_actors::supervisor::{ConnectOutcome, SupervisorError};
use centinela_web::sim::SimOptions;
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
    let mut first_qr = qr_of(&seen.last().expect("qr").to);
    assert_eq!(
        first_qr.split(',').count(),
        5,
        "ref,staticKey,identityKey,advSecret,platform"
    );
    // The simulator rotates every device's ref on one shared 1.5 s tick, so
    // the ref may move on between the report and this lookup; then the
    // engine reports the next one, which is looked up in turn.
    let mut device = None;
    for _ in 0..3 {
        device = sim.device_showing(&first_qr).await;
        if device.is_some() {
            break;
        }
        first_qr = qr_of(&wait_for(&mut rx, &id, "QR").await.last().expect("qr").to);
    }
    let device = device.expect("the simulator shows the QR the engine reported");
    {
        use std::os::unix::fs::PermissionsExt;
        let profile = dir.path().join("profiles").join(id.as_str());
        let mode = std::fs::metadata(&profile)
            .expect("profile")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the pairing is private");
    }

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

    // The current QR scans (if the shared tick rotates it first, the next
    // one the engine reports does).
    let mut current = qr_of(&c.get(&id).await.state);
    let mut scanned = None;
    for _ in 0..3 {
        let (status, body) = sim
            .post(
                "/sim/scan",
                json!({"qr": current, "phone": "5491122334455"}),
            )
            .await;
        if status == 200 {
            scanned = Some(body);
            break;
        }
        assert_eq!(status, 404, "{body}");
        current = qr_of(&wait_for(&mut rx, &id, "QR").await.last().expect("qr").to);
    }
    let body = scanned.expect("a current QR pairs");
    assert_eq!(body["device_id"], device.as_str());
    let devices = sim.get("/sim/devices").await;
    let ours = devices
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == device.as_str()))
        .expect("our device")
        .clone();
    assert_eq!(
        ours["automation"],
        json!([]),
        "the page's own world sees no binding, driver global or navigator.webdriver"
    );
    wait_for(&mut rx, &id, "AUTHENTICATED").await;
    wait_for(&mut rx, &id, "READY").await;
    // DevTools is on a pipe: no process of the session's browser listens
    // on a TCP port another local process could attach to.
    let profile = dir.path().join("profiles").join(id.as_str());
    let pids = chromium_processes_under(&profile);
    assert!(!pids.is_empty());
    assert_eq!(
        common::browser::tcp_listen_ports(&pids),
        Vec::<u16>::new(),
        "the browser listens on no TCP port"
    );
    let main = browser_main_pid(&profile).expect("the browser");
    let cmdline = std::fs::read(format!("/proc/{main}/cmdline")).expect("cmdline");
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(cmdline.contains("--remote-debugging-pipe"), "{cmdline}");
    assert!(!cmdline.contains("--remote-debugging-port"), "{cmdline}");
    assert_eq!(
        c.get(&id).await.state,
        SessionState::Ready {
            me: "5491122334455".into()
        }
    );

    // A QR pushed after READY changes nothing (seed 002). The page's next
    // report, an incoming message on the same ordered stream, proves the
    // rotated ref was seen first; the session never moved meanwhile.
    let (status, _) = sim
        .post(&format!("/sim/devices/{device}/rotate-qr"), json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, moved) = incoming(
        &sim,
        &mut rx,
        &id,
        &device,
        json!({"from": "5491100000009", "text": "ping"}),
    )
    .await;
    assert!(
        moved.is_empty(),
        "no transition after a late QR: {moved:#?}"
    );
    assert_eq!(c.get(&id).await.state.name(), "READY");
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
async fn whatsapps_verdicts_map_to_their_reasons() {
    let _slot = browser_slot().await;
    let sim = Sim::start(Duration::from_secs(20)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Centinela::start(engine_config(dir.path(), &sim.wa_url())).await;
    let mut rx = c.bus.subscribe();
    for (n, (action, reason)) in [
        // The phone unlinks the device: logout_from_bridge, post_logout.
        ("logout", DisconnectReason::Logout),
        ("conflict", DisconnectReason::Conflict),
        ("tos-block", DisconnectReason::Banned),
        ("smb-tos-block", DisconnectReason::Banned),
        ("proxy-block", DisconnectReason::ProxyBlocked),
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
        if reason == DisconnectReason::Banned {
            // Seed 003: a ban blocks the tenant for 24 h.
            match c.connect(&id).await {
                ConnectOutcome::Denied { reason, wait, .. } => {
                    assert_eq!(reason.as_str(), "error_515_block", "{action}");
                    assert!(wait > Duration::from_secs(23 * 3600), "{action}: {wait:?}");
                }
                other => panic!("{action}: a banned tenant is refused: {other:?}"),
            }
        }
        if reason == DisconnectReason::ProxyBlocked {
            // The path is refused, not the account: held on it with no end
            // time, never reconnected, until an admin lifts it.
            match c.connect(&id).await {
                ConnectOutcome::Denied {
                    reason,
                    block_until,
                    proxy,
                    ..
                } => {
                    assert_eq!(reason.as_str(), "proxy_block");
                    assert_eq!(block_until, None);
                    assert_eq!(proxy.as_deref(), Some("server"));
                }
                other => panic!("a refused path holds the tenant: {other:?}"),
            }
            let tenant = centinela_actors::ids::TenantId::new(format!("tenant{n}")).expect("id");
            let was = c
                .sup
                .unblock(tenant, "admin".into())
                .await
                .expect("unblock");
            assert!(was, "the hold was in force");
            assert!(matches!(
                c.connect(&id).await,
                ConnectOutcome::Queued { .. }
            ));
        }
    }
    c.stop().await;
    assert!(chromium_processes_under(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_logout_unpairs_the_device_on_whatsapps_side() {
    let _slot = browser_slot().await;
    let sim = Sim::start(Duration::from_secs(20)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Centinela::start(engine_config(dir.path(), &sim.wa_url())).await;
    let mut rx = c.bus.subscribe();
    let id = ready_session(&c, &sim, &mut rx, "clinic", "5491122334455").await;
    let device = sim.device_of("5491122334455").await.expect("device");
    c.sup.logout(id.clone()).await.expect("logout");
    let seen = wait_for(&mut rx, &id, "DISCONNECTED").await;
    assert_eq!(
        seen.last().and_then(|t| t.reason),
        Some(DisconnectReason::Logout)
    );
    let devices = sim.get("/sim/devices").await;
    let ours = devices
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == device.as_str()))
        .expect("the device is still known");
    assert_eq!(
        ours["state"], "UNPAIRED",
        "Socket.logout() reached WhatsApp"
    );
    assert!(!dir.path().join("profiles").join(id.as_str()).exists());
    c.stop().await;
    assert!(chromium_processes_under(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_qr_is_refreshed_while_the_qr_window_is_open() {
    let _slot = browser_slot().await;
    // Two refs, then the page goes UNPAIRED_IDLE and would stay there.
    let sim = Sim::start_with(
        SimOptions {
            qr_rotation: Duration::from_millis(700),
            idle_after: 2,
            ..SimOptions::default()
        },
        false,
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Centinela::start(engine_config(dir.path(), &sim.wa_url())).await;
    let mut rx = c.bus.subscribe();
    let id = c.create("clinic").await;
    c.connect(&id).await;
    let mut codes: Vec<String> = Vec::new();
    while codes.len() < 4 {
        let seen = wait_for(&mut rx, &id, "QR").await;
        let code = qr_of(&seen.last().expect("qr").to);
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    let current = qr_of(&c.get(&id).await.state);
    let (status, body) = sim
        .post(
            "/sim/scan",
            json!({"qr": current, "phone": "5491122334455"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for(&mut rx, &id, "READY").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_chromium_is_browser_crashed_then_restored_without_a_qr_and_its_neighbour_stays_ready(
) {
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
    // A crash is a local fault, not WhatsApp's verdict: the session comes
    // back by itself on the same pairing, with no QR, and the neighbour
    // never moves.
    let seen = wait_for(&mut rx, &ids[0], "READY").await;
    assert!(
        seen.iter().all(|t| t.to.name() != "QR"),
        "restored without a QR: {seen:#?}"
    );
    assert!(
        seen.iter().all(|t| t.session == ids[0]),
        "the other session never moved: {seen:#?}"
    );
    assert_eq!(c.get(&ids[1]).await.state.name(), "READY");
    c.stop().await;
    assert!(chromium_processes_under(dir.path()).is_empty());
}

/// The memory guard on a real browser: its process tree's PSS (read from
/// /proc) is over a limit set below any Chromium's, so once READY it is
/// restarted as DISCONNECTED `memory_limit` and restored by the supervisor
/// on the same pairing, with no QR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_over_its_memory_limit_is_restarted_and_restored_without_a_qr() {
    let _slot = browser_slot().await;
    let sim = Sim::start(Duration::from_secs(20)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = engine_config(dir.path(), &sim.wa_url());
    config.engine.max_session_memory = 16 << 20;
    config.engine.memory_check_interval = Duration::from_secs(1);
    config.engine.memory_min_uptime = Duration::ZERO;
    let c = Centinela::start(config).await;
    let mut rx = c.bus.subscribe();
    let id = ready_session(&c, &sim, &mut rx, "shop", "5491100000010").await;
    let mut restart = None;
    let seen = loop {
        let ev = tokio::time::timeout(common::WAIT, rx.recv())
            .await
            .expect("a memory restart within the wait")
            .expect("bus");
        match ev {
            BusEvent::MemoryRestart(m) if m.session == id => restart = Some(m),
            BusEvent::Transition(t) if t.session == id && t.to.name() == "DISCONNECTED" => break t,
            _ => {}
        }
    };
    assert_eq!(seen.reason, Some(DisconnectReason::MemoryLimit), "{seen:?}");
    let restart = restart.expect("announced before the disconnect");
    assert_eq!(restart.limit, 16 << 20);
    assert!(
        restart.bytes > 16 << 20,
        "the real PSS of the browser tree: {} bytes",
        restart.bytes
    );
    let back = wait_for(&mut rx, &id, "READY").await;
    assert!(
        back.iter().all(|t| t.to.name() != "QR"),
        "restored on its pairing, without a QR: {back:#?}"
    );
    c.stop().await;
    assert!(chromium_processes_under(dir.path()).is_empty());
}

/// Delivers one message from the phone and returns the next text message
/// the engine reports for `id`, with the transitions of `id` seen meanwhile.
async fn incoming(
    sim: &Sim,
    rx: &mut tokio::sync::broadcast::Receiver<BusEvent>,
    id: &SessionId,
    device: &str,
    body: serde_json::Value,
) -> (MessageEvent, Vec<TransitionEvent>) {
    let (status, reply) = sim
        .post(&format!("/sim/devices/{device}/incoming"), body)
        .await;
    assert_eq!(status, 200, "{reply}");
    next_message(rx, id).await
}

/// Reads the bus until `pick` takes an event of session `id`; returns it
/// with the transitions of `id` seen meanwhile.
async fn next_of<T>(
    rx: &mut tokio::sync::broadcast::Receiver<BusEvent>,
    id: &SessionId,
    what: &str,
    pick: impl Fn(BusEvent) -> Option<T>,
) -> (T, Vec<TransitionEvent>) {
    let mut moved = Vec::new();
    loop {
        let ev = tokio::time::timeout(common::WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{what} arrives"))
            .expect("bus");
        match ev {
            BusEvent::Transition(t) if &t.session == id => moved.push(t),
            other => {
                if let Some(found) = pick(other) {
                    return (found, moved);
                }
            }
        }
    }
}

async fn next_message(
    rx: &mut tokio::sync::broadcast::Receiver<BusEvent>,
    id: &SessionId,
) -> (MessageEvent, Vec<TransitionEvent>) {
    next_of(rx, id, "a message", |ev| match ev {
        BusEvent::MessageIn(m) if &m.session == id => Some(m),
        _ => None,
    })
    .await
}

async fn next_ack(
    rx: &mut tokio::sync::broadcast::Receiver<BusEvent>,
    id: &SessionId,
) -> (String, i8) {
    let (a, _) = next_of(rx, id, "an ack", |ev| match ev {
        BusEvent::Ack(a) if &a.session == id => Some((a.message_id, a.ack)),
        _ => None,
    })
    .await;
    a
}

async fn send(
    c: &Centinela,
    id: &SessionId,
    to: &str,
    text: &str,
) -> Result<String, SupervisorError> {
    c.sup.send_text(id.clone(), to.into(), text.into()).await
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

    // Sent through the contract's sequence; the id is the key's serialized form.
    let sent = send(&c, &id, "5491100000000", "hola, turno confirmado")
        .await
        .expect("sent");
    // The page hands it to the server after adding it (ack 0): the server's
    // ack 1 says it arrived.
    assert_eq!(next_ack(&mut rx, &id).await, (sent.clone(), 1));
    let on_phone = sim.get(&format!("/sim/devices/{device}/sent")).await;
    assert_eq!(on_phone[0]["to"], "5491100000000");
    assert_eq!(on_phone[0]["text"], "hola, turno confirmado");
    let raw = on_phone[0]["message_id"].as_str().expect("raw id");
    assert_eq!(sent, format!("true_5491100000000@c.us_{raw}"));

    // A number without WhatsApp is WhatsApp's answer, not a fault.
    let (status, _) = sim
        .post("/sim/unregistered", json!({"phone": "5491199999999"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        send(&c, &id, "5491199999999", "hola").await,
        Err(SupervisorError::Engine(EngineError::NotOnWhatsapp))
    );

    let (status, _) = sim
        .post(
            &format!("/sim/devices/{device}/ack"),
            json!({"message_id": raw, "ack": 3}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(next_ack(&mut rx, &id).await, (sent.clone(), 3));

    let (msg, _) = incoming(
        &sim,
        &mut rx,
        &id,
        &device,
        json!({"from": "5491100000000", "text": "gracias"}),
    )
    .await;
    assert_eq!(
        (msg.from.as_str(), msg.text.as_str()),
        ("5491100000000", "gracias")
    );
    assert!(
        msg.id.starts_with("false_5491100000000@c.us_"),
        "{}",
        msg.id
    );

    // An @lid sender is reported with the phone number the page knows.
    let (msg, _) = incoming(
        &sim,
        &mut rx,
        &id,
        &device,
        json!({"from": "5491100000003", "text": "desde lid", "lid": true}),
    )
    .await;
    assert_eq!(
        (msg.from.as_str(), msg.text.as_str()),
        ("5491100000003", "desde lid")
    );
    assert!(
        msg.id.contains("@lid_"),
        "the raw jid stays in the id: {}",
        msg.id
    );

    // Ciphertext is reported once, when it is decrypted.
    let (msg, _) = incoming(
        &sim,
        &mut rx,
        &id,
        &device,
        json!({"from": "5491100000004", "text": "cifrado", "kind": "ciphertext"}),
    )
    .await;
    assert_eq!(msg.text, "cifrado");

    // History, group and status messages are not new 1:1 texts: the next
    // message reported is the marker sent after them.
    for kind in ["history", "group", "status"] {
        let (status, _) = sim
            .post(
                &format!("/sim/devices/{device}/incoming"),
                json!({"from": "5491100000005", "text": kind, "kind": kind}),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (msg, _) = incoming(
        &sim,
        &mut rx,
        &id,
        &device,
        json!({"from": "5491100000006", "text": "marker"}),
    )
    .await;
    assert_eq!(
        msg.text, "marker",
        "nothing before the marker: not the ciphertext again, no history, group or status"
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

    // A page whose certificate is not valid (the simulator's self-signed
    // one, as an interceptor would present) is refused, never loaded.
    let tls_sim = Sim::start_with(SimOptions::default(), true).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = engine_config(dir.path(), &format!("https://{}/", tls_sim.addr));
    let c = Centinela::start(config).await;
    let mut rx = c.bus.subscribe();
    let id = c.create("intercepted").await;
    c.connect(&id).await;
    let seen = wait_for(&mut rx, &id, "DISCONNECTED").await;
    assert!(seen.iter().all(|t| t.to.name() != "QR"), "{seen:#?}");
    assert_eq!(
        seen.last().and_then(|t| t.reason),
        Some(DisconnectReason::EngineError)
    );
    let devices = tls_sim.get("/sim/devices").await;
    assert_eq!(devices, json!([]), "the page never ran");
    c.stop().await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_without_serialized_are_read_with_to_string() {
    let _slot = browser_slot().await;
    // Newer WhatsApp Web builds no longer set `_serialized` on message keys.
    let sim = Sim::start_with(
        SimOptions {
            serialized_keys: false,
            ..SimOptions::default()
        },
        false,
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Centinela::start(engine_config(dir.path(), &sim.wa_url())).await;
    let mut rx = c.bus.subscribe();
    let id = ready_session(&c, &sim, &mut rx, "clinic", "5491122334455").await;
    let device = sim.device_of("5491122334455").await.expect("device");
    let sent = send(&c, &id, "5491100000001", "hola").await.expect("sent");
    assert_eq!(next_ack(&mut rx, &id).await, (sent.clone(), 1));
    let on_phone = sim.get(&format!("/sim/devices/{device}/sent")).await;
    let raw = on_phone[0]["message_id"].as_str().expect("raw id");
    assert_eq!(sent, format!("true_5491100000001@c.us_{raw}"));
    let (msg, _) = incoming(
        &sim,
        &mut rx,
        &id,
        &device,
        json!({"from": "5491100000002", "text": "hola"}),
    )
    .await;
    assert!(
        msg.id.starts_with("false_5491100000002@c.us_"),
        "{}",
        msg.id
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pairing_code_links_without_a_scan_and_is_limited_per_number() {
    let _slot = browser_slot().await;
    let sim = Sim::start(Duration::from_secs(20)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = engine_config(dir.path(), &sim.wa_url());
    config.antiban.pairing_codes_per_phone_per_hour = 2;
    let c = Centinela::start(config).await;
    let mut rx = c.bus.subscribe();
    let id = c.create("clinic").await;
    let phone = "5491122334466";
    let code_for = |phone: &'static str| {
        let (sup, id) = (c.sup.clone(), id.clone());
        async move { sup.pairing_code(id, phone.into()).await }
    };
    // Not showing a QR: refused before anything is asked of WhatsApp.
    assert_eq!(code_for(phone).await, Err(SupervisorError::NotShowingQr));
    c.connect(&id).await;
    wait_for(&mut rx, &id, "QR").await;
    let first = code_for(phone).await.expect("a code");
    assert_eq!(first.code.len(), 9, "{}", first.code);
    assert_eq!(&first.code[4..5], "-");
    assert_eq!(
        c.get(&id).await.pairing_code.map(|p| p.code),
        Some(first.code.clone()),
        "the session view shows it"
    );
    let second = code_for(phone).await.expect("a second code");
    // The third for the same number within the hour is the ledger's no.
    match code_for(phone).await {
        Err(SupervisorError::Denied(d)) => {
            assert_eq!(d.reason.as_str(), "pairing_code_limit");
            assert!(d.wait > Duration::from_secs(50 * 60), "{:?}", d.wait);
        }
        other => panic!("the third code is refused: {other:?}"),
    }
    // The phone types the code it was given last: linked, READY, no scan.
    let devices = sim.get("/sim/devices").await;
    assert!(
        devices
            .as_array()
            .expect("devices")
            .iter()
            .any(|d| d["pairing_code"] == second.code.as_str()),
        "the page shows the code: {devices}"
    );
    let (status, body) = sim
        .post("/sim/pair", json!({"code": first.code, "phone": phone}))
        .await;
    assert_eq!(status, 404, "a replaced code is stale: {body}");
    let (status, body) = sim
        .post("/sim/pair", json!({"code": second.code, "phone": phone}))
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for(&mut rx, &id, "READY").await;
    let view = c.get(&id).await;
    assert_eq!(view.state, SessionState::Ready { me: phone.into() });
    assert_eq!(view.pairing_code, None, "gone once linked");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_without_a_required_module_is_an_engine_error_not_a_timeout() {
    let _slot = browser_slot().await;
    // A WhatsApp Web update that renamed the collections module.
    let sim = Sim::start_with(
        SimOptions {
            without_modules: vec!["WAWebCollections".into()],
            ..SimOptions::default()
        },
        false,
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Centinela::start(engine_config(dir.path(), &sim.wa_url())).await;
    let mut rx = c.bus.subscribe();
    let id = c.create("clinic").await;
    c.connect(&id).await;
    let seen = wait_for(&mut rx, &id, "DISCONNECTED").await;
    assert_eq!(
        seen.last().and_then(|t| t.reason),
        Some(DisconnectReason::EngineError)
    );
    c.stop().await;
    assert!(chromium_processes_under(dir.path()).is_empty());
}

/// A tenant's proxy asks for its login: the browser answers the proxy's
/// own challenge, and a web server asking for credentials gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_credentials_answer_the_proxy_only_never_a_web_server() {
    let _slot = browser_slot().await;
    let sim = Sim::start(Duration::from_secs(20)).await;
    let proxy = common::proxy::AuthProxy::start("tenant7", "s3cret").await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The page, as a test switch, asks a 401 endpoint of the simulator.
    let mut config = engine_config(dir.path(), &format!("{}?auth_probe=1", sim.wa_url()));
    // Chromium sends loopback traffic around a proxy unless told not to.
    config
        .engine
        .extra_args
        .push("proxy-bypass-list=<-loopback>".into());
    let c = Centinela::start(config).await;
    let mut rx = c.bus.subscribe();
    let id = c
        .create_with(
            "clinic",
            Some(format!("http://tenant7:s3cret@{}", proxy.addr)),
        )
        .await;
    common::browser::pair(&c, &sim, &mut rx, &id, "5491122334455").await;
    use std::sync::atomic::Ordering;
    assert!(
        proxy.stats.challenged.load(Ordering::SeqCst) >= 1,
        "the proxy asked for its login"
    );
    assert!(
        proxy.stats.forwarded.load(Ordering::SeqCst) >= 1,
        "and was answered: the page came through it"
    );
    let log = sim.get("/sim/auth-probe/log").await;
    assert!(
        log["challenged"].as_u64().is_some_and(|n| n >= 1),
        "the page met the server's challenge: {log}"
    );
    assert_eq!(
        log["credentials"],
        json!([]),
        "no credentials were sent to a web server"
    );
    c.stop().await;
    assert!(chromium_processes_under(dir.path()).is_empty());
}

/// The page's reports are capped at 64 KiB: a text whose report is larger
/// (40,000 two-byte characters) is dropped and counted, never parsed or
/// logged whole, and the session goes on: the next message arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_over_64_kib_is_dropped_and_counted_and_the_session_goes_on() {
    use centinela_actors::engine::stats::counters;
    let _slot = browser_slot().await;
    let sim = Sim::start(Duration::from_secs(20)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Centinela::start(engine_config(dir.path(), &sim.wa_url())).await;
    let mut rx = c.bus.subscribe();
    let id = ready_session(&c, &sim, &mut rx, "clinic", "5491122334455").await;
    let device = sim.device_of("5491122334455").await.expect("device");
    let before = counters().dropped_reports;
    let huge = "é".repeat(40_000);
    let (status, reply) = sim
        .post(
            &format!("/sim/devices/{device}/incoming"),
            json!({"from": "5491100000001", "text": huge}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    // Reports arrive in order: once the next one is here, the huge one
    // has been judged.
    let (m, moved) = incoming(
        &sim,
        &mut rx,
        &id,
        &device,
        json!({"from": "5491100000001", "text": "after"}),
    )
    .await;
    assert_eq!(m.text, "after", "the oversized report was not delivered");
    assert!(moved.is_empty(), "the session never moved: {moved:#?}");
    assert!(
        counters().dropped_reports > before,
        "the dropped report was counted"
    );
    c.stop().await;
    assert!(chromium_processes_under(dir.path()).is_empty());
}

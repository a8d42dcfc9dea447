//! No browser outlives its node as the tenant's device (fleet/PLAN.md §5.4),
//! and the simulator would tell if two ever held one pairing.
//!
//! A `kill -9`ed service takes its browsers along (their DevTools pipe
//! closes, and the parent-death signal, proven on its own in
//! `engine-webjs`'s `pipe` tests, SIGKILLs them); a frozen one (SIGSTOP)
//! cannot, so its pages leave WhatsApp Web by themselves once its pings stop
//! (the dead-man switch), keeping the pairing. There the service runs as its
//! own process (`centinela serve`), so it can be killed and frozen for real;
//! the simulator runs as another (it is WhatsApp: it does not die with us)
//! and says when a page's event stream closes. The overlap test runs both
//! in-process. Real Chromium, real engine.

mod common;

use common::api::{Api, Cred, Ws};
use common::browser::{
    browser_slot, chromium_processes_under, engine_config, ready_session, still_running, wait_for,
    Centinela, Sim,
};
use common::proc::{spawn_serve_with, spawn_until, terminate};
use serde_json::{json, Value};
use std::process::Child;
use std::time::{Duration, Instant};

const PASSWORD: &str = "orphan-test-password";
const PHONE: &str = "5491122334455";

/// `centinela sim` as its own process, and its API.
fn start_sim() -> (Child, Api, String) {
    let (sim, listen, _) = spawn_until(
        &["sim", "--listen", "127.0.0.1:0"],
        &[],
        "simulator serving",
    );
    let wa_url = format!("http://{listen}/sim/wa/");
    (sim, Api::new(&format!("http://{listen}")), wa_url)
}

/// `centinela serve` on `data`, with `deadman` (e.g. "3s", "0s").
fn start(data: &str, wa_url: &str, deadman: &str) -> (Child, Api) {
    let env = [
        ("CENTINELA_ADMIN_PASSWORD", PASSWORD),
        ("CENTINELA__ENGINE__WA_URL", wa_url),
        ("CENTINELA__ENGINE__DEADMAN", deadman),
        ("CENTINELA__ANTIBAN__CONNECT_DELAY", "0s"),
        ("CENTINELA__ANTIBAN__CONNECT_JITTER_MIN", "0s"),
        ("CENTINELA__ANTIBAN__CONNECT_JITTER_MAX", "0s"),
        ("CENTINELA__ANTIBAN__QUEUE_SPACING", "0s"),
    ];
    let (child, listen, _) = spawn_serve_with(data, &[], &env);
    (child, Api::new(&format!("http://{listen}")))
}

/// A session of a new tenant, scanned and READY: its id, the tenant's
/// token, the events socket, and the simulator's device for it.
async fn paired(api: &Api, sim: &Api) -> (String, String, Ws, String) {
    let admin = api.login("admin", PASSWORD).await;
    let (token, _) = api.tenant_with_user(&admin, "clinic").await;
    let session = api.create_session(&token, None, "desk").await;
    let mut ws = Ws::connect(&api.base, &format!("token={token}")).await;
    api.session_action(&token, &session, "connect").await;
    let qr = ws.until_state(&session, "QR").await;
    let scan = json!({"qr": qr["to"]["code"], "phone": PHONE});
    let r = sim.call("POST", "/sim/scan", Cred::None, Some(scan)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    ws.until_state(&session, "READY").await;
    let device = r.body["device_id"].as_str().expect("device").to_owned();
    (session, token, ws, device)
}

/// Waits (the simulator holds the request, woken by streams closing) up
/// to `ms` for `device` to have `streams` open event streams; whether it
/// got there.
async fn wait_streams(sim: &Api, device: &str, streams: usize, ms: u64) -> bool {
    let path = format!("/sim/devices/{device}/wait?streams={streams}&timeout_ms={ms}");
    let r = sim.call("GET", &path, Cred::None, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["reached"] == true
}

async fn overlaps(sim: &Api) -> Value {
    let r = sim.call("GET", "/sim/overlaps", Cred::None, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

fn signal(child: &Child, sig: &str) {
    let sent = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill {sig}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_takes_its_browsers_along() {
    let _slot = browser_slot().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data").to_string_lossy().into_owned();
    let (mut sim_process, sim, wa_url) = start_sim();
    let (mut serve, api) = start(&data, &wa_url, "0s");
    let (_session, _token, ws, device) = paired(&api, &sim).await;
    drop(ws);
    let browser = chromium_processes_under(dir.path());
    assert!(!browser.is_empty(), "the session's browser runs");
    assert!(
        wait_streams(&sim, &device, 1, 10_000).await,
        "its page is open"
    );

    signal(&serve, "-KILL");
    let _ = serve.wait();
    let killed = Instant::now();
    let left = centinela_engine_webjs::process::wait_exit(&browser, Duration::from_secs(30));
    assert_eq!(left, Vec::<u32>::new(), "the browser died with the service");
    println!("browser gone {:?} after the kill", killed.elapsed());
    assert!(
        wait_streams(&sim, &device, 0, 30_000).await,
        "WhatsApp saw the page go"
    );
    assert_eq!(overlaps(&sim).await["total"], 0);

    let _ = sim_process.kill();
    let _ = sim_process.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_services_pages_leave_whatsapp_and_the_pairing_stays() {
    let _slot = browser_slot().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data").to_string_lossy().into_owned();
    let (mut sim_process, sim, wa_url) = start_sim();
    let (serve, api) = start(&data, &wa_url, "3s");
    let (session, _token, mut ws, device) = paired(&api, &sim).await;
    let browser = chromium_processes_under(dir.path());
    assert!(!browser.is_empty(), "the session's browser runs");
    // While the service pings, the page stays, well past the deadline.
    assert!(
        !wait_streams(&sim, &device, 0, 6_000).await,
        "a pinged page stays on WhatsApp Web"
    );

    signal(&serve, "-STOP");
    let frozen = Instant::now();
    assert!(
        wait_streams(&sim, &device, 0, 60_000).await,
        "the frozen service's page left WhatsApp Web"
    );
    let left_after = frozen.elapsed();
    println!("page left {left_after:?} after SIGSTOP");
    assert!(
        left_after >= Duration::from_secs(1),
        "not before the deadline (3 s after the last ping): {left_after:?}"
    );
    assert!(
        !still_running(&browser).is_empty(),
        "the page left; the browser was not killed"
    );

    // Woken up, the service's next ping finds the page gone: the session is
    // disconnected as a local fault and restored from its profile, no QR.
    signal(&serve, "-CONT");
    let down = ws.until_state(&session, "DISCONNECTED").await;
    assert_eq!(down["to"]["reason"], "engine_error", "{down}");
    let mut states = Vec::new();
    loop {
        let t = ws
            .next(|v| v["type"] == "transition" && v["session_id"] == session.as_str())
            .await;
        let state = t["to"]["state"].as_str().unwrap_or_default().to_owned();
        states.push(state.clone());
        if state == "READY" {
            break;
        }
    }
    assert!(
        !states.iter().any(|s| s == "QR"),
        "restored without a QR: {states:?}"
    );
    assert!(
        wait_streams(&sim, &device, 1, 10_000).await,
        "one page again"
    );
    assert_eq!(overlaps(&sim).await["total"], 0, "never two pages at once");

    drop(ws);
    assert!(terminate(serve).success());
    let _ = sim_process.kill();
    let _ = sim_process.wait();
    assert!(
        chromium_processes_under(dir.path()).is_empty(),
        "no Chromium left"
    );
}

/// Copies a stopped browser's profile (regular files; Chromium's singleton
/// symlinks are left behind, as a new launch clears them anyway).
fn copy_profile(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("profile dir");
    for entry in std::fs::read_dir(from).expect("profile") {
        let entry = entry.expect("entry");
        let kind = entry.file_type().expect("file type");
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_profile(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_on_one_pairing_are_an_overlap_and_a_restart_is_not() {
    let _slot = browser_slot().await;
    let sim = Sim::start(Duration::from_secs(20)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = engine_config(dir.path(), &sim.wa_url());
    let c = Centinela::start(config.clone()).await;
    let mut rx = c.bus.subscribe();
    let first = ready_session(&c, &sim, &mut rx, "clinic", PHONE).await;
    let copy = c.create("annex").await;
    let device = sim.device_of(PHONE).await.expect("the paired device");
    let wait = |overlaps: u64, ms: u64| {
        format!("/sim/devices/{device}/wait?overlaps={overlaps}&timeout_ms={ms}")
    };
    // One session, heard for a few heartbeats (one a second): no overlap.
    let alone = sim.get(&wait(1, 5_000)).await;
    assert_eq!(alone["reached"], false, "one page is no overlap: {alone}");
    assert_eq!(alone["streams"], 1, "{alone}");
    c.stop().await;

    // A restart: the old page is gone before the new one starts.
    let profiles = dir.path().join("profiles");
    copy_profile(
        &profiles.join(first.as_str()),
        &profiles.join(copy.as_str()),
    );
    let c = Centinela::start(config).await;
    let mut rx = c.bus.subscribe();
    wait_for(&mut rx, &first, "READY").await;
    let restarted = sim.get(&wait(1, 5_000)).await;
    assert_eq!(
        restarted["reached"], false,
        "a restart is no overlap: {restarted}"
    );
    assert_eq!(restarted["streams"], 1, "{restarted}");
    assert_eq!(sim.get("/sim/overlaps").await["total"], 0);

    // A second browser on a copy of the pairing: two live pages of one
    // device, what fleet mode must never do.
    c.connect(&copy).await;
    let two = sim.get(&wait(1, 60_000)).await;
    assert_eq!(two["reached"], true, "the simulator saw both pages: {two}");
    let all = sim.get("/sim/overlaps").await;
    assert!(all["total"].as_u64() >= Some(1), "{all}");
    assert!(all["devices"][&device].as_u64() >= Some(1), "{all}");

    c.stop().await;
    assert!(
        chromium_processes_under(dir.path()).is_empty(),
        "no Chromium left"
    );
}

//! A pairing survives a kill of everything: the moment READY is reported
//! (stricter than "2 s after READY") the service and every browser it
//! started get SIGKILL at once (a container kill), and the
//! restarted service brings the session back READY without a QR. The
//! simulator runs as its own process (it is WhatsApp: it does not die with
//! us); real Chromium, real engine.

mod common;

use common::api::{Api, Cred, Ws};
use common::browser::{browser_slot, chromium_processes_under};
use common::proc::{spawn_serve_grouped, spawn_until, terminate};
use serde_json::json;

const PASSWORD: &str = "durable-test-password";

fn start(data: &str, wa_url: &str, delay: &str) -> (std::process::Child, Api) {
    let env = [
        ("CENTINELA_ADMIN_PASSWORD", PASSWORD),
        ("CENTINELA__ENGINE__WA_URL", wa_url),
        ("CENTINELA__ANTIBAN__CONNECT_DELAY", delay),
        ("CENTINELA__ANTIBAN__CONNECT_JITTER_MIN", "0s"),
        ("CENTINELA__ANTIBAN__CONNECT_JITTER_MAX", "0s"),
        ("CENTINELA__ANTIBAN__QUEUE_SPACING", "0s"),
    ];
    let (child, listen) = spawn_serve_grouped(data, &env);
    (child, Api::new(&format!("http://{listen}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_of_the_whole_process_group_at_ready_keeps_the_pairing() {
    let _slot = browser_slot().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data").to_string_lossy().into_owned();
    let (mut sim, sim_listen, _) = spawn_until(
        &["sim", "--listen", "127.0.0.1:0"],
        &[],
        "simulator serving",
    );
    let sim_api = Api::new(&format!("http://{sim_listen}"));
    let wa_url = format!("http://{sim_listen}/sim/wa/");

    let (serve, api) = start(&data, &wa_url, "0s");
    let admin = api.login("admin", PASSWORD).await;
    let (token, _) = api.tenant_with_user(&admin, "clinic").await;
    let session = api.create_session(&token, None, "desk").await;
    let mut ws = Ws::connect(&api.base, &format!("token={token}")).await;
    api.session_action(&token, &session, "connect").await;
    let qr = ws.until_state(&session, "QR").await;
    let r = sim_api
        .call(
            "POST",
            "/sim/scan",
            Cred::None,
            Some(json!({"qr": qr["to"]["code"], "phone": "5491122334455"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    ws.until_state(&session, "READY").await;
    drop(ws);

    // At READY itself, stricter than the 2 s after it.
    let group = format!("-{}", serve.id());
    let killed = std::process::Command::new("kill")
        .args(["-KILL", "--", &group])
        .status()
        .expect("kill");
    assert!(killed.success());
    // A container kill takes every process, including any browser process
    // that left the group.
    for pid in chromium_processes_under(dir.path()) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let mut serve = serve;
    let _ = serve.wait();

    let (serve, api) = start(&data, &wa_url, "0s");
    let token = api.login("clinic-user", "tenant-password-1").await;
    let mut ws = Ws::connect(&api.base, &format!("token={token}")).await;
    // Nobody scans now: READY can only come from the pairing on disk (a
    // lost one shows a QR and waits for a scan that never comes).
    // (The restore may finish before the slow debug-build login does.)
    if api.session(&token, &session).await["state"] != "READY" {
        let ready = ws.until_state(&session, "READY").await;
        assert_eq!(ready["from"]["state"], "AUTHENTICATED", "{ready}");
    }
    // The engine says when the pairing is safe on disk: READY, then its
    // page's writes committed.
    let view = api.session(&token, &session).await;
    let durable_at = match view["pairing_durable_at"].as_str() {
        Some(at) => at.to_owned(),
        None => ws
            .next(|e| e["type"] == "pairing_durable" && e["session_id"] == session.as_str())
            .await["at"]
            .as_str()
            .expect("a time")
            .to_owned(),
    };
    let view = api.session(&token, &session).await;
    assert_eq!(view["pairing_durable_at"], durable_at.as_str(), "{view}");
    assert!(
        durable_at.as_str() >= view["since"].as_str().expect("since"),
        "after READY: {view}"
    );
    let devices = sim_api.call("GET", "/sim/devices", Cred::None, None).await;
    let devices = devices.body.as_array().expect("devices").clone();
    assert_eq!(
        devices.len(),
        1,
        "the same browser identity came back: {devices:?}"
    );
    assert_eq!(devices[0]["state"], "CONNECTED");
    assert_eq!(devices[0]["phone"], "5491122334455");

    assert!(terminate(serve).success());
    let _ = sim.kill();
    let _ = sim.wait();
    assert!(
        chromium_processes_under(dir.path()).is_empty(),
        "no Chromium left"
    );
}

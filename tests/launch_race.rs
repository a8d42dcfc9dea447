//! No browser left behind, even mid-launch: a SIGTERM 100, 300 or 1,000 ms
//! after a connect (or a restore) started, and a delete of a session whose
//! browser is still launching, leave no Chromium of ours running — checked
//! in the process table by the profile path, within 5 s. The service runs as
//! the `centinela` binary, the simulator as its own process.

mod common;

use common::api::{Api, Cred, Ws};
use common::browser::{browser_slot, chromium_processes_under};
use common::proc::{spawn_serve_with, spawn_until, terminate};
use std::path::Path;
use std::time::{Duration, Instant};

const PASSWORD: &str = "launch-race-password";

fn start(data: &str, wa_url: &str) -> (std::process::Child, Api) {
    let env = [
        ("CENTINELA_ADMIN_PASSWORD", PASSWORD),
        ("CENTINELA__ENGINE__WA_URL", wa_url),
        ("CENTINELA__ANTIBAN__CONNECT_DELAY", "0s"),
        ("CENTINELA__ANTIBAN__CONNECT_JITTER_MIN", "0s"),
        ("CENTINELA__ANTIBAN__CONNECT_JITTER_MAX", "0s"),
        ("CENTINELA__ANTIBAN__QUEUE_SPACING", "0s"),
        ("CENTINELA__ANTIBAN__GLOBAL_ATTEMPTS_PER_HOUR", "100"),
        ("CENTINELA__ANTIBAN__TENANT_ATTEMPTS_PER_DAY", "100"),
    ];
    let (child, listen, _) = spawn_serve_with(data, &[], &env);
    (child, Api::new(&format!("http://{listen}")))
}

/// Polls the process table until no Chromium names `dir` (5 s at most);
/// returns the command lines of what is left.
fn none_left_within_5s(dir: &Path) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = chromium_processes_under(dir);
        if left.is_empty() || Instant::now() > deadline {
            return left
                .iter()
                .map(|p| {
                    let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                    format!("{p}: {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
                })
                .collect();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_or_a_delete_racing_a_launch_leaves_no_browser() {
    let _slot = browser_slot().await;
    let (mut sim, sim_listen, _) = spawn_until(
        &["sim", "--listen", "127.0.0.1:0"],
        &[],
        "simulator serving",
    );
    let wa_url = format!("http://{sim_listen}/sim/wa/");

    // SIGTERM at three moments of a connect: before, while and after the
    // browser process starts.
    for delay_ms in [100u64, 300, 1000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data").to_string_lossy().into_owned();
        let (serve, api) = start(&data, &wa_url);
        let admin = api.login("admin", PASSWORD).await;
        let (token, _) = api.tenant_with_user(&admin, "clinic").await;
        let session = api.create_session(&token, None, "desk").await;
        let r = api.session_action(&token, &session, "connect").await;
        assert_eq!(r.status, 202, "{}", r.text);
        // The scenario's moment, not a wait for a state.
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        assert!(terminate(serve).success(), "clean exit at {delay_ms} ms");
        let left = none_left_within_5s(dir.path());
        assert!(
            left.is_empty(),
            "SIGTERM {delay_ms} ms into a connect left {left:?}"
        );
    }

    // A restore: a session left running is restored at start; SIGTERM
    // while it launches.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data").to_string_lossy().into_owned();
    let (serve, api) = start(&data, &wa_url);
    let admin = api.login("admin", PASSWORD).await;
    let (token, _) = api.tenant_with_user(&admin, "clinic").await;
    let session = api.create_session(&token, None, "desk").await;
    let mut ws = Ws::connect(&api.base, &format!("token={token}")).await;
    api.session_action(&token, &session, "connect").await;
    ws.until_state(&session, "QR").await;
    drop(ws);
    // Killed hard, so the session is still wanted running: the next start
    // restores it.
    let mut serve = serve;
    let _ = serve.kill();
    let _ = serve.wait();
    for pid in chromium_processes_under(dir.path()) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let (serve, _api) = start(&data, &wa_url);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(terminate(serve).success());
    let left = none_left_within_5s(dir.path());
    assert!(left.is_empty(), "SIGTERM during a restore left {left:?}");

    // A delete while the browser is still launching.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data").to_string_lossy().into_owned();
    let (serve, api) = start(&data, &wa_url);
    let admin = api.login("admin", PASSWORD).await;
    let (token, _) = api.tenant_with_user(&admin, "clinic").await;
    let session = api.create_session(&token, None, "desk").await;
    api.session_action(&token, &session, "connect").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/sessions/{session}"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    let left = none_left_within_5s(dir.path());
    assert!(left.is_empty(), "a delete mid-launch left {left:?}");
    let r = api
        .call(
            "GET",
            &format!("/api/v1/sessions/{session}"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "deleted: {}", r.text);
    assert!(terminate(serve).success());

    let _ = sim.kill();
    let _ = sim.wait();
}

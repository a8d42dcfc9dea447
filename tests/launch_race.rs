//! No browser left behind, even mid-launch: a SIGTERM before, during and
//! right after a connect's launch (or during a restore), and a delete of a
//! session whose browser is still launching, leave no Chromium of ours
//! running — checked in the process table by the profile path the moment
//! the service has exited or the delete has answered. The service runs as
//! the `centinela` binary, the simulator as its own process.

mod common;

use common::api::{Api, Cred, Ws};
use common::browser::{browser_slot, chromium_processes_under};
use common::proc::{spawn_serve_with, spawn_until, terminate};
use std::path::Path;

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

/// What is left of our browsers, as command lines. Checked once, when the
/// service has exited or the delete has answered: both wait for the session
/// to have killed what its launch started.
fn browsers_left(dir: &Path) -> Vec<String> {
    chromium_processes_under(dir)
        .iter()
        .map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            format!("{p}: {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
        })
        .collect()
}

/// A fresh service with a tenant user, one session, and that user's
/// WebSocket.
async fn service(
    wa_url: &str,
) -> (
    tempfile::TempDir,
    String,
    std::process::Child,
    Api,
    String,
    String,
    Ws,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data").to_string_lossy().into_owned();
    let (serve, api) = start(&data, wa_url);
    let admin = api.login("admin", PASSWORD).await;
    let (token, _) = api.tenant_with_user(&admin, "clinic").await;
    let session = api.create_session(&token, None, "desk").await;
    let ws = Ws::connect(&api.base, &format!("token={token}")).await;
    (dir, data, serve, api, token, session, ws)
}

/// The moment of a connect at which the service is stopped.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// The connect was accepted; the launch has not begun.
    Accepted,
    /// CONNECTING: the driver's launch has just begun.
    Launching,
    /// QR: the launch has just handed its browser to the session.
    Launched,
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

    // SIGTERM before, while and right after the browser starts.
    for moment in [Moment::Accepted, Moment::Launching, Moment::Launched] {
        let (dir, _data, serve, api, token, session, mut ws) = service(&wa_url).await;
        let r = api.session_action(&token, &session, "connect").await;
        assert_eq!(r.status, 202, "{}", r.text);
        match moment {
            Moment::Accepted => {}
            Moment::Launching => drop(ws.until_state(&session, "CONNECTING").await),
            Moment::Launched => drop(ws.until_state(&session, "QR").await),
        }
        assert!(terminate(serve).success(), "clean exit at {moment:?}");
        let left = browsers_left(dir.path());
        assert!(left.is_empty(), "SIGTERM at {moment:?} left {left:?}");
    }

    // A restore: a session left running is restored at start; SIGTERM as
    // soon as the service listens, while it launches.
    let (dir, data, serve, api, token, session, mut ws) = service(&wa_url).await;
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
    assert!(terminate(serve).success());
    let left = browsers_left(dir.path());
    assert!(left.is_empty(), "SIGTERM during a restore left {left:?}");

    // A delete while the browser is launching.
    let (dir, _data, serve, api, token, session, mut ws) = service(&wa_url).await;
    api.session_action(&token, &session, "connect").await;
    ws.until_state(&session, "CONNECTING").await;
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/sessions/{session}"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    let left = browsers_left(dir.path());
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

//! The `centinela` binary as a user runs it: version, config printing,
//! config errors, the data-dir lock between two processes, and SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_centinela");

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run centinela")
}

#[test]
fn version_is_printed() {
    let out = run(&["--version"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
}

#[test]
fn config_prints_the_effective_values_with_secrets_masked() {
    let secret = "s".repeat(40);
    let out = run(
        &["config"],
        &[
            ("CENTINELA__ANTIBAN__CONNECT_DELAY", "5s"),
            ("CENTINELA__AUTH__JWT_SECRET", &secret),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("connect_delay = \"5s\""), "{text}");
    assert!(text.contains("global_attempts_per_hour = 3"), "{text}");
    assert!(!text.contains(&secret), "secret leaked: {text}");
    assert!(text.contains("jwt_secret = \"********\""), "{text}");
}

#[test]
fn a_bad_value_stops_startup_naming_key_and_value() {
    let out = run(
        &["serve", "--data", "/nonexistent-centinela"],
        &[("CENTINELA__ANTIBAN__MAX_LIVE_SESSIONS", "0")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("antiban.max_live_sessions = 0"), "{err}");
}

#[test]
fn an_unknown_key_in_a_config_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[engine]\nchromium = \"/bin/x\"\n").expect("write");
    let path = file.to_string_lossy().into_owned();
    let out = run(&["--config", &path, "config"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("engine.chromium"), "{err}");
}

/// Starts `serve` and waits (on its log, not a sleep) until it listens.
fn spawn_serve(data: &str) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data",
            data,
        ])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["fields"]["message"] == "centinela serving" {
            let listen = v["fields"]["listen"]
                .as_str()
                .expect("listen field")
                .to_owned();
            // Keep draining stderr so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return (child, listen);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("serve did not report listening");
}

#[test]
fn a_second_process_on_the_same_data_dir_gets_a_clear_error_and_sigterm_is_graceful() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_string_lossy().into_owned();
    let (mut first, listen) = spawn_serve(&data);
    assert!(listen.starts_with("127.0.0.1:"), "{listen}");

    let second = run(&["serve", "--listen", "127.0.0.1:0", "--data", &data], &[]);
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by another Centinela process"), "{err}");

    let pid = first.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(first.wait());
    });
    let status = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(status) => status.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("serve did not exit within 60 s of SIGTERM");
        }
    };
    assert!(status.success(), "graceful exit: {status:?}");
}

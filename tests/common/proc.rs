//! Running the `centinela` binary as a user does: spawn it, wait on its log
//! (never a sleep) until it listens, stop it with SIGTERM.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_centinela");

/// Starts `serve` and waits (on its log, not a sleep) until it listens.
/// Returns the child, its address and the stderr lines before that.
pub fn spawn_serve_with(
    data: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Child, String, Vec<String>) {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data", data];
    args.extend_from_slice(extra);
    spawn_until(&args, env, "centinela serving")
}

/// Runs `centinela --log-format json ARGS` until it logs a message starting
/// with `ready` (with a `listen` field); returns the child, that address and
/// the stderr lines before.
pub fn spawn_until(
    args: &[&str],
    env: &[(&str, &str)],
    ready: &str,
) -> (Child, String, Vec<String>) {
    spawn_with(args, env, ready, false)
}

/// [`spawn_serve_with`] in a process group of its own (its pid is the
/// group's id), so a test can kill the service and every browser it started
/// at once, as a container kill does.
pub fn spawn_serve_grouped(data: &str, env: &[(&str, &str)]) -> (Child, String) {
    let args = ["serve", "--listen", "127.0.0.1:0", "--data", data];
    let (child, listen, _) = spawn_with(&args, env, "centinela serving", true);
    (child, listen)
}

/// [`spawn_serve_with`] with the process's address space capped at
/// `kib` KiB (`ulimit -v`), so a test sees an allocation that runs away
/// end the process instead of the machine's memory.
pub fn spawn_serve_capped(
    data: &str,
    env: &[(&str, &str)],
    kib: u64,
) -> (Child, String, Vec<String>) {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", &format!("ulimit -v {kib} && exec \"$0\" \"$@\""), BIN]);
    let args = ["serve", "--listen", "127.0.0.1:0", "--data", data];
    spawn_command(cmd, &args, env, "centinela serving")
}

fn spawn_with(
    args: &[&str],
    env: &[(&str, &str)],
    ready: &str,
    own_group: bool,
) -> (Child, String, Vec<String>) {
    let mut cmd = Command::new(BIN);
    if own_group {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    spawn_command(cmd, args, env, ready)
}

/// Runs `cmd --log-format json ARGS` until it logs `ready` (see
/// [`spawn_until`]).
fn spawn_command(
    cmd: Command,
    args: &[&str],
    env: &[(&str, &str)],
    ready: &str,
) -> (Child, String, Vec<String>) {
    spawn_command_tee(cmd, args, env, ready, None)
}

/// `serve` (in a process group of its own when `own_group`), its log lines
/// after it listens sent to the answered receiver: a test waits on a line
/// (an event the service logs) instead of on time.
pub fn spawn_serve_logged(
    data: &str,
    env: &[(&str, &str)],
    own_group: bool,
) -> (Child, String, std::sync::mpsc::Receiver<String>) {
    let mut cmd = Command::new(BIN);
    if own_group {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let args = ["serve", "--listen", "127.0.0.1:0", "--data", data];
    let (child, listen, _) = spawn_command_tee(cmd, &args, env, "centinela serving", Some(tx));
    (child, listen, rx)
}

/// Waits up to `wait` for a log line from [`spawn_serve_logged`] whose
/// message starts with `message` and whose fields `also` accepts; answers
/// the line as JSON.
pub fn until_logged(
    lines: &std::sync::mpsc::Receiver<String>,
    message: &str,
    also: impl Fn(&serde_json::Value) -> bool,
    wait: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line {message:?} within {wait:?}"));
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(message))
            && also(&v["fields"])
        {
            return v;
        }
    }
}

fn spawn_command_tee(
    mut cmd: Command,
    args: &[&str],
    env: &[(&str, &str)],
    ready: &str,
    tee: Option<std::sync::mpsc::Sender<String>>,
) -> (Child, String, Vec<String>) {
    cmd.args(["--log-format", "json"])
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("CENTINELA_ADMIN_USER")
        .env_remove("CENTINELA_ADMIN_PASSWORD")
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        seen.push(line.clone());
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(ready))
        {
            let listen = v["fields"]["listen"]
                .as_str()
                .expect("listen field")
                .to_owned();
            // Keep draining stderr so the child never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    if let Some(tee) = &tee {
                        let _ = tee.send(line);
                    }
                }
            });
            return (child, listen, seen);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("serve did not report listening: {seen:#?}");
}

/// Runs `centinela ARGS` expecting it to exit by itself within a minute (one
/// that starts serving instead is killed, and the test fails).
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn centinela");
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("centinela {args:?} did not exit within 60 s");
        }
    }
}

pub fn spawn_serve(data: &str) -> (Child, String) {
    let (child, listen, _) = spawn_serve_with(data, &[], &[]);
    (child, listen)
}

/// SIGTERM, then the exit status (within a minute).
pub fn terminate(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(status) => status.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("serve did not exit within 60 s of SIGTERM");
        }
    }
}

/// Installs Debian's wrk (the benches' load generator) when missing.
pub fn ensure_wrk() {
    if Command::new("wrk").arg("-v").output().is_ok() {
        return;
    }
    let ok = Command::new("sh")
        .args([
            "-c",
            "apt-get update >/dev/null && apt-get install -y wrk >/dev/null",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "wrk is needed: apt-get install -y wrk");
}

/// What wrk measured: requests per second and latency percentiles, as
/// wrk printed them (`"1.23ms"`), and the non-2xx count.
#[derive(Debug, Clone)]
pub struct WrkRun {
    pub requests_per_sec: String,
    pub p50: String,
    pub p99: String,
    pub non_2xx: String,
}

/// Runs wrk (`-t1 -c<connections> -d<secs>s --latency`) with a Lua
/// `script` against `url`; blocking.
pub fn wrk(url: &str, script: &std::path::Path, connections: u32, secs: u32) -> WrkRun {
    ensure_wrk();
    let out = Command::new("wrk")
        .args([
            "-t1".to_owned(),
            format!("-c{connections}"),
            format!("-d{secs}s"),
            "--latency".to_owned(),
            "-s".to_owned(),
        ])
        .arg(script)
        .arg(url)
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l[prefix.len()..].split_whitespace().next())
            .unwrap_or("0")
            .to_owned()
    };
    WrkRun {
        requests_per_sec: field("Requests/sec:"),
        p50: field("50%"),
        p99: field("99%"),
        non_2xx: field("Non-2xx or 3xx responses:"),
    }
}

/// A wrk script sending `method path` with a bearer token (and a JSON body).
pub fn wrk_script(
    dir: &std::path::Path,
    name: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> std::path::PathBuf {
    let mut lua = format!(
        "wrk.method = \"{method}\"\nwrk.path = \"{path}\"\nwrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"
    );
    if let Some(body) = body {
        lua.push_str(&format!(
            "wrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ));
    }
    let script = dir.join(name);
    std::fs::write(&script, lua).expect("wrk script");
    script
}

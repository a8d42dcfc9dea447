//! The `centinela` binary as a user runs it: version, config printing,
//! config errors, the data-dir lock between two processes, and SIGTERM.

mod common;

use common::proc::{spawn_serve, spawn_serve_with, terminate};

use std::process::{Command, Output, Stdio};

use common::proc::BIN;

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
fn fleet_import_without_a_fleet_to_import_into_says_so_and_touches_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let out = run(
        &["fleet", "import", "--data", data.to_str().expect("utf-8")],
        &[("CENTINELA__FLEET__DATABASE_URL", "")],
    );
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("[fleet] database_url"), "{text}");
    assert!(!data.exists(), "no store was made");
}

#[test]
fn config_prints_the_effective_values_with_secrets_masked() {
    let secret = "s".repeat(40);
    let out = run(
        &["config"],
        &[
            ("CENTINELA__ANTIBAN__CONNECT_DELAY", "5s"),
            ("CENTINELA__AUTH__JWT_SECRET", &secret),
            ("CENTINELA__STORAGE__SECRET_KEY", &"ab".repeat(32)),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&"ab".repeat(32)));
    assert!(String::from_utf8_lossy(&out.stdout).contains("secret_key = \"********\""));
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

/// A blocking HTTP call with a JSON body (the CLI tests have no runtime).
fn http(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        centinela_actors::messaging::webhooks::install_tls_provider();
        let client = reqwest::Client::new();
        let mut req = client.request(
            reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
            url,
        );
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    })
}

async fn http_async(method: &str, url: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    centinela_actors::messaging::webhooks::install_tls_provider();
    let client = reqwest::Client::new();
    let mut req = client.request(
        reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
        url,
    );
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

fn login(listen: &str, user: &str, password: &str) -> (u16, serde_json::Value) {
    http(
        "POST",
        &format!("http://{listen}/auth/login"),
        None,
        Some(serde_json::json!({"username": user, "password": password})),
    )
}

#[test]
fn the_first_start_prints_a_random_admin_password_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_string_lossy().into_owned();
    let (child, listen, lines) = spawn_serve_with(&data, &[], &[]);
    let line = lines
        .iter()
        .find(|l| l.contains("created the first admin"))
        .expect("the password is printed");
    let password = line
        .split("password \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("password in quotes");
    assert!(password.len() >= 16, "{line}");
    let (status, body) = login(&listen, "admin", password);
    assert_eq!(status, 200, "{body}");
    assert!(terminate(child).success());
    let (child, _, lines) = spawn_serve_with(&data, &[], &[]);
    assert!(
        !lines.iter().any(|l| l.contains("created the first admin")),
        "only once"
    );
    assert!(terminate(child).success());
}

#[test]
fn the_first_admin_can_come_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_string_lossy().into_owned();
    let env = [
        ("CENTINELA_ADMIN_USER", "boss"),
        ("CENTINELA_ADMIN_PASSWORD", "from-the-environment"),
    ];
    let (child, listen, lines) = spawn_serve_with(&data, &[], &env);
    assert!(
        !lines.iter().any(|l| l.contains("password")),
        "nothing printed"
    );
    assert_eq!(login(&listen, "boss", "from-the-environment").0, 200);
    assert_eq!(login(&listen, "admin", "from-the-environment").0, 401);
    assert!(terminate(child).success());
}

#[test]
fn user_add_reads_the_password_from_stdin() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_string_lossy().into_owned();
    let mut child = Command::new(BIN)
        .args([
            "user",
            "add",
            "--username",
            "ana",
            "--tenant",
            "clinic",
            "--data",
            &data,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"ana-password-123\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{out:?}");
    let weak = Command::new(BIN)
        .args([
            "user",
            "add",
            "--username",
            "bob",
            "--admin",
            "--data",
            &data,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!weak.status.success(), "an empty password is refused");
    let env = [("CENTINELA_ADMIN_PASSWORD", "an-admin-password")];
    let (child, listen, _) = spawn_serve_with(&data, &[], &env);
    let (status, body) = login(&listen, "ana", "ana-password-123");
    assert_eq!(status, 200);
    assert_eq!(
        (
            body["user"]["role"].clone(),
            body["user"]["tenant_id"].clone()
        ),
        (serde_json::json!("tenant"), serde_json::json!("clinic"))
    );
    assert!(terminate(child).success());
}

#[test]
fn demo_serve_leaves_no_chromium_behind_after_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_string_lossy().into_owned();
    let env = [("CENTINELA_ADMIN_PASSWORD", "an-admin-password")];
    let (child, listen, _) = spawn_serve_with(&data, &["--demo"], &env);
    let (_, body) = login(&listen, "admin", "an-admin-password");
    let token = body["token"].as_str().expect("token").to_owned();
    let base = format!("http://{listen}");
    let (status, s) = http(
        "POST",
        &format!("{base}/api/v1/sessions"),
        Some(&token),
        Some(serde_json::json!({"tenant_id": "demo", "name": "desk"})),
    );
    assert_eq!(status, 201, "{s}");
    let id = s["id"].as_str().expect("id").to_owned();
    let profile = dir.path().join("profiles").join(&id);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut ws = common::api::Ws::connect(&base, &format!("token={token}")).await;
        let (status, _) = http_async(
            "POST",
            &format!("{base}/api/v1/sessions/{id}/connect"),
            Some(&token),
        )
        .await;
        assert_eq!(status, 202);
        // A QR means the session's Chromium runs.
        ws.until_state(&id, "QR").await;
    });
    assert!(terminate(child).success());
    let needle = profile.to_string_lossy().into_owned();
    let left: Vec<String> = std::fs::read_dir("/proc")
        .expect("proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let zombie = stat.rfind(')').and_then(|i| stat.get(i + 2..i + 3)) == Some("Z");
            let cmd = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).ok()?)
                .into_owned();
            (!zombie && cmd.contains(&needle)).then_some(cmd)
        })
        .collect();
    assert!(
        left.is_empty(),
        "Chromium left after serve exited: {left:?}"
    );
}

#[test]
fn a_second_process_on_the_same_data_dir_gets_a_clear_error_and_sigterm_is_graceful() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_string_lossy().into_owned();
    let (first, listen) = spawn_serve(&data);
    assert!(listen.starts_with("127.0.0.1:"), "{listen}");

    let second = run(&["serve", "--listen", "127.0.0.1:0", "--data", &data], &[]);
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by another Centinela process"), "{err}");

    let status = terminate(first);
    assert!(status.success(), "graceful exit: {status:?}");
}

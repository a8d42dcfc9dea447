//! `serve --demo` keeps its simulator to itself: the control API (which can
//! pair, read and ban any tenant's session) is refused on an address other
//! than loopback unless `--demo-public`, which then wants the token printed
//! at start; every `/sim` route answers only to this server's own `Host`
//! (DNS rebinding), with the API's security headers and body limit. And the
//! demo's relaxed limits are defaults under the file and the environment,
//! which `centinela config --demo` prints.
//!
//! In-process servers (`centinela::run`) where the wiring is the point, the
//! binary where the command line is.

mod common;

use centinela::{AdminBootstrap, Demo, RunError, Services};
use centinela_web::sim::{ControlAccess, Simulator};
use common::api::Res;
use common::proc::{run_to_exit, spawn_serve_with, spawn_until, terminate};
use common::{config_for, start_on, Server};
use serde_json::{json, Value};
use std::time::Duration;

const PASSWORD: &str = "an-admin-password";
const TOKEN: &str = "a-control-token-of-the-right-length-32";
/// A small body limit, so going over it is cheap.
const LIMIT: usize = 4096;

/// Every control route (what the phone and WhatsApp do), with a body that
/// would be accepted.
const CONTROL: &[(&str, &str)] = &[
    ("GET", "/sim/devices"),
    ("POST", "/sim/scan"),
    ("POST", "/sim/pair"),
    ("POST", "/sim/unregistered"),
    ("POST", "/sim/devices/d1/logout"),
    ("POST", "/sim/devices/d1/conflict"),
    ("POST", "/sim/devices/d1/tos-block"),
    ("POST", "/sim/devices/d1/smb-tos-block"),
    ("POST", "/sim/devices/d1/proxy-block"),
    ("POST", "/sim/devices/d1/rotate-qr"),
    ("POST", "/sim/devices/d1/incoming"),
    ("GET", "/sim/devices/d1/sent"),
    ("POST", "/sim/devices/d1/ack"),
    ("GET", "/sim/auth-probe/log"),
];

/// A demo in-process on `127.0.0.1:0` (no engine: these tests never
/// connect), and its data dir.
async fn demo(control: ControlAccess) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config_for(&dir.path().join("data"));
    config.server.max_body_bytes = LIMIT;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let services = Services {
        demo: Some(Demo {
            simulator: Simulator::new(Duration::from_secs(20)),
            control,
        }),
        admin: AdminBootstrap::Given {
            username: "admin".into(),
            password: PASSWORD.into(),
        },
        ..Services::default()
    };
    (start_on(listener, config, services), dir)
}

/// One request with these headers (a JSON body when given).
async fn call(method: &str, url: &str, headers: &[(&str, &str)], body: Option<String>) -> Res {
    centinela_actors::messaging::webhooks::install_tls_provider();
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client.request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Res {
        status,
        headers,
        body,
        text,
    }
}

fn code(r: &Res) -> &str {
    r.body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn the_simulator_routes_carry_the_apis_security_headers() {
    let (server, _dir) = demo(ControlAccess::Open).await;
    let api = call("GET", &server.url("/health"), &[], None).await;
    assert_eq!(api.status, 200);
    let names = [
        "x-frame-options",
        "x-content-type-options",
        "referrer-policy",
        "content-security-policy",
        "permissions-policy",
    ];
    let hello = json!({"device_id": "d1", "paired_phone": null}).to_string();
    for (method, path, body) in [
        ("GET", "/sim/wa/", None),
        ("GET", "/sim/wa/sim.js", None),
        ("GET", "/sim/wa/sim.css", None),
        ("POST", "/sim/api/hello", Some(hello)),
        ("GET", "/sim/devices", None),
        ("POST", "/sim/devices/nobody/logout", None),
    ] {
        let r = call(method, &server.url(path), &[], body).await;
        assert!(r.status == 200 || path.ends_with("logout"), "{path}: {r:?}");
        for name in names {
            let ours = api.headers.get(name).expect("the API sets it");
            assert_eq!(r.headers.get(name), Some(ours), "{name} on {method} {path}");
        }
    }
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_simulator_routes_have_the_apis_body_limit() {
    let (server, _dir) = demo(ControlAccess::Open).await;
    let qr = |n: usize| json!({"qr": "x".repeat(n), "phone": "5491100000001"}).to_string();
    let login = |n: usize| json!({"username": "u".repeat(n), "password": "p"}).to_string();
    // Over the limit: 413 from the API and from the simulator alike.
    for (path, body) in [
        ("/auth/login", login(LIMIT)),
        ("/sim/scan", qr(LIMIT)),
        (
            "/sim/api/hello",
            json!({"device_id": "x".repeat(LIMIT)}).to_string(),
        ),
    ] {
        let r = call("POST", &server.url(path), &[], Some(body)).await;
        assert_eq!(r.status, 413, "{path}: {r:?}");
        assert_eq!(code(&r), "payload_too_large", "{path}");
    }
    // Under it, the handlers answer.
    let r = call("POST", &server.url("/sim/scan"), &[], Some(qr(LIMIT / 2))).await;
    assert_eq!(r.status, 404, "no device shows that QR: {r:?}");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_simulator_request_for_another_host_is_refused_even_from_loopback() {
    let (server, _dir) = demo(ControlAccess::Open).await;
    let port = server.addr.port().to_string();
    let devices = server.url("/sim/devices");
    let r = call("GET", &devices, &[], None).await;
    assert_eq!(r.status, 200, "loopback needs no token: {r:?}");
    let r = call(
        "GET",
        &devices,
        &[("host", &format!("localhost:{port}"))],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    for host in [
        format!("attacker.example:{port}"),
        format!("127.0.0.1.attacker.example:{port}"),
        "localhost.attacker.example".to_owned(),
    ] {
        for (method, path) in [
            ("GET", "/sim/devices"),
            ("POST", "/sim/devices/d1/tos-block"),
        ] {
            let r = call(method, &server.url(path), &[("host", &host)], None).await;
            assert_eq!(r.status, 403, "{method} {path} for {host}: {r:?}");
            assert_eq!(code(&r), "host_not_allowed");
        }
        // The page and its API too: a rebinding page gets nothing here.
        let r = call("GET", &server.url("/sim/wa/"), &[("host", &host)], None).await;
        assert_eq!(r.status, 403, "the page for {host}");
    }
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_public_demo_wants_its_token_on_every_control_route_only() {
    let (server, _dir) = demo(ControlAccess::Token(TOKEN.into())).await;
    for (method, path) in CONTROL {
        let r = call(method, &server.url(path), &[], None).await;
        assert_eq!(r.status, 401, "{method} {path}: {r:?}");
        assert_eq!(code(&r), "sim_token_required", "{method} {path}");
        let wrong = [("x-sim-token", "a-control-token-of-the-right-length-33")];
        let r = call(method, &server.url(path), &wrong, None).await;
        assert_eq!(r.status, 401, "{method} {path}");
        assert_eq!(code(&r), "sim_token_invalid", "{method} {path}");
        let r = call(method, &server.url(path), &[("x-sim-token", TOKEN)], None).await;
        assert!(r.status != 401 && r.status != 403, "{method} {path}: {r:?}");
    }
    let r = call(
        "GET",
        &server.url("/sim/devices"),
        &[("x-sim-token", TOKEN)],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_array(), "{r:?}");
    // The engine's browser loads the page and talks to its API without one.
    let hello = json!({"device_id": "d1", "paired_phone": null}).to_string();
    assert_eq!(
        call("GET", &server.url("/sim/wa/"), &[], None).await.status,
        200
    );
    let r = call("POST", &server.url("/sim/api/hello"), &[], Some(hello)).await;
    assert_eq!(r.status, 200, "{r:?}");
    // The token does not excuse a foreign Host.
    let port = server.addr.port();
    let evil = format!("attacker.example:{port}");
    let r = call(
        "GET",
        &server.url("/sim/devices"),
        &[("x-sim-token", TOKEN), ("host", &evil)],
        None,
    )
    .await;
    assert_eq!(r.status, 403, "{r:?}");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn run_refuses_an_open_demo_beyond_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let services = Services {
        demo: Some(Demo {
            simulator: Simulator::new(Duration::from_secs(20)),
            control: ControlAccess::Open,
        }),
        ..Services::default()
    };
    let data = dir.path().join("data");
    let result = tokio::time::timeout(
        common::WAIT,
        centinela::run(
            config_for(&data),
            services,
            listener,
            std::future::pending::<()>(),
        ),
    )
    .await
    .expect("refused at once, not served");
    assert!(matches!(result, Err(RunError::Demo(_))), "{result:?}");
    assert!(!data.exists(), "refused before the store is opened");
}

#[test]
fn a_demo_on_every_interface_refuses_to_start_without_demo_public() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data").to_string_lossy().into_owned();
    let env = [("CENTINELA_ADMIN_PASSWORD", PASSWORD)];
    let out = run_to_exit(
        &["serve", "--demo", "--listen", "0.0.0.0:0", "--data", &data],
        &env,
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--demo-public"), "names the flag: {err}");
    assert!(err.contains("0.0.0.0:0"), "names the address: {err}");
    assert!(!dir.path().join("data").exists(), "nothing was started");
    // The same address from the environment, or another interface's.
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let env = [
            ("CENTINELA_ADMIN_PASSWORD", PASSWORD),
            ("CENTINELA__SERVER__LISTEN", listen),
        ];
        let out = run_to_exit(&["serve", "--demo", "--data", &data], &env);
        assert_eq!(out.status.code(), Some(2), "{listen}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--demo-public"));
    }
    // --demo-public means nothing without --demo.
    let out = run_to_exit(&["serve", "--demo-public", "--data", &data], &env);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn a_public_demo_prints_its_token_and_asks_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_string_lossy().into_owned();
    let args = [
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--data",
        &data,
        "--demo",
        "--demo-public",
    ];
    let env = [("CENTINELA_ADMIN_PASSWORD", PASSWORD)];
    let (child, listen, seen) = spawn_until(&args, &env, "centinela serving");
    let token = seen
        .iter()
        .find_map(|l| {
            l.split_once("X-Sim-Token: ")
                .map(|(_, t)| t.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("the token is printed at start: {seen:#?}"));
    assert!(token.len() >= 32, "{token}");
    let port = listen.rsplit(':').next().expect("port").to_owned();
    let url = seen
        .iter()
        .find(|l| l.contains("#sim_token="))
        .unwrap_or_else(|| panic!("the dashboard's address is printed: {seen:#?}"));
    assert!(
        url.contains(&format!("http://127.0.0.1:{port}/#sim_token={token}")),
        "{url}"
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let devices = format!("http://127.0.0.1:{port}/sim/devices");
        let r = call("GET", &devices, &[], None).await;
        assert_eq!((r.status, code(&r)), (401, "sim_token_required"), "{r:?}");
        let r = call("GET", &devices, &[("x-sim-token", &token)], None).await;
        assert_eq!(r.status, 200, "{r:?}");
        let evil = format!("attacker.example:{port}");
        let r = call(
            "GET",
            &devices,
            &[("x-sim-token", &token), ("host", &evil)],
            None,
        )
        .await;
        assert_eq!(r.status, 403, "{r:?}");
    });
    assert!(terminate(child).success());
}

/// A config file relaxing one limit, beside the demo's.
fn config_file(dir: &std::path::Path) -> String {
    let file = dir.join("c.toml");
    std::fs::write(&file, "[antiban]\ntenant_attempts_per_day = 7\n").expect("write");
    file.to_string_lossy().into_owned()
}

#[test]
fn config_demo_prints_the_demo_values_under_the_file_and_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = config_file(dir.path());
    let env = [("CENTINELA__ANTIBAN__GLOBAL_ATTEMPTS_PER_HOUR", "3")];
    let out = run_to_exit(&["--config", &file, "config", "--demo"], &env);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("global_attempts_per_hour = 3\n"),
        "env: {text}"
    );
    assert!(
        text.contains("tenant_attempts_per_day = 7\n"),
        "file: {text}"
    );
    assert!(
        text.contains("cooldown_after_failure = \"1m\""),
        "demo: {text}"
    );
    assert!(text.contains("connect_delay = \"2s\""), "demo: {text}");
    assert!(
        text.contains("wa_url = \"http://127.0.0.1:3012/sim/wa/\""),
        "the simulator: {text}"
    );
    // Without --demo, the standard defaults.
    let out = run_to_exit(&["config"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("connect_delay = \"30s\""), "{text}");
    assert!(
        text.contains("wa_url = \"https://web.whatsapp.com/\""),
        "{text}"
    );
}

#[test]
fn a_running_demo_keeps_the_limits_of_the_file_and_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = config_file(dir.path());
    let data = dir.path().join("data").to_string_lossy().into_owned();
    let env = [
        ("CENTINELA_ADMIN_PASSWORD", PASSWORD),
        ("CENTINELA__ANTIBAN__GLOBAL_ATTEMPTS_PER_HOUR", "3"),
    ];
    let (child, listen, _) = spawn_serve_with(&data, &["--demo", "--config", &file], &env);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let api = common::api::Api::new(&format!("http://{listen}"));
        let token = api.login("admin", PASSWORD).await;
        let r = api
            .call(
                "GET",
                "/api/rate-limit-status?organization_id=demo",
                common::api::Cred::Token(&token),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body["global_limit"], 3, "the environment's: {}", r.text);
        assert_eq!(r.body["daily_limit"], 7, "the file's: {}", r.text);
    });
    assert!(terminate(child).success());
}

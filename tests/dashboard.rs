//! The dashboard end to end, as a person uses it: headless Chromium
//! (chromiumoxide) drives the page served by an in-process `serve --demo`
//! (real webjs engine, real Chromium per session, the bundled simulator).
//! Log in → create a session → connect → the QR appears → scan it from the
//! phone panel → READY without a reload → the transition's log line appears
//! → reload: still READY → disconnect. Asserts on the DOM, never on pixels;
//! saves screenshots under `target/screenshots/`.

mod common;

use centinela::config::{Config, Profile};
use centinela::{engines_for, point_at_simulator, AdminBootstrap, Demo, Services};
use centinela_web::sim::{ControlAccess, Simulator};
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use common::browser::{browser_slot, chromium_processes_under};
use common::{config_for, start_on};
use futures::StreamExt;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

const PASSWORD: &str = "dashboard-pass-1";

async fn eval(page: &Page, js: &str) -> Value {
    let params = EvaluateParams::builder()
        .expression(js)
        .await_promise(true)
        .return_by_value(true)
        .build()
        .expect("evaluate params");
    let res = tokio::time::timeout(Duration::from_secs(60), page.evaluate_expression(params))
        .await
        .expect("evaluation within 60 s")
        .unwrap_or_else(|e| panic!("evaluating {js}: {e}"));
    res.value().cloned().unwrap_or(Value::Null)
}

/// Waits, inside the page, for `cond` (a JS expression) to hold: checked on
/// every DOM mutation, never by sleeping; fails after `secs`.
async fn wait(page: &Page, what: &str, cond: &str, secs: u64) {
    let js = format!(
        "new Promise((resolve) => {{
            const ok = () => {{ try {{ return !!({cond}); }} catch (e) {{ return false; }} }};
            if (ok()) return resolve(true);
            const obs = new MutationObserver(() => {{ if (ok()) {{ obs.disconnect(); resolve(true); }} }});
            obs.observe(document, {{ subtree: true, childList: true, attributes: true, characterData: true }});
            setTimeout(() => {{ obs.disconnect(); resolve(ok()); }}, {ms});
        }})",
        ms = secs * 1000
    );
    assert_eq!(
        eval(page, &js).await,
        Value::Bool(true),
        "waited {secs} s for: {what}"
    );
}

async fn click(page: &Page, selector: &str) {
    let js = format!("(() => {{ const b = document.querySelector({s}); if (!b) return false; b.click(); return true; }})()", s = serde_json::to_string(selector).expect("json"));
    assert_eq!(
        eval(page, &js).await,
        Value::Bool(true),
        "nothing to click at {selector}"
    );
}

async fn fill(page: &Page, selector: &str, value: &str) {
    let js = format!(
        "(() => {{ const i = document.querySelector({s}); if (!i) return false; i.value = {v}; i.dispatchEvent(new Event('input', {{bubbles: true}})); i.dispatchEvent(new Event('change', {{bubbles: true}})); return true; }})()",
        s = serde_json::to_string(selector).expect("json"),
        v = serde_json::to_string(value).expect("json")
    );
    assert_eq!(
        eval(page, &js).await,
        Value::Bool(true),
        "no input at {selector}"
    );
}

async fn screenshot(page: &Page, name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let path = dir.join(name);
    let params = ScreenshotParams::builder()
        .format(CaptureScreenshotFormat::Png)
        .full_page(true)
        .build();
    page.save_screenshot(params, &path)
        .await
        .expect("screenshot");
    path
}

/// The person's browser (headless Chromium with its own profile), and the
/// task pumping its DevTools events.
async fn viewer(profile: &std::path::Path) -> (Browser, tokio::task::JoinHandle<()>) {
    let viewer = BrowserConfig::builder()
        .chrome_executable("/usr/bin/chromium")
        .new_headless_mode()
        .no_sandbox()
        .user_data_dir(profile)
        .window_size(1280, 1000)
        .viewport(None)
        .args([
            "disable-background-networking",
            "disable-component-update",
            "disable-sync",
            "no-first-run",
            "lang=en-US",
        ])
        .build()
        .expect("browser config");
    let (browser, mut handler) = Browser::launch(viewer).await.expect("launch the viewer");
    let pump = tokio::spawn(async move { while let Some(Ok(())) = handler.next().await {} });
    (browser, pump)
}

/// Logs in as the admin on the login form the page shows.
async fn log_in(page: &Page) {
    wait(
        page,
        "the login form",
        "document.querySelector('#login-form')",
        30,
    )
    .await;
    fill(page, "#login-username", "admin").await;
    fill(page, "#login-password", PASSWORD).await;
    click(page, "#login-submit").await;
    wait(
        page,
        "the app after login",
        "!document.querySelector('#app').hidden",
        30,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_links_a_number_from_the_dashboard() {
    let _slot = browser_slot().await;
    // The supervisor log stream's tracing layer, as `main` installs it.
    centinela_web::logstream::install_global();
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut config = Config::defaults_of(Profile::Demo);
    config.storage.data_dir = dir.path().join("data");
    point_at_simulator(&mut config, addr);
    config.antiban.connect_delay = Duration::ZERO;
    let services = Services {
        engines: engines_for(&config),
        demo: Some(Demo {
            simulator: Simulator::new(Duration::from_secs(20)),
            control: ControlAccess::Open,
        }),
        admin: AdminBootstrap::Given {
            username: "admin".into(),
            password: PASSWORD.into(),
        },
        ..Services::default()
    };
    let server = start_on(listener, config, services);

    let (mut browser, pump) = viewer(&dir.path().join("viewer")).await;
    let page = browser
        .new_page(format!("http://{addr}/"))
        .await
        .expect("open the dashboard");
    log_in(&page).await;
    wait(
        &page,
        "the live WebSocket",
        "document.querySelector('#ws-status').dataset.status === 'live'",
        30,
    )
    .await;

    fill(&page, "#new-session-name", "front desk").await;
    fill(&page, "#new-session-tenant", "demo").await;
    click(&page, "#new-session-submit").await;
    let row = "[...document.querySelectorAll('tr[data-session-id]')].find(r => r.textContent.includes('front desk'))";
    wait(&page, "the new row", row, 30).await;
    let id = eval(&page, &format!("{row}.dataset.sessionId"))
        .await
        .as_str()
        .expect("session id")
        .to_owned();
    let row_sel = format!("tr[data-session-id='{id}']");
    assert_eq!(
        eval(
            &page,
            &format!("document.querySelector(\"{row_sel}\").dataset.state")
        )
        .await,
        "DISCONNECTED"
    );

    click(&page, &format!("{row_sel} [data-action='connect']")).await;
    wait(&page, "the QR", "!document.querySelector('#qr-panel').hidden && document.querySelector('#qr-image').src.startsWith('data:image/svg+xml')", 60).await;
    assert_eq!(
        eval(
            &page,
            "document.querySelector('#qr-image').dataset.sessionId"
        )
        .await,
        id.as_str()
    );
    // "Link with phone number instead": the code shows beside the QR, and
    // the simulated phone offers to type it.
    click(&page, "#pairing-code-box summary").await;
    fill(&page, "#pairing-code-phone", "5491122334466").await;
    click(&page, "#pairing-code-submit").await;
    wait(
        &page,
        "the pairing code beside the QR",
        "/[0-9A-Z]{4}-[0-9A-Z]{4}/.test(document.querySelector('#pairing-code-value').textContent)",
        30,
    )
    .await;
    wait(
        &page,
        "the phone panel's type-the-code button",
        "document.querySelector(\"[data-sim-action='pair']\")",
        30,
    )
    .await;
    let shot_qr = screenshot(&page, "01-sessions-with-qr.png").await;

    wait(
        &page,
        "the phone panel's scan button",
        &format!("document.querySelector(\"[data-sim-action='scan'][data-session-id='{id}']\")"),
        30,
    )
    .await;
    click(
        &page,
        &format!("[data-sim-action='scan'][data-session-id='{id}']"),
    )
    .await;
    wait(
        &page,
        "READY without a reload",
        &format!("document.querySelector(\"{row_sel}\").dataset.state === 'READY'"),
        60,
    )
    .await;
    wait(
        &page,
        "the QR panel hidden",
        "document.querySelector('#qr-panel').hidden",
        30,
    )
    .await;
    wait(
        &page,
        "a log line for the transition",
        "[...document.querySelectorAll('#log-lines .log-line')].some(l => l.textContent.includes('session transition') && l.textContent.includes('READY'))",
        30,
    )
    .await;
    // The row shows the ban risk and the day's new-contact budget, and a
    // test message to a new number uses one of it, live.
    let risk_cell = format!("document.querySelector(\"{row_sel} .col-risk\")");
    // Paired just now: day 1 of the warm-up, five (the row shows the full
    // budget of a never-paired number until READY's refresh lands).
    wait(
        &page,
        "the risk badge and an untouched warm-up budget",
        &format!("{risk_cell}.querySelector('.risk-badge.risk-low') && {risk_cell}.querySelector('.budget').dataset.used === '0' && {risk_cell}.querySelector('.budget').dataset.allowance === '5'"),
        30,
    )
    .await;
    fill(&page, "#send-to", "5491155550001").await;
    fill(&page, "#send-text", "hola").await;
    click(&page, "#send-submit").await;
    wait(
        &page,
        "the budget counting the new contact",
        &format!("{risk_cell}.querySelector('.budget').dataset.used === '1'"),
        60,
    )
    .await;
    click(&page, &format!("{row_sel} [data-risk-of]")).await;
    wait(
        &page,
        "why the risk is low",
        "['1 to new contacts', '1 a contactos nuevos'].some(s => document.querySelector('#sessions-message').textContent.includes(s))",
        30,
    )
    .await;
    let shot_ready = screenshot(&page, "02-ready-with-log.png").await;

    // A verification code from the OTP panel: it arrives on the demo
    // phone, and the person types what the phone shows.
    wait(
        &page,
        "the OTP panel offers the READY session",
        &format!("document.querySelector(\"#otp-session option[value='{id}']\")"),
        30,
    )
    .await;
    fill(&page, "#otp-phone", "+54 9 11 2233-4466").await;
    click(&page, "#otp-send-submit").await;
    let arrived = "[...document.querySelectorAll('#phone-devices .device-message')].find(m => /\\d{6} es tu código de verificación/.test(m.textContent))";
    wait(&page, "the code on the demo phone", arrived, 60).await;
    let shown = eval(&page, &format!("{arrived}.textContent"))
        .await
        .as_str()
        .expect("text")
        .to_owned();
    let code: String = shown
        .split(": ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .expect("the code after the recipient")
        .to_owned();
    assert_eq!(code.len(), 6, "{shown}");
    fill(&page, "#otp-code", &code).await;
    click(&page, "#otp-verify-submit").await;
    wait(
        &page,
        "verified",
        "/Verificado|Verified/.test(document.querySelector('#otp-result').textContent)",
        30,
    )
    .await;
    screenshot(&page, "02b-otp-verified.png").await;

    page.reload().await.expect("reload");
    wait(&page, "still READY after a reload", &format!("document.querySelector(\"{row_sel}\") && document.querySelector(\"{row_sel}\").dataset.state === 'READY'"), 60).await;

    click(&page, &format!("{row_sel} [data-action='disconnect']")).await;
    wait(
        &page,
        "DISCONNECTED",
        &format!("document.querySelector(\"{row_sel}\").dataset.state === 'DISCONNECTED'"),
        60,
    )
    .await;
    screenshot(&page, "03-disconnected.png").await;
    assert!(std::fs::metadata(shot_qr).is_ok_and(|m| m.len() > 10_000));
    assert!(std::fs::metadata(shot_ready).is_ok_and(|m| m.len() > 10_000));

    let _ = browser.close().await;
    let _ = browser.wait().await;
    pump.abort();
    server.shutdown().await.expect("shutdown");
    assert!(
        chromium_processes_under(&dir.path().join("data")).is_empty(),
        "no session browser left"
    );
}

/// A public demo (`--demo-public`): the dashboard opened at its plain
/// address cannot drive the simulator and says how to; opened at the
/// printed address, it keeps the token from the fragment (and takes it out
/// of the address bar), and the demo phone's actions carry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_demos_phone_takes_its_token_from_the_printed_address() {
    let _slot = browser_slot().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let token = "public-demo-control-token-for-the-test";
    let simulator = Simulator::new(Duration::from_secs(20));
    let services = Services {
        demo: Some(Demo {
            simulator: simulator.clone(),
            control: ControlAccess::Token(token.into()),
        }),
        admin: AdminBootstrap::Given {
            username: "admin".into(),
            password: PASSWORD.into(),
        },
        ..Services::default()
    };
    let server = start_on(listener, config_for(&dir.path().join("data")), services);
    // A paired device, as a page that said hello with its pairing makes one.
    centinela_actors::messaging::webhooks::install_tls_provider();
    let hello = reqwest::Client::new()
        .post(format!("http://{addr}/sim/api/hello"))
        .json(&serde_json::json!({"device_id": "d1", "paired_phone": "5491100000001"}))
        .send()
        .await
        .expect("hello");
    assert_eq!(hello.status(), 200);

    let (mut browser, pump) = viewer(&dir.path().join("viewer")).await;
    let page = browser
        .new_page(format!("http://{addr}/"))
        .await
        .expect("open the dashboard");
    log_in(&page).await;
    wait(
        &page,
        "the phone panel asking for the printed address",
        "!document.querySelector('#phone-panel').hidden && !document.querySelector('#phone-locked').hidden && document.querySelector('#phone-grid').hidden",
        30,
    )
    .await;

    // The printed address pasted into this tab (the fragment alone changes).
    let printed = centinela::demo_dashboard_url(addr, token);
    let unlocked = "document.querySelector(\"#phone-devices [data-device-id='d1'][data-device-state='CONNECTED']\") && document.querySelector('#phone-locked').hidden && !document.querySelector('#phone-grid').hidden";
    eval(
        &page,
        &format!(
            "location.href = {}",
            serde_json::to_string(&printed).expect("json")
        ),
    )
    .await;
    wait(&page, "the demo phone with its device", unlocked, 30).await;
    assert_eq!(
        eval(&page, "location.hash").await,
        "",
        "the token left the address bar"
    );
    // The printed address opened in a new tab, as the operator does.
    let page = browser
        .new_page(printed)
        .await
        .expect("open the printed address");
    log_in(&page).await;
    wait(&page, "the demo phone in the new tab", unlocked, 30).await;
    assert_eq!(eval(&page, "location.hash").await, "");
    click(&page, "[data-sim-action='logout'][data-device-id='d1']").await;
    wait(
        &page,
        "the device logged out from the phone",
        "document.querySelector(\"#phone-devices [data-device-id='d1'][data-device-state='UNPAIRED']\")",
        30,
    )
    .await;
    assert_eq!(simulator.devices()[0].state.as_str(), "UNPAIRED");

    let _ = browser.close().await;
    let _ = browser.wait().await;
    pump.abort();
    server.shutdown().await.expect("shutdown");
}

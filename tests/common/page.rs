//! Driving the dashboard in headless Chromium (chromiumoxide): JS
//! evaluation, waits on the DOM (a `MutationObserver`, never a sleep),
//! clicks, form filling, real key presses, logging in, and screenshots under
//! `target/screenshots/`; and the setup every dashboard test starts from (an
//! in-process `serve --demo` and a viewer with the dashboard open). Shared
//! by the dashboard test binaries.

use super::{start_on, Server};
use centinela::config::{Config, Profile};
use centinela::{engines_for, point_at_simulator, AdminBootstrap, Demo, Services};
use centinela_web::sim::{ControlAccess, Simulator};
use chromiumoxide::cdp::browser_protocol::page::{CaptureScreenshotFormat, Viewport};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures::StreamExt;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The admin's password in the dashboard tests.
pub const PASSWORD: &str = "dashboard-pass-1";

/// An in-process `serve --demo` on `127.0.0.1:0`: the demo profile (real
/// webjs engine, real Chromium per session, the bundled simulator, whose
/// control API is behind `control`), data under `dir/data`, connects without
/// the anti-ban delay, the admin `admin` / [`PASSWORD`], and the supervisor
/// log stream installed as `main` does; its config changed by `tweak`.
pub struct DemoServer {
    pub server: Server,
    pub addr: SocketAddr,
    /// The simulator the server serves, to look at its devices directly.
    pub simulator: Simulator,
}

pub async fn demo_server(
    dir: &Path,
    control: ControlAccess,
    tweak: impl FnOnce(&mut Config),
) -> DemoServer {
    centinela_web::logstream::install_global();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut config = Config::defaults_of(Profile::Demo);
    config.storage.data_dir = dir.join("data");
    point_at_simulator(&mut config, addr);
    config.antiban.connect_delay = Duration::ZERO;
    tweak(&mut config);
    let simulator = Simulator::new(Duration::from_secs(20));
    let services = Services {
        engines: engines_for(&config),
        demo: Some(Demo {
            simulator: simulator.clone(),
            control,
        }),
        admin: AdminBootstrap::Given {
            username: "admin".into(),
            password: PASSWORD.into(),
        },
        ..Services::default()
    };
    DemoServer {
        server: start_on(listener, config, services),
        addr,
        simulator,
    }
}

/// The person's browser (a [`viewer`] with its profile under `dir`) with
/// the dashboard at `addr` open in a tab, not yet logged in.
pub struct Dashboard {
    pub browser: Browser,
    pub page: Page,
    pump: tokio::task::JoinHandle<()>,
}

impl Dashboard {
    pub async fn open(dir: &Path, addr: SocketAddr) -> Dashboard {
        let (browser, pump) = viewer(&dir.join("viewer")).await;
        let page = browser
            .new_page(format!("http://{addr}/"))
            .await
            .expect("open the dashboard");
        Dashboard {
            browser,
            page,
            pump,
        }
    }

    /// Closes the browser and waits for it to exit.
    pub async fn close(mut self) {
        let _ = self.browser.close().await;
        let _ = self.browser.wait().await;
        self.pump.abort();
    }
}

/// Waits for the dashboard's WebSocket to be live.
pub async fn live(page: &Page) {
    wait(
        page,
        "the live WebSocket",
        "document.querySelector('#ws-status').dataset.status === 'live'",
        30,
    )
    .await;
}

/// Evaluates `js` in the page (a promise is awaited) and returns its value.
pub async fn eval(page: &Page, js: &str) -> Value {
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
pub async fn wait(page: &Page, what: &str, cond: &str, secs: u64) {
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

/// Waits for an element matching `selector` to be in the page.
pub async fn appears(page: &Page, what: &str, selector: &str, secs: u64) {
    let js = format!(
        "document.querySelector({})",
        serde_json::to_string(selector).expect("json")
    );
    wait(page, what, &js, secs).await;
}

pub async fn click(page: &Page, selector: &str) {
    let js = format!("(() => {{ const b = document.querySelector({s}); if (!b) return false; b.click(); return true; }})()", s = serde_json::to_string(selector).expect("json"));
    assert_eq!(
        eval(page, &js).await,
        Value::Bool(true),
        "nothing to click at {selector}"
    );
}

pub async fn fill(page: &Page, selector: &str, value: &str) {
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

pub fn screenshot_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir.join(name)
}

/// A screenshot of one element (a panel), wherever it is on the page; the
/// passing notifications (toasts, fixed over whatever is below them) are
/// hidden meanwhile, so the panel is what shows.
pub async fn panel_screenshot(page: &Page, selector: &str, name: &str) -> PathBuf {
    let path = screenshot_path(name);
    let toasts = |v: &str| {
        format!("(document.querySelector('#toasts') || {{style: {{}}}}).style.visibility = '{v}'")
    };
    eval(page, &toasts("hidden")).await;
    let js = format!(
        "(() => {{ const r = document.querySelector({s}).getBoundingClientRect(); return [r.left + scrollX, r.top + scrollY, r.width, r.height]; }})()",
        s = serde_json::to_string(selector).expect("json")
    );
    let rect = eval(page, &js).await;
    let n = |i: usize| rect[i].as_f64().expect("a number");
    let clip = Viewport {
        x: n(0),
        y: n(1),
        width: n(2),
        height: n(3),
        scale: 1.0,
    };
    let params = ScreenshotParams::builder()
        .format(CaptureScreenshotFormat::Png)
        .clip(clip)
        .capture_beyond_viewport(true)
        .build();
    page.save_screenshot(params, &path)
        .await
        .expect("panel screenshot");
    eval(page, &toasts("")).await;
    assert!(
        std::fs::metadata(&path).is_ok_and(|m| m.len() > 10_000),
        "{name} has content"
    );
    path
}

pub async fn screenshot(page: &Page, name: &str) -> PathBuf {
    let path = screenshot_path(name);
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
pub async fn viewer(profile: &std::path::Path) -> (Browser, tokio::task::JoinHandle<()>) {
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

/// Presses `key` (a DevTools key name: `Tab`, `Enter`) where the focus is,
/// as a keyboard does (the browser's default action follows).
pub async fn press(page: &Page, key: &str) {
    page.find_element("body")
        .await
        .expect("the page's body")
        .press_key(key)
        .await
        .unwrap_or_else(|e| panic!("pressing {key}: {e}"));
}

/// Waits for the login form to show.
pub async fn login_form(page: &Page) {
    wait(
        page,
        "the login form",
        "document.querySelector('#login-form') && !document.querySelector('#login-view').hidden",
        30,
    )
    .await;
}

/// Logs in as `username` on the login form the page shows.
pub async fn log_in_as(page: &Page, username: &str, password: &str) {
    login_form(page).await;
    fill(page, "#login-username", username).await;
    fill(page, "#login-password", password).await;
    click(page, "#login-submit").await;
    wait(
        page,
        "the app after login",
        "!document.querySelector('#app').hidden",
        30,
    )
    .await;
}

/// Logs in as the admin.
pub async fn log_in(page: &Page) {
    log_in_as(page, "admin", PASSWORD).await;
}

/// Clicks the language toggle and waits for the page to be in `lang`.
pub async fn switch_to(page: &Page, lang: &str) {
    click(page, "#lang-toggle").await;
    wait(
        page,
        &format!("the page in {lang}"),
        &format!("document.documentElement.lang === '{lang}'"),
        10,
    )
    .await;
}

/// Screenshots of a panel (`panel-{name}-en.png`, then `-es.png` once
/// `es_check` holds in Spanish), and the page back in English.
pub async fn both_languages(page: &Page, panel: &str, name: &str, es_check: &str) {
    panel_screenshot(page, panel, &format!("panel-{name}-en.png")).await;
    switch_to(page, "es").await;
    wait(page, &format!("the {name} panel in Spanish"), es_check, 10).await;
    panel_screenshot(page, panel, &format!("panel-{name}-es.png")).await;
    switch_to(page, "en").await;
}

/// The text of the first element matching `selector` ("" when none).
pub async fn text_of(page: &Page, selector: &str) -> String {
    let js = format!(
        "(document.querySelector({s}) || {{}}).textContent || ''",
        s = serde_json::to_string(selector).expect("json")
    );
    eval(page, &js)
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Creates a session from the form, connects it and scans its QR from the
/// demo phone panel: READY. Its id and its simulated device's id.
pub async fn linked_session(page: &Page, name: &str) -> (String, String) {
    fill(page, "#new-session-name", name).await;
    fill(page, "#new-session-tenant", "demo").await;
    click(page, "#new-session-submit").await;
    let row = session_row(name);
    wait(page, "the new row", &row, 30).await;
    let id = session_id(page, &row).await;
    let row_sel = format!("tr[data-session-id='{id}']");
    click(page, &format!("{row_sel} [data-action='connect']")).await;
    let scan = format!("[data-sim-action='scan'][data-session-id='{id}']");
    appears(page, "the phone panel's scan button", &scan, 60).await;
    click(page, &scan).await;
    wait(
        page,
        "READY",
        &format!("document.querySelector(\"{row_sel}\").dataset.state === 'READY'"),
        60,
    )
    .await;
    (id, connected_device(page).await)
}

/// A JS expression for the session row whose text includes `name`.
pub fn session_row(name: &str) -> String {
    format!("[...document.querySelectorAll('tr[data-session-id]')].find(r => r.textContent.includes('{name}'))")
}

/// The session id of `row` (a JS expression for a session row).
pub async fn session_id(page: &Page, row: &str) -> String {
    eval(page, &format!("{row}.dataset.sessionId"))
        .await
        .as_str()
        .expect("session id")
        .to_owned()
}

/// The id of the demo phone's connected device, once one is listed.
pub async fn connected_device(page: &Page) -> String {
    let device = "#phone-devices [data-device-state='CONNECTED']";
    appears(page, "the connected demo device", device, 30).await;
    eval(
        page,
        &format!("document.querySelector(\"{device}\").dataset.deviceId"),
    )
    .await
    .as_str()
    .expect("device id")
    .to_owned()
}

/// A key of the keyboard-only tests.
#[derive(Debug, Clone, Copy)]
pub enum Key {
    Tab,
    Enter,
    Space,
    /// Only to choose an option of a focused `<select>`, as a keyboard does.
    ArrowDown,
}

impl Key {
    /// DevTools' `key`, `code`, virtual key code and the text it types.
    fn def(self) -> (&'static str, &'static str, i64, Option<&'static str>) {
        match self {
            Key::Tab => ("Tab", "Tab", 9, None),
            Key::Enter => ("Enter", "Enter", 13, Some("\r")),
            Key::Space => (" ", "Space", 32, Some(" ")),
            Key::ArrowDown => ("ArrowDown", "ArrowDown", 40, None),
        }
    }
}

/// Makes the page take key events as the focused window does (headless
/// windows are never focused otherwise): call once before [`key`].
pub async fn keyboard_focus(page: &Page) {
    use chromiumoxide::cdp::browser_protocol::emulation::SetFocusEmulationEnabledParams;
    use chromiumoxide::cdp::browser_protocol::page::BringToFrontParams;
    page.execute(BringToFrontParams::default())
        .await
        .expect("bring the tab to the front");
    page.execute(SetFocusEmulationEnabledParams::new(true))
        .await
        .expect("focus emulation");
}

/// Presses `key` (with Shift held when `shift`) where the focus is, as
/// `Input.dispatchKeyEvent` does for a real keyboard: key down, key up, and
/// the browser's default action (moving the focus, pressing a button).
pub async fn key(page: &Page, key: Key, shift: bool) {
    use chromiumoxide::cdp::browser_protocol::input::{
        DispatchKeyEventParams, DispatchKeyEventType,
    };
    let (name, code, vk, text) = key.def();
    let mut down = DispatchKeyEventParams::builder()
        .key(name)
        .code(code)
        .windows_virtual_key_code(vk)
        .native_virtual_key_code(vk)
        .modifiers(if shift { 8 } else { 0 });
    let up = down.clone().r#type(DispatchKeyEventType::KeyUp);
    down = match text {
        Some(t) => down.text(t).r#type(DispatchKeyEventType::KeyDown),
        None => down.r#type(DispatchKeyEventType::RawKeyDown),
    };
    for event in [down, up] {
        page.execute(event.build().expect("a key event"))
            .await
            .unwrap_or_else(|e| panic!("pressing {key:?}: {e}"));
    }
}

/// Types `text` into the focused field as the keyboard's text input does
/// (`Input.insertText`: `input` events, no focus change).
pub async fn type_text(page: &Page, text: &str) {
    use chromiumoxide::cdp::browser_protocol::input::InsertTextParams;
    page.execute(InsertTextParams::new(text))
        .await
        .unwrap_or_else(|e| panic!("typing {text}: {e}"));
}

/// The focused element: its accessible name (`aria-label`, the text of
/// `aria-labelledby`, its `<label>`, or its text), its id, whether it
/// matches `selector`, and whether its focus shows (an outline or a
/// box-shadow).
async fn focused(page: &Page, selector: &str) -> Value {
    let js = format!(
        "(() => {{ const a = document.activeElement; if (!a || a === document.body) return {{name: '', id: '', matches: false, shows: false, tag: 'body'}};
            const byIds = (ids) => ids.split(/\\s+/).map(i => (document.getElementById(i) || {{}}).textContent || '').join(' ');
            const label = a.id && document.querySelector('label[for=\"' + CSS.escape(a.id) + '\"]');
            const name = (a.getAttribute('aria-label') || (a.getAttribute('aria-labelledby') && byIds(a.getAttribute('aria-labelledby'))) || (label && label.textContent) || a.textContent || '').trim().replace(/\\s+/g, ' ');
            const s = getComputedStyle(a);
            const shows = (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none';
            return {{name, id: a.id, matches: a.matches({sel}), shows, tag: a.tagName.toLowerCase(), html: a.outerHTML.slice(0, 160)}}; }})()",
        sel = serde_json::to_string(selector).expect("json")
    );
    eval(page, &js).await
}

/// Presses Tab (Shift+Tab when `back`) until the focus is on `selector`,
/// at most `max` times; every element the focus stops on must show it.
/// The name the target is announced by.
pub async fn tab_to(page: &Page, selector: &str, back: bool, max: usize) -> String {
    for _ in 0..max {
        key(page, Key::Tab, back).await;
        let f = focused(page, selector).await;
        if f["tag"] == "body" {
            // Past either end of the page the focus leaves it (the
            // browser's own controls); the next Tab comes back.
            continue;
        }
        assert_eq!(f["shows"], true, "the focus shows on {f}");
        if f["matches"] == true {
            return f["name"].as_str().unwrap_or_default().to_owned();
        }
    }
    panic!(
        "{selector} not reached in {max} presses of {}; the focus is on {}",
        if back { "Shift+Tab" } else { "Tab" },
        focused(page, selector).await
    );
}

/// Every `<button>` under `root` with no accessible name (none of
/// `aria-label`, `aria-labelledby`'s text, or its own text): their markup.
pub async fn unnamed_buttons(page: &Page, root: &str) -> Value {
    let js = format!(
        "[...document.querySelectorAll({r} + ' button')].filter(b => !((b.getAttribute('aria-label') || '').trim()
            || (b.getAttribute('aria-labelledby') || '').split(/\\s+/).some(i => ((document.getElementById(i) || {{}}).textContent || '').trim())
            || b.textContent.trim())).map(b => b.outerHTML)",
        r = serde_json::to_string(root).expect("json")
    );
    eval(page, &js).await
}

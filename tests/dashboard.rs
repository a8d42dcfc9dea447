//! The dashboard end to end, as a person uses it: headless Chromium
//! (chromiumoxide) drives the page served by an in-process `serve --demo`
//! (real webjs engine, real Chromium per session, the bundled simulator).
//! Log in → create a session → connect → the QR appears → scan it from the
//! phone panel → READY without a reload → the transition's log line appears
//! → reload: still READY → disconnect. Then the Conversations panel (an
//! incoming message from the demo phone, a reply that reaches the phone
//! and turns `read` live) and the Campaigns panel (a CSV of 20 with two bad
//! rows previewed and rejected, started, paused, resumed, finished).
//! Asserts on the DOM, never on pixels; saves screenshots under
//! `target/screenshots/`.

mod common;

use centinela_web::sim::ControlAccess;
use common::browser::{browser_slot, chromium_processes_under};
use common::page::{
    appears, both_languages, click, connected_device, demo_server, eval, fill, key, keyboard_focus,
    linked_session, live, log_in, login_form, panel_screenshot, screenshot, session_id,
    session_row, switch_to, tab_to, text_of, type_text, unnamed_buttons, wait, Dashboard, Key,
    PASSWORD,
};
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_links_a_number_from_the_dashboard() {
    let _slot = browser_slot().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = demo_server(dir.path(), ControlAccess::Open, |_| {}).await;
    let (addr, server) = (demo.addr, demo.server);
    let dash = Dashboard::open(dir.path(), addr).await;
    let page = &dash.page;
    log_in(page).await;
    live(page).await;

    fill(page, "#new-session-name", "front desk").await;
    fill(page, "#new-session-tenant", "demo").await;
    click(page, "#new-session-submit").await;
    let row = session_row("front desk");
    wait(page, "the new row", &row, 30).await;
    let id = session_id(page, &row).await;
    let row_sel = format!("tr[data-session-id='{id}']");
    assert_eq!(
        eval(
            page,
            &format!("document.querySelector(\"{row_sel}\").dataset.state")
        )
        .await,
        "DISCONNECTED"
    );

    click(page, &format!("{row_sel} [data-action='connect']")).await;
    wait(page, "the QR", "!document.querySelector('#qr-panel').hidden && document.querySelector('#qr-image').src.startsWith('data:image/svg+xml')", 60).await;
    assert_eq!(
        eval(
            page,
            "document.querySelector('#qr-image').dataset.sessionId"
        )
        .await,
        id.as_str()
    );
    // "Link with phone number instead": the code shows beside the QR, and
    // the simulated phone offers to type it.
    click(page, "#pairing-code-box summary").await;
    fill(page, "#pairing-code-phone", "5491122334466").await;
    click(page, "#pairing-code-submit").await;
    wait(
        page,
        "the pairing code beside the QR",
        "/[0-9A-Z]{4}-[0-9A-Z]{4}/.test(document.querySelector('#pairing-code-value').textContent)",
        30,
    )
    .await;
    wait(
        page,
        "the phone panel's type-the-code button",
        "document.querySelector(\"[data-sim-action='pair']\")",
        30,
    )
    .await;
    let shot_qr = screenshot(page, "01-sessions-with-qr.png").await;

    wait(
        page,
        "the phone panel's scan button",
        &format!("document.querySelector(\"[data-sim-action='scan'][data-session-id='{id}']\")"),
        30,
    )
    .await;
    click(
        page,
        &format!("[data-sim-action='scan'][data-session-id='{id}']"),
    )
    .await;
    wait(
        page,
        "READY without a reload",
        &format!("document.querySelector(\"{row_sel}\").dataset.state === 'READY'"),
        60,
    )
    .await;
    wait(
        page,
        "the QR panel hidden",
        "document.querySelector('#qr-panel').hidden",
        30,
    )
    .await;
    wait(
        page,
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
        page,
        "the risk badge and an untouched warm-up budget",
        &format!("{risk_cell}.querySelector('.risk-badge.risk-low') && {risk_cell}.querySelector('.budget').dataset.used === '0' && {risk_cell}.querySelector('.budget').dataset.allowance === '5'"),
        30,
    )
    .await;
    // The demo's cloud session is READY too: the forms are pointed at this one.
    fill(page, "#send-session", &id).await;
    fill(page, "#send-to", "5491155550001").await;
    fill(page, "#send-text", "hola").await;
    click(page, "#send-submit").await;
    wait(
        page,
        "the budget counting the new contact",
        &format!("{risk_cell}.querySelector('.budget').dataset.used === '1'"),
        60,
    )
    .await;
    click(page, &format!("{row_sel} [data-risk-of]")).await;
    wait(
        page,
        "why the risk is low",
        "['1 to new contacts', '1 a contactos nuevos'].some(s => document.querySelector('#sessions-message').textContent.includes(s))",
        30,
    )
    .await;
    let shot_ready = screenshot(page, "02-ready-with-log.png").await;

    // A verification code from the OTP panel: it arrives on the demo
    // phone, and the person types what the phone shows.
    wait(
        page,
        "the OTP panel offers the READY session",
        &format!("document.querySelector(\"#otp-session option[value='{id}']\")"),
        30,
    )
    .await;
    fill(page, "#otp-session", &id).await;
    fill(page, "#otp-phone", "+54 9 11 2233-4466").await;
    click(page, "#otp-send-submit").await;
    let arrived = "[...document.querySelectorAll('#phone-devices .device-message')].find(m => /\\d{6} es tu código de verificación/.test(m.textContent))";
    wait(page, "the code on the demo phone", arrived, 60).await;
    let shown = eval(page, &format!("{arrived}.textContent"))
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
    fill(page, "#otp-code", &code).await;
    click(page, "#otp-verify-submit").await;
    wait(
        page,
        "verified",
        "/Verificado|Verified/.test(document.querySelector('#otp-result').textContent)",
        30,
    )
    .await;
    screenshot(page, "02b-otp-verified.png").await;

    page.reload().await.expect("reload");
    wait(page, "still READY after a reload", &format!("document.querySelector(\"{row_sel}\") && document.querySelector(\"{row_sel}\").dataset.state === 'READY'"), 60).await;

    click(page, &format!("{row_sel} [data-action='disconnect']")).await;
    wait(
        page,
        "DISCONNECTED",
        &format!("document.querySelector(\"{row_sel}\").dataset.state === 'DISCONNECTED'"),
        60,
    )
    .await;
    screenshot(page, "03-disconnected.png").await;
    assert!(std::fs::metadata(shot_qr).is_ok_and(|m| m.len() > 10_000));
    assert!(std::fs::metadata(shot_ready).is_ok_and(|m| m.len() > 10_000));

    dash.close().await;
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
    let token = "public-demo-control-token-for-the-test";
    let demo = demo_server(dir.path(), ControlAccess::Token(token.into()), |_| {}).await;
    let (addr, server, simulator) = (demo.addr, demo.server, demo.simulator);
    // A paired device, as a page that said hello with its pairing makes one.
    centinela_actors::messaging::webhooks::install_tls_provider();
    let hello = reqwest::Client::new()
        .post(format!("http://{addr}/sim/api/hello"))
        .json(&serde_json::json!({"device_id": "d1", "paired_phone": "5491100000001"}))
        .send()
        .await
        .expect("hello");
    assert_eq!(hello.status(), 200);

    let dash = Dashboard::open(dir.path(), addr).await;
    let page = &dash.page;
    log_in(page).await;
    wait(
        page,
        "the phone panel asking for the printed address",
        "!document.querySelector('#phone-panel').hidden && !document.querySelector('#phone-locked').hidden && document.querySelector('#phone-grid').hidden",
        30,
    )
    .await;

    // The printed address pasted into this tab (the fragment alone changes).
    let printed = centinela::demo_dashboard_url(addr, token);
    let unlocked = "document.querySelector(\"#phone-devices [data-device-id='d1'][data-device-state='CONNECTED']\") && document.querySelector('#phone-locked').hidden && !document.querySelector('#phone-grid').hidden";
    eval(
        page,
        &format!(
            "location.href = {}",
            serde_json::to_string(&printed).expect("json")
        ),
    )
    .await;
    wait(page, "the demo phone with its device", unlocked, 30).await;
    assert_eq!(
        eval(page, "location.hash").await,
        "",
        "the token left the address bar"
    );
    // The printed address opened in a new tab, as the operator does.
    let tab = dash
        .browser
        .new_page(printed)
        .await
        .expect("open the printed address");
    let page = &tab;
    log_in(page).await;
    wait(page, "the demo phone in the new tab", unlocked, 30).await;
    assert_eq!(eval(page, "location.hash").await, "");
    click(page, "[data-sim-action='logout'][data-device-id='d1']").await;
    wait(
        page,
        "the device logged out from the phone",
        "document.querySelector(\"#phone-devices [data-device-id='d1'][data-device-state='UNPAIRED']\")",
        30,
    )
    .await;
    let d1 = simulator.devices().into_iter().find(|d| d.id == "d1");
    assert_eq!(
        d1.map(|d| d.state.as_str().to_owned()).as_deref(),
        Some("UNPAIRED")
    );

    dash.close().await;
    server.shutdown().await.expect("shutdown");
}

/// The recipients' CSV: 20 rows, the 5th with a bad number and the 12th
/// without its `name`.
fn campaign_csv() -> String {
    let mut csv = String::from("to,name,date\r\n");
    for i in 1..=20 {
        let row = match i {
            5 => "12ab,Bad,lunes".to_owned(),
            12 => format!("54911600000{i:02},,martes"),
            _ => format!("54911600000{i:02},\"Ana {i}\",lunes"),
        };
        csv.push_str(&row);
        csv.push_str("\r\n");
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_answers_a_chat_and_runs_a_campaign_from_the_dashboard() {
    let _slot = browser_slot().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Fast pacing, and a budget that takes the whole campaign today; the
    // risk watch needs more sends than this to judge (no risk_high pause).
    let demo = demo_server(dir.path(), ControlAccess::Open, |config| {
        config.messaging.send_delay_min = Duration::from_millis(300);
        config.messaging.send_delay_max = Duration::from_millis(400);
        config.messaging.sends_per_minute = 600;
        config.messaging.typing_chars_per_second = 1000;
        config.messaging.new_contacts_per_day = 50;
        config.messaging.warmup_start = 50;
        config.risk.min_sample = 1000;
    })
    .await;
    let (addr, server) = (demo.addr, demo.server);
    let dash = Dashboard::open(dir.path(), addr).await;
    let page = &dash.page;
    log_in(page).await;
    live(page).await;
    let (id, device) = linked_session(page, "clinic").await;
    // The demo's cloud session is READY too: the panels are pointed at this one.
    fill(page, "#chats-session", &id).await;
    fill(page, "#camp-session", &id).await;

    // An incoming message from the demo phone: a new chat with one unread.
    let peer = "5491177770001";
    fill(page, "#sim-from", peer).await;
    fill(page, "#sim-text", "Hola, ¿hay turno el lunes?").await;
    click(
        page,
        &format!("[data-sim-action='incoming'][data-device-id='{device}']"),
    )
    .await;
    let chat = format!("#chats-list li[data-peer='{peer}']");
    wait(
        page,
        "the chat with one unread message, live",
        &format!("document.querySelector(\"{chat}\") && document.querySelector(\"{chat}\").dataset.unread === '1'"),
        30,
    )
    .await;
    click(page, &format!("{chat} button[data-chat]")).await;
    wait(
        page,
        "the thread with the incoming message, read",
        &format!("!document.querySelector('#thread').hidden && [...document.querySelectorAll('#thread-messages .msg-in')].some(m => m.textContent.includes('hay turno')) && document.querySelector(\"{chat}\").dataset.unread === '0'"),
        30,
    )
    .await;
    assert_eq!(
        eval(page, "document.activeElement.id").await,
        "reply-text",
        "opening a chat puts the focus in the reply box"
    );

    // A reply through the outbox: it reaches the phone, and the phone's
    // acks move its status live, up to read.
    fill(page, "#reply-text", "Sí, a las 10").await;
    click(page, "#reply-submit").await;
    let out = "[...document.querySelectorAll('#thread-messages .msg-out')].find(m => m.textContent.includes('a las 10'))";
    wait(page, "the reply in the thread", out, 30).await;
    wait(
        page,
        "the reply sent",
        &format!("['sent', 'delivered', 'read'].includes({out}.dataset.status)"),
        60,
    )
    .await;
    let sim = reqwest::Client::new();
    let on_phone: Value = sim
        .get(format!("http://{addr}/sim/devices/{device}/sent"))
        .send()
        .await
        .expect("the phone's messages")
        .json()
        .await
        .expect("json");
    let reply = on_phone
        .as_array()
        .expect("a list")
        .iter()
        .find(|m| m["text"] == "Sí, a las 10")
        .unwrap_or_else(|| panic!("the reply reached the phone: {on_phone}"));
    assert_eq!(reply["to"], peer);
    for ack in [2, 3] {
        let r = sim
            .post(format!("http://{addr}/sim/devices/{device}/ack"))
            .json(&serde_json::json!({"message_id": reply["message_id"], "ack": ack}))
            .send()
            .await
            .expect("ack");
        assert_eq!(r.status(), 200);
    }
    wait(
        page,
        "the reply read, live",
        &format!("{out}.dataset.status === 'read' && {out}.querySelector('.msg-status').textContent === 'read'"),
        30,
    )
    .await;
    wait(
        page,
        "the ack's notice naming the recipient, not the engine's message id",
        &format!("[...document.querySelectorAll('#toasts .toast')].some(t => t.textContent === 'clinic: message to +{peer} read') && ![...document.querySelectorAll('#toasts .toast')].some(t => t.textContent.includes('@c.us'))"),
        10,
    )
    .await;
    both_languages(
        page,
        "#chats-panel",
        "conversations",
        &format!("{out}.querySelector('.msg-status').textContent === 'leído' && document.querySelector('#chats-title').textContent === 'Conversaciones'"),
    )
    .await;

    // The patient's number leaves WhatsApp (the simulator's
    // `queryWidExists` answers null): the next reply fails, and the thread
    // says so and why.
    let r = sim
        .post(format!("http://{addr}/sim/unregistered"))
        .json(&serde_json::json!({"phone": peer}))
        .send()
        .await
        .expect("unregister");
    assert_eq!(r.status(), 200);
    fill(page, "#reply-text", "¿Sigue ahí?").await;
    click(page, "#reply-submit").await;
    let failed = "[...document.querySelectorAll('#thread-messages .msg-out')].find(m => m.textContent.includes('Sigue ahí'))";
    wait(
        page,
        "the reply failed, with its reason, live",
        &format!("{failed} && {failed}.dataset.status === 'failed' && {failed}.querySelector('.msg-reason')"),
        60,
    )
    .await;
    let shown = eval(
        page,
        &format!("(() => {{ const m = {failed}; const s = m.querySelector('.msg-status');
            return {{status: s.textContent, class: s.className, reason: m.querySelector('.msg-reason').textContent,
                     code: m.querySelector('.msg-reason').dataset.reason, visible: s.offsetHeight > 0 && m.querySelector('.msg-reason').offsetHeight > 0}}; }})()"),
    )
    .await;
    assert_eq!(
        shown,
        serde_json::json!({"status": "failed", "class": "msg-status status-failed",
            "reason": "the number is not on WhatsApp", "code": "not_on_whatsapp", "visible": true}),
        "{shown}"
    );
    both_languages(
        page,
        "#chats-panel",
        "conversations-failed",
        &format!("{failed}.querySelector('.msg-status').textContent === 'fallido' && {failed}.querySelector('.msg-reason').textContent === 'el número no está en WhatsApp'"),
    )
    .await;

    // A campaign from CSV: two bad rows previewed and rejected.
    fill(page, "#camp-name", "lunes").await;
    fill(page, "#camp-template", "Hola {name}, tu turno es el {date}").await;
    fill(page, "#camp-csv", &campaign_csv()).await;
    click(page, "#camp-preview").await;
    let area = "document.querySelector('#camp-preview-area')";
    wait(
        page,
        "the preview: 18 to send, 2 rejected",
        &format!(
            "!{area}.hidden && {area}.dataset.accepted === '18' && {area}.dataset.rejected === '2'"
        ),
        30,
    )
    .await;
    let rejected = eval(
        page,
        "[...document.querySelectorAll('#camp-rejected tr')].map(r => r.dataset.index + ':' + r.dataset.code).join(' ')",
    )
    .await;
    assert_eq!(rejected, "4:invalid_phone 11:missing_variables");
    assert_eq!(
        text_of(page, "#camp-samples li").await,
        "Hola Ana 1, tu turno es el lunes"
    );
    assert_eq!(
        eval(page, "document.querySelectorAll('#camp-samples li').length").await,
        3
    );
    assert!(
        text_of(page, "#camp-preview-outlook")
            .await
            .contains("18 new contacts"),
        "the outlook: {}",
        text_of(page, "#camp-preview-outlook").await
    );
    panel_screenshot(page, "#campaigns-panel", "06-campaign-preview-en.png").await;
    click(page, "#camp-save").await;
    let row = "document.querySelector('#camp-body tr[data-campaign-id]')";
    wait(
        page,
        "the draft with 18 recipients",
        &format!("{row} && {row}.dataset.status === 'draft' && {row}.querySelector('.camp-progress').dataset.remaining === '18'"),
        30,
    )
    .await;

    // Started, paused while it runs, resumed, finished: the bar follows.
    click(page, "#camp-body [data-camp-action='start']").await;
    let progress = format!("{row}.querySelector('.camp-progress')");
    wait(
        page,
        "the first sends, live",
        &format!("{row}.dataset.status === 'running' && Number({progress}.dataset.sent) >= 1"),
        60,
    )
    .await;
    click(page, "#camp-body [data-camp-action='pause']").await;
    wait(
        page,
        "paused",
        &format!("{row}.dataset.status === 'paused' && {row}.querySelector(\"[data-camp-action='resume']\")"),
        30,
    )
    .await;
    let sent_when_paused = eval(page, &format!("Number({progress}.dataset.sent)")).await;
    assert!(
        sent_when_paused
            .as_u64()
            .is_some_and(|n| (1..18).contains(&n)),
        "paused part-way: {sent_when_paused}"
    );
    panel_screenshot(page, "#campaigns-panel", "07-campaign-paused-en.png").await;
    click(page, "#camp-body [data-camp-action='resume']").await;
    wait(
        page,
        "completed at 100 %, the focus on the campaign's name (its Pause is gone)",
        &format!("{row}.dataset.status === 'completed' && {progress}.dataset.percent === '100' && {progress}.dataset.sent === '18' && {progress}.dataset.remaining === '0' && document.activeElement === {row}.querySelector('th')"),
        120,
    )
    .await;
    let on_phone: Value = sim
        .get(format!("http://{addr}/sim/devices/{device}/sent"))
        .send()
        .await
        .expect("the phone's messages")
        .json()
        .await
        .expect("json");
    let campaign_texts = on_phone
        .as_array()
        .expect("a list")
        .iter()
        .filter(|m| {
            m["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Hola Ana"))
        })
        .count();
    assert_eq!(campaign_texts, 18, "each accepted recipient once");
    panel_screenshot(page, "#campaigns-panel", "08-campaign-done-en.png").await;
    switch_to(page, "es").await;
    wait(
        page,
        "the campaign in Spanish",
        &format!("{row}.querySelector('.camp-status').textContent === 'terminada' && document.querySelector('label.file-button').textContent === 'Elegir un archivo' && document.querySelector('#camp-file-name').textContent === 'Ningún archivo elegido' && document.activeElement === {row}.querySelector('th')"),
        10,
    )
    .await;
    panel_screenshot(page, "#campaigns-panel", "09-campaign-done-es.png").await;

    dash.close().await;
    server.shutdown().await.expect("shutdown");
    assert!(
        chromium_processes_under(&dir.path().join("data")).is_empty(),
        "no session browser left"
    );
}

/// Keyboard alone, as a person who cannot use a mouse: Tab, Shift+Tab,
/// Enter and Space (the arrow key only to choose a `<select>`'s option),
/// text typed into the focused field. Log in, create a session, connect it,
/// scan its QR from the demo phone, and answer a chat. Each Tab stop shows
/// its focus; the focus lands on the expected, labelled control; no action
/// drops it to the page; every button on every panel has a name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_links_a_number_and_answers_a_chat_with_the_keyboard_alone() {
    let _slot = browser_slot().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = demo_server(dir.path(), ControlAccess::Open, |config| {
        config.messaging.send_delay_min = Duration::from_millis(200);
        config.messaging.send_delay_max = Duration::from_millis(300);
        config.messaging.typing_chars_per_second = 1000;
    })
    .await;
    let (addr, server) = (demo.addr, demo.server);
    let dash = Dashboard::open(dir.path(), addr).await;
    let page = &dash.page;
    login_form(page).await;
    keyboard_focus(page).await;

    assert_eq!(tab_to(page, "#login-username", false, 6).await, "Username");
    type_text(page, "admin").await;
    assert_eq!(tab_to(page, "#login-password", false, 2).await, "Password");
    type_text(page, PASSWORD).await;
    key(page, Key::Enter, false).await;
    wait(
        page,
        "the app after login, live",
        "!document.querySelector('#app').hidden && document.querySelector('#ws-status').dataset.status === 'live'",
        30,
    )
    .await;

    // A session, created from its form.
    assert_eq!(tab_to(page, "#new-session-name", false, 80).await, "Name");
    type_text(page, "Teclado").await;
    assert_eq!(
        tab_to(page, "#new-session-tenant", false, 2).await,
        "Tenant id"
    );
    type_text(page, "demo").await;
    assert_eq!(
        tab_to(page, "#new-session-submit", false, 2).await,
        "Create"
    );
    key(page, Key::Enter, false).await;
    let row = session_row("Teclado");
    wait(
        page,
        "the new row, the focus still on Create",
        &format!("{row} && document.activeElement.id === 'new-session-submit'"),
        30,
    )
    .await;
    let id = session_id(page, &row).await;
    let row_sel = format!("tr[data-session-id='{id}']");

    // Back up to its Connect (Shift+Tab), pressed with Space; the focus
    // stays in the row.
    assert_eq!(
        tab_to(
            page,
            &format!("{row_sel} [data-action='connect']"),
            true,
            40
        )
        .await,
        "Connect: Teclado"
    );
    key(page, Key::Space, false).await;
    wait(
        page,
        "connecting, the focus kept in the row",
        &format!("document.querySelector(\"{row_sel}\").dataset.state !== 'DISCONNECTED' && document.querySelector(\"{row_sel}\").contains(document.activeElement)"),
        60,
    )
    .await;

    // The demo phone's scan button, forward, pressed with Enter: READY.
    let scan = format!("[data-sim-action='scan'][data-session-id='{id}']");
    appears(page, "the phone panel's scan button", &scan, 60).await;
    assert_eq!(tab_to(page, &scan, false, 200).await, "Scan QR of Teclado");
    key(page, Key::Enter, false).await;
    wait(
        page,
        "READY",
        &format!("document.querySelector(\"{row_sel}\").dataset.state === 'READY'"),
        50,
    )
    .await;
    let focus = eval(page, "document.activeElement.outerHTML.slice(0, 200)").await;
    assert_eq!(
        eval(
            page,
            "document.querySelector('#phone-panel').contains(document.activeElement)"
        )
        .await,
        true,
        "the focus kept in the phone panel: {focus}"
    );
    let device_id = connected_device(page).await;

    // The phone writes (its prefilled number and text): Enter on
    // "Incoming message".
    let incoming = format!("[data-sim-action='incoming'][data-device-id='{device_id}']");
    assert_eq!(
        tab_to(page, &incoming, false, 20).await,
        format!("Incoming message: {device_id}")
    );
    key(page, Key::Enter, false).await;

    // Conversations: the session chosen with the arrow key, the chat
    // opened with Enter, the reply typed and sent with Space.
    assert_eq!(tab_to(page, "#chats-session", true, 250).await, "Session");
    for _ in 0..5 {
        if eval(page, "document.querySelector('#chats-session').value").await == id.as_str() {
            break;
        }
        key(page, Key::ArrowDown, false).await;
    }
    assert_eq!(
        eval(page, "document.querySelector('#chats-session').value").await,
        id.as_str()
    );
    let peer = eval(page, "document.querySelector('#sim-from').value")
        .await
        .as_str()
        .expect("the phone's number")
        .to_owned();
    let chat = format!("#chats-list li[data-peer='{peer}'] button[data-chat]");
    appears(page, "the chat", &chat, 30).await;
    assert_eq!(
        tab_to(page, &chat, false, 5).await,
        format!("Open the chat with +{peer}, 1 unread")
    );
    key(page, Key::Enter, false).await;
    wait(
        page,
        "the thread open, the focus in the reply box",
        "!document.querySelector('#thread').hidden && document.activeElement.id === 'reply-text'",
        30,
    )
    .await;
    type_text(page, "Hola desde el teclado").await;
    assert_eq!(tab_to(page, "#reply-submit", false, 3).await, "Send reply");
    key(page, Key::Space, false).await;
    let out = "[...document.querySelectorAll('#thread-messages .msg-out')].find(m => m.textContent.includes('desde el teclado'))";
    wait(
        page,
        "the reply sent, the focus still on Send reply",
        &format!("{out} && ['sent', 'delivered', 'read'].includes({out}.dataset.status) && document.activeElement.id === 'reply-submit'"),
        50,
    )
    .await;
    assert_eq!(
        tab_to(page, "#reply-text", true, 3).await,
        "Reply",
        "Shift+Tab goes back to the reply box"
    );

    // Every button, on every panel, shown or not yet, has a name.
    let panels = eval(
        page,
        "[...document.querySelectorAll('#app section[id]')].map(s => s.id)",
    )
    .await;
    let panels = panels.as_array().expect("the panels");
    assert!(panels.len() >= 10, "{panels:?}");
    for panel in panels {
        let panel = panel.as_str().expect("an id");
        assert_eq!(
            unnamed_buttons(page, &format!("#{panel}")).await,
            serde_json::json!([]),
            "every button of {panel} has a name"
        );
    }
    screenshot(page, "keyboard-only.png").await;

    dash.close().await;
    server.shutdown().await.expect("shutdown");
}

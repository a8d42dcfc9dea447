//! The dashboard's management panels end to end, as an admin and a tenant
//! user use them: headless Chromium drives the page of an in-process
//! `serve --demo` (real webjs engine, real Chromium per session, the bundled
//! simulator). Webhooks (a signed test event reaching a receiver in this
//! test, a dead delivery redelivered), auto-replies (a rule answering the
//! demo phone, "try it"), access (an API key made in the page and used from
//! here, a tenant user who sees only their tenant, a deletion that says
//! what goes), the admission chart after three connects, 1,000 sessions
//! listed, filtered and paged, and keyboard use (Tab, Enter, the focus
//! visible and kept). Asserts on the DOM; saves a screenshot of each panel
//! in English and Spanish under `target/screenshots/`.

mod common;

use centinela_actors::cidr::CidrSet;
use centinela_web::sim::ControlAccess;
use chromiumoxide::Page;
use common::api::{Api, Cred};
use common::browser::browser_slot;
use common::hook;
use common::page::{
    appears, both_languages, click, demo_server, eval, fill, linked_session, live, log_in,
    log_in_as, panel_screenshot, press, text_of, wait, Dashboard, PASSWORD,
};
use futures::StreamExt;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

async fn webhooks_panel(page: &Page) {
    let mut receiver = hook::receiver().await;
    // The first attempt fails (one attempt allowed): the delivery is dead.
    receiver.respond.store(500, Ordering::SeqCst);
    fill(page, "#hook-tenant", "demo").await;
    fill(page, "#hook-url", &receiver.url).await;
    click(page, "#hook-save").await;
    wait(
        page,
        "the secret, shown once",
        "!document.querySelector('#hook-secret-box').hidden && document.querySelector('#hook-secret').textContent.length >= 16",
        30,
    )
    .await;
    assert_eq!(
        eval(page, "document.activeElement.id").await,
        "hook-copy",
        "the copy button takes the focus"
    );
    let secret = text_of(page, "#hook-secret").await;
    assert!(
        text_of(page, "#hook-current").await.contains(&receiver.url),
        "the URL in force is shown"
    );
    click(page, "#hook-test").await;
    let (_, first) = receiver.next(&secret).await;
    assert_eq!(first["event"], "webhook.test");
    assert_eq!(first["tenant_id"], "demo");
    let id = first["delivery_id"]
        .as_str()
        .expect("delivery id")
        .to_owned();
    let row = format!("document.querySelector(\"#hook-body tr[data-delivery-id='{id}']\")");
    wait(
        page,
        "the delivery dead with its error, live",
        &format!("{row} && {row}.dataset.status === 'dead' && {row}.querySelector('.hook-error').textContent.includes('http_500')"),
        30,
    )
    .await;
    receiver.respond.store(200, Ordering::SeqCst);
    click(
        page,
        &format!("#hook-body button[data-hook-action='redeliver'][data-delivery-id='{id}']"),
    )
    .await;
    let (_, again) = receiver.next(&secret).await;
    assert_eq!(again["delivery_id"], id.as_str(), "the same delivery again");
    wait(
        page,
        "the delivery delivered, live",
        &format!("{row}.dataset.status === 'delivered' && {row}.querySelector('.hook-error').textContent === '—' && document.activeElement.dataset.key === 'delivery:{id}'"),
        30,
    )
    .await;
    both_languages(
        page,
        "#webhooks-panel",
        "webhooks",
        &format!("document.querySelector('#webhooks-title').textContent === 'Webhooks' && {row}.querySelector('.hook-status').textContent === 'entregada'"),
    )
    .await;
}

/// Two rules, reordered, switched on; "try it" names the rule that answers.
async fn auto_replies_panel(page: &Page) {
    fill(page, "#ar-tenant", "demo").await;
    for (i, (keyword, reply)) in [
        ("horario", "Abrimos de 9 a 18"),
        ("turno", "Pida turno al 555"),
    ]
    .into_iter()
    .enumerate()
    {
        click(page, "#ar-add").await;
        assert_eq!(
            eval(page, "document.activeElement.id").await,
            format!("ar-keyword-{i}"),
            "a new rule's keyword takes the focus"
        );
        fill(page, &format!("#ar-keyword-{i}"), keyword).await;
        fill(page, &format!("#ar-reply-{i}"), reply).await;
    }
    let try_it = |text: &'static str| async move {
        fill(page, "#ar-try-text", text).await;
        eval(
            page,
            "document.querySelector('#ar-try-result').dataset.rule = 'waiting'",
        )
        .await;
        click(page, "#ar-try-submit").await;
        wait(
            page,
            "the try-it answer",
            "document.querySelector('#ar-try-result').dataset.rule !== 'waiting'",
            30,
        )
        .await;
        eval(
            page,
            "document.querySelector('#ar-try-result').dataset.rule",
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    };
    assert_eq!(try_it("¿Hay turno el lunes?").await, "1");
    assert!(text_of(page, "#ar-try-result")
        .await
        .contains("auto-replies are off"));
    // The second rule moved up: it is the first to match now.
    click(
        page,
        "#ar-rules button[data-ar-action='up'][data-index='1']",
    )
    .await;
    assert_eq!(
        eval(page, "document.activeElement.dataset.key").await,
        "down:0",
        "the focus follows the moved rule"
    );
    click(page, "#ar-enabled").await;
    assert_eq!(try_it("turno y horario").await, "0");
    assert!(text_of(page, "#ar-try-result")
        .await
        .contains("Pida turno al 555"));
    assert_eq!(try_it("hola").await, "");
    // "turno" switched off: it never answers, the next matching rule does.
    assert_eq!(
        text_of(page, "label[for='ar-on-0']").await,
        "Rule 1 on",
        "the switch is labelled"
    );
    click(page, "#ar-on-0").await;
    assert_eq!(
        eval(
            page,
            "document.querySelector(\"#ar-rules li[data-index='0']\").dataset.enabled"
        )
        .await,
        "false"
    );
    assert_eq!(try_it("turno y horario").await, "1");
    assert!(text_of(page, "#ar-try-result")
        .await
        .contains("Abrimos de 9 a 18"));
    assert_eq!(try_it("¿Hay turno el lunes?").await, "", "no rule");
    click(page, "#ar-save").await;
    wait(
        page,
        "the rules saved, the first one still off as the server kept it",
        "document.querySelector('#ar-message').textContent.includes('2 rules saved; auto-replies on') && !document.querySelector('#ar-on-0').checked && document.querySelector('#ar-on-1').checked",
        30,
    )
    .await;
    both_languages(
        page,
        "#autoreplies-panel",
        "autoreplies",
        "document.querySelector('#ar-title').textContent === 'Respuestas automáticas' && document.querySelector(\"label[for='ar-keyword-0']\").textContent === 'Palabra clave 1'",
    )
    .await;
}

/// The demo phone writes "horario?": the rule answers it on the phone.
async fn auto_reply_answers_the_phone(page: &Page, addr: SocketAddr) {
    let (id, device) = linked_session(page, "recepción").await;
    fill(page, "#chats-session", &id).await;
    let peer = "5491177770009";
    fill(page, "#sim-from", peer).await;
    fill(page, "#sim-text", "¿Cuál es el horario?").await;
    click(
        page,
        &format!("[data-sim-action='incoming'][data-device-id='{device}']"),
    )
    .await;
    let chat = format!("#chats-list li[data-peer='{peer}'] button[data-chat]");
    appears(page, "the chat", &chat, 30).await;
    click(page, &chat).await;
    let reply = "[...document.querySelectorAll('#thread-messages .msg-out')].find(m => m.textContent.includes('Abrimos de 9 a 18'))";
    wait(
        page,
        "the auto-reply in the thread, sent",
        &format!("{reply} && ['sent', 'delivered', 'read'].includes({reply}.dataset.status)"),
        90,
    )
    .await;
    let sent: Value = reqwest::get(format!("http://{addr}/sim/devices/{device}/sent"))
        .await
        .expect("the phone's messages")
        .json()
        .await
        .expect("json");
    assert!(
        sent.as_array()
            .expect("a list")
            .iter()
            .any(|m| m["to"] == peer && m["text"] == "Abrimos de 9 a 18"),
        "the auto-reply reached the phone: {sent}"
    );
}

/// An API key made in the page works from here, listed by its prefix, and
/// stops working once revoked.
async fn api_key(page: &Page, api: &Api) {
    fill(page, "#keys-tenant", "demo").await;
    fill(page, "#key-name", "crm").await;
    click(page, "#key-create").await;
    wait(
        page,
        "the key, shown once",
        "!document.querySelector('#key-shown').hidden && document.querySelector('#key-value').textContent.length > 20",
        30,
    )
    .await;
    let key = text_of(page, "#key-value").await;
    let row =
        "[...document.querySelectorAll('#keys-body tr')].find(r => r.textContent.includes('crm'))";
    let prefix = eval(page, &format!("{row}.dataset.prefix"))
        .await
        .as_str()
        .expect("prefix")
        .trim_end_matches('…')
        .to_owned();
    assert!(key.starts_with(&prefix), "{key} is listed as {prefix}…");
    let r = api
        .call("GET", "/api/v1/sessions", Cred::Key(&key), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .all(|s| s["tenant_id"] == "demo"));
    panel_screenshot(page, "#access-panel", "panel-access-key-en.png").await;
    click(page, "#keys-body button[data-access-action='revoke']").await;
    wait(
        page,
        "the key revoked",
        &format!("{row}.dataset.revoked === 'true'"),
        30,
    )
    .await;
    let r = api
        .call("GET", "/api/v1/sessions", Cred::Key(&key), None)
        .await;
    assert_eq!(r.status, 401, "a revoked key: {}", r.text);
    // The revoked row is as wide as the header: its actions cell is there,
    // a table cell whose bottom border lines up with the row's.
    let shape = eval(
        page,
        &format!(
            "(() => {{ const r = {row}; const last = r.lastElementChild; const a = last.getBoundingClientRect(), b = r.getBoundingClientRect();
               return {{cells: r.cells.length, header: document.querySelector('#keys-table thead tr').cells.length,
                        display: getComputedStyle(last).display, text: last.textContent,
                        bottoms: Math.abs(a.bottom - b.bottom) < 1.5, right: Math.abs(a.right - b.right) < 1.5}}; }})()"
        ),
    )
    .await;
    assert_eq!(shape["cells"], shape["header"], "{shape}");
    assert_eq!(shape["display"], "table-cell", "{shape}");
    assert_eq!(shape["bottoms"], true, "{shape}");
    assert_eq!(shape["right"], true, "{shape}");
    assert!(
        shape["text"]
            .as_str()
            .is_some_and(|t| t.contains("revoked")),
        "{shape}"
    );
    // The "shown once" box no longer shows a key that stopped working.
    let shown = eval(
        page,
        "({hidden: document.querySelector('#key-shown').hidden, text: document.querySelector('#key-value').textContent})",
    )
    .await;
    assert_eq!(shown, json!({"hidden": true, "text": ""}), "after revoke");
    panel_screenshot(page, "#access-panel", "panel-access-revoked-en.png").await;
}

/// A tenant and its user made in the page; the user's password reset.
async fn tenant_and_user(page: &Page) {
    fill(page, "#tenant-id", "clinica").await;
    fill(page, "#tenant-name", "Clínica Sur").await;
    click(page, "#tenant-create").await;
    wait(
        page,
        "the tenant, offered to the user form",
        "document.querySelector(\"#tenants-body tr[data-tenant-id='clinica']\") && document.querySelector(\"#user-tenant option[value='clinica']\")",
        30,
    )
    .await;
    fill(page, "#user-name", "ana").await;
    fill(page, "#user-password", "ana-password-1").await;
    fill(page, "#user-role", "tenant").await;
    fill(page, "#user-tenant", "clinica").await;
    click(page, "#user-create").await;
    let ana = "document.querySelector(\"#users-body tr[data-username='ana']\")";
    wait(page, "the user", ana, 30).await;
    click(
        page,
        "#users-body tr[data-username='ana'] button[data-access-action='reset-password']",
    )
    .await;
    assert_eq!(
        eval(page, "document.activeElement.id").await,
        "reset-password"
    );
    fill(page, "#reset-password", "ana-password-2").await;
    click(page, "#reset-submit").await;
    wait(
        page,
        "the password reset",
        "document.querySelector('#access-message').textContent.includes('New password set for ana')",
        30,
    )
    .await;
    fill(page, "#new-session-name", "sur desk").await;
    fill(page, "#new-session-tenant", "clinica").await;
    click(page, "#new-session-submit").await;
    wait(
        page,
        "the tenant's session, counted on its row live",
        "[...document.querySelectorAll('tr[data-session-id]')].some(r => r.textContent.includes('sur desk')) && document.querySelector(\"#tenants-body tr[data-tenant-id='clinica'] td:nth-child(3)\").textContent === '1'",
        30,
    )
    .await;
    both_languages(
        page,
        "#access-panel",
        "access",
        "document.querySelector('#access-title').textContent === 'Acceso' && document.querySelector(\"#users-body tr[data-username='ana'] button[data-access-action='reset-password']\").textContent === 'Restablecer contraseña'",
    )
    .await;
}

/// Ana, in her own tab, sees her tenant only.
async fn tenant_user_sees_only_their_tenant(browser: &chromiumoxide::Browser, addr: SocketAddr) {
    let tab = browser
        .new_page(format!("http://{addr}/"))
        .await
        .expect("a second tab");
    let page = &tab;
    log_in_as(page, "ana", "ana-password-2").await;
    live(page).await;
    wait(
        page,
        "her session, and her tenant in the panels",
        "document.querySelectorAll('tr[data-session-id]').length === 1 && document.querySelector(\"#hook-tenant option[value='clinica']\")",
        30,
    )
    .await;
    let seen = eval(
        page,
        "({rows: [...document.querySelectorAll('tr[data-session-id]')].map(r => r.querySelector('.col-name').textContent),
           hookTenants: [...document.querySelectorAll('#hook-tenant option')].map(o => o.value),
           keyTenants: [...document.querySelectorAll('#keys-tenant option')].map(o => o.value),
           people: document.querySelector('#people-area').hidden,
           log: document.querySelector('#log-panel').hidden,
           user: document.querySelector('#user-info').textContent})",
    )
    .await;
    assert_eq!(seen["rows"], json!(["sur desk"]), "{seen}");
    assert_eq!(seen["hookTenants"], json!(["clinica"]), "{seen}");
    assert_eq!(seen["keyTenants"], json!(["clinica"]), "{seen}");
    assert_eq!(seen["people"], true, "no tenants or users for her: {seen}");
    assert_eq!(seen["log"], true, "no supervisor log: {seen}");
    wait(
        page,
        "her tenant alone in the admission panel",
        "document.querySelectorAll('#admission-body tr').length === 1 && document.querySelector(\"#admission-body tr[data-org-id='clinica']\") && !document.querySelector(\"[data-chart='server']\")",
        30,
    )
    .await;
    common::page::screenshot(page, "tenant-user-view.png").await;
    let _ = tab.close().await;
}

/// Deleting the tenant says what goes; Cancel gives the focus back to the
/// button; Yes deletes.
async fn delete_tenant(page: &Page) {
    let button = "#tenants-body button[data-access-action='delete-tenant'][data-id='clinica']";
    click(page, button).await;
    wait(
        page,
        "the confirmation",
        "!document.querySelector('#access-confirm').hidden",
        30,
    )
    .await;
    let text = text_of(page, "#access-confirm-text").await;
    assert!(
        text.contains("clinica") && text.contains("1 sessions") && text.contains("1 users"),
        "says what is deleted: {text}"
    );
    assert_eq!(
        eval(page, "document.activeElement.id").await,
        "access-confirm-no"
    );
    panel_screenshot(page, "#access-panel", "panel-access-confirm-en.png").await;
    press(page, "Enter").await;
    wait(
        page,
        "the focus back on the delete button",
        "document.querySelector('#access-confirm').hidden && document.activeElement.dataset.key === 'delete-tenant:clinica'",
        10,
    )
    .await;
    click(page, button).await;
    wait(
        page,
        "the confirmation again",
        "!document.querySelector('#access-confirm').hidden",
        30,
    )
    .await;
    click(page, "#access-confirm-yes").await;
    wait(
        page,
        "the tenant and its session gone",
        "!document.querySelector(\"#tenants-body tr[data-tenant-id='clinica']\") && ![...document.querySelectorAll('tr[data-session-id]')].some(r => r.textContent.includes('sur desk'))",
        60,
    )
    .await;
}

/// Tab from the name field to Create, Enter presses it; the focus ring
/// shows. A campaign started with the keyboard keeps the focus in its row.
async fn keyboard(page: &Page) {
    fill(page, "#new-session-name", "teclado").await;
    fill(page, "#new-session-tenant", "demo").await;
    eval(page, "document.querySelector('#new-session-name').focus()").await;
    press(page, "Tab").await;
    press(page, "Tab").await;
    let focus = eval(
        page,
        "({id: document.activeElement.id, visible: document.activeElement.matches(':focus-visible'),
           outline: getComputedStyle(document.activeElement).outlineStyle})",
    )
    .await;
    assert_eq!(focus["id"], "new-session-submit", "{focus}");
    assert_eq!(focus["visible"], true, "{focus}");
    assert_ne!(focus["outline"], "none", "{focus}");
    press(page, "Enter").await;
    wait(
        page,
        "the session made with the keyboard",
        "[...document.querySelectorAll('tr[data-session-id]')].some(r => r.textContent.includes('teclado'))",
        30,
    )
    .await;
    let unlabelled = eval(
        page,
        "[...document.querySelectorAll('#app button')].filter(b => !b.hidden && !(b.getAttribute('aria-label') || b.textContent).trim()).map(b => b.outerHTML)",
    )
    .await;
    assert_eq!(unlabelled, json!([]), "every button has a name");
}

/// Start (pressed with Enter) keeps the focus in the campaign's row: on
/// Pause while it runs, on its name once done (it used to fall to the page).
async fn campaign_keeps_focus(page: &Page, session: &str) {
    fill(page, "#camp-session", session).await;
    fill(page, "#camp-name", "foco").await;
    fill(page, "#camp-template", "Hola {name}").await;
    fill(
        page,
        "#camp-csv",
        "to,name\r\n5491166660001,Ana\r\n5491166660002,Beto\r\n",
    )
    .await;
    click(page, "#camp-preview").await;
    wait(
        page,
        "the preview",
        "document.querySelector('#camp-preview-area').dataset.accepted === '2'",
        30,
    )
    .await;
    click(page, "#camp-save").await;
    let start = "#camp-body [data-camp-action='start']";
    appears(page, "the draft", start, 30).await;
    eval(
        page,
        &format!("document.querySelector(\"{start}\").focus()"),
    )
    .await;
    press(page, "Enter").await;
    wait(
        page,
        "the focus kept in the campaign's row",
        "document.querySelector('#camp-body tr[data-status]').dataset.status !== 'draft' && document.querySelector('#camp-body').contains(document.activeElement)",
        30,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_and_a_tenant_user_manage_webhooks_replies_keys_and_people() {
    let _slot = browser_slot().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = demo_server(dir.path(), ControlAccess::Open, |c| {
        c.webhooks.allow_private = CidrSet::parse(["127.0.0.0/8"]).expect("a CIDR");
        c.webhooks.max_attempts = 1;
        c.messaging.send_delay_min = Duration::from_millis(200);
        c.messaging.send_delay_max = Duration::from_millis(300);
        c.messaging.typing_chars_per_second = 1000;
    })
    .await;
    let (api, addr) = (Api::new(&demo.server.url("")), demo.addr);
    let dash = Dashboard::open(dir.path(), addr).await;
    let page = &dash.page;
    log_in(page).await;
    live(page).await;

    webhooks_panel(page).await;
    auto_replies_panel(page).await;
    auto_reply_answers_the_phone(page, addr).await;
    api_key(page, &api).await;
    tenant_and_user(page).await;
    tenant_user_sees_only_their_tenant(&dash.browser, addr).await;
    delete_tenant(page).await;
    keyboard(page).await;
    let ready = eval(
        page,
        "[...document.querySelectorAll('tr[data-session-id]')].find(r => r.textContent.includes('recepción')).dataset.sessionId",
    )
    .await;
    campaign_keeps_focus(page, ready.as_str().expect("the READY session")).await;

    dash.close().await;
    demo.server.shutdown().await.expect("shutdown");
}

/// A thousand sessions, made through the API (none connects), listed a page
/// at a time and filtered by name, tenant and state; then three connects
/// of one tenant drawn on its admission chart against the daily limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sessions_are_filtered_and_paged_and_three_connects_are_charted() {
    let _slot = browser_slot().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = demo_server(dir.path(), ControlAccess::Open, |c| {
        c.antiban.max_sessions = 1100;
        c.antiban.max_sessions_per_tenant = 600;
    })
    .await;
    let api = Api::new(&demo.server.url(""));
    let admin = api.login("admin", PASSWORD).await;
    for tenant in ["bulk-a", "bulk-b", "chart"] {
        let r = api
            .call(
                "POST",
                "/api/v1/tenants",
                Cred::Token(&admin),
                Some(json!({"id": tenant, "name": tenant})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let made: Vec<u16> = futures::stream::iter(0..1000)
        .map(|i| {
            let (api, admin) = (api.clone(), admin.clone());
            async move {
                let tenant = if i % 2 == 0 { "bulk-a" } else { "bulk-b" };
                let body = json!({"tenant_id": tenant, "name": format!("desk-{i:04}")});
                api.call("POST", "/api/v1/sessions", Cred::Token(&admin), Some(body))
                    .await
                    .status
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(made.iter().all(|s| *s == 201), "every session made");
    let mut chart_sessions = Vec::new();
    for n in 1..=3 {
        let r = api
            .call(
                "POST",
                "/api/v1/sessions",
                Cred::Token(&admin),
                Some(json!({"tenant_id": "chart", "name": format!("chart {n}")})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        chart_sessions.push(r.body["id"].as_str().expect("id").to_owned());
    }
    let all = api
        .call("GET", "/api/v1/sessions", Cred::Token(&admin), None)
        .await;
    let total = all.body["sessions"].as_array().expect("sessions").len();
    assert!(total >= 1003, "{total}");

    let dash = Dashboard::open(dir.path(), demo.addr).await;
    let page = &dash.page;
    log_in(page).await;
    live(page).await;
    let count = "document.querySelector('#sessions-count').dataset";
    wait(
        page,
        "every session counted, one page shown",
        &format!("{count}.total === '{total}' && document.querySelectorAll('#sessions-body tr').length === 50 && {count}.pages === '{}'", total.div_ceil(50)),
        60,
    )
    .await;
    click(page, "#sessions-next").await;
    wait(
        page,
        "the second page",
        &format!(
            "{count}.page === '2' && document.querySelectorAll('#sessions-body tr').length === 50"
        ),
        10,
    )
    .await;
    fill(page, "#sessions-filter-tenant", "bulk-b").await;
    wait(
        page,
        "bulk-b's 500, from the first page",
        &format!("{count}.matching === '500' && {count}.page === '1' && [...document.querySelectorAll('#sessions-body .col-tenant')].every(c => c.textContent === 'bulk-b')"),
        10,
    )
    .await;
    fill(page, "#sessions-filter", "desk-0999").await;
    wait(
        page,
        "one by name",
        &format!("{count}.matching === '1' && document.querySelector('#sessions-body .col-name').textContent === 'desk-0999' && document.querySelector('#sessions-pager').hidden"),
        10,
    )
    .await;
    fill(page, "#sessions-filter", "").await;
    fill(page, "#sessions-filter-state", "READY").await;
    wait(
        page,
        "none of bulk-b READY, said so",
        &format!("{count}.matching === '0' && !document.querySelector('#sessions-nomatch').hidden && document.querySelector('#sessions-table').hidden"),
        10,
    )
    .await;
    fill(page, "#sessions-filter-tenant", "").await;
    fill(page, "#sessions-filter-state", "").await;
    fill(page, "#sessions-filter", "desk-00").await;
    wait(
        page,
        "a hundred by name",
        &format!("{count}.matching === '100'"),
        10,
    )
    .await;
    both_languages(
        page,
        "#sessions-panel",
        "sessions",
        "document.querySelector('#sessions-count').textContent.includes('de 100 mostradas') && document.querySelector('#sessions-title').textContent === 'Sesiones'",
    )
    .await;

    // Three connects of tenant `chart`, pressed in the page.
    fill(page, "#sessions-filter", "").await;
    fill(page, "#sessions-filter-tenant", "chart").await;
    wait(
        page,
        "chart's three",
        &format!("{count}.matching === '3'"),
        10,
    )
    .await;
    for id in &chart_sessions {
        click(
            page,
            &format!("tr[data-session-id='{id}'] [data-action='connect']"),
        )
        .await;
    }
    let org_chart = "document.querySelector(\"[data-chart='tenant'][data-org-id='chart'] svg\")";
    wait(
        page,
        "three attempts on chart's chart, against its daily limit",
        &format!("{org_chart} && {org_chart}.dataset.attempts === '3' && {org_chart}.dataset.limit === '50'"),
        60,
    )
    .await;
    let server_chart = "document.querySelector(\"[data-chart='server'] svg\")";
    let global = eval(page, &format!("Number({server_chart}.dataset.attempts)")).await;
    assert!(
        global.as_u64().is_some_and(|n| n >= 3),
        "server-wide: {global}"
    );
    assert_eq!(
        eval(page, &format!("{org_chart}.querySelectorAll('.chart-bar').length > 0 && !!{org_chart}.querySelector('.chart-limit')")).await,
        true
    );
    // Readable against a limit of 50: every bar at least 14 units tall and
    // labelled with its count, the counts adding up to the three, and the
    // total written out.
    let bars = eval(
        page,
        &format!("(() => {{ const s = {org_chart}; const bars = [...s.querySelectorAll('.chart-bar')];
            return {{tall: bars.every(b => Number(b.getAttribute('height')) >= 14),
                     counted: [...s.querySelectorAll('.chart-count')].reduce((n, c) => n + Number(c.textContent), 0),
                     labels: s.querySelectorAll('.chart-count').length === bars.length,
                     used: s.querySelector('.chart-used').textContent}}; }})()"),
    )
    .await;
    assert_eq!(
        bars,
        json!({"tall": true, "counted": 3, "labels": true, "used": "3 of 50 attempts used"}),
        "{bars}"
    );
    both_languages(
        page,
        "#admission-panel",
        "admission",
        "document.querySelector(\"[data-chart='tenant'][data-org-id='chart'] figcaption\").textContent === 'chart: intentos, últimas 24 h'",
    )
    .await;
    for id in &chart_sessions {
        let r = api
            .call(
                "POST",
                &format!("/api/v1/sessions/{id}/disconnect"),
                Cred::Token(&admin),
                None,
            )
            .await;
        assert!(r.status < 300, "{}", r.text);
    }

    dash.close().await;
    demo.server.shutdown().await.expect("shutdown");
}

/// A first visit: no session anywhere says what to do next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tenant_user_is_told_the_next_step() {
    let _slot = browser_slot().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = demo_server(dir.path(), ControlAccess::Open, |_| {}).await;
    let api = Api::new(&demo.server.url(""));
    let admin = api.login("admin", PASSWORD).await;
    api.tenant_with_user(&admin, "nuevo").await;
    let dash = Dashboard::open(dir.path(), demo.addr).await;
    let page = &dash.page;
    log_in_as(page, "nuevo-user", "tenant-password-1").await;
    live(page).await;
    wait(
        page,
        "the empty state with the next step",
        "!document.querySelector('#sessions-empty').hidden && document.querySelector('#sessions-empty').textContent.includes('press Create') && document.querySelector('#sessions-tools').hidden",
        30,
    )
    .await;
    both_languages(
        page,
        "#sessions-panel",
        "sessions-empty",
        "document.querySelector('#sessions-empty').textContent.includes('pulsa Crear')",
    )
    .await;
    dash.close().await;
    demo.server.shutdown().await.expect("shutdown");
}

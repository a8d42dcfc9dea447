//! Verification codes end to end, over a real server on 127.0.0.1:0 with
//! a temp data dir. The whole flow runs on the real webjs engine (real
//! Chromium) against the WhatsApp Web simulator: the code is read from
//! what the simulated phone received, typed back, and then looked for in
//! every log line, WebSocket event and answer of the run. The API's errors
//! and limits run on the scripted engine (they are about the HTTP layer);
//! the time rules (10 min, 60 s, 24 h, 1 h) are tested on a manual clock
//! in `actors/src/otp/service_tests.rs`.

mod common;

use centinela::{engines_for, AdminBootstrap, Services};
use centinela_actors::engine::scripted::ScriptedEngine;
use common::api::{api_config, start_api, Api, Cred, Res, Ws, ADMIN, ADMIN_PASSWORD};
use common::browser::{browser_slot, engine_config, Sim};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The session's own number, and the number being verified.
const OWN: &str = "5491122334455";
const PHONE: &str = "+5491122334466";

/// Every log line of this test binary, as an operator at debug level on
/// Centinela's crates would read them.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let buf = buf.clone();
            move || Tee(buf.clone())
        };
        let filter = tracing_subscriber::EnvFilter::new(
            "info,centinela=debug,centinela_actors=debug,centinela_web=debug,centinela_engine_webjs=debug",
        );
        let subscriber = tracing_subscriber::registry()
            .with(centinela_web::logstream::layer())
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_ansi(false)
                    .with_filter(filter),
            );
        tracing::subscriber::set_global_default(subscriber)
            .expect("the first subscriber of this test binary");
        buf
    })
}

use tracing_subscriber::Layer;

struct Tee(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Tee {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

/// The events a socket showed, kept for the final search.
struct Seen<'a> {
    ws: &'a mut Ws,
    all: RefCell<Vec<String>>,
}

impl<'a> Seen<'a> {
    fn new(ws: &'a mut Ws) -> Self {
        Seen {
            ws,
            all: RefCell::new(Vec::new()),
        }
    }

    async fn next(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let all = &self.all;
        self.ws
            .next(|v| {
                all.borrow_mut().push(v.to_string());
                pred(v)
            })
            .await
    }
}

async fn ask(api: &Api, cred: Cred<'_>, session: &str, phone: &str) -> Res {
    api.call(
        "POST",
        "/api/v1/otp",
        cred,
        Some(json!({"phone": phone, "session_id": session, "purpose": "registration"})),
    )
    .await
}

async fn verify(api: &Api, cred: Cred<'_>, otp: &str, code: &str) -> Res {
    api.call(
        "POST",
        &format!("/api/v1/otp/{otp}/verify"),
        cred,
        Some(json!({"code": code})),
    )
    .await
}

fn code_in(text: &str) -> String {
    let code = text.split(' ').next().expect("the code comes first");
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{text}"
    );
    code.to_owned()
}

/// Any 6-digit code other than `code`.
fn wrong(code: &str) -> &'static str {
    if code == "000000" {
        "000001"
    } else {
        "000000"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_through_a_webjs_session_reaches_the_phone_verifies_once_and_shows_nowhere() {
    logs();
    let _slot = browser_slot().await;
    let sim = Sim::start(Duration::from_secs(60)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = engine_config(dir.path(), &sim.wa_url());
    config.messaging.send_delay_min = Duration::ZERO;
    config.messaging.send_delay_max = Duration::from_millis(50);
    let services = Services {
        engines: engines_for(&config),
        admin: AdminBootstrap::Given {
            username: ADMIN.into(),
            password: ADMIN_PASSWORD.into(),
        },
        ..Services::default()
    };
    let server = common::start(config, services).await;
    let api = Api::new(&server.url(""));
    let admin = api.login(ADMIN, ADMIN_PASSWORD).await;
    let (token, _) = api.tenant_with_user(&admin, "clinic").await;
    let id = api.create_session(&token, None, "desk").await;
    let mut tenant_ws = Ws::connect(&api.base, &format!("token={token}")).await;
    let mut admin_ws = Ws::connect(&api.base, &format!("token={admin}&logs=1")).await;
    let r = api.session_action(&token, &id, "connect").await;
    assert!(r.status == 200 || r.status == 202, "{}", r.text);
    let mut qr = tenant_ws.until_state(&id, "QR").await;
    let device = loop {
        let code = qr["to"]["code"].as_str().expect("a QR code").to_owned();
        let (status, body) = sim
            .post("/sim/scan", json!({"qr": code, "phone": OWN}))
            .await;
        if status == 200 {
            break body["device_id"].as_str().expect("device").to_owned();
        }
        assert_eq!(status, 404, "{body}");
        qr = tenant_ws.until_state(&id, "QR").await;
    };
    tenant_ws.until_state(&id, "READY").await;
    let mut tenant = Seen::new(&mut tenant_ws);
    let mut admins = Seen::new(&mut admin_ws);
    let mut answers = Vec::new();

    let r = ask(&api, Cred::Token(&token), &id, "+54 9 11 2233-4466").await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["phone"], PHONE, "E.164");
    assert_eq!(r.body["attempts_left"], 3);
    assert_eq!(r.body["status"], "pending");
    let otp = r.body["id"].as_str().expect("id").to_owned();
    let at = |k: &str| {
        centinela_actors::clock::Timestamp::parse_rfc3339(r.body[k].as_str().expect(k))
            .expect("a time")
    };
    assert_eq!(
        at("expires_at").since(at("created_at")),
        Duration::from_secs(600)
    );
    assert_eq!(
        at("resend_at").since(at("created_at")),
        Duration::from_secs(60)
    );
    let message = r.body["message_id"].as_str().expect("message").to_owned();
    answers.push(r.text.clone());

    let sent = tenant
        .next(|v| v["type"] == "otp.sent" && v["otp_id"] == otp.as_str())
        .await;
    assert_eq!(sent["session_id"], id.as_str());
    // What the simulated phone's server received from the page.
    let received = sim.get(&format!("/sim/devices/{device}/sent")).await;
    let text = received
        .as_array()
        .and_then(|l| l.iter().find(|m| m["to"] == PHONE.trim_start_matches('+')))
        .and_then(|m| m["text"].as_str())
        .unwrap_or_else(|| panic!("the phone got no code: {received}"))
        .to_owned();
    let code = code_in(&text);
    assert_eq!(
        text,
        format!("{code} es tu código de verificación de Centinela")
    );

    let r = verify(&api, Cred::Token(&token), &otp, wrong(&code)).await;
    assert_eq!(
        (
            r.status,
            r.body["error"]["code"].clone(),
            r.body["error"]["attempts_left"].clone()
        ),
        (400, json!("invalid_code"), json!(2)),
        "{}",
        r.text
    );
    answers.push(r.text.clone());
    let failed = tenant.next(|v| v["type"] == "otp.failed").await;
    assert_eq!(failed["reason"], "invalid_code");
    let r = verify(&api, Cred::Token(&token), &otp, &code).await;
    assert_eq!(
        (r.status, r.body["verified"].clone()),
        (200, json!(true)),
        "{}",
        r.text
    );
    answers.push(r.text.clone());
    let r = verify(&api, Cred::Token(&token), &otp, &code).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (409, json!("already_used")),
        "single use: {}",
        r.text
    );
    answers.push(r.text.clone());
    tenant.next(|v| v["type"] == "otp.verified").await;
    admins.next(|v| v["type"] == "otp.verified").await;

    let r = api
        .call(
            "GET",
            &format!("/api/v1/otp/{otp}"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(r.body["status"], "verified", "{}", r.text);
    answers.push(r.text.clone());
    let r = api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}/messages/{message}"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(
        (r.body["status"].clone(), r.body["text"].clone()),
        (json!("sent"), json!("[verification code redacted]")),
        "{}",
        r.text
    );
    answers.push(r.text.clone());
    let r = api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}/messages"),
            Cred::Token(&token),
            None,
        )
        .await;
    answers.push(r.text.clone());
    let r = api.call("GET", "/metrics", Cred::Token(&admin), None).await;
    assert!(
        r.text
            .contains("centinela_otp_events_total{event=\"otp.verified\",reason=\"\"} 1"),
        "{}",
        r.text
    );

    // The code is where it was sent, and nowhere else.
    let events: Vec<String> = tenant
        .all
        .take()
        .into_iter()
        .chain(admins.all.take())
        .collect();
    assert!(
        events.iter().any(|e| e.contains(&otp)),
        "the search covers the OTP's events"
    );
    for e in &events {
        assert!(!e.contains(&code), "an event shows the code: {e}");
    }
    for a in &answers {
        assert!(!a.contains(&code), "an answer shows the code: {a}");
    }
    let logged = log_text();
    assert!(
        logged.contains(&otp),
        "the search covers the OTP's log lines"
    );
    for line in logged.lines() {
        assert!(!line.contains(&code), "a log line shows the code: {line}");
    }
    server.shutdown().await.expect("shutdown");
}

/// Tenant `tenant`'s READY session on the scripted engine: (token, id, ws).
async fn ready(s: &common::api::ApiServer, tenant: &str) -> (String, String, Ws) {
    let r = s.ready_session(tenant).await;
    (r.token, r.id, r.ws)
}

/// The code the scripted engine was handed for OTP `otp` (after its
/// `otp.sent`).
async fn code_of(s: &common::api::ApiServer, ws: &mut Ws, otp: &str, phone: &str) -> String {
    ws.next(|v| v["type"] == "otp.sent" && v["otp_id"] == otp)
        .await;
    let digits = phone.trim_start_matches('+');
    let sent = s.engine.sent();
    let (_, _, text) = sent
        .iter()
        .rev()
        .find(|(_, to, _)| to == digits)
        .expect("a code was sent");
    code_in(text)
}

#[tokio::test]
async fn verification_answers_every_error_with_its_status_and_code() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    config.messaging.send_delay_min = Duration::ZERO;
    config.messaging.send_delay_max = Duration::from_millis(20);
    config.messaging.typing_chars_per_second = 0;
    let s = start_api(config, ScriptedEngine::new(), None).await;
    let (token, id, mut ws) = ready(&s, "clinic").await;
    let (other, _, _) = ready(&s, "bakery").await;
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;

    for (phone, why) in [
        ("5491100000007", "no country code"),
        ("+54 12", "too short for Argentina"),
        ("+hola", "not a number"),
    ] {
        let r = ask(&s.api, Cred::Token(&token), &id, phone).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].clone()),
            (400, json!("invalid_phone")),
            "{why}: {}",
            r.text
        );
    }
    let r = ask(&s.api, Cred::Token(&other), &id, PHONE).await;
    assert_eq!(r.status, 403, "another tenant's session: {}", r.text);
    let r = ask(&s.api, Cred::Token(&token), "s_nope", PHONE).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = s
        .api
        .call(
            "POST",
            "/api/v1/otp",
            Cred::Token(&token),
            Some(json!({"phone": PHONE, "session_id": id, "purpose": "marketing"})),
        )
        .await;
    assert_eq!(r.status, 400, "an unknown purpose: {}", r.text);

    let r = ask(&s.api, Cred::Token(&token), &id, PHONE).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let otp = r.body["id"].as_str().expect("id").to_owned();
    let code = code_of(&s, &mut ws, &otp, PHONE).await;

    let r = s
        .api
        .call(
            "GET",
            &format!("/api/v1/otp/{otp}"),
            Cred::Token(&other),
            None,
        )
        .await;
    assert_eq!(r.status, 403, "invisible to another tenant: {}", r.text);
    assert!(!r.text.contains(PHONE));
    let r = verify(&s.api, Cred::Token(&other), &otp, &code).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = s
        .api
        .call(
            "GET",
            &format!("/api/v1/otp/{otp}"),
            Cred::Token(&admin),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.body["phone"].clone()),
        (200, json!(PHONE)),
        "admins see all"
    );
    let r = verify(&s.api, Cred::Token(&token), "otp_nope", &code).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = s
        .api
        .call(
            "POST",
            &format!("/api/v1/otp/{otp}/verify"),
            Cred::Token(&token),
            Some(json!({"code": 123456})),
        )
        .await;
    assert_eq!(r.status, 400, "a code is a string: {}", r.text);

    let r = s
        .api
        .call(
            "POST",
            &format!("/api/v1/otp/{otp}/resend"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["reason"].clone()),
        (429, json!("resend_cooldown")),
        "{}",
        r.text
    );
    let retry: u64 = r.headers["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");

    for left in [2, 1] {
        let r = verify(&s.api, Cred::Token(&token), &otp, wrong(&code)).await;
        assert_eq!(
            (
                r.status,
                r.body["error"]["code"].clone(),
                r.body["error"]["attempts_left"].clone()
            ),
            (400, json!("invalid_code"), json!(left)),
            "{}",
            r.text
        );
    }
    let r = verify(&s.api, Cred::Token(&token), &otp, wrong(&code)).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (400, json!("too_many_attempts")),
        "{}",
        r.text
    );
    let r = verify(&s.api, Cred::Token(&token), &otp, &code).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (400, json!("too_many_attempts")),
        "voided: even the right code: {}",
        r.text
    );

    // A new code voids the phone's previous one.
    let first = ask(&s.api, Cred::Token(&token), &id, "+5491122334467").await;
    let first_id = first.body["id"].as_str().expect("id").to_owned();
    let first_code = code_of(&s, &mut ws, &first_id, "+5491122334467").await;
    let second = ask(&s.api, Cred::Token(&token), &id, "+5491122334467").await;
    assert_eq!(second.status, 201, "{}", second.text);
    let r = verify(&s.api, Cred::Token(&token), &first_id, &first_code).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (410, json!("superseded")),
        "{}",
        r.text
    );

    // A session that is not READY sends no code.
    let r = s.api.session_action(&token, &id, "disconnect").await;
    assert!(r.status < 300, "{}", r.text);
    ws.until_state(&id, "DISCONNECTED").await;
    let r = ask(&s.api, Cred::Token(&token), &id, "+5491122334468").await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (409, json!("not_ready")),
        "{}",
        r.text
    );
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_phone_and_address_limits_answer_429_and_a_restart_keeps_them_and_the_pending_code() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    config.messaging.send_delay_min = Duration::ZERO;
    config.messaging.send_delay_max = Duration::from_millis(20);
    config.messaging.typing_chars_per_second = 0;
    config.otp.per_phone_per_day = 2;
    config.otp.per_address_per_hour = 4;
    // The client address is the proxy's client, as client_addr.rs reads it.
    config.server.trusted_proxies =
        centinela_actors::cidr::CidrSet::parse(["127.0.0.1/32"]).expect("cidr");
    let engine = ScriptedEngine::new();
    let s = start_api(config.clone(), engine.clone(), None).await;
    let (token, id, mut ws) = ready(&s, "clinic").await;
    let from = |client: &'static str, phone: &'static str| {
        let (api, token, id) = (s.api.clone(), token.clone(), id.clone());
        async move {
            let res = api
                .http
                .post(format!("{}/api/v1/otp", api.base))
                .bearer_auth(&token)
                .header("x-forwarded-for", client)
                .json(&json!({"phone": phone, "session_id": id, "purpose": "login"}))
                .send()
                .await
                .expect("request");
            let status = res.status().as_u16();
            let retry = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().expect("text").parse::<u64>().expect("seconds"));
            let body: Value = res.json().await.expect("json");
            (status, body, retry)
        }
    };
    let (status, first, _) = from("203.0.113.1", PHONE).await;
    assert_eq!(status, 201, "{first}");
    let (status, pending, _) = from("203.0.113.2", PHONE).await;
    assert_eq!(status, 201, "{pending}");
    let (status, body, retry) = from("203.0.113.3", PHONE).await;
    assert_eq!(
        (
            status,
            body["error"]["code"].clone(),
            body["error"]["reason"].clone()
        ),
        (429, json!("phone_limit"), json!("phone_limit")),
        "the third code to one phone in a day: {body}"
    );
    let retry = retry.expect("Retry-After");
    assert!((86_000..=86_400).contains(&retry), "{retry}");
    assert_eq!(body["error"]["wait_time_minutes"], 1440);

    for phone in ["+5491122334471", "+5491122334472"] {
        let (status, body, _) = from("203.0.113.1", phone).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body, _) = from("203.0.113.1", "+5491122334473").await;
    assert_eq!(status, 201, "the fourth from this address: {body}");
    let (status, body, retry) = from("203.0.113.1", "+5491122334474").await;
    assert_eq!(
        (status, body["error"]["reason"].clone()),
        (429, json!("address_limit")),
        "the fifth from one address in an hour: {body}"
    );
    assert!((3_500..=3_600).contains(&retry.expect("Retry-After")));
    let (status, body, _) = from("203.0.113.9", "+5491122334474").await;
    assert_eq!(status, 201, "another client behind the same proxy: {body}");

    let otp = pending["id"].as_str().expect("id").to_owned();
    let code = code_of(&s, &mut ws, &otp, PHONE).await;
    drop(ws);
    s.server.shutdown().await.expect("shutdown");

    // A restart on the same data dir resets nothing.
    let again = start_api(config, engine, None).await;
    let admin = again.api.login(ADMIN, ADMIN_PASSWORD).await;
    let mut ws = Ws::connect(&again.api.base, &format!("token={admin}")).await;
    let r = again
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}"),
            Cred::Token(&admin),
            None,
        )
        .await;
    if r.body["state"] != "READY" {
        ws.until_state(&id, "READY").await;
    }
    let res = again
        .api
        .http
        .post(format!("{}/api/v1/otp", again.api.base))
        .bearer_auth(&admin)
        .header("x-forwarded-for", "203.0.113.50")
        .json(&json!({"phone": PHONE, "session_id": id, "purpose": "login"}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 429, "the phone's limit survived");
    let r = verify(&again.api, Cred::Token(&admin), &otp, &code).await;
    assert_eq!(
        (r.status, r.body["verified"].clone()),
        (200, json!(true)),
        "{}",
        r.text
    );
    again.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn what_became_of_a_code_reaches_the_tenants_webhook_without_the_code() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    config.messaging.send_delay_min = Duration::ZERO;
    config.messaging.send_delay_max = Duration::from_millis(20);
    config.messaging.typing_chars_per_second = 0;
    // The receiver is on 127.0.0.1: this operator allows it.
    config.webhooks.allow_private =
        centinela_actors::cidr::CidrSet::parse(["127.0.0.0/8"]).expect("a CIDR");
    let s = start_api(config, ScriptedEngine::new(), None).await;
    let (token, id, mut ws) = ready(&s, "clinic").await;
    let mut hook = common::hook::receiver().await;
    let secret = "a-webhook-secret-of-some-length";
    let r = s
        .api
        .call(
            "PUT",
            "/api/v1/tenants/clinic/webhook",
            Cred::Token(&token),
            Some(json!({"url": hook.url, "secret": secret})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let r = ask(&s.api, Cred::Token(&token), &id, PHONE).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let otp = r.body["id"].as_str().expect("id").to_owned();
    let code = code_of(&s, &mut ws, &otp, PHONE).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(
        verify(&s.api, Cred::Token(&token), &otp, wrong)
            .await
            .status,
        400
    );
    assert_eq!(
        verify(&s.api, Cred::Token(&token), &otp, &code)
            .await
            .status,
        200
    );

    // Deliveries go in order in the tenant's lane; message statuses of
    // the code's message come through too, so read until all three.
    let mut seen = Vec::new();
    let mut bodies = Vec::new();
    while seen.len() < 3 {
        let (_, body) = hook.next(secret).await;
        bodies.push(body.to_string());
        if body["otp_id"] == otp.as_str() {
            seen.push(body);
        }
    }
    let kinds: Vec<_> = seen.iter().map(|b| b["event"].clone()).collect();
    assert_eq!(
        kinds,
        [
            json!("otp.sent"),
            json!("otp.failed"),
            json!("otp.verified")
        ]
    );
    assert_eq!(
        (seen[1]["reason"].clone(), seen[1]["attempts_left"].clone()),
        (json!("invalid_code"), json!(2))
    );
    assert_eq!(seen[2]["session_id"], id.as_str());
    for b in &bodies {
        assert!(!b.contains(&code), "a webhook body carries the code: {b}");
    }
    s.server.shutdown().await.expect("shutdown");
}

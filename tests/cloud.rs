//! The cloud engine end to end: the real engine (HTTP to the Graph API)
//! against the Graph simulator mounted on the same real server, and Meta's
//! webhooks signed by the simulator (or by this test, for the bad ones)
//! arriving at `/webhooks/meta` over HTTP. No waiting by sleeping: every
//! wait is for a WebSocket event or a response, with a timeout.

mod common;

use centinela::{AdminBootstrap, Demo, Services};
use centinela_web::sim::{ControlAccess, Simulator};
use common::api::{api_config, Api, Cred, Res, Ws};
use common::{start_on, Server};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::Duration;

const ADMIN: &str = "root";
const PASSWORD: &str = "correct-horse-battery";
const PNID: &str = "200000000000001";
const DISPLAY: &str = "15550002222";
const TOKEN: &str = "EAAG-test-access-token-0001";
const APP_SECRET: &str = "test-app-secret-0001";
const VERIFY: &str = "test-verify-token-0001";

/// A server in demo mode (so the Graph simulator is mounted) whose cloud
/// engine calls that simulator; a tenant `acme` with a user.
struct World {
    server: Server,
    api: Api,
    token: String,
    _dir: tempfile::TempDir,
    data_dir: std::path::PathBuf,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let (server, api) = serve(api_config(&data_dir)).await;
    let admin = api.login(ADMIN, PASSWORD).await;
    let (token, _) = api.tenant_with_user(&admin, "acme").await;
    let w = World {
        server,
        api,
        token,
        _dir: dir,
        data_dir,
    };
    w.add_number().await;
    w
}

/// A demo-mode server on `config` whose cloud engine calls its own
/// Graph simulator.
async fn serve(mut config: centinela::config::Config) -> (Server, Api) {
    centinela_web::logstream::install_global();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    centinela::point_at_simulator(&mut config, addr);
    // Backoffs of a second: the retry rules, not the waiting, are tested.
    config.engine.cloud_pair_interval = Duration::from_secs(1);
    let services = Services {
        demo: Some(Demo {
            simulator: Simulator::new(Duration::from_secs(20)),
            control: ControlAccess::Open,
        }),
        admin: AdminBootstrap::Given {
            username: ADMIN.into(),
            password: PASSWORD.into(),
        },
        ..Services::default()
    };
    let server = start_on(listener, config, services);
    let api = Api::new(&server.url(""));
    (server, api)
}

impl World {
    /// The test's number on the Graph simulator (in memory: again after
    /// each start).
    async fn add_number(&self) {
        let r = self
        .sim("POST", "/sim/graph/numbers", json!({"phone_number_id": PNID, "display_phone_number": DISPLAY, "access_token": TOKEN, "app_secret": APP_SECRET}))
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }

    async fn sim(&self, method: &str, path: &str, body: Value) -> Res {
        self.api.call(method, path, Cred::None, Some(body)).await
    }

    async fn create(&self, access_token: &str) -> Res {
        self.api
            .call(
                "POST",
                "/api/v1/sessions",
                Cred::Token(&self.token),
                Some(json!({"name": "cloud desk", "engine": "cloud", "cloud": {
                    "phone_number_id": PNID, "access_token": access_token,
                    "app_secret": APP_SECRET, "verify_token": VERIFY}})),
            )
            .await
    }

    /// A cloud session, connected and READY; its id and a WebSocket.
    async fn ready(&self) -> (String, Ws) {
        let r = self.create(TOKEN).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let id = r.body["id"].as_str().expect("id").to_owned();
        let mut ws = Ws::connect(&self.api.base, &format!("token={}", self.token)).await;
        let c = self.api.session_action(&self.token, &id, "connect").await;
        assert!(c.status == 200 || c.status == 202, "{}", c.text);
        let ready = ws.until_state(&id, "READY").await;
        assert_eq!(ready["to"]["me"], DISPLAY);
        (id, ws)
    }

    async fn send(&self, id: &str, body: Value) -> String {
        let r = self
            .api
            .call(
                "POST",
                &format!("/api/v1/sessions/{id}/messages"),
                Cred::Token(&self.token),
                Some(body),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
        r.body["id"].as_str().expect("id").to_owned()
    }

    async fn message(&self, id: &str, mid: &str) -> Value {
        let r = self
            .api
            .call(
                "GET",
                &format!("/api/v1/sessions/{id}/messages/{mid}"),
                Cred::Token(&self.token),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body
    }

    async fn inbox(&self, id: &str) -> Vec<Value> {
        let r = self
            .api
            .call(
                "GET",
                &format!("/api/v1/sessions/{id}/inbox"),
                Cred::Token(&self.token),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["messages"].as_array().expect("messages").clone()
    }

    /// Sends `body` to `/webhooks/meta` as Meta would, with `signature`.
    async fn webhook(&self, body: &[u8], signature: Option<&str>) -> Res {
        let mut req = self
            .api
            .http
            .post(self.server.url("/webhooks/meta"))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(s) = signature {
            req = req.header("x-hub-signature-256", s);
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
}

/// Waits for message `mid` to reach `status` on the WebSocket.
async fn until_status(ws: &mut Ws, mid: &str, status: &str) -> Value {
    ws.next(|v| v["type"] == "message_status" && v["message_id"] == mid && v["status"] == status)
        .await
}

/// HMAC-SHA256 as Meta signs (independent of the engine's own code).
fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// An inbound text from `from`, in Meta's envelope for our number.
fn inbound_payload(wamid: &str, from: &str, text: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": DISPLAY, "phone_number_id": PNID},
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": from}],
            "messages": [{"from": from, "id": wamid, "timestamp": "1700000000", "type": "text", "text": {"body": text}}]
        }}]}]
    }))
    .expect("json")
}

async fn sent_bodies(w: &World) -> Vec<Value> {
    let r = w
        .api
        .call("GET", "/sim/graph/messages", Cred::None, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["messages"].as_array().expect("messages").clone()
}

#[tokio::test]
async fn a_cloud_session_goes_ready_and_sends_a_text_and_a_template_with_its_token() {
    let w = world().await;
    let r = w.create(TOKEN).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["engine"], "cloud");
    assert_eq!(r.body["cloud"]["phone_number_id"], PNID);
    assert_eq!(r.body["cloud"]["access_token"], "***");
    assert!(!r.text.contains(TOKEN) && !r.text.contains(APP_SECRET) && !r.text.contains(VERIFY));
    let id = r.body["id"].as_str().expect("id").to_owned();
    let mut ws = Ws::connect(&w.api.base, &format!("token={}", w.token)).await;
    w.api.session_action(&w.token, &id, "connect").await;
    let ready = ws.until_state(&id, "READY").await;
    assert_eq!(ready["to"]["me"], DISPLAY);
    assert_eq!(w.api.session(&w.token, &id).await["phone"], DISPLAY);

    let text = w
        .send(&id, json!({"to": "+54 9 11 2233-4455", "text": "hola"}))
        .await;
    let template = w
        .send(
            &id,
            json!({"to": "5491199998888", "template": {"name": "order_ready", "language": {"code": "es_AR"},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "42"}]}]}}),
        )
        .await;
    until_status(&mut ws, &text, "sent").await;
    until_status(&mut ws, &template, "sent").await;
    let sent = sent_bodies(&w).await;
    // Only sends with the session's bearer token are accepted by the
    // simulator, so two recorded sends are two right tokens.
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0]["version"], "v20.0");
    assert_eq!(
        sent[0]["body"],
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "5491122334455",
               "type": "text", "text": {"preview_url": false, "body": "hola"}})
    );
    assert_eq!(sent[1]["body"]["type"], "template");
    assert_eq!(
        sent[1]["body"]["template"],
        json!({"name": "order_ready", "language": {"code": "es_AR"},
               "components": [{"type": "body", "parameters": [{"type": "text", "text": "42"}]}]})
    );
    let m = w.message(&id, &text).await;
    assert_eq!(m["status"], "sent");
    let t = w.message(&id, &template).await;
    assert_eq!(
        (t["text"].clone(), t["template"]["name"].clone()),
        (json!(""), json!("order_ready"))
    );
    w.server.shutdown().await.expect("shutdown");

    // At rest the secrets are sealed: the database holds none of them.
    let db = std::fs::read(w.data_dir.join("centinela.redb")).expect("database");
    let has = |s: &str| db.windows(s.len()).any(|win| win == s.as_bytes());
    assert!(has(PNID), "the record is there");
    assert!(
        !has(TOKEN) && !has(APP_SECRET) && !has(VERIFY),
        "no secret in the clear"
    );
}

#[tokio::test]
async fn statuses_arrive_signed_and_move_ours_and_inbound_messages_reach_the_inbox_once() {
    let w = world().await;
    let (id, mut ws) = w.ready().await;
    let mid = w
        .send(&id, json!({"to": "5491122334455", "text": "turno"}))
        .await;
    until_status(&mut ws, &mid, "sent").await;
    let wamid = sent_bodies(&w).await[0]["wamid"]
        .as_str()
        .expect("wamid")
        .to_owned();
    for status in ["delivered", "read"] {
        let r = w
            .sim(
                "POST",
                "/sim/graph/status",
                json!({"wamid": wamid, "status": status}),
            )
            .await;
        assert_eq!(
            (r.status, r.body["webhook_status"].clone()),
            (200, json!(200)),
            "{}",
            r.text
        );
        until_status(&mut ws, &mid, status).await;
    }
    assert_eq!(w.message(&id, &mid).await["status"], "read");
    // A late "delivered" (Meta retries for days) moves nothing back.
    let r = w
        .sim(
            "POST",
            "/sim/graph/status",
            json!({"wamid": wamid, "status": "delivered"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(w.message(&id, &mid).await["status"], "read");

    let r = w
        .sim(
            "POST",
            "/sim/graph/inbound",
            json!({"phone_number_id": PNID, "from": "5491177776666", "text": "hay turno?"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["webhook_status"].clone()),
        (200, json!(200)),
        "{}",
        r.text
    );
    let m = ws
        .next(|v| v["type"] == "message_in" && v["session_id"] == id.as_str())
        .await;
    assert_eq!(
        (m["from"].clone(), m["text"].clone()),
        (json!("5491177776666"), json!("hay turno?"))
    );
    assert_eq!(w.inbox(&id).await.len(), 1);

    // The same delivery twice: handed over once.
    let body = inbound_payload("wamid.DUP1", "5491155554444", "dos veces");
    let first = w.webhook(&body, Some(&sign(APP_SECRET, &body))).await;
    assert_eq!(
        (first.status, first.body["events"].clone()),
        (200, json!(1)),
        "{}",
        first.text
    );
    ws.next(|v| v["type"] == "message_in" && v["id"] == "wamid.DUP1")
        .await;
    let again = w.webhook(&body, Some(&sign(APP_SECRET, &body))).await;
    assert_eq!(
        (
            again.status,
            again.body["events"].clone(),
            again.body["duplicates"].clone()
        ),
        (200, json!(0), json!(1)),
        "{}",
        again.text
    );
    assert_eq!(w.inbox(&id).await.len(), 2);
    w.server.shutdown().await.expect("shutdown");
}

/// 200 means kept: a message answered 200 is in the inbox, and one Meta
/// delivers again after our restart is kept once. A stopped session's
/// number is answered 503 with Retry-After (Meta retries for days), so
/// what comes while it is stopped arrives when it runs again.
#[tokio::test]
async fn a_stopped_sessions_number_is_asked_to_retry_and_a_retry_after_a_restart_is_kept_once() {
    let w = world().await;
    let (id, mut ws) = w.ready().await;
    let body = inbound_payload("wamid.KEPT1", "5491155554444", "antes");
    let r = w.webhook(&body, Some(&sign(APP_SECRET, &body))).await;
    assert_eq!(
        (r.status, r.body["events"].clone()),
        (200, json!(1)),
        "{}",
        r.text
    );
    assert_eq!(
        w.inbox(&id).await.len(),
        1,
        "in the inbox when 200 is answered"
    );

    let d = w.api.session_action(&w.token, &id, "disconnect").await;
    assert_eq!(d.status, 200, "{}", d.text);
    ws.until_state(&id, "DISCONNECTED").await;
    let later = inbound_payload("wamid.KEPT2", "5491155554444", "mientras");
    let r = w.webhook(&later, Some(&sign(APP_SECRET, &later))).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (503, json!("session_stopped")),
        "{}",
        r.text
    );
    assert_eq!(
        r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("60")
    );
    assert_eq!(
        w.inbox(&id).await.len(),
        1,
        "nothing kept for a stopped session"
    );
    w.server.shutdown().await.expect("shutdown");

    // Our restart; Meta delivers both again.
    let (server, api) = serve(api_config(&w.data_dir)).await;
    let w = World {
        server,
        api,
        token: w.token.clone(),
        _dir: w._dir,
        data_dir: w.data_dir.clone(),
    };
    w.add_number().await;
    let mut ws = Ws::connect(&w.api.base, &format!("token={}", w.token)).await;
    let c = w.api.session_action(&w.token, &id, "connect").await;
    assert!(c.status == 200 || c.status == 202, "{}", c.text);
    ws.until_state(&id, "READY").await;
    let r = w.webhook(&body, Some(&sign(APP_SECRET, &body))).await;
    assert_eq!(
        (
            r.status,
            r.body["events"].clone(),
            r.body["duplicates"].clone()
        ),
        (200, json!(0), json!(1)),
        "kept before the restart: {}",
        r.text
    );
    let r = w.webhook(&later, Some(&sign(APP_SECRET, &later))).await;
    assert_eq!(
        (r.status, r.body["events"].clone()),
        (200, json!(1)),
        "{}",
        r.text
    );
    let m = ws
        .next(|v| v["type"] == "message_in" && v["id"] == "wamid.KEPT2")
        .await;
    assert_eq!(m["text"], "mientras");
    let texts: Vec<Value> = w
        .inbox(&id)
        .await
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts, [json!("mientras"), json!("antes")]);
    w.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_bad_signature_is_401_and_changes_nothing_and_an_unknown_number_is_200() {
    let w = world().await;
    let (id, _ws) = w.ready().await;
    let body = inbound_payload("wamid.BAD1", "5491155554444", "forged");
    let wrong = w
        .webhook(&body, Some(&sign("not-the-app-secret", &body)))
        .await;
    assert_eq!(
        (wrong.status, wrong.body["error"]["code"].clone()),
        (401, json!("invalid_signature")),
        "{}",
        wrong.text
    );
    let missing = w.webhook(&body, None).await;
    assert_eq!(missing.status, 401);
    // Signed over other bytes than the ones sent.
    let other = inbound_payload("wamid.BAD1", "5491155554444", "forged!");
    let r = w.webhook(&body, Some(&sign(APP_SECRET, &other))).await;
    assert_eq!(r.status, 401);
    assert!(w.inbox(&id).await.is_empty(), "nothing came in");
    // The refused one was not remembered: signed right, it is new.
    let ok = w.webhook(&body, Some(&sign(APP_SECRET, &body))).await;
    assert_eq!(
        (ok.status, ok.body["events"].clone()),
        (200, json!(1)),
        "{}",
        ok.text
    );

    let unknown = serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"field": "messages",
        "value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "1", "phone_number_id": "999"}}}]}]}))
    .expect("json");
    let r = w.webhook(&unknown, None).await;
    assert_eq!(
        (r.status, r.body["unknown_number"].clone()),
        (200, json!(true)),
        "{}",
        r.text
    );
    let admin = w.api.login(ADMIN, PASSWORD).await;
    let m = w
        .api
        .call("GET", "/metrics", Cred::Token(&admin), None)
        .await;
    assert!(
        m.text
            .contains("centinela_meta_webhooks_unknown_number_total 1\n"),
        "{}",
        m.text
    );
    let junk = w.webhook(b"{not json", None).await;
    assert_eq!(
        (junk.status, junk.body["error"]["code"].clone()),
        (400, json!("malformed_webhook"))
    );
    w.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_handshake_echoes_the_challenge_only_to_a_sessions_verify_token() {
    let w = world().await;
    let _ready = w.ready().await;
    let url = |mode: &str, token: &str| {
        format!("/webhooks/meta?hub.mode={mode}&hub.verify_token={token}&hub.challenge=1158201444")
    };
    let r = w
        .api
        .call("GET", &url("subscribe", VERIFY), Cred::None, None)
        .await;
    assert_eq!((r.status, r.text.as_str()), (200, "1158201444"));
    let r = w
        .api
        .call("GET", &url("subscribe", "wrong"), Cred::None, None)
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = w
        .api
        .call("GET", &url("unsubscribe", VERIFY), Cred::None, None)
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = w.api.call("GET", "/webhooks/meta", Cred::None, None).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (400, json!("invalid_handshake"))
    );
    w.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn outside_the_window_a_text_fails_with_needs_template_and_refusals_keep_their_code() {
    let w = world().await;
    let (id, mut ws) = w.ready().await;
    let r = w
        .sim("POST", "/sim/graph/fail-next", json!({"code": 131047}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mid = w
        .send(&id, json!({"to": "5491122334455", "text": "hola"}))
        .await;
    until_status(&mut ws, &mid, "failed").await;
    assert_eq!(w.message(&id, &mid).await["error"], "needs_template");
    for (code, to) in [
        (131026, "5491100000001"),
        (131048, "5491100000002"),
        (131049, "5491100000003"),
    ] {
        w.sim("POST", "/sim/graph/fail-next", json!({"code": code}))
            .await;
        let mid = w.send(&id, json!({"to": to, "text": "hola"})).await;
        until_status(&mut ws, &mid, "failed").await;
        assert_eq!(
            w.message(&id, &mid).await["error"],
            format!("cloud_error_{code}")
        );
    }
    assert!(sent_bodies(&w).await.is_empty(), "Meta took none of them");
    w.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn throughput_and_pair_rate_refusals_are_retried_after_a_backoff() {
    let w = world().await;
    let (id, mut ws) = w.ready().await;
    for (code, to) in [(130429, "5491100000011"), (131056, "5491100000012")] {
        w.sim("POST", "/sim/graph/fail-next", json!({"code": code}))
            .await;
        let mid = w.send(&id, json!({"to": to, "text": "insisto"})).await;
        until_status(&mut ws, &mid, "deferred").await;
        let m = w.message(&id, &mid).await;
        assert_eq!(m["deferred"]["reason"], "rate_limited", "{m}");
        until_status(&mut ws, &mid, "sent").await;
    }
    assert_eq!(
        sent_bodies(&w).await.len(),
        2,
        "each went out once, on the retry"
    );
    w.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_sender_keeps_one_message_per_pair_interval_to_a_recipient_by_itself() {
    let w = world().await;
    let (id, mut ws) = w.ready().await;
    let first = w
        .send(&id, json!({"to": "5491100000021", "text": "uno"}))
        .await;
    let second = w
        .send(&id, json!({"to": "5491100000021", "text": "dos"}))
        .await;
    until_status(&mut ws, &first, "sent").await;
    // Our own limiter defers it (Meta never saw a second one too soon).
    until_status(&mut ws, &second, "deferred").await;
    assert_eq!(sent_bodies(&w).await.len(), 1);
    until_status(&mut ws, &second, "sent").await;
    assert_eq!(sent_bodies(&w).await.len(), 2);
    w.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn an_invalid_token_disconnects_the_session_and_its_messages_wait() {
    let w = world().await;
    let (id, mut ws) = w.ready().await;
    w.sim("POST", "/sim/graph/fail-next", json!({"code": 190}))
        .await;
    let mid = w
        .send(&id, json!({"to": "5491122334455", "text": "hola"}))
        .await;
    let gone = ws.until_state(&id, "DISCONNECTED").await;
    assert_eq!(gone["to"]["reason"], "token_invalid");
    let m = w.message(&id, &mid).await;
    assert_eq!(m["status"], "queued", "{m}");
    assert!(sent_bodies(&w).await.is_empty());

    // A session created with a wrong token never gets READY (another
    // number: one number has one session).
    let other = "200000000000009";
    let r = w
        .sim("POST", "/sim/graph/numbers", json!({"phone_number_id": other, "display_phone_number": "15550009999", "access_token": "EAAG-right-token-9", "app_secret": APP_SECRET}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = w
        .api
        .call(
            "POST",
            "/api/v1/sessions",
            Cred::Token(&w.token),
            Some(json!({"name": "wrong token", "engine": "cloud", "cloud": {
                "phone_number_id": other, "access_token": "EAAG-wrong-token",
                "app_secret": APP_SECRET, "verify_token": VERIFY}})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let bad = r.body["id"].as_str().expect("id").to_owned();
    w.api.session_action(&w.token, &bad, "connect").await;
    let t = ws
        .next(|v| {
            v["type"] == "transition"
                && v["session_id"] == bad.as_str()
                && v["to"]["state"] == "DISCONNECTED"
                && v["from"]["state"] != "DISCONNECTED"
        })
        .await;
    assert_eq!(t["to"]["reason"], "token_invalid");
    w.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bad_cloud_input_is_refused_with_a_code() {
    let w = world().await;
    let post = |body: Value| {
        let api = w.api.clone();
        let token = w.token.clone();
        async move {
            api.call("POST", "/api/v1/sessions", Cred::Token(&token), Some(body))
                .await
        }
    };
    let r = post(json!({"name": "c", "engine": "cloud"})).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (400, json!("missing_field"))
    );
    let r = post(json!({"name": "c", "engine": "webjs", "cloud": {"phone_number_id": "1", "access_token": "a", "app_secret": "b", "verify_token": "c"}})).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (400, json!("invalid_cloud"))
    );
    let r = post(json!({"name": "c", "engine": "cloud", "cloud": {"phone_number_id": "12ab", "access_token": "a", "app_secret": "b", "verify_token": "c"}})).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (400, json!("invalid_cloud"))
    );
    let r = post(json!({"name": "c", "engine": "cloud", "cloud": {"phone_number_id": "1", "access_token": "", "app_secret": "b", "verify_token": "c"}})).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (400, json!("invalid_cloud"))
    );
    let r = post(json!({"name": "c", "engine": "cloud", "cloud": {"phone_number_id": 1, "access_token": "a", "app_secret": "b", "verify_token": "c"}})).await;
    assert_eq!(r.status, 400);
    let r = post(json!({"name": "c", "engine": "cloud", "cloud": {"phone_number_id": "1", "access_token": "a", "app_secret": "b", "verify_token": "c", "api_version": "20"}})).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (400, json!("invalid_cloud"))
    );

    // One number, one session: Meta's webhooks name the number, so a
    // second session for it could never be fed (not even another tenant's).
    let first = w.create(TOKEN).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let again = w.create("EAAG-another-token").await;
    assert_eq!(
        (again.status, again.body["error"]["code"].clone()),
        (409, json!("phone_number_id_taken")),
        "{}",
        again.text
    );
    let admin = w.api.login(ADMIN, PASSWORD).await;
    let (other, _) = w.api.tenant_with_user(&admin, "globex").await;
    let r = w.api.call("POST", "/api/v1/sessions", Cred::Token(&other), Some(json!({"name": "theirs", "engine": "cloud", "cloud": {
        "phone_number_id": PNID, "access_token": TOKEN, "app_secret": APP_SECRET, "verify_token": VERIFY}}))).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (409, json!("phone_number_id_taken"))
    );
    assert!(
        !r.text.contains("acme"),
        "the refusal names no other tenant: {}",
        r.text
    );

    let web = w.api.create_session(&w.token, None, "webjs desk").await;
    let msg = |id: &str, body: Value| {
        let api = w.api.clone();
        let token = w.token.clone();
        let path = format!("/api/v1/sessions/{id}/messages");
        async move {
            api.call("POST", &path, Cred::Token(&token), Some(body))
                .await
        }
    };
    let t = json!({"name": "hello", "language": {"code": "en_US"}});
    let r = msg(&web, json!({"to": "5491122334455", "template": t})).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (400, json!("template_needs_cloud"))
    );
    let r = msg(
        &web,
        json!({"to": "5491122334455", "text": "x", "template": t}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (400, json!("invalid_content"))
    );
    let r = msg(&web, json!({"to": "5491122334455"})).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (400, json!("invalid_content"))
    );
    let r = msg(&web, json!({"to": "5491122334455", "template": {"name": "Bad Name", "language": {"code": "en_US"}}})).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (400, json!("invalid_template"))
    );
    let r = msg(
        &web,
        json!({"to": "5491122334455", "template": {"name": "x"}}),
    )
    .await;
    assert_eq!(r.status, 400);
    w.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_demo_has_a_ready_cloud_session_for_its_tenant() {
    let w = world().await;
    let admin = w.api.login(ADMIN, PASSWORD).await;
    let mut ws = Ws::connect(&w.api.base, &format!("token={admin}")).await;
    let r = w
        .api
        .call("GET", "/api/v1/sessions", Cred::Token(&admin), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sessions = r.body["sessions"].as_array().expect("sessions").clone();
    let cloud = sessions
        .iter()
        .find(|s| s["tenant_id"] == "demo" && s["engine"] == "cloud")
        .unwrap_or_else(|| panic!("a demo cloud session in {sessions:?}"));
    let id = cloud["id"].as_str().expect("id").to_owned();
    if cloud["state"] != "READY" {
        ws.until_state(&id, "READY").await;
    }
    let now = w.api.session(&admin, &id).await;
    assert_eq!(
        (now["state"].clone(), now["phone"].clone()),
        (json!("READY"), json!("15550001111"))
    );
    w.server.shutdown().await.expect("shutdown");
}

/// A key rotation: with the old key as `previous_secret_key` the sealed
/// secrets open and are sealed again under the new key at start; after
/// that the new key alone opens them, and the old one alone no longer.
#[tokio::test]
async fn a_rotated_secret_key_reseals_the_cloud_secrets_at_start() {
    let (old, new) = ("aa".repeat(32), "bb".repeat(32));
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let config = |key: &str, previous: Option<&str>| {
        let mut c = api_config(&data_dir);
        c.storage.secret_key = Some(key.to_owned());
        c.storage.previous_secret_key = previous.map(str::to_owned);
        c
    };
    let (server, api) = serve(config(&old, None)).await;
    let admin = api.login(ADMIN, PASSWORD).await;
    let (token, _) = api.tenant_with_user(&admin, "acme").await;
    let w = World {
        server,
        api,
        token,
        _dir: dir,
        data_dir: data_dir.clone(),
    };
    let r = w.create(TOKEN).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().expect("id").to_owned();
    w.server.shutdown().await.expect("shutdown");

    for (key, previous, want) in [
        (&new, Some(&old), "READY"),
        (&new, None, "READY"),
        (&old, None, "DISCONNECTED"),
    ] {
        let (server, api) = serve(config(key, previous.map(String::as_str))).await;
        let admin = api.login(ADMIN, PASSWORD).await;
        let r = api
            .call(
                "POST",
                "/sim/graph/numbers",
                Cred::None,
                Some(json!({"phone_number_id": PNID,
                "display_phone_number": DISPLAY, "access_token": TOKEN, "app_secret": APP_SECRET})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let mut ws = Ws::connect(&api.base, &format!("token={admin}")).await;
        let c = api.session_action(&admin, &id, "connect").await;
        assert!(c.status == 200 || c.status == 202, "{}", c.text);
        let t = ws
            .next(|v| {
                v["type"] == "transition"
                    && v["session_id"] == id.as_str()
                    && (v["to"]["state"] == "READY" || v["to"]["state"] == "DISCONNECTED")
            })
            .await;
        assert_eq!(
            t["to"]["state"], want,
            "key {key:.4}…, previous {previous:?}: {t}"
        );
        server.shutdown().await.expect("shutdown");
    }
}

/// `centinela sim --graph-webhook URL` serves the Graph simulator too,
/// playing the demo's number.
#[tokio::test]
async fn the_standalone_simulator_serves_the_graph_api_when_asked() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(centinela::run_simulators(
        centinela_web::sim::SimOptions::default(),
        false,
        Some("http://127.0.0.1:9/webhooks/meta".into()),
        listener,
        async move {
            let _ = rx.await;
        },
    ));
    let api = Api::new(&format!("http://{addr}"));
    let url = format!("/sim/graph/v20.0/{}", centinela::DEMO_PHONE_NUMBER_ID);
    let r = api
        .call("GET", &url, Cred::Token("demo-access-token"), None)
        .await;
    assert_eq!(
        (r.status, r.body["display_phone_number"].clone()),
        (200, json!("15550001111")),
        "{}",
        r.text
    );
    let r = api.call("GET", &url, Cred::Token("wrong"), None).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (401, json!(190)),
        "{}",
        r.text
    );
    let _ = tx.send(());
    task.await.expect("joined").expect("ran");
}

#[tokio::test]
async fn a_verification_code_goes_out_as_the_authentication_template_and_verifies_across_a_restart()
{
    let w = world().await;
    let (id, mut ws) = w.ready().await;
    let ask = |api: Api, token: String, id: String| async move {
        api.call(
            "POST",
            "/api/v1/otp",
            Cred::Token(&token),
            Some(json!({"phone": "+54 9 11 2233-4455", "session_id": id, "purpose": "login"})),
        )
        .await
    };
    // Five codes to one phone in a day (otp.per_phone_per_day): each
    // voids the one before; the fifth is the one typed back.
    let mut otp = String::new();
    for n in 1..=5 {
        let asked = ask(w.api.clone(), w.token.clone(), id.clone()).await;
        assert_eq!(asked.status, 201, "code {n}: {}", asked.text);
        otp = asked.body["id"].as_str().expect("id").to_owned();
    }
    ws.next(|v| v["type"] == "otp.sent" && v["otp_id"] == otp.as_str())
        .await;

    // What Meta received: the authentication template, the code once in
    // the body and once in the URL button.
    let sent = sent_bodies(&w).await;
    let body = &sent.last().expect("a send")["body"];
    assert_eq!(
        (body["type"].clone(), body["to"].clone()),
        (json!("template"), json!("5491122334455"))
    );
    let t = &body["template"];
    assert_eq!(t["name"], "verification_code");
    let code = t["components"][0]["parameters"][0]["text"]
        .as_str()
        .expect("the code in the body")
        .to_owned();
    assert!(
        code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()),
        "{code}"
    );
    assert_eq!(t["components"][1]["sub_type"], "url");
    assert_eq!(t["components"][1]["parameters"][0]["text"], code.as_str());

    // Nobody reading the session's messages sees it.
    let listed = w
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}/messages"),
            Cred::Token(&w.token),
            None,
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert!(!listed.text.contains(&code), "{}", listed.text);
    assert!(listed.text.contains("verification_code"), "{}", listed.text);

    let verify = |api: Api, token: String, otp: String, code: String| async move {
        api.call(
            "POST",
            &format!("/api/v1/otp/{otp}/verify"),
            Cred::Token(&token),
            Some(json!({"code": code})),
        )
        .await
    };
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let r = verify(w.api.clone(), w.token.clone(), otp.clone(), wrong.into()).await;
    assert_eq!(
        (r.status, r.body["error"]["attempts_left"].clone()),
        (400, json!(2)),
        "{}",
        r.text
    );
    w.server.shutdown().await.expect("shutdown");

    // A restart: the pending code, its tries and the phone's limit stay.
    let (server, api) = serve(api_config(&w.data_dir)).await;
    let w = World {
        server,
        api,
        token: w.token.clone(),
        _dir: w._dir,
        data_dir: w.data_dir.clone(),
    };
    w.add_number().await;
    let mut ws = Ws::connect(&w.api.base, &format!("token={}", w.token)).await;
    let c = w.api.session_action(&w.token, &id, "connect").await;
    assert!(c.status == 200 || c.status == 202, "{}", c.text);
    let now = w
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}"),
            Cred::Token(&w.token),
            None,
        )
        .await;
    if now.body["state"] != "READY" {
        ws.until_state(&id, "READY").await;
    }
    let sixth = ask(w.api.clone(), w.token.clone(), id.clone()).await;
    assert_eq!(
        (sixth.status, sixth.body["error"]["reason"].clone()),
        (429, json!("phone_limit")),
        "{}",
        sixth.text
    );
    let ok = verify(w.api.clone(), w.token.clone(), otp.clone(), code.clone()).await;
    assert_eq!(
        (ok.status, ok.body["verified"].clone()),
        (200, json!(true)),
        "{}",
        ok.text
    );
    w.server.shutdown().await.expect("shutdown");
}

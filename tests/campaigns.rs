//! Campaigns over the API with the scripted engine: rendered per recipient,
//! sent once each in order and paced like single sends, at most N running
//! server-wide, and pause, resume and cancel.

mod common;

use centinela_actors::engine::scripted::ScriptedEngine;
use common::api::{api_config, start_api, ApiServer, Cred, Ready, ADMIN, ADMIN_PASSWORD};
use serde_json::{json, Value};
use std::time::Duration;

fn recipients(n: usize) -> Value {
    json!((0..n)
        .map(|i| json!({"to": format!("54911000000{i:02}"), "vars": {"name": format!("P{i}")}}))
        .collect::<Vec<_>>())
}

async fn create(s: &ApiServer, r: &Ready, n: usize) -> String {
    let body = json!({"name": "turnos", "template": "Hola {name}", "recipients": recipients(n)});
    let res = s
        .api
        .call(
            "POST",
            &format!("/api/v1/sessions/{}/campaigns", r.id),
            Cred::Token(&r.token),
            Some(body),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    res.body["id"].as_str().expect("id").to_owned()
}

async fn act(s: &ApiServer, r: &Ready, cid: &str, action: &str) -> (u16, Value) {
    let res = s
        .api
        .call(
            "POST",
            &format!("/api/v1/sessions/{}/campaigns/{cid}/{action}", r.id),
            Cred::Token(&r.token),
            None,
        )
        .await;
    (res.status, res.body)
}

async fn get(s: &ApiServer, r: &Ready, cid: &str) -> Value {
    s.api
        .call(
            "GET",
            &format!("/api/v1/sessions/{}/campaigns/{cid}", r.id),
            Cred::Token(&r.token),
            None,
        )
        .await
        .body
}

/// Waits on message status events until the campaign reaches `status`.
async fn until(s: &ApiServer, r: &mut Ready, cid: &str, status: &str) -> Value {
    loop {
        let c = get(s, r, cid).await;
        if c["status"] == status {
            return c;
        }
        r.ws.next(|v| v["type"] == "message_status").await;
    }
}

/// A direct message queued now and waited for: the session sends in order,
/// so once it is sent, everything queued before it was handled.
async fn barrier(s: &ApiServer, r: &mut Ready) {
    let res = s
        .api
        .call(
            "POST",
            &format!("/api/v1/sessions/{}/messages", r.id),
            Cred::Token(&r.token),
            Some(json!({"to": "5491199999999", "text": "barrier"})),
        )
        .await;
    let mid = res.body["id"].as_str().expect("id").to_owned();
    r.ws.next(|v| {
        v["type"] == "message_status" && v["message_id"] == mid.as_str() && v["status"] == "sent"
    })
    .await;
}

fn campaign_texts(s: &ApiServer) -> Vec<String> {
    s.engine
        .sent()
        .into_iter()
        .map(|(_, _, t)| t)
        .filter(|t| t.starts_with("Hola"))
        .collect()
}

#[tokio::test]
async fn a_campaign_sends_each_rendered_message_once_in_order_and_paced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    config.messaging.send_delay_min = Duration::from_millis(150);
    config.messaging.send_delay_max = Duration::from_millis(200);
    let s = start_api(config, ScriptedEngine::new(), None).await;
    let mut r = s.ready_session("clinic").await;
    let cid = create(&s, &r, 3).await;
    assert_eq!(get(&s, &r, &cid).await["status"], "draft");
    assert_eq!(act(&s, &r, &cid, "start").await.0, 200);
    // Live progress on the WebSocket until completed; sends timed as they go.
    let mut sent_at = Vec::new();
    loop {
        let v =
            r.ws.next(|v| {
                v["type"] == "campaign" || (v["type"] == "message_status" && v["status"] == "sent")
            })
            .await;
        if v["type"] == "message_status" {
            sent_at.push(
                centinela_actors::clock::Timestamp::parse_rfc3339(v["at"].as_str().expect("at"))
                    .expect("time"),
            );
            continue;
        }
        assert_eq!(v["campaign_id"], cid.as_str());
        assert_eq!(v["total"], 3);
        if v["status"] == "completed" {
            assert_eq!(
                (v["sent"].clone(), v["failed"].clone()),
                (json!(3), json!(0))
            );
            break;
        }
    }
    for w in sent_at.windows(2) {
        assert!(
            w[1].since(w[0]) >= Duration::from_millis(140),
            "paced like single sends: {:?}",
            w[1].since(w[0])
        );
    }
    let c = get(&s, &r, &cid).await;
    assert_eq!(
        (c["sent"].clone(), c["failed"].clone(), c["total"].clone()),
        (json!(3), json!(0), json!(3))
    );
    assert_eq!(campaign_texts(&s), ["Hola P0", "Hola P1", "Hola P2"]);
    let to: Vec<String> = s.engine.sent().into_iter().map(|(_, to, _)| to).collect();
    assert_eq!(to, ["5491100000000", "5491100000001", "5491100000002"]);
    assert_eq!(
        act(&s, &r, &cid, "start").await.0,
        409,
        "a completed campaign does not run again"
    );
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn no_more_than_the_configured_campaigns_run_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    config.messaging.max_running_campaigns = 2;
    config.messaging.send_delay_min = Duration::from_millis(300);
    config.messaging.send_delay_max = Duration::from_millis(300);
    let s = start_api(config, ScriptedEngine::new(), None).await;
    let r = s.ready_session("shop").await;
    let ids = [
        create(&s, &r, 20).await,
        create(&s, &r, 20).await,
        create(&s, &r, 20).await,
    ];
    assert_eq!(act(&s, &r, &ids[0], "start").await.0, 200);
    assert_eq!(act(&s, &r, &ids[1], "start").await.0, 200);
    let (status, body) = act(&s, &r, &ids[2], "start").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("campaign_limit"))
    );
    assert_eq!(act(&s, &r, &ids[0], "cancel").await.0, 200);
    assert_eq!(act(&s, &r, &ids[2], "start").await.0, 200, "a slot freed");
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn pause_resume_and_cancel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    config.messaging.send_delay_min = Duration::from_millis(100);
    config.messaging.send_delay_max = Duration::from_millis(150);
    let s = start_api(config, ScriptedEngine::new(), None).await;
    let mut r = s.ready_session("crm").await;
    let cid = create(&s, &r, 4).await;
    act(&s, &r, &cid, "start").await;
    r.ws.next(|v| v["type"] == "message_status" && v["status"] == "sent")
        .await;
    let (status, body) = act(&s, &r, &cid, "pause").await;
    assert_eq!((status, body["status"].clone()), (200, json!("paused")));
    barrier(&s, &mut r).await;
    let at_pause = campaign_texts(&s).len();
    assert!(
        at_pause <= 2,
        "at most the one in flight went out after the pause: {at_pause}"
    );
    barrier(&s, &mut r).await;
    assert_eq!(
        campaign_texts(&s).len(),
        at_pause,
        "nothing more while paused"
    );
    assert_eq!(act(&s, &r, &cid, "resume").await.0, 200);
    let c = until(&s, &mut r, &cid, "completed").await;
    assert_eq!(c["sent"], 4);
    assert_eq!(
        campaign_texts(&s),
        ["Hola P0", "Hola P1", "Hola P2", "Hola P3"],
        "each once, in order"
    );

    let cid = create(&s, &r, 5).await;
    act(&s, &r, &cid, "start").await;
    // Under way: the first recipient's message left the queue and the
    // second was queued.
    loop {
        if get(&s, &r, &cid).await["queued_so_far"]
            .as_u64()
            .is_some_and(|n| n >= 2)
        {
            break;
        }
        r.ws.next(|v| v["type"] == "message_status").await;
    }
    assert_eq!(act(&s, &r, &cid, "cancel").await.1["status"], "cancelled");
    barrier(&s, &mut r).await;
    barrier(&s, &mut r).await;
    let second: Vec<String> = campaign_texts(&s).into_iter().skip(4).collect();
    assert!(
        !second.is_empty() && second.len() < 5,
        "cancelled mid-way: {second:?}"
    );
    assert_eq!(
        act(&s, &r, &cid, "resume").await.0,
        409,
        "a cancelled campaign stays cancelled"
    );
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_template_bomb_and_oversized_variables_are_refused_at_create_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let (token, _) = s.api.tenant_with_user(&admin, "clinic").await;
    let id = s.api.create_session(&token, None, "desk").await;
    let post = |body: Value| {
        let (api, token, id) = (s.api.clone(), token.clone(), id.clone());
        async move {
            api.call(
                "POST",
                &format!("/api/v1/sessions/{id}/campaigns"),
                Cred::Token(&token),
                Some(body),
            )
            .await
        }
    };
    // Each value holds 300 placeholders of the next: replacing one variable
    // at a time over the growing text would make 3,000 × 300³ characters.
    let bomb = json!({
        "name": "bomb",
        "template": "{a}".repeat(1000),
        "recipients": [{"to": "5491100000001", "vars": {
            "a": "{b}".repeat(300), "b": "{c}".repeat(300), "c": "{d}".repeat(300), "d": "boom"
        }}]
    });
    let vars = |vars: Value| {
        json!({"name": "n", "template": "Hola {name}", "recipients": [
            {"to": "5491100000001", "vars": {"name": "Ana"}},
            {"to": "5491100000002", "vars": vars}
        ]})
    };
    let many: serde_json::Map<String, Value> =
        (0..21).map(|i| (format!("v{i}"), json!("x"))).collect();
    let cases = [
        (bomb, "rendered_too_long"),
        (vars(Value::Object(many)), "invalid_recipients"),
        (vars(json!({"n".repeat(33): "x"})), "invalid_recipients"),
        (
            vars(json!({"name": "x".repeat(1001)})),
            "invalid_recipients",
        ),
    ];
    for (body, code) in cases {
        let r = post(body).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].clone()),
            (400, json!(code)),
            "{}",
            r.body["error"]
        );
    }
    let list = s
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}/campaigns"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(list.body["campaigns"], json!([]), "none was stored");
    let fine = post(vars(json!({"name": "x".repeat(1000)}))).await;
    assert_eq!(fine.status, 201, "at the caps is fine: {}", fine.text);
    s.server.shutdown().await.expect("shutdown");
}

/// The bomb against the real binary under a 4 GiB address-space cap: one
/// variable at a time over the growing text it would need tens of GB and
/// the process would die; rendered in one pass it is refused, and the
/// server goes on.
#[tokio::test]
async fn a_template_bomb_is_refused_by_a_memory_capped_server_that_lives_on() {
    let data = tempfile::tempdir().expect("tempdir");
    let (child, listen, _) = common::proc::spawn_serve_capped(
        &data.path().to_string_lossy(),
        &[("CENTINELA_ADMIN_PASSWORD", ADMIN_PASSWORD)],
        4 * 1024 * 1024,
    );
    let api = common::api::Api::new(&format!("http://{listen}"));
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let (token, _) = api.tenant_with_user(&admin, "clinic").await;
    let id = api.create_session(&token, None, "desk").await;
    let bomb = json!({
        "name": "bomb",
        "template": "{a}".repeat(1000),
        "recipients": [{"to": "5491100000001", "vars": {
            "a": "{b}".repeat(300), "b": "{c}".repeat(300), "c": "{d}".repeat(300), "d": "boom"
        }}]
    });
    let r = api
        .call(
            "POST",
            &format!("/api/v1/sessions/{id}/campaigns"),
            Cred::Token(&token),
            Some(bomb),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (400, json!("rendered_too_long")),
        "{}",
        r.text
    );
    let health = api.call("GET", "/health", Cred::None, None).await;
    assert_eq!(health.status, 200, "the server lives on");
    assert!(
        common::proc::terminate(child).success(),
        "serve stops cleanly"
    );
}

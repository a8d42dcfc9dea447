//! Webhooks against a local receiver: bodies signed with the tenant's
//! secret, retries after 500s, dead letter after the maximum attempts,
//! redelivery, and pending deliveries that survive a restart.

mod common;

use centinela_actors::engine::scripted::ScriptedEngine;
use centinela_actors::engine::EngineEvent;
use centinela_actors::ids::SessionId;
use common::api::{api_config, start_api, Cred, Ws, ADMIN, ADMIN_PASSWORD};
use common::hook::receiver;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

const SECRET: &str = "a-webhook-secret-of-some-length";

/// A READY session of tenant `clinic` with a webhook to `url`.
async fn setup(s: &common::api::ApiServer, url: &str) -> (String, SessionId) {
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let (token, _) = s.api.tenant_with_user(&admin, "clinic").await;
    let r = s
        .api
        .call(
            "PUT",
            "/api/v1/tenants/clinic/webhook",
            Cred::Token(&token),
            Some(json!({"url": url, "secret": SECRET})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = s.api.create_session(&token, None, "desk").await;
    let sid = SessionId::new(id.clone()).expect("id");
    s.engine.pair(&sid, "5491122334455");
    let mut ws = Ws::connect(&s.api.base, &format!("token={token}")).await;
    s.api.session_action(&token, &id, "connect").await;
    ws.until_state(&id, "READY").await;
    (token, sid)
}

fn incoming(s: &common::api::ApiServer, sid: &SessionId, n: u32) {
    let ev = EngineEvent::MessageIn {
        id: format!("in{n}"),
        from: "5491100000000".into(),
        jid: "5491100000000@c.us".into(),
        text: format!("hola {n}"),
    };
    assert!(s.engine.emit(sid, ev));
}

fn fast(config: &mut centinela::config::Config, max_attempts: u32) {
    config.webhooks.backoff_base = Duration::from_millis(30);
    config.webhooks.backoff_max = Duration::from_millis(100);
    config.webhooks.max_attempts = max_attempts;
}

#[tokio::test]
async fn deliveries_are_signed_and_retried_after_500s() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    fast(&mut config, 5);
    let s = start_api(config, ScriptedEngine::new(), None).await;
    let mut rx = receiver().await;
    let (token, sid) = setup(&s, &rx.url).await;
    rx.respond.store(500, Ordering::SeqCst);
    incoming(&s, &sid, 1);
    let (_, first) = rx.next(SECRET).await;
    assert_eq!(
        (first["event"].clone(), first["text"].clone()),
        (json!("message.in"), json!("hola 1"))
    );
    let (_, second) = rx.next(SECRET).await;
    assert_eq!(
        second["delivery_id"], first["delivery_id"],
        "a retry of the same delivery"
    );
    rx.respond.store(200, Ordering::SeqCst);
    let (_, third) = rx.next(SECRET).await;
    assert_eq!(third["delivery_id"], first["delivery_id"]);
    // A second delivery reaching the receiver means the first was recorded
    // (one worker, in order).
    incoming(&s, &sid, 2);
    let (_, next) = rx.next(SECRET).await;
    assert_eq!(next["text"], "hola 2");
    let list = s
        .api
        .call(
            "GET",
            "/api/v1/tenants/clinic/webhook/deliveries?status=delivered",
            Cred::Token(&token),
            None,
        )
        .await;
    let first_id = first["delivery_id"].as_str().expect("id");
    let rec = list.body["deliveries"]
        .as_array()
        .expect("list")
        .iter()
        .find(|d| d["id"] == first_id)
        .expect("delivered")
        .clone();
    assert_eq!(rec["attempts"], 3);
    let target = s
        .api
        .call(
            "GET",
            "/api/v1/tenants/clinic/webhook",
            Cred::Token(&token),
            None,
        )
        .await;
    assert!(
        !target.text.contains(SECRET),
        "the secret is not shown again"
    );
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn dead_letters_after_the_maximum_and_redelivers_on_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    fast(&mut config, 3);
    let s = start_api(config, ScriptedEngine::new(), None).await;
    let mut rx = receiver().await;
    let (token, sid) = setup(&s, &rx.url).await;
    rx.respond.store(500, Ordering::SeqCst);
    incoming(&s, &sid, 1);
    let mut id = String::new();
    for _ in 0..3 {
        let (_, body) = rx.next(SECRET).await;
        id = body["delivery_id"].as_str().expect("id").to_owned();
    }
    // The barrier: the next delivery's first attempt comes after the dead one was recorded.
    incoming(&s, &sid, 2);
    rx.next(SECRET).await;
    let dead = s
        .api
        .call(
            "GET",
            "/api/v1/tenants/clinic/webhook/deliveries?status=dead",
            Cred::Token(&token),
            None,
        )
        .await;
    assert!(
        dead.body["deliveries"]
            .as_array()
            .expect("list")
            .iter()
            .any(|d| d["id"] == id.as_str() && d["attempts"] == 3),
        "{}",
        dead.text
    );
    rx.respond.store(200, Ordering::SeqCst);
    let r = s
        .api
        .call(
            "POST",
            &format!("/api/v1/tenants/clinic/webhook/deliveries/{id}/redeliver"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    loop {
        let (_, body) = rx.next(SECRET).await;
        if body["delivery_id"] == id.as_str() {
            break;
        }
    }
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn pending_deliveries_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    fast(&mut config, 20);
    config.webhooks.backoff_base = Duration::from_millis(300);
    config.webhooks.backoff_max = Duration::from_millis(300);
    let engine = ScriptedEngine::new();
    let s = start_api(config.clone(), engine.clone(), None).await;
    let mut rx = receiver().await;
    let (_, sid) = setup(&s, &rx.url).await;
    rx.respond.store(500, Ordering::SeqCst);
    incoming(&s, &sid, 1);
    let (_, body) = rx.next(SECRET).await;
    s.server.shutdown().await.expect("shutdown");

    rx.respond.store(200, Ordering::SeqCst);
    let s = start_api(config, engine, None).await;
    let (_, again) = rx.next(SECRET).await;
    assert_eq!(
        again["delivery_id"], body["delivery_id"],
        "the same delivery, after the restart"
    );
    s.server.shutdown().await.expect("shutdown");
}

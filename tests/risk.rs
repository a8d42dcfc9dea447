//! The ban-risk view and the new-contact budget over the API, with the
//! scripted engine: the session shows its day's budget, a campaign shows
//! its outlook (new contacts, ETA, days) in the preview and once created,
//! and a campaign to strangers who never answer pauses itself when the
//! risk turns high — live on the WebSocket, in `/risk` and on `/metrics` —
//! and cannot be resumed until it falls.

mod common;

use centinela_actors::clock::{ManualClock, SharedClock, Timestamp};
use centinela_actors::engine::scripted::ScriptedEngine;
use common::api::{api_config, start_api, Cred, ADMIN, ADMIN_PASSWORD};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

fn recipients(n: usize) -> Value {
    json!((0..n)
        .map(|i| json!({"to": format!("5491100{i:06}"), "vars": {"name": format!("P{i}")}}))
        .collect::<Vec<_>>())
}

fn ts(v: &Value) -> Timestamp {
    Timestamp::parse_rfc3339(v.as_str().expect("a time")).expect("rfc 3339")
}

#[tokio::test]
async fn a_campaigns_outlook_is_the_budgets_arithmetic_in_the_preview_and_once_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    // 2–6 s apart and 12 a minute: 5 s a message on average; no typing.
    config.messaging.typing_chars_per_second = 0;
    let t0 = Timestamp::from_millis(1_900_000_000_000);
    let clock: SharedClock = Arc::new(ManualClock::new(t0));
    let s = start_api(config, ScriptedEngine::new(), Some(clock)).await;
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let (token, _) = s.api.tenant_with_user(&admin, "clinic").await;
    let id = s.api.create_session(&token, None, "desk").await;

    let session = s
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(session.status, 200, "{}", session.text);
    assert_eq!(
        session.body["contact_budget"],
        json!({"allowance": 20, "used": 0, "remaining": 20, "warmup_day": null, "warmup_days": 7, "next_at": null}),
        "never paired: the full budget"
    );
    assert_eq!(session.body["risk"], "low");

    let body = json!({"name": "lista", "template": "Hola {name}", "recipients": recipients(500)});
    let preview = s
        .api
        .call(
            "POST",
            &format!("/api/v1/sessions/{id}/campaigns/preview"),
            Cred::Token(&token),
            Some(body.clone()),
        )
        .await;
    assert_eq!(preview.status, 200, "{}", preview.text);
    let o = &preview.body["outlook"];
    assert_eq!(
        (o["new_contacts"].clone(), o["known_contacts"].clone()),
        (json!(500), json!(0))
    );
    // 20 a day: the 500th is the 20th of day 25, 19 messages of 5 s after
    // that day's first.
    let day = Duration::from_secs(24 * 3600);
    assert_eq!(
        ts(&o["eta"]),
        t0.plus(day * 24 + Duration::from_secs(5 * 19))
    );
    assert_eq!(o["days_needed"], 25);
    let warning = o["warning"].as_str().expect("a warning");
    assert!(
        warning.contains("500") && warning.contains("25 days"),
        "{warning}"
    );
    assert_eq!(preview.body["first_text"], "Hola P0");
    assert_eq!(preview.body["budget"]["remaining"], 20);
    let listed = s
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}/campaigns"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(
        listed.body["campaigns"],
        json!([]),
        "a preview stores nothing"
    );

    let created = s
        .api
        .call(
            "POST",
            &format!("/api/v1/sessions/{id}/campaigns"),
            Cred::Token(&token),
            Some(body),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(
        created.body["outlook"], preview.body["outlook"],
        "the answer warns too"
    );
    assert_eq!(created.body["deferred_until"], Value::Null);

    // A row whose text renders too long is rejected by the preview with
    // why (the create refuses it with 400); with no row left, no outlook.
    let bomb = s
        .api
        .call(
            "POST",
            &format!("/api/v1/sessions/{id}/campaigns/preview"),
            Cred::Token(&token),
            Some(json!({"name": "x", "template": "{v}{v}{v}{v}{v}", "recipients": [{"to": "5491100000001", "vars": {"v": "x".repeat(900)}}]})),
        )
        .await;
    assert_eq!(bomb.status, 200, "{}", bomb.text);
    assert_eq!(bomb.body["total"], 0);
    assert_eq!(bomb.body["outlook"], Value::Null);
    assert_eq!(bomb.body["rejected"][0]["index"], 0);
    assert_eq!(bomb.body["rejected"][0]["code"], "rendered_too_long");
    let created = s
        .api
        .call(
            "POST",
            &format!("/api/v1/sessions/{id}/campaigns"),
            Cred::Token(&token),
            Some(json!({"name": "x", "template": "{v}{v}{v}{v}{v}", "recipients": [{"to": "5491100000001", "vars": {"v": "x".repeat(900)}}]})),
        )
        .await;
    assert_eq!(
        (created.status, created.body["error"]["code"].clone()),
        (400, json!("rendered_too_long"))
    );
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_campaign_to_strangers_who_never_answer_pauses_itself_at_high_risk_and_stays_paused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    config.messaging.send_delay_min = Duration::from_millis(20);
    config.messaging.send_delay_max = Duration::from_millis(40);
    config.messaging.sends_per_minute = 1000;
    config.messaging.typing_chars_per_second = 0;
    config.risk.min_sample = 3;
    let s = start_api(config, ScriptedEngine::new(), None).await;
    let mut r = s.ready_session("clinic").await;
    let created = s
        .api
        .call(
            "POST",
            &format!("/api/v1/sessions/{}/campaigns", r.id),
            Cred::Token(&r.token),
            Some(json!({"name": "fría", "template": "Hola {name}", "recipients": recipients(8)})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let cid = created.body["id"].as_str().expect("id").to_owned();
    let action = |what: &'static str| {
        let (api, token, id, cid) = (&s.api, r.token.clone(), r.id.clone(), cid.clone());
        async move {
            api.call(
                "POST",
                &format!("/api/v1/sessions/{id}/campaigns/{cid}/{what}"),
                Cred::Token(&token),
                None,
            )
            .await
        }
    };
    assert_eq!(action("start").await.status, 200);

    let risk = r.ws.next(|v| v["type"] == "risk").await;
    assert_eq!(
        (risk["level"].clone(), risk["was"].clone()),
        (json!("high"), json!("low"))
    );
    assert_eq!(risk["reasons"], json!(["low_new_contact_reply_rate"]));
    let paused =
        r.ws.next(|v| v["type"] == "campaign" && v["status"] == "paused")
            .await;
    assert_eq!(paused["campaign_id"], cid.as_str());

    let c = s
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{}/campaigns/{cid}", r.id),
            Cred::Token(&r.token),
            None,
        )
        .await;
    assert_eq!(c.body["status"], "paused");
    assert_eq!(c.body["paused"]["reason"], "risk_high");
    assert_eq!(c.body["paused"]["detail"], "low_new_contact_reply_rate");
    let resumed = action("resume").await;
    assert_eq!(
        (resumed.status, resumed.body["error"]["code"].clone()),
        (409, json!("risk_high")),
        "{}",
        resumed.text
    );

    // A recipient queued before the pause still goes out (a pause
    // withdraws nothing): once all `queued` are sent, nothing else moves.
    let queued = paused["queued"].as_u64().expect("queued");
    let view = loop {
        let view = s
            .api
            .call(
                "GET",
                &format!("/api/v1/sessions/{}/risk", r.id),
                Cred::Token(&r.token),
                None,
            )
            .await;
        assert_eq!(view.status, 200, "{}", view.text);
        if view.body["day"]["sent"] == queued {
            break view;
        }
        r.ws.next(|v| v["type"] == "message_status" && v["status"] == "sent")
            .await;
    };
    let b = &view.body;
    assert_eq!(b["level"], "high");
    assert_eq!(b["reasons"], json!(["low_new_contact_reply_rate"]));
    let sent = b["day"]["sent"].as_u64().expect("sent");
    assert!((3..=4).contains(&sent), "stopped at the sample: {b}");
    assert_eq!(b["day"]["new_contacts"], sent);
    assert_eq!(b["week"]["new_contact_reply_rate"], 0.0);
    assert_eq!(b["budget"]["used"], sent);
    assert_eq!(b["thresholds"]["high_reply_rate"], 0.10);
    let session = s
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{}", r.id),
            Cred::Token(&r.token),
            None,
        )
        .await;
    assert_eq!(session.body["risk"], "high");
    let budget = &session.body["contact_budget"];
    assert_eq!(
        (budget["allowance"].clone(), budget["warmup_day"].clone()),
        (json!(5), json!(1)),
        "paired today: day 1 of the warm-up"
    );
    assert_eq!(budget["remaining"], 5 - sent);
    let metrics = s.api.call("GET", "/metrics", Cred::None, None).await;
    let line = format!(
        "centinela_session_risk{{tenant=\"clinic\",session=\"{}\"}} 2",
        r.id
    );
    assert!(metrics.text.contains(&line), "{}", metrics.text);
    assert!(metrics
        .text
        .contains("centinela_risk_changes_total{level=\"high\"} 1"));

    // Another tenant sees none of it; a bad or unknown id is said so.
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let (other, _) = s.api.tenant_with_user(&admin, "shop").await;
    let path = format!("/api/v1/sessions/{}/risk", r.id);
    assert_eq!(
        s.api
            .call("GET", &path, Cred::Token(&other), None)
            .await
            .status,
        403
    );
    let unknown = s
        .api
        .call(
            "GET",
            "/api/v1/sessions/nope/risk",
            Cred::Token(&admin),
            None,
        )
        .await;
    assert_eq!(unknown.status, 404);
    let bad = s
        .api
        .call(
            "GET",
            "/api/v1/sessions/NO%20PE/risk",
            Cred::Token(&admin),
            None,
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(s.api.call("GET", &path, Cred::None, None).await.status, 401);
    s.server.shutdown().await.expect("shutdown");
}

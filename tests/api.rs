//! The sessions REST API and the WebSocket stream over a real socket, with
//! the scripted engine playing WhatsApp: every route's success and error
//! paths, the 429 with seed 003's fields, the WebSocket tenant filter,
//! catch-up after a reconnect, and a stalled client that delays nobody.

mod common;

use centinela_actors::engine::scripted::ScriptedEngine;
use centinela_actors::ids::SessionId;
use common::api::{api_config, start_api, Cred, Ws, ADMIN, ADMIN_PASSWORD};
use serde_json::json;

#[tokio::test]
async fn a_session_lives_its_whole_life_through_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let (token, _) = s.api.tenant_with_user(&admin, "clinic").await;
    let mut ws = Ws::connect(&s.api.base, &format!("token={token}")).await;

    let id = s.api.create_session(&token, None, "front desk").await;
    let v = s.api.session(&token, &id).await;
    assert_eq!(
        (
            v["state"].clone(),
            v["reason"].clone(),
            v["tenant_id"].clone()
        ),
        (
            json!("DISCONNECTED"),
            json!("never_connected"),
            json!("clinic")
        )
    );
    let r = s
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}/qr"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (409, json!("not_showing_qr"))
    );
    let code_path = format!("/api/v1/sessions/{id}/pairing-code");
    let r = s
        .api
        .call(
            "POST",
            &code_path,
            Cred::Token(&token),
            Some(json!({"phone": "5491122334455"})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (409, json!("not_showing_qr")),
        "no pairing code without a QR"
    );

    let r = s.api.session_action(&token, &id, "connect").await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["outcome"], "queued");
    assert!(r.body["start_at"].is_string() && r.body["position"].is_number());
    let qr = ws.until_state(&id, "QR").await;
    let code = qr["to"]["code"].as_str().expect("code").to_owned();

    let r = s
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}/qr"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!((r.status, r.body["qr"].clone()), (200, json!(code)));
    assert!(r.body["expires_at"].is_string());

    // Link with a phone number instead: bad numbers are 400, a good one
    // gets a code that the session view and the WebSocket carry.
    for (bad, why) in [
        (json!({"phone": "12ab"}), "letters"),
        (json!({"phone": "12345"}), "too short"),
        (json!({"phone": 5491122334455u64}), "a number, not a string"),
        (json!({}), "missing"),
    ] {
        let r = s
            .api
            .call("POST", &code_path, Cred::Token(&token), Some(bad))
            .await;
        assert_eq!(r.status, 400, "{why}: {}", r.text);
    }
    let r = s
        .api
        .call(
            "POST",
            &code_path,
            Cred::Token(&token),
            Some(json!({"phone": "+5491122334455"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let pairing = r.body["code"].as_str().expect("code").to_owned();
    assert_eq!(r.body["phone"], "5491122334455");
    assert!(r.body["expires_at"].is_string());
    let pushed = ws.next(|v| v["type"] == "pairing_code").await;
    assert_eq!(pushed["pairing_code"]["code"], pairing.as_str());
    assert_eq!(
        s.api.session(&token, &id).await["pairing_code"]["code"],
        pairing.as_str()
    );
    let svg = s
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}/qr?format=svg"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(svg.headers["content-type"], "image/svg+xml");
    assert!(svg.text.contains("<svg"));
    let png = s
        .api
        .http
        .get(format!("{}/api/v1/sessions/{id}/qr?format=png", s.api.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("png");
    assert_eq!(png.headers()["content-type"], "image/png");
    assert_eq!(&png.bytes().await.expect("bytes")[..4], b"\x89PNG");
    let r = s
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}/qr?format=gif"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 400);

    assert!(s
        .engine
        .scan(&SessionId::new(id.clone()).expect("id"), "5491122334455"));
    ws.until_state(&id, "READY").await;
    let v = s.api.session(&token, &id).await;
    assert_eq!(
        (v["state"].clone(), v["phone"].clone()),
        (json!("READY"), json!("5491122334455"))
    );

    let r = s.api.session_action(&token, &id, "connect").await;
    assert_eq!(
        (r.status, r.body["outcome"].clone()),
        (200, json!("already_live"))
    );
    assert_eq!(
        s.engine.starts(&SessionId::new(id.clone()).expect("id")),
        1,
        "never a second driver"
    );

    let r = s
        .api
        .call(
            "POST",
            &format!("/api/v1/sessions/{id}/messages"),
            Cred::Token(&token),
            Some(json!({"to": "+54 9 11 0000-0000", "text": "hola"})),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["status"], "queued");
    let mid = r.body["id"].as_str().expect("id").to_owned();
    ws.next(|v| {
        v["type"] == "message_status" && v["message_id"] == mid.as_str() && v["status"] == "sent"
    })
    .await;
    assert_eq!(s.engine.sent()[0].1, "5491100000000");
    let m = s
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}/messages/{mid}"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!((m.status, m.body["status"].clone()), (200, json!("sent")));

    let r = s.api.session_action(&token, &id, "disconnect").await;
    assert_eq!(r.status, 200);
    let v = ws.until_state(&id, "DISCONNECTED").await;
    assert_eq!(v["reason"], "manual");
    assert!(
        s.engine.is_paired(&SessionId::new(id.clone()).expect("id")),
        "disconnect keeps the pairing"
    );
    let r = s.api.session_action(&token, &id, "logout").await;
    assert_eq!((r.status, r.body["reason"].clone()), (200, json!("logout")));
    assert!(
        !s.engine.is_paired(&SessionId::new(id.clone()).expect("id")),
        "logout unpairs"
    );

    let r = s
        .api
        .call(
            "DELETE",
            &format!("/api/v1/sessions/{id}"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = s
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_refused_connect_is_a_429_with_the_seed_003_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    config.antiban.tenant_attempts_per_day = 1;
    let s = start_api(config, ScriptedEngine::new(), None).await;
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let (token, _) = s.api.tenant_with_user(&admin, "shop").await;
    let a = s.api.create_session(&token, None, "one").await;
    let b = s.api.create_session(&token, None, "two").await;
    let r = s.api.session_action(&token, &a, "connect").await;
    assert_eq!(r.status, 202);
    let r = s.api.session_action(&token, &b, "connect").await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "daily_limit");
    assert_eq!(r.body["error"]["reason"], "daily_limit");
    let minutes = r.body["error"]["wait_time_minutes"]
        .as_u64()
        .expect("minutes");
    assert!(minutes > 1430 && minutes <= 1440, "{minutes}");
    assert!(r.body["error"]["block_until"].is_string());
    let retry: u64 = r.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("secs");
    assert!(retry > 86_000);
    let v = s.api.session(&token, &b).await;
    assert_eq!(v["admission"]["status"], "denied");
    assert_eq!(v["admission"]["reason"], "daily_limit");

    let status = s
        .api
        .call(
            "GET",
            "/api/rate-limit-status?organization_id=shop",
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(status.status, 200);
    for field in [
        "global_attempts_last_hour",
        "global_limit",
        "global_blocked",
        "organization_id",
        "can_connect",
        "block_reason",
        "wait_time_minutes",
        "attempts_last_24h",
        "daily_limit",
        "is_blocked_515",
        "last_failure",
        "block_until",
    ] {
        assert!(
            status.body.get(field).is_some(),
            "missing {field}: {}",
            status.text
        );
    }
    assert_eq!(status.body["block_reason"], "daily_limit");
    let all = s
        .api
        .call("GET", "/api/rate-limit-status", Cred::Token(&admin), None)
        .await;
    assert!(all.body["organizations"]
        .as_array()
        .is_some_and(|o| o.iter().any(|o| o["organization_id"] == "shop")));
    let own = s
        .api
        .call("GET", "/api/rate-limit-status", Cred::Token(&token), None)
        .await;
    assert_eq!(
        own.body["organizations"].as_array().map(Vec::len),
        Some(1),
        "a tenant sees only itself"
    );
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bad_input_gets_clear_errors_never_a_500() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let (token, _) = s.api.tenant_with_user(&admin, "crm").await;
    let id = s.api.create_session(&token, None, "desk").await;
    let cases: Vec<(&str, String, &str, &str, u16, &str)> = vec![
        (
            "POST",
            "/api/v1/sessions".into(),
            "application/json",
            "{not json",
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/api/v1/sessions".into(),
            "application/json",
            r#"{"name": 42}"#,
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/api/v1/sessions".into(),
            "application/json",
            r#"{}"#,
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/api/v1/sessions".into(),
            "application/json",
            r#"{"name": "x", "engine": "baileys"}"#,
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/api/v1/sessions".into(),
            "application/json",
            r#"{"name": ""}"#,
            400,
            "invalid_name",
        ),
        (
            "POST",
            "/api/v1/sessions".into(),
            "application/json",
            r#"{"name": "x", "proxy": "ftp://x"}"#,
            400,
            "invalid_proxy",
        ),
        (
            "POST",
            "/api/v1/sessions".into(),
            "text/plain",
            r#"{"name": "x"}"#,
            400,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/api/v1/sessions".into(),
            "application/json",
            r#"{"name": "x", "tenant_id": "../etc"}"#,
            400,
            "invalid_tenant_id",
        ),
        (
            "GET",
            "/api/v1/sessions/s_doesnotexist".into(),
            "application/json",
            "",
            404,
            "not_found",
        ),
        (
            "GET",
            "/api/v1/sessions/bad%20id".into(),
            "application/json",
            "",
            400,
            "invalid_session_id",
        ),
        (
            "POST",
            "/api/v1/sessions/s_nope/connect".into(),
            "application/json",
            "",
            404,
            "not_found",
        ),
        (
            "POST",
            format!("/api/v1/sessions/{id}/messages"),
            "application/json",
            r#"{"to": "12", "text": "x"}"#,
            400,
            "invalid_phone",
        ),
        (
            "POST",
            format!("/api/v1/sessions/{id}/messages"),
            "application/json",
            r#"{"to": "5491100000000", "text": ""}"#,
            400,
            "invalid_text",
        ),
        (
            "POST",
            format!("/api/v1/sessions/{id}/messages"),
            "application/json",
            r#"{"to": "5491100000000", "text": "hola", "send_at": "tomorrow"}"#,
            400,
            "invalid_send_at",
        ),
        (
            "GET",
            format!("/api/v1/sessions/{id}/messages/m_nope"),
            "application/json",
            "",
            404,
            "not_found",
        ),
        (
            "GET",
            "/api/v1/nothing-here".into(),
            "application/json",
            "",
            404,
            "not_found",
        ),
        (
            "GET",
            "/api/v1/logs?since=abc".into(),
            "application/json",
            "",
            400,
            "",
        ),
    ];
    for (method, path, ct, body, status, code) in cases {
        let r = s.api.raw(method, &path, &token, ct, body).await;
        assert_eq!(r.status, status, "{method} {path} {body}: {}", r.text);
        if !code.is_empty() {
            assert_eq!(r.body["error"]["code"], code, "{method} {path} {body}");
        }
    }
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn websocket_events_follow_the_tenant_and_catch_up_after_a_reconnect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let (a, _) = s.api.tenant_with_user(&admin, "tenant-a").await;
    let (b, _) = s.api.tenant_with_user(&admin, "tenant-b").await;
    let mut ws_a = Ws::connect(&s.api.base, &format!("token={a}")).await;
    let mut ws_b = Ws::connect(&s.api.base, &format!("token={b}")).await;
    let mut ws_admin = Ws::connect(&s.api.base, &format!("token={admin}&logs=1")).await;
    let forbidden = tokio_tungstenite::connect_async(format!(
        "{}/api/v1/ws?token={a}&logs=1",
        s.api.base.replacen("http", "ws", 1)
    ))
    .await;
    assert!(forbidden.is_err(), "logs are for admins");
    assert!(
        tokio_tungstenite::connect_async(format!(
            "{}/api/v1/ws",
            s.api.base.replacen("http", "ws", 1)
        ))
        .await
        .is_err(),
        "401 without credentials"
    );

    let sa = s.api.create_session(&a, None, "a desk").await;
    let sb = s.api.create_session(&b, None, "b desk").await;
    s.api.session_action(&a, &sa, "connect").await;
    let qr_a = ws_a.until_state(&sa, "QR").await;
    // The admin sees the admission, the transition with the same number as
    // A, and the supervisor's log line for it (log lines and bus events may
    // interleave in either order).
    let (mut admission, mut transition, mut log) = (None, None, None);
    while admission.is_none() || transition.is_none() || log.is_none() {
        let v = ws_admin.next(|_| true).await;
        match v["type"].as_str() {
            Some("admission") if v["session_id"] == sa.as_str() => {
                admission = admission.or(Some(v))
            }
            Some("transition") if v["session_id"] == sa.as_str() && v["to"]["state"] == "QR" => {
                transition = Some(v)
            }
            Some("log") if v["message"] == "session transition" && v["fields"]["to"] == "QR" => {
                log = Some(v)
            }
            _ => {}
        }
    }
    let (admission, transition, log) = (
        admission.expect("admission"),
        transition.expect("transition"),
        log.expect("log"),
    );
    assert_eq!(admission["decision"], "queued");
    assert_eq!(qr_a["seq"], transition["seq"], "one numbering for everyone");
    assert_eq!(log["tenant_id"], "tenant-a");

    // B hears about its own session only: the next thing B sees is B's event.
    s.api.session_action(&b, &sb, "connect").await;
    let first_for_b = ws_b.next(|v| v["type"] == "transition").await;
    assert_eq!(
        first_for_b["session_id"],
        sb.as_str(),
        "no event of tenant A reached B"
    );

    // A drops, things happen, A catches up from its last sequence number.
    let last = qr_a["seq"].as_u64().expect("seq");
    drop(ws_a);
    assert!(s
        .engine
        .scan(&SessionId::new(sa.clone()).expect("id"), "5491100000001"));
    ws_admin.until_state(&sa, "READY").await;
    let r = s
        .api
        .call(
            "GET",
            &format!("/api/v1/logs?since={last}"),
            Cred::Token(&a),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let entries = r.body["entries"].as_array().expect("entries");
    let states: Vec<&str> = entries
        .iter()
        .filter(|e| e["action"] == "session.transition" && e["data"]["session_id"] == sa.as_str())
        .filter_map(|e| e["data"]["to"]["state"].as_str())
        .collect();
    assert_eq!(states, ["AUTHENTICATED", "READY"]);
    assert!(
        entries.iter().all(|e| e["tenant"] == "tenant-a"),
        "only A's entries: {entries:?}"
    );
    assert!(entries
        .iter()
        .all(|e| e["seq"].as_u64().is_some_and(|n| n > last)));
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_stalled_websocket_client_does_not_delay_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let (token, _) = s.api.tenant_with_user(&admin, "busy").await;
    // The stalled client completes the handshake, then never reads.
    let (_stalled, _) = tokio_tungstenite::connect_async(format!(
        "{}/api/v1/ws?token={admin}&logs=1",
        s.api.base.replacen("http", "ws", 1)
    ))
    .await
    .expect("handshake");
    let mut live = Ws::connect(&s.api.base, &format!("token={admin}")).await;
    let mut last = String::new();
    for i in 0..150 {
        let id = s.api.create_session(&token, None, &format!("s{i}")).await;
        s.api.session_action(&token, &id, "connect").await;
        s.api.session_action(&token, &id, "disconnect").await;
        s.api
            .call(
                "DELETE",
                &format!("/api/v1/sessions/{id}"),
                Cred::Token(&token),
                None,
            )
            .await;
        last = id;
    }
    // Every event reaches the live client; it sees the last session's end.
    let seen = live
        .next(|v| {
            v["type"] == "transition"
                && v["session_id"] == last.as_str()
                && v["to"]["state"] == "DISCONNECTED"
        })
        .await;
    assert_eq!(seen["tenant_id"], "busy");
    let r = s.api.call("GET", "/health", Cred::None, None).await;
    assert_eq!(r.status, 200, "the server still answers");
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn health_details_metrics_and_admin_overrides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let (token, _) = s.api.tenant_with_user(&admin, "clinic").await;
    let id = s.api.create_session(&token, None, "desk").await;
    let mut ws = Ws::connect(&s.api.base, &format!("token={admin}")).await;
    s.api.session_action(&token, &id, "connect").await;
    ws.until_state(&id, "QR").await;
    let d = s
        .api
        .call("GET", "/health/details", Cred::Token(&admin), None)
        .await;
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(d.body["sessions"]["by_state"]["QR"], 1);
    assert!(d.body["memory"]["process_rss_bytes"]
        .as_u64()
        .is_some_and(|b| b > 0));
    assert!(d.body["http"]["requests"].as_u64().is_some_and(|n| n > 0));
    let m = s.api.call("GET", "/metrics", Cred::None, None).await;
    assert!(
        m.text.contains("centinela_sessions{state=\"QR\"} 1"),
        "{}",
        m.text
    );
    assert!(m.text.contains("centinela_transitions_total{to=\"QR\"}"));
    assert!(m
        .text
        .contains("centinela_admissions_total{decision=\"queued\""));
    assert!(m.text.contains(
        "centinela_http_request_duration_seconds_bucket{route=\"/api/v1/sessions/{id}/connect\""
    ));
    assert!(m.text.contains("centinela_websocket_clients 1"));
    let r = s
        .api
        .call(
            "POST",
            "/api/v1/tenants/clinic/unblock",
            Cred::Token(&admin),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.body["was_blocked"].clone()),
        (200, json!(false))
    );
    let r = s
        .api
        .call(
            "POST",
            "/api/v1/tenants/clinic/reset-cooldown",
            Cred::Token(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let logs = s
        .api
        .call(
            "GET",
            "/api/v1/logs?since=0&limit=5000",
            Cred::Token(&admin),
            None,
        )
        .await;
    let audit: Vec<_> = logs.body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "antiban.unblock")
        .collect();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["actor"], ADMIN, "who did it");
    s.server.shutdown().await.expect("shutdown");
}

/// The OpenAPI document lists every route (by construction: routes are
/// registered with their docs) and only real ones: each documented
/// operation, called, reaches a handler — never the router's 404 or 405.
#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let doc = s
        .api
        .call("GET", "/api/openapi.json", Cred::None, None)
        .await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["openapi"], "3.1.0");
    let paths = doc.body["paths"].as_object().expect("paths");
    for p in [
        "/auth/login",
        "/api/v1/sessions",
        "/api/v1/sessions/{id}/connect",
        "/api/v1/sessions/{id}/qr",
        "/api/rate-limit-status",
        "/api/v1/ws",
        "/api/v1/logs",
        "/health",
        "/health/details",
        "/metrics",
        "/api/openapi.json",
        "/api/v1/tenants/{id}/api-keys",
    ] {
        assert!(paths.contains_key(p), "{p} is documented");
    }
    let mut operations = 0;
    for (path, ops) in paths {
        for (method, op) in ops.as_object().expect("operations") {
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} has responses"
            );
            let concrete = path.replace("{id}", "x").replace("{key}", "k");
            let body = op["requestBody"]["content"]["application/json"]["example"].clone();
            let body = (!body.is_null()).then_some(body);
            if concrete == "/auth/logout" {
                continue; // would revoke the admin token used below
            }
            let r = s
                .api
                .call(&method.to_uppercase(), &concrete, Cred::Token(&admin), body)
                .await;
            assert_ne!(
                r.status, 405,
                "{method} {path} is documented but not routed"
            );
            assert!(
                !(r.status == 404 && r.text.contains("no such route")),
                "{method} {path} is documented but not routed"
            );
            assert!(r.status < 500, "{method} {path}: {}", r.text);
            operations += 1;
        }
    }
    assert!(operations >= 30, "{operations} operations");
    s.server.shutdown().await.expect("shutdown");
}

/// PROXYBLOCK: WhatsApp refused the tenant's network path. The tenant is
/// held on it (no end time, the proxy named) until the session moves to
/// another proxy or an admin unblocks the tenant; never a reconnect.
#[tokio::test]
async fn a_refused_proxy_holds_the_session_until_its_proxy_changes_or_an_admin_unblocks() {
    use centinela_actors::engine::EngineEvent;
    use centinela_actors::session::DisconnectReason;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    let mut r = s.ready_session("shop").await;
    let (token, id) = (r.token.clone(), r.id.clone());
    assert!(s.engine.emit(
        &r.sid,
        EngineEvent::Disconnected {
            reason: DisconnectReason::ProxyBlocked,
            detail: "PROXYBLOCK".into(),
        }
    ));
    r.ws.until_state(&id, "DISCONNECTED").await;
    let v = s.api.session(&token, &id).await;
    assert_eq!(v["reason"], "proxy_blocked");
    assert_eq!(v["egress"], "server");

    let held = s.api.session_action(&token, &id, "connect").await;
    assert_eq!(held.status, 429, "{}", held.text);
    assert_eq!(held.body["error"]["code"], "proxy_block");
    assert_eq!(held.body["error"]["proxy"], "server");
    assert!(held.body["error"]["block_until"].is_null(), "no end time");
    assert!(held.body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("server") && m.contains("PROXYBLOCK")));
    let v = s.api.session(&token, &id).await;
    assert_eq!(v["admission"]["reason"], "proxy_block");
    assert_eq!(v["admission"]["proxy"], "server");
    let status = s
        .api
        .call(
            "GET",
            "/api/rate-limit-status?organization_id=shop",
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(
        status.body["proxy_blocked"],
        json!(["server"]),
        "{}",
        status.text
    );

    // Bad input, unknown ids and other tenants' sessions.
    let path = format!("/api/v1/sessions/{id}");
    for (body, code) in [
        (json!({"proxy": 5}), "invalid_field"),
        (json!({"proxy": "ftp://x"}), "invalid_proxy"),
        (json!({"name": ""}), "invalid_name"),
        (json!({"colour": "red"}), "invalid_field"),
    ] {
        let res = s
            .api
            .call("PATCH", &path, Cred::Token(&token), Some(body.clone()))
            .await;
        assert_eq!(res.status, 400, "{body}: {}", res.text);
        assert_eq!(res.body["error"]["code"], code, "{body}: {}", res.text);
    }
    let res = s
        .api
        .call(
            "PATCH",
            "/api/v1/sessions/nope",
            Cred::Token(&token),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(res.status, 404, "{}", res.text);
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let (other, _) = s.api.tenant_with_user(&admin, "rival").await;
    let res = s
        .api
        .call(
            "PATCH",
            &path,
            Cred::Token(&other),
            Some(json!({"name": "mine"})),
        )
        .await;
    assert_eq!(res.status, 403, "{}", res.text);

    // Another proxy is another path: the session may connect again, and the
    // credentials never show.
    let res = s
        .api
        .call(
            "PATCH",
            &path,
            Cred::Token(&token),
            Some(json!({"proxy": "http://user:secret@proxy.example:3128", "name": "desk 2"})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.body["egress"], "http://proxy.example:3128");
    assert_eq!(res.body["name"], "desk 2");
    assert!(res.body["admission"].is_null(), "{}", res.text);
    assert!(!res.text.contains("secret"));
    let go = s.api.session_action(&token, &id, "connect").await;
    assert_eq!(go.status, 202, "{}", go.text);
    r.ws.until_state(&id, "READY").await;
    let res = s
        .api
        .call(
            "PATCH",
            &path,
            Cred::Token(&token),
            Some(json!({"proxy": null})),
        )
        .await;
    assert_eq!(
        res.status, 409,
        "a live session keeps its path: {}",
        res.text
    );
    assert_eq!(res.body["error"]["code"], "session_live");

    // Back on the refused path: held again, until an admin unblocks.
    assert_eq!(
        s.api.session_action(&token, &id, "disconnect").await.status,
        200
    );
    let res = s
        .api
        .call(
            "PATCH",
            &path,
            Cred::Token(&token),
            Some(json!({"proxy": null})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.body["egress"], "server");
    assert_eq!(
        s.api.session_action(&token, &id, "connect").await.status,
        429
    );
    let res = s
        .api
        .call(
            "POST",
            "/api/v1/tenants/shop/unblock",
            Cred::Token(&admin),
            None,
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let v = s.api.session(&token, &id).await;
    assert!(v["admission"].is_null(), "the hold is lifted: {v}");
    assert_eq!(
        s.api.session_action(&token, &id, "connect").await.status,
        202
    );
    r.ws.until_state(&id, "READY").await;
}

/// Deleting a tenant purges everything it had (issue 15): a tenant created
/// again under its id finds none of it, and the old credentials open
/// nothing. The id is this test's alone, as every audit line under it is
/// checked and the log layer feeds every server in the process.
#[tokio::test]
async fn a_tenant_created_again_with_a_deleted_ones_id_inherits_nothing() {
    const T: &str = "purged-clinic";
    const OLD_SECRET: &str = "the-old-customers-secret";
    let dir = tempfile::tempdir().expect("tempdir");
    // The old customer's receiver listens on loopback, as an operator who
    // allowed it would have it.
    let mut config = api_config(dir.path());
    config.webhooks.allow_private =
        centinela_actors::cidr::CidrSet::parse(["127.0.0.0/8"]).expect("cidr");
    let s = start_api(config, ScriptedEngine::new(), None).await;
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let mut admin_ws = Ws::connect(&s.api.base, &format!("token={admin}&logs=1")).await;
    let common::api::Ready {
        token,
        id,
        sid,
        mut ws,
    } = s.ready_session(T).await;
    let old = Old::build(&s, &token, &id, &sid, &mut ws, OLD_SECRET).await;
    let logs = s
        .api
        .call("GET", "/api/v1/logs?limit=5000", Cred::Token(&admin), None)
        .await;
    assert_ne!(under(&logs.body, T), [""; 0], "the tenant has audit rows");

    let r = s
        .api
        .call(
            "DELETE",
            &format!("/api/v1/tenants/{T}"),
            Cred::Token(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    // The hub writes a line to the audit log before it pushes it: once the
    // purge's report is pushed, all that came before it is written.
    let report = admin_ws
        .next(|v| v["type"] == "log" && v["message"] == "tenant purged")
        .await;
    assert_eq!(
        (&report["fields"]["purged_tenant"], &report["tenant_id"]),
        (&json!(T), &json!(null)),
        "the report is the admins', filed under no tenant"
    );
    let logs = s
        .api
        .call("GET", "/api/v1/logs?limit=5000", Cred::Token(&admin), None)
        .await;
    assert_eq!(
        under(&logs.body, T),
        [""; 0],
        "no audit row of the tenant is left"
    );

    // The same id again, with a user of the same name.
    let (token, _) = s.api.tenant_with_user(&admin, T).await;
    for (cred, what) in [
        (Cred::Token(&old.token), "the old user's token"),
        (Cred::Key(&old.key), "the old API key"),
    ] {
        let r = get(&s.api, &format!("/api/v1/tenants/{T}"), cred).await;
        assert_eq!(r.status, 401, "{what} opens nothing: {}", r.text);
    }
    let r = get(
        &s.api,
        &format!("/api/v1/tenants/{T}/webhook"),
        Cred::Token(&token),
    )
    .await;
    assert_eq!(
        r.status, 404,
        "no webhook target or secret is inherited: {}",
        r.text
    );
    let r = get(
        &s.api,
        &format!("/api/v1/tenants/{T}/webhook/deliveries"),
        Cred::Token(&token),
    )
    .await;
    assert_eq!(r.body["deliveries"], json!([]), "{}", r.text);
    let r = get(
        &s.api,
        &format!("/api/v1/tenants/{T}/auto-replies"),
        Cred::Token(&token),
    )
    .await;
    assert_eq!(
        r.body,
        json!({"enabled": false, "rules": []}),
        "the default rules"
    );
    let r = get(
        &s.api,
        &format!("/api/v1/tenants/{T}/api-keys"),
        Cred::Token(&token),
    )
    .await;
    assert_eq!(
        r.body["api_keys"].as_array().map(Vec::len),
        Some(1),
        "only the new key: {}",
        r.text
    );
    let r = get(&s.api, "/api/v1/users", Cred::Token(&admin)).await;
    let users: Vec<_> = r.body["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter(|u| u["tenant_id"] == T)
        .collect();
    assert_eq!(users.len(), 1, "only the new user: {}", r.text);
    let r = get(&s.api, "/api/v1/sessions", Cred::Token(&token)).await;
    assert_eq!(r.body["sessions"], json!([]), "{}", r.text);
    let r = get(
        &s.api,
        &format!("/api/v1/sessions/{id}/inbox"),
        Cred::Token(&admin),
    )
    .await;
    assert_eq!(r.status, 404, "the old session is gone: {}", r.text);

    let new_id = s.api.create_session(&token, None, "desk").await;
    let r = s
        .api
        .call(
            "POST",
            &format!("/api/v1/sessions/{new_id}/messages"),
            Cred::Token(&token),
            Some(old.send.clone()),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_ne!(
        r.body["id"],
        old.message.as_str(),
        "the old idempotency key is not the new tenant's"
    );
    let r = get(
        &s.api,
        &format!("/api/v1/sessions/{new_id}/messages"),
        Cred::Token(&token),
    )
    .await;
    assert_eq!(
        r.body["messages"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.text
    );
    let r = get(
        &s.api,
        &format!("/api/v1/sessions/{new_id}/campaigns"),
        Cred::Token(&token),
    )
    .await;
    assert_eq!(r.body["campaigns"], json!([]), "{}", r.text);
    let logs = get(&s.api, "/api/v1/logs?limit=5000", Cred::Token(&token)).await;
    assert!(
        !logs.text.contains(id.as_str()),
        "no audit row of the old session: {}",
        logs.text
    );
    s.server.shutdown().await.expect("shutdown");
}

/// What the deleted tenant had, made through the API.
struct Old {
    token: String,
    key: String,
    /// A message sent with an idempotency key, and the request.
    message: String,
    send: serde_json::Value,
}

impl Old {
    /// A webhook to a local receiver, an API key, auto-replies, a sent
    /// message, an incoming one (answered) and a campaign; the webhook
    /// shown working with `secret`.
    async fn build(
        s: &common::api::ApiServer,
        token: &str,
        id: &str,
        sid: &SessionId,
        ws: &mut Ws,
        secret: &str,
    ) -> Old {
        let mut hook = common::hook::receiver().await;
        let tenant = "/api/v1/tenants/purged-clinic";
        let put = |path: String, body: serde_json::Value| {
            let (api, token) = (s.api.clone(), token.to_owned());
            async move {
                api.call("PUT", &path, Cred::Token(&token), Some(body))
                    .await
            }
        };
        let r = put(
            format!("{tenant}/webhook"),
            json!({"url": hook.url, "secret": secret}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let rules = json!({"enabled": true, "rules": [{"keyword": "horario", "reply": "Abrimos de 9 a 18"}]});
        let r = put(format!("{tenant}/auto-replies"), rules).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let r = s
            .api
            .call(
                "POST",
                &format!("{tenant}/api-keys"),
                Cred::Token(token),
                Some(json!({"name": "crm"})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let key = r.body["key"].as_str().expect("key").to_owned();

        let send =
            json!({"to": "5491100000000", "text": "turno confirmado", "idempotency_key": "k1"});
        let path = format!("/api/v1/sessions/{id}/messages");
        let r = s
            .api
            .call("POST", &path, Cred::Token(token), Some(send.clone()))
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
        let message = r.body["id"].as_str().expect("id").to_owned();
        let sent =
            |v: &serde_json::Value| v["message_id"] == message.as_str() && v["status"] == "sent";
        ws.next(|v| v["type"] == "message_status" && sent(v)).await;
        hook.next_matching(secret, |b| b["event"] == "message.status" && sent(b))
            .await;

        let incoming = centinela_actors::engine::EngineEvent::MessageIn {
            id: "in1".into(),
            from: "5491100000001".into(),
            jid: "5491100000001@c.us".into(),
            text: "¿horario?".into(),
        };
        assert!(s.engine.emit(sid, incoming));
        hook.next_matching(secret, |b| {
            b["event"] == "message.in" && b["message_id"] == "in1"
        })
        .await;
        ws.next(|v| {
            v["type"] == "message_status"
                && v["message_id"] != message.as_str()
                && v["status"] == "sent"
        })
        .await;

        let campaign = json!({"name": "turnos", "template": "Hola {name}", "recipients": [{"to": "5491100000002", "vars": {"name": "Ana"}}]});
        let r = s
            .api
            .call(
                "POST",
                &format!("/api/v1/sessions/{id}/campaigns"),
                Cred::Token(token),
                Some(campaign),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let r = s
            .api
            .call(
                "GET",
                &format!("/api/v1/sessions/{id}/inbox"),
                Cred::Token(token),
                None,
            )
            .await;
        assert_eq!(
            r.body["messages"].as_array().map(Vec::len),
            Some(1),
            "{}",
            r.text
        );
        Old {
            token: token.to_owned(),
            key,
            message,
            send,
        }
    }
}

/// `GET path`.
async fn get(api: &common::api::Api, path: &str, cred: Cred<'_>) -> common::api::Res {
    api.call("GET", path, cred, None).await
}

/// The actions of the audit entries of a `/api/v1/logs` page filed under
/// `tenant`.
fn under(page: &serde_json::Value, tenant: &str) -> Vec<String> {
    page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["tenant"] == tenant)
        .map(|e| format!("{} {}", e["action"], e["data"]["message"]))
        .collect()
}

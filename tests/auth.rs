//! Accounts and auth end to end over a real socket: login (username or
//! usuario), tokens (tampered, expired, alg=none, wrong secret, revoked —
//! also across a restart), password change, throttling, and the tenant
//! isolation matrix over every tenant-scoped route.

mod common;

use centinela_actors::clock::{ManualClock, SharedClock, Timestamp};
use centinela_actors::engine::scripted::ScriptedEngine;
use common::api::{api_config, start_api, Cred, Ws, ADMIN, ADMIN_PASSWORD};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn login_accepts_username_or_usuario_and_says_nothing_about_which_part_failed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    for key in ["username", "usuario"] {
        let r = s
            .api
            .call(
                "POST",
                "/auth/login",
                Cred::None,
                Some(json!({key: ADMIN, "password": ADMIN_PASSWORD})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["success"], true);
        assert!(r.body["token"].as_str().is_some_and(|t| t.len() > 20));
        assert!(r.body["expires_at"].as_str().is_some());
        assert_eq!(r.body["user"]["username"], ADMIN);
        assert_eq!(r.body["user"]["role"], "admin");
    }
    let wrong_pass = s
        .api
        .call(
            "POST",
            "/auth/login",
            Cred::None,
            Some(json!({"username": ADMIN, "password": "nope-nope-nope"})),
        )
        .await;
    let no_user = s
        .api
        .call(
            "POST",
            "/auth/login",
            Cred::None,
            Some(json!({"username": "ghost", "password": "nope-nope-nope"})),
        )
        .await;
    for r in [&wrong_pass, &no_user] {
        assert_eq!(r.status, 401);
        assert_eq!(r.body["success"], false);
        assert_eq!(r.body["error"]["code"], "invalid_credentials");
    }
    assert_eq!(
        wrong_pass.body["error"], no_user.body["error"],
        "the same answer either way"
    );
    let bad = s
        .api
        .call(
            "POST",
            "/auth/login",
            Cred::None,
            Some(json!({"password": "x"})),
        )
        .await;
    assert_eq!(bad.status, 400);
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn verify_me_and_logout_which_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    let token = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let r = s
        .api
        .call("POST", "/auth/verify", Cred::Token(&token), None)
        .await;
    assert_eq!((r.status, r.body["valid"].clone()), (200, json!(true)));
    let r = s
        .api
        .call(
            "POST",
            "/auth/verify",
            Cred::None,
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = s
        .api
        .call("GET", "/auth/me", Cred::Token(&token), None)
        .await;
    assert_eq!(r.body["user"]["username"], ADMIN);
    let other = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let r = s
        .api
        .call("POST", "/auth/logout", Cred::Token(&token), None)
        .await;
    assert_eq!(r.status, 200);
    let r = s
        .api
        .call("GET", "/auth/me", Cred::Token(&token), None)
        .await;
    assert_eq!(r.status, 401, "revoked at once");
    let r = s
        .api
        .call("GET", "/auth/me", Cred::Token(&other), None)
        .await;
    assert_eq!(r.status, 200, "only that token");
    s.server.shutdown().await.expect("shutdown");

    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    let r = s
        .api
        .call("GET", "/auth/me", Cred::Token(&token), None)
        .await;
    assert_eq!(r.status, 401, "still revoked after a restart");
    let r = s
        .api
        .call("GET", "/auth/me", Cred::Token(&other), None)
        .await;
    assert_eq!(
        r.status, 200,
        "the persisted secret still signs the other token"
    );
    s.server.shutdown().await.expect("shutdown");
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn tampered_expired_unsigned_and_foreign_tokens_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_800_000_000_000)));
    let shared: SharedClock = clock.clone();
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), Some(shared)).await;
    let token = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);

    // Tampered: the payload says tenant admin of nothing else, signature kept.
    let mut payload = parts[1].to_owned();
    payload.replace_range(
        payload.len() - 2..,
        if payload.ends_with("AA") { "AB" } else { "AA" },
    );
    let tampered = format!("{}.{}.{}", parts[0], payload, parts[2]);
    // alg=none with the same claims and no signature.
    let none = format!("{}.{}.", b64url(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);
    // Signed with another secret.
    let foreign = {
        use jsonwebtoken_free::sign;
        sign(parts[0], parts[1])
    };
    for (what, t) in [
        ("tampered", tampered),
        ("alg=none", none),
        ("wrong secret", foreign),
        ("garbage", "abc".into()),
    ] {
        let r = s.api.call("GET", "/auth/me", Cred::Token(&t), None).await;
        assert_eq!(r.status, 401, "{what}");
        assert_eq!(r.body["error"]["code"], "unauthorized");
    }
    let r = s
        .api
        .call("GET", "/auth/me", Cred::Token(&token), None)
        .await;
    assert_eq!(r.status, 200);
    clock.advance(Duration::from_secs(12 * 3600 + 1));
    let r = s
        .api
        .call("GET", "/auth/me", Cred::Token(&token), None)
        .await;
    assert_eq!(r.status, 401, "expired after token_ttl");
    s.server.shutdown().await.expect("shutdown");
}

/// An HS256 signature with a secret the server does not know.
mod jsonwebtoken_free {
    pub fn sign(header: &str, payload: &str) -> String {
        let key = jsonwebtoken::EncodingKey::from_secret(b"not-the-servers-secret-not-the-servers");
        let claims: serde_json::Value = serde_json::from_slice(&decode(payload)).expect("claims");
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &key,
        )
        .unwrap_or_else(|_| header.to_owned())
    }

    fn decode(s: &str) -> Vec<u8> {
        let val = |c: u8| -> u32 {
            match c {
                b'A'..=b'Z' => u32::from(c - b'A'),
                b'a'..=b'z' => u32::from(c - b'a') + 26,
                b'0'..=b'9' => u32::from(c - b'0') + 52,
                b'-' => 62,
                _ => 63,
            }
        };
        let mut out = Vec::new();
        for chunk in s.as_bytes().chunks(4) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, c)| acc | val(*c) << (18 - 6 * i));
            for i in 0..chunk.len().saturating_sub(1) {
                out.push((n >> (16 - 8 * i)) as u8);
            }
        }
        out
    }
}

#[tokio::test]
async fn changing_the_password_kills_older_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    let old = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let r = s
        .api
        .call(
            "POST",
            "/auth/change-password",
            Cred::Token(&old),
            Some(json!({"current_password": "wrong-one-here", "new_password": "a-new-password-1"})),
        )
        .await;
    assert_eq!(r.status, 401);
    let r = s
        .api
        .call(
            "POST",
            "/auth/change-password",
            Cred::Token(&old),
            Some(json!({"current_password": ADMIN_PASSWORD, "new_password": "short"})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (400, json!("weak_password"))
    );
    let r = s
        .api
        .call(
            "POST",
            "/auth/change-password",
            Cred::Token(&old),
            Some(json!({"current_password": ADMIN_PASSWORD, "new_password": "a-new-password-1"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let fresh = r.body["token"].as_str().expect("new token").to_owned();
    assert_eq!(
        s.api
            .call("GET", "/auth/me", Cred::Token(&old), None)
            .await
            .status,
        401
    );
    assert_eq!(
        s.api
            .call("GET", "/auth/me", Cred::Token(&fresh), None)
            .await
            .status,
        200
    );
    s.api.login(ADMIN, "a-new-password-1").await;
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn five_failed_logins_are_throttled_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    for _ in 0..5 {
        let r = s
            .api
            .call(
                "POST",
                "/auth/login",
                Cred::None,
                Some(json!({"username": ADMIN, "password": "guess-guess-guess"})),
            )
            .await;
        assert_eq!(r.status, 401);
    }
    let r = s
        .api
        .call(
            "POST",
            "/auth/login",
            Cred::None,
            Some(json!({"username": ADMIN, "password": ADMIN_PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 429, "even the right password waits");
    let retry: u64 = r.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry > 0 && retry <= 900, "{retry}");
    assert_eq!(r.body["error"]["code"], "too_many_attempts");
    s.server.shutdown().await.expect("shutdown");
}

/// Every tenant-scoped route, with tenant A's token and API key against
/// tenant B's resources: 403 and nothing of B in the body. Without
/// credentials: 401.
#[tokio::test]
async fn another_tenants_resources_are_forbidden_on_every_route() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let (a_token, a_key) = s.api.tenant_with_user(&admin, "tenant-a").await;
    let (b_token, _b_key) = s.api.tenant_with_user(&admin, "tenant-b").await;
    let b_session = s.api.create_session(&b_token, None, "b desk").await;
    let keys = s
        .api
        .call(
            "GET",
            "/api/v1/tenants/tenant-b/api-keys",
            Cred::Token(&b_token),
            None,
        )
        .await;
    let b_key_id = keys.body["api_keys"][0]["id"]
        .as_str()
        .expect("key id")
        .to_owned();
    let routes: Vec<(&str, String, Option<serde_json::Value>)> = vec![
        ("GET", format!("/api/v1/sessions/{b_session}"), None),
        ("DELETE", format!("/api/v1/sessions/{b_session}"), None),
        (
            "POST",
            format!("/api/v1/sessions/{b_session}/connect"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/sessions/{b_session}/disconnect"),
            None,
        ),
        ("POST", format!("/api/v1/sessions/{b_session}/logout"), None),
        ("GET", format!("/api/v1/sessions/{b_session}/qr"), None),
        (
            "POST",
            format!("/api/v1/sessions/{b_session}/pairing-code"),
            Some(json!({"phone": "5491122334455"})),
        ),
        (
            "GET",
            format!("/api/v1/sessions/{b_session}/qr?format=svg"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/sessions/{b_session}/messages"),
            Some(json!({"to": "5491100000000", "text": "hola"})),
        ),
        (
            "POST",
            "/api/v1/sessions".into(),
            Some(json!({"tenant_id": "tenant-b", "name": "intruder"})),
        ),
        ("GET", "/api/v1/tenants/tenant-b".into(), None),
        ("DELETE", "/api/v1/tenants/tenant-b".into(), None),
        ("GET", "/api/v1/tenants/tenant-b/api-keys".into(), None),
        (
            "POST",
            "/api/v1/tenants/tenant-b/api-keys".into(),
            Some(json!({"name": "stolen"})),
        ),
        (
            "DELETE",
            format!("/api/v1/tenants/tenant-b/api-keys/{b_key_id}"),
            None,
        ),
        (
            "GET",
            "/api/rate-limit-status?organization_id=tenant-b".into(),
            None,
        ),
        ("POST", "/api/v1/tenants/tenant-b/unblock".into(), None),
        (
            "POST",
            "/api/v1/tenants/tenant-b/reset-cooldown".into(),
            None,
        ),
        ("GET", "/api/v1/tenants".into(), None),
        ("GET", "/api/v1/users".into(), None),
        (
            "POST",
            "/api/v1/users".into(),
            Some(json!({"username": "evil", "password": "evil-password-1", "role": "admin"})),
        ),
        ("GET", "/health/details".into(), None),
        ("GET", "/api/v1/tenants/tenant-b/webhook".into(), None),
        (
            "PUT",
            "/api/v1/tenants/tenant-b/webhook".into(),
            Some(json!({"url": "http://127.0.0.1:9/x"})),
        ),
        ("DELETE", "/api/v1/tenants/tenant-b/webhook".into(), None),
        (
            "GET",
            "/api/v1/tenants/tenant-b/webhook/deliveries".into(),
            None,
        ),
        (
            "POST",
            "/api/v1/tenants/tenant-b/webhook/deliveries/d_x/redeliver".into(),
            None,
        ),
        (
            "GET",
            format!("/api/v1/sessions/{b_session}/messages"),
            None,
        ),
        (
            "GET",
            format!("/api/v1/sessions/{b_session}/messages/m_x"),
            None,
        ),
        ("GET", format!("/api/v1/sessions/{b_session}/inbox"), None),
    ];
    for (method, path, body) in &routes {
        for (who, cred) in [
            ("token", Cred::Token(&a_token)),
            ("api key", Cred::Key(&a_key)),
        ] {
            let r = s.api.call(method, path, cred, body.clone()).await;
            assert_eq!(r.status, 403, "{who} {method} {path}: {}", r.text);
            assert!(
                !r.text.contains(&b_session) && !r.text.contains("b desk"),
                "{who} {method} {path} leaked: {}",
                r.text
            );
            assert_eq!(r.body["error"]["code"], "forbidden");
        }
        let r = s.api.call(method, path, Cred::None, body.clone()).await;
        assert_eq!(r.status, 401, "no credentials {method} {path}: {}", r.text);
    }
    // B's session is untouched and B still sees it; A's list does not show it.
    assert_eq!(
        s.api.session(&b_token, &b_session).await["state"],
        "DISCONNECTED"
    );
    let list = s
        .api
        .call("GET", "/api/v1/sessions", Cred::Token(&a_token), None)
        .await;
    assert_eq!(list.body["sessions"], json!([]));
    let list = s
        .api
        .call("GET", "/api/v1/sessions", Cred::Key(&a_key), None)
        .await;
    assert_eq!(list.body["sessions"], json!([]));
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn api_keys_are_shown_once_listed_masked_and_revocable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let (token, key) = s.api.tenant_with_user(&admin, "clinic").await;
    assert!(key.starts_with("cnt_") && key.len() > 30);
    let list = s
        .api
        .call(
            "GET",
            "/api/v1/tenants/clinic/api-keys",
            Cred::Token(&token),
            None,
        )
        .await;
    assert!(!list.text.contains(&key), "the key is never shown again");
    let id = list.body["api_keys"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = s
        .api
        .call("GET", "/api/v1/sessions", Cred::Key(&key), None)
        .await;
    assert_eq!(r.status, 200);
    let r = s
        .api
        .call(
            "DELETE",
            &format!("/api/v1/tenants/clinic/api-keys/{id}"),
            Cred::Token(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = s
        .api
        .call("GET", "/api/v1/sessions", Cred::Key(&key), None)
        .await;
    assert_eq!(r.status, 401, "revoked");
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn responses_carry_security_headers_and_cors_follows_the_patterns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    config.server.cors_origins = vec!["http://192.168.*.*:5000".into()];
    config.server.max_body_bytes = 4096;
    let s = start_api(config, ScriptedEngine::new(), None).await;
    let r = s.api.call("GET", "/health", Cred::None, None).await;
    for h in [
        "x-frame-options",
        "x-content-type-options",
        "referrer-policy",
        "content-security-policy",
    ] {
        assert!(r.headers.contains_key(h), "missing {h}");
    }
    let allowed = s
        .api
        .http
        .get(format!("{}/health", s.api.base))
        .header("origin", "http://192.168.1.94:5000")
        .send()
        .await
        .expect("request");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://192.168.1.94:5000"
    );
    let denied = s
        .api
        .http
        .get(format!("{}/health", s.api.base))
        .header("origin", "http://evil.example:5000")
        .send()
        .await
        .expect("request");
    assert!(!denied.headers().contains_key("access-control-allow-origin"));
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let big = format!("{{\"id\":\"x\",\"name\":\"{}\"}}", "a".repeat(10_000));
    let r = s
        .api
        .raw("POST", "/api/v1/tenants", &admin, "application/json", &big)
        .await;
    assert_eq!(r.status, 413, "body limit");
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn deleting_a_tenant_stops_and_deletes_its_sessions_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let (token, key) = s.api.tenant_with_user(&admin, "gone").await;
    let id = s.api.create_session(&token, None, "desk").await;
    let mut ws = common::api::Ws::connect(&s.api.base, &format!("token={admin}")).await;
    s.api.session_action(&token, &id, "connect").await;
    ws.until_state(&id, "QR").await;
    let sid = centinela_actors::ids::SessionId::new(id.clone()).expect("id");
    assert!(s.engine.is_running(&sid));
    let r = s
        .api
        .call("DELETE", "/api/v1/tenants/gone", Cred::Token(&admin), None)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(!s.engine.is_running(&sid), "its browser was stopped");
    let r = s
        .api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}"),
            Cred::Token(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "its session is gone");
    assert_eq!(
        s.api
            .call("GET", "/auth/me", Cred::Token(&token), None)
            .await
            .status,
        401,
        "its users are gone"
    );
    assert_eq!(
        s.api
            .call("GET", "/api/v1/sessions", Cred::Key(&key), None)
            .await
            .status,
        401,
        "its keys are gone"
    );
    s.server.shutdown().await.expect("shutdown");
}

/// An open WebSocket streams message text: it closes (4001, with the
/// reason) as soon as its credential stops working — a logout, a revoked
/// API key, a deleted user, an expired token — not only at the handshake.
#[tokio::test]
async fn an_open_websocket_closes_when_its_credential_stops_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    config.auth.token_ttl = Duration::from_secs(3);
    // The clock stands still (in the future, as the JWT library checks exp
    // against the system time too), so only the socket's own expiry timer (real
    // time, from the token's exp) ends a token: the admin's stays valid.
    let clock: SharedClock = Arc::new(ManualClock::new(Timestamp::from_millis(1_900_000_000_000)));
    let s = start_api(config, ScriptedEngine::new(), Some(clock)).await;
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let (token, key) = s.api.tenant_with_user(&admin, "clinic").await;

    let mut by_token = Ws::connect(&s.api.base, &format!("token={token}")).await;
    let mut by_key = Ws::connect(&s.api.base, &format!("api_key={key}")).await;
    let r = s
        .api
        .call("POST", "/auth/logout", Cred::Token(&token), None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        by_token.closed().await,
        (4001, "credentials revoked".to_owned()),
        "after a logout"
    );

    let list = s
        .api
        .call(
            "GET",
            "/api/v1/tenants/clinic/api-keys",
            Cred::Token(&admin),
            None,
        )
        .await;
    let id = list.body["api_keys"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = s
        .api
        .call(
            "DELETE",
            &format!("/api/v1/tenants/clinic/api-keys/{id}"),
            Cred::Token(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        by_key.closed().await,
        (4001, "credentials revoked".to_owned()),
        "after the key is revoked"
    );

    // A token nobody revokes still ends at its expiry (3 s here).
    let fresh = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let mut expiring = Ws::connect(&s.api.base, &format!("token={fresh}")).await;
    assert_eq!(expiring.closed().await, (4001, "token expired".to_owned()));
    s.server.shutdown().await.expect("shutdown");
}

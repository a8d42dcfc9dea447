//! The client address behind a reverse proxy, over a real socket (the test
//! client on 127.0.0.1 stands for the proxy): with
//! `server.trusted_proxies = ["127.0.0.1/32"]` the login throttle counts
//! per address `X-Forwarded-For` names, so one client's failures block that
//! client and not everyone behind the proxy; without it the header is
//! ignored, so a made-up one does not dodge the throttle.
//!
//! Each attempt uses a username of its own, so the username's count never
//! blocks: a 429 here is the address's.

mod common;

use centinela_actors::cidr::CidrSet;
use centinela_actors::engine::scripted::ScriptedEngine;
use common::api::{api_config, start_api, ApiServer, ADMIN, ADMIN_PASSWORD};
use serde_json::json;

/// A login as `username` with `X-Forwarded-For: forwarded_for`; the status.
async fn login_from(s: &ApiServer, forwarded_for: &str, username: &str, password: &str) -> u16 {
    let res = s
        .api
        .http
        .post(format!("{}/auth/login", s.api.base))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("request");
    res.status().as_u16()
}

/// Five failed logins with `X-Forwarded-For: forwarded_for(n)`, each
/// checked (401).
async fn five_failures(s: &ApiServer, forwarded_for: impl Fn(u32) -> String) {
    for n in 0..5 {
        let status = login_from(s, &forwarded_for(n), &format!("guess{n}"), "wrong-password").await;
        assert_eq!(status, 401, "failure {n} is checked");
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_throttled_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    config.server.trusted_proxies = CidrSet::parse(["127.0.0.1/32"]).expect("a CIDR");
    let s = start_api(config, ScriptedEngine::new(), None).await;
    five_failures(&s, |_| "203.0.113.7".into()).await;
    assert_eq!(
        login_from(&s, "203.0.113.7", "someone-else", "wrong-password").await,
        429,
        "203.0.113.7 is blocked"
    );
    assert_eq!(
        login_from(
            &s,
            "198.51.100.99, 203.0.113.7",
            "another-one",
            "wrong-password"
        )
        .await,
        429,
        "a hop the client made up to the left of its own address changes nothing"
    );
    assert_eq!(
        login_from(&s, "203.0.113.8", "a-neighbour", "wrong-password").await,
        401,
        "203.0.113.8, behind the same proxy, is still checked"
    );
    assert_eq!(
        login_from(&s, "203.0.113.8", ADMIN, ADMIN_PASSWORD).await,
        200,
        "and logs in"
    );
    s.server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn without_trusted_proxies_a_spoofed_header_does_not_dodge_the_throttle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = api_config(dir.path());
    assert!(
        config.server.trusted_proxies.is_empty(),
        "the shipped default"
    );
    let s = start_api(config, ScriptedEngine::new(), None).await;
    five_failures(&s, |n| format!("203.0.113.{}", 10 + n)).await;
    assert_eq!(
        login_from(&s, "203.0.113.99", "someone-else", "wrong-password").await,
        429,
        "the peer (127.0.0.1) is the client, whatever the header says"
    );
    assert_eq!(
        login_from(&s, "203.0.113.100", ADMIN, ADMIN_PASSWORD).await,
        429,
        "even the right password waits"
    );
    s.server.shutdown().await.expect("shutdown");
}

//! What a hostile client can do to the HTTP layer, each a test that failed
//! before its fix: a burst of wrong passwords (the throttle counts each
//! attempt before its password is checked, and no more password hashes run
//! at once than the hashing limit allows: each is 19 MiB), an overlong
//! username, an API key in a query string (it lands in proxy logs),
//! made-up HTTP methods growing `/metrics` forever, and a plain GET of the
//! WebSocket answered with axum's text instead of our error body.

mod common;

use centinela_actors::store::{AccountRepo, Role};
use common::Reply;
use common::{App, Cred};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_parallel_wrong_logins_get_five_guesses_and_bounded_hashing() {
    let app = App::start().await;
    let mut ana = app.user("ana", Role::Admin, None);
    ana.password_hash =
        centinela_web::auth::hash_password_sync("the-right-password").expect("hash");
    app.store.update_user(&ana).expect("set the password");

    let wrong = json!({"username": "ana", "password": "a-wrong-guess"});
    let replies = futures::future::join_all(
        (0..200).map(|_| app.json("POST", "/auth/login", &Cred::None, &wrong)),
    )
    .await;
    let count = |status: u16| replies.iter().filter(|r| r.status == status).count();
    let (checked, throttled, busy) = (count(401), count(429), count(503));
    assert_eq!(checked + throttled + busy, 200, "only 401, 429 or 503");
    assert!(
        checked <= 5,
        "{checked} passwords were checked; at most 5 may be"
    );
    assert!(
        throttled >= 195 - busy,
        "{throttled} throttled, {busy} busy"
    );
    for r in &replies {
        let code = r.error_code().expect("our error body");
        assert!(
            ["invalid_credentials", "too_many_attempts", "busy"].contains(&code.as_str()),
            "{code}"
        );
    }
    let auth = &app.state.auth;
    assert!(
        auth.hashing_peak() <= auth.hashing_limit(),
        "{} hashes ran at once, the limit is {}",
        auth.hashing_peak(),
        auth.hashing_limit()
    );
    // Every guess counted: even the right password waits out the window.
    let right = json!({"username": "ana", "password": "the-right-password"});
    let r = app.json("POST", "/auth/login", &Cred::None, &right).await;
    assert_eq!(r.status, 429, "{}", r.text);
}

#[tokio::test]
async fn an_overlong_username_is_refused_before_any_work() {
    let app = App::start().await;
    let body = json!({"username": "u".repeat(65), "password": "whatever-it-is"});
    let r = app.json("POST", "/auth/login", &Cred::None, &body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error_code().as_deref(), Ok("invalid_username"));
    assert_eq!(app.state.auth.hashing_peak(), 0, "nothing was hashed");
}

#[tokio::test]
async fn credentials_in_a_query_string_count_only_on_the_websocket() {
    let app = App::start().await;
    let tenant = app.tenant("clinic", "Clinic");
    let (_, key) = app.api_key(&tenant, "crm");
    let Cred::ApiKey(secret) = &key else {
        unreachable!("api_key gives an API key")
    };
    let r = app.call("GET", "/api/v1/sessions", &key, None).await;
    assert_eq!(r.status, 200, "in the header: {}", r.text);
    let uri = format!("/api/v1/sessions?api_key={secret}");
    let r: Reply = app.call("GET", &uri, &Cred::None, None).await;
    assert_eq!(r.status, 401, "in the query: {}", r.text);
    let admin = app.user("root", Role::Admin, None);
    let Cred::Bearer(token) = app.token(&admin) else {
        unreachable!("token gives a bearer")
    };
    let r = app
        .call(
            "GET",
            &format!("/health/details?token={token}"),
            &Cred::None,
            None,
        )
        .await;
    assert_eq!(r.status, 401, "a token in the query: {}", r.text);
}

#[tokio::test]
async fn a_plain_get_of_the_websocket_gets_our_error_body_after_the_credential() {
    let app = App::start().await;
    let r = app.call("GET", "/api/v1/ws", &Cred::None, None).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (401, Ok("unauthorized".into())),
        "{}",
        r.text
    );
    let admin = app.user("root", Role::Admin, None);
    let r = app
        .call("GET", "/api/v1/ws", &app.token(&admin), None)
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (400, Ok("websocket_upgrade_required".into())),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn made_up_methods_are_counted_as_other() {
    let app = App::start().await;
    for i in 0..20 {
        let r = app
            .call(&format!("BREW{i}"), "/health", &Cred::None, None)
            .await;
        assert_eq!(r.status, 405, "{}", r.text);
    }
    let metrics = app.call("GET", "/metrics", &Cred::None, None).await;
    assert_eq!(metrics.status, 200);
    assert!(!metrics.text.contains("BREW"), "{}", metrics.text);
    assert!(
        metrics.text.contains("method=\"OTHER\""),
        "{}",
        metrics.text
    );
}

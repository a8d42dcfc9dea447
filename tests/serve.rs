//! The service end to end over a real socket: health, errors, shutdown and
//! the data-dir lock.

mod common;

use centinela::{RunError, Services};
use common::{config_for, start};

/// `reqwest::get`, once the TLS provider the project's client uses is set.
async fn get(url: String) -> reqwest::Response {
    centinela_actors::messaging::webhooks::install_tls_provider();
    reqwest::get(url).await.expect("request")
}

#[tokio::test]
async fn health_answers_over_a_real_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(config_for(dir.path()), Services::default()).await;
    let res = get(server.url("/health")).await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["status"], "healthy");
    let ts = body["timestamp"].as_str().expect("timestamp string");
    assert!(ts.ends_with('Z') && ts.contains('T'), "RFC 3339: {ts}");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn unknown_routes_get_a_json_404() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(config_for(dir.path()), Services::default()).await;
    let res = get(server.url("/nope")).await;
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_found");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused_and_shutdown_releases_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = start(config_for(dir.path()), Services::default()).await;
    // The first one answers, so its store is open.
    let res = get(first.url("/health")).await;
    assert_eq!(res.status(), 200);

    let second = start(config_for(dir.path()), Services::default()).await;
    let err = second.shutdown().await.expect_err("locked");
    assert!(matches!(err, RunError::Store(_)), "{err}");
    assert!(
        err.to_string()
            .contains("in use by another Centinela process"),
        "{err}"
    );

    first.shutdown().await.expect("clean shutdown");
    let third = start(config_for(dir.path()), Services::default()).await;
    let res = get(third.url("/health")).await;
    assert_eq!(res.status(), 200, "the store was released by the shutdown");
    third.shutdown().await.expect("clean shutdown");
}

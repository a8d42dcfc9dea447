//! The listener itself over real sockets: HTTPS from the operator's PEM
//! files (HTTP/2 by ALPN, and the WebSocket over TLS), and what a slow or
//! greedy client can hold: a request head must arrive within
//! `server.header_timeout`, and at most `server.max_connections`
//! connections are served at once.

mod common;

use centinela_actors::engine::scripted::ScriptedEngine;
use common::api::{api_config, start_api, Api, ADMIN, ADMIN_PASSWORD};
use common::{tls, WAIT};
use futures::StreamExt;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or the wait ends);
/// answers what came and how long it took.
async fn until_closed(conn: &mut TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let read = tokio::time::timeout(WAIT, conn.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "the server should close the connection within the wait"
    );
    (got, started.elapsed())
}

#[tokio::test]
async fn tls_serves_the_api_over_http2_and_the_websocket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, pem) = tls::certificate(dir.path());
    let mut config = api_config(dir.path());
    config.server.tls_cert = Some(cert);
    config.server.tls_key = Some(key);
    let s = start_api(config, ScriptedEngine::new(), None).await;
    let port = s.server.addr.port();

    let http = tls::client(&pem);
    let api = Api {
        base: format!("https://localhost:{port}"),
        http: http.clone(),
    };
    let health = http
        .get(format!("{}/health", api.base))
        .send()
        .await
        .expect("HTTPS request");
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.version(),
        reqwest::Version::HTTP_2,
        "ALPN picks HTTP/2"
    );
    let token = api.login(ADMIN, ADMIN_PASSWORD).await;

    // Plain HTTP on the TLS port gets no answer but a closed connection.
    let mut plain = TcpStream::connect(s.server.addr).await.expect("connect");
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let (got, _) = until_closed(&mut plain).await;
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"));

    // The WebSocket over TLS (HTTP/1.1 upgrade), with the token.
    let mut ws = tls::websocket(s.server.addr, &pem, &token).await;
    let hello = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("hello within the wait")
        .expect("open")
        .expect("ok");
    let hello: serde_json::Value =
        serde_json::from_str(hello.to_text().expect("text")).expect("json");
    assert_eq!(hello["type"], "hello");
    drop(ws);
    s.server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_missing_or_broken_certificate_stops_the_start_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, _, _) = tls::certificate(dir.path());
    let mut config = api_config(dir.path());
    config.server.tls_cert = Some(cert);
    config.server.tls_key = Some(dir.path().join("missing.pem"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let ran = centinela::run(
        config,
        centinela::Services::default(),
        listener,
        std::future::pending(),
    );
    let err = tokio::time::timeout(WAIT, ran)
        .await
        .expect("the start fails at once")
        .expect_err("a missing key is an error");
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

#[tokio::test]
async fn a_client_that_does_not_send_a_whole_head_in_time_is_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    config.server.header_timeout = Duration::from_secs(1);
    let s = start_api(config, ScriptedEngine::new(), None).await;

    // Half a head (a slowloris), and a connection that sends nothing at all.
    let mut slow = TcpStream::connect(s.server.addr).await.expect("connect");
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut silent = TcpStream::connect(s.server.addr).await.expect("connect");
    let (got, took) = until_closed(&mut slow).await;
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"));
    assert!(
        took >= Duration::from_millis(900),
        "cut after the timeout, not before: {took:?}"
    );
    let (got, _) = until_closed(&mut silent).await;
    assert!(got.is_empty(), "nothing is sent to a silent client");

    // A keep-alive connection idle after its answer is cut the same way.
    let mut idle = TcpStream::connect(s.server.addr).await.expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (got, _) = until_closed(&mut idle).await;
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));

    // A client in time is still served.
    let res = s
        .api
        .call("GET", "/health", common::api::Cred::None, None)
        .await;
    assert_eq!(res.status, 200);
    s.server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    config.server.max_connections = 2;
    let s = start_api(config, ScriptedEngine::new(), None).await;
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    let held = [
        TcpStream::connect(s.server.addr).await.expect("connect"),
        TcpStream::connect(s.server.addr).await.expect("connect"),
    ];
    let mut third = TcpStream::connect(s.server.addr).await.expect("connect");
    third.write_all(request).await.expect("write");
    let mut first_byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut first_byte)).await;
    assert!(
        early.is_err(),
        "a third connection is not served while two are open"
    );

    drop(held);
    let (got, _) = until_closed(&mut third).await;
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "served once a slot freed"
    );
    s.server.shutdown().await.expect("clean shutdown");
}

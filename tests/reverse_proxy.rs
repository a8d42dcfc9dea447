//! The README's nginx recipe, as written there, in front of a real
//! `serve --demo`: Debian's nginx terminates TLS (HTTP/2 by ALPN) and
//! proxies one whole session — log in, tenant, session, connect, the QR on
//! the WebSocket (upgraded through nginx), the scan on the demo phone,
//! READY, a text that is sent, disconnect. `./test.sh` installs nginx
//! (scripts/ensure-deps.sh). The only edits to the recipe are the
//! addresses and the certificate paths, and each must apply: a recipe that
//! drifts from what this test expects fails here.

mod common;

use common::api::{Api, Cred};
use common::browser::browser_slot;
use common::proc::{spawn_serve_with, terminate};
use common::tls::{self, Socket};
use common::WAIT;
use futures::StreamExt;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use tokio_tungstenite::tungstenite::Message;

const PASSWORD: &str = "an-admin-password";
const PHONE: &str = "5491122334455";
/// Debian's nginx.
const NGINX: &str = "/usr/sbin/nginx";

/// The block after `<!-- recipe: nginx -->` in the README.
fn recipe() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README");
    let after = readme
        .split_once("<!-- recipe: nginx -->\n```nginx\n")
        .expect("the README has the nginx recipe")
        .1;
    after
        .split_once("```")
        .expect("the recipe's block ends")
        .0
        .to_owned()
}

/// `text` with `from` replaced by `to`, which must occur.
fn edit(text: String, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the recipe no longer has {from:?}");
    text.replace(from, to)
}

/// nginx started (as a daemon: its command returns once it listens) from
/// a prefix directory; stopped on drop.
struct Nginx {
    prefix: PathBuf,
}

impl Nginx {
    fn start(prefix: &Path, server: &str) -> (Nginx, u16) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let site = edit(
            recipe(),
            "listen 443 ssl http2;",
            &format!("listen 127.0.0.1:{port} ssl http2;"),
        );
        let site = edit(site, "127.0.0.1:3012", server);
        let site = edit(
            site,
            "/etc/ssl/certs/centinela.pem",
            &prefix.join("cert.pem").display().to_string(),
        );
        let site = edit(
            site,
            "/etc/ssl/private/centinela.key",
            &prefix.join("key.pem").display().to_string(),
        );
        let p = prefix.display();
        let conf = format!(
            "user root;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n access_log {p}/access.log;\n client_body_temp_path {p}/body;\n\
             proxy_temp_path {p}/proxy;\n fastcgi_temp_path {p}/fastcgi;\n uwsgi_temp_path {p}/uwsgi;\n\
             scgi_temp_path {p}/scgi;\n{site}\n}}\n"
        );
        std::fs::write(prefix.join("nginx.conf"), conf).expect("write nginx.conf");
        let out = Command::new(NGINX)
            .args(["-p", &p.to_string(), "-c", "nginx.conf", "-e", "error.log"])
            .output()
            .expect("nginx runs: ./test.sh installs Debian's nginx");
        assert!(
            out.status.success(),
            "nginx starts with the recipe: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default()
        );
        (
            Nginx {
                prefix: prefix.to_path_buf(),
            },
            port,
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let p = self.prefix.display().to_string();
        let _ = Command::new(NGINX)
            .args([
                "-p",
                &p,
                "-c",
                "nginx.conf",
                "-e",
                "error.log",
                "-s",
                "stop",
            ])
            .status();
    }
}

/// The next event on `ws` matching `pred`, within the wait.
async fn next(ws: &mut Socket, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a matching event within the wait")
            .expect("socket open")
            .expect("socket ok");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).expect("json event");
            if pred(&v) {
                return v;
            }
        }
    }
}

async fn until_state(ws: &mut Socket, id: &str, state: &str) {
    next(ws, |v| {
        v["type"] == "transition" && v["session_id"] == id && v["to"]["state"] == state
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nginx_recipe_carries_a_whole_session() {
    let _slot = browser_slot().await;
    let data = tempfile::tempdir().expect("tempdir");
    let prefix = tempfile::tempdir().expect("tempdir");
    let (_, _, pem) = tls::certificate(prefix.path());
    let (child, listen, _) = spawn_serve_with(
        &data.path().to_string_lossy(),
        &["--demo"],
        &[("CENTINELA_ADMIN_PASSWORD", PASSWORD)],
    );
    let (nginx, port) = Nginx::start(prefix.path(), &listen);

    let http = tls::client(&pem);
    let api = Api {
        base: format!("https://localhost:{port}"),
        http: http.clone(),
    };
    let health = http
        .get(format!("{}/health", api.base))
        .send()
        .await
        .expect("HTTPS through nginx");
    assert_eq!(
        (health.status(), health.version()),
        (reqwest::StatusCode::OK, reqwest::Version::HTTP_2)
    );

    let admin = api.login("admin", PASSWORD).await;
    let nginx_addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut ws = tls::websocket(nginx_addr, &pem, &admin).await;
    let hello = next(&mut ws, |_| true).await;
    assert_eq!(hello["type"], "hello");
    let tenant = api
        .call(
            "POST",
            "/api/v1/tenants",
            Cred::Token(&admin),
            Some(json!({"id": "clinic", "name": "Clinic"})),
        )
        .await;
    assert_eq!(tenant.status, 201, "{}", tenant.text);
    let id = api
        .create_session(&admin, Some("clinic"), "front desk")
        .await;
    let connect = api.session_action(&admin, &id, "connect").await;
    assert_eq!(connect.status, 202, "{}", connect.text);

    until_state(&mut ws, &id, "QR").await;
    let qr = api
        .call(
            "GET",
            &format!("/api/v1/sessions/{id}/qr"),
            Cred::Token(&admin),
            None,
        )
        .await;
    let code = qr.body["qr"].as_str().expect("qr").to_owned();
    let scan = api
        .call(
            "POST",
            "/sim/scan",
            Cred::None,
            Some(json!({"qr": code, "phone": PHONE})),
        )
        .await;
    assert_eq!(scan.status, 200, "{}", scan.text);
    until_state(&mut ws, &id, "READY").await;

    let sent = api
        .call(
            "POST",
            &format!("/api/v1/sessions/{id}/messages"),
            Cred::Token(&admin),
            Some(json!({"to": PHONE, "text": "hola"})),
        )
        .await;
    assert_eq!(sent.status, 202, "{}", sent.text);
    let mid = sent.body["id"].as_str().expect("id").to_owned();
    let status = next(&mut ws, |v| {
        v["type"] == "message_status"
            && v["message_id"] == mid.as_str()
            && ["sent", "delivered", "read", "failed"]
                .iter()
                .any(|s| v["status"] == *s)
    })
    .await;
    assert_ne!(status["status"], "failed", "{status}");

    let stop = api.session_action(&admin, &id, "disconnect").await;
    assert_eq!(stop.status, 200, "{}", stop.text);
    until_state(&mut ws, &id, "DISCONNECTED").await;
    drop(ws);
    drop(nginx);
    assert!(terminate(child).success(), "serve stops cleanly");
}

//! API-test setup: a real server (`centinela::run`) on `127.0.0.1:0` with a
//! temp data dir, the scripted engine standing in for WhatsApp (these tests
//! are about the HTTP layer, not the browser), a known first admin, and a
//! small JSON client.

use super::{config_for, start, Server};
use centinela::config::Config;
use centinela::{AdminBootstrap, Services};
use centinela_actors::clock::SharedClock;
use centinela_actors::engine::scripted::ScriptedEngine;
use centinela_actors::engine::{EngineKind, EngineSet};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub const ADMIN: &str = "root";
pub const ADMIN_PASSWORD: &str = "correct-horse-battery";

/// Admission out of the way unless a test tightens it.
pub fn api_config(dir: &Path) -> Config {
    let mut c = config_for(dir);
    c.antiban.connect_delay = Duration::ZERO;
    c.antiban.connect_jitter_min = Duration::ZERO;
    c.antiban.connect_jitter_max = Duration::ZERO;
    c.antiban.queue_spacing = Duration::ZERO;
    c.antiban.global_attempts_per_hour = 1000;
    c.antiban.tenant_attempts_per_day = 1000;
    c
}

pub struct ApiServer {
    pub server: Server,
    pub engine: ScriptedEngine,
    pub api: Api,
}

pub async fn start_api(
    config: Config,
    engine: ScriptedEngine,
    clock: Option<SharedClock>,
) -> ApiServer {
    start_api_with(config, engine, |services| {
        if let Some(clock) = clock {
            services.clock = clock;
        }
    })
    .await
}

/// [`start_api`], with the services changed by `tweak` (a scripted
/// resolver for webhook hosts, a manual clock).
pub async fn start_api_with(
    config: Config,
    engine: ScriptedEngine,
    tweak: impl FnOnce(&mut Services),
) -> ApiServer {
    // The supervisor log stream needs the tracing layer, as `main` installs it.
    centinela_web::logstream::install_global();
    let mut services = Services {
        engines: EngineSet::default().with(EngineKind::Webjs, Arc::new(engine.clone())),
        admin: AdminBootstrap::Given {
            username: ADMIN.into(),
            password: ADMIN_PASSWORD.into(),
        },
        ..Services::default()
    };
    tweak(&mut services);
    let server = start(config, services).await;
    let api = Api::new(&server.url(""));
    ApiServer {
        server,
        engine,
        api,
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Res {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

pub enum Cred<'a> {
    None,
    Token(&'a str),
    Key(&'a str),
}

impl Api {
    /// What the simulator's device paired to `phone` (the newest, when
    /// it was paired more than once) sent, in order; `self` is the
    /// simulator's API.
    pub async fn sim_sent(&self, phone: &str) -> Vec<Value> {
        let devices = self.call("GET", "/sim/devices", Cred::None, None).await;
        let device = devices
            .body
            .as_array()
            .expect("devices")
            .iter()
            .rev()
            .find(|d| d["phone"] == phone)
            .expect("the paired device")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let sent = self
            .call(
                "GET",
                &format!("/sim/devices/{device}/sent"),
                Cred::None,
                None,
            )
            .await;
        sent.body.as_array().expect("sent").clone()
    }

    pub fn new(base: &str) -> Api {
        centinela_actors::messaging::webhooks::install_tls_provider();
        Api {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(&self, method: &str, path: &str, cred: Cred<'_>, body: Option<Value>) -> Res {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        req = match cred {
            Cred::None => req,
            Cred::Token(t) => req.bearer_auth(t),
            Cred::Key(k) => req.header("x-api-key", k),
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Res {
            status,
            headers,
            body,
            text,
        }
    }

    /// Sends a raw body (malformed JSON tests).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: &str,
        content_type: &str,
        body: &str,
    ) -> Res {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let res = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Res {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn login(&self, username: &str, password: &str) -> String {
        let r = self
            .call(
                "POST",
                "/auth/login",
                Cred::None,
                Some(json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(r.status, 200, "login {username}: {}", r.text);
        r.body["token"].as_str().expect("token").to_owned()
    }

    /// Creates a tenant with one user and one API key; returns (token, key).
    pub async fn tenant_with_user(&self, admin: &str, tenant: &str) -> (String, String) {
        let r = self
            .call(
                "POST",
                "/api/v1/tenants",
                Cred::Token(admin),
                Some(json!({"id": tenant, "name": tenant})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let user = format!("{tenant}-user");
        let r = self
            .call(
                "POST",
                "/api/v1/users",
                Cred::Token(admin),
                Some(json!({"username": user, "password": "tenant-password-1", "role": "tenant", "tenant_id": tenant})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let token = self.login(&user, "tenant-password-1").await;
        let r = self
            .call(
                "POST",
                &format!("/api/v1/tenants/{tenant}/api-keys"),
                Cred::Token(&token),
                Some(json!({"name": "crm"})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        (token, r.body["key"].as_str().expect("key").to_owned())
    }

    pub async fn create_session(&self, token: &str, tenant: Option<&str>, name: &str) -> String {
        let mut body = json!({"name": name});
        if let Some(t) = tenant {
            body["tenant_id"] = json!(t);
        }
        let r = self
            .call("POST", "/api/v1/sessions", Cred::Token(token), Some(body))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["id"].as_str().expect("id").to_owned()
    }

    /// `POST /api/v1/sessions/{id}/{action}` (connect, disconnect, logout).
    pub async fn session_action(&self, token: &str, id: &str, action: &str) -> Res {
        self.call(
            "POST",
            &format!("/api/v1/sessions/{id}/{action}"),
            Cred::Token(token),
            None,
        )
        .await
    }

    /// Reads the session once.
    pub async fn session(&self, token: &str, id: &str) -> Value {
        let r = self
            .call(
                "GET",
                &format!("/api/v1/sessions/{id}"),
                Cred::Token(token),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body
    }
}

/// A WebSocket client of `/api/v1/ws`.
pub struct Ws {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Ws {
    pub async fn connect(base: &str, query: &str) -> Ws {
        let url = format!("{}/api/v1/ws?{query}", base.replacen("http://", "ws://", 1));
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket handshake");
        let mut ws = Ws { stream };
        let hello = ws.next(|_| true).await;
        assert_eq!(hello["type"], "hello");
        ws
    }

    /// The next event matching `pred` (others are skipped), within the wait.
    pub async fn next(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        use futures::StreamExt;
        let deadline = tokio::time::Instant::now() + super::WAIT;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("a matching event within the wait")
                .expect("socket open")
                .expect("socket ok");
            if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).expect("json event");
                if pred(&v) {
                    return v;
                }
            }
        }
    }

    /// Reads on (skipping events) until the server closes the socket;
    /// returns the close frame's code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + super::WAIT;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("closed within the wait");
            match msg {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (frame.code.into(), frame.reason.to_string())
                }
                Some(Ok(Message::Close(None))) | None => return (1005, String::new()),
                Some(Err(e)) => panic!("socket error before a close frame: {e}"),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Waits for session `id` to reach `state` on this node (fleet mode:
    /// not an event relayed from another node, which carries `node`).
    pub async fn until_state(&mut self, id: &str, state: &str) -> Value {
        self.next(|v| {
            v["type"] == "transition"
                && v["session_id"] == id
                && v["to"]["state"] == state
                && v.get("node").is_none()
        })
        .await
    }

    /// Fleet mode: waits for session `id` to reach `state` on another
    /// node, as relayed to this one.
    pub async fn until_relayed_state(&mut self, id: &str, state: &str) -> Value {
        self.next(|v| {
            v["type"] == "transition"
                && v["session_id"] == id
                && v["to"]["state"] == state
                && v.get("node").is_some()
        })
        .await
    }
}

/// A tenant with a user, and one of its sessions paired and READY.
pub struct Ready {
    pub token: String,
    pub id: String,
    pub sid: centinela_actors::ids::SessionId,
    pub ws: Ws,
}

impl ApiServer {
    /// Creates tenant `tenant` (with a user), a session whose profile is
    /// already paired on the scripted engine, connects it and waits for READY.
    pub async fn ready_session(&self, tenant: &str) -> Ready {
        let admin = self.api.login(ADMIN, ADMIN_PASSWORD).await;
        let (token, _) = self.api.tenant_with_user(&admin, tenant).await;
        let id = self.api.create_session(&token, None, "desk").await;
        let sid = centinela_actors::ids::SessionId::new(id.clone()).expect("id");
        self.engine.pair(&sid, "5491122334455");
        let mut ws = Ws::connect(&self.api.base, &format!("token={token}")).await;
        let r = self.api.session_action(&token, &id, "connect").await;
        assert!(r.status == 202 || r.status == 200, "{}", r.text);
        ws.until_state(&id, "READY").await;
        Ready { token, id, sid, ws }
    }
}

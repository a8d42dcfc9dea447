//! An [`AppState`] wired in-process the way `centinela::run` wires it (a
//! store on a temp dir, a supervisor with no engine, the hub, outbox,
//! campaigns and webhooks), without a socket: requests go through
//! `tower::ServiceExt::oneshot` on [`centinela_web::router`].

#![allow(dead_code)] // each test binary uses a different part

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use centinela_actors::bus::Bus;
use centinela_actors::clock::{SharedClock, SystemClock};
use centinela_actors::config::Config;
use centinela_actors::engine::EngineSet;
use centinela_actors::ids::{TenantId, UserId};
use centinela_actors::session::actor::SessionEnv;
use centinela_actors::store::{AccountRepo, Role, Store, TenantRecord, UserRecord};
use centinela_actors::supervisor::{Supervisor, SupervisorArgs};
use centinela_web::AppState;
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

/// The body limit of the test router: small, so "too large" is cheap.
pub const MAX_BODY: usize = 4096;

/// A running HTTP layer with its actors, and nothing listening.
pub struct App {
    pub router: Router,
    pub state: AppState,
    pub store: Store,
    _supervisor: Supervisor,
    /// Kept so the campaigns runner and WebSockets never see a shutdown.
    _stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

/// How a request authenticates.
#[derive(Debug, Clone)]
pub enum Cred {
    None,
    Bearer(String),
    ApiKey(String),
    /// An `Authorization` header as is.
    Authorization(String),
}

/// What came back.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.text).ok()
    }

    /// The error code if the body is exactly our error shape
    /// `{"success":false,"error":{"code":"…","message":"…"}}`, else why not.
    pub fn error_code(&self) -> Result<String, String> {
        if !self.content_type.starts_with("application/json") {
            return Err(format!(
                "content-type {:?}, body {:?}",
                self.content_type, self.text
            ));
        }
        let v = self
            .json()
            .ok_or_else(|| format!("not JSON: {:?}", self.text))?;
        if v.get("success") != Some(&Value::Bool(false)) {
            return Err(format!("no \"success\": false in {v}"));
        }
        let code = v["error"]["code"].as_str().unwrap_or_default();
        if code.is_empty() {
            return Err(format!("no error.code in {v}"));
        }
        if !v["error"]["message"].is_string() {
            return Err(format!("no error.message in {v}"));
        }
        Ok(code.to_owned())
    }
}

impl App {
    pub async fn start() -> App {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::defaults();
        config.storage.data_dir = dir.path().to_path_buf();
        config.server.max_body_bytes = MAX_BODY;
        config.server.cors_origins = Vec::new();
        let clock: SharedClock = Arc::new(SystemClock);
        let store = Store::open(dir.path()).expect("open the store");
        let bus = Bus::default();
        let env = SessionEnv::from_config(
            &config,
            clock.clone(),
            bus.clone(),
            Some(Arc::new(store.clone())),
        );
        let (supervisor, _task) = Supervisor::spawn(SupervisorArgs {
            rng_seed: Some(7),
            ..SupervisorArgs::on_store(config.clone(), store.clone(), EngineSet::default(), env)
        })
        .await
        .expect("the supervisor starts");
        let logs = centinela_web::logstream::subscribe(1024);
        let wired = centinela_web::wire(
            (store.clone(), &store),
            supervisor.clone(),
            &bus,
            centinela_web::Injected::new(clock),
            &centinela_web::Secrets {
                jwt: b"router-tests-secret-router-tests-secret".to_vec(),
                otp: b"router-tests-otp-secret-router-tests".to_vec(),
            },
            logs,
            &config,
        );
        let (state, stop_tx) = (wired.state, wired.stop);
        App {
            router: centinela_web::router(state.clone()),
            state,
            store,
            _supervisor: supervisor,
            _stop: stop_tx,
            _dir: dir,
        }
    }

    /// A tenant, straight into the store.
    pub fn tenant(&self, id: &str, name: &str) -> TenantId {
        let id = TenantId::new(id).expect("a valid tenant id");
        self.store
            .create_tenant(&TenantRecord {
                id: id.clone(),
                name: name.into(),
                created_at: self.state.clock.now(),
            })
            .expect("create the tenant");
        id
    }

    /// A user (who never logs in with a password: tests use [`App::token`]).
    pub fn user(&self, username: &str, role: Role, tenant: Option<&TenantId>) -> UserRecord {
        let user = UserRecord {
            id: UserId::generate(),
            username: username.into(),
            password_hash: "not-a-phc-string".into(),
            role,
            tenant: tenant.cloned(),
            created_at: self.state.clock.now(),
            password_version: 0,
        };
        self.store.create_user(&user).expect("create the user");
        user
    }

    /// A fresh login token for `user` (cheap: no password hashing).
    pub fn token(&self, user: &UserRecord) -> Cred {
        let (token, _) = self.state.auth.issue(user).expect("issue a token");
        Cred::Bearer(token)
    }

    /// A new API key of `tenant`: (its id, the credential).
    pub fn api_key(&self, tenant: &TenantId, name: &str) -> (String, Cred) {
        let (record, key) = self
            .state
            .auth
            .create_api_key(tenant, name)
            .expect("create the API key");
        (record.id, Cred::ApiKey(key))
    }

    /// Sends one request. `body` is sent as is; `json` adds the JSON
    /// content type.
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        cred: &Cred,
        body: Option<(&[u8], bool)>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("a method"))
            .uri(uri);
        match cred {
            Cred::None => {}
            Cred::Bearer(t) => req = req.header(header::AUTHORIZATION, format!("Bearer {t}")),
            Cred::ApiKey(k) => req = req.header("x-api-key", k),
            Cred::Authorization(v) => req = req.header(header::AUTHORIZATION, v),
        }
        let body = match body {
            Some((bytes, json)) => {
                if json {
                    req = req.header(header::CONTENT_TYPE, "application/json");
                }
                Body::from(bytes.to_vec())
            }
            None => Body::empty(),
        };
        let res = self
            .router
            .clone()
            .oneshot(req.body(body).expect("a request"))
            .await
            .expect("the router is infallible");
        let status = res.status();
        let content_type = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = res
            .into_body()
            .collect()
            .await
            .expect("read the body")
            .to_bytes();
        Reply {
            status,
            content_type,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// A JSON request.
    pub async fn json(&self, method: &str, uri: &str, cred: &Cred, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).expect("serialize");
        self.call(method, uri, cred, Some((&bytes, true))).await
    }
}

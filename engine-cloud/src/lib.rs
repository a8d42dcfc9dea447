//! The cloud engine: a session on Meta's WhatsApp Business Cloud API. No
//! QR, no browser, no pairing: `start` checks the token and the number
//! (`GET /{version}/{phone_number_id}`) and reports READY with the
//! number's digits, or DISCONNECTED (`token_invalid` on a 401 / error
//! 190). Sends go to `POST /{version}/{phone_number_id}/messages` with the
//! session's bearer token, under the number's own limits ([`limits`]);
//! what comes back (incoming messages, statuses) arrives through Meta's
//! webhooks ([`hooks`]), which the web crate's `/webhooks/meta` hands to
//! [`CloudEngine::hooks`].
//!
//! The session's secrets reach this crate sealed and are opened here only;
//! none of them is ever logged.

pub mod graph;
pub mod hooks;
pub mod limits;

use async_trait::async_trait;
use centinela_actors::clock::SharedClock;
use centinela_actors::engine::cloud::{CloudSecrets, Template};
use centinela_actors::engine::{
    DisconnectReason, Driver, DriverControl, DriverSpec, Engine, EngineError, EngineEvent,
};
use centinela_actors::secret::SecretBox;
use graph::{Graph, GraphError};
use hooks::{Route, SharedHooks};
use limits::Limits;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long one Graph API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Webhook events waiting for the session actor, per session.
const EVENT_QUEUE: usize = 1_024;

/// What the engine is configured with (`engine.cloud_*`).
#[derive(Debug, Clone)]
pub struct CloudConfig {
    pub base_url: String,
    pub api_version: String,
    pub max_per_second: u32,
    pub pair_interval: Duration,
}

/// The Cloud API engine; cheap to clone (the clones share the webhook
/// routes).
#[derive(Clone)]
pub struct CloudEngine {
    config: CloudConfig,
    secrets: Arc<SecretBox>,
    clock: SharedClock,
    http: reqwest::Client,
    hooks: SharedHooks,
}

impl CloudEngine {
    pub fn new(config: CloudConfig, secrets: Arc<SecretBox>, clock: SharedClock) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with rustls and the ring provider builds");
        Self {
            config,
            secrets,
            clock,
            http,
            hooks: SharedHooks::default(),
        }
    }

    /// Webhooks keep incoming messages in `keeping`'s inbox before Meta is
    /// answered, and answer a stopped session's number with a retry.
    pub fn keeping(mut self, keeping: hooks::Keeping) -> Self {
        self.hooks = Arc::new(hooks::Hooks::new(keeping));
        self
    }

    /// Where Meta's webhooks go in (`/webhooks/meta`).
    pub fn hooks(&self) -> SharedHooks {
        self.hooks.clone()
    }
}

#[async_trait]
impl Engine for CloudEngine {
    async fn start(&self, spec: &DriverSpec) -> Result<Driver, EngineError> {
        let account = spec
            .cloud
            .as_ref()
            .ok_or_else(|| EngineError::Launch("the session has no cloud account".into()))?;
        let secrets = CloudSecrets::open(&account.secrets, &self.secrets)
            .map_err(|e| EngineError::Launch(e.to_string()))?;
        let graph = Graph {
            http: self.http.clone(),
            base: self.config.base_url.clone(),
            version: account
                .api_version
                .clone()
                .unwrap_or_else(|| self.config.api_version.clone()),
            phone_number_id: account.phone_number_id.clone(),
            token: secrets.access_token.expose().to_owned(),
        };
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let ticket = self.hooks.ticket();
        self.hooks.register(
            &account.phone_number_id,
            Route {
                ticket,
                tenant: spec.tenant.clone(),
                session: spec.session.clone(),
                app_secret: secrets.app_secret.expose().to_owned(),
                verify_token: secrets.verify_token.expose().to_owned(),
                events: tx.clone(),
            },
        );
        let driver = CloudDriver {
            graph: graph.clone(),
            events: tx.clone(),
            hooks: self.hooks.clone(),
            ticket,
            clock: self.clock.clone(),
            limits: Mutex::new(Limits::new(
                self.config.max_per_second,
                self.config.pair_interval,
            )),
            token_refused: AtomicBool::new(false),
        };
        tokio::spawn(check_number(graph, tx, spec.session.to_string()));
        Ok(Driver {
            events: rx,
            control: Box::new(driver),
        })
    }

    /// Nothing to forget: the pairing is the token, which lives in the
    /// session's record.
    async fn forget(&self, _spec: &DriverSpec) -> Result<(), EngineError> {
        Ok(())
    }
}

/// The token and number check: READY with the number, or why not.
async fn check_number(graph: Graph, events: mpsc::Sender<EngineEvent>, session: String) {
    let event = match graph.number().await {
        Ok(me) => {
            tracing::info!(session, phone_number_id = %graph.phone_number_id, "cloud number checked: ready");
            EngineEvent::Ready { me }
        }
        Err(GraphError::Code(code)) => {
            let reason = match code {
                graph::TOKEN_INVALID => DisconnectReason::TokenInvalid,
                _ => DisconnectReason::EngineError,
            };
            tracing::warn!(
                session,
                code,
                reason = reason.as_str(),
                "the Cloud API refused the number check"
            );
            EngineEvent::Disconnected {
                reason,
                detail: format!("Graph API error {code}"),
            }
        }
        Err(GraphError::Transport(why)) => {
            tracing::warn!(session, error = %why, "the number check did not complete");
            EngineEvent::Disconnected {
                reason: DisconnectReason::EngineError,
                detail: why,
            }
        }
    };
    let _ = events.send(event).await;
}

/// One cloud session's running driver.
struct CloudDriver {
    graph: Graph,
    events: mpsc::Sender<EngineEvent>,
    hooks: SharedHooks,
    ticket: u64,
    clock: SharedClock,
    limits: Mutex<Limits>,
    /// Meta refused the token (190): nothing more is tried with it.
    token_refused: AtomicBool,
}

impl CloudDriver {
    fn limits(&self) -> std::sync::MutexGuard<'_, Limits> {
        self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn send(&self, to: &str, body: serde_json::Value) -> Result<String, EngineError> {
        if self.token_refused.load(Ordering::Relaxed) {
            return Err(EngineError::TokenInvalid);
        }
        let now = self.clock.now();
        if let Err((code, retry_after)) = self.limits().take(to, now) {
            return Err(EngineError::RateLimited { code, retry_after });
        }
        match self.graph.send(body).await {
            Ok(wamid) => {
                self.limits().accepted(to);
                Ok(wamid)
            }
            Err(GraphError::Code(code @ (limits::THROUGHPUT | limits::PAIR_RATE))) => {
                let retry_after = self.limits().refused(code, to);
                Err(EngineError::RateLimited { code, retry_after })
            }
            Err(GraphError::Code(code)) => {
                let error = graph::engine_error(code);
                if error == EngineError::TokenInvalid {
                    self.token_refused.store(true, Ordering::Relaxed);
                    let _ = self
                        .events
                        .send(EngineEvent::Disconnected {
                            reason: DisconnectReason::TokenInvalid,
                            detail: "Graph API error 190 on a send".into(),
                        })
                        .await;
                }
                Err(error)
            }
            Err(GraphError::Transport(why)) => Err(EngineError::Io(why)),
        }
    }
}

#[async_trait]
impl DriverControl for CloudDriver {
    async fn send_text(&self, to: &str, text: &str) -> Result<String, EngineError> {
        self.send(to, graph::text_body(to, text)).await
    }

    async fn send_template(&self, to: &str, template: &Template) -> Result<String, EngineError> {
        self.send(to, graph::template_body(to, template)).await
    }

    /// The token stays valid; a cloud session has nothing to unpair.
    async fn logout(&self) -> Result<(), EngineError> {
        Ok(())
    }

    async fn stop(&self) -> Result<(), EngineError> {
        self.hooks
            .unregister(&self.graph.phone_number_id, self.ticket);
        Ok(())
    }
}

impl Drop for CloudDriver {
    fn drop(&mut self) {
        self.hooks
            .unregister(&self.graph.phone_number_id, self.ticket);
    }
}

//! Engines drive WhatsApp for one session. The [`Engine`] trait starts a
//! [`Driver`] for one session: a stream of [`EngineEvent`]s and a
//! [`DriverControl`] handle. Nothing here assumes a browser, a QR or a
//! profile directory, so a Cloud API engine can implement it too.
//!
//! The webjs (Chromium) engine is its own crate (`engine-webjs/`, so this
//! crate never pulls a browser driver); the scripted engine is for unit
//! tests of the actors only.

pub mod cloud;
mod reason;
pub use reason::DisconnectReason;

#[cfg(any(test, feature = "scripted"))]
pub mod scripted;
pub mod stats;

use crate::ids::{SessionId, TenantId};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Which engine a session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// WhatsApp Web in headless Chromium.
    Webjs,
    /// Meta's WhatsApp Business Cloud API (Graph API over HTTPS): no QR,
    /// no browser; a token and a phone number id.
    Cloud,
}

impl EngineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Webjs => "webjs",
            EngineKind::Cloud => "cloud",
        }
    }
}

/// What a driver reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    /// A QR to show: `ref,staticKey,identityKey,advSecret,platform`.
    Qr { code: String },
    /// Paired (scanned, or restored from a paired profile).
    Authenticated,
    /// Synced; `me` is the linked number.
    Ready { me: String },
    /// After READY: the pairing is on disk (survives a kill of the whole
    /// process group).
    PairingDurable,
    /// The session is gone, with the engine's own words in `detail`.
    Disconnected {
        reason: DisconnectReason,
        detail: String,
    },
    /// A stream error from WhatsApp's servers (515: restart required, or a
    /// ban; the session actor tells them apart). Only protocol-level engines
    /// see these; WhatsApp Web handles them inside the page.
    StreamError { code: u16 },
    /// A text message arrived in a 1:1 chat.
    MessageIn {
        id: String,
        /// The sender's phone number (digits), resolved from an `@lid`
        /// sender where the page knows it.
        from: String,
        /// The sender's jid as the page gave it (`…@c.us` or `…@lid`).
        jid: String,
        text: String,
    },
    /// An incoming message the engine stored itself before it answered
    /// for it (the cloud engine acknowledges Meta's webhook only once the
    /// message is on disk): the session announces it, nothing more.
    MessageStored(crate::store::IncomingRecord),
    /// A sent message's ack moved (-1 error, 0 pending, 1 server, 2 device, 3 read, 4 played).
    Ack { message_id: String, ack: i8 },
    /// A sent message failed after it was accepted, with the service's
    /// reason (`needs_template`, `cloud_error_131026`, ...).
    Failed { message_id: String, error: String },
}

/// What a chat shows the other side about us besides messages: typing,
/// recording a voice note, or neither (WhatsApp Web's
/// `WAWebChatStateBridge`; the Cloud API's typing indicator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatState {
    Composing,
    Recording,
    Paused,
}

impl ChatState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatState::Composing => "composing",
            ChatState::Recording => "recording",
            ChatState::Paused => "paused",
        }
    }
}

/// What an engine needs to start one session's driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverSpec {
    pub tenant: TenantId,
    pub session: SessionId,
    /// A directory the engine may keep the session's state in (webjs: the
    /// Chromium profile, which *is* the pairing).
    pub state_dir: PathBuf,
    pub user_agent: Option<String>,
    pub proxy: Option<String>,
    /// A cloud session's account (its secrets sealed; the cloud engine
    /// opens them).
    pub cloud: Option<cloud::CloudAccount>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("no {0} engine is configured on this server")]
    Unavailable(&'static str),
    #[error("engine failed to start: {0}")]
    Launch(String),
    #[error("engine timed out while {0}")]
    Timeout(&'static str),
    #[error("engine protocol error: {0}")]
    Protocol(String),
    #[error("session is not ready to send")]
    NotReady,
    /// The recipient has no WhatsApp account (`queryWidExists` said no).
    #[error("the number is not on WhatsApp")]
    NotOnWhatsapp,
    #[error("engine is closed")]
    Closed,
    #[error("engine I/O error: {0}")]
    Io(String),
    /// The Cloud API refused a free-form message outside the 24 h customer
    /// service window (131047): only a template can reach the user.
    #[error("outside the 24 h window: only a template can be sent (131047)")]
    NeedsTemplate,
    /// Over a throughput or pair rate limit (ours, or Meta's 130429 /
    /// 131056): not sent; try again after `retry_after`.
    #[error("rate limited ({code}); retry in {retry_after:?}")]
    RateLimited {
        code: u32,
        retry_after: std::time::Duration,
    },
    /// The access token is invalid or expired (190): nothing can be sent
    /// until the session gets a new one.
    #[error("the access token is invalid or expired (190)")]
    TokenInvalid,
    /// The Cloud API refused this message for good (131026 undeliverable,
    /// 131048 spam rate limit, 131049 not delivered by Meta's choice, a
    /// template error, ...): retrying cannot help.
    #[error("refused by the Cloud API with code {0}")]
    Refused(u32),
}

/// Commands to a running driver. Dropping the handle must release what the
/// driver holds (kill its browser), as a backstop to [`DriverControl::stop`].
#[async_trait]
pub trait DriverControl: Send + Sync + 'static {
    /// Sends a text and returns the engine's message id.
    async fn send_text(&self, to: &str, text: &str) -> Result<String, EngineError>;
    /// Shows `state` in the chat with `to` (digits), as a person's phone
    /// does while they type. Cosmetic for the recipient, so a caller logs a
    /// failure and goes on; engines that cannot show it keep the default.
    async fn chat_state(&self, to: &str, state: ChatState) -> Result<(), EngineError> {
        let _ = (to, state);
        Err(EngineError::Unavailable("chat-state"))
    }
    /// Marks the chat `chat` read (blue ticks on the sender's side): a jid
    /// as [`EngineEvent::MessageIn`] gave it, or digits for `<digits>@c.us`.
    /// Engines that cannot keep the default.
    async fn send_seen(&self, chat: &str) -> Result<(), EngineError> {
        let _ = chat;
        Err(EngineError::Unavailable("send-seen"))
    }
    /// Sends an approved template (the Cloud API's only way to reach a
    /// user outside the 24 h window); engines without templates keep the
    /// default.
    async fn send_template(
        &self,
        to: &str,
        template: &cloud::Template,
    ) -> Result<String, EngineError> {
        let _ = (to, template);
        Err(EngineError::Unavailable("templates"))
    }
    /// Unpairs on WhatsApp's side.
    async fn logout(&self) -> Result<(), EngineError>;
    /// Asks WhatsApp for a code that links `phone` (digits) without a QR,
    /// as `XXXX-XXXX`. Only while the session shows a QR; engines without
    /// pairing (the Cloud API) keep the default.
    async fn request_pairing_code(&self, phone: &str) -> Result<String, EngineError> {
        let _ = phone;
        Err(EngineError::Unavailable("pairing-code"))
    }
    /// The memory of everything the driver runs (a browser's whole process
    /// tree), in bytes, as the per-session memory guard reads it
    /// (`engine.max_session_memory`). Engines with nothing of their own to
    /// measure (the Cloud API) keep the default: `None`, never restarted.
    async fn memory(&self) -> Option<u64> {
        None
    }
    /// Closes the driver and everything it started. Idempotent.
    async fn stop(&self) -> Result<(), EngineError>;
}

/// A started driver.
pub struct Driver {
    pub events: mpsc::Receiver<EngineEvent>,
    pub control: Box<dyn DriverControl>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Driver")
    }
}

#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Starts a driver; returns once it runs (its first events may follow).
    async fn start(&self, spec: &DriverSpec) -> Result<Driver, EngineError>;
    /// Deletes the session's pairing (logout, session deleted).
    async fn forget(&self, spec: &DriverSpec) -> Result<(), EngineError>;
}

/// The engines this server offers, by kind.
#[derive(Clone, Default)]
pub struct EngineSet {
    engines: HashMap<EngineKind, Arc<dyn Engine>>,
}

impl EngineSet {
    pub fn with(mut self, kind: EngineKind, engine: Arc<dyn Engine>) -> Self {
        self.engines.insert(kind, engine);
        self
    }

    pub fn get(&self, kind: EngineKind) -> Option<Arc<dyn Engine>> {
        self.engines.get(&kind).cloned()
    }
}

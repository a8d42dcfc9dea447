//! The event bus: session transitions, admission decisions, pairing codes,
//! messages in, acks, message status, recoveries, pairing durability and
//! ban-risk levels are published here for the WebSocket hub, the audit log, metrics, webhooks,
//! campaigns and auto-replies. It owns its event types (names, not the
//! policy's types) and decides nothing. A broadcast channel: a slow
//! subscriber lags and loses old events, it never slows a publisher.

use crate::clock::Timestamp;
use crate::engine::DisconnectReason;
use crate::ids::{SessionId, TenantId};
use crate::session::SessionState;
use serde::Serialize;
use tokio::sync::broadcast;

/// One state change of one session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransitionEvent {
    pub tenant: TenantId,
    pub session: SessionId,
    pub from: SessionState,
    pub to: SessionState,
    /// The disconnect reason when `to` is DISCONNECTED.
    pub reason: Option<DisconnectReason>,
    pub at: Timestamp,
}

/// A session shows a (new) pairing code beside its QR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairingCodeEvent {
    pub tenant: TenantId,
    pub session: SessionId,
    pub code: String,
    pub expires_at: Timestamp,
    pub at: Timestamp,
}

/// A message that arrived on a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageEvent {
    pub tenant: TenantId,
    pub session: SessionId,
    pub id: String,
    pub from: String,
    /// The chat it came in, as the engine named it (`…@c.us`, `…@lid`):
    /// what a reply marks read.
    pub jid: String,
    pub text: String,
    pub at: Timestamp,
}

/// A sent message's delivery status moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AckEvent {
    pub tenant: TenantId,
    pub session: SessionId,
    pub message_id: String,
    /// -1 error, 0 pending, 1 server, 2 device, 3 read, 4 played.
    pub ack: i8,
    pub at: Timestamp,
}

/// What admission decided about an attempt, with the data of that decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum AdmissionDecision {
    /// Admitted: the driver starts at `start_at`.
    Queued { start_at: Timestamp },
    /// Refused: `reason` is the policy's name for it (seed 003's);
    /// `block_until` is None for a hold that lasts until someone acts.
    Denied {
        reason: &'static str,
        wait_time_minutes: u64,
        block_until: Option<Timestamp>,
    },
    /// A queued attempt's time came: the driver is starting.
    Started,
    /// A queued attempt was withdrawn (a stop, a delete) before it started.
    Cancelled,
}

impl AdmissionDecision {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Queued { .. } => "queued",
            Self::Denied { .. } => "denied",
            Self::Started => "started",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Denied { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// An admission decision about one session's connection attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdmissionEvent {
    pub tenant: TenantId,
    pub session: SessionId,
    #[serde(flatten)]
    pub decision: AdmissionDecision,
    /// Why the attempt is made: `connect`, `restore`, `crash_restart` or
    /// `reconnect`.
    pub kind: &'static str,
    pub at: Timestamp,
}

/// A READY session's pairing is on disk: from `at`, a kill of everything
/// comes back READY without a QR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairingDurableEvent {
    pub tenant: TenantId,
    pub session: SessionId,
    /// When the session became READY (the window is `at - ready_at`).
    pub ready_at: Timestamp,
    pub at: Timestamp,
}

/// A paired session's automatic restore after a local fault was scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecoveryEvent {
    pub tenant: TenantId,
    pub session: SessionId,
    /// `closed`, `open` or `half_open`.
    pub breaker: &'static str,
    pub consecutive_failures: u32,
    pub next_try_at: Option<Timestamp>,
    pub at: Timestamp,
}

/// The memory guard is restarting a session's browser: its process tree
/// (`bytes`, PSS) outgrew `engine.max_session_memory` (`limit`). The
/// session goes DISCONNECTED `memory_limit` and is restored (no QR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryRestartEvent {
    pub tenant: TenantId,
    pub session: SessionId,
    pub bytes: u64,
    pub limit: u64,
    pub at: Timestamp,
}

/// An outgoing message's status changed (queued → sending → sent → ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageStatusEvent {
    pub tenant: TenantId,
    pub session: SessionId,
    pub message_id: String,
    pub status: crate::store::MessageStatus,
    /// The OTP whose code the message carries, if it does.
    pub otp: Option<String>,
    pub at: Timestamp,
}

/// What happened to a verification code (never the code itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OtpEventKind {
    /// Its message reached WhatsApp.
    Sent,
    Verified,
    /// A wrong code, the last wrong code, an expired one, or a message
    /// that could not be delivered: `reason` says which.
    Failed,
}

impl OtpEventKind {
    pub fn name(self) -> &'static str {
        match self {
            OtpEventKind::Sent => "otp.sent",
            OtpEventKind::Verified => "otp.verified",
            OtpEventKind::Failed => "otp.failed",
        }
    }
}

/// A verification code was sent, verified, or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OtpEvent {
    pub tenant: TenantId,
    pub session: SessionId,
    pub otp: String,
    pub kind: OtpEventKind,
    /// For `failed`: `invalid_code`, `too_many_attempts`, `expired`,
    /// `undelivered`.
    pub reason: Option<&'static str>,
    pub attempts_left: u32,
    pub at: Timestamp,
}

/// A campaign's progress moved (a recipient queued, counted, or the status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CampaignEvent {
    pub tenant: TenantId,
    pub session: SessionId,
    pub campaign: String,
    pub status: crate::store::CampaignStatus,
    pub total: usize,
    pub queued: usize,
    pub sent: usize,
    pub failed: usize,
    pub at: Timestamp,
}

/// A session's ban-risk level changed (`messaging/risk.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RiskEvent {
    pub tenant: TenantId,
    pub session: SessionId,
    /// `low`, `elevated` or `high`.
    pub level: &'static str,
    pub was: &'static str,
    /// What raised it (`low_new_contact_reply_rate`, ...), highest first.
    pub reasons: Vec<&'static str>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BusEvent {
    Transition(TransitionEvent),
    Admission(AdmissionEvent),
    MessageIn(MessageEvent),
    Ack(AckEvent),
    MessageStatus(MessageStatusEvent),
    Campaign(CampaignEvent),
    PairingCode(PairingCodeEvent),
    Recovery(RecoveryEvent),
    PairingDurable(PairingDurableEvent),
    Risk(RiskEvent),
    Otp(OtpEvent),
    MemoryRestart(MemoryRestartEvent),
}

impl BusEvent {
    pub fn tenant(&self) -> &TenantId {
        match self {
            BusEvent::Transition(t) => &t.tenant,
            BusEvent::Admission(a) => &a.tenant,
            BusEvent::MessageIn(m) => &m.tenant,
            BusEvent::Ack(a) => &a.tenant,
            BusEvent::MessageStatus(m) => &m.tenant,
            BusEvent::Campaign(c) => &c.tenant,
            BusEvent::PairingCode(p) => &p.tenant,
            BusEvent::Recovery(r) => &r.tenant,
            BusEvent::PairingDurable(p) => &p.tenant,
            BusEvent::Risk(r) => &r.tenant,
            BusEvent::Otp(o) => &o.tenant,
            BusEvent::MemoryRestart(m) => &m.tenant,
        }
    }
}

/// Cheap to clone; every clone publishes to the same subscribers.
#[derive(Debug, Clone)]
pub struct Bus {
    tx: broadcast::Sender<BusEvent>,
}

impl Bus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }

    /// Publishes; having no subscriber is fine.
    pub fn publish(&self, event: BusEvent) {
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }
}

impl Default for Bus {
    fn default() -> Self {
        Self::new(4096)
    }
}

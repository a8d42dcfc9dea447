//! The root supervisor: owns every tenant session actor (`spawn_linked`), the
//! registry of sessions, anti-ban admission of every connection attempt,
//! crash restarts with a budget, and the restore of running sessions when the
//! process starts.
//!
//! Callers (the web layer, the binary) hold a [`Supervisor`] handle, one
//! async method per command; the handle sends a [`SupervisorMsg`]. It answers reads
//! from its own registry (kept current by the sessions' `SessionChanged`
//! reports) and forwards slow commands (stop, logout) to the session actor
//! from a task, so one slow browser never stalls the supervisor.

mod actor;
pub mod admission;
mod attempts;
mod commands;
mod handle;
pub mod ledger;
pub mod recovery;
mod registry;
pub mod restart;
pub mod shared;
mod tenancy;

pub use actor::SupervisorArgs;
pub use handle::Supervisor;

use crate::clock::Timestamp;
use crate::engine::{EngineError, EngineKind};
use crate::ids::{SessionId, TenantId};
use crate::session::{SessionState, SessionView};
use crate::store::StoreError;
use admission::{Denial, DenyReason, GlobalStatus, QueuedAttempt, TenantStatus};
use ractor::RpcReplyPort;
use serde::Serialize;
use std::time::Duration;

/// A request to create a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub tenant: TenantId,
    pub name: String,
    pub engine: EngineKind,
    pub user_agent: Option<String>,
    pub proxy: Option<String>,
    /// The account of a cloud session (secrets already sealed).
    pub cloud: Option<crate::engine::cloud::CloudAccount>,
}

/// A change to a stopped session's settings; `None` leaves a field as is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionChange {
    pub name: Option<String>,
    /// `Some(None)` removes the proxy.
    pub proxy: Option<Option<String>>,
}

/// What `connect` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ConnectOutcome {
    /// The session already has a live driver: nothing was started.
    AlreadyLive { session: SessionView },
    /// Admitted; the driver starts at `start_at`, `position` in the queue (1-based).
    Queued {
        session: SessionView,
        start_at: Timestamp,
        position: usize,
    },
    /// Refused by the admission policy.
    Denied {
        reason: DenyReason,
        #[serde(with = "humantime_serde")]
        wait: Duration,
        /// None for a hold that lasts until someone acts (a refused proxy).
        block_until: Option<Timestamp>,
        /// The refused network path, for a proxy hold.
        proxy: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorError {
    #[error("session {0} not found")]
    NotFound(SessionId),
    /// A pairing code was asked of a session that shows no QR.
    #[error("the session is not showing a QR")]
    NotShowingQr,
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("store failure")]
    Store(#[from] StoreError),
    #[error("the session actor is unavailable")]
    Unavailable,
    #[error("refused by the admission policy: {}", .0.reason.as_str())]
    Denied(Denial),
    #[error("the session is live or queued: disconnect it first")]
    Live,
    /// Another cloud session already speaks for this number: Meta's
    /// webhooks name the number, so two sessions could not both be fed.
    #[error("cloud phone number id {0} belongs to another session")]
    NumberTaken(String),
    /// Fleet: the shared ledger could not be reached, so nothing is
    /// admitted (a running session is not touched).
    #[error("the fleet's database is unavailable: {0}")]
    FleetUnavailable(String),
    /// Fleet: this node does not host the tenant (it is moving, or another
    /// node owns it).
    #[error("tenant {0} is not hosted on this node")]
    NotOwner(TenantId),
    /// Fleet: a connect for this session is being decided already.
    #[error("a connect for this session is being decided")]
    Deciding,
    /// The session was stopped while its connect was being decided: it was
    /// not started.
    #[error("the session was stopped while its connect was being decided")]
    Interrupted,
}

/// Where a session stands with admission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AdmissionStatus {
    /// Waiting in the connection queue.
    Queued {
        start_at: Timestamp,
        position: usize,
    },
    /// The last connect was refused.
    Denied {
        reason: DenyReason,
        wait_time_minutes: u64,
        /// None for a hold that lasts until someone acts.
        block_until: Option<Timestamp>,
        /// The refused network path, for a proxy hold.
        #[serde(skip_serializing_if = "Option::is_none")]
        proxy: Option<String>,
    },
}

/// A session as the API shows it: its view plus its admission status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionDetail {
    #[serde(flatten)]
    pub view: SessionView,
    pub admission: Option<AdmissionStatus>,
    /// The network path it connects through: its proxy without
    /// credentials, or `server`.
    pub egress: String,
    /// The automatic restore after a local fault, while one is going on.
    pub recovery: Option<recovery::RecoveryStatus>,
    #[serde(skip)]
    pub engine: crate::engine::EngineKind,
    /// A cloud session's account (secrets sealed: shown masked).
    #[serde(skip)]
    pub cloud: Option<crate::engine::cloud::CloudAccount>,
}

/// The anti-ban status with seed 003's field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RateLimitReport {
    #[serde(flatten)]
    pub global: GlobalStatus,
    pub organizations: Vec<TenantStatus>,
}

type Reply<T> = RpcReplyPort<Result<T, SupervisorError>>;

pub(crate) enum SupervisorMsg {
    Create {
        new: NewSession,
        reply: Reply<SessionView>,
    },
    Delete {
        id: SessionId,
        reply: Reply<()>,
    },
    /// Delete every session of a tenant; answers how many.
    DeleteTenant {
        tenant: TenantId,
        reply: Reply<usize>,
    },
    Connect {
        id: SessionId,
        reply: Reply<ConnectOutcome>,
    },
    /// Stop, keeping the pairing; the session will not be restored.
    Disconnect {
        id: SessionId,
        reply: Reply<SessionView>,
    },
    /// Unpair and delete the profile.
    Logout {
        id: SessionId,
        reply: Reply<SessionView>,
    },
    Get {
        id: SessionId,
        reply: Reply<SessionView>,
    },
    /// Change a stopped session's name or proxy (`by` is recorded).
    Update {
        id: SessionId,
        change: SessionChange,
        by: String,
        reply: Reply<SessionView>,
    },
    /// A session with its admission status.
    Describe {
        id: SessionId,
        reply: Reply<SessionDetail>,
    },
    /// Every session (or one tenant's) with admission status.
    DescribeAll {
        tenant: Option<TenantId>,
        reply: RpcReplyPort<Vec<SessionDetail>>,
    },
    /// Every session, or one tenant's.
    List {
        tenant: Option<TenantId>,
        reply: RpcReplyPort<Vec<SessionView>>,
    },
    /// A pairing code for a session showing a QR, admitted per phone number
    /// and per egress path.
    PairingCode {
        id: SessionId,
        phone: String,
        reply: Reply<crate::session::actor::PairingCode>,
    },
    /// A session's shown pairing code is due for a fresh one (admitted the
    /// same way; a refusal leaves the old code to expire).
    RefreshPairingCode {
        id: SessionId,
        phone: String,
    },
    SendText {
        id: SessionId,
        to: String,
        text: String,
        reply: Reply<String>,
    },
    /// The anti-ban status of every tenant, or of one.
    RateLimitStatus {
        tenant: Option<TenantId>,
        reply: RpcReplyPort<RateLimitReport>,
    },
    /// The connection queue in start order.
    Queue {
        reply: RpcReplyPort<Vec<QueuedAttempt>>,
    },
    /// Admin override: lift a tenant's ban block (`by` is recorded).
    Unblock {
        tenant: TenantId,
        by: String,
        reply: Reply<bool>,
    },
    /// Admin override: end a tenant's cooldown (`by` is recorded).
    ResetCooldown {
        tenant: TenantId,
        by: String,
        reply: Reply<bool>,
    },
    /// New messages are queued for a session (from the outbox).
    MessagesQueued {
        session: SessionId,
    },
    /// An automatic reconnect's backoff has passed (internal).
    Reconnect {
        id: SessionId,
    },
    /// Check whether a session's automatic restore is due (internal).
    Recover {
        id: SessionId,
        epoch: u64,
    },
    /// An admitted attempt's start time has come (internal).
    StartAttempt {
        id: SessionId,
        epoch: u64,
    },
    /// Respawn a crashed session actor (internal).
    Respawn {
        id: SessionId,
    },
    /// Fleet: host a tenant this node now holds; answers how many
    /// sessions came in.
    AdoptTenant {
        tenant: TenantId,
        reply: Reply<usize>,
    },
    /// Fleet: stop hosting a tenant (lost or given up), writing nothing;
    /// answers how many sessions stopped, once they have.
    ReleaseTenant {
        tenant: TenantId,
        why: String,
        reply: RpcReplyPort<usize>,
    },
    /// Fleet: a write about a tenant was fenced: this node lost it (internal).
    Fenced {
        tenant: TenantId,
    },
    /// Fleet: the shared ledger decided a connect (internal).
    Decided {
        epoch: u64,
        request: admission::AttemptRequest,
        verdict: Result<shared::SharedVerdict, shared::SharedError>,
        asker: attempts::Asker,
    },
    /// A session actor reports a transition (internal).
    SessionChanged {
        actor: ractor::ActorId,
        view: SessionView,
        from: SessionState,
    },
}

#[cfg(test)]
mod tests;

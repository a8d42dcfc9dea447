//! The seam to admission shared with other nodes (fleet mode). A single
//! node decides every attempt on its own ledger ([`super::admission`]); in
//! a fleet, the decision must see every node's attempts, so the supervisor
//! asks a [`SharedAdmission`] instead — `centinela-fleet` implements it on
//! PostgreSQL. The rules are the same pure `evaluate`; only the ledger it
//! reads and the clock it reads it with move.
//!
//! The supervisor never awaits these calls in its own step: each runs in a
//! task and comes back as a message, so a decision queued fleet-wide behind
//! an egress lock, or a database that does not answer, never stalls the
//! supervisor's mailbox (reads, reports, other tenants).
//!
//! Fencing is the implementation's: it knows which tenants this node holds
//! and at which epoch, and refuses ([`SharedError::Fenced`]) a write about
//! a tenant this node no longer holds.

use super::admission::{AttemptRequest, Denial};
use super::ledger::Ledger;
use crate::clock::Timestamp;
use crate::ids::{SessionId, TenantId};
use std::sync::Arc;

/// What the shared ledger decided about one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedVerdict {
    /// Counted in the shared ledger as `attempt` (the queue's ticket).
    Admitted {
        attempt: u64,
    },
    Denied(Denial),
}

/// Something that happened to a tenant that admission must remember on
/// every node. Times and ends are the shared clock's now plus the
/// configured durations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantEvent {
    /// A failed attempt (QR never scanned, engine error while pairing):
    /// `antiban.cooldown_after_failure` starts.
    Failure { session: SessionId },
    /// A ban (TOS_BLOCK, stream error 515): blocked for `antiban.ban_block`.
    Banned { session: SessionId },
    /// WhatsApp refused this egress for the tenant: held until unblocked.
    ProxyBlocked { session: SessionId, egress: String },
    /// An admin lifted the block and every proxy hold.
    Unblocked { by: String },
    /// An admin ended the cooldown.
    CooldownReset { by: String },
}

/// Why a shared call did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SharedError {
    /// This node does not hold the tenant (any more): nothing was written,
    /// and the tenant's sessions must stop here.
    #[error("this node does not hold tenant {0}")]
    Fenced(TenantId),
    /// The shared ledger could not be reached: nothing is admitted.
    #[error("the fleet's database is unavailable: {0}")]
    Unavailable(String),
}

/// Admission shared by every node of a fleet.
#[async_trait::async_trait]
pub trait SharedAdmission: Send + Sync + 'static {
    /// Decides one attempt against every node's ledger; an admitted one is
    /// stored before this returns. `req.live` is this node's own count
    /// (capacity is per node). Fenced by this node's hold of the tenant.
    async fn decide(&self, req: &AttemptRequest) -> Result<SharedVerdict, SharedError>;

    /// Records what happened to a tenant. `fenced`: only while this node
    /// holds it (a session's outcome is its owner's to record); an admin's
    /// override may come from any node.
    async fn record(
        &self,
        tenant: &TenantId,
        event: TenantEvent,
        fenced: bool,
    ) -> Result<(), SharedError>;

    /// Refunds an admitted attempt that was cancelled before it started.
    async fn cancel(&self, attempt: u64) -> Result<(), SharedError>;

    /// Admits one pairing-code request against every node's: the rolling
    /// hour's limits per phone number and per egress
    /// ([`super::admission::judge_pairing_code`]). An admitted request is
    /// stored before this returns. Fenced by this node's hold of the tenant.
    async fn pairing_code(
        &self,
        tenant: &TenantId,
        phone: &str,
        egress: &str,
    ) -> Result<Result<(), Denial>, SharedError>;

    /// The ledger a decision for `tenant` through `egress` would judge
    /// (its `global` window is the egress's hour), and the shared clock's
    /// now: for statuses.
    async fn view(
        &self,
        tenant: &TenantId,
        egress: &str,
    ) -> Result<(Ledger, Timestamp), SharedError>;
}

/// Takes a tenant nobody hosts for this node, on demand: the first session
/// created for a tenant no node holds. When it answers `Ok`, the tenant is
/// this node's and its sessions are in the supervisor (adopted).
#[async_trait::async_trait]
pub trait TenantClaim: Send + Sync + 'static {
    /// `NotOwner` when another node holds it, `Denied` (capacity) when this
    /// node is full, `FleetUnavailable` when the fleet cannot be asked.
    async fn claim(&self, tenant: &TenantId) -> Result<(), super::SupervisorError>;
}

/// How a supervisor takes part in a fleet.
#[derive(Clone)]
pub struct FleetSeam {
    pub admission: Arc<dyn SharedAdmission>,
    /// The egress identity of this node's direct sessions (what a session
    /// without a proxy is counted against, instead of `server`).
    pub egress: String,
}

impl std::fmt::Debug for FleetSeam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetSeam")
            .field("egress", &self.egress)
            .finish_non_exhaustive()
    }
}

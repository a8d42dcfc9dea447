//! The admission seam: the supervisor asks an [`Admission`] before every
//! connection attempt — a user's connect, a restore after restart, a restart
//! after a crash. The anti-ban policy plugs in here; [`OpenAdmission`]
//! admits everything at once and exists until that policy lands and for
//! tests that are not about admission.

use crate::clock::Timestamp;
use crate::ids::{SessionId, TenantId};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Why an attempt is being made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptKind {
    /// A user asked to connect.
    Connect,
    /// Bringing back a session that was running before the process restarted.
    Restore,
    /// Bringing back a session whose actor crashed.
    CrashRestart,
}

/// Why an attempt was refused (the names of seed 003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    ServerRateLimit,
    DailyLimit,
    CooldownAfterFailure,
    Error515Block,
    Capacity,
    TenantSessionLimit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start no earlier than `start_at`.
    Admitted { start_at: Timestamp },
    Denied {
        reason: DenyReason,
        wait: Duration,
        block_until: Timestamp,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRequest {
    pub tenant: TenantId,
    pub session: SessionId,
    pub kind: AttemptKind,
}

/// Decides connection attempts. Owned by the supervisor actor: `&mut self`
/// needs no locks.
pub trait Admission: Send + 'static {
    fn admit(&mut self, request: &AttemptRequest, now: Timestamp) -> Decision;
}

/// Admits every attempt immediately.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenAdmission;

impl Admission for OpenAdmission {
    fn admit(&mut self, _request: &AttemptRequest, now: Timestamp) -> Decision {
        Decision::Admitted { start_at: now }
    }
}

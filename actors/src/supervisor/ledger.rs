//! The admission ledger: the append-only record of connection attempts,
//! failures, bans and admin overrides, and its in-memory projection that the
//! policy reads. Every event is persisted (through [`LedgerRepo`]) before it
//! takes effect, and the projection is rebuilt by replaying the persisted
//! events on start, so a restart never resets a limit.

use crate::clock::Timestamp;
use crate::ids::TenantId;
pub use crate::store::{AttemptKind, LedgerEvent, LedgerRepo};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

/// A tenant's part of the projection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantLedger {
    /// Counted attempts within the last day: (attempt id, time), oldest first.
    pub attempts: VecDeque<(u64, Timestamp)>,
    pub last_failure: Option<Timestamp>,
    pub cooldown_until: Option<Timestamp>,
    pub blocked_until: Option<Timestamp>,
    /// Network paths WhatsApp refused, with when: held until unblocked.
    pub proxy_blocked: BTreeMap<String, Timestamp>,
    /// Cloud API connects within the last hour: (attempt id, time).
    pub cloud: VecDeque<(u64, Timestamp)>,
}

/// The projection the policy reads.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// Counted attempts of the whole server within the last hour.
    pub global: VecDeque<(u64, Timestamp)>,
    pub tenants: HashMap<TenantId, TenantLedger>,
    pub next_id: u64,
    /// Pairing codes requested within the last hour: (phone, egress, time),
    /// oldest first.
    pub pairing_codes: VecDeque<(String, String, Timestamp)>,
}

pub const HOUR: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(24 * 3600);

impl Ledger {
    /// Applies one event to the projection.
    pub fn apply(&mut self, event: &LedgerEvent) {
        match event {
            LedgerEvent::Attempt {
                id,
                tenant,
                counted,
                at,
                cloud,
                ..
            } => {
                self.next_id = self.next_id.max(id + 1);
                if *cloud {
                    let t = self.tenants.entry(tenant.clone()).or_default();
                    insert_sorted(&mut t.cloud, *id, *at);
                }
                if *counted {
                    insert_sorted(&mut self.global, *id, *at);
                    let t = self.tenants.entry(tenant.clone()).or_default();
                    insert_sorted(&mut t.attempts, *id, *at);
                }
            }
            LedgerEvent::Cancelled { id, .. } => {
                self.global.retain(|(a, _)| a != id);
                for t in self.tenants.values_mut() {
                    t.attempts.retain(|(a, _)| a != id);
                    t.cloud.retain(|(a, _)| a != id);
                }
            }
            LedgerEvent::Failure {
                tenant, at, until, ..
            } => {
                let t = self.tenants.entry(tenant.clone()).or_default();
                t.last_failure = Some(*at);
                t.cooldown_until = Some(t.cooldown_until.map_or(*until, |u| u.max(*until)));
            }
            LedgerEvent::Banned {
                tenant, at, until, ..
            } => {
                let t = self.tenants.entry(tenant.clone()).or_default();
                t.last_failure = Some(*at);
                t.blocked_until = Some(t.blocked_until.map_or(*until, |u| u.max(*until)));
            }
            LedgerEvent::ProxyBlocked {
                tenant, egress, at, ..
            } => {
                let t = self.tenants.entry(tenant.clone()).or_default();
                t.last_failure = Some(*at);
                t.proxy_blocked.insert(egress.clone(), *at);
            }
            LedgerEvent::Unblocked { tenant, .. } => {
                if let Some(t) = self.tenants.get_mut(tenant) {
                    t.blocked_until = None;
                    t.proxy_blocked.clear();
                }
            }
            LedgerEvent::CooldownReset { tenant, .. } => {
                if let Some(t) = self.tenants.get_mut(tenant) {
                    t.cooldown_until = None;
                }
            }
            LedgerEvent::PairingCode {
                phone, egress, at, ..
            } => {
                let pos = self.pairing_codes.partition_point(|(_, _, t)| t <= at);
                self.pairing_codes
                    .insert(pos, (phone.clone(), egress.clone(), *at));
            }
        }
    }

    /// Drops attempts that left their windows by `now` (keeps memory bounded).
    pub fn expire(&mut self, now: Timestamp) {
        let hour_ago = now.minus(HOUR);
        while self.global.front().is_some_and(|(_, t)| *t <= hour_ago) {
            self.global.pop_front();
        }
        while self
            .pairing_codes
            .front()
            .is_some_and(|(_, _, t)| *t <= hour_ago)
        {
            self.pairing_codes.pop_front();
        }
        let day_ago = now.minus(DAY);
        for t in self.tenants.values_mut() {
            while t.attempts.front().is_some_and(|(_, at)| *at <= day_ago) {
                t.attempts.pop_front();
            }
            while t.cloud.front().is_some_and(|(_, at)| *at <= hour_ago) {
                t.cloud.pop_front();
            }
        }
    }

    pub fn tenant(&self, tenant: &TenantId) -> Option<&TenantLedger> {
        self.tenants.get(tenant)
    }
}

/// The counted attempts in the window `(now - window, now]`, oldest first.
/// Attempts are kept sorted by time, so this is two binary searches.
pub fn in_window(
    attempts: &VecDeque<(u64, Timestamp)>,
    now: Timestamp,
    window: Duration,
) -> WindowSlice<'_> {
    let from = now.minus(window);
    let start = attempts.partition_point(|(_, t)| *t <= from);
    let end = attempts.partition_point(|(_, t)| *t <= now);
    WindowSlice {
        attempts,
        start,
        end: end.max(start),
    }
}

/// A view of the attempts inside one window.
#[derive(Debug, Clone, Copy)]
pub struct WindowSlice<'a> {
    attempts: &'a VecDeque<(u64, Timestamp)>,
    start: usize,
    end: usize,
}

impl WindowSlice<'_> {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th oldest attempt time in the window.
    pub fn get(&self, i: usize) -> Option<Timestamp> {
        (i < self.len()).then(|| self.attempts[self.start + i].1)
    }
}

/// Inserts keeping the deque sorted by time (a clock step back stays correct).
fn insert_sorted(attempts: &mut VecDeque<(u64, Timestamp)>, id: u64, at: Timestamp) {
    let pos = attempts.partition_point(|(_, t)| *t <= at);
    attempts.insert(pos, (id, at));
}

//! The admission ledger table: append-only JSON events keyed by a sequence
//! number. Loading prunes what can no longer affect a decision or a status.

use super::{Store, StoreError};
use crate::clock::Timestamp;
use crate::ids::{SessionId, TenantId};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Why an attempt is being made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptKind {
    /// A user asked to connect.
    Connect,
    /// Bringing back a paired session that was running before a restart.
    Restore,
    /// Bringing back a session whose actor crashed.
    CrashRestart,
    /// An automatic reconnect after a browser crash or engine error.
    Reconnect,
}

impl AttemptKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Restore => "restore",
            Self::CrashRestart => "crash_restart",
            Self::Reconnect => "reconnect",
        }
    }
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LedgerEvent {
    /// An admitted attempt; `counted` attempts spend the rolling budgets.
    Attempt {
        id: u64,
        tenant: TenantId,
        session: SessionId,
        kind: AttemptKind,
        counted: bool,
        at: Timestamp,
        /// A Cloud API session's connect: counted against
        /// `antiban.cloud_connects_per_hour` only. Absent in entries from
        /// before it existed (none of them was).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cloud: bool,
    },
    /// A queued attempt cancelled before it started: its budget is refunded.
    Cancelled { id: u64, at: Timestamp },
    /// An attempt failed (QR never scanned, engine error): cooldown starts.
    Failure {
        tenant: TenantId,
        session: SessionId,
        at: Timestamp,
        until: Timestamp,
    },
    /// A ban (TOS_BLOCK, SMB_TOS_BLOCK, stream error 515): the tenant is blocked.
    Banned {
        tenant: TenantId,
        session: SessionId,
        at: Timestamp,
        until: Timestamp,
    },
    /// WhatsApp refused the tenant's network path (PROXYBLOCK): attempts
    /// through `egress` are held until an admin unblocks the tenant (or the
    /// session moves to another path).
    ProxyBlocked {
        tenant: TenantId,
        session: SessionId,
        egress: String,
        at: Timestamp,
    },
    /// An admin lifted a ban block (and any proxy hold).
    Unblocked {
        tenant: TenantId,
        by: String,
        at: Timestamp,
    },
    /// An admin ended a cooldown.
    CooldownReset {
        tenant: TenantId,
        by: String,
        at: Timestamp,
    },
    /// A pairing code was requested for `phone` through `egress`.
    PairingCode {
        tenant: TenantId,
        phone: String,
        egress: String,
        at: Timestamp,
    },
}

impl LedgerEvent {
    pub fn at(&self) -> Timestamp {
        match self {
            LedgerEvent::Attempt { at, .. }
            | LedgerEvent::Cancelled { at, .. }
            | LedgerEvent::Failure { at, .. }
            | LedgerEvent::Banned { at, .. }
            | LedgerEvent::ProxyBlocked { at, .. }
            | LedgerEvent::Unblocked { at, .. }
            | LedgerEvent::CooldownReset { at, .. }
            | LedgerEvent::PairingCode { at, .. } => *at,
        }
    }
}

/// Where ledger events are kept. Appends are durable when they return.
pub trait LedgerRepo: Send + Sync + 'static {
    fn append(&self, event: &LedgerEvent) -> Result<(), StoreError>;
    /// Every event still relevant at `now` (the store may prune older ones).
    fn load(&self, now: Timestamp) -> Result<Vec<LedgerEvent>, StoreError>;
}

const LEDGER: TableDefinition<u64, &[u8]> = TableDefinition::new("admission_ledger");

/// Attempts matter for the 24 h window; keep two days.
const ATTEMPT_RETENTION: Duration = Duration::from_secs(2 * 24 * 3600);
/// Failures, bans and overrides are shown in statuses; keep 30 days.
const EVENT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(LEDGER)?;
    Ok(())
}

/// Every row of this module's tables, for tests ([`super::rows`]).
#[cfg(test)]
pub(super) fn rows(
    txn: &redb::ReadTransaction,
    out: &mut super::rows::Rows,
) -> Result<(), StoreError> {
    super::rows::table(txn, LEDGER, out)?;
    Ok(())
}

fn expired(event: &LedgerEvent, now: Timestamp) -> bool {
    let retention = match event {
        // A proxy hold lasts until an admin lifts it (see `load`).
        LedgerEvent::ProxyBlocked { .. } => return false,
        LedgerEvent::Attempt { .. }
        | LedgerEvent::Cancelled { .. }
        | LedgerEvent::PairingCode { .. } => ATTEMPT_RETENTION,
        LedgerEvent::Banned { until, .. } | LedgerEvent::Failure { until, .. } if *until > now => {
            return false
        }
        _ => EVENT_RETENTION,
    };
    event.at() < now.minus(retention)
}

impl LedgerRepo for Store {
    fn append(&self, event: &LedgerEvent) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(event).map_err(|e| StoreError::Db(e.to_string()))?;
        let txn = self.db().begin_write()?;
        {
            let mut table = txn.open_table(LEDGER)?;
            let next = table.last()?.map_or(0, |(k, _)| k.value() + 1);
            table.insert(next, bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    fn load(&self, now: Timestamp) -> Result<Vec<LedgerEvent>, StoreError> {
        let txn = self.db().begin_write()?;
        let mut kept = Vec::new();
        {
            let mut table = txn.open_table(LEDGER)?;
            let mut stale = Vec::new();
            let mut rows = Vec::new();
            // The last unblock of each tenant: holds before it are over.
            let mut unblocked = std::collections::HashMap::new();
            for row in table.iter()? {
                let (k, v) = row?;
                let event: LedgerEvent =
                    serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                        table: "admission_ledger",
                        why: e.to_string(),
                    })?;
                if let LedgerEvent::Unblocked { tenant, .. } = &event {
                    unblocked.insert(tenant.clone(), k.value());
                }
                rows.push((k.value(), event));
            }
            for (k, event) in rows {
                let lifted = matches!(&event, LedgerEvent::ProxyBlocked { tenant, .. }
                    if unblocked.get(tenant).is_some_and(|u| *u > k));
                if lifted || expired(&event, now) {
                    stale.push(k);
                } else {
                    kept.push(event);
                }
            }
            for k in stale {
                table.remove(k)?;
            }
        }
        txn.commit()?;
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{SessionId, TenantId};
    use crate::supervisor::admission::AttemptKind;

    fn attempt(id: u64, at: i64) -> LedgerEvent {
        LedgerEvent::Attempt {
            id,
            tenant: TenantId::new("t").expect("id"),
            session: SessionId::new("s").expect("id"),
            kind: AttemptKind::Connect,
            counted: true,
            at: Timestamp::from_millis(at),
            cloud: false,
        }
    }

    #[test]
    fn events_survive_a_reopen_in_order_and_old_attempts_are_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let day = 24 * 3600 * 1000;
        {
            let store = Store::open(dir.path()).expect("open");
            store.append(&attempt(0, 0)).expect("append");
            store.append(&attempt(1, 3 * day)).expect("append");
            store.append(&attempt(2, 3 * day + 1)).expect("append");
        }
        let store = Store::open(dir.path()).expect("reopen");
        let now = Timestamp::from_millis(3 * day + 2);
        let events = store.load(now).expect("load");
        assert_eq!(events, vec![attempt(1, 3 * day), attempt(2, 3 * day + 1)]);
        assert_eq!(store.load(now).expect("load again").len(), 2);
    }

    #[test]
    fn a_proxy_hold_outlives_the_retention_until_an_unblock_lifts_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let day = 24 * 3600 * 1000;
        let tenant = TenantId::new("t").expect("id");
        let hold = |at: i64| LedgerEvent::ProxyBlocked {
            tenant: tenant.clone(),
            session: SessionId::new("s").expect("id"),
            egress: "http://proxy.example:3128".into(),
            at: Timestamp::from_millis(at),
        };
        let store = Store::open(dir.path()).expect("open");
        store.append(&hold(0)).expect("append");
        let later = Timestamp::from_millis(90 * day);
        assert_eq!(store.load(later).expect("load"), vec![hold(0)]);
        let unblock = LedgerEvent::Unblocked {
            tenant: tenant.clone(),
            by: "admin".into(),
            at: later,
        };
        store.append(&unblock).expect("append");
        store.append(&hold(90 * day + 1)).expect("append");
        assert_eq!(
            store.load(later).expect("load"),
            vec![unblock, hold(90 * day + 1)],
            "the hold before the unblock is gone, the one after it stays"
        );
    }
}

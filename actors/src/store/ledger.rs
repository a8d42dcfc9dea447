//! The admission ledger table: append-only JSON events keyed by a sequence
//! number. Loading prunes what can no longer affect a decision or a status.

use super::{Store, StoreError};
use crate::clock::Timestamp;
use crate::supervisor::ledger::{LedgerEvent, LedgerRepo};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use std::time::Duration;

const LEDGER: TableDefinition<u64, &[u8]> = TableDefinition::new("admission_ledger");

/// Attempts matter for the 24 h window; keep two days.
const ATTEMPT_RETENTION: Duration = Duration::from_secs(2 * 24 * 3600);
/// Failures, bans and overrides are shown in statuses; keep 30 days.
const EVENT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(LEDGER)?;
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

//! The audit log: what happened (transitions, admission decisions,
//! supervisor log events, admin actions), when, to which tenant, and who did
//! it. Bounded: the oldest entries are dropped past [`AUDIT_CAPACITY`].
//! Entries carry a sequence number so readers (WebSocket clients that
//! reconnect) can catch up from where they were.

use super::{Store, StoreError};
use crate::clock::Timestamp;
use crate::ids::TenantId;
use redb::{
    ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_log");

/// Entries kept; older ones are dropped as new ones arrive.
pub const AUDIT_CAPACITY: u64 = 10_000;

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(AUDIT)?;
    Ok(())
}

/// Every row of this module's tables, for tests ([`super::rows`]).
#[cfg(test)]
pub(super) fn rows(
    txn: &redb::ReadTransaction,
    out: &mut super::rows::Rows,
) -> Result<(), StoreError> {
    super::rows::table(txn, AUDIT, out)?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Assigned by the store; ignored on append.
    #[serde(default)]
    pub seq: u64,
    pub at: Timestamp,
    /// Who: a username, an API key's name, or `system`.
    pub actor: String,
    /// What: a stable action code such as `antiban.unblock` or `session.transition`.
    pub action: String,
    pub tenant: Option<TenantId>,
    /// The event itself, as JSON.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

pub trait AuditRepo: Send + Sync + 'static {
    /// Appends and returns the entry's sequence number.
    fn audit(&self, entry: &AuditEntry) -> Result<u64, StoreError> {
        let seqs = self.audit_batch(std::slice::from_ref(entry), true)?;
        seqs.first()
            .copied()
            .ok_or_else(|| StoreError::Db("empty batch".into()))
    }
    /// Appends several entries in one commit; returns their numbers. A
    /// non-`durable` commit reaches the disk with the next durable commit
    /// of any table (an empty batch with `durable` forces that).
    fn audit_batch(&self, entries: &[AuditEntry], durable: bool) -> Result<Vec<u64>, StoreError>;
    /// Entries with `seq > since`, oldest first, at most `limit`.
    fn audit_since(&self, since: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
}

impl AuditRepo for Store {
    fn audit_batch(&self, entries: &[AuditEntry], durable: bool) -> Result<Vec<u64>, StoreError> {
        let mut txn = self.db().begin_write()?;
        if !durable {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| StoreError::Db(e.to_string()))?;
        }
        let mut seqs = Vec::with_capacity(entries.len());
        {
            let mut table = txn.open_table(AUDIT)?;
            let mut seq = table.last()?.map_or(0, |(k, _)| k.value());
            for entry in entries {
                seq += 1;
                let mut stored = entry.clone();
                stored.seq = seq;
                let bytes =
                    serde_json::to_vec(&stored).map_err(|e| StoreError::Db(e.to_string()))?;
                table.insert(seq, bytes.as_slice())?;
                seqs.push(seq);
            }
            while table.len()? > AUDIT_CAPACITY {
                table.pop_first()?;
            }
        }
        txn.commit()?;
        Ok(seqs)
    }

    fn audit_since(&self, since: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        for row in table.range(since.saturating_add(1)..)?.take(limit) {
            let (_, v) = row?;
            out.push(
                serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                    table: "audit_log",
                    why: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }
}

/// Removes, within `txn`, every entry about `tenant`; returns how many.
pub(super) fn purge(txn: &WriteTransaction, tenant: &TenantId) -> Result<usize, StoreError> {
    let mut table = txn.open_table(AUDIT)?;
    let mut doomed = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        let entry: AuditEntry =
            serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                table: "audit_log",
                why: e.to_string(),
            })?;
        if entry.tenant.as_ref() == Some(tenant) {
            doomed.push(k.value());
        }
    }
    for seq in &doomed {
        table.remove(*seq)?;
    }
    Ok(doomed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_entries_get_increasing_sequence_numbers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let entry = AuditEntry {
            seq: 0,
            at: Timestamp::from_millis(1),
            actor: "admin".into(),
            action: "antiban.unblock".into(),
            tenant: Some(TenantId::new("t1").expect("id")),
            data: serde_json::json!({"was_blocked": true}),
        };
        assert_eq!(store.audit(&entry).expect("append"), 1);
        assert_eq!(
            store
                .audit_batch(&[entry.clone(), entry.clone()], false)
                .expect("append"),
            vec![2, 3]
        );
        let after_one = store.audit_since(1, 10).expect("read");
        assert_eq!(after_one.len(), 2);
        assert_eq!(after_one[0].seq, 2);
        assert_eq!(after_one[0].actor, "admin");
        // An empty durable batch makes the relaxed ones durable: they
        // survive a reopen.
        store.audit_batch(&[], true).expect("flush");
        drop(store);
        let again = Store::open(dir.path()).expect("reopen");
        assert_eq!(again.audit_since(0, 10).expect("read").len(), 3);
    }
}

//! Session records: who owns the session, which engine, and its desired
//! state (should it be running), which the supervisor restores on start.

use super::{remove_where, Store, StoreError};
use crate::clock::Timestamp;
use crate::engine::EngineKind;
use crate::ids::{SessionId, TenantId};
use crate::session::DisconnectReason;
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(SESSIONS)?;
    Ok(())
}

/// Every row of this module's tables, for tests ([`super::rows`]).
#[cfg(test)]
pub(super) fn rows(
    txn: &redb::ReadTransaction,
    out: &mut super::rows::Rows,
) -> Result<(), StoreError> {
    super::rows::table(txn, SESSIONS, out)?;
    Ok(())
}

/// Whether the session should be running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    Running,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: SessionId,
    pub tenant: TenantId,
    pub name: String,
    pub engine: EngineKind,
    pub desired: DesiredState,
    pub user_agent: Option<String>,
    pub proxy: Option<String>,
    /// Why it last stopped, so a restart shows the truth.
    pub last_reason: Option<DisconnectReason>,
    /// The profile holds a pairing (the session was READY on it and has not
    /// logged out since): a local fault on it restores by itself.
    #[serde(default)]
    pub paired: bool,
    /// When the current pairing was made (the first READY after a scan),
    /// for the new-contact budget's warm-up. Absent in records from before
    /// it existed and while unpaired: such a number gets the full budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired_at: Option<Timestamp>,
    pub created_at: Timestamp,
    /// A cloud session's account (secrets sealed); absent for webjs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<crate::engine::cloud::CloudAccount>,
}

impl SessionRecord {
    /// The session was READY at `now`: its profile holds a pairing, made
    /// now unless it already held one.
    pub fn mark_paired(&mut self, now: Timestamp) {
        if !self.paired {
            self.paired_at = Some(now);
        }
        self.paired = true;
    }

    /// The pairing is gone (a logout deletes the profile).
    pub fn unpair(&mut self) {
        self.paired = false;
        self.paired_at = None;
    }
}

/// Session records, behind a trait so the supervisor never sees redb.
pub trait SessionRepo: Send + Sync + 'static {
    /// Inserts or replaces a record; durable when it returns.
    fn put_session(&self, record: &SessionRecord) -> Result<(), StoreError>;
    fn get_session(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError>;
    fn list_sessions(&self) -> Result<Vec<SessionRecord>, StoreError>;
    /// Returns whether it existed.
    fn delete_session(&self, id: &SessionId) -> Result<bool, StoreError>;
}

fn decode(bytes: &[u8]) -> Result<SessionRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table: "sessions",
        why: e.to_string(),
    })
}

impl SessionRepo for Store {
    fn put_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Db(e.to_string()))?;
        let txn = self.db().begin_write()?;
        txn.open_table(SESSIONS)?
            .insert(record.id.as_str(), bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    fn get_session(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(SESSIONS)?;
        let value = table.get(id.as_str())?;
        value.map(|v| decode(v.value())).transpose()
    }

    fn list_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(SESSIONS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    fn delete_session(&self, id: &SessionId) -> Result<bool, StoreError> {
        let txn = self.db().begin_write()?;
        let existed = txn.open_table(SESSIONS)?.remove(id.as_str())?.is_some();
        txn.commit()?;
        Ok(existed)
    }
}

/// The tenant whose record each of `sessions` is, within `txn` (absent:
/// no record). What is written for a session (its messages) is written
/// only while it has one, in the same transaction, so nothing can land
/// behind a tenant purge or a session delete.
pub(super) fn owners<'a>(
    txn: &WriteTransaction,
    sessions: impl IntoIterator<Item = &'a SessionId>,
) -> Result<HashMap<SessionId, TenantId>, StoreError> {
    let table = txn.open_table(SESSIONS)?;
    let mut out = HashMap::new();
    for id in sessions {
        if out.contains_key(id) {
            continue;
        }
        if let Some(v) = table.get(id.as_str())? {
            out.insert(id.clone(), decode(v.value())?.tenant);
        }
    }
    Ok(out)
}

/// Removes, within `txn`, the session records of `tenant`; returns their ids.
pub(super) fn purge(txn: &WriteTransaction, tenant: &TenantId) -> Result<Vec<String>, StoreError> {
    let gone = remove_where(txn, SESSIONS, "sessions", |r: &SessionRecord| {
        r.tenant == *tenant
    })?;
    Ok(gone.into_iter().map(|r| r.id.as_str().to_owned()).collect())
}

#[cfg(test)]
impl SessionRecord {
    /// A stopped webjs session `id` of `tenant`: for tests that need one
    /// on record (messages are stored only for a session on record).
    pub(crate) fn of(tenant: &TenantId, id: &SessionId) -> Self {
        Self {
            id: id.clone(),
            tenant: tenant.clone(),
            name: "desk".into(),
            engine: EngineKind::Webjs,
            desired: DesiredState::Stopped,
            user_agent: None,
            proxy: None,
            last_reason: None,
            paired: false,
            paired_at: None,
            created_at: Timestamp::from_millis(1),
            cloud: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> SessionRecord {
        SessionRecord {
            id: SessionId::new(id).expect("id"),
            tenant: TenantId::new("t1").expect("id"),
            name: "front desk".into(),
            engine: EngineKind::Webjs,
            desired: DesiredState::Running,
            user_agent: None,
            proxy: None,
            last_reason: None,
            paired: false,
            paired_at: None,
            created_at: Timestamp::from_millis(5),
            cloud: None,
        }
    }

    #[test]
    fn a_record_from_before_paired_at_reads_as_paired_at_an_unknown_time() {
        let mut old = serde_json::to_value(record("a")).expect("json");
        old["paired"] = true.into();
        assert!(
            old.as_object_mut()
                .expect("object")
                .remove("paired_at")
                .is_none(),
            "not written while absent"
        );
        let read: SessionRecord = serde_json::from_value(old).expect("reads");
        assert_eq!((read.paired, read.paired_at), (true, None));
    }

    #[test]
    fn the_pairing_time_is_the_first_ready_until_a_logout() {
        let mut r = record("a");
        r.mark_paired(Timestamp::from_millis(10));
        r.mark_paired(Timestamp::from_millis(20));
        assert_eq!(
            r.paired_at,
            Some(Timestamp::from_millis(10)),
            "a restore is no new pairing"
        );
        r.unpair();
        assert_eq!((r.paired, r.paired_at), (false, None));
        r.mark_paired(Timestamp::from_millis(30));
        assert_eq!(r.paired_at, Some(Timestamp::from_millis(30)), "a new scan");
    }

    #[test]
    fn session_records_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store.put_session(&record("a")).expect("put");
            store.put_session(&record("b")).expect("put");
            let mut b = record("b");
            b.desired = DesiredState::Stopped;
            store.put_session(&b).expect("replace");
        }
        let store = Store::open(dir.path()).expect("reopen");
        let all = store.list_sessions().expect("list");
        assert_eq!(all.len(), 2);
        let b = store
            .get_session(&SessionId::new("b").expect("id"))
            .expect("get")
            .expect("exists");
        assert_eq!(b.desired, DesiredState::Stopped);
        assert!(store.delete_session(&b.id).expect("delete"));
        assert!(!store.delete_session(&b.id).expect("delete twice"));
        assert_eq!(store.get_session(&b.id).expect("get"), None);
    }
}

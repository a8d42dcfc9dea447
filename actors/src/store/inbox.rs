//! The inbox: incoming messages, kept per session up to
//! [`INBOX_CAPACITY`] (the oldest are dropped), read newest first in pages.
//! It does not hold outgoing messages (the outbox in `messages.rs` does).
//! Each incoming message also notes its sender in `contacts.rs`.

use super::contacts::{self, ContactRepo};
use super::messages::MessageRepo;
use super::{Store, StoreError};
use crate::clock::Timestamp;
use crate::ids::{SessionId, TenantId};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Incoming messages: (session, sequence) → JSON, bounded per session.
const INBOX: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("inbox");

/// Incoming messages kept per session; older ones are dropped.
pub const INBOX_CAPACITY: u64 = 1000;

pub(super) fn create_inbox(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(INBOX)?;
    Ok(())
}

/// Every row of this module's tables, for tests ([`super::rows`]).
#[cfg(test)]
pub(super) fn rows(
    txn: &redb::ReadTransaction,
    out: &mut super::rows::Rows,
) -> Result<(), StoreError> {
    super::rows::table(txn, INBOX, out)?;
    Ok(())
}

/// A message that arrived on a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IncomingRecord {
    /// Assigned by the store, increasing per session.
    #[serde(default)]
    pub seq: u64,
    pub id: String,
    pub tenant: TenantId,
    pub session: SessionId,
    pub from: String,
    /// The sender's jid as WhatsApp gave it (`…@c.us`, or `…@lid` when the
    /// phone number was resolved from a linked identity).
    #[serde(default)]
    pub jid: Option<String>,
    pub text: String,
    pub at: Timestamp,
}

/// Everything a session actor needs of messages: its outbox and its inbox.
pub trait MessageStore: MessageRepo + InboxRepo + ContactRepo {}

impl<T: MessageRepo + InboxRepo + ContactRepo> MessageStore for T {}

pub trait InboxRepo: Send + Sync + 'static {
    /// Stores an incoming message (dropping the session's oldest past the
    /// capacity) and notes its sender as a contact of the session, in one
    /// commit; returns its sequence number.
    fn store_incoming(&self, m: &IncomingRecord) -> Result<u64, StoreError>;
    /// A session's incoming messages, newest first, below `before` if given.
    fn incoming(
        &self,
        session: &SessionId,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Vec<IncomingRecord>, StoreError>;
}

impl InboxRepo for Store {
    fn store_incoming(&self, m: &IncomingRecord) -> Result<u64, StoreError> {
        let txn = self.db().begin_write()?;
        let seq;
        {
            let mut inbox = txn.open_table(INBOX)?;
            let s = m.session.as_str();
            let mut range = inbox.range((s, 0)..=(s, u64::MAX))?;
            let first = range.next().transpose()?.map(|(k, _)| k.value().1);
            let last = range
                .next_back()
                .transpose()?
                .map(|(k, _)| k.value().1)
                .or(first);
            drop(range);
            seq = last.map_or(1, |l| l + 1);
            let mut stored = m.clone();
            stored.seq = seq;
            let bytes = serde_json::to_vec(&stored).map_err(|e| StoreError::Db(e.to_string()))?;
            inbox.insert((s, seq), bytes.as_slice())?;
            if let Some(first) = first {
                let mut oldest = first;
                while seq - oldest + 1 > INBOX_CAPACITY {
                    inbox.remove((s, oldest))?;
                    oldest += 1;
                }
            }
        }
        contacts::note(&txn, &m.session, &m.from, m.at, false)?;
        super::activity::bump(&txn, &m.session, m.at, |c| c.received += 1)?;
        txn.commit()?;
        Ok(seq)
    }

    fn incoming(
        &self,
        session: &SessionId,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Vec<IncomingRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let inbox = txn.open_table(INBOX)?;
        let s = session.as_str();
        let upper = before.map_or(u64::MAX, |b| b.saturating_sub(1));
        let mut out = Vec::new();
        for row in inbox.range((s, 0)..=(s, upper))?.rev().take(limit) {
            let (_, v) = row?;
            out.push(
                serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                    table: "inbox",
                    why: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }
}

/// Removes, within `txn`, every incoming message of `tenant`; returns how
/// many, and adds their sessions to `sessions`.
pub(super) fn purge(
    txn: &WriteTransaction,
    tenant: &TenantId,
    sessions: &mut BTreeSet<String>,
) -> Result<usize, StoreError> {
    let mut inbox = txn.open_table(INBOX)?;
    let mut doomed = Vec::new();
    for row in inbox.iter()? {
        let (k, v) = row?;
        let m: IncomingRecord =
            serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                table: "inbox",
                why: e.to_string(),
            })?;
        if m.tenant == *tenant {
            let (session, seq) = k.value();
            doomed.push((session.to_owned(), seq));
        }
    }
    for (session, seq) in &doomed {
        inbox.remove((session.as_str(), *seq))?;
        sessions.insert(session.clone());
    }
    Ok(doomed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(i: u64) -> IncomingRecord {
        IncomingRecord {
            seq: 0,
            id: format!("in{i}"),
            tenant: TenantId::new("t").expect("id"),
            session: SessionId::new("s1").expect("id"),
            from: "5491100000000".into(),
            jid: Some("5491100000000@c.us".into()),
            text: format!("hola {i}"),
            at: Timestamp::from_millis(i as i64),
        }
    }

    #[test]
    fn the_inbox_is_bounded_per_session_and_pages_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        for i in 0..INBOX_CAPACITY + 5 {
            store.store_incoming(&incoming(i)).expect("store");
        }
        let s = SessionId::new("s1").expect("id");
        let page = store.incoming(&s, 3, None).expect("read");
        assert_eq!(
            page.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![1005, 1004, 1003]
        );
        let next = store.incoming(&s, 2, Some(1003)).expect("read");
        assert_eq!(
            next.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![1002, 1001]
        );
        let all = store.incoming(&s, 5000, None).expect("read");
        assert_eq!(all.len() as u64, INBOX_CAPACITY, "the oldest were dropped");
        assert_eq!(all.last().map(|m| m.seq), Some(6));
    }
}

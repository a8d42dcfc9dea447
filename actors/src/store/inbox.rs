//! The inbox: incoming messages, kept per session up to
//! [`INBOX_CAPACITY`] (the oldest are dropped), read newest first in pages.
//! It does not hold outgoing messages (the outbox in `messages.rs` does).
//! Each incoming message also notes its sender in `contacts.rs`.
//!
//! An incoming message is stored once: its engine id is indexed per
//! session ([`INBOX_IDS`]) for as long as the message is kept, so a copy
//! handed over again (Meta retries a webhook for days, also across our
//! restarts; a page may report a message twice) is answered with the
//! first one's sequence and changes nothing.

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

/// (session, engine id) → the sequence it was stored under.
const INBOX_IDS: TableDefinition<(&str, &str), u64> = TableDefinition::new("inbox_ids");

pub(super) fn create_inbox(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(INBOX)?;
    txn.open_table(INBOX_IDS)?;
    Ok(())
}

/// What [`InboxRepo::store_incoming`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// Stored under this sequence number.
    New(u64),
    /// The session had it already, under this sequence: nothing changed.
    Duplicate(u64),
}

impl Incoming {
    pub fn seq(self) -> u64 {
        match self {
            Incoming::New(s) | Incoming::Duplicate(s) => s,
        }
    }
}

fn decode(v: &[u8]) -> Result<IncomingRecord, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
        table: "inbox",
        why: e.to_string(),
    })
}

/// Every row of this module's tables, for tests ([`super::rows`]).
#[cfg(test)]
pub(super) fn rows(
    txn: &redb::ReadTransaction,
    out: &mut super::rows::Rows,
) -> Result<(), StoreError> {
    super::rows::table(txn, INBOX, out)?;
    super::rows::table(txn, INBOX_IDS, out)?;
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
    /// commit; returns its sequence number. One the session has already
    /// (the same engine id) is a [`Incoming::Duplicate`] and writes nothing.
    fn store_incoming(&self, m: &IncomingRecord) -> Result<Incoming, StoreError>;
    /// A session's incoming messages, newest first, below `before` if given.
    fn incoming(
        &self,
        session: &SessionId,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Vec<IncomingRecord>, StoreError>;
}

impl InboxRepo for Store {
    fn store_incoming(&self, m: &IncomingRecord) -> Result<Incoming, StoreError> {
        let txn = self.db().begin_write()?;
        let s = m.session.as_str();
        let seq;
        {
            let mut ids = txn.open_table(INBOX_IDS)?;
            if let Some(first) = ids.get((s, m.id.as_str()))? {
                return Ok(Incoming::Duplicate(first.value()));
            }
            let mut inbox = txn.open_table(INBOX)?;
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
            ids.insert((s, m.id.as_str()), seq)?;
            if let Some(first) = first {
                let mut oldest = first;
                while seq - oldest + 1 > INBOX_CAPACITY {
                    if let Some(gone) = inbox.remove((s, oldest))? {
                        let gone = decode(gone.value())?;
                        ids.remove((s, gone.id.as_str()))?;
                    }
                    oldest += 1;
                }
            }
        }
        contacts::note(&txn, &m.session, &m.from, m.at, false)?;
        super::activity::bump(&txn, &m.session, m.at, |c| c.received += 1)?;
        txn.commit()?;
        Ok(Incoming::New(seq))
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
            out.push(decode(v.value())?);
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
    let mut ids = txn.open_table(INBOX_IDS)?;
    let mut doomed = Vec::new();
    for row in inbox.iter()? {
        let (k, v) = row?;
        let m = decode(v.value())?;
        if m.tenant == *tenant {
            let (session, seq) = k.value();
            doomed.push((session.to_owned(), seq, m.id));
        }
    }
    for (session, seq, id) in &doomed {
        inbox.remove((session.as_str(), *seq))?;
        ids.remove((session.as_str(), id.as_str()))?;
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

    #[test]
    fn a_message_handed_over_again_is_stored_once_until_it_leaves_the_inbox() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SessionId::new("s1").expect("id");
        {
            let store = Store::open(dir.path()).expect("open");
            assert_eq!(store.store_incoming(&incoming(0)), Ok(Incoming::New(1)));
            let mut again = incoming(0);
            again.text = "another text, the same engine id".into();
            assert_eq!(store.store_incoming(&again), Ok(Incoming::Duplicate(1)));
        }
        // Across a reopen (Meta retries across our restarts).
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(
            store.store_incoming(&incoming(0)),
            Ok(Incoming::Duplicate(1))
        );
        let all = store.incoming(&s, 10, None).expect("read");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].text, "hola 0");
        // The same id on another session is another message.
        let mut theirs = incoming(0);
        theirs.session = SessionId::new("s2").expect("id");
        assert_eq!(store.store_incoming(&theirs), Ok(Incoming::New(1)));
        // Once it has left the bounded inbox, its id goes with it.
        for i in 1..=INBOX_CAPACITY {
            store.store_incoming(&incoming(i)).expect("store");
        }
        assert_eq!(
            store.store_incoming(&incoming(0)),
            Ok(Incoming::New(INBOX_CAPACITY + 2))
        );
        assert_eq!(
            store.store_incoming(&incoming(5)),
            Ok(Incoming::Duplicate(6)),
            "a message still kept is still known"
        );
    }
}

//! Contacts: per session, the first message its number exchanged with each
//! peer (when, and whether it was ours), which is what makes a recipient
//! "new" to the new-contact budget (`messaging/budget.rs`). An incoming
//! message is noted in the transaction that puts it in the inbox, a sent
//! one in the transaction that marks it `sent`; only the first exchange is
//! kept, and whether a peer we wrote to first has written back since (the
//! risk view's reply rate). Our first messages are also indexed by time, so
//! the budget reads the last day's without walking every peer. Peers are
//! the numbers as the rest of the store spells them (digits: an outgoing
//! message's `to`, an incoming one's `from`). It does not decide anything:
//! the budget, the risk view and the sender do.

use super::{Store, StoreError};
use crate::clock::Timestamp;
use crate::ids::SessionId;
use redb::{
    ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// (session, peer number) → the first exchange, as JSON.
const CONTACTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("contacts");
/// (session, ms of the first exchange, peer) for the peers we wrote to
/// first: the new-contact sends in time order.
const NEW_CONTACTS: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("new_contacts");

/// Creates the tables, and indexes the first messages of a file written
/// before the index existed.
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    let contacts = txn.open_table(CONTACTS)?;
    let mut index = txn.open_table(NEW_CONTACTS)?;
    if index.is_empty()? && !contacts.is_empty()? {
        for row in contacts.iter()? {
            let (k, v) = row?;
            let (session, peer) = k.value();
            let first = decode(v.value())?;
            if first.outgoing {
                index.insert((session, first.at.as_millis(), peer), ())?;
            }
        }
    }
    Ok(())
}

/// Every row of this module's tables, for tests ([`super::rows`]).
#[cfg(test)]
pub(super) fn rows(
    txn: &redb::ReadTransaction,
    out: &mut super::rows::Rows,
) -> Result<(), StoreError> {
    super::rows::table(txn, CONTACTS, out)?;
    super::rows::table(txn, NEW_CONTACTS, out)?;
    Ok(())
}

/// The first message a session exchanged with a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstExchange {
    pub at: Timestamp,
    /// We wrote first (it counted against the new-contact budget).
    pub outgoing: bool,
    /// When we wrote first: their first message since. Absent in records
    /// from before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replied_at: Option<Timestamp>,
}

/// A session's new contacts over a span: the times of its first messages
/// to them, and how many of those peers have written back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewContacts {
    pub sends: Vec<Timestamp>,
    pub replied: usize,
}

/// Who a session's number has talked to, behind a trait so the sender
/// never sees redb.
pub trait ContactRepo: Send + Sync + 'static {
    /// Whether `session` ever exchanged a message with `peer`, either way.
    fn is_known(&self, session: &SessionId, peer: &str) -> Result<bool, StoreError>;
    /// [`Self::is_known`] of each of `peers`, in one read.
    fn known(&self, session: &SessionId, peers: &[&str]) -> Result<Vec<bool>, StoreError>;
    /// Records an exchange; only the first one per peer is kept.
    fn note_exchange(
        &self,
        session: &SessionId,
        peer: &str,
        at: Timestamp,
        outgoing: bool,
    ) -> Result<(), StoreError>;
    /// The times of `session`'s first exchanges that were its own messages,
    /// at or after `since`: its recent new-contact sends.
    fn new_contact_sends(
        &self,
        session: &SessionId,
        since: Timestamp,
    ) -> Result<Vec<Timestamp>, StoreError> {
        Ok(self.new_contacts(session, since)?.sends)
    }
    /// The new-contact sends at or after `since`, oldest first, with how
    /// many of those peers replied.
    fn new_contacts(
        &self,
        session: &SessionId,
        since: Timestamp,
    ) -> Result<NewContacts, StoreError>;
}

fn decode(bytes: &[u8]) -> Result<FirstExchange, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table: "contacts",
        why: e.to_string(),
    })
}

/// Notes, within `txn`, an exchange of `session` with `peer` unless an
/// earlier one is on record (for the inbox and the outbox, in their own
/// transactions).
pub(super) fn note(
    txn: &WriteTransaction,
    session: &SessionId,
    peer: &str,
    at: Timestamp,
    outgoing: bool,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(CONTACTS)?;
    let key = (session.as_str(), peer);
    let known = table.get(key)?.map(|v| decode(v.value())).transpose()?;
    let first = match known {
        // Our first message, answered for the first time.
        Some(mut first) if first.outgoing && !outgoing && first.replied_at.is_none() => {
            first.replied_at = Some(at);
            first
        }
        Some(_) => return Ok(()),
        None => {
            if outgoing {
                txn.open_table(NEW_CONTACTS)?
                    .insert((session.as_str(), at.as_millis(), peer), ())?;
            }
            FirstExchange {
                at,
                outgoing,
                replied_at: None,
            }
        }
    };
    let bytes = serde_json::to_vec(&first).map_err(|e| StoreError::Db(e.to_string()))?;
    table.insert(key, bytes.as_slice())?;
    Ok(())
}

impl ContactRepo for Store {
    fn is_known(&self, session: &SessionId, peer: &str) -> Result<bool, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(CONTACTS)?;
        Ok(table.get((session.as_str(), peer))?.is_some())
    }

    fn known(&self, session: &SessionId, peers: &[&str]) -> Result<Vec<bool>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(CONTACTS)?;
        peers
            .iter()
            .map(|peer| Ok(table.get((session.as_str(), *peer))?.is_some()))
            .collect()
    }

    fn note_exchange(
        &self,
        session: &SessionId,
        peer: &str,
        at: Timestamp,
        outgoing: bool,
    ) -> Result<(), StoreError> {
        let txn = self.db().begin_write()?;
        note(&txn, session, peer, at, outgoing)?;
        txn.commit()?;
        Ok(())
    }

    fn new_contacts(
        &self,
        session: &SessionId,
        since: Timestamp,
    ) -> Result<NewContacts, StoreError> {
        let txn = self.db().begin_read()?;
        let index = txn.open_table(NEW_CONTACTS)?;
        let table = txn.open_table(CONTACTS)?;
        let s = session.as_str();
        let mut out = NewContacts::default();
        for row in index.range((s, since.as_millis(), "")..(s, i64::MAX, ""))? {
            let (k, _) = row?;
            let (_, at, peer) = k.value();
            out.sends.push(Timestamp::from_millis(at));
            if let Some(v) = table.get((s, peer))? {
                out.replied += usize::from(decode(v.value())?.replied_at.is_some());
            }
        }
        Ok(out)
    }
}

impl Store {
    /// Every peer `session` has exchanged a message with, with the first
    /// exchange (for `centinela fleet import`).
    pub fn contacts_of(
        &self,
        session: &SessionId,
    ) -> Result<Vec<(String, FirstExchange)>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(CONTACTS)?;
        let s = session.as_str();
        let mut out = Vec::new();
        for row in table.range((s, "")..)? {
            let (k, v) = row?;
            let (session, peer) = k.value();
            if session != s {
                break;
            }
            out.push((peer.to_owned(), decode(v.value())?));
        }
        Ok(out)
    }
}

/// Removes, within `txn`, every contact of each of `sessions` (a tenant's,
/// gathered by the purge); returns how many.
pub(super) fn purge(
    txn: &WriteTransaction,
    sessions: &BTreeSet<String>,
) -> Result<usize, StoreError> {
    let mut table = txn.open_table(CONTACTS)?;
    let mut index = txn.open_table(NEW_CONTACTS)?;
    let mut gone = 0;
    for s in sessions {
        let mut peers = Vec::new();
        for row in table.range((s.as_str(), "")..)? {
            let (k, v) = row?;
            let (session, peer) = k.value();
            if session != s.as_str() {
                break;
            }
            peers.push((peer.to_owned(), decode(v.value())?));
        }
        for (peer, first) in &peers {
            table.remove((s.as_str(), peer.as_str()))?;
            if first.outgoing {
                index.remove((s.as_str(), first.at.as_millis(), peer.as_str()))?;
            }
        }
        gone += peers.len();
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TenantId;
    use crate::store::{InboxRepo, IncomingRecord, MessageRecord, MessageRepo, MessageStatus};
    use crate::store::{SessionRecord, SessionRepo};

    const PEER: &str = "5491100000000";

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn session(id: &str) -> SessionId {
        SessionId::new(id).expect("id")
    }

    #[test]
    fn a_peer_is_unknown_until_an_exchange_and_the_first_exchange_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let s = session("s1");
        assert!(!store.is_known(&s, PEER).expect("read"));
        store.note_exchange(&s, PEER, at(10), false).expect("note");
        store.note_exchange(&s, PEER, at(20), true).expect("note");
        assert!(store.is_known(&s, PEER).expect("read"));
        assert!(
            !store.is_known(&session("s2"), PEER).expect("read"),
            "per session"
        );
        assert_eq!(
            store.new_contact_sends(&s, at(0)).expect("read"),
            Vec::<Timestamp>::new(),
            "they wrote first: a later message of ours is no new-contact send"
        );
    }

    #[test]
    fn new_contact_sends_are_our_first_messages_since_a_time_of_one_session() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let (s1, s2) = (session("s1"), session("s1x"));
        store
            .note_exchange(&s1, "111111", at(10), true)
            .expect("note");
        store
            .note_exchange(&s1, "222222", at(30), true)
            .expect("note");
        store
            .note_exchange(&s1, "333333", at(40), false)
            .expect("note");
        store
            .note_exchange(&s2, "444444", at(50), true)
            .expect("note");
        let mut sends = store.new_contact_sends(&s1, at(20)).expect("read");
        sends.sort();
        assert_eq!(sends, [at(30)], "not before `since`, not theirs, not s1x's");
        assert_eq!(store.new_contact_sends(&s1, at(0)).expect("read").len(), 2);
    }

    #[test]
    fn a_reply_to_our_first_message_is_counted_once_and_only_for_our_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let s = session("s1");
        for (peer, at_ms) in [("111111", 10), ("222222", 20), ("333333", 30)] {
            store
                .note_exchange(&s, peer, at(at_ms), true)
                .expect("note");
        }
        store
            .note_exchange(&s, "444444", at(35), false)
            .expect("note");
        store
            .note_exchange(&s, "111111", at(40), false)
            .expect("reply");
        store
            .note_exchange(&s, "111111", at(50), false)
            .expect("again");
        store
            .note_exchange(&s, "444444", at(60), false)
            .expect("theirs");
        let all = store.new_contacts(&s, at(0)).expect("read");
        assert_eq!(all.sends, [at(10), at(20), at(30)], "in time order");
        assert_eq!(all.replied, 1, "one of our three wrote back");
        let later = store.new_contacts(&s, at(15)).expect("read");
        assert_eq!((later.sends.len(), later.replied), (2, 0));
    }

    #[test]
    fn an_incoming_message_and_a_sent_one_are_exchanges_in_their_own_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let t = TenantId::new("t").expect("id");
        let s = session("s1");
        store
            .put_session(&SessionRecord::of(&t, &s))
            .expect("session");
        store
            .store_incoming(&IncomingRecord {
                seq: 0,
                id: "in1".into(),
                tenant: t.clone(),
                session: s.clone(),
                from: "111111".into(),
                jid: None,
                text: "hola".into(),
                at: at(5),
            })
            .expect("incoming");
        let m = MessageRecord::queued(t, s.clone(), "222222".into(), "hola".into(), at(1));
        let mut m = store.accept(&[m]).expect("accept")[0]
            .clone()
            .expect("stored");
        assert!(
            !store.is_known(&s, "222222").expect("read"),
            "queued is no exchange"
        );
        m.status = MessageStatus::Sent;
        m.updated_at = at(7);
        store.update(&m).expect("update");
        m.status = MessageStatus::Delivered;
        m.updated_at = at(9);
        store.update(&m).expect("update");
        assert!(store.is_known(&s, "111111").expect("read"));
        assert_eq!(store.new_contact_sends(&s, at(0)).expect("read"), [at(7)]);
    }
}

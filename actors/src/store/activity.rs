//! Activity: per session and hour, how many of its messages were sent,
//! failed (and of those, to numbers not on WhatsApp) and deferred, and how
//! many messages came in — what the ban-risk view adds up over a day and a
//! week. A count moves in the transaction that writes the status change
//! (or stores the incoming message), so it can neither miss one nor count
//! one twice. Hours older than [`KEPT`] are dropped as new ones are written.

use super::{Store, StoreError};
use crate::clock::Timestamp;
use crate::ids::SessionId;
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// (session, start of the hour in ms) → [`Counts`], as JSON.
const ACTIVITY: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("activity");

/// An hour, the span one row counts.
pub const HOUR_MS: i64 = 3_600_000;
/// How long hours are kept: the week the risk view reads, and a day more.
pub const KEPT: Duration = Duration::from_secs(8 * 24 * 3600);

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(ACTIVITY)?;
    Ok(())
}

/// Every row of this module's tables, for tests ([`super::rows`]).
#[cfg(test)]
pub(super) fn rows(
    txn: &redb::ReadTransaction,
    out: &mut super::rows::Rows,
) -> Result<(), StoreError> {
    super::rows::table(txn, ACTIVITY, out)?;
    Ok(())
}

/// What one session did over a span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Messages that reached `sent`.
    pub sent: u64,
    /// Messages that became `failed`, whatever the cause.
    pub failed: u64,
    /// Of `failed`, those WhatsApp said are not on WhatsApp.
    pub not_on_whatsapp: u64,
    /// Messages that became `deferred` (each wait counted once).
    pub deferred: u64,
    /// Messages received.
    pub received: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.sent += o.sent;
        self.failed += o.failed;
        self.not_on_whatsapp += o.not_on_whatsapp;
        self.deferred += o.deferred;
        self.received += o.received;
    }
}

pub trait ActivityRepo: Send + Sync + 'static {
    /// `session`'s counts over the hours from the one holding `since` on.
    fn activity(&self, session: &SessionId, since: Timestamp) -> Result<Counts, StoreError>;
}

/// The start (ms) of the hour holding `at`: the row it counts in.
pub fn hour(at: Timestamp) -> i64 {
    at.as_millis().div_euclid(HOUR_MS) * HOUR_MS
}

fn decode(bytes: &[u8]) -> Result<Counts, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table: "activity",
        why: e.to_string(),
    })
}

/// Adds to `session`'s hour of `at`, within `txn`, and drops its hours
/// older than [`KEPT`].
pub(super) fn bump(
    txn: &WriteTransaction,
    session: &SessionId,
    at: Timestamp,
    change: impl FnOnce(&mut Counts),
) -> Result<(), StoreError> {
    let mut table = txn.open_table(ACTIVITY)?;
    let s = session.as_str();
    let key = (s, hour(at));
    let mut counts = table
        .get(key)?
        .map(|v| decode(v.value()))
        .transpose()?
        .unwrap_or_default();
    change(&mut counts);
    let bytes = serde_json::to_vec(&counts).map_err(|e| StoreError::Db(e.to_string()))?;
    table.insert(key, bytes.as_slice())?;
    let old = hour(at.minus(KEPT));
    let stale: Vec<i64> = table
        .range((s, i64::MIN)..(s, old))?
        .map(|row| row.map(|(k, _)| k.value().1))
        .collect::<Result<_, _>>()?;
    for h in stale {
        table.remove((s, h))?;
    }
    Ok(())
}

impl ActivityRepo for Store {
    fn activity(&self, session: &SessionId, since: Timestamp) -> Result<Counts, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(ACTIVITY)?;
        let s = session.as_str();
        let mut total = Counts::default();
        for row in table.range((s, hour(since))..=(s, i64::MAX))? {
            let (_, v) = row?;
            total.add(&decode(v.value())?);
        }
        Ok(total)
    }
}

impl Store {
    /// Every hour `session` has counts of (its start in ms), oldest first
    /// (for `centinela fleet import`).
    pub fn activity_hours(&self, session: &SessionId) -> Result<Vec<(i64, Counts)>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(ACTIVITY)?;
        let s = session.as_str();
        let mut out = Vec::new();
        for row in table.range((s, i64::MIN)..=(s, i64::MAX))? {
            let (k, v) = row?;
            out.push((k.value().1, decode(v.value())?));
        }
        Ok(out)
    }
}

/// Removes, within `txn`, every hour of each of `sessions`; returns how many.
pub(super) fn purge(
    txn: &WriteTransaction,
    sessions: &BTreeSet<String>,
) -> Result<usize, StoreError> {
    let mut table = txn.open_table(ACTIVITY)?;
    let mut gone = 0;
    for s in sessions {
        let hours: Vec<i64> = table
            .range((s.as_str(), i64::MIN)..=(s.as_str(), i64::MAX))?
            .map(|row| row.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        for h in &hours {
            table.remove((s.as_str(), *h))?;
        }
        gone += hours.len();
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TenantId;
    use crate::store::{InboxRepo, IncomingRecord, MessageRecord, MessageRepo, MessageStatus};
    use crate::store::{SessionRecord, SessionRepo};

    const DAY_MS: i64 = 24 * HOUR_MS;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn status_changes_count_once_in_their_hour_and_a_week_old_hour_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let t = TenantId::new("t").expect("id");
        let s = SessionId::new("s1").expect("id");
        store
            .put_session(&SessionRecord::of(&t, &s))
            .expect("session");
        let t0 = 100 * DAY_MS;
        let send = |to: &str, ms: i64| {
            let mut m = store
                .accept(&[MessageRecord::queued(
                    t.clone(),
                    s.clone(),
                    to.into(),
                    "hola".into(),
                    at(ms),
                )])
                .expect("accept")[0]
                .clone()
                .expect("stored");
            m.updated_at = at(ms);
            m
        };
        let mut a = send("111111", t0);
        a.status = MessageStatus::Deferred;
        store.update(&a).expect("deferred");
        store.update(&a).expect("deferred again: the same wait");
        a.status = MessageStatus::Sent;
        store.update(&a).expect("sent");
        a.status = MessageStatus::Delivered;
        store.update(&a).expect("delivered is no second send");
        let mut b = send("222222", t0 + 10);
        b.status = MessageStatus::Failed;
        b.error = Some("not_on_whatsapp".into());
        store.update(&b).expect("failed");
        store
            .store_incoming(&IncomingRecord {
                seq: 0,
                tenant: t.clone(),
                session: s.clone(),
                id: "in1".into(),
                from: "111111".into(),
                jid: None,
                text: "gracias".into(),
                at: at(t0 + 20),
            })
            .expect("incoming");
        let day = store.activity(&s, at(t0)).expect("read");
        assert_eq!(
            day,
            Counts {
                sent: 1,
                failed: 1,
                not_on_whatsapp: 1,
                deferred: 1,
                received: 1
            }
        );
        assert_eq!(
            store.activity(&s, at(t0 + HOUR_MS)).expect("read"),
            Counts::default(),
            "a later hour"
        );
        // A write eight days on drops the old hour.
        let mut c = send("333333", t0 + 8 * DAY_MS + HOUR_MS);
        c.status = MessageStatus::Sent;
        store.update(&c).expect("sent");
        assert_eq!(store.activity(&s, at(0)).expect("read").sent, 1);
    }
}

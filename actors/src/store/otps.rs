//! Verification codes at rest: each OTP's record (only the HMAC of its
//! code, never the code), the latest OTP per tenant and phone (a new code
//! voids the one before), and the send log the per-phone and per-address
//! limits count (`otp_sends`, rows pruned once they are out of every
//! window). Issuing a code — checking the limits, logging the send,
//! voiding the previous code and storing the record — is one write
//! transaction, so two requests at once cannot both slip under a limit and
//! a restart forgets nothing. It decides nothing itself: the rules are
//! `otp/rules.rs`'s, passed in as limits and a precondition.

use super::{remove_where, Store, StoreError};
use crate::clock::Timestamp;
use crate::ids::{SessionId, TenantId};
use redb::{
    ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::Duration;

/// OTP id → the record, as JSON.
const OTPS: TableDefinition<&str, &[u8]> = TableDefinition::new("otps");
/// "tenant/phone" → the id of the latest OTP issued for it.
const LATEST: TableDefinition<&str, &str> = TableDefinition::new("otp_latest");
/// (scope, when, "otp id/send") → tenant: one row per code sent, per
/// scope (`phone:+…`, `addr:…`).
const SENDS: TableDefinition<(&str, i64, &str), &str> = TableDefinition::new("otp_sends");
/// (expires_at, OTP id) → (): the OTPs by expiry, so a prune reads only
/// what goes.
const EXPIRY: TableDefinition<(i64, &str), ()> = TableDefinition::new("otp_expiry");

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(OTPS)?;
    txn.open_table(LATEST)?;
    txn.open_table(SENDS)?;
    let mut expiry = txn.open_table(EXPIRY)?;
    // A file from before the index: built once, from the records.
    if expiry.is_empty()? {
        let otps = txn.open_table(OTPS)?;
        for row in otps.iter()? {
            let (_, v) = row?;
            let r = decode(v.value())?;
            expiry.insert((r.expires_at.as_millis(), r.id.as_str()), ())?;
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
    super::rows::table(txn, OTPS, out)?;
    super::rows::table(txn, LATEST, out)?;
    super::rows::table(txn, EXPIRY, out)?;
    let rows = out.entry("otp_sends".to_owned()).or_default();
    for row in txn.open_table(SENDS)?.iter()? {
        let (k, v) = row?;
        let (scope, at, send) = k.value();
        rows.push(format!("({scope}, {at}, {send}) => {}", v.value()));
    }
    Ok(())
}

/// What a code is for (seed 004's two flows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OtpPurpose {
    Registration,
    Login,
}

/// Where an OTP is. Expiry is not a status: it is `expires_at` against
/// the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OtpStatus {
    /// Sent (or on its way); may be verified until it expires.
    Pending,
    /// The right code was given once; it is used up.
    Verified,
    /// Too many wrong codes: voided.
    Exhausted,
    /// A newer code for the same phone voided it.
    Superseded,
    /// Its message could not be delivered (not on WhatsApp, expired in
    /// the queue, the session gone).
    Undelivered,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtpRecord {
    pub id: String,
    pub tenant: TenantId,
    pub session: SessionId,
    /// E.164, with the `+`.
    pub phone: String,
    pub purpose: OtpPurpose,
    /// Hex HMAC-SHA256 of the current code under the server's OTP secret.
    pub digest: String,
    pub status: OtpStatus,
    pub attempts_left: u32,
    pub created_at: Timestamp,
    /// When the current code was issued.
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// Not resent before this.
    pub resend_at: Timestamp,
    /// Codes issued under this id (1 + resends).
    pub sends: u32,
    /// The outgoing message carrying the current code.
    pub message_id: Option<String>,
    pub updated_at: Timestamp,
}

/// A rolling-window cap on codes sent under one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendLimit {
    /// `phone:+5491122334455`, `addr:203.0.113.7`.
    pub scope: String,
    pub max: u32,
    pub window: Duration,
}

/// What [`OtpRepo::issue_otp`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issue {
    /// Stored and logged; these OTPs were voided by it (their messages may
    /// still be queued).
    Stored { superseded: Vec<OtpRecord> },
    /// `limits[index]` is spent until `retry_at`; nothing was written.
    Limited { index: usize, retry_at: Timestamp },
    /// The precondition refused the record on file (given); nothing was written.
    Refused(Option<OtpRecord>),
}

/// Verification codes, behind a trait so the OTP service never sees redb.
pub trait OtpRepo: Send + Sync + 'static {
    /// In one transaction: asks `precondition` about the record already
    /// stored under `otp.id` (none for a new OTP), checks every limit at
    /// `now` (the earliest spent one wins), then logs the send under each
    /// scope, voids the previous pending OTP of the same tenant and phone
    /// and stores `otp`.
    fn issue_otp(
        &self,
        otp: &OtpRecord,
        limits: &[SendLimit],
        now: Timestamp,
        precondition: &mut dyn FnMut(Option<&OtpRecord>) -> bool,
    ) -> Result<Issue, StoreError>;
    fn otp(&self, id: &str) -> Result<Option<OtpRecord>, StoreError>;
    /// Read-modify-write of one record in one transaction: `change` says
    /// whether it changed anything (then it is written). `None`: no such OTP.
    fn update_otp(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut OtpRecord) -> bool,
    ) -> Result<Option<OtpRecord>, StoreError>;
    /// The times of the sends logged under `scope` after `since`.
    fn otp_sends(&self, scope: &str, since: Timestamp) -> Result<Vec<Timestamp>, StoreError>;
    /// Removes the OTPs that expired before `before` (and the latest-code
    /// entries naming them); returns how many went. The limits' log is
    /// not touched: its rows go as their windows pass.
    fn prune_otps(&self, before: Timestamp) -> Result<usize, StoreError>;
}

fn encode(r: &OtpRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(r).map_err(|e| StoreError::Db(e.to_string()))
}

fn decode(bytes: &[u8]) -> Result<OtpRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table: "otps",
        why: e.to_string(),
    })
}

fn latest_key(tenant: &TenantId, phone: &str) -> String {
    format!("{tenant}/{phone}")
}

/// Send times logged under `scope` after `since`, oldest first.
fn sends_since<T>(table: &T, scope: &str, since: Timestamp) -> Result<Vec<Timestamp>, StoreError>
where
    T: ReadableTable<(&'static str, i64, &'static str), &'static str>,
{
    let mut out = Vec::new();
    for row in table.range((scope, since.as_millis().saturating_add(1), "")..)? {
        let (k, _) = row?;
        let (s, at, _) = k.value();
        if s != scope {
            break;
        }
        out.push(Timestamp::from_millis(at));
    }
    Ok(out)
}

/// When `limit` has room again, if it has none at `now`: the moment the
/// oldest send that keeps it full leaves the window.
fn spent_until(times: &[Timestamp], limit: &SendLimit) -> Option<Timestamp> {
    let max = limit.max as usize;
    if times.len() < max {
        return None;
    }
    let oldest_keeping_it_full = times.get(times.len() - max)?;
    Some(oldest_keeping_it_full.plus(limit.window))
}

/// Which of `limits` holds an issue back, and until when: of the limits
/// with no room left (`sends[i]`: the sends within `limits[i]`'s window,
/// oldest first), the one that has room again last. The one rule for every
/// store of the codes (this one, the fleet's).
pub fn spent(limits: &[SendLimit], sends: &[Vec<Timestamp>]) -> Option<(usize, Timestamp)> {
    let mut first_spent: Option<(usize, Timestamp)> = None;
    for (index, (limit, times)) in limits.iter().zip(sends).enumerate() {
        if let Some(at) = spent_until(times, limit) {
            if first_spent.is_none_or(|(_, t)| at > t) {
                first_spent = Some((index, at));
            }
        }
    }
    first_spent
}

impl OtpRepo for Store {
    fn issue_otp(
        &self,
        otp: &OtpRecord,
        limits: &[SendLimit],
        now: Timestamp,
        precondition: &mut dyn FnMut(Option<&OtpRecord>) -> bool,
    ) -> Result<Issue, StoreError> {
        let txn = self.db().begin_write()?;
        let superseded = {
            let mut otps = txn.open_table(OTPS)?;
            let existing = otps.get(otp.id.as_str())?.map(|v| decode(v.value()));
            let existing = existing.transpose()?;
            if !precondition(existing.as_ref()) {
                return Ok(Issue::Refused(existing));
            }
            let mut sends = txn.open_table(SENDS)?;
            let mut times = Vec::with_capacity(limits.len());
            for limit in limits {
                times.push(sends_since(&sends, &limit.scope, now.minus(limit.window))?);
            }
            if let Some((index, retry_at)) = spent(limits, &times) {
                return Ok(Issue::Limited { index, retry_at });
            }
            let send = format!("{}/{}", otp.id, otp.sends);
            for limit in limits {
                // Rows out of the window count for nothing any more.
                let cutoff = now.minus(limit.window).as_millis();
                let mut old = Vec::new();
                for row in sends.range(
                    (limit.scope.as_str(), i64::MIN, "")
                        ..(limit.scope.as_str(), cutoff.saturating_add(1), ""),
                )? {
                    let (k, _) = row?;
                    let (_, at, id) = k.value();
                    old.push((at, id.to_owned()));
                }
                for (at, id) in old {
                    sends.remove((limit.scope.as_str(), at, id.as_str()))?;
                }
                sends.insert(
                    (limit.scope.as_str(), now.as_millis(), send.as_str()),
                    otp.tenant.as_str(),
                )?;
            }
            let mut latest = txn.open_table(LATEST)?;
            let key = latest_key(&otp.tenant, &otp.phone);
            let previous = latest.get(key.as_str())?.map(|v| v.value().to_owned());
            let mut superseded = Vec::new();
            if let Some(prev) = previous.filter(|p| *p != otp.id) {
                let found = otps.get(prev.as_str())?.map(|v| decode(v.value()));
                if let Some(mut old) = found.transpose()? {
                    if old.status == OtpStatus::Pending {
                        old.status = OtpStatus::Superseded;
                        old.updated_at = now;
                        otps.insert(old.id.as_str(), encode(&old)?.as_slice())?;
                        superseded.push(old);
                    }
                }
            }
            latest.insert(key.as_str(), otp.id.as_str())?;
            otps.insert(otp.id.as_str(), encode(otp)?.as_slice())?;
            let mut expiry = txn.open_table(EXPIRY)?;
            if let Some(old) = &existing {
                expiry.remove((old.expires_at.as_millis(), old.id.as_str()))?;
            }
            expiry.insert((otp.expires_at.as_millis(), otp.id.as_str()), ())?;
            superseded
        };
        txn.commit()?;
        Ok(Issue::Stored { superseded })
    }

    fn otp(&self, id: &str) -> Result<Option<OtpRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(OTPS)?;
        let v = table.get(id)?;
        v.map(|v| decode(v.value())).transpose()
    }

    fn update_otp(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut OtpRecord) -> bool,
    ) -> Result<Option<OtpRecord>, StoreError> {
        let txn = self.db().begin_write()?;
        let record = {
            let mut table = txn.open_table(OTPS)?;
            let found = table.get(id)?.map(|v| decode(v.value()));
            let Some(mut r) = found.transpose()? else {
                return Ok(None);
            };
            if change(&mut r) {
                table.insert(id, encode(&r)?.as_slice())?;
            }
            r
        };
        txn.commit()?;
        Ok(Some(record))
    }

    fn otp_sends(&self, scope: &str, since: Timestamp) -> Result<Vec<Timestamp>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(SENDS)?;
        sends_since(&table, scope, since)
    }

    fn prune_otps(&self, before: Timestamp) -> Result<usize, StoreError> {
        let txn = self.db().begin_write()?;
        let mut count = 0;
        {
            let mut expiry = txn.open_table(EXPIRY)?;
            let mut otps = txn.open_table(OTPS)?;
            let mut latest = txn.open_table(LATEST)?;
            let doomed: Vec<(i64, String)> = expiry
                .range((i64::MIN, "")..(before.as_millis(), ""))?
                .map(|row| row.map(|(k, _)| (k.value().0, k.value().1.to_owned())))
                .collect::<Result<_, _>>()?;
            for (at, id) in &doomed {
                expiry.remove((*at, id.as_str()))?;
                let Some(gone) = otps.remove(id.as_str())?.map(|v| decode(v.value())) else {
                    continue;
                };
                let gone = gone?;
                let key = latest_key(&gone.tenant, &gone.phone);
                let names_it = latest
                    .get(key.as_str())?
                    .is_some_and(|v| v.value() == gone.id);
                if names_it {
                    latest.remove(key.as_str())?;
                }
                count += 1;
            }
        }
        txn.commit()?;
        Ok(count)
    }
}

/// Removes, within `txn`, every OTP of `tenant`, its latest-code index and
/// its sends in the limits' log; returns how many OTPs went.
pub(super) fn purge(txn: &WriteTransaction, tenant: &TenantId) -> Result<usize, StoreError> {
    let gone: Vec<OtpRecord> =
        remove_where(txn, OTPS, "otps", |r: &OtpRecord| r.tenant == *tenant)?;
    let mut expiry = txn.open_table(EXPIRY)?;
    for r in &gone {
        expiry.remove((r.expires_at.as_millis(), r.id.as_str()))?;
    }
    // Keys are "tenant/phone", and a tenant id has no '/': the prefix is exact.
    let (from, to) = (format!("{tenant}/"), format!("{tenant}0"));
    let mut latest = txn.open_table(LATEST)?;
    let doomed: Vec<String> = latest
        .range(from.as_str()..to.as_str())?
        .map(|row| row.map(|(k, _)| k.value().to_owned()))
        .collect::<Result<_, _>>()?;
    for k in &doomed {
        latest.remove(k.as_str())?;
    }
    let mut sends = txn.open_table(SENDS)?;
    let mut doomed = Vec::new();
    for row in sends.iter()? {
        let (k, v) = row?;
        if v.value() == tenant.as_str() {
            let (scope, at, send) = k.value();
            doomed.push((scope.to_owned(), at, send.to_owned()));
        }
    }
    for (scope, at, send) in &doomed {
        sends.remove((scope.as_str(), *at, send.as_str()))?;
    }
    let ids: HashSet<&str> = gone.iter().map(|r| r.id.as_str()).collect();
    Ok(ids.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn record(id: &str, phone: &str, at: Timestamp) -> OtpRecord {
        OtpRecord {
            id: id.into(),
            tenant: TenantId::new("t").expect("id"),
            session: SessionId::new("s").expect("id"),
            phone: phone.into(),
            purpose: OtpPurpose::Login,
            digest: "00".into(),
            status: OtpStatus::Pending,
            attempts_left: 3,
            created_at: at,
            issued_at: at,
            expires_at: at.plus(MIN * 10),
            resend_at: at.plus(MIN),
            sends: 1,
            message_id: None,
            updated_at: at,
        }
    }

    fn limit(scope: &str, max: u32, window: Duration) -> SendLimit {
        SendLimit {
            scope: scope.into(),
            max,
            window,
        }
    }

    #[test]
    fn a_spent_limit_refuses_until_its_oldest_send_leaves_the_window_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let t0 = Timestamp::from_millis(1_000_000);
        let limits = [limit("phone:+1", 2, MIN * 60)];
        let yes = &mut |_: Option<&OtpRecord>| true;
        for (i, at) in [t0, t0.plus(MIN)].into_iter().enumerate() {
            let r = record(&format!("o{i}"), "+1", at);
            let out = store.issue_otp(&r, &limits, at, yes).expect("issue");
            assert!(matches!(out, Issue::Stored { .. }), "{out:?}");
        }
        let third = record("o2", "+1", t0.plus(MIN * 2));
        let out = store
            .issue_otp(&third, &limits, t0.plus(MIN * 2), yes)
            .expect("issue");
        assert_eq!(
            out,
            Issue::Limited {
                index: 0,
                retry_at: t0.plus(MIN * 60)
            }
        );
        assert_eq!(store.otp("o2").expect("read"), None, "nothing written");
        let out = store
            .issue_otp(&third, &limits, t0.plus(MIN * 60), yes)
            .expect("issue");
        assert!(matches!(out, Issue::Stored { .. }), "room again: {out:?}");
        let logged = store
            .otp_sends("phone:+1", Timestamp::from_millis(0))
            .expect("read");
        assert_eq!(
            logged,
            vec![t0.plus(MIN), t0.plus(MIN * 60)],
            "the send out of the window was pruned"
        );
    }

    #[test]
    fn a_prune_removes_the_codes_expired_before_it_and_keeps_the_limits_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let t0 = Timestamp::from_millis(1_000_000);
        let limits = [limit("phone:+1", 5, MIN * 60 * 24)];
        let yes = &mut |_: Option<&OtpRecord>| true;
        store
            .issue_otp(&record("old", "+1", t0), &limits, t0, yes)
            .expect("issue");
        let later = t0.plus(MIN * 30);
        store
            .issue_otp(&record("new", "+2", later), &limits, later, yes)
            .expect("issue");
        // A resend moves "new"'s expiry: the index follows it.
        let mut resent = record("new", "+2", later.plus(MIN * 5));
        resent.sends = 2;
        store
            .issue_otp(&resent, &limits, later.plus(MIN * 5), yes)
            .expect("resend");
        // "old" expired at t0+10m, "new" at t0+45m.
        assert_eq!(store.prune_otps(t0.plus(MIN * 40)), Ok(1));
        assert_eq!(store.otp("old").expect("read"), None);
        assert!(
            store.otp("new").expect("read").is_some(),
            "not expired before the cut"
        );
        assert_eq!(store.prune_otps(t0.plus(MIN * 40)), Ok(0), "nothing twice");
        assert_eq!(
            store
                .otp_sends("phone:+1", Timestamp::from_millis(0))
                .expect("read")
                .len(),
            3,
            "the limits still count the three sends"
        );
        assert_eq!(store.prune_otps(t0.plus(MIN * 46)), Ok(1));
        let (rows, _) = store.rows().expect("rows");
        for table in ["otps", "otp_latest", "otp_expiry"] {
            assert!(
                rows.get(table).is_none_or(|r| r.is_empty()),
                "{table}: {:?}",
                rows.get(table)
            );
        }
    }

    #[test]
    fn a_new_code_for_the_same_phone_voids_the_pending_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let t0 = Timestamp::from_millis(1_000_000);
        let yes = &mut |_: Option<&OtpRecord>| true;
        store
            .issue_otp(&record("a", "+1", t0), &[], t0, yes)
            .expect("issue");
        store
            .issue_otp(&record("other", "+2", t0), &[], t0, yes)
            .expect("issue");
        let out = store
            .issue_otp(&record("b", "+1", t0), &[], t0, yes)
            .expect("issue");
        let Issue::Stored { superseded } = out else {
            panic!("stored expected: {out:?}");
        };
        assert_eq!(
            superseded.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        let status = |id: &str| store.otp(id).expect("read").expect("stored").status;
        assert_eq!(status("a"), OtpStatus::Superseded);
        assert_eq!(status("other"), OtpStatus::Pending, "another phone's");
        assert_eq!(status("b"), OtpStatus::Pending);
    }

    #[test]
    fn a_refused_precondition_writes_nothing_and_returns_the_record_on_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let t0 = Timestamp::from_millis(1_000_000);
        let limits = [limit("addr:x", 5, MIN)];
        let r = record("a", "+1", t0);
        store
            .issue_otp(&r, &limits, t0, &mut |_| true)
            .expect("issue");
        let out = store
            .issue_otp(&r, &limits, t0, &mut |found| found.is_none())
            .expect("issue");
        assert_eq!(out, Issue::Refused(Some(r)));
        assert_eq!(
            store
                .otp_sends("addr:x", t0.minus(MIN))
                .expect("read")
                .len(),
            1
        );
    }
}

//! The message outbox (outgoing only; incoming messages are in `inbox.rs`):
//! every accepted message is a record (`messages`), a place in its
//! session's send queue (`outbox`, ordered by a sequence
//! number), and optionally an idempotency key. Accepting is done in batches,
//! one durable commit for many messages (group commit), and the caller is
//! answered only after that commit. Status changes around the hand-off to
//! the engine are each written before the next step, which is what makes a
//! crash neither lose nor repeat a message.

use super::{remove_where, Store, StoreError};
use crate::clock::Timestamp;
use crate::ids::{SessionId, TenantId};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};

const MESSAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("messages");
/// (session, sequence) → message id: the send queue, in order.
const OUTBOX: TableDefinition<(&str, u64), &str> = TableDefinition::new("outbox");
/// "tenant/key" → message id.
const IDEMPOTENCY: TableDefinition<&str, &str> = TableDefinition::new("idempotency");
/// engine message id → message id (acks arrive by engine id).
const ENGINE_IDS: TableDefinition<&str, &str> = TableDefinition::new("engine_ids");
/// session → next sequence number.
const SEQUENCES: TableDefinition<&str, u64> = TableDefinition::new("outbox_sequences");
/// (session, created_at in ms, id) → (): a session's messages in the order
/// they are listed, so a page costs the same however many are stored.
const ORDER: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("message_order");
/// message id → its sequence in its session's send queue, while it is
/// queued: leaving the queue costs the same however long the queue is.
const PLACES: TableDefinition<&str, u64> = TableDefinition::new("outbox_places");
/// Above every message id (ids are ASCII): the open end of a session's
/// range in [`ORDER`].
const LAST_ID: &str = "\u{10FFFF}";

/// The engine-id index key: engine ids are only unique within a session.
fn engine_key(session: &SessionId, engine_id: &str) -> String {
    format!("{session}/{engine_id}")
}

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(MESSAGES)?;
    txn.open_table(OUTBOX)?;
    txn.open_table(IDEMPOTENCY)?;
    txn.open_table(ENGINE_IDS)?;
    txn.open_table(SEQUENCES)?;
    txn.open_table(ORDER)?;
    txn.open_table(PLACES)?;
    Ok(())
}

/// Fills [`ORDER`] and [`PLACES`] from the messages and the queue, for a
/// file written before they existed (run once, at open).
pub(super) fn build_indexes(txn: &WriteTransaction) -> Result<(), StoreError> {
    let messages = txn.open_table(MESSAGES)?;
    let mut order = txn.open_table(ORDER)?;
    for row in messages.iter()? {
        let (_, v) = row?;
        let m = decode(v.value())?;
        order.insert(
            (m.session.as_str(), m.created_at.as_millis(), m.id.as_str()),
            (),
        )?;
    }
    let outbox = txn.open_table(OUTBOX)?;
    let mut places = txn.open_table(PLACES)?;
    for row in outbox.iter()? {
        let (k, id) = row?;
        places.insert(id.value(), k.value().1)?;
    }
    Ok(())
}

/// Every row of this module's tables, for tests ([`super::rows`]).
#[cfg(test)]
pub(super) fn rows(
    txn: &redb::ReadTransaction,
    out: &mut super::rows::Rows,
) -> Result<(), StoreError> {
    super::rows::table(txn, MESSAGES, out)?;
    super::rows::table(txn, OUTBOX, out)?;
    super::rows::table(txn, IDEMPOTENCY, out)?;
    super::rows::table(txn, ENGINE_IDS, out)?;
    super::rows::table(txn, SEQUENCES, out)?;
    super::rows::table(txn, ORDER, out)?;
    super::rows::table(txn, PLACES, out)?;
    Ok(())
}

/// Where a message is. `deferred`: still in the queue, waiting for a
/// budget (its `deferred` says which, and until when). `unknown`: a crash
/// came between handing it to the engine and hearing back; it is not
/// retried (never sent twice), a person decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Queued,
    Deferred,
    Sending,
    Sent,
    Delivered,
    Read,
    Played,
    Failed,
    Unknown,
}

/// Why a message waits in the queue past its time.
impl MessageStatus {
    /// Out of the send queue: neither waiting nor on its way.
    pub fn leaves_queue(self) -> bool {
        !matches!(
            self,
            MessageStatus::Queued | MessageStatus::Deferred | MessageStatus::Sending
        )
    }

    /// The statuses a message is [finished](Self::finished) in.
    pub const FINISHED: [MessageStatus; 5] = [
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Read,
        MessageStatus::Played,
        MessageStatus::Failed,
    ];

    /// Done with: nothing will change it but a late receipt, and no one
    /// needs it to send (retention may delete it).
    pub fn finished(self) -> bool {
        Self::FINISHED.contains(&self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeferralReason {
    /// Its recipient is new to the number, and the session's new-contact
    /// budget of the last 24 h is spent (`messaging.new_contacts_per_day`).
    NewContactBudget,
    /// The Cloud API's throughput or pair rate limit (ours or Meta's
    /// 130429 / 131056): tried again after a backoff.
    RateLimited,
}

/// A deferral: the message goes out (or is asked about again) at
/// `next_attempt_at`, in its place in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Deferral {
    pub reason: DeferralReason,
    pub next_attempt_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub id: String,
    pub tenant: TenantId,
    pub session: SessionId,
    pub to: String,
    pub text: String,
    pub idempotency_key: Option<String>,
    pub status: MessageStatus,
    pub created_at: Timestamp,
    /// Not sent before this time.
    pub send_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    /// The engine's id, once sent.
    pub engine_id: Option<String>,
    pub error: Option<String>,
    /// The chat (a jid as the engine named it) of the incoming message this
    /// one answers (an auto-reply): marked read before it goes out, when
    /// `messaging.send_seen` is on. Absent in records from before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<String>,
    /// Why it waits, while `deferred`; cleared when it goes out. Absent in
    /// records from before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred: Option<Deferral>,
    /// A template to send instead of `text` (cloud sessions only; `text`
    /// is empty then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<crate::engine::cloud::Template>,
    /// The verification code (an OTP id) this message carries: its text
    /// is secret. Every reader outside the sender gets
    /// [`MessageRecord::visible_text`], and the text itself is wiped from
    /// the record once the message leaves the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otp: Option<String>,
    /// Not sent at or after this time: failed `expired` instead (a code
    /// is worthless once it is no longer valid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// How a verification message's text reads anywhere but the hand-off to
/// the engine.
pub const REDACTED_TEXT: &str = "[verification code redacted]";

impl MessageRecord {
    /// A new message to send, queued at `now` under a fresh id.
    pub fn queued(
        tenant: TenantId,
        session: SessionId,
        to: String,
        text: String,
        now: Timestamp,
    ) -> Self {
        Self {
            id: format!("m_{}", uuid::Uuid::new_v4().simple()),
            tenant,
            session,
            to,
            text,
            idempotency_key: None,
            status: MessageStatus::Queued,
            created_at: now,
            send_at: None,
            updated_at: now,
            engine_id: None,
            error: None,
            answers: None,
            deferred: None,
            template: None,
            otp: None,
            expires_at: None,
        }
    }

    /// The same message, as the carrier of OTP `otp`'s code (secret), not
    /// sent at or after `expires_at`.
    pub fn carrying_code(mut self, otp: String, expires_at: Timestamp) -> Self {
        self.otp = Some(otp);
        self.expires_at = Some(expires_at);
        self
    }

    /// The template as the API may show it: a verification code's without
    /// its parameters.
    pub fn visible_template(&self) -> Option<crate::engine::cloud::Template> {
        let t = self.template.clone()?;
        Some(match self.otp {
            // Its parameters are the code.
            Some(_) => crate::engine::cloud::Template {
                components: Vec::new(),
                ..t
            },
            None => t,
        })
    }

    /// The text as the API, events, webhooks and logs may show it: a
    /// verification code's is [`REDACTED_TEXT`].
    pub fn visible_text(&self) -> &str {
        match self.otp {
            Some(_) => REDACTED_TEXT,
            None => &self.text,
        }
    }

    /// The same message as a template (its text stays empty).
    /// The record to keep of a verification code's message once it has
    /// left the queue (needed by no one: its text goes); `None` when the
    /// record is kept as it is.
    pub fn scrubbed(&self) -> Option<MessageRecord> {
        (self.status.leaves_queue() && self.otp.is_some()).then(|| MessageRecord {
            text: REDACTED_TEXT.into(),
            template: self.visible_template(),
            ..self.clone()
        })
    }

    /// The campaign this message was sent for (its idempotency key is
    /// `campaign/<id>/…`), if any.
    pub fn campaign(&self) -> Option<&str> {
        self.idempotency_key
            .as_deref()
            .and_then(|k| k.strip_prefix("campaign/"))
            .and_then(|k| k.split('/').next())
    }

    pub fn with_template(mut self, template: Option<crate::engine::cloud::Template>) -> Self {
        self.template = template;
        self
    }

    /// The same message under an idempotency key: accepted once per key.
    pub fn with_key(mut self, key: Option<String>) -> Self {
        self.idempotency_key = key;
        self
    }

    /// The same message, as the answer to an incoming one in `chat`.
    pub fn answering(mut self, chat: Option<String>) -> Self {
        self.answers = chat;
        self
    }

    /// The same message, not sent before `at`.
    pub fn not_before(mut self, at: Option<Timestamp>) -> Self {
        self.send_at = at;
        self
    }
}

/// Counts, in the activity of `m`'s hour, the status it entered (from `was`).
fn count(
    txn: &WriteTransaction,
    m: &MessageRecord,
    was: Option<MessageStatus>,
) -> Result<(), StoreError> {
    match activity_change(m, was) {
        Some(delta) => super::activity::bump(txn, &m.session, m.updated_at, |c| c.add(&delta)),
        None => Ok(()),
    }
}

/// What a status change from `was` to `m.status` adds to the session's
/// activity in the hour of `m.updated_at`: a send, a deferral (each wait
/// once) or a failure; `None` for anything else, and for no change.
pub fn activity_change(m: &MessageRecord, was: Option<MessageStatus>) -> Option<super::Counts> {
    if was == Some(m.status) {
        return None;
    }
    let mut c = super::Counts::default();
    match m.status {
        MessageStatus::Sent => c.sent = 1,
        MessageStatus::Deferred => c.deferred = 1,
        MessageStatus::Failed => {
            c.failed = 1;
            c.not_on_whatsapp = u64::from(m.error.as_deref() == Some("not_on_whatsapp"));
        }
        _ => return None,
    }
    Some(c)
}

fn encode(m: &MessageRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(m).map_err(|e| StoreError::Db(e.to_string()))
}

fn decode(bytes: &[u8]) -> Result<MessageRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table: "messages",
        why: e.to_string(),
    })
}

/// Messages, behind a trait so the session actor never sees redb.
pub trait MessageRepo: Send + Sync + 'static {
    /// Stores new messages in one commit, answering for each in order; a
    /// message whose idempotency key is known is not stored again: the
    /// existing record is the answer. `None`: the message's session has no
    /// record of its tenant (deleted, or the tenant purged, while the send
    /// was on its way), so nothing was stored.
    fn accept(&self, batch: &[MessageRecord]) -> Result<Vec<Option<MessageRecord>>, StoreError>;
    fn message(&self, id: &str) -> Result<Option<MessageRecord>, StoreError>;
    /// A session's messages, newest first, after `before` (an id) if given.
    fn messages(
        &self,
        session: &SessionId,
        limit: usize,
        before: Option<&str>,
    ) -> Result<Vec<MessageRecord>, StoreError>;
    /// The session's next message to send at `now`: the first queued or
    /// deferred one (in acceptance order) that is due; if none is due, the
    /// one due soonest. A message scheduled (or deferred) for later never
    /// blocks those behind it.
    fn next_queued(
        &self,
        session: &SessionId,
        now: Timestamp,
    ) -> Result<Option<MessageRecord>, StoreError>;
    /// Replaces a record; when it leaves the queue (sent, failed, unknown)
    /// its outbox entry goes too; an engine id is indexed for acks; a sent
    /// one notes its recipient as a contact (ours, if it is the first).
    fn update(&self, m: &MessageRecord) -> Result<(), StoreError>;
    /// The message `session` sent that the engine knows as `engine_id`.
    /// Scoped to the session: another session's page cannot move it.
    fn by_engine_id(
        &self,
        session: &SessionId,
        engine_id: &str,
    ) -> Result<Option<MessageRecord>, StoreError>;
    /// The message accepted with this idempotency key, if any.
    fn by_idempotency_key(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<MessageRecord>, StoreError>;
    /// Every message of `session` still marked `sending` (after a crash).
    fn in_flight(&self, session: &SessionId) -> Result<Vec<MessageRecord>, StoreError>;
    /// Deletes, in one transaction, at most `max` finished messages (sent,
    /// delivered, read, played, failed) last changed before `cutoff`, with
    /// their index, idempotency and engine-id rows; returns how many. An
    /// `unknown` one stays (a person decides), and so does a campaign's
    /// until the campaign has ended (its runner reads the last one).
    fn prune_finished(&self, cutoff: Timestamp, max: usize) -> Result<usize, StoreError>;
}

impl MessageRepo for Store {
    fn prune_finished(&self, cutoff: Timestamp, max: usize) -> Result<usize, StoreError> {
        let txn = self.db().begin_write()?;
        let doomed = prunable(&txn, cutoff, max)?;
        {
            let mut messages = txn.open_table(MESSAGES)?;
            let mut order = txn.open_table(ORDER)?;
            let mut keys = txn.open_table(IDEMPOTENCY)?;
            let mut engine = txn.open_table(ENGINE_IDS)?;
            for m in &doomed {
                messages.remove(m.id.as_str())?;
                order.remove((m.session.as_str(), m.created_at.as_millis(), m.id.as_str()))?;
                if let Some(k) = &m.idempotency_key {
                    keys.remove(format!("{}/{k}", m.tenant).as_str())?;
                }
                if let Some(e) = &m.engine_id {
                    engine.remove(engine_key(&m.session, e).as_str())?;
                    // A row from before ids were scoped, if it is this one's.
                    let bare = engine.get(e.as_str())?.map(|v| v.value() == m.id);
                    if bare == Some(true) {
                        engine.remove(e.as_str())?;
                    }
                }
            }
        }
        txn.commit()?;
        Ok(doomed.len())
    }

    fn accept(&self, batch: &[MessageRecord]) -> Result<Vec<Option<MessageRecord>>, StoreError> {
        let txn = self.db().begin_write()?;
        let mut out = Vec::with_capacity(batch.len());
        let owners = super::sessions::owners(&txn, batch.iter().map(|m| &m.session))?;
        {
            let mut messages = txn.open_table(MESSAGES)?;
            let mut outbox = txn.open_table(OUTBOX)?;
            let mut keys = txn.open_table(IDEMPOTENCY)?;
            let mut seqs = txn.open_table(SEQUENCES)?;
            let mut order = txn.open_table(ORDER)?;
            let mut places = txn.open_table(PLACES)?;
            for m in batch {
                if owners.get(&m.session) != Some(&m.tenant) {
                    out.push(None);
                    continue;
                }
                let key = m
                    .idempotency_key
                    .as_ref()
                    .map(|k| format!("{}/{}", m.tenant, k));
                if let Some(k) = &key {
                    let existing = keys.get(k.as_str())?.map(|v| v.value().to_owned());
                    if let Some(id) = existing {
                        let found = messages
                            .get(id.as_str())?
                            .map(|v| decode(v.value()))
                            .transpose()?;
                        if let Some(found) = found {
                            out.push(Some(found));
                            continue;
                        }
                    }
                }
                let seq = seqs.get(m.session.as_str())?.map_or(0, |v| v.value());
                seqs.insert(m.session.as_str(), seq + 1)?;
                messages.insert(m.id.as_str(), encode(m)?.as_slice())?;
                outbox.insert((m.session.as_str(), seq), m.id.as_str())?;
                places.insert(m.id.as_str(), seq)?;
                order.insert(
                    (m.session.as_str(), m.created_at.as_millis(), m.id.as_str()),
                    (),
                )?;
                if let Some(k) = &key {
                    keys.insert(k.as_str(), m.id.as_str())?;
                }
                out.push(Some(m.clone()));
            }
        }
        txn.commit()?;
        Ok(out)
    }

    fn message(&self, id: &str) -> Result<Option<MessageRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(MESSAGES)?;
        let v = table.get(id)?;
        v.map(|v| decode(v.value())).transpose()
    }

    fn messages(
        &self,
        session: &SessionId,
        limit: usize,
        before: Option<&str>,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        use std::ops::Bound;
        let txn = self.db().begin_read()?;
        let order = txn.open_table(ORDER)?;
        let messages = txn.open_table(MESSAGES)?;
        let s = session.as_str();
        let cursor = match before {
            Some(id) => match messages.get(id)?.map(|v| decode(v.value())).transpose()? {
                Some(m) if m.session == *session => Some(m.created_at.as_millis()),
                // Not one of this session's: nothing is after it.
                _ => return Ok(Vec::new()),
            },
            None => None,
        };
        let upper = match (cursor, before) {
            (Some(at), Some(id)) => Bound::Excluded((s, at, id)),
            _ => Bound::Included((s, i64::MAX, LAST_ID)),
        };
        let mut out = Vec::with_capacity(limit.min(1_000));
        for row in order
            .range::<(&str, i64, &str)>((Bound::Included((s, i64::MIN, "")), upper))?
            .rev()
            .take(limit)
        {
            let (k, _) = row?;
            let (_, _, id) = k.value();
            let m = messages.get(id)?.map(|v| decode(v.value())).transpose()?;
            out.extend(m);
        }
        Ok(out)
    }

    fn next_queued(
        &self,
        session: &SessionId,
        now: Timestamp,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let outbox = txn.open_table(OUTBOX)?;
        let messages = txn.open_table(MESSAGES)?;
        let mut soonest: Option<MessageRecord> = None;
        for row in outbox.range((session.as_str(), 0)..=(session.as_str(), u64::MAX))? {
            let (_, id) = row?;
            let m = messages
                .get(id.value())?
                .map(|v| decode(v.value()))
                .transpose()?;
            let waiting = |m: &MessageRecord| {
                matches!(m.status, MessageStatus::Queued | MessageStatus::Deferred)
            };
            let Some(m) = m.filter(waiting) else {
                continue;
            };
            match m.send_at {
                Some(at) if at > now => {
                    if soonest
                        .as_ref()
                        .is_none_or(|s| s.send_at.is_some_and(|s_at| at < s_at))
                    {
                        soonest = Some(m);
                    }
                }
                _ => return Ok(Some(m)),
            }
        }
        Ok(soonest)
    }

    fn update(&self, m: &MessageRecord) -> Result<(), StoreError> {
        let leaves = m.status.leaves_queue();
        let scrubbed = m.scrubbed();
        let txn = self.db().begin_write()?;
        {
            let mut messages = txn.open_table(MESSAGES)?;
            let was = messages
                .insert(
                    m.id.as_str(),
                    encode(scrubbed.as_ref().unwrap_or(m))?.as_slice(),
                )?
                .map(|old| decode(old.value()))
                .transpose()?
                .map(|old| old.status);
            drop(messages);
            count(&txn, m, was)?;
            if let Some(engine_id) = &m.engine_id {
                txn.open_table(ENGINE_IDS)?
                    .insert(engine_key(&m.session, engine_id).as_str(), m.id.as_str())?;
            }
            if m.status == MessageStatus::Sent {
                super::contacts::note(&txn, &m.session, &m.to, m.updated_at, true)?;
            }
            if leaves {
                let mut outbox = txn.open_table(OUTBOX)?;
                let place = txn
                    .open_table(PLACES)?
                    .remove(m.id.as_str())?
                    .map(|v| v.value());
                let key = match place {
                    Some(seq) => Some(seq),
                    // Queued before places were kept, and not yet indexed.
                    None => {
                        let mut key = None;
                        for row in outbox
                            .range((m.session.as_str(), 0)..=(m.session.as_str(), u64::MAX))?
                        {
                            let (k, id) = row?;
                            if id.value() == m.id {
                                key = Some(k.value().1);
                                break;
                            }
                        }
                        key
                    }
                };
                if let Some(seq) = key {
                    outbox.remove((m.session.as_str(), seq))?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn by_engine_id(
        &self,
        session: &SessionId,
        engine_id: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let id = {
            let txn = self.db().begin_read()?;
            let table = txn.open_table(ENGINE_IDS)?;
            // Rows written before ids were scoped carry the bare engine id.
            let scoped = table.get(engine_key(session, engine_id).as_str())?;
            match scoped {
                Some(v) => Some(v.value().to_owned()),
                None => table.get(engine_id)?.map(|v| v.value().to_owned()),
            }
        };
        match id {
            Some(id) => Ok(self.message(&id)?.filter(|m| &m.session == session)),
            None => Ok(None),
        }
    }

    fn by_idempotency_key(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let id = {
            let txn = self.db().begin_read()?;
            let table = txn.open_table(IDEMPOTENCY)?;
            let v = table.get(format!("{tenant}/{key}").as_str())?;
            v.map(|v| v.value().to_owned())
        };
        match id {
            Some(id) => self.message(&id),
            None => Ok(None),
        }
    }

    fn in_flight(&self, session: &SessionId) -> Result<Vec<MessageRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let outbox = txn.open_table(OUTBOX)?;
        let messages = txn.open_table(MESSAGES)?;
        let mut out = Vec::new();
        for row in outbox.range((session.as_str(), 0)..=(session.as_str(), u64::MAX))? {
            let (_, id) = row?;
            let m = messages
                .get(id.value())?
                .map(|v| decode(v.value()))
                .transpose()?;
            if let Some(m) = m.filter(|m| m.status == MessageStatus::Sending) {
                out.push(m);
            }
        }
        Ok(out)
    }
}

/// The messages [`MessageRepo::prune_finished`] deletes, oldest first per
/// session: only rows created before `cutoff` are read.
fn prunable(
    txn: &WriteTransaction,
    cutoff: Timestamp,
    max: usize,
) -> Result<Vec<MessageRecord>, StoreError> {
    let sessions: Vec<String> = txn
        .open_table(SEQUENCES)?
        .iter()?
        .map(|row| row.map(|(k, _)| k.value().to_owned()))
        .collect::<Result<_, _>>()?;
    let order = txn.open_table(ORDER)?;
    let messages = txn.open_table(MESSAGES)?;
    let mut campaign_ended = std::collections::HashMap::new();
    let mut out = Vec::new();
    for s in &sessions {
        let from = (s.as_str(), i64::MIN, "");
        let to = (s.as_str(), cutoff.as_millis(), "");
        for row in order.range::<(&str, i64, &str)>(from..to)? {
            if out.len() >= max {
                return Ok(out);
            }
            let (k, _) = row?;
            let Some(m) = messages
                .get(k.value().2)?
                .map(|v| decode(v.value()))
                .transpose()?
            else {
                continue;
            };
            if !m.status.finished() || m.updated_at >= cutoff {
                continue;
            }
            if let Some(c) = m.campaign() {
                let ended = match campaign_ended.get(c) {
                    Some(&ended) => ended,
                    None => {
                        let ended = super::campaigns::ended(txn, c)?;
                        campaign_ended.insert(c.to_owned(), ended);
                        ended
                    }
                };
                if !ended {
                    continue;
                }
            }
            out.push(m);
        }
    }
    Ok(out)
}

/// Removes, within `txn`, every outgoing message of `tenant` with its
/// idempotency keys and engine ids, and the send queue and sequence of
/// each of `sessions` (to which the messages' sessions are added first);
/// returns how many messages went.
pub(super) fn purge(
    txn: &WriteTransaction,
    tenant: &TenantId,
    sessions: &mut BTreeSet<String>,
) -> Result<usize, StoreError> {
    let gone: Vec<MessageRecord> = remove_where(txn, MESSAGES, "messages", |m: &MessageRecord| {
        m.tenant == *tenant
    })?;
    sessions.extend(gone.iter().map(|m| m.session.as_str().to_owned()));
    let ids: HashSet<&str> = gone.iter().map(|m| m.id.as_str()).collect();
    {
        let mut order = txn.open_table(ORDER)?;
        let mut places = txn.open_table(PLACES)?;
        for m in &gone {
            order.remove((m.session.as_str(), m.created_at.as_millis(), m.id.as_str()))?;
            places.remove(m.id.as_str())?;
        }
    }

    // Keys are "tenant/key", and a tenant id has no '/': the prefix is exact.
    let (from, to) = (format!("{tenant}/"), format!("{tenant}0"));
    let mut keys = txn.open_table(IDEMPOTENCY)?;
    let doomed: Vec<String> = keys
        .range(from.as_str()..to.as_str())?
        .map(|row| row.map(|(k, _)| k.value().to_owned()))
        .collect::<Result<_, _>>()?;
    for k in &doomed {
        keys.remove(k.as_str())?;
    }

    // Scoped ("session/engine id") and older bare rows alike, by the
    // message they point to.
    let mut engine = txn.open_table(ENGINE_IDS)?;
    let mut doomed = Vec::new();
    for row in engine.iter()? {
        let (k, id) = row?;
        if ids.contains(id.value()) {
            doomed.push(k.value().to_owned());
        }
    }
    for k in &doomed {
        engine.remove(k.as_str())?;
    }

    let mut outbox = txn.open_table(OUTBOX)?;
    let mut seqs = txn.open_table(SEQUENCES)?;
    for s in sessions.iter() {
        let queued: Vec<u64> = outbox
            .range((s.as_str(), 0)..=(s.as_str(), u64::MAX))?
            .map(|row| row.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        for seq in queued {
            outbox.remove((s.as_str(), seq))?;
        }
        seqs.remove(s.as_str())?;
    }
    Ok(gone.len())
}

#[cfg(test)]
#[path = "messages_tests.rs"]
mod tests;

//! Messages shared by the fleet ([`FleetMessages`]): the outbox and the
//! message history, the inbox, the contacts and the activity counts of
//! every session, on PostgreSQL, so they follow the tenant. A new owner
//! finds the send queue where the old one left it (a scheduled message is
//! sent by whichever node hosts the tenant when it is due; a message the
//! old owner left `sending` is `unknown` there, never sent twice, by the
//! session's own recovery), an idempotency key is known on every node,
//! and the new-contact budget and the ban-risk counts a session spent on
//! one node are spent on all of them.
//!
//! The same traits the node's store implements, with its rules: a batch
//! accepted in one transaction, a status change, its contact and its
//! activity count in one, a code's text dropped once it leaves the queue
//! ([`MessageRecord::scrubbed`]), the inbox bounded per session.
//!
//! Who writes. What the tenant's owner does with its sessions — accepting
//! into the queue, every status change, noting a contact — is fenced on
//! the lease this node holds ([`Owned`]), inside the write's transaction:
//! a node that lost the tenant writes nothing ([`StoreError::NotHeld`],
//! so the caller forwards or stops). An incoming message is a fact, not a
//! decision: it is stored by whichever node was handed it (a page, or
//! Meta's webhook on any node), once per engine id. Retention prunes the
//! finished messages of the tenants this node holds, sparing a campaign's
//! until the campaign (the fleet's too, [`crate::campaigns`]) has ended.
//!
//! The store traits are synchronous: each call runs its queries through
//! [`crate::blocking`] (`block_in_place` on the multi-threaded runtime).

use crate::admission::lock;
use crate::blocking::block_on;
use crate::fencing::Fencing;
use crate::json;
use crate::lease::Leases;
use crate::owned::Owned;
use crate::{Fleet, FleetError};
use centinela_actors::clock::Timestamp;
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::store::{
    activity_change, hour, ActivityRepo, CampaignStatus, ContactRepo, Counts, FirstExchange,
    InboxRepo, Incoming, IncomingRecord, MessageRecord, MessageRepo, MessageStatus, NewContacts,
    StoreError, ACTIVITY_KEPT, INBOX_CAPACITY,
};
use sqlx::postgres::PgConnection;
use sqlx::Row;
use std::collections::HashMap;

const MESSAGES: &str = "messages";

/// The fleet's messages, written fenced by this node's leases.
#[derive(Clone, Debug)]
pub struct FleetMessages {
    fencing: Fencing,
}

impl FleetMessages {
    pub fn new(fleet: &Fleet, leases: Leases, owned: Owned) -> Self {
        Self {
            fencing: Fencing::new(fleet, leases, owned),
        }
    }

    async fn accept(
        &self,
        batch: &[MessageRecord],
    ) -> Result<Vec<Option<MessageRecord>>, FleetError> {
        let mut tx = self.fencing.pool().begin().await?;
        let mut tenants: Vec<&TenantId> = batch.iter().map(|m| &m.tenant).collect();
        tenants.sort_unstable();
        tenants.dedup();
        for tenant in tenants {
            self.fencing.fence(&mut tx, tenant).await?;
        }
        // Three reads and one insert for the whole batch: the sessions'
        // tenants, the keys already taken, then every new message at once
        // (in the batch's order: the queue's).
        let sessions: Vec<&str> = batch.iter().map(|m| m.session.as_str()).collect();
        let owners: HashMap<String, String> = sqlx::query_as::<_, (String, String)>(
            "SELECT id, tenant FROM sessions WHERE id = ANY($1)",
        )
        .bind(&sessions)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let (key_tenants, keys): (Vec<&str>, Vec<&str>) = batch
            .iter()
            .filter_map(|m| Some((m.tenant.as_str(), m.idempotency_key.as_deref()?)))
            .unzip();
        let mut taken: HashMap<(String, String), MessageRecord> = HashMap::new();
        if !keys.is_empty() {
            let rows: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT m.tenant, m.idempotency_key, m.record::text
                 FROM messages m JOIN UNNEST($1::text[], $2::text[]) AS k(tenant, key)
                   ON m.tenant = k.tenant AND m.idempotency_key = k.key",
            )
            .bind(&key_tenants)
            .bind(&keys)
            .fetch_all(&mut *tx)
            .await?;
            for (tenant, key, record) in rows {
                taken.insert((tenant, key), json::decode(&record, MESSAGES)?);
            }
        }
        let mut out = Vec::with_capacity(batch.len());
        let mut new: Vec<&MessageRecord> = Vec::new();
        for m in batch {
            if owners.get(m.session.as_str()).map(String::as_str) != Some(m.tenant.as_str()) {
                out.push(None);
                continue;
            }
            if let Some(key) = &m.idempotency_key {
                let k = (m.tenant.as_str().to_owned(), key.clone());
                if let Some(found) = taken.get(&k) {
                    out.push(Some(found.clone()));
                    continue;
                }
                // A key twice in one batch: the first is the message.
                taken.insert(k, m.clone());
            }
            new.push(m);
            out.push(Some(m.clone()));
        }
        // The keys were read under the fence (this node alone writes the
        // tenant's rows): a row skipped now is a store out of step.
        let written = insert_rows(&mut tx, &new).await?;
        if written != new.len() {
            return Err(json::corrupt(
                MESSAGES,
                &format!(
                    "{} of {} new messages were there already",
                    new.len() - written,
                    new.len()
                ),
            ));
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn update(&self, m: &MessageRecord) -> Result<(), FleetError> {
        let mut tx = self.fencing.pool().begin().await?;
        self.fencing.fence(&mut tx, &m.tenant).await?;
        let was: Option<String> =
            sqlx::query_scalar("SELECT status FROM messages WHERE id = $1 FOR UPDATE")
                .bind(&m.id)
                .fetch_optional(&mut *tx)
                .await?;
        let was = was
            .as_deref()
            .map(|w| json::named(w, MESSAGES))
            .transpose()?;
        let kept = m.scrubbed();
        write(&mut tx, kept.as_ref().unwrap_or(m)).await?;
        if m.status == MessageStatus::Sent {
            note(&mut tx, &m.tenant, &m.session, &m.to, m.updated_at, true).await?;
        }
        if let Some(delta) = activity_change(m, was) {
            bump(&mut tx, &m.tenant, &m.session, m.updated_at, &delta).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn one(
        &self,
        query: &'static str,
        binds: &[&str],
    ) -> Result<Option<MessageRecord>, FleetError> {
        let mut q = sqlx::query_scalar::<_, String>(query);
        for b in binds {
            q = q.bind(*b);
        }
        let row = q.fetch_optional(self.fencing.pool()).await?;
        row.as_deref()
            .map(|r| json::decode(r, MESSAGES))
            .transpose()
    }

    async fn history(
        &self,
        session: &SessionId,
        limit: usize,
        before: Option<&str>,
    ) -> Result<Vec<MessageRecord>, FleetError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<String> = match before {
            Some(id) => {
                let cursor: Option<(String, i64)> =
                    sqlx::query_as("SELECT session, created_ms FROM messages WHERE id = $1")
                        .bind(id)
                        .fetch_optional(self.fencing.pool())
                        .await?;
                let Some((_, at)) = cursor.filter(|(s, _)| s == session.as_str()) else {
                    // Not one of this session's: nothing is after it.
                    return Ok(Vec::new());
                };
                sqlx::query_scalar(
                    "SELECT record::text FROM messages
                     WHERE session = $1 AND (created_ms, id COLLATE \"C\") < ($2, $3)
                     ORDER BY created_ms DESC, id COLLATE \"C\" DESC LIMIT $4",
                )
                .bind(session.as_str())
                .bind(at)
                .bind(id)
                .bind(limit)
                .fetch_all(self.fencing.pool())
                .await?
            }
            None => {
                sqlx::query_scalar(
                    "SELECT record::text FROM messages WHERE session = $1
                     ORDER BY created_ms DESC, id COLLATE \"C\" DESC LIMIT $2",
                )
                .bind(session.as_str())
                .bind(limit)
                .fetch_all(self.fencing.pool())
                .await?
            }
        };
        rows.iter().map(|r| json::decode(r, MESSAGES)).collect()
    }

    async fn next_queued(
        &self,
        session: &SessionId,
        now: Timestamp,
    ) -> Result<Option<MessageRecord>, FleetError> {
        // The first due in acceptance order; else the one due soonest.
        let due: Option<String> = sqlx::query_scalar(
            "SELECT record::text FROM messages
             WHERE session = $1 AND queued AND status IN ('queued', 'deferred')
               AND (send_at_ms IS NULL OR send_at_ms <= $2)
             ORDER BY place LIMIT 1",
        )
        .bind(session.as_str())
        .bind(now.as_millis())
        .fetch_optional(self.fencing.pool())
        .await?;
        let row = match due {
            Some(row) => Some(row),
            None => {
                sqlx::query_scalar(
                    "SELECT record::text FROM messages
                     WHERE session = $1 AND queued AND status IN ('queued', 'deferred')
                       AND send_at_ms > $2
                     ORDER BY send_at_ms, place LIMIT 1",
                )
                .bind(session.as_str())
                .bind(now.as_millis())
                .fetch_optional(self.fencing.pool())
                .await?
            }
        };
        row.as_deref()
            .map(|r| json::decode(r, MESSAGES))
            .transpose()
    }

    async fn in_flight(&self, session: &SessionId) -> Result<Vec<MessageRecord>, FleetError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT record::text FROM messages WHERE session = $1 AND queued AND status = 'sending'
             ORDER BY place",
        )
        .bind(session.as_str())
        .fetch_all(self.fencing.pool())
        .await?;
        rows.iter().map(|r| json::decode(r, MESSAGES)).collect()
    }

    async fn prune_finished(&self, cutoff: Timestamp, max: usize) -> Result<usize, FleetError> {
        let held = self.fencing.held_tenants();
        if held.is_empty() || max == 0 {
            return Ok(0);
        }
        // The store's rules, by name: finished messages, campaigns ended.
        let finished = MessageStatus::FINISHED
            .into_iter()
            .map(|st| json::name(st, MESSAGES))
            .collect::<Result<Vec<_>, _>>()?;
        let ended = CampaignStatus::ENDED
            .into_iter()
            .map(|st| json::name(st, "campaigns"))
            .collect::<Result<Vec<_>, _>>()?;
        let done = sqlx::query(
            "DELETE FROM messages WHERE id IN (
                 SELECT id FROM messages
                 WHERE NOT queued AND created_ms < $1 AND updated_ms < $1
                   AND status = ANY($4) AND tenant = ANY($2)
                   AND NOT EXISTS (SELECT 1 FROM campaigns c
                       WHERE messages.idempotency_key LIKE 'campaign/%'
                         AND c.id = split_part(messages.idempotency_key, '/', 2)
                         AND c.status <> ALL($5))
                 ORDER BY created_ms LIMIT $3
                 FOR UPDATE SKIP LOCKED)",
        )
        .bind(cutoff.as_millis())
        .bind(&held)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .bind(&finished)
        .bind(&ended)
        .execute(self.fencing.pool())
        .await?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }

    async fn store_incoming(&self, m: &IncomingRecord) -> Result<Incoming, FleetError> {
        let mut tx = self.fencing.pool().begin().await?;
        // One writer per session at a time: the next sequence is read here.
        lock(&mut tx, "inbox", m.session.as_str()).await?;
        let first: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM inbox WHERE session = $1 AND id = $2")
                .bind(m.session.as_str())
                .bind(&m.id)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(seq) = first {
            return Ok(Incoming::Duplicate(unsigned(seq)));
        }
        let last: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM inbox WHERE session = $1")
            .bind(m.session.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let seq = last.map_or(1, |l| l + 1);
        let mut stored = m.clone();
        stored.seq = unsigned(seq);
        let json = json::encode(&stored, "inbox")?;
        sqlx::query(
            "INSERT INTO inbox (session, seq, id, tenant, record)
             VALUES ($1, $2, $3, $4, $5::text::jsonb)",
        )
        .bind(m.session.as_str())
        .bind(seq)
        .bind(&m.id)
        .bind(m.tenant.as_str())
        .bind(json)
        .execute(&mut *tx)
        .await?;
        let capacity = i64::try_from(INBOX_CAPACITY).unwrap_or(i64::MAX);
        sqlx::query("DELETE FROM inbox WHERE session = $1 AND seq <= $2")
            .bind(m.session.as_str())
            .bind(seq - capacity)
            .execute(&mut *tx)
            .await?;
        note(&mut tx, &m.tenant, &m.session, &m.from, m.at, false).await?;
        let received = Counts {
            received: 1,
            ..Counts::default()
        };
        bump(&mut tx, &m.tenant, &m.session, m.at, &received).await?;
        tx.commit().await?;
        Ok(Incoming::New(unsigned(seq)))
    }

    async fn incoming(
        &self,
        session: &SessionId,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Vec<IncomingRecord>, FleetError> {
        let upper = before.map_or(i64::MAX, |b| {
            i64::try_from(b.saturating_sub(1)).unwrap_or(i64::MAX)
        });
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT record::text FROM inbox WHERE session = $1 AND seq <= $2
             ORDER BY seq DESC LIMIT $3",
        )
        .bind(session.as_str())
        .bind(upper)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.fencing.pool())
        .await?;
        rows.iter().map(|r| json::decode(r, "inbox")).collect()
    }

    async fn known(&self, session: &SessionId, peers: &[&str]) -> Result<Vec<bool>, FleetError> {
        let found: Vec<String> =
            sqlx::query_scalar("SELECT peer FROM contacts WHERE session = $1 AND peer = ANY($2)")
                .bind(session.as_str())
                .bind(peers)
                .fetch_all(self.fencing.pool())
                .await?;
        Ok(peers.iter().map(|p| found.iter().any(|f| f == p)).collect())
    }

    async fn note_exchange(
        &self,
        session: &SessionId,
        peer: &str,
        at: Timestamp,
        outgoing: bool,
    ) -> Result<(), FleetError> {
        let tenant: Option<String> =
            sqlx::query_scalar("SELECT tenant FROM sessions WHERE id = $1")
                .bind(session.as_str())
                .fetch_optional(self.fencing.pool())
                .await?;
        let tenant = tenant.and_then(|t| TenantId::new(t).ok()).ok_or_else(|| {
            json::corrupt("contacts", &format!("session {session} has no record"))
        })?;
        let mut tx = self.fencing.pool().begin().await?;
        self.fencing.fence(&mut tx, &tenant).await?;
        note(&mut tx, &tenant, session, peer, at, outgoing).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn new_contacts(
        &self,
        session: &SessionId,
        since: Timestamp,
    ) -> Result<NewContacts, FleetError> {
        let rows = sqlx::query(
            "SELECT at_ms, replied_ms IS NOT NULL AS replied FROM contacts
             WHERE session = $1 AND outgoing AND at_ms >= $2
             ORDER BY at_ms, peer COLLATE \"C\"",
        )
        .bind(session.as_str())
        .bind(since.as_millis())
        .fetch_all(self.fencing.pool())
        .await?;
        let mut out = NewContacts::default();
        for row in rows {
            out.sends
                .push(Timestamp::from_millis(row.try_get("at_ms")?));
            out.replied += usize::from(row.try_get::<bool, _>("replied")?);
        }
        Ok(out)
    }

    async fn activity(&self, session: &SessionId, since: Timestamp) -> Result<Counts, FleetError> {
        let row = sqlx::query(
            "SELECT coalesce(sum(sent), 0)::bigint AS sent,
                    coalesce(sum(failed), 0)::bigint AS failed,
                    coalesce(sum(not_on_whatsapp), 0)::bigint AS not_on_whatsapp,
                    coalesce(sum(deferred), 0)::bigint AS deferred,
                    coalesce(sum(received), 0)::bigint AS received
             FROM activity WHERE session = $1 AND hour_ms >= $2",
        )
        .bind(session.as_str())
        .bind(hour(since))
        .fetch_one(self.fencing.pool())
        .await?;
        let get = |name: &str| -> Result<u64, FleetError> {
            Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
        };
        Ok(Counts {
            sent: get("sent")?,
            failed: get("failed")?,
            not_on_whatsapp: get("not_on_whatsapp")?,
            deferred: get("deferred")?,
            received: get("received")?,
        })
    }
}

/// What a single node kept of one session's messages, brought into the
/// fleet by `centinela fleet import` ([`FleetMessages::import`]).
#[derive(Debug, Clone, Default)]
pub struct SessionRows {
    /// Every message, oldest first (the queue's order for those still in
    /// it: queued, deferred or sending).
    pub messages: Vec<MessageRecord>,
    pub inbox: Vec<IncomingRecord>,
    /// Each peer with the first exchange.
    pub contacts: Vec<(String, FirstExchange)>,
    /// Each hour's counts (its start in ms).
    pub activity: Vec<(i64, Counts)>,
}

/// How many rows of each [`FleetMessages::import`] wrote (rows the fleet
/// had already are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowsImported {
    pub messages: usize,
    pub incoming: usize,
    pub contacts: usize,
    pub activity_hours: usize,
}

impl FleetMessages {
    /// Writes `rows` of `tenant`'s `session`, fenced on this node's lease, in
    /// one transaction; a row the fleet has already (the same id, an
    /// idempotency key taken, the same peer or hour) is left as it is, so
    /// a second import writes nothing. A message left `sending` stays so:
    /// the session's recovery on its next owner makes it `unknown`.
    pub async fn import(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        rows: &SessionRows,
    ) -> Result<RowsImported, FleetError> {
        let mut tx = self.fencing.pool().begin().await?;
        self.fencing.fence(&mut tx, tenant).await?;
        let mut done = RowsImported::default();
        let n = |r: sqlx::postgres::PgQueryResult| usize::from(r.rows_affected() == 1);
        let ours = |t: &TenantId, s: &SessionId| t == tenant && s == session;
        let messages: Vec<&MessageRecord> = rows
            .messages
            .iter()
            .filter(|m| ours(&m.tenant, &m.session))
            .collect();
        done.messages = insert_rows(&mut tx, &messages).await?;
        for m in rows.inbox.iter().filter(|m| ours(&m.tenant, &m.session)) {
            let json = json::encode(m, "inbox")?;
            done.incoming += n(sqlx::query(
                "INSERT INTO inbox (session, seq, id, tenant, record)
                 VALUES ($1, $2, $3, $4, $5::text::jsonb) ON CONFLICT DO NOTHING",
            )
            .bind(m.session.as_str())
            .bind(i64::try_from(m.seq).unwrap_or(i64::MAX))
            .bind(&m.id)
            .bind(m.tenant.as_str())
            .bind(json)
            .execute(&mut *tx)
            .await?);
        }
        for (peer, first) in &rows.contacts {
            done.contacts += n(sqlx::query(
                "INSERT INTO contacts (session, peer, tenant, at_ms, outgoing, replied_ms)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(session.as_str())
            .bind(peer)
            .bind(tenant.as_str())
            .bind(first.at.as_millis())
            .bind(first.outgoing)
            .bind(first.replied_at.map(Timestamp::as_millis))
            .execute(&mut *tx)
            .await?);
        }
        let count = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (hour_ms, c) in &rows.activity {
            done.activity_hours += n(sqlx::query(
                "INSERT INTO activity (session, hour_ms, tenant, sent, failed, not_on_whatsapp,
                                       deferred, received)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            )
            .bind(session.as_str())
            .bind(hour_ms)
            .bind(tenant.as_str())
            .bind(count(c.sent))
            .bind(count(c.failed))
            .bind(count(c.not_on_whatsapp))
            .bind(count(c.deferred))
            .bind(count(c.received))
            .execute(&mut *tx)
            .await?);
        }
        tx.commit().await?;
        Ok(done)
    }
}

/// Replaces `m` (a status change): it leaves the send queue when its
/// status does. A message never accepted is written out of the queue.
async fn write(tx: &mut PgConnection, m: &MessageRecord) -> Result<(), FleetError> {
    let json = json::encode(m, MESSAGES)?;
    sqlx::query(
        "INSERT INTO messages (id, tenant, session, queued, status, send_at_ms, created_ms,
                               updated_ms, idempotency_key, engine_id, record)
         VALUES ($1, $2, $3, false, $5, $6, $7, $8, $9, $10, $11::text::jsonb)
         ON CONFLICT (id) DO UPDATE SET
             queued = messages.queued AND NOT $4, status = EXCLUDED.status,
             send_at_ms = EXCLUDED.send_at_ms, updated_ms = EXCLUDED.updated_ms,
             engine_id = EXCLUDED.engine_id, record = EXCLUDED.record",
    )
    .bind(&m.id)
    .bind(m.tenant.as_str())
    .bind(m.session.as_str())
    .bind(m.status.leaves_queue())
    .bind(json::name(m.status, MESSAGES)?)
    .bind(m.send_at.map(Timestamp::as_millis))
    .bind(m.created_at.as_millis())
    .bind(m.updated_at.as_millis())
    .bind(m.idempotency_key.as_deref())
    .bind(m.engine_id.as_deref())
    .bind(json)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A batch of messages as columns, for one `UNNEST`.
#[derive(Default)]
struct Columns<'a> {
    id: Vec<&'a str>,
    tenant: Vec<&'a str>,
    session: Vec<&'a str>,
    queued: Vec<bool>,
    status: Vec<String>,
    send_at: Vec<Option<i64>>,
    created: Vec<i64>,
    updated: Vec<i64>,
    key: Vec<Option<&'a str>>,
    engine_id: Vec<Option<&'a str>>,
    record: Vec<String>,
}

/// Inserts messages in one statement, in `batch`'s order (their places in
/// the queue follow it), each in the queue while its status is; a row the
/// fleet has already (its id, or its idempotency key taken) is left as it
/// is. Answers how many rows were written.
async fn insert_rows(tx: &mut PgConnection, batch: &[&MessageRecord]) -> Result<usize, FleetError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let mut c = Columns::default();
    for m in batch {
        c.id.push(&m.id);
        c.tenant.push(m.tenant.as_str());
        c.session.push(m.session.as_str());
        c.queued.push(!m.status.leaves_queue());
        c.status.push(json::name(m.status, MESSAGES)?);
        c.send_at.push(m.send_at.map(Timestamp::as_millis));
        c.created.push(m.created_at.as_millis());
        c.updated.push(m.updated_at.as_millis());
        c.key.push(m.idempotency_key.as_deref());
        c.engine_id.push(m.engine_id.as_deref());
        c.record.push(json::encode(m, MESSAGES)?);
    }
    let done = sqlx::query(
        "INSERT INTO messages (id, tenant, session, queued, status, send_at_ms, created_ms,
                               updated_ms, idempotency_key, engine_id, record)
         SELECT id, tenant, session, queued, status, send_at_ms, created_ms, updated_ms,
                idempotency_key, engine_id, record::jsonb
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bool[], $5::text[], $6::int8[],
                     $7::int8[], $8::int8[], $9::text[], $10::text[], $11::text[])
              WITH ORDINALITY AS m(id, tenant, session, queued, status, send_at_ms,
                                   created_ms, updated_ms, idempotency_key, engine_id,
                                   record, n)
         ORDER BY n
         ON CONFLICT DO NOTHING",
    )
    .bind(c.id)
    .bind(c.tenant)
    .bind(c.session)
    .bind(c.queued)
    .bind(c.status)
    .bind(c.send_at)
    .bind(c.created)
    .bind(c.updated)
    .bind(c.key)
    .bind(c.engine_id)
    .bind(c.record)
    .execute(&mut *tx)
    .await?;
    Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
}

async fn by_key(
    conn: &mut PgConnection,
    tenant: &TenantId,
    key: &str,
) -> Result<Option<MessageRecord>, FleetError> {
    let row: Option<String> = sqlx::query_scalar(
        "SELECT record::text FROM messages WHERE tenant = $1 AND idempotency_key = $2",
    )
    .bind(tenant.as_str())
    .bind(key)
    .fetch_optional(conn)
    .await?;
    row.as_deref()
        .map(|r| json::decode(r, MESSAGES))
        .transpose()
}

/// Notes an exchange of `session` with `peer` unless an earlier one is on
/// record; the first reply to our first message is noted on it (the
/// store's rule, `contacts.rs`).
async fn note(
    tx: &mut PgConnection,
    tenant: &TenantId,
    session: &SessionId,
    peer: &str,
    at: Timestamp,
    outgoing: bool,
) -> Result<(), FleetError> {
    sqlx::query(
        "INSERT INTO contacts (session, peer, tenant, at_ms, outgoing) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (session, peer) DO UPDATE SET replied_ms = EXCLUDED.at_ms
         WHERE contacts.outgoing AND NOT EXCLUDED.outgoing AND contacts.replied_ms IS NULL",
    )
    .bind(session.as_str())
    .bind(peer)
    .bind(tenant.as_str())
    .bind(at.as_millis())
    .bind(outgoing)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Adds `delta` to `session`'s hour of `at` and drops its hours older than
/// the store keeps.
async fn bump(
    tx: &mut PgConnection,
    tenant: &TenantId,
    session: &SessionId,
    at: Timestamp,
    delta: &Counts,
) -> Result<(), FleetError> {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO activity (session, hour_ms, tenant, sent, failed, not_on_whatsapp,
                               deferred, received)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (session, hour_ms) DO UPDATE SET
             sent = activity.sent + EXCLUDED.sent,
             failed = activity.failed + EXCLUDED.failed,
             not_on_whatsapp = activity.not_on_whatsapp + EXCLUDED.not_on_whatsapp,
             deferred = activity.deferred + EXCLUDED.deferred,
             received = activity.received + EXCLUDED.received",
    )
    .bind(session.as_str())
    .bind(hour(at))
    .bind(tenant.as_str())
    .bind(n(delta.sent))
    .bind(n(delta.failed))
    .bind(n(delta.not_on_whatsapp))
    .bind(n(delta.deferred))
    .bind(n(delta.received))
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM activity WHERE session = $1 AND hour_ms < $2")
        .bind(session.as_str())
        .bind(hour(at.minus(ACTIVITY_KEPT)))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

fn unsigned(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

impl MessageRepo for FleetMessages {
    fn accept(&self, batch: &[MessageRecord]) -> Result<Vec<Option<MessageRecord>>, StoreError> {
        block_on(self.accept(batch))
    }

    fn message(&self, id: &str) -> Result<Option<MessageRecord>, StoreError> {
        block_on(self.one("SELECT record::text FROM messages WHERE id = $1", &[id]))
    }

    fn messages(
        &self,
        session: &SessionId,
        limit: usize,
        before: Option<&str>,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        block_on(self.history(session, limit, before))
    }

    fn next_queued(
        &self,
        session: &SessionId,
        now: Timestamp,
    ) -> Result<Option<MessageRecord>, StoreError> {
        block_on(self.next_queued(session, now))
    }

    fn update(&self, m: &MessageRecord) -> Result<(), StoreError> {
        block_on(self.update(m))
    }

    fn by_engine_id(
        &self,
        session: &SessionId,
        engine_id: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        block_on(self.one(
            "SELECT record::text FROM messages WHERE session = $1 AND engine_id = $2
                 ORDER BY updated_ms DESC LIMIT 1",
            &[session.as_str(), engine_id],
        ))
    }

    fn by_idempotency_key(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<MessageRecord>, StoreError> {
        block_on(async {
            let mut conn = self.fencing.pool().acquire().await?;
            by_key(&mut conn, tenant, key).await
        })
    }

    fn in_flight(&self, session: &SessionId) -> Result<Vec<MessageRecord>, StoreError> {
        block_on(self.in_flight(session))
    }

    fn prune_finished(&self, cutoff: Timestamp, max: usize) -> Result<usize, StoreError> {
        block_on(self.prune_finished(cutoff, max))
    }
}

impl InboxRepo for FleetMessages {
    fn store_incoming(&self, m: &IncomingRecord) -> Result<Incoming, StoreError> {
        block_on(self.store_incoming(m))
    }

    fn incoming(
        &self,
        session: &SessionId,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Vec<IncomingRecord>, StoreError> {
        block_on(self.incoming(session, limit, before))
    }
}

impl ContactRepo for FleetMessages {
    fn is_known(&self, session: &SessionId, peer: &str) -> Result<bool, StoreError> {
        Ok(block_on(self.known(session, &[peer]))?[0])
    }

    fn known(&self, session: &SessionId, peers: &[&str]) -> Result<Vec<bool>, StoreError> {
        block_on(self.known(session, peers))
    }

    fn note_exchange(
        &self,
        session: &SessionId,
        peer: &str,
        at: Timestamp,
        outgoing: bool,
    ) -> Result<(), StoreError> {
        block_on(self.note_exchange(session, peer, at, outgoing))
    }

    fn new_contacts(
        &self,
        session: &SessionId,
        since: Timestamp,
    ) -> Result<NewContacts, StoreError> {
        block_on(self.new_contacts(session, since))
    }
}

impl ActivityRepo for FleetMessages {
    fn activity(&self, session: &SessionId, since: Timestamp) -> Result<Counts, StoreError> {
        block_on(self.activity(session, since))
    }
}

//! Fleet-wide admission: the anti-ban limits counted over every node's
//! attempts, not one process's. Each decision is one transaction: take
//! `pg_advisory_xact_lock` on the egress's key and then the tenant's, read
//! the rows inside the windows, rebuild the in-memory [`Ledger`] view,
//! judge it with `centinela-actors`' pure [`evaluate`] (the same rules a
//! single node runs — none are restated here), insert the admitted attempt,
//! commit. Two decisions that share an egress or a tenant therefore run
//! one after the other, and the second sees the first's attempt.
//!
//! Scopes: the hourly limit (`antiban.global_attempts_per_hour`) is per
//! egress identity — the address WhatsApp sees — so the view's `global`
//! window holds that egress's attempts only; the daily limit, cooldowns,
//! ban blocks and proxy holds are per tenant and follow it to any node.
//! "Now" is the database's clock, read after the locks are held.
//!
//! Pairing codes are admitted the same way ([`FleetAdmission::pairing_code`]:
//! the egress's and the phone number's locks, the hour's rows, the pure
//! `judge_pairing_code`, the insert).
//!
//! Rows no window can read any more are pruned ([`FleetAdmission::prune`]:
//! attempts older than two days, pairing codes older than two hours; the
//! tenant events — cooldowns, blocks, proxy holds, overrides — are few and
//! kept, as a single node keeps its own).
//!
//! Not here: the connection queue (delay, jitter, spacing stay with the
//! node that starts the browser).
//! A decision or an outcome can carry the tenant's lease ([`Fence`]): then
//! a node that lost the tenant writes nothing and gets `Fenced`.

use crate::lease::Fence;
use crate::{Fleet, FleetError};
use centinela_actors::clock::Timestamp;
use centinela_actors::config::AntibanConfig;
use centinela_actors::engine::EngineKind;
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::supervisor::admission::{
    counts, evaluate, evaluate_cloud, judge_pairing_code, AttemptRequest, Denial,
};
use centinela_actors::supervisor::ledger::{AttemptKind, Ledger, LedgerEvent, DAY, HOUR};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{PgConnection, Row};
use std::collections::VecDeque;
use tracing::info;

/// What the fleet decided about one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Counted in the fleet's ledger as `attempt`, at the database's `at`.
    Admitted {
        attempt: u64,
        at: Timestamp,
    },
    Denied(Denial),
}

/// What happened to a tenant (the supervisor's seam defines it).
pub use centinela_actors::supervisor::shared::TenantEvent;

/// The fleet's admission ledger, judged with one node's `[antiban]` rules
/// (every node of a fleet is expected to run the same ones).
#[derive(Debug, Clone)]
pub struct FleetAdmission {
    pool: PgPool,
    cfg: AntibanConfig,
}

impl FleetAdmission {
    pub fn new(fleet: &Fleet, cfg: AntibanConfig) -> Self {
        Self {
            pool: fleet.pool().clone(),
            cfg,
        }
    }

    /// Decides one attempt for the whole fleet; an admitted one is
    /// committed before this returns. `req.live` is the deciding node's own
    /// count (capacity is per node). With a `fence`, the decision is made
    /// only while this node holds the tenant at that epoch (checked after
    /// the locks, held to the commit), else [`FleetError::Fenced`] and
    /// nothing is written.
    pub async fn decide(
        &self,
        req: &AttemptRequest,
        fence: Option<Fence<'_>>,
    ) -> Result<Verdict, FleetError> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, "egress", &req.egress).await?;
        lock(&mut tx, "tenant", req.tenant.as_str()).await?;
        if let Some(fence) = fence {
            fence.check(&mut tx, &req.tenant).await?;
        }
        let clock = db_now(&mut tx).await?;
        let (ledger, now) = load(&mut tx, &req.tenant, &req.egress, clock).await?;
        let cloud = req.engine == EngineKind::Cloud;
        let judged = if cloud {
            evaluate_cloud(&self.cfg, &ledger, &req.tenant, now)
        } else {
            evaluate(
                &self.cfg,
                &ledger,
                &req.tenant,
                req.kind,
                req.live,
                &req.egress,
                now,
            )
        };
        if let Err(denial) = judged {
            info!(tenant = %req.tenant, egress = %req.egress, reason = denial.reason.as_str(),
                "fleet admission denied");
            return Ok(Verdict::Denied(denial));
        }
        let counted = !cloud && counts(&self.cfg, req.kind);
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO admission_attempts (tenant, session, egress, kind, counted, cloud, at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(req.tenant.as_str())
        .bind(req.session.as_str())
        .bind(&req.egress)
        .bind(req.kind.as_str())
        .bind(counted)
        .bind(cloud)
        .bind(now.as_millis())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let attempt = u64::try_from(id).map_err(|_| corrupt("admission_attempts", "id < 0"))?;
        info!(tenant = %req.tenant, egress = %req.egress, attempt, "fleet admission admitted");
        Ok(Verdict::Admitted { attempt, at: now })
    }

    /// Admits one pairing-code request for the whole fleet: at most
    /// `pairing_codes_per_phone_per_hour` for `phone` and
    /// `pairing_codes_per_egress_per_hour` through `egress` over every
    /// node's requests in the database's rolling hour. An admitted one is
    /// committed before this returns; fenced like [`Self::decide`].
    pub async fn pairing_code(
        &self,
        tenant: &TenantId,
        phone: &str,
        egress: &str,
        fence: Option<Fence<'_>>,
    ) -> Result<Result<(), Denial>, FleetError> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, "egress", egress).await?;
        lock(&mut tx, "phone", phone).await?;
        if let Some(fence) = fence {
            fence.check(&mut tx, tenant).await?;
        }
        let now = db_now(&mut tx).await?;
        let rows = sqlx::query(
            "SELECT phone, egress, at_ms FROM pairing_codes
             WHERE (phone = $1 OR egress = $2) AND at_ms > $3 ORDER BY at_ms, id",
        )
        .bind(phone)
        .bind(egress)
        .bind(now.minus(HOUR).as_millis())
        .fetch_all(&mut *tx)
        .await?;
        let mut codes = VecDeque::with_capacity(rows.len());
        for row in &rows {
            codes.push_back((
                row.try_get::<String, _>("phone")?,
                row.try_get::<String, _>("egress")?,
                Timestamp::from_millis(row.try_get("at_ms")?),
            ));
        }
        if let Err(denial) = judge_pairing_code(&self.cfg, &codes, phone, egress, now) {
            info!(tenant = %tenant, egress, "fleet pairing code denied");
            return Ok(Err(denial));
        }
        sqlx::query(
            "INSERT INTO pairing_codes (tenant, phone, egress, at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(tenant.as_str())
        .bind(phone)
        .bind(egress)
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Deletes what no decision reads any more (the database's clock):
    /// attempts older than two days (the longest window is a day) and
    /// pairing codes older than two hours (theirs is an hour). Answers how
    /// many rows went. Any node may run it, any number of times.
    pub async fn prune(&self) -> Result<u64, FleetError> {
        let now = db_now(&mut *self.pool.acquire().await?).await?;
        let attempts = sqlx::query("DELETE FROM admission_attempts WHERE at_ms < $1")
            .bind(now.minus(DAY * 2).as_millis())
            .execute(&self.pool)
            .await?
            .rows_affected();
        let codes = sqlx::query("DELETE FROM pairing_codes WHERE at_ms < $1")
            .bind(now.minus(HOUR * 2).as_millis())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(attempts + codes)
    }

    /// Records what happened to a tenant, under the tenant's lock, and
    /// answers the ledger event as stored. A session's outcome is the
    /// owner's to record (with its `fence`); an admin override may come
    /// from any node (`None`).
    pub async fn record(
        &self,
        tenant: &TenantId,
        event: TenantEvent,
        fence: Option<Fence<'_>>,
    ) -> Result<LedgerEvent, FleetError> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, "tenant", tenant.as_str()).await?;
        if let Some(fence) = fence {
            fence.check(&mut tx, tenant).await?;
        }
        let at = db_now(&mut tx).await?;
        let event = self.ledger_event(tenant, event, at);
        let (kind, payload) = stored(&event)?;
        sqlx::query(
            "INSERT INTO admission_events (tenant, kind, at_ms, payload)
             VALUES ($1, $2, $3, $4::text::jsonb)",
        )
        .bind(tenant.as_str())
        .bind(kind)
        .bind(at.as_millis())
        .bind(payload)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(event)
    }

    /// Refunds an admitted attempt that was cancelled before it started.
    /// False if there is no such attempt or it was cancelled already.
    pub async fn cancel(&self, attempt: u64) -> Result<bool, FleetError> {
        let id = i64::try_from(attempt).unwrap_or(i64::MAX);
        let done = sqlx::query(
            "UPDATE admission_attempts
             SET cancelled_ms = (extract(epoch FROM clock_timestamp()) * 1000)::bigint
             WHERE id = $1 AND cancelled_ms IS NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The view a decision for `tenant` through `egress` would judge, and
    /// the database's now (for statuses and tests).
    pub async fn view(
        &self,
        tenant: &TenantId,
        egress: &str,
    ) -> Result<(Ledger, Timestamp), FleetError> {
        let mut conn = self.pool.acquire().await?;
        let clock = db_now(&mut conn).await?;
        load(&mut conn, tenant, egress, clock).await
    }

    fn ledger_event(&self, tenant: &TenantId, event: TenantEvent, at: Timestamp) -> LedgerEvent {
        let tenant = tenant.clone();
        match event {
            TenantEvent::Failure { session } => LedgerEvent::Failure {
                tenant,
                session,
                at,
                until: at.plus(self.cfg.cooldown_after_failure),
            },
            TenantEvent::Banned { session } => LedgerEvent::Banned {
                tenant,
                session,
                at,
                until: at.plus(self.cfg.ban_block),
            },
            TenantEvent::ProxyBlocked { session, egress } => LedgerEvent::ProxyBlocked {
                tenant,
                session,
                egress,
                at,
            },
            TenantEvent::Unblocked { by } => LedgerEvent::Unblocked { tenant, by, at },
            TenantEvent::CooldownReset { by } => LedgerEvent::CooldownReset { tenant, by, at },
        }
    }
}

/// The advisory-lock key of a scope's name: the first 8 bytes of
/// SHA-256("scope\0name"), the same on every node and every build (unlike
/// PostgreSQL's `hashtext`, which is not promised stable). A collision
/// only serialises two unrelated decisions.
pub fn lock_key(scope: &str, name: &str) -> i64 {
    let digest = Sha256::new()
        .chain_update(scope.as_bytes())
        .chain_update([0u8])
        .chain_update(name.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Every decision takes the egress lock before the tenant lock, so two
/// decisions never wait on each other in a cycle.
pub(crate) async fn lock(
    conn: &mut PgConnection,
    scope: &str,
    name: &str,
) -> Result<(), FleetError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key(scope, name))
        .execute(conn)
        .await?;
    Ok(())
}

/// The database's wall clock now (`clock_timestamp()`, not the
/// transaction's start: a decision that waited for a lock must see the
/// attempts committed while it waited as in the past).
async fn db_now(conn: &mut PgConnection) -> Result<Timestamp, FleetError> {
    let ms: i64 =
        sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
            .fetch_one(conn)
            .await?;
    Ok(Timestamp::from_millis(ms))
}

/// Builds the view: the tenant's attempts of the last day and its events,
/// and `global` replaced by the egress's counted attempts of the last hour.
/// "Now" never goes behind a stored attempt (a database clock stepped
/// back still counts every attempt as inside its window).
async fn load(
    conn: &mut PgConnection,
    tenant: &TenantId,
    egress: &str,
    clock: Timestamp,
) -> Result<(Ledger, Timestamp), FleetError> {
    let since_day = clock.minus(DAY).as_millis();
    let since_hour = clock.minus(HOUR).as_millis();
    let rows = sqlx::query(
        "SELECT id, tenant, session, egress, kind, counted, cloud, at_ms FROM admission_attempts
         WHERE cancelled_ms IS NULL
           AND ((tenant = $1 AND at_ms > $3) OR (egress = $2 AND counted AND at_ms > $4))
         ORDER BY at_ms, id",
    )
    .bind(tenant.as_str())
    .bind(egress)
    .bind(since_day)
    .bind(since_hour)
    .fetch_all(&mut *conn)
    .await?;
    let mut ledger = Ledger::default();
    let mut global = VecDeque::new();
    let mut now = clock;
    for row in &rows {
        let (event, row_egress) = attempt_of(row)?;
        let LedgerEvent::Attempt {
            id, counted, at, ..
        } = &event
        else {
            continue;
        };
        now = now.max(*at);
        if *counted && row_egress == egress {
            global.push_back((*id, *at));
        }
        ledger.apply(&event);
    }
    let events: Vec<String> = sqlx::query_scalar(
        "SELECT payload::text FROM admission_events WHERE tenant = $1 ORDER BY id",
    )
    .bind(tenant.as_str())
    .fetch_all(&mut *conn)
    .await?;
    for payload in &events {
        let event: LedgerEvent = serde_json::from_str(payload)
            .map_err(|e| corrupt("admission_events", &e.to_string()))?;
        ledger.apply(&event);
    }
    // The hourly budget is the egress's, whoever's tenant spent it.
    ledger.global = global;
    ledger.expire(now);
    Ok((ledger, now))
}

/// An `admission_attempts` row as the ledger event it is, and its egress.
fn attempt_of(row: &PgRow) -> Result<(LedgerEvent, String), FleetError> {
    let bad = |why: String| corrupt("admission_attempts", &why);
    let id: i64 = row.try_get("id")?;
    let tenant: String = row.try_get("tenant")?;
    let session: String = row.try_get("session")?;
    let kind: String = row.try_get("kind")?;
    let kind: AttemptKind =
        serde_json::from_value(serde_json::Value::String(kind)).map_err(|e| bad(e.to_string()))?;
    let event = LedgerEvent::Attempt {
        id: u64::try_from(id).map_err(|e| bad(e.to_string()))?,
        tenant: TenantId::new(tenant).map_err(|e| bad(e.to_string()))?,
        session: SessionId::new(session).map_err(|e| bad(e.to_string()))?,
        kind,
        counted: row.try_get("counted")?,
        at: Timestamp::from_millis(row.try_get("at_ms")?),
        cloud: row.try_get("cloud")?,
    };
    Ok((event, row.try_get("egress")?))
}

/// The `kind` column and JSON payload of a tenant event.
fn stored(event: &LedgerEvent) -> Result<(&'static str, String), FleetError> {
    let kind = match event {
        LedgerEvent::Failure { .. } => "failure",
        LedgerEvent::Banned { .. } => "banned",
        LedgerEvent::ProxyBlocked { .. } => "proxy_blocked",
        LedgerEvent::Unblocked { .. } => "unblocked",
        LedgerEvent::CooldownReset { .. } => "cooldown_reset",
        LedgerEvent::Attempt { .. }
        | LedgerEvent::Cancelled { .. }
        | LedgerEvent::PairingCode { .. } => {
            return Err(corrupt("admission_events", "not a tenant event"))
        }
    };
    let payload =
        serde_json::to_string(event).map_err(|e| corrupt("admission_events", &e.to_string()))?;
    Ok((kind, payload))
}

fn corrupt(table: &'static str, why: &str) -> FleetError {
    FleetError::Corrupt {
        table,
        why: why.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_pinned_and_scoped() {
        // Pinned (computed independently: Python's hashlib): a change would
        // let two builds in one fleet lock different keys for one tenant.
        assert_eq!(lock_key("tenant", "acme"), -3_249_464_599_674_861_902);
        assert_eq!(lock_key("egress", "server"), -3_254_572_981_458_990_100);
        assert_ne!(lock_key("egress", "t1"), lock_key("tenant", "t1"));
    }
}

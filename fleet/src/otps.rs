//! Verification codes shared by the fleet ([`FleetOtps`]): the same
//! [`OtpRepo`] the node's store is, on PostgreSQL, so a code sent through
//! the node that hosts the tenant is read, verified and voided through any
//! node, and the per-phone and per-address limits count every node's
//! sends (the rule is the store's own [`spent`]).
//!
//! Issuing a code is one transaction, like the store's: the limits' scopes
//! are locked (advisory locks, in one order), the record on file is locked
//! and given to the precondition, the sends in the windows are read, and
//! only then the send is logged, the previous code voided and the record
//! written. Verification is a read-modify-write of the record under its
//! row lock. None of it is fenced: a code is not a browser, and which node
//! writes it does not matter, only that two writes never interleave.
//!
//! The store trait is synchronous: each call runs its query through
//! [`crate::blocking`] (`block_in_place` on the multi-threaded runtime).

use crate::admission::lock;
use crate::blocking::block_on;
use crate::{Fleet, FleetError};
use centinela_actors::clock::Timestamp;
use centinela_actors::store::{spent, Issue, OtpRecord, OtpRepo, OtpStatus, SendLimit, StoreError};
use sqlx::postgres::{PgConnection, PgPool};

/// The fleet's verification codes.
#[derive(Debug, Clone)]
pub struct FleetOtps {
    pool: PgPool,
}

impl FleetOtps {
    pub fn new(fleet: &Fleet) -> Self {
        Self {
            pool: fleet.pool().clone(),
        }
    }

    async fn issue(
        &self,
        otp: &OtpRecord,
        limits: &[SendLimit],
        now: Timestamp,
        precondition: &mut dyn FnMut(Option<&OtpRecord>) -> bool,
    ) -> Result<Issue, FleetError> {
        let mut tx = self.pool.begin().await?;
        let mut scopes: Vec<&str> = limits.iter().map(|l| l.scope.as_str()).collect();
        scopes.sort_unstable();
        scopes.dedup();
        for scope in scopes {
            lock(&mut tx, "otp", scope).await?;
        }
        let existing = locked(&mut tx, &otp.id).await?;
        if !precondition(existing.as_ref()) {
            return Ok(Issue::Refused(existing));
        }
        let mut times = Vec::with_capacity(limits.len());
        for limit in limits {
            times.push(sends(&mut tx, &limit.scope, now.minus(limit.window)).await?);
        }
        if let Some((index, retry_at)) = spent(limits, &times) {
            return Ok(Issue::Limited { index, retry_at });
        }
        let send = format!("{}/{}", otp.id, otp.sends);
        for limit in limits {
            // Rows out of the window count for nothing any more.
            sqlx::query("DELETE FROM otp_sends WHERE scope = $1 AND at_ms <= $2")
                .bind(&limit.scope)
                .bind(now.minus(limit.window).as_millis())
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO otp_sends (scope, at_ms, send, tenant) VALUES ($1, $2, $3, $4)",
            )
            .bind(&limit.scope)
            .bind(now.as_millis())
            .bind(&send)
            .bind(otp.tenant.as_str())
            .execute(&mut *tx)
            .await?;
        }
        let previous: Option<String> = sqlx::query_scalar(
            "SELECT otp FROM otp_latest WHERE tenant = $1 AND phone = $2 FOR UPDATE",
        )
        .bind(otp.tenant.as_str())
        .bind(&otp.phone)
        .fetch_optional(&mut *tx)
        .await?;
        let mut superseded = Vec::new();
        if let Some(prev) = previous.filter(|p| *p != otp.id) {
            if let Some(mut old) = locked(&mut tx, &prev).await? {
                if old.status == OtpStatus::Pending {
                    old.status = OtpStatus::Superseded;
                    old.updated_at = now;
                    write(&mut tx, &old).await?;
                    superseded.push(old);
                }
            }
        }
        sqlx::query(
            "INSERT INTO otp_latest (tenant, phone, otp) VALUES ($1, $2, $3)
             ON CONFLICT (tenant, phone) DO UPDATE SET otp = EXCLUDED.otp",
        )
        .bind(otp.tenant.as_str())
        .bind(&otp.phone)
        .bind(&otp.id)
        .execute(&mut *tx)
        .await?;
        write(&mut tx, otp).await?;
        tx.commit().await?;
        Ok(Issue::Stored { superseded })
    }

    async fn get(&self, id: &str) -> Result<Option<OtpRecord>, FleetError> {
        let row: Option<String> = sqlx::query_scalar("SELECT record::text FROM otps WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_deref().map(decode).transpose()
    }

    async fn update(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut OtpRecord) -> bool,
    ) -> Result<Option<OtpRecord>, FleetError> {
        let mut tx = self.pool.begin().await?;
        let Some(mut record) = locked(&mut tx, id).await? else {
            return Ok(None);
        };
        if change(&mut record) {
            write(&mut tx, &record).await?;
        }
        tx.commit().await?;
        Ok(Some(record))
    }

    async fn sends_since(
        &self,
        scope: &str,
        since: Timestamp,
    ) -> Result<Vec<Timestamp>, FleetError> {
        let mut conn = self.pool.acquire().await?;
        sends(&mut conn, scope, since).await
    }

    async fn prune(&self, before: Timestamp) -> Result<usize, FleetError> {
        let mut tx = self.pool.begin().await?;
        let gone: Vec<String> =
            sqlx::query_scalar("DELETE FROM otps WHERE expires_ms < $1 RETURNING id")
                .bind(before.as_millis())
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query("DELETE FROM otp_latest WHERE otp = ANY($1)")
            .bind(&gone)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(gone.len())
    }
}

/// The record of OTP `id`, locked until the transaction ends.
async fn locked(conn: &mut PgConnection, id: &str) -> Result<Option<OtpRecord>, FleetError> {
    let row: Option<String> =
        sqlx::query_scalar("SELECT record::text FROM otps WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    row.as_deref().map(decode).transpose()
}

async fn write(conn: &mut PgConnection, r: &OtpRecord) -> Result<(), FleetError> {
    let json = serde_json::to_string(r).map_err(|e| corrupt(&e.to_string()))?;
    sqlx::query(
        "INSERT INTO otps (id, tenant, record, expires_ms) VALUES ($1, $2, $3::text::jsonb, $4)
         ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record, expires_ms = EXCLUDED.expires_ms",
    )
    .bind(&r.id)
    .bind(r.tenant.as_str())
    .bind(json)
    .bind(r.expires_at.as_millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// The sends logged under `scope` after `since`, oldest first.
async fn sends(
    conn: &mut PgConnection,
    scope: &str,
    since: Timestamp,
) -> Result<Vec<Timestamp>, FleetError> {
    let rows: Vec<i64> = sqlx::query_scalar(
        "SELECT at_ms FROM otp_sends WHERE scope = $1 AND at_ms > $2 ORDER BY at_ms, id",
    )
    .bind(scope)
    .bind(since.as_millis())
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Timestamp::from_millis).collect())
}

fn decode(json: &str) -> Result<OtpRecord, FleetError> {
    serde_json::from_str(json).map_err(|e| corrupt(&e.to_string()))
}

fn corrupt(why: &str) -> FleetError {
    FleetError::Corrupt {
        table: "otps",
        why: why.to_owned(),
    }
}

impl OtpRepo for FleetOtps {
    fn issue_otp(
        &self,
        otp: &OtpRecord,
        limits: &[SendLimit],
        now: Timestamp,
        precondition: &mut dyn FnMut(Option<&OtpRecord>) -> bool,
    ) -> Result<Issue, StoreError> {
        block_on(self.issue(otp, limits, now, precondition))
    }

    fn otp(&self, id: &str) -> Result<Option<OtpRecord>, StoreError> {
        block_on(self.get(id))
    }

    fn update_otp(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut OtpRecord) -> bool,
    ) -> Result<Option<OtpRecord>, StoreError> {
        block_on(self.update(id, change))
    }

    fn otp_sends(&self, scope: &str, since: Timestamp) -> Result<Vec<Timestamp>, StoreError> {
        block_on(self.sends_since(scope, since))
    }

    fn prune_otps(&self, before: Timestamp) -> Result<usize, StoreError> {
        block_on(self.prune(before))
    }
}

//! Webhook deliveries shared by the fleet ([`FleetDeliveries`]): the queue
//! of a tenant's events on PostgreSQL, so it follows the tenant. A node
//! that stops (drained, killed) leaves its pending deliveries to the next
//! owner, which makes them; the list and a delivery's attempts read the
//! same on every node.
//!
//! Who writes. Deliveries are queued by the node whose session had the
//! event — the tenant's owner — and attempted by each node for the
//! tenants it holds ([`WebhookRepo::pending`] answers only those), every
//! write fenced on this node's lease. A node that lost the tenant during
//! an attempt records nothing ([`StoreError::NotHeld`]); the next owner
//! makes the attempt again: a delivery is made at least once.
//!
//! The tenant's target (URL and signing secret) is its settings, the
//! fleet's and mirrored into the hosting node's store
//! ([`crate::settings`]): read here from that mirror, which the owner
//! keeps current, and checked in the fleet when a delivery is queued.
//!
//! The store trait is synchronous: each call runs its query through
//! [`crate::blocking`] (`block_in_place` on the multi-threaded runtime).

use crate::blocking::block_on;
use crate::fencing::Fencing;
use crate::json;
use crate::lease::Leases;
use crate::owned::Owned;
use crate::{Fleet, FleetError};
use centinela_actors::clock::Timestamp;
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::store::{
    Delivery, DeliveryStatus, Store, StoreError, WebhookRepo, WebhookTarget,
};
use sqlx::postgres::PgConnection;

const DELIVERIES: &str = "webhook_deliveries";

/// The fleet's webhook deliveries, written fenced by this node's leases;
/// the targets are the node's mirror of the tenants' settings.
#[derive(Clone, Debug)]
pub struct FleetDeliveries {
    fencing: Fencing,
    local: Store,
}

impl FleetDeliveries {
    pub fn new(fleet: &Fleet, leases: Leases, owned: Owned, local: Store) -> Self {
        Self {
            fencing: Fencing::new(fleet, leases, owned),
            local,
        }
    }

    /// Writes `d`; with `only_stored`, only over a row still there. Answers
    /// whether it wrote.
    async fn write(&self, d: &Delivery, only_stored: bool) -> Result<bool, FleetError> {
        let mut tx = self.fencing.pool().begin().await?;
        self.fencing.fence(&mut tx, &d.tenant).await?;
        let done = store(&mut tx, d, only_stored).await?;
        tx.commit().await?;
        Ok(done)
    }

    async fn queue(&self, d: &Delivery, session: &SessionId) -> Result<bool, FleetError> {
        let mut tx = self.fencing.pool().begin().await?;
        self.fencing.fence(&mut tx, &d.tenant).await?;
        let ok: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM sessions s JOIN tenant_settings t
                 ON t.tenant = s.tenant AND t.kind = 'webhook'
             WHERE s.id = $1 AND s.tenant = $2",
        )
        .bind(session.as_str())
        .bind(d.tenant.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if ok.is_none() {
            return Ok(false);
        }
        store(&mut tx, d, false).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn get(&self, id: &str) -> Result<Option<Delivery>, FleetError> {
        let row: Option<String> =
            sqlx::query_scalar("SELECT record::text FROM webhook_deliveries WHERE id = $1")
                .bind(id)
                .fetch_optional(self.fencing.pool())
                .await?;
        row.as_deref()
            .map(|r| json::decode(r, DELIVERIES))
            .transpose()
    }

    async fn of_tenant(
        &self,
        tenant: &TenantId,
        status: Option<DeliveryStatus>,
    ) -> Result<Vec<Delivery>, FleetError> {
        let status = status.map(|s| json::name(s, DELIVERIES)).transpose()?;
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT record::text FROM webhook_deliveries
             WHERE tenant = $1 AND ($2::text IS NULL OR status = $2)
             ORDER BY created_ms DESC, id COLLATE \"C\" DESC",
        )
        .bind(tenant.as_str())
        .bind(status)
        .fetch_all(self.fencing.pool())
        .await?;
        rows.iter().map(|r| json::decode(r, DELIVERIES)).collect()
    }

    async fn pending(&self) -> Result<Vec<Delivery>, FleetError> {
        let held = self.fencing.held_tenants();
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT record::text FROM webhook_deliveries
             WHERE status = 'pending' AND tenant = ANY($1)
             ORDER BY next_ms, id COLLATE \"C\"",
        )
        .bind(&held)
        .fetch_all(self.fencing.pool())
        .await?;
        rows.iter().map(|r| json::decode(r, DELIVERIES)).collect()
    }

    async fn prune(&self, cutoff: Timestamp) -> Result<usize, FleetError> {
        let held = self.fencing.held_tenants();
        if held.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query(
            "DELETE FROM webhook_deliveries
             WHERE status <> 'pending' AND finished_ms < $1 AND tenant = ANY($2)",
        )
        .bind(cutoff.as_millis())
        .bind(&held)
        .execute(self.fencing.pool())
        .await?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }
}

/// Inserts or replaces `d` (with `only_stored`, only replaces); answers
/// whether a row was written.
async fn store(tx: &mut PgConnection, d: &Delivery, only_stored: bool) -> Result<bool, FleetError> {
    let json = json::encode(d, DELIVERIES)?;
    let finished = d.finished_at().map(Timestamp::as_millis);
    let status = json::name(d.status, DELIVERIES)?;
    let done = match only_stored {
        true => {
            sqlx::query(
                "UPDATE webhook_deliveries SET status = $3, next_ms = $4, finished_ms = $5,
                     record = $6::text::jsonb
                 WHERE id = $1 AND tenant = $2",
            )
            .bind(&d.id)
            .bind(d.tenant.as_str())
            .bind(status)
            .bind(d.next_at.as_millis())
            .bind(finished)
            .bind(json)
            .execute(&mut *tx)
            .await?
        }
        false => {
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, tenant, status, next_ms, finished_ms,
                                                 created_ms, record)
                 VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb)
                 ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,
                     next_ms = EXCLUDED.next_ms, finished_ms = EXCLUDED.finished_ms,
                     record = EXCLUDED.record
                 WHERE webhook_deliveries.tenant = EXCLUDED.tenant",
            )
            .bind(&d.id)
            .bind(d.tenant.as_str())
            .bind(status)
            .bind(d.next_at.as_millis())
            .bind(finished)
            .bind(d.created_at.as_millis())
            .bind(json)
            .execute(&mut *tx)
            .await?
        }
    };
    Ok(done.rows_affected() == 1)
}

impl WebhookRepo for FleetDeliveries {
    /// The node's mirror (the fleet's copy is written by
    /// [`crate::FleetSettings`], which the handlers use).
    fn set_target(&self, t: &WebhookTarget) -> Result<bool, StoreError> {
        self.local.set_target(t)
    }

    fn target(&self, tenant: &TenantId) -> Result<Option<WebhookTarget>, StoreError> {
        self.local.target(tenant)
    }

    fn delete_target(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        self.local.delete_target(tenant)
    }

    fn put_delivery(&self, d: &Delivery) -> Result<(), StoreError> {
        block_on(self.write(d, false)).map(|_| ())
    }

    fn queue_delivery(&self, d: &Delivery, session: &SessionId) -> Result<bool, StoreError> {
        block_on(self.queue(d, session))
    }

    fn delivery_and_target(
        &self,
        id: &str,
    ) -> Result<Option<(Delivery, Option<WebhookTarget>)>, StoreError> {
        let Some(d) = block_on(self.get(id))? else {
            return Ok(None);
        };
        let target = self.local.target(&d.tenant)?;
        Ok(Some((d, target)))
    }

    fn update_delivery(&self, d: &Delivery) -> Result<bool, StoreError> {
        block_on(self.write(d, true))
    }

    fn delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        block_on(self.get(id))
    }

    fn deliveries(
        &self,
        tenant: &TenantId,
        status: Option<DeliveryStatus>,
    ) -> Result<Vec<Delivery>, StoreError> {
        block_on(self.of_tenant(tenant, status))
    }

    fn pending(&self) -> Result<Vec<Delivery>, StoreError> {
        block_on(self.pending())
    }

    fn prune_deliveries(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        block_on(self.prune(cutoff))
    }
}

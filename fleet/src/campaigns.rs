//! Campaigns shared by the fleet ([`FleetCampaigns`]): the records on
//! PostgreSQL, so a campaign follows its tenant. Its messages are the
//! fleet's already ([`crate::messages`]): a new owner's runner finds the
//! campaign where the old one left it — the last recipient queued under
//! the campaign's idempotency key, sent or not — and goes on from there,
//! never queueing a recipient twice.
//!
//! Who writes. The tenant's owner, fenced on its lease (the API's calls
//! for a tenant reach its owner; the runner steps only what this node
//! holds: [`CampaignRepo::running_campaigns`] answers the running
//! campaigns of the tenants this node holds, so at most `max_running` run
//! per node). A node that lost the tenant writes nothing
//! ([`StoreError::NotHeld`]).
//!
//! The store trait is synchronous: each call runs its query through
//! [`crate::blocking`] (`block_in_place` on the multi-threaded runtime).

use crate::blocking::block_on;
use crate::fencing::Fencing;
use crate::json;
use crate::lease::Leases;
use crate::owned::Owned;
use crate::{Fleet, FleetError};
use centinela_actors::store::{CampaignRecord, CampaignRepo, StoreError};

const CAMPAIGNS: &str = "campaigns";

/// The fleet's campaign records, written fenced by this node's leases.
#[derive(Clone, Debug)]
pub struct FleetCampaigns {
    fencing: Fencing,
}

impl FleetCampaigns {
    pub fn new(fleet: &Fleet, leases: Leases, owned: Owned) -> Self {
        Self {
            fencing: Fencing::new(fleet, leases, owned),
        }
    }

    async fn put(&self, c: &CampaignRecord) -> Result<(), FleetError> {
        let json = json::encode(c, CAMPAIGNS)?;
        let status = json::name(c.status, CAMPAIGNS)?;
        let mut tx = self.fencing.pool().begin().await?;
        let lease = self.fencing.fence(&mut tx, &c.tenant).await?;
        sqlx::query(
            "INSERT INTO campaigns (id, tenant, status, record, epoch)
             VALUES ($1, $2, $3, $4::text::jsonb, $5)
             ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,
                 record = EXCLUDED.record, epoch = EXCLUDED.epoch
             WHERE campaigns.tenant = EXCLUDED.tenant",
        )
        .bind(&c.id)
        .bind(c.tenant.as_str())
        .bind(status)
        .bind(json)
        .bind(lease.epoch.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<CampaignRecord>, FleetError> {
        let row: Option<String> =
            sqlx::query_scalar("SELECT record::text FROM campaigns WHERE id = $1")
                .bind(id)
                .fetch_optional(self.fencing.pool())
                .await?;
        row.as_deref()
            .map(|r| json::decode(r, CAMPAIGNS))
            .transpose()
    }

    async fn all(&self) -> Result<Vec<CampaignRecord>, FleetError> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT record::text FROM campaigns ORDER BY id COLLATE \"C\"")
                .fetch_all(self.fencing.pool())
                .await?;
        rows.iter().map(|r| json::decode(r, CAMPAIGNS)).collect()
    }

    async fn running(&self) -> Result<Vec<CampaignRecord>, FleetError> {
        let held = self.fencing.held_tenants();
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT record::text FROM campaigns
             WHERE status = 'running' AND tenant = ANY($1) ORDER BY id COLLATE \"C\"",
        )
        .bind(&held)
        .fetch_all(self.fencing.pool())
        .await?;
        rows.iter().map(|r| json::decode(r, CAMPAIGNS)).collect()
    }
}

impl CampaignRepo for FleetCampaigns {
    fn put_campaign(&self, c: &CampaignRecord) -> Result<(), StoreError> {
        block_on(self.put(c))
    }

    fn campaign(&self, id: &str) -> Result<Option<CampaignRecord>, StoreError> {
        block_on(self.get(id))
    }

    fn campaigns(&self) -> Result<Vec<CampaignRecord>, StoreError> {
        block_on(self.all())
    }

    fn running_campaigns(&self) -> Result<Vec<CampaignRecord>, StoreError> {
        block_on(self.running())
    }
}

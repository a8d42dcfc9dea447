//! Campaigns: a recipient list with per-recipient variables and a text
//! template, sent through one session. The record keeps the progress (the
//! next recipient to feed, and counts), written at every step.

use super::{remove_where, Store, StoreError};
use crate::clock::Timestamp;
use crate::ids::{SessionId, TenantId};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const CAMPAIGNS: TableDefinition<&str, &[u8]> = TableDefinition::new("campaigns");
/// id → (): the running campaigns, which the runner reads at every
/// message status change; written with the record.
const RUNNING: TableDefinition<&str, ()> = TableDefinition::new("campaigns_running");

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(CAMPAIGNS)?;
    txn.open_table(RUNNING)?;
    Ok(())
}

fn decode(bytes: &[u8]) -> Result<CampaignRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table: "campaigns",
        why: e.to_string(),
    })
}

/// Fills [`RUNNING`] from the records, for a file written before it
/// existed (run once, at open).
pub(super) fn build_indexes(txn: &WriteTransaction) -> Result<(), StoreError> {
    let campaigns = txn.open_table(CAMPAIGNS)?;
    let mut running = txn.open_table(RUNNING)?;
    for row in campaigns.iter()? {
        let (_, v) = row?;
        let c = decode(v.value())?;
        if c.status == CampaignStatus::Running {
            running.insert(c.id.as_str(), ())?;
        }
    }
    Ok(())
}

/// Whether campaign `id` has ended (completed, cancelled) or is gone:
/// its messages are no longer read by its runner.
pub(super) fn ended(txn: &WriteTransaction, id: &str) -> Result<bool, StoreError> {
    let campaigns = txn.open_table(CAMPAIGNS)?;
    let v = campaigns.get(id)?;
    let Some(v) = v else {
        return Ok(true);
    };
    /// Only the status is read of what may be a long recipient list.
    #[derive(Deserialize)]
    struct Status {
        status: CampaignStatus,
    }
    let s: Status = serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
        table: "campaigns",
        why: e.to_string(),
    })?;
    Ok(s.status.ended())
}

/// Every row of this module's tables, for tests ([`super::rows`]).
#[cfg(test)]
pub(super) fn rows(
    txn: &redb::ReadTransaction,
    out: &mut super::rows::Rows,
) -> Result<(), StoreError> {
    super::rows::table(txn, CAMPAIGNS, out)?;
    super::rows::table(txn, RUNNING, out)?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recipient {
    pub to: String,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Draft,
    Running,
    Paused,
    Cancelled,
    Completed,
}

impl CampaignStatus {
    /// The statuses a campaign has [ended](Self::ended) in.
    pub const ENDED: [CampaignStatus; 2] = [CampaignStatus::Completed, CampaignStatus::Cancelled];

    /// Completed or cancelled: its runner needs none of its messages.
    pub fn ended(self) -> bool {
        Self::ENDED.contains(&self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignRecord {
    pub id: String,
    pub tenant: TenantId,
    pub session: SessionId,
    pub name: String,
    pub template: String,
    pub recipients: Vec<Recipient>,
    pub status: CampaignStatus,
    /// Index of the next recipient to queue.
    pub next: usize,
    pub sent: usize,
    pub failed: usize,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Why it paused itself, while it is paused for that; cleared when it
    /// runs again. Absent in records from before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<CampaignPause>,
}

/// A campaign paused by the server, not by a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CampaignPause {
    /// `risk_high`: its session's ban risk reached `high`.
    pub reason: String,
    /// What raised it, for a person (the risk view's reasons).
    pub detail: String,
    pub at: Timestamp,
}

pub trait CampaignRepo: Send + Sync + 'static {
    fn put_campaign(&self, c: &CampaignRecord) -> Result<(), StoreError>;
    fn campaign(&self, id: &str) -> Result<Option<CampaignRecord>, StoreError>;
    fn campaigns(&self) -> Result<Vec<CampaignRecord>, StoreError>;
    /// The running campaigns only: read from their index, so the cost
    /// does not grow with the campaigns that ended.
    fn running_campaigns(&self) -> Result<Vec<CampaignRecord>, StoreError>;
}

impl CampaignRepo for Store {
    fn put_campaign(&self, c: &CampaignRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(c).map_err(|e| StoreError::Db(e.to_string()))?;
        let txn = self.db().begin_write()?;
        txn.open_table(CAMPAIGNS)?
            .insert(c.id.as_str(), bytes.as_slice())?;
        {
            let mut running = txn.open_table(RUNNING)?;
            if c.status == CampaignStatus::Running {
                running.insert(c.id.as_str(), ())?;
            } else {
                running.remove(c.id.as_str())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn campaign(&self, id: &str) -> Result<Option<CampaignRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(CAMPAIGNS)?;
        let v = table.get(id)?;
        v.map(|v| decode(v.value())).transpose()
    }

    fn running_campaigns(&self) -> Result<Vec<CampaignRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let running = txn.open_table(RUNNING)?;
        let table = txn.open_table(CAMPAIGNS)?;
        let mut out = Vec::new();
        for row in running.iter()? {
            let (id, _) = row?;
            let c = table
                .get(id.value())?
                .map(|v| decode(v.value()))
                .transpose()?;
            out.extend(c);
        }
        Ok(out)
    }

    fn campaigns(&self) -> Result<Vec<CampaignRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(CAMPAIGNS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }
}

/// Removes, within `txn`, the campaigns of `tenant`; returns how many.
pub(super) fn purge(txn: &WriteTransaction, tenant: &TenantId) -> Result<usize, StoreError> {
    let gone = remove_where(txn, CAMPAIGNS, "campaigns", |c: &CampaignRecord| {
        c.tenant == *tenant
    })?;
    let mut running = txn.open_table(RUNNING)?;
    for c in &gone {
        running.remove(c.id.as_str())?;
    }
    Ok(gone.len())
}

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

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(CAMPAIGNS)?;
    Ok(())
}

/// Every row of this module's tables, for tests ([`super::rows`]).
#[cfg(test)]
pub(super) fn rows(
    txn: &redb::ReadTransaction,
    out: &mut super::rows::Rows,
) -> Result<(), StoreError> {
    super::rows::table(txn, CAMPAIGNS, out)?;
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
}

impl CampaignRepo for Store {
    fn put_campaign(&self, c: &CampaignRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(c).map_err(|e| StoreError::Db(e.to_string()))?;
        let txn = self.db().begin_write()?;
        txn.open_table(CAMPAIGNS)?
            .insert(c.id.as_str(), bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    fn campaign(&self, id: &str) -> Result<Option<CampaignRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(CAMPAIGNS)?;
        let v = table.get(id)?;
        v.map(|v| {
            serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                table: "campaigns",
                why: e.to_string(),
            })
        })
        .transpose()
    }

    fn campaigns(&self) -> Result<Vec<CampaignRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(CAMPAIGNS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            out.push(
                serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                    table: "campaigns",
                    why: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }
}

/// Removes, within `txn`, the campaigns of `tenant`; returns how many.
pub(super) fn purge(txn: &WriteTransaction, tenant: &TenantId) -> Result<usize, StoreError> {
    let gone = remove_where(txn, CAMPAIGNS, "campaigns", |c: &CampaignRecord| {
        c.tenant == *tenant
    })?;
    Ok(gone.len())
}

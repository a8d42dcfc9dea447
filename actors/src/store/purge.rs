//! Purging a tenant: one write transaction that removes every row keyed by
//! it, table by table through each module's own `purge` (the tables stay
//! private to their modules). Rows keyed by session (the send queue, the
//! inbox, the contacts, the activity counts) go for every session the tenant had — from its session records
//! and from the sessions its messages name, since the supervisor may have
//! deleted the records already. The admission ledger is not touched: its
//! budgets protect the server's address and phone numbers, not a tenant's
//! data (the hourly budget is server-wide, pairing codes are limited per
//! phone and egress path, and deleting and re-creating a tenant must not
//! lift a ban), and the supervisor keeps it in memory besides. The OTP
//! send log does go with the tenant's other rows: its limits are counted
//! over every tenant's sends, and a deleted tenant's stop counting. Tables with
//! no tenant's rows: `meta`, `settings`, `revoked_tokens` (token ids; the
//! tokens die with their users). `purge_tests.rs` reads every table to
//! prove it. Who calls this, and after what, is `tenants.rs`'s business.

use super::{
    accounts, activity, audit, campaigns, contacts, inbox, messages, otps, sessions, webhooks,
};
use super::{Store, StoreError};
use crate::ids::TenantId;
use std::collections::BTreeSet;

/// What a purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantPurged {
    /// The tenant record itself was there.
    pub existed: bool,
    pub users: usize,
    pub api_keys: usize,
    /// Session records left (the supervisor deletes them first).
    pub sessions: usize,
    pub webhook: bool,
    pub deliveries: usize,
    pub auto_replies: bool,
    pub campaigns: usize,
    pub messages: usize,
    pub incoming: usize,
    /// Peers the tenant's sessions had exchanged messages with.
    pub contacts: usize,
    /// Hours of the tenant's sessions' activity counts.
    pub activity_hours: usize,
    pub audit_entries: usize,
    /// Verification codes, with their sends in the OTP limits' log.
    pub otps: usize,
}

pub(super) fn purge_tenant(store: &Store, tenant: &TenantId) -> Result<TenantPurged, StoreError> {
    let txn = store.db().begin_write()?;
    let (existed, users, api_keys) = accounts::purge(&txn, tenant)?;
    let session_ids = sessions::purge(&txn, tenant)?;
    let mut of_tenant: BTreeSet<String> = session_ids.iter().cloned().collect();
    let (webhook, deliveries, auto_replies) = webhooks::purge(&txn, tenant)?;
    let purged = TenantPurged {
        existed,
        users,
        api_keys,
        sessions: session_ids.len(),
        webhook,
        deliveries,
        auto_replies,
        campaigns: campaigns::purge(&txn, tenant)?,
        incoming: inbox::purge(&txn, tenant, &mut of_tenant)?,
        messages: messages::purge(&txn, tenant, &mut of_tenant)?,
        // Keyed by session only: after the inbox and the outbox have
        // named every session the tenant's messages were on.
        contacts: contacts::purge(&txn, &of_tenant)?,
        activity_hours: activity::purge(&txn, &of_tenant)?,
        audit_entries: audit::purge(&txn, tenant)?,
        otps: otps::purge(&txn, tenant)?,
    };
    txn.commit()?;
    Ok(purged)
}

#[cfg(test)]
#[path = "purge_tests.rs"]
mod tests;

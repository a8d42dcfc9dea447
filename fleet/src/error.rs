//! The fleet crate's one error type.

use crate::lease::Epoch;
use crate::node::NodeId;
use centinela_actors::ids::{SessionId, TenantId};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The database refused or could not be reached.
    #[error("fleet database: {0}")]
    Db(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("fleet database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A write about `tenant` at `epoch` matched nothing: another node owns
    /// the tenant now, or our lease ran out. The caller stops that tenant's
    /// browsers at once and forgets the lease.
    #[error("tenant {tenant} is not ours at epoch {epoch}: fenced")]
    Fenced { tenant: TenantId, epoch: Epoch },
    /// A heartbeat for a node that never registered (or was removed).
    #[error("node {0} is not registered")]
    UnknownNode(NodeId),
    /// A profile snapshot written for a session id that another tenant's
    /// snapshot already holds: never replaced.
    #[error("session {0} belongs to another tenant")]
    ForeignSession(SessionId),
    /// A row this build cannot read (a tenant id or event it does not know).
    #[error("unreadable row in {table}: {why}")]
    Corrupt { table: &'static str, why: String },
}

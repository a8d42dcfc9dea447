//! Fleet mode on PostgreSQL: many Centinela nodes, each tenant owned by
//! exactly one of them, connection-attempt limits counted fleet-wide.
//!
//! This crate owns the fleet's tables and the rules that need the database
//! to be right: registering nodes ([`node`]), ownership leases with fencing
//! ([`lease`]), admission decided in one transaction over the shared
//! ledger ([`admission`]) and the supervisor's seam to it ([`shared`]),
//! the session records every node reads and only the owner writes
//! ([`sessions`]), each tenant's webhook target and auto-reply rules
//! ([`settings`]), the verification codes ([`FleetOtps`]), every session's
//! messages, inbox, contacts and activity ([`messages`]), campaigns
//! ([`campaigns`]) and webhook deliveries ([`deliveries`]), handed out with
//! the node's own store as one [`FleetStore`], the accounts every node shares — tenants, users, API
//! keys, revoked tokens, settings such as the JWT secret ([`accounts`],
//! used by a node as [`NodeAccounts`], changes that may end a credential
//! announced to every node by [`credentials`]), live events relayed
//! between nodes ([`events`]), each session's browser profile packed into one buffer
//! ([`profile`]) and stored sealed under the tenant's fence ([`snapshot`]),
//! so the pairing moves with the tenant, and the membership loop
//! ([`member`]) that keeps a node in the fleet — renewing, claiming
//! orphans, giving tenants up at its deadline or on a drain — and records
//! what the node holds in [`Owned`]. It decides nothing about sessions
//! itself: the admission rules are `centinela-actors`' pure `evaluate`,
//! fed with rows from here, and the membership loop tells a
//! [`TenantHost`] (the supervisor) which tenants to start and stop.
//!
//! Every time that decides something — a lease's end, an attempt's place in
//! a window — comes from the database's clock, so nodes whose clocks
//! disagree still agree on who owns what and what a window holds. The one
//! local clock is the membership loop's deadline, and it only ever makes a
//! node give a tenant up sooner.

pub mod accounts;
pub mod admission;
mod blocking;
pub mod campaigns;
pub mod credentials;
pub mod deliveries;
mod error;
pub mod events;
mod fencing;
mod json;
pub mod lease;
mod listen;
pub mod member;
pub mod messages;
pub mod moves;
pub mod node;
mod node_accounts;
mod otps;
mod owned;
pub mod profile;
pub mod sessions;
pub mod settings;
pub mod shared;
pub mod snapshot;
pub mod store;

pub use accounts::PgAccounts;
pub use admission::{FleetAdmission, TenantEvent, Verdict};
pub use campaigns::FleetCampaigns;
pub use deliveries::FleetDeliveries;
pub use error::FleetError;
pub use lease::{Epoch, Fence, Lease, Leases};
pub use member::{
    Claimed, Claimer, Member, MemberConfig, MemberHandle, MemberStatus, Release, TenantHost,
};
pub use messages::{FleetMessages, RowsImported, SessionRows};
pub use moves::{MoveAsked, MoveRefused};
pub use node::{HeldTenant, NodeId, NodeRow, NodeSpec};
pub use node_accounts::NodeAccounts;
pub use otps::FleetOtps;
pub use owned::Owned;
pub use profile::{pack, unpack, Packed, ProfileError};
pub use sessions::FleetSessions;
pub use settings::{FleetSettings, TenantSettings};
pub use shared::PgSharedAdmission;
pub use snapshot::{Snapshot, Snapshots};
pub use store::FleetStore;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// The embedded schema (`fleet/migrations`), applied at connect.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a query waits for a pooled connection before it fails.
pub const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long the database lets one of this node's transactions sit idle
/// before it ends it (`idle_in_transaction_session_timeout`): a node
/// frozen (SIGSTOP, a hung host) in the middle of a transaction would
/// otherwise hold its row and advisory locks — an egress's admission lock,
/// a tenant's settings lock — and stall every other node behind them. Our
/// transactions wait on nothing between statements but a local store
/// write, far below this.
pub const IDLE_TRANSACTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection pool to the fleet's database, schema up to date.
#[derive(Debug, Clone)]
pub struct Fleet {
    pool: PgPool,
}

impl Fleet {
    /// Connects with at most `max_connections` and runs the migrations
    /// (sqlx takes an advisory lock, so nodes starting together migrate
    /// once). Fails on a bad URL, an unreachable server or a schema newer
    /// than this build knows. A transaction left idle is ended by the
    /// server after [`IDLE_TRANSACTION_TIMEOUT`]. A connection is waited for at most
    /// [`ACQUIRE_TIMEOUT`]: with the database down, a decision fails in
    /// seconds (and the node says why) instead of sqlx's default 30 s.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, FleetError> {
        let options: PgConnectOptions = url.parse()?;
        let options = options.options([(
            "idle_in_transaction_session_timeout",
            format!("{}ms", IDLE_TRANSACTION_TIMEOUT.as_millis()),
        )]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// The pool, for a caller's own fenced writes ([`Leases::fence`]).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

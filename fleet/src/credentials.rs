//! Telling every node that a credential may have stopped working: a
//! logout, a password change, a user, key or tenant deleted through one
//! node is a `NOTIFY` on [`CHANNEL`] ([`nudge`]); every node `LISTEN`s
//! ([`follow`]) and makes its open WebSockets check their credential again,
//! as the node that made the change does for its own. New requests need no
//! nudge: each one reads the fleet's accounts.
//!
//! A notification carries nothing (the check reads the accounts), and one
//! lost while a node was not listening is made up for: after every
//! reconnection the node checks once. While the database is down nothing
//! is checked (a check would fail and close every socket for an outage,
//! not a revocation).

use crate::listen::listen;
use crate::{Fleet, FleetError};
use sqlx::postgres::PgPool;

/// The channel credential changes are announced on.
pub const CHANNEL: &str = "centinela_credentials";

/// Announces a credential change to every node (this one included).
pub async fn nudge(pool: &PgPool) -> Result<(), FleetError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(pool)
        .await?;
    Ok(())
}

/// Listens on [`CHANNEL`] until aborted, calling `on_change` for every
/// announcement and once after each reconnection.
pub fn follow(fleet: &Fleet, on_change: impl Fn() + Send + 'static) -> tokio::task::JoinHandle<()> {
    let mut heard = listen(fleet.pool().clone(), CHANNEL, "credential changes");
    tokio::spawn(async move {
        // An announcement, or listening again after changes may have been
        // made while this node was not listening: check either way.
        while heard.recv().await.is_some() {
            on_change();
        }
    })
}

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

use crate::{Fleet, FleetError};
use sqlx::postgres::{PgListener, PgPool};
use std::time::Duration;

/// The channel credential changes are announced on.
pub const CHANNEL: &str = "centinela_credentials";

/// How long the listener waits before it connects again after a failure.
const RETRY: Duration = Duration::from_secs(1);

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
    let pool = fleet.pool().clone();
    tokio::spawn(async move {
        let (mut first, mut down) = (true, false);
        loop {
            match listen(&pool).await {
                Ok(mut listener) => {
                    if !first {
                        // Changes made while this node was not listening.
                        on_change();
                    }
                    (first, down) = (false, false);
                    // Until the connection is lost (`None`) or fails.
                    while let Ok(Some(_)) = listener.try_recv().await {
                        on_change();
                    }
                    tracing::warn!(
                        "credential changes: lost the fleet's database; listening again"
                    );
                }
                Err(e) if !down => {
                    down = true;
                    tracing::warn!(error = %e, "credential changes: cannot listen on the fleet's database; retrying");
                }
                Err(_) => {}
            }
            tokio::time::sleep(RETRY).await;
        }
    })
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

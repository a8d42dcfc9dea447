//! One `LISTEN` loop for every channel a node follows (credential changes,
//! relayed events): it connects, listens, hands each notification on, says
//! when it listens again after losing the database (what was announced
//! meanwhile is lost), retries every [`RETRY`] while the database is down
//! (said once per outage), and ends when its receiver is dropped.

use sqlx::postgres::{PgListener, PgPool};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long the listener waits before it connects again after a failure.
const RETRY: Duration = Duration::from_secs(1);

/// What a listener heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Heard {
    /// Listening again after the connection was lost (not after the
    /// first connection): notifications sent meanwhile were missed.
    Again,
    /// A notification's payload.
    Payload(String),
}

/// Listens on `channel` in a task of its own; `what` names it in the log.
pub(crate) fn listen(
    pool: PgPool,
    channel: &'static str,
    what: &'static str,
) -> mpsc::UnboundedReceiver<Heard> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut first, mut down) = (true, false);
        loop {
            match connect(&pool, channel).await {
                Ok(mut listener) => {
                    if !first && tx.send(Heard::Again).is_err() {
                        return;
                    }
                    (first, down) = (false, false);
                    // Until the connection is lost (`None`) or fails, or
                    // nobody hears any more.
                    loop {
                        let heard = tokio::select! {
                            () = tx.closed() => return,
                            heard = listener.try_recv() => heard,
                        };
                        let Ok(Some(n)) = heard else { break };
                        if tx.send(Heard::Payload(n.payload().to_owned())).is_err() {
                            return;
                        }
                    }
                    tracing::warn!("{what}: lost the fleet's database; listening again");
                }
                Err(e) if !down => {
                    down = true;
                    tracing::warn!(error = %e, "{what}: cannot listen on the fleet's database; retrying");
                }
                Err(_) => {}
            }
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    });
    rx
}

async fn connect(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

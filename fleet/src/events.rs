//! Live events across the fleet: every node's `/ws` shows the events of
//! every node, as a single node's shows its own. Each node publishes the
//! events its hub numbers (transitions, admission decisions, messages,
//! acks, campaign progress; not its log lines, which stay the node's) with
//! `NOTIFY` on [`CHANNEL`] ([`publish`]), and every node `LISTEN`s
//! ([`follow`]) and hands the other nodes' events to its own WebSocket
//! clients.
//!
//! A notification's payload is at most 8000 bytes: an event larger than
//! [`INLINE`] (a long incoming message) is written to `relayed_events`
//! and its notification names the row, which the listeners read. Rows go
//! after a minute. Events one node publishes arrive in the order it
//! published them (one connection, one statement per batch). What a node
//! publishes while the database is down is not relayed (its own clients
//! still see it, and the audit log of the node that numbered it has it);
//! what arrives while a node is not listening is not replayed.

use crate::listen::{listen, Heard};
use crate::{Fleet, FleetError};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPool;

/// The channel events are relayed on.
pub const CHANNEL: &str = "centinela_events";

/// The largest relayed event sent inside its notification.
pub const INLINE: usize = 7000;

/// One event as the fleet relays it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relayed {
    /// The node whose hub numbered it.
    pub node: String,
    /// The tenant it is about (who may see it).
    pub tenant: Option<String>,
    /// The event as that node's clients received it (JSON).
    pub json: String,
}

/// What a notification carries: the event, or the row that keeps it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Payload {
    Kept { kept: i64 },
    Inline(Relayed),
}

/// Publishes `events` (one node's, in order) to every node. Large ones
/// are kept in `relayed_events` first; rows older than a minute that this
/// node kept go.
pub async fn publish(pool: &PgPool, events: &[Relayed]) -> Result<(), FleetError> {
    let mut payloads = Vec::with_capacity(events.len());
    let mut kept_any = false;
    for e in events {
        // `Payload::Inline` is untagged: the event's own JSON.
        let body = serde_json::to_string(e).map_err(|err| FleetError::Corrupt {
            table: "relayed_events",
            why: err.to_string(),
        })?;
        if body.len() <= INLINE {
            payloads.push(body);
            continue;
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO relayed_events (node, body) VALUES ($1, $2) RETURNING id",
        )
        .bind(&e.node)
        .bind(body)
        .fetch_one(pool)
        .await?;
        kept_any = true;
        payloads.push(
            serde_json::to_string(&Payload::Kept { kept: id }).map_err(|err| {
                FleetError::Corrupt {
                    table: "relayed_events",
                    why: err.to_string(),
                }
            })?,
        );
    }
    if payloads.is_empty() {
        return Ok(());
    }
    // One statement: its notifications are delivered in this order.
    sqlx::query(
        "SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n",
    )
    .bind(CHANNEL)
    .bind(&payloads)
    .execute(pool)
    .await?;
    if kept_any {
        if let Some(e) = events.first() {
            sqlx::query(
                "DELETE FROM relayed_events WHERE node = $1 AND at < now() - interval '1 minute'",
            )
            .bind(&e.node)
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

/// Listens on [`CHANNEL`] until aborted, calling `on_event` for every event
/// another node than `me` published.
pub fn follow(
    fleet: &Fleet,
    me: String,
    on_event: impl Fn(Relayed) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let pool = fleet.pool().clone();
    let mut heard = listen(pool.clone(), CHANNEL, "relayed events");
    tokio::spawn(async move {
        while let Some(heard) = heard.recv().await {
            let Heard::Payload(payload) = heard else {
                continue;
            };
            let event = match serde_json::from_str::<Payload>(&payload) {
                Ok(Payload::Inline(e)) => Some(e),
                Ok(Payload::Kept { kept }) => kept_event(&pool, kept).await,
                Err(e) => {
                    tracing::warn!(error = %e, "relayed event: not one this build reads");
                    None
                }
            };
            if let Some(e) = event.filter(|e| e.node != me) {
                on_event(e);
            }
        }
    })
}

async fn kept_event(pool: &PgPool, id: i64) -> Option<Relayed> {
    let body: Option<String> = sqlx::query_scalar("SELECT body FROM relayed_events WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .ok()
        .flatten();
    body.and_then(|b| serde_json::from_str(&b).ok())
}

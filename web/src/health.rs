//! `GET /health` (cheap liveness, no auth, no actor round-trip),
//! `GET /health/details` (admins: seed 001 §5.1) and `GET /metrics`.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::openapi::{Access, Doc, Routes};
use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Json;
use centinela_actors::clock::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use utoipa::ToSchema;

pub fn routes() -> Routes {
    Routes::new()
        .route(
            "/health",
            get(health),
            vec![Doc::new(
                "GET",
                "health",
                "Liveness: cheap, no auth",
                Access::Public,
                &[(200, "healthy")],
            )
            .reply::<Health>()],
        )
        .route(
            "/health/details",
            get(details),
            vec![Doc::new(
                "GET",
                "health",
                "Sessions by state, browsers, memory, queues, error rate, latencies",
                Access::Admin,
                &[
                    (200, "details"),
                    (401, "no credentials"),
                    (403, "not an admin"),
                ],
            )
            .reply::<HealthDetails>()],
        )
        .route(
            "/metrics",
            get(metrics),
            vec![Doc::new(
                "GET",
                "health",
                "Prometheus metrics (text format)",
                Access::Public,
                &[(200, "metrics")],
            )
            .content("text/plain")],
        )
}

/// Alive.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `healthy`.
    pub status: &'static str,
    pub timestamp: Timestamp,
}

/// Seed 001 §5.1's health details.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthDetails {
    /// `healthy`.
    pub status: &'static str,
    pub timestamp: Timestamp,
    pub sessions: SessionCounts,
    /// Sessions with a browser (every state but `DISCONNECTED`).
    pub browsers_alive: u64,
    pub memory: Memory,
    pub queues: Queues,
    pub http: HttpStats,
    /// The WhatsApp Web versions the browsers have loaded.
    pub whatsapp_web_versions: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionCounts {
    /// By state name (`READY`, `QR`, ...).
    #[schema(value_type = BTreeMap<String, u64>)]
    pub by_state: BTreeMap<&'static str, u64>,
    pub total: u64,
    /// Sessions being restored after a local fault, by breaker state.
    #[schema(value_type = BTreeMap<String, u64>)]
    pub restoring_by_breaker: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Memory {
    /// This process's resident memory (Linux), without the browsers.
    pub process_rss_bytes: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Queues {
    /// Connection attempts waiting for their turn.
    pub admission: usize,
    pub websocket_clients: u64,
    pub log_events_dropped: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HttpStats {
    pub requests: u64,
    pub error_rate: f64,
    pub p50_seconds: f64,
    pub p99_seconds: f64,
}

async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "healthy",
        timestamp: state.clock.now(),
    })
}

/// Sessions by state, the admission queue's length, and the circuit
/// breakers of sessions being restored after a local fault, by state.
async fn by_state(state: &AppState) -> Result<Counts, ApiError> {
    let all = state.supervisor.describe_all(None).await?;
    let queue = state.supervisor.queue().await?;
    let mut counts = BTreeMap::new();
    let mut breakers = BTreeMap::new();
    for d in &all {
        *counts.entry(d.view.state.name()).or_default() += 1;
        if let Some(r) = &d.recovery {
            *breakers.entry(r.breaker.as_str()).or_default() += 1;
        }
    }
    Ok(Counts {
        sessions: counts,
        queue: queue.len(),
        breakers,
    })
}

struct Counts {
    sessions: BTreeMap<&'static str, u64>,
    queue: usize,
    breakers: BTreeMap<&'static str, u64>,
}

/// Resident memory of this process, from /proc (Linux).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

async fn details(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<HealthDetails>, ApiError> {
    caller.require_admin()?;
    let Counts {
        sessions: counts,
        queue,
        breakers,
    } = by_state(&state).await?;
    let live: u64 = counts
        .iter()
        .filter(|(s, _)| **s != "DISCONNECTED")
        .map(|(_, n)| n)
        .sum();
    let (requests, error_rate, p50, p99) = state.metrics.summary();
    Ok(Json(HealthDetails {
        status: "healthy",
        timestamp: state.clock.now(),
        sessions: SessionCounts {
            total: counts.values().sum(),
            by_state: counts,
            restoring_by_breaker: breakers,
        },
        browsers_alive: live,
        memory: Memory {
            process_rss_bytes: rss_bytes(),
        },
        queues: Queues {
            admission: queue,
            websocket_clients: state.hub.stats.clients.load(Ordering::Relaxed),
            log_events_dropped: crate::logstream::dropped(),
        },
        http: HttpStats {
            requests,
            error_rate,
            p50_seconds: p50,
            p99_seconds: p99,
        },
        whatsapp_web_versions: centinela_actors::engine::stats::versions(),
    }))
}

async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let c = by_state(&state).await?;
    let mut body = state.metrics.render(
        &c.sessions,
        &c.breakers,
        state.hub.stats.clients.load(Ordering::Relaxed),
        c.queue,
        &state.risk.levels(),
    );
    let unknown = state.cloud.as_ref().map_or(0, |c| c.unknown_numbers());
    if let Some(fwd) = &state.forward {
        let n = fwd.forwarded.load(Ordering::Relaxed);
        body.push_str(&format!("# HELP centinela_fleet_forwarded_total Requests this node sent on to the node hosting their tenant.\n# TYPE centinela_fleet_forwarded_total counter\ncentinela_fleet_forwarded_total {n}\n"));
    }
    body.push_str(&format!("# HELP centinela_meta_webhooks_unknown_number_total Meta webhook deliveries for a number no running cloud session has (answered 200).\n# TYPE centinela_meta_webhooks_unknown_number_total counter\ncentinela_meta_webhooks_unknown_number_total {unknown}\n"));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}

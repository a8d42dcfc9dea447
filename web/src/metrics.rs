//! Prometheus metrics (`GET /metrics`, text format) and the numbers behind
//! `GET /health/details`: HTTP request counts and latency histograms per
//! route (recorded by a middleware), session transitions and admission
//! decisions, verification codes and memory restarts (counted from the bus), WebSocket
//! clients, sessions by state.

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use centinela_actors::bus::{Bus, BusEvent};
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::messaging::risk::RiskLevel;
use centinela_actors::store::MessageStatus;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

/// Upper bounds of the latency buckets, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    transitions: BTreeMap<String, u64>,
    admissions: BTreeMap<(String, String), u64>,
    /// Risk level changes by the level reached.
    risk_changes: BTreeMap<&'static str, u64>,
    /// Messages that had to wait for the new-contact budget.
    deferred: u64,
    /// Verification codes: (event, reason) → count.
    otp: BTreeMap<(&'static str, &'static str), u64>,
    /// Browsers restarted by the memory guard.
    memory_restarts: u64,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut g = self.lock();
        *g.requests
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        let h = g.latency.entry(route.to_owned()).or_default();
        h.count += 1;
        h.sum += seconds;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
    }

    /// Counts bus events until the bus closes.
    pub fn follow(self: &std::sync::Arc<Self>, bus: &Bus) {
        let mut rx = bus.subscribe();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(BusEvent::Transition(t)) => {
                        *me.lock()
                            .transitions
                            .entry(t.to.name().to_owned())
                            .or_default() += 1
                    }
                    Ok(BusEvent::Admission(a)) => {
                        let reason = a.decision.reason().unwrap_or("").to_owned();
                        *me.lock()
                            .admissions
                            .entry((a.decision.name().to_owned(), reason))
                            .or_default() += 1;
                    }
                    Ok(BusEvent::Risk(r)) => {
                        *me.lock().risk_changes.entry(r.level).or_default() += 1
                    }
                    Ok(BusEvent::MessageStatus(m)) if m.status == MessageStatus::Deferred => {
                        me.lock().deferred += 1
                    }
                    Ok(BusEvent::MemoryRestart(_)) => me.lock().memory_restarts += 1,
                    Ok(BusEvent::Otp(o)) => {
                        *me.lock()
                            .otp
                            .entry((o.kind.name(), o.reason.unwrap_or("")))
                            .or_default() += 1;
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// Share of 5xx responses and p50/p99 latency over all routes.
    pub fn summary(&self) -> (u64, f64, f64, f64) {
        let g = self.lock();
        let total: u64 = g.requests.values().sum();
        let errors: u64 = g
            .requests
            .iter()
            .filter(|((_, _, s), _)| *s >= 500)
            .map(|(_, n)| n)
            .sum();
        let mut all = Histogram::default();
        for h in g.latency.values() {
            all.count += h.count;
            for i in 0..BUCKETS.len() {
                all.counts[i] += h.counts[i];
            }
        }
        let quantile = |q: f64| {
            let target = (all.count as f64 * q).ceil() as u64;
            BUCKETS
                .iter()
                .zip(all.counts)
                .find(|(_, c)| *c >= target.max(1))
                .map_or(f64::INFINITY, |(b, _)| *b)
        };
        let rate = if total == 0 {
            0.0
        } else {
            errors as f64 / total as f64
        };
        (total, rate, quantile(0.5), quantile(0.99))
    }

    /// The Prometheus text exposition, with the gauges passed in.
    pub fn render(
        &self,
        sessions_by_state: &BTreeMap<&'static str, u64>,
        breakers: &BTreeMap<&'static str, u64>,
        ws_clients: u64,
        queue_len: usize,
        risks: &[(TenantId, SessionId, RiskLevel)],
    ) -> String {
        let g = self.lock();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP centinela_sessions Sessions by state.\n# TYPE centinela_sessions gauge"
        );
        for state in ["DISCONNECTED", "CONNECTING", "QR", "AUTHENTICATED", "READY"] {
            let n = sessions_by_state.get(state).copied().unwrap_or(0);
            let _ = writeln!(out, "centinela_sessions{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP centinela_session_breakers Sessions being restored after a local fault, by circuit-breaker state.\n# TYPE centinela_session_breakers gauge");
        for state in ["closed", "open", "half_open"] {
            let n = breakers.get(state).copied().unwrap_or(0);
            let _ = writeln!(out, "centinela_session_breakers{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP centinela_transitions_total Session transitions by target state.\n# TYPE centinela_transitions_total counter");
        for (to, n) in &g.transitions {
            let _ = writeln!(out, "centinela_transitions_total{{to=\"{to}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP centinela_admissions_total Admission decisions by outcome and reason.\n# TYPE centinela_admissions_total counter");
        for ((decision, reason), n) in &g.admissions {
            let _ = writeln!(
                out,
                "centinela_admissions_total{{decision=\"{decision}\",reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP centinela_otp_events_total Verification codes sent, verified and failed (by reason).\n# TYPE centinela_otp_events_total counter");
        for event in ["otp.sent", "otp.verified"] {
            let n = g.otp.get(&(event, "")).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "centinela_otp_events_total{{event=\"{event}\",reason=\"\"}} {n}"
            );
        }
        for ((event, reason), n) in g.otp.iter().filter(|((e, _), _)| *e == "otp.failed") {
            let _ = writeln!(
                out,
                "centinela_otp_events_total{{event=\"{event}\",reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP centinela_admission_queue Connection attempts waiting in the queue.\n# TYPE centinela_admission_queue gauge\ncentinela_admission_queue {queue_len}");
        let page = centinela_actors::engine::stats::counters();
        let _ = writeln!(out, "# HELP centinela_page_reports_dropped_total Page reports dropped as oversized, malformed or out of bounds.\n# TYPE centinela_page_reports_dropped_total counter\ncentinela_page_reports_dropped_total {}", page.dropped_reports);
        let _ = writeln!(out, "# HELP centinela_messages_skipped_total New messages not reported as 1:1 texts, by kind.\n# TYPE centinela_messages_skipped_total counter");
        for (kind, n) in [
            ("group", page.skipped_group),
            ("status", page.skipped_status),
            ("history", page.skipped_history),
            ("other", page.skipped_other),
        ] {
            let _ = writeln!(
                out,
                "centinela_messages_skipped_total{{kind=\"{kind}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP centinela_session_risk Ban-risk level of each session assessed since the start: 0 low, 1 elevated, 2 high.\n# TYPE centinela_session_risk gauge");
        for (tenant, session, level) in risks {
            let _ = writeln!(
                out,
                "centinela_session_risk{{tenant=\"{tenant}\",session=\"{session}\"}} {}",
                level.rank()
            );
        }
        let _ = writeln!(out, "# HELP centinela_sessions_by_risk Sessions assessed since the start, by ban-risk level.\n# TYPE centinela_sessions_by_risk gauge");
        for level in [RiskLevel::Low, RiskLevel::Elevated, RiskLevel::High] {
            let n = risks.iter().filter(|r| r.2 == level).count();
            let _ = writeln!(
                out,
                "centinela_sessions_by_risk{{level=\"{}\"}} {n}",
                level.as_str()
            );
        }
        let _ = writeln!(out, "# HELP centinela_risk_changes_total Ban-risk level changes by the level reached.\n# TYPE centinela_risk_changes_total counter");
        for (level, n) in &g.risk_changes {
            let _ = writeln!(out, "centinela_risk_changes_total{{level=\"{level}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP centinela_messages_deferred_total Messages that had to wait for the new-contact budget.\n# TYPE centinela_messages_deferred_total counter\ncentinela_messages_deferred_total {}", g.deferred);
        let _ = writeln!(out, "# HELP centinela_memory_restarts_total Session browsers restarted by the memory guard (engine.max_session_memory).\n# TYPE centinela_memory_restarts_total counter\ncentinela_memory_restarts_total {}", g.memory_restarts);
        let _ = writeln!(out, "# HELP centinela_websocket_clients Connected WebSocket clients.\n# TYPE centinela_websocket_clients gauge\ncentinela_websocket_clients {ws_clients}");
        let _ = writeln!(out, "# HELP centinela_http_requests_total HTTP requests by method, route and status.\n# TYPE centinela_http_requests_total counter");
        for ((method, route, status), n) in &g.requests {
            let _ = writeln!(out, "centinela_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP centinela_http_request_duration_seconds HTTP latency by route.\n# TYPE centinela_http_request_duration_seconds histogram");
        for (route, h) in &g.latency {
            for (bound, c) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(out, "centinela_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {c}");
            }
            let _ = writeln!(out, "centinela_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(
                out,
                "centinela_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "centinela_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        out
    }
}

/// The method as a label: one of HTTP's own, or `OTHER` (anyone can send
/// any token as a method; each would be a series of its own forever).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN
        .iter()
        .find(|m| *m == method)
        .map_or("OTHER", |m| m.as_str())
}

/// Middleware: times every request and counts it under its route template.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = method_label(req.method()).to_owned();
    let start = Instant::now();
    let res = next.run(req).await;
    state.metrics.record_request(
        &method,
        &route,
        res.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    res
}

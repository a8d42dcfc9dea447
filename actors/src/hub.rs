//! The event hub: one task that takes every bus event (transitions,
//! admission decisions, messages, acks) and every supervisor log event (from
//! a tracing layer: the web crate's `logstream`), writes them to the audit log
//! in batches (one durable commit per batch), and fans them out, numbered
//! with their audit sequence, to WebSocket clients through a broadcast
//! channel. A slow client lags and is told to resync; it never slows the
//! hub, and the hub never slows an actor (the bus and the log channel are
//! non-blocking for their senders).

use crate::bus::{Bus, BusEvent};
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::{AuditEntry, AuditRepo};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot};

/// One event as clients receive it: pre-serialized once for every client.
#[derive(Debug)]
pub struct HubEvent {
    pub seq: u64,
    pub tenant: Option<TenantId>,
    /// Set for supervisor log lines (admins only).
    pub log_level: Option<tracing::Level>,
    pub json: String,
    /// Fleet mode: the node that numbered it, when that is another node
    /// (its `seq` is 0 here: the event is in that node's audit log).
    pub relayed_from: Option<String>,
}

/// A supervisor log event captured by the tracing layer.
#[derive(Debug, Clone)]
pub struct LogEvent {
    pub level: tracing::Level,
    pub target: String,
    pub message: String,
    pub fields: serde_json::Map<String, Value>,
    pub tenant: Option<TenantId>,
    pub at: Timestamp,
}

#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<HubEvent>>,
    flush: mpsc::Sender<oneshot::Sender<()>>,
    pub stats: Arc<HubStats>,
}

#[derive(Default, Debug)]
pub struct HubStats {
    pub clients: AtomicU64,
    pub delivered_batches: AtomicU64,
    pub persist_errors: AtomicU64,
}

/// Most events one commit carries.
const BATCH: usize = 512;
/// The longest an audit entry waits to be made durable (a crash may lose
/// at most this much of the log; never ledger, session or message data).
const DURABLE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Hub {
    /// Starts the hub task. `logs` is the receiving end of the tracing layer.
    /// The task ends when every sender of the bus is gone: await its handle
    /// to know the audit store is no longer in use.
    pub fn start(
        bus: &Bus,
        logs: mpsc::Receiver<LogEvent>,
        audit: Arc<dyn AuditRepo>,
        capacity: usize,
    ) -> (Hub, tokio::task::JoinHandle<()>) {
        let (tx, _) = broadcast::channel(capacity.max(16));
        let stats = Arc::new(HubStats::default());
        let (flush, flushes) = mpsc::channel(16);
        let task = tokio::spawn(run(
            Inputs {
                bus: bus.subscribe(),
                logs,
                flushes,
            },
            audit,
            tx.clone(),
            stats.clone(),
        ));
        (Hub { tx, flush, stats }, task)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<HubEvent>> {
        self.tx.subscribe()
    }

    /// Fleet mode: hands another node's event to this node's clients. It
    /// is not written to this node's audit log (it is in `node`'s) and
    /// reaches no webhook here. Its `seq`, that node's, becomes
    /// `origin_seq` beside `node`, so a client's `seq` stays this node's
    /// (what `GET /api/v1/logs?since=` takes). Answers false when `json`
    /// is not an event object.
    pub fn relay(&self, node: &str, tenant: Option<TenantId>, json: &str) -> bool {
        let Ok(Value::Object(mut body)) = serde_json::from_str::<Value>(json) else {
            return false;
        };
        if let Some(seq) = body.remove("seq") {
            body.insert("origin_seq".into(), seq);
        }
        body.insert("node".into(), json!(node));
        let _ = self.tx.send(Arc::new(HubEvent {
            seq: 0,
            tenant,
            log_level: None,
            json: Value::Object(body).to_string(),
            relayed_from: Some(node.to_owned()),
        }));
        true
    }

    /// Waits until every bus event published and every log line sent
    /// before the call is in the audit log. A tenant purge runs after it,
    /// so no entry of the tenant's last moments lands behind the purge.
    /// Returns at once when the hub has stopped.
    pub async fn flush(&self) {
        let (done, rx) = oneshot::channel();
        if self.flush.send(done).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// What the hub task reads.
struct Inputs {
    bus: broadcast::Receiver<BusEvent>,
    logs: mpsc::Receiver<LogEvent>,
    flushes: mpsc::Receiver<oneshot::Sender<()>>,
}

enum Incoming {
    Bus(BusEvent),
    Log(LogEvent),
    Lagged(u64),
}

async fn run(
    mut input: Inputs,
    audit: Arc<dyn AuditRepo>,
    tx: broadcast::Sender<Arc<HubEvent>>,
    stats: Arc<HubStats>,
) {
    let mut logs_open = true;
    let mut flushes_open = true;
    let mut last_durable = std::time::Instant::now();
    loop {
        let first = tokio::select! {
            ev = input.bus.recv() => match ev {
                Ok(e) => Incoming::Bus(e),
                Err(broadcast::error::RecvError::Lagged(n)) => Incoming::Lagged(n),
                Err(broadcast::error::RecvError::Closed) => {
                    // Make everything written so far durable before ending.
                    let repo = audit.clone();
                    let _ = tokio::task::spawn_blocking(move || repo.audit_batch(&[], true)).await;
                    return;
                }
            },
            ev = input.logs.recv(), if logs_open => match ev {
                Some(e) => Incoming::Log(e),
                None => { logs_open = false; continue; }
            },
            req = input.flushes.recv(), if flushes_open => {
                let Some(done) = req else {
                    flushes_open = false;
                    continue;
                };
                // Everything sent before the request is waiting already:
                // that much is written (not what keeps arriving after).
                let mut waiting = input.bus.len() + input.logs.len();
                while waiting > 0 {
                    let batch = fill(Vec::new(), &mut input);
                    if batch.is_empty() {
                        break;
                    }
                    waiting = waiting.saturating_sub(batch.len());
                    deliver(batch, &audit, &tx, &stats, false).await;
                }
                let _ = done.send(());
                continue;
            },
        };
        let batch = fill(vec![first], &mut input);
        // Audit entries are made durable at least every second; in between
        // they ride along without an fsync, so delivery is not held up by one.
        let durable = last_durable.elapsed() >= DURABLE_EVERY;
        if durable {
            last_durable = std::time::Instant::now();
        }
        deliver(batch, &audit, &tx, &stats, durable).await;
    }
}

/// Adds what is waiting on the bus, then on the log channel, up to [`BATCH`].
fn fill(mut batch: Vec<Incoming>, input: &mut Inputs) -> Vec<Incoming> {
    while batch.len() < BATCH {
        match input.bus.try_recv() {
            Ok(e) => batch.push(Incoming::Bus(e)),
            Err(broadcast::error::TryRecvError::Lagged(n)) => batch.push(Incoming::Lagged(n)),
            Err(_) => break,
        }
    }
    while batch.len() < BATCH {
        match input.logs.try_recv() {
            Ok(e) => batch.push(Incoming::Log(e)),
            Err(_) => break,
        }
    }
    batch
}

/// Persists a batch in one commit, then broadcasts it with its numbers.
async fn deliver(
    batch: Vec<Incoming>,
    audit: &Arc<dyn AuditRepo>,
    tx: &broadcast::Sender<Arc<HubEvent>>,
    stats: &HubStats,
    durable: bool,
) {
    let mut entries = Vec::with_capacity(batch.len());
    let mut shaped = Vec::with_capacity(batch.len());
    for item in batch {
        let (entry, tenant, level, body) = match item {
            Incoming::Bus(e) => shape_bus(e),
            Incoming::Log(e) => shape_log(e),
            Incoming::Lagged(n) => {
                tracing::warn!(missed = n, "event hub lagged behind the bus");
                continue;
            }
        };
        entries.push(entry);
        shaped.push((tenant, level, body));
    }
    if entries.is_empty() {
        return;
    }
    let repo = audit.clone();
    let seqs = match tokio::task::spawn_blocking(move || repo.audit_batch(&entries, durable)).await
    {
        Ok(Ok(seqs)) => seqs,
        _ => {
            stats.persist_errors.fetch_add(1, Ordering::Relaxed);
            vec![0; shaped.len()]
        }
    };
    for (seq, (tenant, log_level, mut body)) in seqs.into_iter().zip(shaped) {
        body["seq"] = json!(seq);
        let _ = tx.send(Arc::new(HubEvent {
            seq,
            tenant,
            log_level,
            json: body.to_string(),
            relayed_from: None,
        }));
    }
    stats.delivered_batches.fetch_add(1, Ordering::Relaxed);
}

type Shaped = (AuditEntry, Option<TenantId>, Option<tracing::Level>, Value);

fn shape_bus(e: BusEvent) -> Shaped {
    let tenant = e.tenant().clone();
    let (action, at, body) = match &e {
        BusEvent::Transition(t) => (
            "session.transition",
            t.at,
            json!({"type": "transition", "tenant_id": t.tenant, "session_id": t.session,
                   "from": t.from, "to": t.to, "reason": t.reason, "at": t.at}),
        ),
        BusEvent::Admission(a) => ("session.admission", a.at, admission_json(a)),
        BusEvent::MessageIn(m) => (
            "message.in",
            m.at,
            json!({"type": "message_in", "tenant_id": m.tenant, "session_id": m.session,
                   "id": m.id, "from": m.from, "text": m.text, "at": m.at}),
        ),
        BusEvent::Ack(a) => (
            "message.ack",
            a.at,
            json!({"type": "ack", "tenant_id": a.tenant, "session_id": a.session,
                   "message_id": a.message_id, "ack": a.ack, "at": a.at}),
        ),
        BusEvent::Campaign(c) => (
            "campaign.progress",
            c.at,
            json!({"type": "campaign", "tenant_id": c.tenant, "session_id": c.session, "campaign_id": c.campaign,
                   "status": c.status, "total": c.total, "queued": c.queued, "sent": c.sent, "failed": c.failed, "at": c.at}),
        ),
        BusEvent::MessageStatus(m) => (
            "message.status",
            m.at,
            json!({"type": "message_status", "tenant_id": m.tenant, "session_id": m.session,
                   "message_id": m.message_id, "status": m.status, "at": m.at}),
        ),
        BusEvent::PairingCode(p) => (
            "session.pairing_code",
            p.at,
            json!({"type": "pairing_code", "tenant_id": p.tenant, "session_id": p.session,
                   "pairing_code": {"code": p.code, "expires_at": p.expires_at}, "at": p.at}),
        ),
        BusEvent::PairingDurable(p) => (
            "session.pairing_durable",
            p.at,
            json!({"type": "pairing_durable", "tenant_id": p.tenant, "session_id": p.session,
                   "ready_at": p.ready_at, "at": p.at}),
        ),
        BusEvent::Risk(r) => (
            "session.risk",
            r.at,
            json!({"type": "risk", "tenant_id": r.tenant, "session_id": r.session,
                   "level": r.level, "was": r.was, "reasons": r.reasons, "at": r.at}),
        ),
        BusEvent::Otp(o) => (
            o.kind.name(),
            o.at,
            json!({"type": o.kind.name(), "tenant_id": o.tenant, "session_id": o.session,
                   "otp_id": o.otp, "reason": o.reason, "attempts_left": o.attempts_left, "at": o.at}),
        ),
        BusEvent::MemoryRestart(m) => (
            "session.memory_restart",
            m.at,
            json!({"type": "memory_restart", "tenant_id": m.tenant, "session_id": m.session,
                   "bytes": m.bytes, "limit": m.limit, "at": m.at}),
        ),
        BusEvent::Recovery(r) => (
            "session.recovery",
            r.at,
            json!({"type": "recovery", "tenant_id": r.tenant, "session_id": r.session,
                   "breaker": r.breaker, "consecutive_failures": r.consecutive_failures,
                   "next_try_at": r.next_try_at, "at": r.at}),
        ),
    };
    // A pairing code links the account: it goes to the tenant live, never
    // into the audit log.
    let mut logged = body.clone();
    if let Some(code) = logged.pointer_mut("/pairing_code/code") {
        *code = json!("[redacted]");
    }
    let entry = AuditEntry {
        seq: 0,
        at,
        actor: "system".into(),
        action: action.into(),
        tenant: Some(tenant.clone()),
        data: logged,
    };
    (entry, Some(tenant), None, body)
}

fn shape_log(e: LogEvent) -> Shaped {
    let body = json!({"type": "log", "level": e.level.as_str(), "target": e.target, "message": e.message,
                      "fields": e.fields, "tenant_id": e.tenant, "at": e.at});
    let entry = AuditEntry {
        seq: 0,
        at: e.at,
        actor: "system".into(),
        action: "supervisor.log".into(),
        tenant: e.tenant.clone(),
        data: body.clone(),
    };
    (entry, e.tenant, Some(e.level), body)
}

/// An admission event as the WebSocket and the audit log show it: every
/// field present, `null` where the decision has no such data.
fn admission_json(a: &crate::bus::AdmissionEvent) -> serde_json::Value {
    use crate::bus::AdmissionDecision as D;
    let (start_at, wait, block_until) = match &a.decision {
        D::Queued { start_at } => (Some(*start_at), None, None),
        D::Denied {
            wait_time_minutes,
            block_until,
            ..
        } => (None, Some(*wait_time_minutes), *block_until),
        D::Started | D::Cancelled => (None, None, None),
    };
    json!({"type": "admission", "tenant_id": a.tenant, "session_id": a.session,
           "decision": a.decision.name(), "kind": a.kind, "reason": a.decision.reason(),
           "start_at": start_at, "wait_time_minutes": wait, "block_until": block_until, "at": a.at})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::MessageEvent;
    use crate::ids::SessionId;
    use crate::store::Store;

    #[tokio::test]
    async fn a_flush_returns_once_everything_published_before_it_is_in_the_audit_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let bus = Bus::default();
        let (_log_tx, logs) = mpsc::channel(16);
        let (hub, _task) = Hub::start(&bus, logs, Arc::new(store.clone()), 4096);
        // More than one batch, published without yielding to the hub.
        for i in 0..BATCH + 10 {
            bus.publish(BusEvent::MessageIn(MessageEvent {
                tenant: TenantId::new("clinic").expect("id"),
                session: SessionId::new("s1").expect("id"),
                id: format!("in{i}"),
                from: "5491100000000".into(),
                jid: "5491100000000@c.us".into(),
                text: "hola".into(),
                at: Timestamp::from_millis(1),
            }));
        }
        hub.flush().await;
        let written = store.audit_since(0, 10_000).expect("read");
        assert_eq!(written.len(), BATCH + 10);
    }
}

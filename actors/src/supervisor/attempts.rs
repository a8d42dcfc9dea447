//! Connection attempts: every way a driver gets started goes through
//! [`connect`], which asks the admission policy and, when admitted, persists
//! the desire to run and schedules the start in the queue. Restores after a
//! process start and automatic reconnects are attempts of their own kinds.

use super::admission::{auto_reconnect_after, AttemptKind, AttemptRequest, Decision, DenyReason};
use super::recovery::RecoveryPolicy;
use super::registry::{spawn_session, Pending, SupervisorState};
use super::{ConnectOutcome, SupervisorError, SupervisorMsg};
use crate::bus::{AdmissionDecision, AdmissionEvent, BusEvent, RecoveryEvent};
use crate::clock::Timestamp;
use crate::ids::{SessionId, TenantId};
use crate::session::{DisconnectReason, SessionMsg, SessionState};
use crate::store::{DesiredState, StoreError};
use ractor::ActorRef;
use std::time::Duration;

/// How long the supervisor waits for a session actor to accept a start.
const START_CALL_TIMEOUT_MS: u64 = 10_000;

/// Asks for admission and queues the start. Never starts a second driver:
/// a live session answers with its state, a queued one with its place.
pub(super) fn connect(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    id: &SessionId,
    kind: AttemptKind,
) -> Result<ConnectOutcome, SupervisorError> {
    let live = st.live_count(Some(id));
    let entry = st.entry(id)?;
    if entry.view.state.is_live() {
        return Ok(ConnectOutcome::AlreadyLive {
            session: entry.view.clone(),
        });
    }
    if let Some(p) = &entry.pending {
        let (ticket, start_at, session) = (p.ticket, p.start_at, entry.view.clone());
        return Ok(ConnectOutcome::Queued {
            session,
            start_at,
            position: st.admission.position(ticket).unwrap_or(1),
        });
    }
    let request = AttemptRequest {
        tenant: entry.record.tenant.clone(),
        session: id.clone(),
        kind,
        live,
        egress: crate::proxy::egress(entry.record.proxy.as_deref()),
        engine: entry.record.engine,
    };
    let now = st.now();
    match st.admission.admit(&request, now)? {
        Decision::Denied(d) => {
            if let Some(entry) = st.sessions.get_mut(id) {
                entry.last_denial = Some(d.clone());
            }
            let decision = AdmissionDecision::Denied {
                reason: d.reason.as_str(),
                wait_time_minutes: d.wait_minutes(),
                block_until: d.ends_at(),
            };
            publish(st, &request.tenant, id, request.kind, decision);
            tracing::info!(
                tenant = %request.tenant,
                session = %id,
                kind = ?kind,
                reason = d.reason.as_str(),
                wait_minutes = d.wait_minutes(),
                block_until = %d.block_until,
                proxy = d.proxy.as_deref().unwrap_or(""),
                "connection denied"
            );
            Ok(ConnectOutcome::Denied {
                reason: d.reason,
                wait: d.wait,
                block_until: d.ends_at(),
                proxy: d.proxy,
            })
        }
        Decision::Admitted { ticket, start_at } => {
            if let Err(e) = st.save(id, |r| r.desired = DesiredState::Running) {
                let _ = st.admission.cancel(ticket, now);
                return Err(e);
            }
            if let Some(entry) = st.sessions.get_mut(id) {
                entry.last_denial = None;
            }
            tracing::info!(tenant = %request.tenant, session = %id, kind = ?kind, start_at = %start_at, "connection admitted");
            schedule(myself, st, id, ticket, kind, start_at);
            let decision = AdmissionDecision::Queued { start_at };
            publish(st, &request.tenant, id, request.kind, decision);
            Ok(ConnectOutcome::Queued {
                session: st.entry(id)?.view.clone(),
                start_at,
                position: st.admission.position(ticket).unwrap_or(1),
            })
        }
    }
}

/// Publishes an admission decision on the bus.
fn publish(
    st: &SupervisorState,
    tenant: &TenantId,
    session: &SessionId,
    kind: AttemptKind,
    decision: AdmissionDecision,
) {
    st.env.bus.publish(BusEvent::Admission(AdmissionEvent {
        tenant: tenant.clone(),
        session: session.clone(),
        decision,
        kind: kind.as_str(),
        at: st.now(),
    }));
}

/// Arranges for `StartAttempt` at `at`.
fn schedule(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    id: &SessionId,
    ticket: u64,
    kind: AttemptKind,
    at: Timestamp,
) {
    let delay = at.since(st.now());
    let Some(entry) = st.sessions.get_mut(id) else {
        return;
    };
    entry.epoch += 1;
    let epoch = entry.epoch;
    let sid = id.clone();
    let timer = myself.send_after(delay, move || SupervisorMsg::StartAttempt {
        id: sid,
        epoch,
    });
    entry.pending = Some(Pending {
        ticket,
        kind,
        start_at: at,
        timer,
    });
}

/// Cancels a queued start, refunding its admission budget.
pub(super) fn cancel_pending(st: &mut SupervisorState, id: &SessionId) {
    let now = st.now();
    let Some(entry) = st.sessions.get_mut(id) else {
        return;
    };
    entry.epoch += 1;
    let Some(p) = entry.pending.take() else {
        return;
    };
    p.timer.abort();
    let tenant = entry.record.tenant.clone();
    tracing::info!(session = %id, ticket = p.ticket, "queued connection cancelled");
    if let Err(e) = st.admission.cancel(p.ticket, now) {
        tracing::error!(session = %id, error = %e, "could not record the cancellation");
    }
    publish(st, &tenant, id, p.kind, AdmissionDecision::Cancelled);
}

pub(super) async fn start_attempt(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    id: &SessionId,
    epoch: u64,
) {
    let Some(entry) = st.sessions.get_mut(id) else {
        return;
    };
    if entry.epoch != epoch {
        return;
    }
    let Some(p) = entry.pending.take() else {
        return;
    };
    st.admission.started(p.ticket);
    if let Some(entry) = st.sessions.get(id) {
        let request = AttemptRequest {
            tenant: entry.record.tenant.clone(),
            session: id.clone(),
            kind: p.kind,
            live: 0,
            egress: crate::proxy::egress(entry.record.proxy.as_deref()),
            engine: entry.record.engine,
        };
        tracing::info!(tenant = %request.tenant, session = %id, "connection started");
        publish(st, &request.tenant, id, p.kind, AdmissionDecision::Started);
    }
    let Ok(actor) = spawn_session(myself, st, id).await else {
        return;
    };
    match ractor::call_t!(actor, SessionMsg::Connect, START_CALL_TIMEOUT_MS) {
        Ok(view) => {
            if let Some(entry) = st.sessions.get_mut(id) {
                entry.view = view;
            }
        }
        Err(e) => {
            tracing::warn!(session = %id, error = %e, "session actor did not accept the start")
        }
    }
}

/// On process start: an actor for every session, and a restore attempt for
/// each one whose desired state is running. The queue staggers them.
pub(super) async fn restore_all(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
) -> Result<(), StoreError> {
    let mut records = st.repo.list_sessions()?;
    records.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let mut to_restore = Vec::new();
    for record in records {
        let id = record.id.clone();
        let reason = record
            .last_reason
            .unwrap_or(DisconnectReason::NeverConnected);
        if record.desired == DesiredState::Running {
            to_restore.push(id.clone());
        }
        let entry = st.new_entry(record, SessionState::Disconnected { reason });
        st.sessions.insert(id.clone(), entry);
        let _ = spawn_session(myself, st, &id).await;
    }
    for id in to_restore {
        match connect(myself, st, &id, AttemptKind::Restore) {
            Ok(ConnectOutcome::Queued { start_at, .. }) => {
                tracing::info!(session = %id, start_at = %start_at, "restoring session");
            }
            Ok(other) => tracing::warn!(session = %id, outcome = ?other, "session not restored"),
            Err(e) => tracing::error!(session = %id, error = %e, "session not restored"),
        }
    }
    Ok(())
}

/// How often a scheduled restore reads the clock (injectable in tests, so
/// a one-minute open breaker passes in a test without a minute of waiting).
const RECOVERY_POLL: Duration = Duration::from_secs(1);

/// A paired session dropped for a local reason (browser crash, engine
/// error): its breaker counts the fault and says when to restore it.
pub(super) fn schedule_recovery(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    id: &SessionId,
    reason: DisconnectReason,
) {
    let policy = RecoveryPolicy::from_config(&st.config.supervisor);
    let now = st.now();
    let Some(entry) = st.sessions.get_mut(id) else {
        return;
    };
    if entry.record.desired != DesiredState::Running || entry.pending.is_some() {
        return;
    }
    let at = entry.breaker.on_fault(&policy, now);
    entry.epoch += 1;
    let epoch = entry.epoch;
    let state = entry.breaker.state();
    let failures = entry.breaker.failures();
    tracing::warn!(
        tenant = %entry.record.tenant,
        session = %id,
        reason = reason.as_str(),
        failures,
        breaker = state.as_str(),
        next_try_at = %at,
        "local fault: automatic restore scheduled"
    );
    st.env.bus.publish(BusEvent::Recovery(RecoveryEvent {
        tenant: entry.record.tenant.clone(),
        session: id.clone(),
        breaker: state.as_str(),
        consecutive_failures: failures,
        next_try_at: Some(at),
        at: now,
    }));
    poll_recovery(myself, id, epoch, at.since(now));
}

fn poll_recovery(myself: &ActorRef<SupervisorMsg>, id: &SessionId, epoch: u64, wait: Duration) {
    let id = id.clone();
    myself.send_after(wait.min(RECOVERY_POLL), move || SupervisorMsg::Recover {
        id,
        epoch,
    });
}

/// A scheduled restore's check: not yet (poll again), or start it as a
/// restore through admission. Any start or stop since (a new epoch) ends
/// this one.
pub(super) fn recover(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    id: &SessionId,
    epoch: u64,
) {
    let now = st.now();
    let Some(entry) = st.sessions.get_mut(id) else {
        return;
    };
    if entry.epoch != epoch
        || entry.record.desired != DesiredState::Running
        || entry.view.state.is_live()
        || entry.pending.is_some()
    {
        return;
    }
    match entry.breaker.next_try() {
        None => return,
        Some(at) if at > now => return poll_recovery(myself, id, epoch, at.since(now)),
        Some(_) => {}
    }
    entry.breaker.take_due(now);
    let state = entry.breaker.state();
    tracing::info!(session = %id, breaker = state.as_str(), "automatic restore starting");
    match connect(myself, st, id, AttemptKind::Restore) {
        Ok(ConnectOutcome::Denied {
            reason: DenyReason::Capacity,
            ..
        }) => {
            // The server is full for now: a failed try, tried again later.
            schedule_recovery(myself, st, id, DisconnectReason::EngineError);
        }
        Ok(ConnectOutcome::Denied { reason, .. }) => {
            // A rule that waiting a backoff does not change (a ban block, a
            // proxy hold, a cooldown): the session shows the denial and
            // waits for a person.
            tracing::warn!(session = %id, reason = reason.as_str(), "automatic restore refused; left stopped");
            if let Some(entry) = st.sessions.get_mut(id) {
                entry.breaker.reset();
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(session = %id, error = %e, "automatic restore failed"),
    }
}

/// Schedules the next automatic reconnect if
/// [`auto_reconnect_after`] says one applies after this stop.
pub(super) fn maybe_auto_reconnect(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    id: &SessionId,
    reason: DisconnectReason,
) {
    let cfg = &st.config.antiban;
    let Some(entry) = st.sessions.get_mut(id) else {
        return;
    };
    let Some(delay) =
        auto_reconnect_after(cfg, reason, entry.record.desired, entry.reconnect_tries)
    else {
        return;
    };
    entry.reconnect_tries += 1;
    tracing::info!(session = %id, try_number = entry.reconnect_tries, delay_ms = delay.as_millis() as u64, "automatic reconnect scheduled");
    let sid = id.clone();
    myself.send_after(delay, move || SupervisorMsg::Reconnect { id: sid });
}

pub(super) fn reconnect(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    id: &SessionId,
) {
    match connect(myself, st, id, AttemptKind::Reconnect) {
        Ok(outcome) => tracing::info!(session = %id, outcome = ?outcome, "automatic reconnect"),
        Err(e) => tracing::warn!(session = %id, error = %e, "automatic reconnect failed"),
    }
}

//! Connection attempts: every way a driver gets started goes through
//! [`connect`], which asks the admission policy and, when admitted, persists
//! the desire to run and schedules the start in the queue. Restores after a
//! process start and automatic reconnects are attempts of their own kinds.

use super::admission::{auto_reconnect_after, AttemptKind, AttemptRequest, Decision, DenyReason};
use super::recovery::RecoveryPolicy;
use super::registry::{spawn_session, Pending, SupervisorState};
use super::shared::{FleetSeam, SharedError, SharedVerdict};
use super::{ConnectOutcome, Reply, SupervisorError, SupervisorMsg};
use crate::bus::{AdmissionDecision, AdmissionEvent, BusEvent, RecoveryEvent};
use crate::clock::Timestamp;
use crate::ids::{SessionId, TenantId};
use crate::session::{DisconnectReason, SessionMsg, SessionState};
use crate::store::{DesiredState, SessionRecord, StoreError};
use ractor::ActorRef;
use std::time::Duration;

/// How long the supervisor waits for a session actor to accept a start.
const START_CALL_TIMEOUT_MS: u64 = 10_000;

/// Who waits for a connect's outcome. In a fleet the decision comes back
/// later as a message ([`on_decided`]), so the waiter travels with it.
pub(crate) enum Asker {
    /// A caller waits for the answer.
    Caller(Reply<ConnectOutcome>),
    /// A scheduled restore after a local fault: a refusal is acted on.
    Recovery,
    /// Nobody waits: the outcome is logged (`what` names the attempt).
    Log(&'static str),
}

/// Asks for admission and queues the start. Never starts a second driver:
/// a live session answers with its state, a queued one with its place.
/// Single node: decided here, on the node's own ledger. Fleet: decided by
/// the shared ledger in a task, answered when it comes back.
pub(super) fn connect(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    id: &SessionId,
    kind: AttemptKind,
    asker: Asker,
) {
    let out = match request(st, id, kind) {
        Err(e) => Err(e),
        Ok(Err(outcome)) => Ok(outcome),
        Ok(Ok(request)) => match st.fleet.clone() {
            Some(fleet) => return decide_shared(myself, st, request, fleet, asker),
            None => {
                let now = st.now();
                match st.admission.admit(&request, now) {
                    Ok(decision) => conclude(myself, st, &request, decision),
                    Err(e) => Err(e.into()),
                }
            }
        },
    };
    answer(myself, st, id, asker, out);
}

/// The attempt to decide, or the answer when there is nothing to decide
/// (live, queued, or a decision already under way).
fn request(
    st: &mut SupervisorState,
    id: &SessionId,
    kind: AttemptKind,
) -> Result<Result<AttemptRequest, ConnectOutcome>, SupervisorError> {
    let live = st.live_count(Some(id));
    let record = st.entry(id)?.record.clone();
    let egress = st.egress_of(&record);
    let entry = st.entry(id)?;
    if entry.view.state.is_live() {
        return Ok(Err(ConnectOutcome::AlreadyLive {
            session: entry.view.clone(),
        }));
    }
    if entry.deciding.is_some() {
        return Err(SupervisorError::Deciding);
    }
    if let Some(p) = &entry.pending {
        let (ticket, start_at, session) = (p.ticket, p.start_at, entry.view.clone());
        return Ok(Err(ConnectOutcome::Queued {
            session,
            start_at,
            position: st.admission.position(ticket).unwrap_or(1),
        }));
    }
    Ok(Ok(AttemptRequest {
        tenant: entry.record.tenant.clone(),
        session: id.clone(),
        kind,
        live,
        egress,
        engine: entry.record.engine,
    }))
}

/// Sends the attempt to the shared ledger from a task; the session counts
/// as taken (capacity) and refuses a second connect until it is back.
fn decide_shared(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    request: AttemptRequest,
    fleet: FleetSeam,
    asker: Asker,
) {
    let Some(entry) = st.sessions.get_mut(&request.session) else {
        let id = request.session.clone();
        return answer(
            myself,
            st,
            &id,
            asker,
            Err(SupervisorError::NotFound(id.clone())),
        );
    };
    entry.epoch += 1;
    let epoch = entry.epoch;
    entry.deciding = Some(epoch);
    let me = myself.clone();
    tokio::spawn(async move {
        let verdict = fleet.admission.decide(&request).await;
        let msg = SupervisorMsg::Decided {
            epoch,
            request,
            verdict,
            asker,
        };
        if let Err(ractor::MessagingErr::SendErr(SupervisorMsg::Decided {
            verdict: Ok(SharedVerdict::Admitted { attempt }),
            ..
        })) = me.cast(msg)
        {
            // The supervisor stopped meanwhile: the attempt never starts.
            let _ = fleet.admission.cancel(attempt).await;
        }
    });
}

/// A shared decision is back. A session stopped, released or deleted
/// meanwhile is not started (and its attempt is refunded); otherwise it is
/// queued or refused as a single node's decision would be.
pub(super) fn on_decided(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    epoch: u64,
    request: AttemptRequest,
    verdict: Result<SharedVerdict, SharedError>,
    asker: Asker,
) {
    let id = request.session.clone();
    let current = st
        .sessions
        .get_mut(&id)
        .filter(|e| e.deciding == Some(epoch));
    let Some(entry) = current else {
        if let Ok(SharedVerdict::Admitted { attempt }) = verdict {
            refund_shared(st, attempt);
        }
        let err = if st.sessions.contains_key(&id) {
            SupervisorError::Interrupted
        } else {
            SupervisorError::NotFound(id.clone())
        };
        tracing::info!(session = %id, "connect decided after the session was stopped; not started");
        return answer(myself, st, &id, asker, Err(err));
    };
    entry.deciding = None;
    let out = match verdict {
        Err(SharedError::Unavailable(why)) => {
            tracing::warn!(tenant = %request.tenant, session = %id, error = %why, "connect not decided: the fleet's database is unavailable");
            Err(SupervisorError::FleetUnavailable(why))
        }
        Err(SharedError::Fenced(tenant)) => {
            release_fenced(st, &tenant);
            Err(SupervisorError::NotOwner(tenant))
        }
        Ok(SharedVerdict::Denied(d)) => conclude(myself, st, &request, Decision::Denied(d)),
        Ok(SharedVerdict::Admitted { attempt }) => {
            let now = st.now();
            let decision = st.admission.enqueue(attempt, &request, now);
            conclude(myself, st, &request, decision)
        }
    };
    answer(myself, st, &id, asker, out);
}

/// This node learnt that it no longer holds `tenant`: its sessions stop
/// here at once, writing nothing (the new owner's are the true ones).
pub(super) fn release_fenced(st: &mut SupervisorState, tenant: &TenantId) {
    tracing::warn!(tenant = %tenant, "fenced: this node no longer holds the tenant; its sessions stop here");
    let (_, stops) = super::tenancy::release(st, tenant);
    let timeout = st.config.server.shutdown_timeout;
    tokio::spawn(super::tenancy::stop_all(stops, "fenced", timeout));
}

/// Acts on a decision: records a refusal and answers it, or persists the
/// desire to run and schedules the admitted start.
fn conclude(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    request: &AttemptRequest,
    decision: Decision,
) -> Result<ConnectOutcome, SupervisorError> {
    let (id, kind) = (&request.session, request.kind);
    match decision {
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
                refund(st, ticket);
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

/// Gives a connect's outcome to whoever waits for it.
fn answer(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    id: &SessionId,
    asker: Asker,
    out: Result<ConnectOutcome, SupervisorError>,
) {
    match asker {
        Asker::Caller(reply) => {
            let _ = reply.send(out);
        }
        Asker::Recovery => match out {
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
        },
        Asker::Log(what) => match out {
            Ok(ConnectOutcome::Queued { start_at, .. }) => {
                tracing::info!(session = %id, start_at = %start_at, what, "connection queued")
            }
            Ok(other) => {
                tracing::warn!(session = %id, outcome = ?other, what, "connection not queued")
            }
            Err(e) => tracing::warn!(session = %id, error = %e, what, "connection failed"),
        },
    }
}

/// Refunds an admitted attempt that will not start: in the node's own
/// ledger, or (fleet) out of the queue here and in the shared ledger.
fn refund(st: &mut SupervisorState, ticket: u64) {
    if st.fleet.is_some() {
        st.admission.dequeue(ticket);
        refund_shared(st, ticket);
        return;
    }
    let now = st.now();
    if let Err(e) = st.admission.cancel(ticket, now) {
        tracing::error!(ticket, error = %e, "could not record the cancellation");
    }
}

/// The shared ledger's refund, from a task.
fn refund_shared(st: &SupervisorState, attempt: u64) {
    let Some(fleet) = st.fleet.clone() else {
        return;
    };
    tokio::spawn(async move {
        if let Err(e) = fleet.admission.cancel(attempt).await {
            tracing::error!(attempt, error = %e, "could not refund the attempt in the fleet's ledger");
        }
    });
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

/// Cancels a queued start (refunding its admission budget) or a decision
/// under way (refunded when it comes back).
pub(super) fn cancel_pending(st: &mut SupervisorState, id: &SessionId) {
    let Some(entry) = st.sessions.get_mut(id) else {
        return;
    };
    entry.epoch += 1;
    entry.deciding = None;
    let Some(p) = entry.pending.take() else {
        return;
    };
    p.timer.abort();
    let tenant = entry.record.tenant.clone();
    tracing::info!(session = %id, ticket = p.ticket, "queued connection cancelled");
    refund(st, p.ticket);
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
            egress: st.egress_of(&entry.record),
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
    let records = st.repo.list_sessions()?;
    take_in(myself, st, records).await;
    Ok(())
}

/// Takes sessions into the registry, oldest first, each with its actor,
/// and asks a restore for each one whose desired state is running (the
/// queue staggers them). Sessions already here are left as they are.
/// Answers how many were taken in.
pub(super) async fn take_in(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    mut records: Vec<SessionRecord>,
) -> usize {
    records.retain(|r| !st.sessions.contains_key(&r.id));
    records.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let taken = records.len();
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
        connect(myself, st, &id, AttemptKind::Restore, Asker::Log("restore"));
    }
    taken
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
    connect(myself, st, id, AttemptKind::Restore, Asker::Recovery);
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
    connect(
        myself,
        st,
        id,
        AttemptKind::Reconnect,
        Asker::Log("automatic reconnect"),
    );
}

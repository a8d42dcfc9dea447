//! The root supervisor actor: message dispatch, and what the sessions'
//! reports mean — a transition (outcome for admission, restore after a
//! local fault, auto-reconnect), a crashed session actor (restart with a
//! budget). The registry is in [`super::registry`], the commands in
//! [`super::commands`], connection attempts in [`super::attempts`].

use super::admission::{outcome_of, Admission};
use super::attempts;
use super::commands::{self, Override};
use super::ledger::LedgerRepo;
use super::registry::{spawn_session, SupervisorState};
use super::{SupervisorError, SupervisorMsg};
use crate::bus::{BusEvent, TransitionEvent};
use crate::config::Config;
use crate::engine::EngineSet;
use crate::ids::SessionId;
use crate::session::actor::SessionEnv;
use crate::session::{DisconnectReason, SessionMsg, SessionState, SessionView};
use crate::store::{AuditRepo, DesiredState, SessionRepo};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::HashMap;
use std::sync::Arc;

pub struct SupervisorArgs {
    pub config: Config,
    pub sessions: Arc<dyn SessionRepo>,
    pub ledger: Arc<dyn LedgerRepo>,
    pub audit: Arc<dyn AuditRepo>,
    pub engines: EngineSet,
    pub env: SessionEnv,
    /// Seed for the queue's jitter; `None` seeds from the OS.
    pub rng_seed: Option<u64>,
}

impl SupervisorArgs {
    /// A supervisor whose sessions, ledger and audit log are all on `store`,
    /// its queue jitter seeded from the OS.
    pub fn on_store<S>(config: Config, store: S, engines: EngineSet, env: SessionEnv) -> Self
    where
        S: SessionRepo + LedgerRepo + AuditRepo + Clone,
    {
        Self {
            config,
            sessions: Arc::new(store.clone()),
            ledger: Arc::new(store.clone()),
            audit: Arc::new(store),
            engines,
            env,
            rng_seed: None,
        }
    }
}

pub(crate) struct SupervisorActor;

impl Actor for SupervisorActor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let now = args.env.clock.now();
        let admission =
            Admission::load(args.config.antiban.clone(), args.ledger, args.rng_seed, now)?;
        Ok(SupervisorState {
            config: args.config,
            repo: args.sessions,
            audit: args.audit,
            engines: args.engines,
            env: args.env,
            admission,
            sessions: HashMap::new(),
            by_actor: HashMap::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        attempts::restore_all(&myself, st).await?;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Create { new, reply } => {
                let _ = reply.send(commands::create(&myself, st, new).await);
            }
            SupervisorMsg::Delete { id, reply } => {
                if let Some(done) = commands::delete(st, id, reply) {
                    tokio::spawn(done);
                }
            }
            SupervisorMsg::DeleteTenant { tenant, reply } => {
                commands::delete_tenant(st, tenant, reply)
            }
            SupervisorMsg::Connect { id, reply } => {
                let _ = reply.send(attempts::connect(
                    &myself,
                    st,
                    &id,
                    super::admission::AttemptKind::Connect,
                ));
            }
            SupervisorMsg::Disconnect { id, reply } => {
                commands::stop_session(&myself, st, id, false, reply).await;
            }
            SupervisorMsg::Logout { id, reply } => {
                commands::stop_session(&myself, st, id, true, reply).await;
            }
            SupervisorMsg::Get { id, reply } => {
                let _ = reply.send(st.entry(&id).map(|e| e.view.clone()));
            }
            SupervisorMsg::Update {
                id,
                change,
                by,
                reply,
            } => {
                let _ = reply.send(commands::update(st, &id, change, &by));
            }
            SupervisorMsg::Describe { id, reply } => {
                let out = match st.sessions.get(&id) {
                    Some(e) => Ok(st.detail(e)),
                    None => Err(SupervisorError::NotFound(id)),
                };
                let _ = reply.send(out);
            }
            SupervisorMsg::DescribeAll { tenant, reply } => {
                let mut out: Vec<super::SessionDetail> = st
                    .sessions
                    .values()
                    .filter(|e| tenant.as_ref().is_none_or(|t| *t == e.record.tenant))
                    .map(|e| st.detail(e))
                    .collect();
                out.sort_by(|a, b| a.view.id.cmp(&b.view.id));
                let _ = reply.send(out);
            }
            SupervisorMsg::List { tenant, reply } => {
                let mut views: Vec<SessionView> = st
                    .sessions
                    .values()
                    .filter(|e| tenant.as_ref().is_none_or(|t| *t == e.record.tenant))
                    .map(|e| e.view.clone())
                    .collect();
                views.sort_by(|a, b| a.id.cmp(&b.id));
                let _ = reply.send(views);
            }
            SupervisorMsg::SendText {
                id,
                to,
                text,
                reply,
            } => commands::send_text(st, id, to, text, reply),
            SupervisorMsg::PairingCode { id, phone, reply } => {
                commands::pairing_code(st, id, phone, Some(reply))
            }
            SupervisorMsg::RefreshPairingCode { id, phone } => {
                commands::pairing_code(st, id, phone, None)
            }
            SupervisorMsg::RateLimitStatus { tenant, reply } => {
                let _ = reply.send(st.rate_limit_report(tenant));
            }
            SupervisorMsg::Queue { reply } => {
                let _ = reply.send(st.admission.queue());
            }
            SupervisorMsg::Unblock { tenant, by, reply } => {
                let _ = reply.send(commands::admin_override(
                    st,
                    Override::Unblock,
                    &tenant,
                    &by,
                ));
            }
            SupervisorMsg::ResetCooldown { tenant, by, reply } => {
                let _ = reply.send(commands::admin_override(
                    st,
                    Override::ResetCooldown,
                    &tenant,
                    &by,
                ));
            }
            SupervisorMsg::StartAttempt { id, epoch } => {
                attempts::start_attempt(&myself, st, &id, epoch).await
            }
            SupervisorMsg::Reconnect { id } => attempts::reconnect(&myself, st, &id),
            SupervisorMsg::Recover { id, epoch } => attempts::recover(&myself, st, &id, epoch),
            SupervisorMsg::MessagesQueued { session } => {
                if let Some(actor) = st.sessions.get(&session).and_then(|e| e.actor.as_ref()) {
                    let _ = actor.cast(SessionMsg::Outbox);
                }
            }
            SupervisorMsg::Respawn { id } => respawn(&myself, st, &id).await,
            SupervisorMsg::SessionChanged { actor, view, from } => {
                on_session_changed(&myself, st, actor, view, from);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        // Overrides ractor's default, which stops the supervisor when any child
        // fails: one tenant's crash must never take the others down.
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                on_child_exit(&myself, st, cell.get_id(), &err.to_string());
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let why = reason.unwrap_or_else(|| "stopped".into());
                on_child_exit(&myself, st, cell.get_id(), &why);
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<SupervisorMsg>,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        for entry in st.sessions.values_mut() {
            if let Some(p) = entry.pending.take() {
                p.timer.abort();
            }
        }
        // Each session actor closes its driver in its own post_stop.
        myself
            .stop_children_and_wait(
                Some("shutdown".into()),
                Some(st.config.server.shutdown_timeout),
            )
            .await;
        tracing::info!(sessions = st.sessions.len(), "supervisor stopped");
        Ok(())
    }
}

fn on_session_changed(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    actor: ActorId,
    view: SessionView,
    from: SessionState,
) {
    let Some(entry) = st.sessions.get_mut(&view.id) else {
        return;
    };
    if entry.actor.as_ref().map(|a| a.get_id()) != Some(actor) {
        return; // a report from an actor that has since crashed
    }
    let id = view.id.clone();
    let tenant = view.tenant.clone();
    let ready = matches!(view.state, SessionState::Ready { .. });
    if ready {
        entry.reconnect_tries = 0;
        entry.breaker.reset();
    }
    entry.view = view;
    if ready {
        let now = st.now();
        if let Err(e) = st.save(&id, |r| r.mark_paired(now)) {
            tracing::error!(session = %id, error = %e, "could not record the pairing");
        }
        return;
    }
    let Some(reason) = entry.view.state.reason() else {
        return;
    };
    let egress = crate::proxy::egress(entry.record.proxy.as_deref());
    let paired = entry.record.paired;
    let local_fault = reason.is_local_fault();
    let now = st.now();
    let outcome = outcome_of(&from, reason, paired);
    if let Some(outcome) = outcome {
        tracing::warn!(tenant = %tenant, session = %id, outcome = ?outcome, reason = reason.as_str(), "attempt outcome recorded");
        if let Err(e) = st.admission.record(&tenant, &id, outcome, now) {
            tracing::error!(session = %id, error = %e, "could not record the outcome in the ledger");
        }
    }
    if reason == DisconnectReason::ProxyBlocked {
        // The path is refused, not the account: hold the tenant on it.
        tracing::warn!(tenant = %tenant, session = %id, proxy = %egress, "network path refused by WhatsApp; the tenant is held on it");
        if let Err(e) = st.admission.record_proxy_block(&tenant, &id, &egress, now) {
            tracing::error!(session = %id, error = %e, "could not record the proxy hold in the ledger");
        }
    }
    let result = st.save(&id, |r| {
        r.last_reason = Some(reason);
        if reason.ends_desire_to_run() {
            r.desired = DesiredState::Stopped;
        }
        if reason == DisconnectReason::Logout {
            r.unpair(); // the profile is deleted
        }
    });
    if let Err(e) = result {
        tracing::error!(session = %id, error = %e, "could not record the session's stop");
    }
    if local_fault && paired && st.config.supervisor.restore_local_faults {
        attempts::schedule_recovery(myself, st, &id, reason);
    } else if outcome.is_none() {
        attempts::maybe_auto_reconnect(myself, st, &id, reason);
    }
}

fn on_child_exit(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    actor: ActorId,
    why: &str,
) {
    let Some(id) = st.by_actor.remove(&actor) else {
        return; // deleted on purpose, or already handled
    };
    let now = st.now();
    let bus = st.env.bus.clone();
    let Some(entry) = st.sessions.get_mut(&id) else {
        return;
    };
    entry.actor = None;
    tracing::error!(tenant = %entry.record.tenant, session = %id, error = why, "session actor crashed");
    let from = entry.view.state.clone();
    if from.is_live() {
        let reason = DisconnectReason::EngineError;
        entry.view.state = SessionState::Disconnected { reason };
        entry.view.since = now;
        bus.publish(BusEvent::Transition(TransitionEvent {
            tenant: entry.record.tenant.clone(),
            session: id.clone(),
            from,
            to: entry.view.state.clone(),
            reason: Some(reason),
            at: now,
        }));
    }
    match entry.budget.on_crash(now) {
        Some(delay) => {
            let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            tracing::info!(tenant = %entry.record.tenant, session = %id, delay_ms = millis, "session actor restart scheduled");
            myself.send_after(delay, move || SupervisorMsg::Respawn { id });
        }
        None => {
            tracing::error!(tenant = %entry.record.tenant, session = %id, "restart budget spent; session left stopped");
        }
    }
}

async fn respawn(myself: &ActorRef<SupervisorMsg>, st: &mut SupervisorState, id: &SessionId) {
    let Some(entry) = st.sessions.get(id) else {
        return;
    };
    if entry.actor.is_some() {
        return;
    }
    let wants_running = entry.record.desired == DesiredState::Running;
    if spawn_session(myself, st, id).await.is_err() {
        return;
    }
    tracing::info!(session = %id, "session actor restarted");
    if wants_running {
        let kind = super::admission::AttemptKind::CrashRestart;
        if let Err(e) = attempts::connect(myself, st, id, kind) {
            tracing::warn!(session = %id, error = %e, "could not reconnect the restarted session");
        }
    }
}

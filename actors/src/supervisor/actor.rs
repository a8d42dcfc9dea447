//! The root supervisor actor: message dispatch, and what the sessions'
//! reports mean — a transition (outcome for admission, restore after a
//! local fault, auto-reconnect), a crashed session actor (restart with a
//! budget). The registry is in [`super::registry`], the commands in
//! [`super::commands`], connection attempts in [`super::attempts`].

use super::admission::{global_status_in, outcome_of, tenant_status_in, Admission, Outcome};
use super::attempts::{self, Asker};
use super::commands::{self, Override};
use super::ledger::LedgerRepo;
use super::registry::{spawn_session, SupervisorState};
use super::shared::{FleetSeam, SharedError, TenantEvent};
use super::tenancy;
use super::{SupervisorError, SupervisorMsg};
use crate::bus::{BusEvent, TransitionEvent};
use crate::config::Config;
use crate::engine::EngineSet;
use crate::ids::{SessionId, TenantId};
use crate::session::actor::SessionEnv;
use crate::session::{DisconnectReason, SessionMsg, SessionState, SessionView};
use crate::store::{AuditRepo, DesiredState, SessionRepo};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::{HashMap, HashSet};
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
    /// Fleet mode: admission shared with the other nodes, and this node's
    /// egress. `None`: a single node, deciding on its own ledger.
    pub fleet: Option<FleetSeam>,
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
            fleet: None,
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
            fleet: args.fleet,
            owned: HashSet::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        // In a fleet, sessions come in with their tenant's lease (AdoptTenant).
        if st.fleet.is_none() {
            attempts::restore_all(&myself, st).await?;
        }
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
            SupervisorMsg::Connect { id, reply } => attempts::connect(
                &myself,
                st,
                &id,
                super::admission::AttemptKind::Connect,
                Asker::Caller(reply),
            ),
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
                    None => Err(st.missing(id)),
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
            SupervisorMsg::RateLimitStatus { tenant, reply } => match &st.fleet {
                None => {
                    let _ = reply.send(st.rate_limit_report(tenant));
                }
                Some(_) => {
                    tokio::spawn(fleet_report(st, tenant, reply));
                }
            },
            SupervisorMsg::Queue { reply } => {
                let _ = reply.send(st.admission.queue());
            }
            SupervisorMsg::Unblock { tenant, by, reply } => {
                commands::admin_override(st, Override::Unblock, tenant, by, reply)
            }
            SupervisorMsg::ResetCooldown { tenant, by, reply } => {
                commands::admin_override(st, Override::ResetCooldown, tenant, by, reply)
            }
            SupervisorMsg::AdoptTenant { tenant, reply } => {
                let out = tenancy::adopt(&myself, st, tenant).await;
                let _ = reply.send(out.map_err(SupervisorError::from));
            }
            SupervisorMsg::ReleaseTenant { tenant, why, reply } => {
                let (n, actors) = tenancy::release(st, &tenant);
                let timeout = st.config.server.shutdown_timeout;
                tokio::spawn(async move {
                    tenancy::stop_all(actors, &why, timeout).await;
                    let _ = reply.send(n);
                });
            }
            SupervisorMsg::Fenced { tenant } => {
                if st.owned.contains(&tenant) {
                    attempts::release_fenced(st, &tenant);
                }
            }
            SupervisorMsg::Decided {
                epoch,
                request,
                verdict,
                asker,
            } => attempts::on_decided(&myself, st, epoch, request, verdict, asker),
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
    let paired = entry.record.paired;
    let egress = st.egress_of(&st.sessions[&id].record);
    let local_fault = reason.is_local_fault();
    let now = st.now();
    let outcome = outcome_of(&from, reason, paired);
    if let Some(outcome) = outcome {
        tracing::warn!(tenant = %tenant, session = %id, outcome = ?outcome, reason = reason.as_str(), "attempt outcome recorded");
        if st.fleet.is_some() {
            let event = match outcome {
                Outcome::Failure => TenantEvent::Failure {
                    session: id.clone(),
                },
                Outcome::Banned => TenantEvent::Banned {
                    session: id.clone(),
                },
            };
            record_shared(myself, st, &tenant, event);
        } else if let Err(e) = st.admission.record(&tenant, &id, outcome, now) {
            tracing::error!(session = %id, error = %e, "could not record the outcome in the ledger");
        }
    }
    if reason == DisconnectReason::ProxyBlocked {
        // The path is refused, not the account: hold the tenant on it.
        tracing::warn!(tenant = %tenant, session = %id, proxy = %egress, "network path refused by WhatsApp; the tenant is held on it");
        if st.fleet.is_some() {
            let event = TenantEvent::ProxyBlocked {
                session: id.clone(),
                egress: egress.clone(),
            };
            record_shared(myself, st, &tenant, event);
        } else if let Err(e) = st.admission.record_proxy_block(&tenant, &id, &egress, now) {
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
        attempts::connect(myself, st, id, kind, Asker::Log("restart after a crash"));
    }
}

/// Records a session's outcome in the fleet's ledger from a task, fenced:
/// a node that lost the tenant writes nothing and lets the tenant go.
fn record_shared(
    myself: &ActorRef<SupervisorMsg>,
    st: &SupervisorState,
    tenant: &TenantId,
    event: TenantEvent,
) {
    let Some(fleet) = st.fleet.clone() else {
        return;
    };
    let (me, tenant) = (myself.clone(), tenant.clone());
    tokio::spawn(async move {
        match fleet.admission.record(&tenant, event, true).await {
            Ok(()) => {}
            Err(SharedError::Fenced(tenant)) => {
                let _ = me.cast(SupervisorMsg::Fenced { tenant });
            }
            Err(e) => {
                tracing::error!(tenant = %tenant, error = %e, "could not record the outcome in the fleet's ledger")
            }
        }
    });
}

/// The anti-ban report in a fleet: each tenant's status from the shared
/// ledger through this node's egress, fetched off the supervisor. With the
/// database down it shows what this node knows: its own (empty) ledger.
fn fleet_report(
    st: &SupervisorState,
    tenant: Option<TenantId>,
    reply: ractor::RpcReplyPort<super::RateLimitReport>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let fallback = st.rate_limit_report(tenant.clone());
    let live = st.live_count(None);
    let cfg = st.config.antiban.clone();
    let fleet = st.fleet.clone();
    let tenants: std::collections::BTreeSet<TenantId> = match tenant {
        Some(t) => [t].into(),
        None => st.owned.iter().cloned().collect(),
    };
    async move {
        let Some(fleet) = fleet else {
            let _ = reply.send(fallback);
            return;
        };
        let mut global = None;
        let mut organizations = Vec::with_capacity(tenants.len());
        for t in &tenants {
            match fleet.admission.view(t, &fleet.egress).await {
                Ok((ledger, now)) => {
                    organizations.push(tenant_status_in(
                        &cfg,
                        &ledger,
                        t,
                        live,
                        &fleet.egress,
                        now,
                    ));
                    global.get_or_insert_with(|| global_status_in(&cfg, &ledger, now));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the fleet's anti-ban status is unavailable");
                    let _ = reply.send(fallback);
                    return;
                }
            }
        }
        // The egress's hour is the same in every tenant's view: with no
        // tenant to ask about, any id reads it.
        let anyone = TenantId::new("_").expect("a valid id");
        let global = match global {
            Some(g) => g,
            None => match fleet.admission.view(&anyone, &fleet.egress).await {
                Ok((ledger, now)) => global_status_in(&cfg, &ledger, now),
                Err(_) => fallback.global.clone(),
            },
        };
        let _ = reply.send(super::RateLimitReport {
            global,
            organizations,
        });
    }
}

//! The root supervisor actor: its state, message dispatch, session actor
//! spawning, and crash supervision. Connection attempts (admission, queue,
//! restore, reconnect) are in [`super::attempts`].

use super::admission::{check_create, outcome_of, Admission};
use super::attempts;
use super::ledger::LedgerRepo;
use super::recovery::Breaker;
use super::restart::RestartBudget;
use super::{NewSession, RateLimitReport, SupervisorError, SupervisorMsg};
use crate::bus::{BusEvent, TransitionEvent};
use crate::clock::Timer;
use crate::clock::Timestamp;
use crate::config::Config;
use crate::engine::EngineSet;
use crate::ids::{SessionId, TenantId};
use crate::session::actor::{PairingCode, PairingCodeError, SessionEnv};
use crate::session::{
    DisconnectReason, SessionActor, SessionArgs, SessionMsg, SessionState, SessionView,
};
use crate::store::{AuditEntry, AuditRepo, DesiredState, SessionRecord, SessionRepo};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::{BTreeSet, HashMap};
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

pub(crate) struct SupervisorActor;

pub(super) struct Pending {
    pub ticket: u64,
    pub kind: super::admission::AttemptKind,
    pub start_at: Timestamp,
    pub timer: Timer<SupervisorMsg>,
}

pub(super) struct Entry {
    pub record: SessionRecord,
    pub actor: Option<ActorRef<SessionMsg>>,
    pub view: SessionView,
    pub budget: RestartBudget,
    /// Bumped whenever a scheduled start is made or cancelled.
    pub epoch: u64,
    pub pending: Option<Pending>,
    /// Automatic reconnect tries since the session was last READY.
    pub reconnect_tries: u32,
    /// The last refusal, until the next admitted attempt.
    pub last_denial: Option<super::admission::Denial>,
    /// Automatic restores after local faults.
    pub breaker: Breaker,
}

pub(crate) struct SupervisorState {
    pub(super) config: Config,
    pub(super) repo: Arc<dyn SessionRepo>,
    pub(super) audit: Arc<dyn AuditRepo>,
    pub(super) engines: EngineSet,
    pub(super) env: SessionEnv,
    pub(super) admission: Admission,
    pub(super) sessions: HashMap<SessionId, Entry>,
    pub(super) by_actor: HashMap<ActorId, SessionId>,
}

impl SupervisorState {
    pub(super) fn now(&self) -> Timestamp {
        self.env.clock.now()
    }

    pub(super) fn entry(&mut self, id: &SessionId) -> Result<&mut Entry, SupervisorError> {
        self.sessions
            .get_mut(id)
            .ok_or_else(|| SupervisorError::NotFound(id.clone()))
    }

    pub(super) fn new_entry(&self, record: SessionRecord, state: SessionState) -> Entry {
        let s = &self.config.supervisor;
        Entry {
            view: SessionView {
                id: record.id.clone(),
                tenant: record.tenant.clone(),
                name: record.name.clone(),
                state,
                since: self.now(),
                pairing_code: None,
                pairing_durable_at: None,
            },
            record,
            actor: None,
            budget: RestartBudget::new(s.restart_budget, s.restart_window, s.restart_backoff),
            epoch: 0,
            pending: None,
            reconnect_tries: 0,
            last_denial: None,
            breaker: Breaker::default(),
        }
    }

    /// Persists a changed record (written before anyone is told).
    pub(super) fn save(
        &mut self,
        id: &SessionId,
        change: impl FnOnce(&mut SessionRecord),
    ) -> Result<(), SupervisorError> {
        let entry = self.entry(id)?;
        let mut record = entry.record.clone();
        change(&mut record);
        if record != entry.record {
            self.repo.put_session(&record)?;
            self.entry(id)?.record = record;
        }
        Ok(())
    }

    /// Sessions live or queued, except `except`: what capacity counts.
    pub(super) fn live_count(&self, except: Option<&SessionId>) -> u32 {
        let n = self
            .sessions
            .values()
            .filter(|e| Some(&e.record.id) != except)
            .filter(|e| e.view.state.is_live() || e.pending.is_some())
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn detail(&self, e: &Entry) -> super::SessionDetail {
        let now = self.now();
        let admission = match (&e.pending, &e.last_denial) {
            (Some(p), _) => Some(super::AdmissionStatus::Queued {
                start_at: p.start_at,
                position: self.admission.position(p.ticket).unwrap_or(1),
            }),
            (None, Some(d))
                if d.proxy.as_deref().map_or(d.block_until > now, |p| {
                    self.admission.holds(&e.record.tenant, p)
                }) =>
            {
                Some(super::AdmissionStatus::Denied {
                    reason: d.reason,
                    wait_time_minutes: d.block_until.since(now).as_secs().div_ceil(60),
                    block_until: d.ends_at(),
                    proxy: d.proxy.clone(),
                })
            }
            _ => None,
        };
        super::SessionDetail {
            view: e.view.clone(),
            admission,
            egress: crate::proxy::egress(e.record.proxy.as_deref()),
            recovery: e.breaker.status(),
        }
    }

    fn rate_limit_report(&self, tenant: Option<TenantId>) -> RateLimitReport {
        let now = self.now();
        let live = self.live_count(None);
        let tenants: BTreeSet<TenantId> = match tenant {
            Some(t) => BTreeSet::from([t]),
            None => self
                .admission
                .known_tenants()
                .into_iter()
                .chain(self.sessions.values().map(|e| e.record.tenant.clone()))
                .collect(),
        };
        RateLimitReport {
            global: self.admission.global_status(now),
            organizations: tenants
                .iter()
                .map(|t| self.admission.tenant_status(t, live, now))
                .collect(),
        }
    }

    fn audit(&self, actor: &str, action: &str, tenant: &TenantId, data: serde_json::Value) {
        let entry = AuditEntry {
            seq: 0,
            at: self.now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            tenant: Some(tenant.clone()),
            data,
        };
        if let Err(e) = self.audit.audit(&entry) {
            tracing::error!(error = %e, action, "could not write the audit log");
        }
    }
}

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
                let _ = reply.send(create(&myself, st, new).await);
            }
            SupervisorMsg::Delete { id, reply } => {
                if let Some(done) = delete(st, id, reply) {
                    tokio::spawn(done);
                }
            }
            SupervisorMsg::DeleteTenant { tenant, reply } => delete_tenant(st, tenant, reply),
            SupervisorMsg::Connect { id, reply } => {
                let _ = reply.send(attempts::connect(
                    &myself,
                    st,
                    &id,
                    super::admission::AttemptKind::Connect,
                ));
            }
            SupervisorMsg::Disconnect { id, reply } => {
                stop_session(&myself, st, id, false, reply).await;
            }
            SupervisorMsg::Logout { id, reply } => {
                stop_session(&myself, st, id, true, reply).await;
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
                let _ = reply.send(update(st, &id, change, &by));
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
            } => send_text(st, id, to, text, reply),
            SupervisorMsg::PairingCode { id, phone, reply } => {
                pairing_code(st, id, phone, Some(reply))
            }
            SupervisorMsg::RefreshPairingCode { id, phone } => pairing_code(st, id, phone, None),
            SupervisorMsg::RateLimitStatus { tenant, reply } => {
                let _ = reply.send(st.rate_limit_report(tenant));
            }
            SupervisorMsg::Queue { reply } => {
                let _ = reply.send(st.admission.queue());
            }
            SupervisorMsg::Unblock { tenant, by, reply } => {
                let now = st.now();
                let out = st
                    .admission
                    .unblock(&tenant, &by, now)
                    .map_err(SupervisorError::from);
                if let Ok(was_blocked) = out {
                    tracing::warn!(tenant = %tenant, by = %by, was_blocked, "admin lifted the ban block");
                    st.audit(
                        &by,
                        "antiban.unblock",
                        &tenant,
                        serde_json::json!({ "was_blocked": was_blocked }),
                    );
                }
                let _ = reply.send(out);
            }
            SupervisorMsg::ResetCooldown { tenant, by, reply } => {
                let now = st.now();
                let out = st
                    .admission
                    .reset_cooldown(&tenant, &by, now)
                    .map_err(SupervisorError::from);
                if let Ok(was_cooling) = out {
                    tracing::warn!(tenant = %tenant, by = %by, was_cooling, "admin reset the cooldown");
                    st.audit(
                        &by,
                        "antiban.reset_cooldown",
                        &tenant,
                        serde_json::json!({ "was_cooling": was_cooling }),
                    );
                }
                let _ = reply.send(out);
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

pub(super) async fn spawn_session(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    id: &SessionId,
) -> Result<ActorRef<SessionMsg>, SupervisorError> {
    let entry = st.entry(id)?;
    if let Some(actor) = &entry.actor {
        return Ok(actor.clone());
    }
    let record = entry.record.clone();
    let initial = entry.view.state.clone();
    let args = SessionArgs {
        engine: st.engines.get(record.engine),
        record,
        initial,
        env: st.env.clone(),
        supervisor: Some(myself.clone()),
    };
    let (actor, _) = Actor::spawn_linked(None, SessionActor, args, myself.get_cell())
        .await
        .map_err(|e| {
            tracing::error!(session = %id, error = %e, "could not spawn a session actor");
            SupervisorError::Unavailable
        })?;
    st.by_actor.insert(actor.get_id(), id.clone());
    st.entry(id)?.actor = Some(actor.clone());
    Ok(actor)
}

async fn create(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    new: NewSession,
) -> Result<SessionView, SupervisorError> {
    let now = st.now();
    let of_tenant = st
        .sessions
        .values()
        .filter(|e| e.record.tenant == new.tenant)
        .count();
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    if let Err(denial) = check_create(
        &st.config.antiban,
        count(of_tenant),
        count(st.sessions.len()),
        now,
    ) {
        tracing::info!(tenant = %new.tenant, reason = denial.reason.as_str(), "session creation denied");
        return Err(SupervisorError::Denied(denial));
    }
    let record = SessionRecord {
        id: SessionId::generate(),
        tenant: new.tenant,
        name: new.name,
        engine: new.engine,
        desired: DesiredState::Stopped,
        user_agent: new.user_agent,
        proxy: new.proxy,
        last_reason: None,
        paired: false,
        created_at: now,
    };
    st.repo.put_session(&record)?;
    let id = record.id.clone();
    tracing::info!(tenant = %record.tenant, session = %id, "session created");
    let reason = DisconnectReason::NeverConnected;
    let entry = st.new_entry(record, SessionState::Disconnected { reason });
    st.sessions.insert(id.clone(), entry);
    spawn_session(myself, st, &id).await?;
    Ok(st.entry(&id)?.view.clone())
}

/// Removes a session from the registry and the store at once; answers
/// `reply` when its actor has logged out and stopped, which the returned
/// future does (run it off the supervisor: a browser can be slow).
fn delete(
    st: &mut SupervisorState,
    id: SessionId,
    reply: RpcReplyPort<Result<(), SupervisorError>>,
) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
    match remove(st, &id) {
        Err(e) => {
            let _ = reply.send(Err(e));
            None
        }
        Ok(stop) => Some(async move {
            stop.await;
            let _ = reply.send(Ok(()));
        }),
    }
}

/// Deletes every session of `tenant` in this one message: no create for
/// the tenant can land between the listing and the deletes.
fn delete_tenant(
    st: &mut SupervisorState,
    tenant: TenantId,
    reply: RpcReplyPort<Result<usize, SupervisorError>>,
) {
    let mut ids: Vec<SessionId> = st
        .sessions
        .values()
        .filter(|e| e.record.tenant == tenant)
        .map(|e| e.record.id.clone())
        .collect();
    ids.sort();
    let mut stops = Vec::with_capacity(ids.len());
    for id in &ids {
        match remove(st, id) {
            Ok(stop) => stops.push(stop),
            Err(e) => {
                let _ = reply.send(Err(e));
                tokio::spawn(futures::future::join_all(stops));
                return;
            }
        }
    }
    tracing::info!(tenant = %tenant, sessions = ids.len(), "tenant's sessions deleted");
    tokio::spawn(async move {
        futures::future::join_all(stops).await;
        let _ = reply.send(Ok(ids.len()));
    });
}

/// Takes a session out of the registry and the store (the registry keeps
/// it when the store refuses); the returned future logs its actor out and
/// stops it.
fn remove(
    st: &mut SupervisorState,
    id: &SessionId,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, SupervisorError> {
    attempts::cancel_pending(st, id);
    let Some(entry) = st.sessions.remove(id) else {
        return Err(SupervisorError::NotFound(id.clone()));
    };
    if let Err(e) = st.repo.delete_session(id) {
        // Keep the registry consistent with the store.
        st.sessions.insert(id.clone(), entry);
        return Err(e.into());
    }
    tracing::info!(tenant = %entry.record.tenant, session = %id, "session deleted");
    if let Some(actor) = &entry.actor {
        st.by_actor.remove(&actor.get_id());
    }
    let timeout = st.config.server.shutdown_timeout;
    Ok(async move {
        let Some(actor) = entry.actor else {
            return;
        };
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let _ = ractor::call_t!(actor, SessionMsg::Logout, millis);
        let _ = actor
            .stop_and_wait(Some("deleted".into()), Some(timeout))
            .await;
    })
}

async fn stop_session(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    id: SessionId,
    logout: bool,
    reply: RpcReplyPort<Result<SessionView, SupervisorError>>,
) {
    attempts::cancel_pending(st, &id);
    if let Some(entry) = st.sessions.get_mut(&id) {
        entry.breaker.reset();
    }
    if let Err(e) = st.save(&id, |r| r.desired = DesiredState::Stopped) {
        let _ = reply.send(Err(e));
        return;
    }
    let actor = match spawn_session(myself, st, &id).await {
        Ok(actor) => actor,
        Err(e) => {
            let _ = reply.send(Err(e));
            return;
        }
    };
    tokio::spawn(async move {
        let out = if logout {
            ractor::call!(actor, SessionMsg::Logout)
        } else {
            ractor::call!(actor, SessionMsg::Stop)
        };
        let _ = reply.send(out.map_err(|_| SupervisorError::Unavailable));
    });
}

/// Changes a stopped session's name or proxy. A new proxy is a new network
/// path: a hold on the old one no longer applies to this session.
fn update(
    st: &mut SupervisorState,
    id: &SessionId,
    change: super::SessionChange,
    by: &str,
) -> Result<SessionView, SupervisorError> {
    let entry = st.entry(id)?;
    if entry.view.state.is_live() || entry.pending.is_some() {
        return Err(SupervisorError::Live);
    }
    let before = crate::proxy::egress(entry.record.proxy.as_deref());
    st.save(id, |r| {
        if let Some(name) = change.name {
            r.name = name;
        }
        if let Some(proxy) = change.proxy {
            r.proxy = proxy;
        }
    })?;
    let entry = st.entry(id)?;
    let after = crate::proxy::egress(entry.record.proxy.as_deref());
    entry.view.name = entry.record.name.clone();
    if before != after {
        entry.last_denial = None;
    }
    if let Some(actor) = &entry.actor {
        let _ = actor.cast(SessionMsg::Reconfigure(entry.record.clone()));
    }
    let (view, tenant) = (entry.view.clone(), entry.record.tenant.clone());
    st.audit(
        by,
        "session.update",
        &tenant,
        serde_json::json!({"session": id, "name": view.name, "egress": after}),
    );
    Ok(view)
}

/// Admits a pairing-code request (per phone number, per egress path: the
/// tenant's proxy without its credentials, or the server itself), then asks
/// the session. Refused before the ledger when the session shows no QR.
fn pairing_code(
    st: &mut SupervisorState,
    id: SessionId,
    phone: String,
    reply: Option<RpcReplyPort<Result<PairingCode, SupervisorError>>>,
) {
    let answer = |reply: Option<RpcReplyPort<_>>, out: Result<PairingCode, SupervisorError>| {
        if let Some(reply) = reply {
            let _ = reply.send(out);
        }
    };
    let now = st.now();
    let (actor, tenant, egress) = match st.entry(&id) {
        Err(e) => return answer(reply, Err(e)),
        Ok(e) if !matches!(e.view.state, SessionState::Qr { .. }) => {
            return answer(reply, Err(SupervisorError::NotShowingQr))
        }
        Ok(e) => (
            e.actor.clone(),
            e.record.tenant.clone(),
            crate::proxy::egress(e.record.proxy.as_deref()),
        ),
    };
    let Some(actor) = actor else {
        return answer(reply, Err(SupervisorError::Unavailable));
    };
    match st
        .admission
        .admit_pairing_code(&tenant, &phone, &egress, now)
    {
        Err(e) => return answer(reply, Err(e.into())),
        Ok(Err(denial)) => {
            tracing::warn!(tenant = %tenant, session = %id, reason = denial.reason.as_str(), wait_minutes = denial.wait_minutes(), "pairing code refused");
            return answer(reply, Err(SupervisorError::Denied(denial)));
        }
        Ok(Ok(())) => {}
    }
    tokio::spawn(async move {
        let out = ractor::call!(actor, |r| SessionMsg::PairingCode { phone, reply: r });
        answer(
            reply,
            match out {
                Ok(Ok(code)) => Ok(code),
                Ok(Err(PairingCodeError::NotShowingQr)) => Err(SupervisorError::NotShowingQr),
                Ok(Err(PairingCodeError::Engine(e))) => Err(SupervisorError::Engine(e)),
                Err(_) => Err(SupervisorError::Unavailable),
            },
        );
    });
}

fn send_text(
    st: &mut SupervisorState,
    id: SessionId,
    to: String,
    text: String,
    reply: RpcReplyPort<Result<String, SupervisorError>>,
) {
    let actor = match st.entry(&id).map(|e| e.actor.clone()) {
        Err(e) => {
            let _ = reply.send(Err(e));
            return;
        }
        Ok(None) => {
            let _ = reply.send(Err(SupervisorError::Unavailable));
            return;
        }
        Ok(Some(actor)) => actor,
    };
    tokio::spawn(async move {
        let out = ractor::call!(actor, |r| SessionMsg::SendText { to, text, reply: r });
        let _ = reply.send(match out {
            Ok(sent) => sent.map_err(SupervisorError::from),
            Err(_) => Err(SupervisorError::Unavailable),
        });
    });
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
        if let Err(e) = st.save(&id, |r| r.paired = true) {
            tracing::error!(session = %id, error = %e, "could not record the pairing");
        }
        return;
    }
    let Some(reason) = entry.view.state.reason() else {
        return;
    };
    let egress = crate::proxy::egress(entry.record.proxy.as_deref());
    let paired = entry.record.paired;
    let local_fault = matches!(
        reason,
        DisconnectReason::EngineError | DisconnectReason::BrowserCrashed
    );
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
            r.paired = false; // the profile is deleted
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

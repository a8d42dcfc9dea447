//! The root supervisor actor. See the module docs of [`super`].

use super::admission::{Admission, AttemptKind, AttemptRequest, Decision};
use super::restart::RestartBudget;
use super::restore::stagger;
use super::{ConnectOutcome, NewSession, SupervisorError, SupervisorMsg, Timer};
use crate::bus::{BusEvent, TransitionEvent};
use crate::clock::Timestamp;
use crate::config::Config;
use crate::engine::EngineSet;
use crate::ids::SessionId;
use crate::session::actor::SessionEnv;
use crate::session::{
    DisconnectReason, SessionActor, SessionArgs, SessionMsg, SessionState, SessionView,
};
use crate::store::{DesiredState, SessionRecord, SessionRepo};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long the supervisor waits for a session actor to accept a start.
const START_CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SupervisorArgs {
    pub config: Config,
    pub repo: Arc<dyn SessionRepo>,
    pub engines: EngineSet,
    pub env: SessionEnv,
    pub admission: Box<dyn Admission>,
    /// Seed for restore jitter; `None` seeds from the OS.
    pub rng_seed: Option<u64>,
}

pub struct Supervisor;

struct Entry {
    record: SessionRecord,
    actor: Option<ActorRef<SessionMsg>>,
    view: SessionView,
    budget: RestartBudget,
    /// Bumped whenever a scheduled start is made or cancelled.
    epoch: u64,
    pending: Option<(Timestamp, Timer<SupervisorMsg>)>,
}

pub struct SupervisorState {
    config: Config,
    repo: Arc<dyn SessionRepo>,
    engines: EngineSet,
    env: SessionEnv,
    admission: Box<dyn Admission>,
    rng: StdRng,
    sessions: HashMap<SessionId, Entry>,
    by_actor: HashMap<ActorId, SessionId>,
}

impl SupervisorState {
    fn now(&self) -> Timestamp {
        self.env.clock.now()
    }

    fn entry(&mut self, id: &SessionId) -> Result<&mut Entry, SupervisorError> {
        self.sessions
            .get_mut(id)
            .ok_or_else(|| SupervisorError::NotFound(id.clone()))
    }

    fn new_entry(&self, record: SessionRecord, state: SessionState) -> Entry {
        let s = &self.config.supervisor;
        Entry {
            view: SessionView {
                id: record.id.clone(),
                tenant: record.tenant.clone(),
                name: record.name.clone(),
                state,
                since: self.now(),
            },
            record,
            actor: None,
            budget: RestartBudget::new(s.restart_budget, s.restart_window, s.restart_backoff),
            epoch: 0,
            pending: None,
        }
    }

    /// Persists a changed record (write before acknowledging).
    fn save(
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

    fn cancel_pending(&mut self, id: &SessionId) {
        if let Some(entry) = self.sessions.get_mut(id) {
            entry.epoch += 1;
            if let Some((_, timer)) = entry.pending.take() {
                timer.abort();
            }
        }
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let rng = match args.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Ok(SupervisorState {
            config: args.config,
            repo: args.repo,
            engines: args.engines,
            env: args.env,
            admission: args.admission,
            rng,
            sessions: HashMap::new(),
            by_actor: HashMap::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        restore_all(&myself, st).await?;
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
            SupervisorMsg::Delete { id, reply } => delete(st, id, reply),
            SupervisorMsg::Connect { id, reply } => {
                let _ = reply.send(connect(&myself, st, &id, AttemptKind::Connect));
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
            } => match st.entry(&id).map(|e| e.actor.clone()) {
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
                Ok(None) => {
                    let _ = reply.send(Err(SupervisorError::Unavailable));
                }
                Ok(Some(actor)) => {
                    tokio::spawn(async move {
                        let out =
                            ractor::call!(actor, |r| SessionMsg::SendText { to, text, reply: r });
                        let _ = reply.send(match out {
                            Ok(sent) => sent.map_err(SupervisorError::from),
                            Err(_) => Err(SupervisorError::Unavailable),
                        });
                    });
                }
            },
            SupervisorMsg::StartAttempt { id, epoch } => {
                start_attempt(&myself, st, &id, epoch).await
            }
            SupervisorMsg::Respawn { id } => respawn(&myself, st, &id).await,
            SupervisorMsg::SessionChanged { actor, view, from } => {
                on_session_changed(st, actor, view, from)
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
            if let Some((_, timer)) = entry.pending.take() {
                timer.abort();
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

async fn spawn_session(
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

async fn restore_all(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
) -> Result<(), SupervisorError> {
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
        spawn_session(myself, st, &id).await?;
    }
    let a = &st.config.antiban;
    let plan = stagger(
        to_restore.len(),
        a.queue_spacing,
        a.connect_jitter_min,
        a.connect_jitter_max,
        &mut st.rng,
    );
    let now = st.now();
    for (id, offset) in to_restore.iter().zip(plan) {
        let tenant = st.entry(id)?.record.tenant.clone();
        let request = AttemptRequest {
            tenant: tenant.clone(),
            session: id.clone(),
            kind: AttemptKind::Restore,
        };
        match st.admission.admit(&request, now) {
            Decision::Admitted { start_at } => {
                let at = start_at.max(now.plus(offset));
                tracing::info!(tenant = %tenant, session = %id, start_at = %at, "restoring session");
                schedule(myself, st, id, at);
            }
            Decision::Denied {
                reason,
                block_until,
                ..
            } => {
                tracing::warn!(tenant = %tenant, session = %id, reason = ?reason, block_until = %block_until, "restore denied");
            }
        }
    }
    Ok(())
}

async fn create(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    new: NewSession,
) -> Result<SessionView, SupervisorError> {
    let record = SessionRecord {
        id: SessionId::generate(),
        tenant: new.tenant,
        name: new.name,
        engine: new.engine,
        desired: DesiredState::Stopped,
        user_agent: new.user_agent,
        proxy: new.proxy,
        last_reason: None,
        created_at: st.now(),
    };
    st.repo.put_session(&record)?;
    let id = record.id.clone();
    tracing::info!(tenant = %record.tenant, session = %id, "session created");
    let entry = st.new_entry(
        record,
        SessionState::Disconnected {
            reason: DisconnectReason::NeverConnected,
        },
    );
    st.sessions.insert(id.clone(), entry);
    spawn_session(myself, st, &id).await?;
    Ok(st.entry(&id)?.view.clone())
}

fn delete(
    st: &mut SupervisorState,
    id: SessionId,
    reply: ractor::RpcReplyPort<Result<(), SupervisorError>>,
) {
    st.cancel_pending(&id);
    let Some(entry) = st.sessions.remove(&id) else {
        let _ = reply.send(Err(SupervisorError::NotFound(id)));
        return;
    };
    if let Err(e) = st.repo.delete_session(&id) {
        // Keep the registry consistent with the store.
        st.sessions.insert(id, entry);
        let _ = reply.send(Err(e.into()));
        return;
    }
    tracing::info!(tenant = %entry.record.tenant, session = %id, "session deleted");
    let Some(actor) = entry.actor else {
        let _ = reply.send(Ok(()));
        return;
    };
    st.by_actor.remove(&actor.get_id());
    let timeout = st.config.server.shutdown_timeout;
    tokio::spawn(async move {
        let _ = ractor::call_t!(actor, SessionMsg::Logout, timeout.as_millis() as u64);
        let _ = actor
            .stop_and_wait(Some("deleted".into()), Some(timeout))
            .await;
        let _ = reply.send(Ok(()));
    });
}

fn connect(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    id: &SessionId,
    kind: AttemptKind,
) -> Result<ConnectOutcome, SupervisorError> {
    let entry = st.entry(id)?;
    if entry.view.state.is_live() {
        return Ok(ConnectOutcome::AlreadyLive {
            session: entry.view.clone(),
        });
    }
    if let Some((start_at, _)) = &entry.pending {
        return Ok(ConnectOutcome::Queued {
            session: entry.view.clone(),
            start_at: *start_at,
        });
    }
    let request = AttemptRequest {
        tenant: entry.record.tenant.clone(),
        session: id.clone(),
        kind,
    };
    let now = st.now();
    match st.admission.admit(&request, now) {
        Decision::Denied {
            reason,
            wait,
            block_until,
        } => {
            tracing::info!(tenant = %request.tenant, session = %id, reason = ?reason, block_until = %block_until, "connection denied");
            Ok(ConnectOutcome::Denied {
                reason,
                wait,
                block_until,
            })
        }
        Decision::Admitted { start_at } => {
            st.save(id, |r| r.desired = DesiredState::Running)?;
            tracing::info!(tenant = %request.tenant, session = %id, kind = ?kind, start_at = %start_at, "connection admitted");
            schedule(myself, st, id, start_at);
            Ok(ConnectOutcome::Queued {
                session: st.entry(id)?.view.clone(),
                start_at,
            })
        }
    }
}

/// Arranges for `StartAttempt` at `at`.
fn schedule(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    id: &SessionId,
    at: Timestamp,
) {
    let delay = at.since(st.now());
    st.cancel_pending(id);
    let Some(entry) = st.sessions.get_mut(id) else {
        return;
    };
    let epoch = entry.epoch;
    let sid = id.clone();
    let timer = myself.send_after(delay, move || SupervisorMsg::StartAttempt {
        id: sid,
        epoch,
    });
    entry.pending = Some((at, timer));
}

async fn start_attempt(
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
    entry.pending = None;
    let actor = match spawn_session(myself, st, id).await {
        Ok(actor) => actor,
        Err(_) => return,
    };
    match ractor::call_t!(
        actor,
        SessionMsg::Connect,
        START_CALL_TIMEOUT.as_millis() as u64
    ) {
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

async fn stop_session(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    id: SessionId,
    logout: bool,
    reply: ractor::RpcReplyPort<Result<SessionView, SupervisorError>>,
) {
    st.cancel_pending(&id);
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

fn on_session_changed(
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
    let reason = view.state.reason();
    tracing::debug!(session = %id, from = from.name(), to = view.state.name(), "registry updated");
    entry.view = view;
    let Some(reason) = reason else {
        return;
    };
    let result = st.save(&id, |r| {
        r.last_reason = Some(reason);
        if reason.ends_desire_to_run() {
            r.desired = DesiredState::Stopped;
        }
    });
    if let Err(e) = result {
        tracing::error!(session = %id, error = %e, "could not record the session's stop");
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
            tracing::info!(tenant = %entry.record.tenant, session = %id, delay_ms = delay.as_millis() as u64, "session actor restart scheduled");
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
        if let Err(e) = connect(myself, st, id, AttemptKind::CrashRestart) {
            tracing::warn!(session = %id, error = %e, "could not reconnect the restarted session");
        }
    }
}

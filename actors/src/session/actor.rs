//! The tenant session actor: owns the session's state and at most one engine
//! driver, feeds every command, engine event and timer through
//! [`machine::next`](super::machine::next), keeps the [`Machine`] it returns
//! and executes the effects it returns. It decides nothing itself: even a
//! stream error 515 (restart or ban) is the machine's call. Every transition
//! is traced, published on the bus and reported to the supervisor.
//!
//! Starting a driver can take seconds (a browser launch), so it runs in a
//! task that reports back with `DriverStarted`; the mailbox stays responsive.
//! Each driver gets a generation number: events of an older driver, and
//! timers of an older QR window, are ignored.

use super::machine::{self, Effect, Event, Machine, Refusal, SessionState, Timing, Transition};
use crate::bus::{AckEvent, Bus, BusEvent, MessageEvent, PairingCodeEvent, TransitionEvent};
use crate::clock::Timer;
use crate::clock::{SharedClock, Timestamp};
use crate::engine::{Driver, DriverControl, DriverSpec, Engine, EngineError, EngineEvent};
use crate::ids::{SessionId, TenantId};
use crate::store::SessionRecord;
use crate::supervisor::SupervisorMsg;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A snapshot of a session, as callers see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionView {
    pub id: SessionId,
    pub tenant: TenantId,
    pub name: String,
    #[serde(flatten)]
    pub state: SessionState,
    pub since: Timestamp,
    /// The pairing code the session shows beside its QR, if one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairing_code: Option<PairingCode>,
    /// While READY: when the engine confirmed the pairing is on disk (a
    /// kill of everything from then on comes back READY without a QR).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairing_durable_at: Option<Timestamp>,
}

/// A code that links the account by typing it on the phone instead of
/// scanning the QR (`POST /api/v1/sessions/{id}/pairing-code`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairingCode {
    /// `XXXX-XXXX`.
    pub code: String,
    /// The phone number it links (digits).
    pub phone: String,
    /// When a fresh code replaces it (WhatsApp's own rhythm: 180 s).
    pub expires_at: Timestamp,
}

/// How long a pairing code is shown before a fresh one is asked for
/// (whatsapp-web.js `requestPairingCode`, WhatsApp's default).
pub const PAIRING_CODE_TTL: Duration = Duration::from_secs(180);

/// What a session actor needs from its surroundings.
#[derive(Clone)]
pub struct SessionEnv {
    pub clock: SharedClock,
    pub bus: Bus,
    pub qr_window: Duration,
    pub qr_code_ttl: Duration,
    /// Parent of every session's engine state directory.
    pub profiles_dir: PathBuf,
    /// How long a driver gets to stop before it is dropped (killed).
    pub driver_stop_timeout: Duration,
    /// A first 515 this soon after a scan is a restart, not a ban.
    pub restart_grace: Duration,
    /// How long a pairing code is shown before a fresh one is asked for
    /// ([`PAIRING_CODE_TTL`]; shorter only in tests).
    pub pairing_code_ttl: Duration,
    /// The outbox; `None` where nothing is sent from a queue (tests).
    pub messages: Option<Arc<dyn crate::store::MessageStore>>,
    pub pacing: crate::messaging::Pacing,
    /// How long "typing…" shows before each send (`messaging.typing_chars_per_second`).
    pub typing: crate::messaging::Typing,
    /// A message that answers an incoming one marks its chat read first
    /// (`messaging.send_seen`).
    pub send_seen: bool,
    /// Messages to numbers this one never talked to, per rolling 24 h
    /// (`messaging.new_contacts_per_day` and its warm-up).
    pub contact_budget: crate::messaging::budget::ContactBudget,
    /// Restarts a browser that outgrew `engine.max_session_memory`.
    pub memory: super::MemoryGuard,
}

impl SessionEnv {
    /// The environment `serve` gives its sessions.
    pub fn from_config(
        config: &crate::config::Config,
        clock: SharedClock,
        bus: Bus,
        messages: Option<Arc<dyn crate::store::MessageStore>>,
    ) -> SessionEnv {
        SessionEnv {
            clock,
            bus,
            qr_window: config.engine.qr_window,
            qr_code_ttl: config.engine.qr_code_ttl,
            profiles_dir: config.storage.data_dir.join("profiles"),
            driver_stop_timeout: Duration::from_secs(10).min(config.server.shutdown_timeout),
            restart_grace: config.antiban.restart_grace,
            pairing_code_ttl: PAIRING_CODE_TTL,
            messages,
            pacing: config.messaging.pacing(),
            typing: config.messaging.typing(),
            send_seen: config.messaging.send_seen,
            contact_budget: config.messaging.contact_budget(),
            memory: super::MemoryGuard::from_config(&config.engine),
        }
    }
}

pub struct SessionArgs {
    pub record: SessionRecord,
    /// `None` when this server has no engine of the record's kind.
    pub engine: Option<Arc<dyn Engine>>,
    pub initial: SessionState,
    pub env: SessionEnv,
    pub(crate) supervisor: Option<ActorRef<SupervisorMsg>>,
}

pub enum SessionMsg {
    /// Start a driver unless one is live; replies with the resulting view.
    Connect(RpcReplyPort<SessionView>),
    /// Stop, keeping the pairing.
    Stop(RpcReplyPort<SessionView>),
    /// Unpair and delete the profile.
    Logout(RpcReplyPort<SessionView>),
    /// Discard the pairing and start over; refused on a paired session.
    ForceNew(RpcReplyPort<Result<SessionView, Refusal>>),
    Get(RpcReplyPort<SessionView>),
    /// The supervisor changed the stopped session's record (name, proxy):
    /// the next driver starts with it.
    Reconfigure(SessionRecord),
    SendText {
        to: String,
        text: String,
        reply: RpcReplyPort<Result<String, EngineError>>,
    },
    /// Ask the engine for a pairing code for `phone`; only while showing a
    /// QR. The supervisor has admitted the request.
    PairingCode {
        phone: String,
        reply: RpcReplyPort<Result<PairingCode, PairingCodeError>>,
    },
    /// The shown pairing code is due for a fresh one.
    PairingCodeDue {
        generation: u64,
    },
    DriverStarted {
        generation: u64,
        result: Result<Driver, EngineError>,
    },
    Engine {
        generation: u64,
        event: EngineEvent,
    },
    DriverGone {
        generation: u64,
    },
    QrWindowExpired {
        generation: u64,
    },
    /// New messages are queued for this session.
    Outbox,
    /// The paced send timer fired.
    SendNext {
        generation: u64,
    },
    /// `message` has been shown being typed long enough: send it, if the
    /// driver that showed it (`driver`) is still the session's.
    Typed {
        generation: u64,
        message: String,
        driver: u64,
    },
    /// Time to read the browser's memory (the memory guard).
    MemoryCheck {
        generation: u64,
    },
}

pub struct SessionActor;

pub struct SessionActorState {
    pub(super) record: SessionRecord,
    engine: Option<Arc<dyn Engine>>,
    pub(super) env: SessionEnv,
    supervisor: Option<ActorRef<SupervisorMsg>>,
    /// The session's state and the machine's memory, as [`machine::next`]
    /// last returned them.
    pub(super) machine: Machine,
    pub(super) since: Timestamp,
    pub(super) driver: Option<Box<dyn DriverControl>>,
    pub(super) driver_generation: u64,
    qr_generation: u64,
    qr_timer: Option<Timer<SessionMsg>>,
    /// The driver start in flight, if any (a browser launching).
    launch: Option<tokio::task::JoinHandle<()>>,
    pairing_code: Option<PairingCode>,
    pairing_durable_at: Option<Timestamp>,
    pairing_generation: u64,
    pairing_timer: Option<Timer<SessionMsg>>,
    /// The paced sender's timer and memory.
    pub(super) outgoing: super::outgoing::Outgoing,
    /// The memory guard's timer, and whether it holds the queue.
    pub(super) memory: super::memory::MemoryWatch,
}

impl SessionActorState {
    fn view(&self) -> SessionView {
        SessionView {
            id: self.record.id.clone(),
            tenant: self.record.tenant.clone(),
            name: self.record.name.clone(),
            state: self.machine.state.clone(),
            since: self.since,
            pairing_code: self.pairing_code.clone(),
            pairing_durable_at: match self.machine.state {
                SessionState::Ready { .. } => self.pairing_durable_at,
                _ => None,
            },
        }
    }

    fn spec(&self) -> DriverSpec {
        DriverSpec {
            tenant: self.record.tenant.clone(),
            session: self.record.id.clone(),
            state_dir: self.env.profiles_dir.join(self.record.id.as_str()),
            user_agent: self.record.user_agent.clone(),
            proxy: self.record.proxy.clone(),
            cloud: self.record.cloud.clone(),
        }
    }

    fn timing(&self) -> Timing {
        Timing {
            now: self.env.clock.now(),
            qr_window: self.env.qr_window,
            qr_code_ttl: self.env.qr_code_ttl,
            restart_grace: self.env.restart_grace,
        }
    }
}

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionActorState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SessionMsg>,
        args: SessionArgs,
    ) -> Result<SessionActorState, ActorProcessingErr> {
        let since = args.env.clock.now();
        Ok(SessionActorState {
            record: args.record,
            engine: args.engine,
            env: args.env,
            supervisor: args.supervisor,
            machine: Machine::new(args.initial),
            since,
            driver: None,
            driver_generation: 0,
            qr_generation: 0,
            qr_timer: None,
            launch: None,
            pairing_code: None,
            pairing_durable_at: None,
            pairing_generation: 0,
            pairing_timer: None,
            outgoing: super::outgoing::Outgoing::default(),
            memory: super::memory::MemoryWatch::default(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<SessionMsg>,
        st: &mut SessionActorState,
    ) -> Result<(), ActorProcessingErr> {
        super::outgoing::recover(st);
        super::outgoing::schedule(&myself, st);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        msg: SessionMsg,
        st: &mut SessionActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionMsg::Connect(reply) => {
                apply(&myself, st, Event::Connect).await;
                let _ = reply.send(st.view());
            }
            SessionMsg::Stop(reply) => {
                apply(&myself, st, Event::Stop).await;
                let _ = reply.send(st.view());
            }
            SessionMsg::Logout(reply) => {
                apply(&myself, st, Event::Logout).await;
                let _ = reply.send(st.view());
            }
            SessionMsg::ForceNew(reply) => {
                let outcome = match apply(&myself, st, Event::ForceNew).await {
                    Transition::Refused(why) => Err(why),
                    _ => Ok(st.view()),
                };
                let _ = reply.send(outcome);
            }
            SessionMsg::Get(reply) => {
                let _ = reply.send(st.view());
            }
            SessionMsg::Reconfigure(record) => {
                if record.id == st.record.id {
                    st.record = record;
                }
            }
            SessionMsg::SendText { to, text, reply } => {
                let result = match (&st.machine.state, &st.driver) {
                    (SessionState::Ready { .. }, Some(driver)) => {
                        driver.send_text(&to, &text).await
                    }
                    _ => Err(EngineError::NotReady),
                };
                let _ = reply.send(result);
            }
            SessionMsg::PairingCode { phone, reply } => {
                let _ = reply.send(request_pairing_code(&myself, st, phone).await);
            }
            SessionMsg::PairingCodeDue { generation } => {
                if generation == st.pairing_generation {
                    pairing_code_due(st);
                }
            }
            SessionMsg::DriverStarted { generation, result } => {
                on_driver_started(&myself, st, generation, result).await;
            }
            SessionMsg::Engine { generation, event } => {
                if generation == st.driver_generation {
                    on_engine_event(&myself, st, event).await;
                }
            }
            SessionMsg::DriverGone { generation } => {
                if generation == st.driver_generation && st.machine.state.is_live() {
                    tracing::warn!(
                        tenant = %st.record.tenant,
                        session = %st.record.id,
                        "engine event stream closed without a disconnect"
                    );
                    let reason = machine::DisconnectReason::EngineError;
                    apply(&myself, st, Event::Disconnected { reason }).await;
                }
            }
            SessionMsg::QrWindowExpired { generation } => {
                if generation == st.qr_generation {
                    apply(&myself, st, Event::QrWindowExpired).await;
                }
            }
            SessionMsg::Outbox => super::outgoing::schedule(&myself, st),
            SessionMsg::SendNext { generation } => {
                super::outgoing::send_next(&myself, st, generation).await;
            }
            SessionMsg::Typed {
                generation,
                message,
                driver,
            } => {
                super::outgoing::typed(&myself, st, generation, &message, driver).await;
            }
            SessionMsg::MemoryCheck { generation } => {
                super::memory::check(&myself, st, generation).await;
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SessionMsg>,
        st: &mut SessionActorState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = st.qr_timer.take() {
            timer.abort();
        }
        st.outgoing.cancel();
        st.memory.cancel();
        // A launch still running would otherwise finish after we are gone
        // (or be cut by the process exiting) and leave its browser behind:
        // cancel it and wait, so the engine kills what it started.
        if let Some(launch) = st.launch.take() {
            launch.abort();
            let _ = launch.await;
        }
        stop_driver(st).await;
        Ok(())
    }
}

/// Runs one event through the machine and executes the outcome.
pub(super) async fn apply(
    myself: &ActorRef<SessionMsg>,
    st: &mut SessionActorState,
    event: Event,
) -> Transition {
    let transition = machine::next(&st.machine, &event, st.timing());
    match &transition {
        Transition::Moved { to, effects } => {
            let from = std::mem::replace(&mut st.machine, to.clone()).state;
            st.since = st.env.clock.now();
            if !matches!(st.machine.state, SessionState::Qr { .. }) {
                clear_pairing_code(st);
            }
            for effect in effects {
                execute(myself, st, effect).await;
            }
            let ready = matches!(st.machine.state, SessionState::Ready { .. });
            if ready && !matches!(from, SessionState::Ready { .. }) {
                super::memory::watch(myself, st);
            } else if !ready {
                st.memory.cancel();
            }
            // Published once its effects are done: DISCONNECTED means the
            // driver is closed (and the profile gone, after a logout).
            publish(myself, st, from);
            if ready {
                // As the supervisor records it: the warm-up of the
                // new-contact budget counts from here.
                st.record.mark_paired(st.env.clock.now());
                super::outgoing::schedule(myself, st);
            }
        }
        Transition::Ignored(why) => tracing::debug!(
            tenant = %st.record.tenant,
            session = %st.record.id,
            state = st.machine.state.name(),
            event = ?event,
            ignored = ?why,
            "session event ignored"
        ),
        Transition::Refused(why) => tracing::info!(
            tenant = %st.record.tenant,
            session = %st.record.id,
            state = st.machine.state.name(),
            refused = ?why,
            "session command refused"
        ),
    }
    transition
}

fn publish(myself: &ActorRef<SessionMsg>, st: &SessionActorState, from: SessionState) {
    let reason = st.machine.state.reason();
    tracing::info!(
        tenant = %st.record.tenant,
        session = %st.record.id,
        from = from.name(),
        to = st.machine.state.name(),
        reason = reason.map(|r| r.as_str()),
        "session transition"
    );
    // The supervisor hears first: whoever sees the bus event and then asks
    // the supervisor gets an answer that already includes this transition.
    if let Some(sup) = &st.supervisor {
        let _ = sup.cast(SupervisorMsg::SessionChanged {
            actor: myself.get_id(),
            view: st.view(),
            from: from.clone(),
        });
    }
    st.env.bus.publish(BusEvent::Transition(TransitionEvent {
        tenant: st.record.tenant.clone(),
        session: st.record.id.clone(),
        from,
        to: st.machine.state.clone(),
        reason,
        at: st.since,
    }));
}

async fn execute(myself: &ActorRef<SessionMsg>, st: &mut SessionActorState, effect: &Effect) {
    match effect {
        Effect::StartDriver => start_driver(myself, st),
        Effect::StopDriver => stop_driver(st).await,
        Effect::LogoutDriver => {
            if let Some(driver) = st.driver.as_ref() {
                let out = tokio::time::timeout(st.env.driver_stop_timeout, driver.logout()).await;
                if !matches!(out, Ok(Ok(()))) {
                    tracing::warn!(session = %st.record.id, "engine logout did not complete");
                }
            }
            stop_driver(st).await;
        }
        Effect::WipeProfile => {
            if let Some(engine) = &st.engine {
                if let Err(e) = engine.forget(&st.spec()).await {
                    tracing::warn!(session = %st.record.id, error = %e, "could not delete the profile");
                }
            }
        }
        Effect::StartQrTimer { at } => {
            st.qr_generation += 1;
            let generation = st.qr_generation;
            let delay = at.since(st.env.clock.now());
            let timer =
                myself.send_after(delay, move || SessionMsg::QrWindowExpired { generation });
            if let Some(old) = st.qr_timer.replace(timer) {
                old.abort();
            }
        }
        Effect::CancelQrTimer => {
            st.qr_generation += 1;
            if let Some(timer) = st.qr_timer.take() {
                timer.abort();
            }
        }
    }
}

/// Why a pairing code could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingCodeError {
    #[error("the session is not showing a QR")]
    NotShowingQr,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

async fn request_pairing_code(
    myself: &ActorRef<SessionMsg>,
    st: &mut SessionActorState,
    phone: String,
) -> Result<PairingCode, PairingCodeError> {
    let (SessionState::Qr { .. }, Some(driver)) = (&st.machine.state, &st.driver) else {
        return Err(PairingCodeError::NotShowingQr);
    };
    let code = driver.request_pairing_code(&phone).await?;
    // The page may have been scanned meanwhile.
    if !matches!(st.machine.state, SessionState::Qr { .. }) {
        return Err(PairingCodeError::NotShowingQr);
    }
    let shown = PairingCode {
        code,
        phone,
        expires_at: st.env.clock.now().plus(st.env.pairing_code_ttl),
    };
    st.pairing_code = Some(shown.clone());
    st.pairing_generation += 1;
    let generation = st.pairing_generation;
    let timer = myself.send_after(st.env.pairing_code_ttl, move || {
        SessionMsg::PairingCodeDue { generation }
    });
    if let Some(old) = st.pairing_timer.replace(timer) {
        old.abort();
    }
    tracing::info!(tenant = %st.record.tenant, session = %st.record.id, expires_at = %shown.expires_at, "pairing code shown");
    if let Some(sup) = &st.supervisor {
        let _ = sup.cast(SupervisorMsg::SessionChanged {
            actor: myself.get_id(),
            view: st.view(),
            from: st.machine.state.clone(),
        });
    }
    st.env.bus.publish(BusEvent::PairingCode(PairingCodeEvent {
        tenant: st.record.tenant.clone(),
        session: st.record.id.clone(),
        code: shown.code.clone(),
        expires_at: shown.expires_at,
        at: st.env.clock.now(),
    }));
    Ok(shown)
}

/// A shown code expired while the QR is still up: a fresh one is asked for
/// through the supervisor, so the anti-ban ledger admits it too.
fn pairing_code_due(st: &mut SessionActorState) {
    let (SessionState::Qr { .. }, Some(shown), Some(sup)) =
        (&st.machine.state, &st.pairing_code, &st.supervisor)
    else {
        return;
    };
    let _ = sup.cast(SupervisorMsg::RefreshPairingCode {
        id: st.record.id.clone(),
        phone: shown.phone.clone(),
    });
}

fn clear_pairing_code(st: &mut SessionActorState) {
    st.pairing_code = None;
    st.pairing_generation += 1;
    if let Some(timer) = st.pairing_timer.take() {
        timer.abort();
    }
}

fn start_driver(myself: &ActorRef<SessionMsg>, st: &mut SessionActorState) {
    st.driver_generation += 1;
    let generation = st.driver_generation;
    let Some(engine) = st.engine.clone() else {
        let result = Err(EngineError::Unavailable(st.record.engine.as_str()));
        let _ = myself.cast(SessionMsg::DriverStarted { generation, result });
        return;
    };
    let spec = st.spec();
    let me = myself.clone();
    st.launch = Some(tokio::spawn(async move {
        let result = engine.start(&spec).await;
        // If the actor is gone, nobody will own this driver: close it.
        if let Err(ractor::MessagingErr::SendErr(SessionMsg::DriverStarted {
            result: Ok(d), ..
        })) = me.cast(SessionMsg::DriverStarted { generation, result })
        {
            let _ = d.control.stop().await;
        }
    }));
}

async fn stop_driver(st: &mut SessionActorState) {
    st.driver_generation += 1;
    if let Some(driver) = st.driver.take() {
        let out = tokio::time::timeout(st.env.driver_stop_timeout, driver.stop()).await;
        if !matches!(out, Ok(Ok(()))) {
            tracing::warn!(session = %st.record.id, "driver did not stop cleanly; dropping it");
        }
    }
}

async fn on_driver_started(
    myself: &ActorRef<SessionMsg>,
    st: &mut SessionActorState,
    generation: u64,
    result: Result<Driver, EngineError>,
) {
    let current = generation == st.driver_generation && st.machine.state.is_live();
    match result {
        Ok(driver) if current => {
            let Driver {
                mut events,
                control,
            } = driver;
            st.driver = Some(control);
            let me = myself.clone();
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    if me.cast(SessionMsg::Engine { generation, event }).is_err() {
                        return;
                    }
                }
                let _ = me.cast(SessionMsg::DriverGone { generation });
            });
        }
        Ok(stale) => {
            let _ = stale.control.stop().await;
        }
        Err(e) if current => {
            tracing::warn!(
                tenant = %st.record.tenant,
                session = %st.record.id,
                error = %e,
                "engine failed to start"
            );
            let reason = machine::DisconnectReason::EngineError;
            apply(myself, st, Event::Disconnected { reason }).await;
        }
        Err(_) => {}
    }
}

async fn on_engine_event(
    myself: &ActorRef<SessionMsg>,
    st: &mut SessionActorState,
    event: EngineEvent,
) {
    let machine_event = match event {
        EngineEvent::Qr { code } => Event::Qr { code },
        EngineEvent::Authenticated => Event::Authenticated,
        EngineEvent::Ready { me } => {
            st.pairing_durable_at = None;
            Event::Ready { me }
        }
        EngineEvent::PairingDurable => {
            if matches!(st.machine.state, SessionState::Ready { .. })
                && st.pairing_durable_at.is_none()
            {
                let now = st.env.clock.now();
                st.pairing_durable_at = Some(now);
                let window_ms = now.since(st.since).as_millis() as u64;
                tracing::info!(tenant = %st.record.tenant, session = %st.record.id, window_ms, "pairing durable on disk");
                st.env
                    .bus
                    .publish(BusEvent::PairingDurable(crate::bus::PairingDurableEvent {
                        tenant: st.record.tenant.clone(),
                        session: st.record.id.clone(),
                        ready_at: st.since,
                        at: now,
                    }));
                if let Some(sup) = &st.supervisor {
                    let _ = sup.cast(SupervisorMsg::SessionChanged {
                        actor: myself.get_id(),
                        view: st.view(),
                        from: st.machine.state.clone(),
                    });
                }
            }
            return;
        }
        EngineEvent::Disconnected { reason, detail } => {
            tracing::info!(session = %st.record.id, reason = reason.as_str(), detail, "engine disconnected");
            Event::Disconnected { reason }
        }
        EngineEvent::StreamError { code: 515 } => {
            let transition = apply(myself, st, Event::StreamError515).await;
            trace_515(st, &transition);
            return;
        }
        EngineEvent::StreamError { code } => {
            tracing::warn!(session = %st.record.id, code, "stream error");
            Event::Disconnected {
                reason: machine::DisconnectReason::EngineError,
            }
        }
        EngineEvent::MessageIn {
            id,
            from,
            jid,
            text,
        } => {
            let record = crate::store::IncomingRecord {
                seq: 0,
                id,
                tenant: st.record.tenant.clone(),
                session: st.record.id.clone(),
                from,
                jid: Some(jid),
                text,
                at: st.env.clock.now(),
            };
            if let Some(store) = &st.env.messages {
                match store.store_incoming(&record) {
                    Ok(crate::store::Incoming::New(_)) => {}
                    Ok(crate::store::Incoming::Duplicate(seq)) => {
                        tracing::debug!(session = %st.record.id, seq, "incoming message reported again: stored once, announced once");
                        return;
                    }
                    Err(e) => {
                        tracing::error!(session = %st.record.id, error = %e, "could not store an incoming message");
                    }
                }
            }
            announce_incoming(st, record);
            return;
        }
        EngineEvent::MessageStored(record) => {
            announce_incoming(st, record);
            return;
        }
        EngineEvent::Failed { message_id, error } => {
            super::outgoing::on_failed(st, &message_id, error);
            return;
        }
        EngineEvent::Ack { message_id, ack } => {
            super::outgoing::on_ack(st, &message_id, ack);
            st.env.bus.publish(BusEvent::Ack(AckEvent {
                tenant: st.record.tenant.clone(),
                session: st.record.id.clone(),
                message_id,
                ack,
                at: st.env.clock.now(),
            }));
            return;
        }
    };
    apply(myself, st, machine_event).await;
}

/// Tells the bus (auto-replies, webhooks, WebSocket) of a stored
/// incoming message.
fn announce_incoming(st: &SessionActorState, record: crate::store::IncomingRecord) {
    st.env.bus.publish(BusEvent::MessageIn(MessageEvent {
        tenant: st.record.tenant.clone(),
        session: st.record.id.clone(),
        id: record.id,
        from: record.from,
        jid: record.jid.unwrap_or_default(),
        text: record.text,
        at: record.at,
    }));
}

/// Says how the machine read a 515 (restart or ban).
fn trace_515(st: &SessionActorState, transition: &Transition) {
    let Transition::Moved { to, .. } = transition else {
        return;
    };
    if to.state.reason() == Some(machine::DisconnectReason::Banned) {
        tracing::warn!(session = %st.record.id, "stream error 515: banned");
    } else {
        tracing::info!(session = %st.record.id, "stream error 515 right after the scan: restart required, not a ban");
    }
}

#[cfg(test)]
#[path = "actor_tests.rs"]
mod tests;

//! A session's paced sender: takes the next queued message of the outbox
//! when the session is READY and the pacing allows, and hands it to the
//! engine with a durable write on each side of the hand-off:
//!
//! 1. `queued → sending` is written before the engine is called;
//! 2. `sending → sent` (with the engine's id) after it answers.
//!
//! A crash between the two leaves `sending` in the store; on start the actor
//! turns those into `unknown` rather than sending them again: a message is
//! never sent twice, and never silently lost. Messages wait (they are not
//! failed) while the session is not READY.

use super::actor::{SessionActorState, SessionMsg};
use super::machine::SessionState;
use crate::bus::{BusEvent, MessageStatusEvent};
use crate::clock::Timer;
use crate::clock::Timestamp;
use crate::engine::EngineError;
use crate::store::{MessageRecord, MessageStatus};
use ractor::ActorRef;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::VecDeque;
use std::time::Duration;

/// How long one hand-off to the engine may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Outgoing {
    generation: u64,
    timer: Option<Timer<SessionMsg>>,
    recent: VecDeque<Timestamp>,
    rng: StdRng,
}

impl Default for Outgoing {
    fn default() -> Self {
        Self {
            generation: 0,
            timer: None,
            recent: VecDeque::new(),
            rng: StdRng::from_os_rng(),
        }
    }
}

impl Outgoing {
    pub fn cancel(&mut self) {
        self.generation += 1;
        if let Some(t) = self.timer.take() {
            t.abort();
        }
    }
}

/// After a crash: whatever was being handed over is `unknown`.
pub fn recover(st: &mut SessionActorState) {
    let Some(repo) = st.env.messages.clone() else {
        return;
    };
    let now = st.env.clock.now();
    match repo.in_flight(&st.record.id) {
        Ok(stuck) => {
            for mut m in stuck {
                tracing::warn!(session = %st.record.id, message = %m.id, "message was being sent when the process stopped: marked unknown, not resent");
                m.status = MessageStatus::Unknown;
                m.error = Some(
                    "interrupted during hand-off to the engine; it may or may not have been sent"
                        .into(),
                );
                m.updated_at = now;
                save(st, &m);
            }
        }
        Err(e) => {
            tracing::error!(session = %st.record.id, error = %e, "could not read in-flight messages")
        }
    }
}

/// Arms the send timer for the next queued message, unless one is armed or
/// the session is not READY.
pub fn schedule(myself: &ActorRef<SessionMsg>, st: &mut SessionActorState) {
    let Some(repo) = st.env.messages.clone() else {
        return;
    };
    if st.outgoing.timer.is_some() || !matches!(st.machine.state, SessionState::Ready { .. }) {
        return;
    }
    let next = match repo.next_queued(&st.record.id, st.env.clock.now()) {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(session = %st.record.id, error = %e, "could not read the outbox");
            return;
        }
    };
    let now = st.env.clock.now();
    let paced = st
        .env
        .pacing
        .next_send(&mut st.outgoing.recent, now, &mut st.outgoing.rng);
    let at = next.send_at.map_or(paced, |s| s.max(paced));
    st.outgoing.generation += 1;
    let generation = st.outgoing.generation;
    st.outgoing.timer =
        Some(myself.send_after(at.since(now), move || SessionMsg::SendNext { generation }));
}

/// Writes a status change, then announces it on the bus.
fn save(st: &SessionActorState, m: &MessageRecord) -> bool {
    let Some(repo) = &st.env.messages else {
        return false;
    };
    match repo.update(m) {
        Ok(()) => {
            st.env
                .bus
                .publish(BusEvent::MessageStatus(MessageStatusEvent {
                    tenant: m.tenant.clone(),
                    session: m.session.clone(),
                    message_id: m.id.clone(),
                    status: m.status,
                    at: m.updated_at,
                }));
            true
        }
        Err(e) => {
            tracing::error!(message = %m.id, error = %e, "could not record the message's status");
            false
        }
    }
}

pub async fn send_next(myself: &ActorRef<SessionMsg>, st: &mut SessionActorState, generation: u64) {
    if generation != st.outgoing.generation {
        return;
    }
    st.outgoing.timer = None;
    let Some(repo) = st.env.messages.clone() else {
        return;
    };
    let Ok(Some(mut m)) = repo.next_queued(&st.record.id, st.env.clock.now()) else {
        return;
    };
    let now = st.env.clock.now();
    if m.send_at.is_some_and(|s| s > now) {
        schedule(myself, st);
        return;
    }
    let (SessionState::Ready { .. }, Some(_)) = (&st.machine.state, &st.driver) else {
        return; // waits for READY; scheduled again on the transition
    };
    m.status = MessageStatus::Sending;
    m.updated_at = now;
    if !save(st, &m) {
        return;
    }
    let result = match st.driver.as_ref() {
        Some(driver) => tokio::time::timeout(SEND_TIMEOUT, driver.send_text(&m.to, &m.text))
            .await
            .unwrap_or(Err(EngineError::Timeout("sending a message"))),
        None => Err(EngineError::NotReady),
    };
    let now = st.env.clock.now();
    st.outgoing.recent.push_back(now);
    m.updated_at = now;
    match result {
        Ok(engine_id) => {
            m.status = MessageStatus::Sent;
            m.engine_id = Some(engine_id);
        }
        // Not handed over: it can wait for the next READY.
        Err(EngineError::NotReady) => m.status = MessageStatus::Queued,
        // WhatsApp's answer, not a fault: retrying cannot help.
        Err(EngineError::NotOnWhatsapp) => {
            m.status = MessageStatus::Failed;
            m.error = Some("not_on_whatsapp".into());
        }
        Err(e) => {
            m.status = MessageStatus::Unknown;
            m.error = Some(e.to_string());
        }
    }
    tracing::info!(tenant = %st.record.tenant, session = %st.record.id, message = %m.id, status = ?m.status, "message handed to the engine");
    save(st, &m);
    schedule(myself, st);
}

/// The engine moved a sent message's ack (-1 error, 1 server, 2 device,
/// 3 read, 4 played); statuses only move forward.
pub fn on_ack(st: &SessionActorState, engine_id: &str, ack: i8) {
    let Some(repo) = &st.env.messages else {
        return;
    };
    let Ok(Some(mut m)) = repo.by_engine_id(&st.record.id, engine_id) else {
        return;
    };
    let status = match ack {
        -1 => MessageStatus::Failed,
        2 => MessageStatus::Delivered,
        3 => MessageStatus::Read,
        4 => MessageStatus::Played,
        _ => MessageStatus::Sent,
    };
    let rank = |s: MessageStatus| match s {
        MessageStatus::Sent => 1,
        MessageStatus::Delivered => 2,
        MessageStatus::Read => 3,
        MessageStatus::Played => 4,
        _ => 0,
    };
    if status == MessageStatus::Failed || rank(status) > rank(m.status) {
        if status == MessageStatus::Failed {
            m.error = Some("WhatsApp reported an error for this message".into());
        }
        m.status = status;
        m.updated_at = st.env.clock.now();
        save(st, &m);
    }
}

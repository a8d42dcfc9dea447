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
//!
//! Before the hand-off the sender shows "typing…" in the chat for the text's
//! typing time ([`Typing`](crate::messaging::Typing)) on the actor's timer,
//! and "paused" after it; a reply to an incoming message first marks that
//! chat read (`messaging.send_seen`). A chat state or seen mark that fails
//! is logged, never a reason not to send.
//!
//! A message to a number the session never exchanged a message with (per
//! `store/contacts.rs`) first asks the new-contact budget
//! ([`ContactBudget`]): over it, the message becomes `deferred` until the
//! budget has room, keeping its place in the queue, and the messages
//! behind it (to known contacts, or due earlier) go first. The count is
//! the store's, so a restart resets nothing. A verification code's
//! message was admitted against that budget when it was asked for, so it
//! is never deferred; one that expires before its turn is failed
//! (`expired`), never sent stale.
//!
//! A cloud session (Meta's Cloud API) is the official API, not a person at
//! a phone: no human pacing, no typing, no seen marks and no new-contact
//! budget. Its own limits (throughput per number, pair rate per recipient)
//! are the engine's, which answers [`EngineError::RateLimited`] before Meta
//! would; such a message is deferred (`rate_limited`) for the engine's
//! backoff and keeps its place.

use super::actor::{SessionActorState, SessionMsg};
use super::machine::SessionState;
use crate::bus::{BusEvent, MessageStatusEvent};
use crate::clock::Timer;
use crate::clock::Timestamp;
use crate::engine::{ChatState, EngineError, EngineKind};
use crate::messaging::budget::{ContactBudget, Verdict, DAY};
use crate::store::{Deferral, DeferralReason, MessageRecord, MessageStatus};
use ractor::ActorRef;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::VecDeque;
use std::time::Duration;

/// How long one hand-off to the engine may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a chat state or seen mark may take before it is given up.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Outgoing {
    generation: u64,
    timer: Option<Timer<SessionMsg>>,
    /// The armed timer is a message's typing time (it goes out when it
    /// fires), not the wait for the next one.
    typing: bool,
    /// The armed timer waits for a message scheduled later than the
    /// pacing would send it (its `send_at`, or a deferral's next try), to
    /// this time: a message queued meanwhile that is due sooner re-arms it.
    /// A wait the pacing set is never re-armed (a new draw would shorten
    /// it).
    scheduled_wait: Option<Timestamp>,
    recent: VecDeque<Timestamp>,
    rng: StdRng,
}

impl Default for Outgoing {
    fn default() -> Self {
        Self {
            generation: 0,
            timer: None,
            typing: false,
            scheduled_wait: None,
            recent: VecDeque::new(),
            rng: StdRng::from_os_rng(),
        }
    }
}

impl Outgoing {
    pub fn cancel(&mut self) {
        self.generation += 1;
        self.typing = false;
        self.scheduled_wait = None;
        if let Some(t) = self.timer.take() {
            t.abort();
        }
    }

    /// Whether a message is being shown typed (it goes out next).
    pub fn typing(&self) -> bool {
        self.typing
    }

    /// When the last message was handed to the engine, if one was.
    pub fn last_hand_off(&self) -> Option<Timestamp> {
        self.recent.back().copied()
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
/// the session is not READY. An armed wait for a message scheduled later
/// gives way to a message due sooner (one queued meanwhile).
pub fn schedule(myself: &ActorRef<SessionMsg>, st: &mut SessionActorState) {
    let Some(repo) = st.env.messages.clone() else {
        return;
    };
    if (st.outgoing.timer.is_some() && st.outgoing.scheduled_wait.is_none())
        || !matches!(st.machine.state, SessionState::Ready { .. })
        || st.memory.holds_sends()
    {
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
    let paced = match st.record.engine {
        EngineKind::Cloud => now,
        EngineKind::Webjs => {
            st.env
                .pacing
                .next_send(&mut st.outgoing.recent, now, &mut st.outgoing.rng)
        }
    };
    let at = next.send_at.map_or(paced, |s| s.max(paced));
    if st.outgoing.timer.is_some() && st.outgoing.scheduled_wait.is_some_and(|wait| wait <= at) {
        return; // the armed wait comes first
    }
    if let Some(armed) = st.outgoing.timer.take() {
        armed.abort();
    }
    st.outgoing.scheduled_wait = next.send_at.filter(|s| *s > paced).map(|_| at);
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
                    otp: m.otp.clone(),
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
    st.outgoing.typing = false;
    st.outgoing.scheduled_wait = None;
    if st.memory.holds_sends() {
        return; // the browser restarts first; scheduled again on READY
    }
    let Some(repo) = st.env.messages.clone() else {
        return;
    };
    let Ok(Some(m)) = repo.next_queued(&st.record.id, st.env.clock.now()) else {
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
    if st.record.engine == EngineKind::Cloud {
        hand_off(myself, st, m).await;
        return;
    }
    let Some(m) = within_budget(myself, st, m, now) else {
        return;
    };
    mark_seen(st, &m).await;
    let Some(typing) = st.env.typing.duration(&m.text) else {
        hand_off(myself, st, m).await;
        return;
    };
    // A person types before they send: "typing…" for as long as the text
    // takes, then the send, on the actor's own timer (the mailbox stays free).
    // The message stays `queued` meanwhile: a crash while typing loses
    // nothing and sends nothing.
    signal(st, &m, ChatState::Composing).await;
    st.outgoing.generation += 1;
    let generation = st.outgoing.generation;
    let (message, driver) = (m.id.clone(), st.driver_generation);
    tracing::debug!(session = %st.record.id, message = %m.id, typing_ms = typing.as_millis() as u64, "typing before the send");
    st.outgoing.timer = Some(myself.send_after(typing, move || SessionMsg::Typed {
        generation,
        message,
        driver,
    }));
    st.outgoing.typing = true;
}

/// `m`, if the new-contact budget lets it go at `now`; otherwise it is
/// deferred (written and announced), the next message is scheduled and
/// `None` is the answer. A known recipient is never counted.
fn within_budget(
    myself: &ActorRef<SessionMsg>,
    st: &mut SessionActorState,
    mut m: MessageRecord,
    now: Timestamp,
) -> Option<MessageRecord> {
    let repo = st.env.messages.clone()?;
    if m.otp.is_some() {
        // A code was admitted against this budget when it was asked for
        // (`otp/service.rs`); deferred, it would expire in the queue.
        return Some(m);
    }
    let session = st.record.id.clone();
    let read = repo.is_known(&session, &m.to).and_then(|known| {
        if known {
            return Ok(None);
        }
        repo.new_contact_sends(&session, now.minus(DAY)).map(Some)
    });
    let recent = match read {
        Ok(None) => return Some(m),
        Ok(Some(recent)) => recent,
        Err(e) => {
            // Not knowing the count is no licence to exceed it: it waits
            // for the next schedule.
            tracing::error!(session = %session, message = %m.id, error = %e, "could not read the new-contact budget");
            return None;
        }
    };
    let budget: ContactBudget = st.env.contact_budget;
    let paired_at = st.record.paired_at;
    let Verdict::Wait(at) = budget.verdict(&recent, paired_at, now) else {
        return Some(m);
    };
    tracing::info!(tenant = %st.record.tenant, session = %session, message = %m.id, used = recent.len(), allowance = budget.allowance(paired_at, now), next_attempt_at = %at, "new-contact budget spent: message deferred");
    m.status = MessageStatus::Deferred;
    m.send_at = Some(at);
    m.deferred = Some(Deferral {
        reason: DeferralReason::NewContactBudget,
        next_attempt_at: at,
    });
    m.updated_at = now;
    save(st, &m);
    schedule(myself, st);
    None
}

/// The typing time of `message` is over: it goes out, unless it left the
/// queue meanwhile (a campaign cancelled) or the page that showed it typing
/// is gone (then it is typed again on the next one).
pub async fn typed(
    myself: &ActorRef<SessionMsg>,
    st: &mut SessionActorState,
    generation: u64,
    message: &str,
    driver: u64,
) {
    if generation != st.outgoing.generation {
        return;
    }
    st.outgoing.timer = None;
    st.outgoing.typing = false;
    let Some(repo) = st.env.messages.clone() else {
        return;
    };
    let m = match repo.message(message) {
        Ok(Some(m)) if matches!(m.status, MessageStatus::Queued | MessageStatus::Deferred) => m,
        Ok(_) => {
            schedule(myself, st);
            return;
        }
        Err(e) => {
            tracing::error!(session = %st.record.id, message, error = %e, "could not read a typed message");
            return;
        }
    };
    let (SessionState::Ready { .. }, Some(_)) = (&st.machine.state, &st.driver) else {
        return; // waits for READY; scheduled again on the transition
    };
    if driver != st.driver_generation {
        schedule(myself, st);
        return;
    }
    hand_off(myself, st, m).await;
    signal_paused(st, message).await;
}

/// Shows a chat state for `m`'s recipient; a failure only costs the
/// signal, never the send.
async fn signal(st: &SessionActorState, m: &MessageRecord, state: ChatState) {
    let Some(driver) = st.driver.as_ref() else {
        return;
    };
    let out = tokio::time::timeout(SIGNAL_TIMEOUT, driver.chat_state(&m.to, state))
        .await
        .unwrap_or(Err(EngineError::Timeout("sending a chat state")));
    note_signal(st, &m.id, state.as_str(), out);
}

/// A reply reads what it answers first: the incoming message's chat is
/// marked seen (`messaging.send_seen`); a failure only costs the mark.
async fn mark_seen(st: &SessionActorState, m: &MessageRecord) {
    let (true, Some(chat), Some(driver)) = (st.env.send_seen, &m.answers, st.driver.as_ref())
    else {
        return;
    };
    let out = tokio::time::timeout(SIGNAL_TIMEOUT, driver.send_seen(chat))
        .await
        .unwrap_or(Err(EngineError::Timeout("marking a chat read")));
    note_signal(st, &m.id, "seen", out);
}

/// "typing…" ends once the message is out (whatever became of it).
async fn signal_paused(st: &SessionActorState, message: &str) {
    let Some(repo) = st.env.messages.clone() else {
        return;
    };
    if let Ok(Some(m)) = repo.message(message) {
        signal(st, &m, ChatState::Paused).await;
    }
}

fn note_signal(st: &SessionActorState, message: &str, what: &str, out: Result<(), EngineError>) {
    match out {
        Ok(()) => {}
        Err(EngineError::Unavailable(_)) => {
            tracing::debug!(session = %st.record.id, message, signal = what, "the engine shows no such signal")
        }
        Err(e) => {
            tracing::warn!(tenant = %st.record.tenant, session = %st.record.id, message, signal = what, error = %e, "signal not shown; the message goes out regardless")
        }
    }
}

/// Hands `m` to the engine, with a durable write on each side.
async fn hand_off(myself: &ActorRef<SessionMsg>, st: &mut SessionActorState, mut m: MessageRecord) {
    if m.expires_at.is_some_and(|at| at <= st.env.clock.now()) {
        // A verification code past its validity is worthless: failed,
        // never sent stale.
        m.status = MessageStatus::Failed;
        m.error = Some("expired".into());
        m.updated_at = st.env.clock.now();
        tracing::info!(tenant = %st.record.tenant, session = %st.record.id, message = %m.id, "message expired in the queue: failed, not sent");
        save(st, &m);
        schedule(myself, st);
        return;
    }
    m.status = MessageStatus::Sending;
    m.deferred = None; // it goes now
    m.updated_at = st.env.clock.now();
    if !save(st, &m) {
        return;
    }
    let result = match (st.driver.as_ref(), &m.template) {
        (Some(driver), None) => {
            tokio::time::timeout(SEND_TIMEOUT, driver.send_text(&m.to, &m.text))
                .await
                .unwrap_or(Err(EngineError::Timeout("sending a message")))
        }
        (Some(driver), Some(template)) => {
            tokio::time::timeout(SEND_TIMEOUT, driver.send_template(&m.to, template))
                .await
                .unwrap_or(Err(EngineError::Timeout("sending a template")))
        }
        (None, _) => Err(EngineError::NotReady),
    };
    let now = st.env.clock.now();
    st.outgoing.recent.push_back(now);
    m.updated_at = now;
    match result {
        Ok(engine_id) => {
            m.status = MessageStatus::Sent;
            m.engine_id = Some(engine_id);
        }
        // Not handed over: it can wait for the next READY (a refused token
        // disconnects the session; its messages wait for a new one).
        Err(EngineError::NotReady | EngineError::TokenInvalid) => m.status = MessageStatus::Queued,
        // Not sent, by a limit: again after the engine's backoff, in its
        // place in the queue.
        Err(EngineError::RateLimited { code, retry_after }) => {
            let at = now.plus(retry_after);
            tracing::info!(tenant = %st.record.tenant, session = %st.record.id, message = %m.id, code, next_attempt_at = %at, "rate limited: message deferred");
            m.status = MessageStatus::Deferred;
            m.send_at = Some(at);
            m.deferred = Some(Deferral {
                reason: DeferralReason::RateLimited,
                next_attempt_at: at,
            });
        }
        Err(EngineError::NeedsTemplate) => {
            m.status = MessageStatus::Failed;
            m.error = Some("needs_template".into());
        }
        Err(EngineError::Refused(code)) => {
            m.status = MessageStatus::Failed;
            m.error = Some(format!("cloud_error_{code}"));
        }
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
    let failed_now = status == MessageStatus::Failed && m.status != MessageStatus::Failed;
    if failed_now || rank(status) > rank(m.status) {
        if status == MessageStatus::Failed {
            m.error = Some("WhatsApp reported an error for this message".into());
        }
        m.status = status;
        m.updated_at = st.env.clock.now();
        save(st, &m);
    }
}

/// The engine says a sent message failed after all, and why; a message
/// failed already keeps its first reason (a report repeated changes
/// nothing).
pub fn on_failed(st: &SessionActorState, engine_id: &str, error: String) {
    let Some(repo) = &st.env.messages else {
        return;
    };
    let Ok(Some(mut m)) = repo.by_engine_id(&st.record.id, engine_id) else {
        return;
    };
    if m.status == MessageStatus::Failed {
        return;
    }
    tracing::info!(tenant = %st.record.tenant, session = %st.record.id, message = %m.id, error = %error, "a sent message failed");
    m.status = MessageStatus::Failed;
    m.error = Some(error);
    m.updated_at = st.env.clock.now();
    save(st, &m);
}

//! The per-session memory guard (`engine.max_session_memory`): while a
//! session is READY its driver's memory (a browser's whole process tree,
//! PSS) is read every `memory_check_interval`. Over the limit, once the
//! session has been READY for `memory_min_uptime`, the sender holds the
//! queue (no new message starts) and, at the first quiet moment — nothing
//! being typed, no hand-off in the last [`QUIET_AFTER_SEND`], nothing
//! marked `sending` — the browser is closed as DISCONNECTED
//! `memory_limit`. That is a local fault: the supervisor restores a paired
//! session through admission, pairing kept, no QR (the operators behind
//! whatsapp-web.js #350 and #1757 do this by cron, at any moment). The
//! restart is announced ([`BusEvent::MemoryRestart`]) and counted.

use super::actor::{SessionActorState, SessionMsg};
use super::machine::{DisconnectReason, Event, SessionState};
use crate::bus::{BusEvent, MemoryRestartEvent};
use crate::clock::Timer;
use ractor::ActorRef;
use std::time::Duration;

/// How long after a hand-off the browser is kept, so the message's first
/// receipts arrive on the page that sent it.
pub const QUIET_AFTER_SEND: Duration = Duration::from_secs(5);
/// How soon a session over its limit but busy is looked at again.
pub const BUSY_RECHECK: Duration = Duration::from_secs(1);

/// The guard's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryGuard {
    /// Bytes; 0: off.
    pub limit: u64,
    pub interval: Duration,
    pub min_uptime: Duration,
}

impl MemoryGuard {
    /// Never restarts.
    pub const OFF: MemoryGuard = MemoryGuard {
        limit: 0,
        interval: Duration::from_secs(300),
        min_uptime: Duration::ZERO,
    };

    pub fn from_config(engine: &crate::config::EngineConfig) -> MemoryGuard {
        MemoryGuard {
            limit: engine.max_session_memory,
            interval: engine.memory_check_interval,
            min_uptime: engine.memory_min_uptime,
        }
    }
}

/// The guard's memory within one session actor.
#[derive(Default)]
pub struct MemoryWatch {
    generation: u64,
    timer: Option<Timer<SessionMsg>>,
    /// Over the limit: no new message starts until the restart.
    holding: bool,
}

impl MemoryWatch {
    /// Whether the sender must not start another message.
    pub fn holds_sends(&self) -> bool {
        self.holding
    }

    /// Stops watching (the session left READY, or the actor stops).
    pub fn cancel(&mut self) {
        self.generation += 1;
        self.holding = false;
        if let Some(t) = self.timer.take() {
            t.abort();
        }
    }
}

/// Starts watching a session that just became READY.
pub fn watch(myself: &ActorRef<SessionMsg>, st: &mut SessionActorState) {
    st.memory.cancel();
    if st.env.memory.limit == 0 {
        return;
    }
    arm(myself, st, st.env.memory.interval);
}

fn arm(myself: &ActorRef<SessionMsg>, st: &mut SessionActorState, after: Duration) {
    st.memory.generation += 1;
    let generation = st.memory.generation;
    let timer = myself.send_after(after, move || SessionMsg::MemoryCheck { generation });
    if let Some(old) = st.memory.timer.replace(timer) {
        old.abort();
    }
}

/// Whether nothing is on its way out: no message being typed, none handed
/// over in the last [`QUIET_AFTER_SEND`], none marked `sending`.
fn quiet(st: &SessionActorState) -> bool {
    if st.outgoing.typing() {
        return false;
    }
    let now = st.env.clock.now();
    if st
        .outgoing
        .last_hand_off()
        .is_some_and(|at| now.since(at) < QUIET_AFTER_SEND)
    {
        return false;
    }
    match &st.env.messages {
        // Not knowing is not quiet.
        Some(repo) => repo.in_flight(&st.record.id).is_ok_and(|v| v.is_empty()),
        None => true,
    }
}

/// The check timer fired: read the memory, and restart, hold or wait.
pub async fn check(myself: &ActorRef<SessionMsg>, st: &mut SessionActorState, generation: u64) {
    if generation != st.memory.generation {
        return;
    }
    st.memory.timer = None;
    let (SessionState::Ready { .. }, Some(driver)) = (&st.machine.state, &st.driver) else {
        return;
    };
    let guard = st.env.memory;
    let bytes = driver.memory().await;
    let now = st.env.clock.now();
    let over = bytes.is_some_and(|b| b > guard.limit);
    let settled = now.since(st.since) >= guard.min_uptime;
    let Some(bytes) = bytes.filter(|_| over && settled) else {
        if over {
            tracing::debug!(session = %st.record.id, bytes, limit = guard.limit, "browser over its memory limit, but READY too recently to restart");
        }
        arm(myself, st, guard.interval);
        if std::mem::take(&mut st.memory.holding) {
            super::outgoing::schedule(myself, st);
        }
        return;
    };
    if !st.memory.holding {
        tracing::info!(tenant = %st.record.tenant, session = %st.record.id, bytes, limit = guard.limit, "browser over its memory limit: holding the queue for a quiet moment to restart it");
        st.memory.holding = true;
    }
    if !quiet(st) {
        arm(myself, st, BUSY_RECHECK);
        return;
    }
    tracing::warn!(tenant = %st.record.tenant, session = %st.record.id, bytes, limit = guard.limit, "browser over its memory limit: restarting it (a restore, no QR)");
    st.env
        .bus
        .publish(BusEvent::MemoryRestart(MemoryRestartEvent {
            tenant: st.record.tenant.clone(),
            session: st.record.id.clone(),
            bytes,
            limit: guard.limit,
            at: now,
        }));
    let reason = DisconnectReason::MemoryLimit;
    super::actor::apply(myself, st, Event::Disconnected { reason }).await;
}

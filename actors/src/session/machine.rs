//! The session state machine: one pure function, [`next`], from
//! (state, event, timing) to a [`Transition`]. The actor only executes the
//! returned effects; every guard lives here and is tested here.
//!
//! Guards from seed 002 (the LOGOUT bugs): a QR after AUTHENTICATED/READY is
//! ignored; READY is processed once; the QR window timer is cancelled on scan;
//! `connect` on a live session returns the current state and never starts a
//! second driver; a forced new session on a paired session is refused.

use crate::clock::Timestamp;
pub use crate::engine::DisconnectReason;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The state of one session. Each state carries its own data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionState {
    Disconnected {
        reason: DisconnectReason,
    },
    Connecting,
    Qr {
        code: String,
        /// When this code stops being valid (WhatsApp rotates it).
        expires_at: Timestamp,
        /// When the whole QR window closes with `qr_timeout`.
        window_ends_at: Timestamp,
    },
    Authenticated,
    Ready {
        /// The linked phone number.
        me: String,
    },
}

impl SessionState {
    /// CONNECTING, QR, AUTHENTICATED or READY: a driver is (or is being) started.
    pub fn is_live(&self) -> bool {
        !matches!(self, Self::Disconnected { .. })
    }

    /// The state's name as the API shows it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Disconnected { .. } => "DISCONNECTED",
            Self::Connecting => "CONNECTING",
            Self::Qr { .. } => "QR",
            Self::Authenticated => "AUTHENTICATED",
            Self::Ready { .. } => "READY",
        }
    }

    pub fn reason(&self) -> Option<DisconnectReason> {
        match self {
            Self::Disconnected { reason } => Some(*reason),
            _ => None,
        }
    }
}

/// What can happen to a session: commands from the supervisor, engine events,
/// and timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The supervisor admitted a connection attempt.
    Connect,
    /// Throw the pairing away and start over with a new QR.
    ForceNew,
    /// The engine shows a QR code (first or rotated).
    Qr { code: String },
    /// The engine is paired: a QR was scanned, or a paired profile was restored.
    Authenticated,
    /// The engine finished syncing; `me` is the linked number.
    Ready { me: String },
    /// The engine lost the session.
    Disconnected { reason: DisconnectReason },
    /// Stop on request, keeping the pairing.
    Stop,
    /// Unpair and delete the profile.
    Logout,
    /// The QR window timer fired (the actor has already checked its generation).
    QrWindowExpired,
    /// WhatsApp's "restart required" (the first stream error 515 right after
    /// a scan; the actor has already told it apart from a ban): restart the
    /// driver on the same pairing without a new admission.
    RestartRequired,
}

/// Side effects the actor executes, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    StartDriver,
    StopDriver,
    /// Ask the engine to unpair, then stop it.
    LogoutDriver,
    /// Delete the pairing (the profile directory for webjs).
    WipeProfile,
    StartQrTimer {
        at: Timestamp,
    },
    CancelQrTimer,
}

/// Why an event changed nothing. Useful in logs; never an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// `connect`/`force_new` while a driver is already live: no second driver.
    AlreadyLive,
    /// `stop` on a stopped session.
    AlreadyStopped,
    /// An engine event for a session that is not live (a late event).
    NotLive,
    /// A QR after AUTHENTICATED/READY (seed 002: reacting to it caused LOGOUTs).
    QrAfterAuthenticated,
    /// A second `authenticated`.
    AlreadyAuthenticated,
    /// A second `ready` (seed 002: ready is processed once).
    AlreadyReady,
    /// A timer that no longer applies.
    StaleTimer,
}

/// Why a command was refused: the caller is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// A forced new session on a paired, live session (seed 002 #5).
    SessionPaired,
    /// A pairing code asked of a session that is not showing a QR.
    NotShowingQr,
}

/// The result of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Moved {
        to: SessionState,
        effects: Vec<Effect>,
    },
    Ignored(Ignored),
    Refused(Refusal),
}

/// Durations the machine needs, with the current time.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub now: Timestamp,
    pub qr_window: Duration,
    pub qr_code_ttl: Duration,
}

fn moved(to: SessionState, effects: Vec<Effect>) -> Transition {
    Transition::Moved { to, effects }
}

fn disconnected(reason: DisconnectReason) -> SessionState {
    SessionState::Disconnected { reason }
}

/// Effects of leaving a live state because of `reason`: an engine-reported
/// logout means the pairing is gone, so the profile goes too.
fn drop_driver(reason: DisconnectReason, had_qr_timer: bool) -> Vec<Effect> {
    let mut effects = Vec::with_capacity(3);
    if had_qr_timer {
        effects.push(Effect::CancelQrTimer);
    }
    effects.push(Effect::StopDriver);
    if reason == DisconnectReason::Logout {
        effects.push(Effect::WipeProfile);
    }
    effects
}

/// The transition function. Pure: no I/O, no clock reads.
pub fn next(state: &SessionState, event: &Event, t: Timing) -> Transition {
    use SessionState as S;
    match (state, event) {
        // DISCONNECTED
        (S::Disconnected { .. }, Event::Connect) => moved(S::Connecting, vec![Effect::StartDriver]),
        (S::Disconnected { .. }, Event::ForceNew) => moved(
            S::Connecting,
            vec![Effect::WipeProfile, Effect::StartDriver],
        ),
        (S::Disconnected { .. }, Event::Logout) => moved(
            disconnected(DisconnectReason::Logout),
            vec![Effect::WipeProfile],
        ),
        (S::Disconnected { .. }, Event::Stop) => Transition::Ignored(Ignored::AlreadyStopped),
        (S::Disconnected { .. }, Event::QrWindowExpired) => {
            Transition::Ignored(Ignored::StaleTimer)
        }
        (
            S::Disconnected { .. },
            Event::Qr { .. }
            | Event::Authenticated
            | Event::Ready { .. }
            | Event::Disconnected { .. }
            | Event::RestartRequired,
        ) => Transition::Ignored(Ignored::NotLive),

        // CONNECTING
        (S::Connecting, Event::Connect | Event::ForceNew) => {
            Transition::Ignored(Ignored::AlreadyLive)
        }
        (S::Connecting, Event::Qr { code }) => {
            let window_ends_at = t.now.plus(t.qr_window);
            moved(
                S::Qr {
                    code: code.clone(),
                    expires_at: t.now.plus(t.qr_code_ttl).min(window_ends_at),
                    window_ends_at,
                },
                vec![Effect::StartQrTimer { at: window_ends_at }],
            )
        }
        (S::Connecting, Event::Authenticated) => moved(S::Authenticated, vec![]),
        (S::Connecting, Event::Ready { me }) => moved(S::Ready { me: me.clone() }, vec![]),
        (S::Connecting, Event::Disconnected { reason }) => {
            moved(disconnected(*reason), drop_driver(*reason, false))
        }
        (S::Connecting, Event::Stop) => moved(
            disconnected(DisconnectReason::Manual),
            drop_driver(DisconnectReason::Manual, false),
        ),
        (S::Connecting, Event::Logout) => moved(
            disconnected(DisconnectReason::Logout),
            vec![Effect::LogoutDriver, Effect::WipeProfile],
        ),
        (S::Connecting, Event::QrWindowExpired) => Transition::Ignored(Ignored::StaleTimer),
        (S::Connecting, Event::RestartRequired) => {
            moved(S::Connecting, vec![Effect::StopDriver, Effect::StartDriver])
        }

        // QR
        (S::Qr { .. }, Event::Connect | Event::ForceNew) => {
            Transition::Ignored(Ignored::AlreadyLive)
        }
        (S::Qr { window_ends_at, .. }, Event::Qr { code }) => moved(
            S::Qr {
                code: code.clone(),
                expires_at: t.now.plus(t.qr_code_ttl).min(*window_ends_at),
                window_ends_at: *window_ends_at,
            },
            vec![],
        ),
        (S::Qr { .. }, Event::Authenticated) => {
            moved(S::Authenticated, vec![Effect::CancelQrTimer])
        }
        (S::Qr { .. }, Event::Ready { me }) => {
            moved(S::Ready { me: me.clone() }, vec![Effect::CancelQrTimer])
        }
        (S::Qr { .. }, Event::Disconnected { reason }) => {
            moved(disconnected(*reason), drop_driver(*reason, true))
        }
        (S::Qr { .. }, Event::Stop) => moved(
            disconnected(DisconnectReason::Manual),
            drop_driver(DisconnectReason::Manual, true),
        ),
        (S::Qr { .. }, Event::Logout) => moved(
            disconnected(DisconnectReason::Logout),
            drop_driver(DisconnectReason::Logout, true),
        ),
        (S::Qr { .. }, Event::RestartRequired) => moved(
            S::Connecting,
            vec![
                Effect::CancelQrTimer,
                Effect::StopDriver,
                Effect::StartDriver,
            ],
        ),
        (S::Qr { .. }, Event::QrWindowExpired) => moved(
            disconnected(DisconnectReason::QrTimeout),
            vec![Effect::StopDriver],
        ),

        // AUTHENTICATED and READY
        (S::Authenticated | S::Ready { .. }, Event::Connect) => {
            Transition::Ignored(Ignored::AlreadyLive)
        }
        (S::Authenticated | S::Ready { .. }, Event::ForceNew) => {
            Transition::Refused(Refusal::SessionPaired)
        }
        (S::Authenticated | S::Ready { .. }, Event::Qr { .. }) => {
            Transition::Ignored(Ignored::QrAfterAuthenticated)
        }
        (S::Authenticated | S::Ready { .. }, Event::Authenticated) => {
            Transition::Ignored(Ignored::AlreadyAuthenticated)
        }
        (S::Authenticated, Event::Ready { me }) => moved(S::Ready { me: me.clone() }, vec![]),
        (S::Ready { .. }, Event::Ready { .. }) => Transition::Ignored(Ignored::AlreadyReady),
        (S::Authenticated | S::Ready { .. }, Event::Disconnected { reason }) => {
            moved(disconnected(*reason), drop_driver(*reason, false))
        }
        (S::Authenticated | S::Ready { .. }, Event::Stop) => moved(
            disconnected(DisconnectReason::Manual),
            drop_driver(DisconnectReason::Manual, false),
        ),
        (S::Authenticated | S::Ready { .. }, Event::Logout) => moved(
            disconnected(DisconnectReason::Logout),
            vec![Effect::LogoutDriver, Effect::WipeProfile],
        ),
        (S::Authenticated | S::Ready { .. }, Event::QrWindowExpired) => {
            Transition::Ignored(Ignored::StaleTimer)
        }
        (S::Authenticated | S::Ready { .. }, Event::RestartRequired) => {
            moved(S::Connecting, vec![Effect::StopDriver, Effect::StartDriver])
        }
    }
}

/// How to read a stream error 515: WhatsApp sends one right after a
/// successful scan to ask for a restart (as Baileys documents); the first one
/// within `grace` of the scan is that, any other is a ban.
pub fn stream_error_515_is_restart(
    scanned_at: Option<Timestamp>,
    grace_used: bool,
    now: Timestamp,
    grace: Duration,
) -> bool {
    match scanned_at {
        Some(at) => !grace_used && now.since(at) <= grace && now >= at,
        None => false,
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;

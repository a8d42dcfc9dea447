//! The session state machine: one pure function, [`next`], from
//! (machine state, event, timing) to a [`Transition`]. The actor only keeps
//! the [`Machine`] it is handed back and executes the returned effects; every
//! guard lives here and is tested here.
//!
//! The machine's state is the [`SessionState`] clients see (serialized to the
//! API and the WebSocket) plus a [`Scan`] memory only the machine reads: when
//! the QR was last scanned and whether that scan's one 515 restart was used,
//! so the machine itself tells WhatsApp's "restart required" from a ban.
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

/// What the machine remembers beside the [`SessionState`]: when the QR was
/// last scanned and whether that scan's one 515 restart was used. Kept out of
/// `SessionState` because that is serialized to clients; nobody outside the
/// machine reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scan {
    /// `None`: never scanned in this actor's life (a restored pairing).
    at: Option<Timestamp>,
    restart_used: bool,
}

impl Scan {
    /// A QR scanned at `at`, its restart not yet used.
    fn at(at: Timestamp) -> Scan {
        Scan {
            at: Some(at),
            restart_used: false,
        }
    }

    /// How to read a stream error 515 at `now`: WhatsApp sends one right
    /// after a successful scan to ask for a restart (as Baileys documents);
    /// the first one within `grace` of the scan is that, any other is a ban.
    fn grants_restart(self, now: Timestamp, grace: Duration) -> bool {
        match self.at {
            Some(at) => !self.restart_used && now.since(at) <= grace && now >= at,
            None => false,
        }
    }

    fn restart_spent(self) -> Scan {
        Scan {
            restart_used: true,
            ..self
        }
    }
}

/// The machine's whole state: what clients see (`state`), and what only the
/// machine remembers. The actor reads `state` and hands the whole back to
/// [`next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub state: SessionState,
    scan: Scan,
}

impl Machine {
    /// A machine in `state` that has seen no scan.
    pub fn new(state: SessionState) -> Machine {
        Machine {
            state,
            scan: Scan::default(),
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
    /// A stream error 515 from WhatsApp. The first one within
    /// [`Timing::restart_grace`] of a scan is "restart required": the driver
    /// restarts on the same pairing without a new admission. Any other is a
    /// ban.
    StreamError515,
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
    Moved { to: Machine, effects: Vec<Effect> },
    Ignored(Ignored),
    Refused(Refusal),
}

/// Durations the machine needs, with the current time.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub now: Timestamp,
    pub qr_window: Duration,
    pub qr_code_ttl: Duration,
    /// A first 515 this soon after a scan is a restart, not a ban.
    pub restart_grace: Duration,
}

/// A move that leaves the scan memory as it was.
fn moved_keeping(scan: Scan, to: SessionState, effects: Vec<Effect>) -> Transition {
    Transition::Moved {
        to: Machine { state: to, scan },
        effects,
    }
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

/// A 515 in a live state: a restart on the same pairing if the scan grants
/// one (spending it), else a ban.
fn stream_error_515(scan: Scan, t: Timing, had_qr_timer: bool) -> Transition {
    if !scan.grants_restart(t.now, t.restart_grace) {
        let reason = DisconnectReason::Banned;
        return moved_keeping(
            scan,
            disconnected(reason),
            drop_driver(reason, had_qr_timer),
        );
    }
    let mut effects = Vec::with_capacity(3);
    if had_qr_timer {
        effects.push(Effect::CancelQrTimer);
    }
    effects.extend([Effect::StopDriver, Effect::StartDriver]);
    moved_keeping(scan.restart_spent(), SessionState::Connecting, effects)
}

/// The transition function. Pure: no I/O, no clock reads.
pub fn next(m: &Machine, event: &Event, t: Timing) -> Transition {
    use SessionState as S;
    let moved = |to, effects| moved_keeping(m.scan, to, effects);
    // Leaving the QR paired is the scan the 515 grace counts from.
    let scanned = |to, effects| moved_keeping(Scan::at(t.now), to, effects);
    match (&m.state, event) {
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
            | Event::StreamError515,
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
        (S::Connecting, Event::StreamError515) => stream_error_515(m.scan, t, false),

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
            scanned(S::Authenticated, vec![Effect::CancelQrTimer])
        }
        (S::Qr { .. }, Event::Ready { me }) => {
            scanned(S::Ready { me: me.clone() }, vec![Effect::CancelQrTimer])
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
        (S::Qr { .. }, Event::StreamError515) => stream_error_515(m.scan, t, true),
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
        (S::Authenticated | S::Ready { .. }, Event::StreamError515) => {
            stream_error_515(m.scan, t, false)
        }
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;

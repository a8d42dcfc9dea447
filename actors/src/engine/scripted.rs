//! A scripted engine for unit tests of the actors: no browser, the test plays
//! WhatsApp's side (scan, logout, ban) by calling methods. Pairings live in
//! the engine value, so a test that restarts the supervisor with the same
//! engine sees sessions restored without a QR. Never used by `serve`.

use super::{ChatState, Driver, DriverControl, DriverSpec, Engine, EngineError, EngineEvent};
use crate::ids::SessionId;
use crate::session::DisconnectReason;
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What a driver was asked to do on WhatsApp, in order, for tests that check
/// the human signals around a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    ChatState { to: String, state: ChatState },
    Seen { chat: String },
    Sent { to: String, text: String },
}

#[derive(Default)]
struct Inner {
    /// session → phone, for paired profiles.
    paired: HashMap<SessionId, String>,
    /// session → (driver number, event sender) of the running driver.
    running: HashMap<SessionId, (u64, mpsc::Sender<EngineEvent>)>,
    starts: HashMap<SessionId, u64>,
    panic_on_send: HashSet<SessionId>,
    fail_start: HashSet<SessionId>,
    sent: Vec<(SessionId, String, String)>,
    /// Every send, chat state and seen mark, with when (tokio time).
    actions: Vec<(SessionId, Instant, Action)>,
    /// Sessions whose chat states and seen marks fail.
    fail_signals: HashSet<SessionId>,
    /// Pairing codes handed out so far.
    codes: u64,
    /// Numbers that have no WhatsApp account.
    unregistered: HashSet<String>,
    /// session → what its driver reports as its memory (bytes).
    memory: HashMap<SessionId, u64>,
    next_driver: u64,
    /// Drivers started for a session whose previous driver was still
    /// running: two browsers on one profile (fleet tests assert none).
    overlaps: Vec<SessionId>,
}

/// See the module docs. Cheap to clone; clones share state.
#[derive(Clone, Default)]
pub struct ScriptedEngine {
    inner: Arc<Mutex<Inner>>,
    /// Notified whenever a driver stops (tests wait on it, not on time).
    stopped: Arc<tokio::sync::Notify>,
}

impl ScriptedEngine {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What `session`'s drivers report as their memory from now on.
    pub fn set_memory(&self, session: &SessionId, bytes: u64) {
        self.lock().memory.insert(session.clone(), bytes);
    }

    /// Marks a profile as paired, as if scanned in an earlier life.
    pub fn pair(&self, session: &SessionId, phone: &str) {
        self.lock().paired.insert(session.clone(), phone.to_owned());
    }

    pub fn is_paired(&self, session: &SessionId) -> bool {
        self.lock().paired.contains_key(session)
    }

    /// The phone scans the QR: authenticated, then ready. False when no
    /// driver runs for the session.
    pub fn scan(&self, session: &SessionId, phone: &str) -> bool {
        let mut g = self.lock();
        g.paired.insert(session.clone(), phone.to_owned());
        let Some((_, tx)) = g.running.get(session) else {
            return false;
        };
        tx.try_send(EngineEvent::Authenticated).is_ok()
            && tx
                .try_send(EngineEvent::Ready {
                    me: phone.to_owned(),
                })
                .is_ok()
    }

    /// Pushes any event to the running driver of `session`.
    pub fn emit(&self, session: &SessionId, event: EngineEvent) -> bool {
        let g = self.lock();
        match g.running.get(session) {
            Some((_, tx)) => tx.try_send(event).is_ok(),
            None => false,
        }
    }

    /// The driver dies without a word (its event stream closes).
    pub fn crash(&self, session: &SessionId) {
        self.lock().running.remove(session);
        self.stopped.notify_waiters();
    }

    /// Waits until `session` has no running driver, at most `wait`; false
    /// if it still runs then.
    pub async fn until_stopped(&self, session: &SessionId, wait: std::time::Duration) -> bool {
        let stopped = async {
            loop {
                let next = self.stopped.notified();
                if !self.is_running(session) {
                    return;
                }
                next.await;
            }
        };
        tokio::time::timeout(wait, stopped).await.is_ok()
    }

    /// How many drivers were started for `session`.
    pub fn starts(&self, session: &SessionId) -> u64 {
        self.lock().starts.get(session).copied().unwrap_or(0)
    }

    pub fn is_running(&self, session: &SessionId) -> bool {
        self.lock().running.contains_key(session)
    }

    /// Sessions started while their previous driver still ran, in order
    /// (one engine shared by several nodes: two browsers on one pairing).
    pub fn overlaps(&self) -> Vec<SessionId> {
        self.lock().overlaps.clone()
    }

    /// How many drivers run now.
    pub fn running(&self) -> usize {
        self.lock().running.len()
    }

    /// The next `send_text` of this session panics inside the caller.
    pub fn panic_on_send(&self, session: &SessionId) {
        self.lock().panic_on_send.insert(session.clone());
    }

    /// Starting a driver for `session` fails.
    pub fn fail_start(&self, session: &SessionId) {
        self.lock().fail_start.insert(session.clone());
    }

    /// Starting a driver for `session` works again.
    pub fn allow_start(&self, session: &SessionId) {
        self.lock().fail_start.remove(session);
    }

    /// `number` has no WhatsApp account: sends to it fail `NotOnWhatsapp`.
    pub fn not_on_whatsapp(&self, number: &str) {
        self.lock().unregistered.insert(number.to_owned());
    }

    pub fn sent(&self) -> Vec<(SessionId, String, String)> {
        self.lock().sent.clone()
    }

    /// What `session`'s drivers did, in order, with when (tokio time).
    pub fn actions(&self, session: &SessionId) -> Vec<(Instant, Action)> {
        self.lock()
            .actions
            .iter()
            .filter(|(s, _, _)| s == session)
            .map(|(_, at, a)| (*at, a.clone()))
            .collect()
    }

    /// Chat states and seen marks of `session` fail (sends still work).
    pub fn fail_signals(&self, session: &SessionId) {
        self.lock().fail_signals.insert(session.clone());
    }
}

#[async_trait]
impl Engine for ScriptedEngine {
    async fn start(&self, spec: &DriverSpec) -> Result<Driver, EngineError> {
        let mut g = self.lock();
        *g.starts.entry(spec.session.clone()).or_default() += 1;
        if g.fail_start.contains(&spec.session) {
            return Err(EngineError::Launch("scripted start failure".into()));
        }
        if g.running.contains_key(&spec.session) {
            g.overlaps.push(spec.session.clone());
        }
        let (tx, rx) = mpsc::channel(256);
        let first = match g.paired.get(&spec.session) {
            Some(phone) => vec![
                EngineEvent::Authenticated,
                EngineEvent::Ready { me: phone.clone() },
            ],
            None => vec![EngineEvent::Qr {
                code: format!("ref{},static,identity,adv,web", g.next_driver),
            }],
        };
        for e in first {
            let _ = tx.try_send(e);
        }
        g.next_driver += 1;
        let number = g.next_driver;
        g.running.insert(spec.session.clone(), (number, tx));
        let control = ScriptedControl {
            engine: self.clone(),
            session: spec.session.clone(),
            number,
        };
        Ok(Driver {
            events: rx,
            control: Box::new(control),
        })
    }

    async fn forget(&self, spec: &DriverSpec) -> Result<(), EngineError> {
        self.lock().paired.remove(&spec.session);
        Ok(())
    }
}

struct ScriptedControl {
    engine: ScriptedEngine,
    session: SessionId,
    number: u64,
}

impl ScriptedControl {
    /// Records a chat state or seen mark, unless they are set to fail.
    fn signal(&self, action: Action) -> Result<(), EngineError> {
        let mut g = self.engine.lock();
        if g.fail_signals.contains(&self.session) {
            return Err(EngineError::Protocol("scripted signal failure".into()));
        }
        g.actions
            .push((self.session.clone(), Instant::now(), action));
        Ok(())
    }

    fn release(&self) {
        let mut g = self.engine.lock();
        if g.running.get(&self.session).map(|(n, _)| *n) == Some(self.number) {
            g.running.remove(&self.session);
        }
        drop(g);
        self.engine.stopped.notify_waiters();
    }
}

#[async_trait]
impl DriverControl for ScriptedControl {
    async fn send_text(&self, to: &str, text: &str) -> Result<String, EngineError> {
        let mut g = self.engine.lock();
        if g.panic_on_send.remove(&self.session) {
            drop(g);
            panic!("scripted engine: injected panic while sending");
        }
        if g.unregistered.contains(to) {
            return Err(EngineError::NotOnWhatsapp);
        }
        g.sent
            .push((self.session.clone(), to.to_owned(), text.to_owned()));
        let action = Action::Sent {
            to: to.to_owned(),
            text: text.to_owned(),
        };
        g.actions
            .push((self.session.clone(), Instant::now(), action));
        Ok(format!("msg{}", g.sent.len()))
    }

    async fn chat_state(&self, to: &str, state: ChatState) -> Result<(), EngineError> {
        let action = Action::ChatState {
            to: to.to_owned(),
            state,
        };
        self.signal(action)
    }

    async fn send_seen(&self, chat: &str) -> Result<(), EngineError> {
        self.signal(Action::Seen {
            chat: chat.to_owned(),
        })
    }

    async fn logout(&self) -> Result<(), EngineError> {
        let mut g = self.engine.lock();
        g.paired.remove(&self.session);
        if let Some((_, tx)) = g.running.get(&self.session) {
            let _ = tx.try_send(EngineEvent::Disconnected {
                reason: DisconnectReason::Logout,
                detail: "logout".into(),
            });
        }
        Ok(())
    }

    /// A code derived from the session and the phone, stable per request
    /// count, so tests can predict and tell codes apart.
    async fn request_pairing_code(&self, phone: &str) -> Result<String, EngineError> {
        let mut g = self.engine.lock();
        g.codes += 1;
        let tail: String = phone.chars().rev().take(3).collect();
        Ok(format!("CODE-{:01}{}", g.codes % 10, tail))
    }

    async fn memory(&self) -> Option<u64> {
        self.engine.lock().memory.get(&self.session).copied()
    }

    async fn stop(&self) -> Result<(), EngineError> {
        self.release();
        Ok(())
    }
}

impl Drop for ScriptedControl {
    fn drop(&mut self) {
        self.release();
    }
}

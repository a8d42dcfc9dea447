//! Session actor tests against the scripted engine. Time is tokio's paused
//! clock (auto-advancing when idle) plus a ManualClock for timestamps, so the
//! 60 s QR window is tested instantly; waits are on bus events.

use super::*;
use crate::bus::{Bus, BusEvent, TransitionEvent};
use crate::clock::ManualClock;
use crate::engine::scripted::ScriptedEngine;
use crate::engine::EngineKind;
use crate::ids::{SessionId, TenantId};
use crate::session::machine::DisconnectReason;
use crate::store::DesiredState;
use ractor::call;
use tokio::sync::broadcast;

struct Fixture {
    actor: ActorRef<SessionMsg>,
    engine: ScriptedEngine,
    events: broadcast::Receiver<BusEvent>,
    id: SessionId,
}

async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

async fn fixture_with(tweak: impl FnOnce(&mut SessionEnv)) -> Fixture {
    let engine = ScriptedEngine::new();
    let bus = Bus::new(256);
    let events = bus.subscribe();
    let id = SessionId::new("s1").expect("id");
    let record = SessionRecord {
        id: id.clone(),
        tenant: TenantId::new("t1").expect("id"),
        name: "desk".into(),
        engine: EngineKind::Webjs,
        desired: DesiredState::Stopped,
        user_agent: None,
        proxy: None,
        last_reason: None,
        paired: false,
        paired_at: None,
        created_at: Timestamp::from_millis(0),
        cloud: None,
    };
    let env = SessionEnv {
        clock: Arc::new(ManualClock::new(Timestamp::from_millis(1_000_000))),
        bus,
        qr_window: Duration::from_secs(60),
        qr_code_ttl: Duration::from_secs(20),
        profiles_dir: PathBuf::from("/nonexistent/profiles"),
        driver_stop_timeout: Duration::from_secs(5),
        restart_grace: Duration::from_secs(60),
        pairing_code_ttl: crate::session::actor::PAIRING_CODE_TTL,
        messages: None,
        pacing: crate::messaging::Pacing {
            min_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            per_minute: 60,
        },
        typing: crate::messaging::Typing {
            chars_per_second: 0,
        },
        send_seen: false,
        contact_budget: crate::config::Config::defaults().messaging.contact_budget(),
        memory: crate::session::MemoryGuard::OFF,
    };
    let mut env = env;
    tweak(&mut env);
    let args = SessionArgs {
        record,
        engine: Some(Arc::new(engine.clone())),
        initial: SessionState::Disconnected {
            reason: DisconnectReason::NeverConnected,
        },
        env,
        supervisor: None,
    };
    let (actor, _) = Actor::spawn(None, SessionActor, args).await.expect("spawn");
    Fixture {
        actor,
        engine,
        events,
        id,
    }
}

/// The next transition on the bus, within a generous timeout.
async fn next_transition(rx: &mut broadcast::Receiver<BusEvent>) -> TransitionEvent {
    let ev = tokio::time::timeout(Duration::from_secs(120), rx.recv())
        .await
        .expect("a transition within 120 s (tokio time)")
        .expect("bus open");
    match ev {
        BusEvent::Transition(t) => t,
        other => panic!("expected a transition, got {other:?}"),
    }
}

async fn expect_state(rx: &mut broadcast::Receiver<BusEvent>, name: &str) -> TransitionEvent {
    let t = next_transition(rx).await;
    assert_eq!(t.to.name(), name, "unexpected transition {t:?}");
    t
}

async fn connect_and_scan(f: &mut Fixture) {
    let view = call!(f.actor, SessionMsg::Connect).expect("connect");
    assert_eq!(view.state, SessionState::Connecting);
    expect_state(&mut f.events, "CONNECTING").await;
    expect_state(&mut f.events, "QR").await;
    assert!(f.engine.scan(&f.id, "5491122334455"));
    expect_state(&mut f.events, "AUTHENTICATED").await;
    let ready = expect_state(&mut f.events, "READY").await;
    assert_eq!(
        ready.to,
        SessionState::Ready {
            me: "5491122334455".into()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn connect_scan_reaches_ready_and_publishes_each_step() {
    let mut f = fixture().await;
    connect_and_scan(&mut f).await;
    let view = call!(f.actor, SessionMsg::Get).expect("get");
    assert_eq!(view.state.name(), "READY");
}

#[tokio::test(start_paused = true)]
async fn second_connect_returns_the_live_state_without_a_second_driver() {
    let mut f = fixture().await;
    connect_and_scan(&mut f).await;
    let view = call!(f.actor, SessionMsg::Connect).expect("connect again");
    assert_eq!(view.state.name(), "READY");
    assert_eq!(f.engine.starts(&f.id), 1);
}

#[tokio::test(start_paused = true)]
async fn unscanned_qr_times_out_and_stops_the_driver() {
    let mut f = fixture().await;
    call!(f.actor, SessionMsg::Connect).expect("connect");
    expect_state(&mut f.events, "CONNECTING").await;
    expect_state(&mut f.events, "QR").await;
    let t = expect_state(&mut f.events, "DISCONNECTED").await;
    assert_eq!(t.reason, Some(DisconnectReason::QrTimeout));
    assert!(!f.engine.is_running(&f.id), "driver stopped");
}

#[tokio::test(start_paused = true)]
async fn scan_cancels_the_qr_timer() {
    let mut f = fixture().await;
    connect_and_scan(&mut f).await;
    tokio::time::advance(Duration::from_secs(300)).await;
    let view = call!(f.actor, SessionMsg::Get).expect("get");
    assert_eq!(
        view.state.name(),
        "READY",
        "the QR window must not end a READY session"
    );
    assert!(f.events.try_recv().is_err(), "no further transition");
}

#[tokio::test(start_paused = true)]
async fn qr_rotation_publishes_the_new_code() {
    let mut f = fixture().await;
    call!(f.actor, SessionMsg::Connect).expect("connect");
    expect_state(&mut f.events, "CONNECTING").await;
    expect_state(&mut f.events, "QR").await;
    assert!(f.engine.emit(
        &f.id,
        EngineEvent::Qr {
            code: "ref9,a,b,c,web".into()
        }
    ));
    let t = expect_state(&mut f.events, "QR").await;
    let SessionState::Qr { code, .. } = t.to else {
        panic!("QR expected");
    };
    assert_eq!(code, "ref9,a,b,c,web");
}

#[tokio::test(start_paused = true)]
async fn qr_after_ready_changes_nothing() {
    let mut f = fixture().await;
    connect_and_scan(&mut f).await;
    assert!(f.engine.emit(
        &f.id,
        EngineEvent::Qr {
            code: "late".into()
        }
    ));
    assert!(f
        .engine
        .emit(&f.id, EngineEvent::Ready { me: "other".into() }));
    // A Get is processed after both events (one mailbox, in order).
    let view = call!(f.actor, SessionMsg::Get).expect("get");
    assert_eq!(
        view.state,
        SessionState::Ready {
            me: "5491122334455".into()
        }
    );
    assert!(
        f.events.try_recv().is_err(),
        "no transition for ignored events"
    );
}

#[tokio::test(start_paused = true)]
async fn engine_disconnect_reasons_reach_the_state() {
    let mut f = fixture().await;
    connect_and_scan(&mut f).await;
    assert!(f.engine.emit(
        &f.id,
        EngineEvent::Disconnected {
            reason: DisconnectReason::BrowserCrashed,
            detail: "exit".into()
        }
    ));
    let t = expect_state(&mut f.events, "DISCONNECTED").await;
    assert_eq!(t.reason, Some(DisconnectReason::BrowserCrashed));
    assert!(!f.engine.is_running(&f.id));
}

#[tokio::test(start_paused = true)]
async fn a_silently_closed_engine_is_an_engine_error() {
    let mut f = fixture().await;
    connect_and_scan(&mut f).await;
    f.engine.crash(&f.id);
    let t = expect_state(&mut f.events, "DISCONNECTED").await;
    assert_eq!(t.reason, Some(DisconnectReason::EngineError));
}

#[tokio::test(start_paused = true)]
async fn a_failed_start_is_an_engine_error() {
    let mut f = fixture().await;
    f.engine.fail_start(&f.id);
    call!(f.actor, SessionMsg::Connect).expect("connect");
    expect_state(&mut f.events, "CONNECTING").await;
    let t = expect_state(&mut f.events, "DISCONNECTED").await;
    assert_eq!(t.reason, Some(DisconnectReason::EngineError));
}

#[tokio::test(start_paused = true)]
async fn logout_unpairs_and_stop_keeps_the_pairing() {
    let mut f = fixture().await;
    connect_and_scan(&mut f).await;
    let view = call!(f.actor, SessionMsg::Stop).expect("stop");
    assert_eq!(view.state.reason(), Some(DisconnectReason::Manual));
    assert!(!f.engine.is_running(&f.id));
    assert!(f.engine.is_paired(&f.id), "stop keeps the pairing");

    // Reconnect restores without a QR.
    call!(f.actor, SessionMsg::Connect).expect("connect");
    expect_state(&mut f.events, "DISCONNECTED").await;
    expect_state(&mut f.events, "CONNECTING").await;
    expect_state(&mut f.events, "AUTHENTICATED").await;
    expect_state(&mut f.events, "READY").await;

    let view = call!(f.actor, SessionMsg::Logout).expect("logout");
    assert_eq!(view.state.reason(), Some(DisconnectReason::Logout));
    assert!(!f.engine.is_paired(&f.id), "logout unpairs");
    assert!(!f.engine.is_running(&f.id));
}

#[tokio::test(start_paused = true)]
async fn force_new_on_ready_is_refused() {
    let mut f = fixture().await;
    connect_and_scan(&mut f).await;
    let out = call!(f.actor, SessionMsg::ForceNew).expect("call");
    assert_eq!(out, Err(Refusal::SessionPaired));
    assert_eq!(f.engine.starts(&f.id), 1);
    assert!(f.engine.is_paired(&f.id));
}

#[tokio::test(start_paused = true)]
async fn stopping_the_actor_closes_its_driver() {
    let mut f = fixture().await;
    connect_and_scan(&mut f).await;
    assert!(f.engine.is_running(&f.id));
    f.actor.stop_and_wait(None, None).await.expect("stop");
    assert!(!f.engine.is_running(&f.id));
}

#[tokio::test(start_paused = true)]
async fn send_text_needs_ready() {
    let mut f = fixture().await;
    let out = call!(f.actor, |r| SessionMsg::SendText {
        to: "1".into(),
        text: "hola".into(),
        reply: r
    })
    .expect("call");
    assert_eq!(out, Err(EngineError::NotReady));
    connect_and_scan(&mut f).await;
    let out = call!(f.actor, |r| SessionMsg::SendText {
        to: "5491100000000".into(),
        text: "hola".into(),
        reply: r
    })
    .expect("call");
    assert!(out.is_ok());
    assert_eq!(f.engine.sent().len(), 1);
}

// ---------- The sender's human signals ----------

use crate::engine::scripted::Action;
use crate::engine::ChatState;
use crate::store::{MessageRecord, MessageRepo, MessageStatus, SessionRepo, Store};

const PEER: &str = "5491100000007";

/// A READY session whose sender reads `store` and types at `cps`.
async fn sender(store: &Store, cps: u32, send_seen: bool) -> Fixture {
    let repo = store.clone();
    let mut f = fixture_with(move |env| {
        env.messages = Some(Arc::new(repo));
        env.typing = crate::messaging::Typing {
            chars_per_second: cps,
        };
        env.send_seen = send_seen;
    })
    .await;
    on_record(store, &f.id);
    connect_and_scan(&mut f).await;
    f
}

/// Puts `id` on record as tenant t1's: the outbox stores a message only
/// for a session on record as its tenant's.
fn on_record(store: &Store, id: &SessionId) {
    store
        .put_session(&crate::store::SessionRecord::of(
            &TenantId::new("t1").expect("id"),
            id,
        ))
        .expect("session on record");
}

/// Queues `texts` for the fixture's session and tells the sender.
fn queue(f: &Fixture, store: &Store, texts: &[&str], answers: Option<&str>) {
    let batch: Vec<MessageRecord> = texts
        .iter()
        .map(|t| {
            MessageRecord::queued(
                TenantId::new("t1").expect("id"),
                f.id.clone(),
                PEER.into(),
                (*t).into(),
                Timestamp::from_millis(1_000_000),
            )
            .answering(answers.map(str::to_owned))
        })
        .collect();
    store.accept(&batch).expect("accept");
    f.actor.cast(SessionMsg::Outbox).expect("cast");
}

/// Waits (on the bus) until `n` messages left as sent.
async fn sent(rx: &mut broadcast::Receiver<BusEvent>, n: usize) {
    let mut seen = 0;
    while seen < n {
        let ev = tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .expect("a send within 120 s (tokio time)")
            .expect("bus open");
        if let BusEvent::MessageStatus(m) = ev {
            seen += usize::from(m.status == MessageStatus::Sent);
        }
    }
}

fn composing() -> Action {
    Action::ChatState {
        to: PEER.into(),
        state: ChatState::Composing,
    }
}

fn paused() -> Action {
    Action::ChatState {
        to: PEER.into(),
        state: ChatState::Paused,
    }
}

fn sent_action(text: &str) -> Action {
    Action::Sent {
        to: PEER.into(),
        text: text.into(),
    }
}

#[tokio::test(start_paused = true)]
async fn each_send_is_typed_for_its_length_first_then_paused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let mut f = sender(&store, 15, true).await;
    let long = "a".repeat(200);
    queue(&f, &store, &["hola, que tal?!", &long], None);
    sent(&mut f.events, 2).await;
    let actions = f.engine.actions(&f.id);
    let kinds: Vec<Action> = actions.iter().map(|(_, a)| a.clone()).collect();
    assert_eq!(
        kinds,
        [
            composing(),
            sent_action("hola, que tal?!"),
            paused(),
            composing(),
            sent_action(&long),
            paused()
        ]
    );
    let typed = |i: usize| actions[i + 1].0 - actions[i].0;
    assert_eq!(
        typed(0),
        Duration::from_secs(1),
        "15 characters at 15 a second"
    );
    assert_eq!(
        typed(3),
        Duration::from_secs(8),
        "200 characters: capped at 8 s"
    );
    assert_eq!(actions[2].0, actions[1].0, "paused right after the send");
}

#[tokio::test(start_paused = true)]
async fn typing_off_sends_at_once_without_chat_states() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let mut f = sender(&store, 0, true).await;
    queue(&f, &store, &["hola"], None);
    sent(&mut f.events, 1).await;
    let kinds: Vec<Action> = f
        .engine
        .actions(&f.id)
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    assert_eq!(kinds, [sent_action("hola")]);
}

#[tokio::test(start_paused = true)]
async fn a_message_queued_while_the_sender_waits_for_a_later_one_goes_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let mut f = sender(&store, 0, true).await;
    let tenant = TenantId::new("t1").expect("id");
    let now = Timestamp::from_millis(1_000_000);
    let later = MessageRecord::queued(
        tenant.clone(),
        f.id.clone(),
        PEER.into(),
        "tomorrow".into(),
        now,
    )
    .not_before(Some(now.plus(Duration::from_secs(24 * 3600))));
    store.accept(&[later.clone()]).expect("accept");
    f.actor.cast(SessionMsg::Outbox).expect("cast");
    // A call answered after the cast (one mailbox): the sender has armed
    // its wait for tomorrow's by then. This one is due now.
    let refused = call!(f.actor, |r| SessionMsg::PairingCode {
        phone: "5491122334455".into(),
        reply: r
    })
    .expect("call");
    assert!(refused.is_err(), "READY: no pairing code");
    queue(&f, &store, &["now"], None);
    sent(&mut f.events, 1).await;
    let kinds: Vec<Action> = f
        .engine
        .actions(&f.id)
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    assert_eq!(kinds, [sent_action("now")]);
    let waiting = store.message(&later.id).expect("read").expect("there");
    assert_eq!(
        waiting.status,
        MessageStatus::Queued,
        "tomorrow's still waits"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_chat_state_does_not_stop_the_send() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let mut f = sender(&store, 15, true).await;
    f.engine.fail_signals(&f.id);
    queue(&f, &store, &["hola, que tal?!"], Some("5491100000007@c.us"));
    sent(&mut f.events, 1).await;
    let kinds: Vec<Action> = f
        .engine
        .actions(&f.id)
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    assert_eq!(kinds, [sent_action("hola, que tal?!")], "sent anyway");
    let sent = store.messages(&f.id, 10, None).expect("messages");
    assert_eq!(sent[0].status, MessageStatus::Sent);
}

#[tokio::test(start_paused = true)]
async fn a_reply_marks_the_chat_it_answers_seen_before_typing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let mut f = sender(&store, 15, true).await;
    queue(
        &f,
        &store,
        &["Abrimos de 9 a 18"],
        Some("123456789012345@lid"),
    );
    queue(&f, &store, &["sin respuesta"], None);
    sent(&mut f.events, 2).await;
    let kinds: Vec<Action> = f
        .engine
        .actions(&f.id)
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    assert_eq!(
        kinds,
        [
            Action::Seen {
                chat: "123456789012345@lid".into()
            },
            composing(),
            sent_action("Abrimos de 9 a 18"),
            paused(),
            composing(),
            sent_action("sin respuesta"),
            paused()
        ],
        "read, type, send; a message that answers nothing marks nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn without_send_seen_a_reply_marks_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let mut f = sender(&store, 0, false).await;
    queue(
        &f,
        &store,
        &["Abrimos de 9 a 18"],
        Some("5491100000007@c.us"),
    );
    sent(&mut f.events, 1).await;
    let kinds: Vec<Action> = f
        .engine
        .actions(&f.id)
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    assert_eq!(kinds, [sent_action("Abrimos de 9 a 18")]);
}

#[path = "contact_budget_tests.rs"]
mod contact_budget_tests;

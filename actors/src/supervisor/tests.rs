//! Supervisor tests on the scripted engine and a real redb file in a temp
//! dir: crash restarts that leave other tenants alone, restore after a whole
//! restart, and the registry's bookkeeping. Waits are on bus events.

use super::*;
use crate::bus::{Bus, BusEvent, TransitionEvent};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::engine::scripted::ScriptedEngine;
use crate::engine::EngineSet;
use crate::session::actor::SessionEnv;
use crate::session::DisconnectReason;
use crate::store::{DesiredState, SessionRepo, Store};
use ractor::{call, Actor, ActorRef};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::broadcast;

const WAIT: Duration = Duration::from_secs(30);

/// Admission out of the way: these tests are about supervision.
fn test_config() -> Config {
    let mut c = Config::defaults();
    c.antiban.global_attempts_per_hour = 1000;
    c.antiban.tenant_attempts_per_day = 1000;
    c.antiban.connect_delay = Duration::ZERO;
    c.antiban.queue_spacing = Duration::from_millis(5);
    c.antiban.connect_jitter_min = Duration::ZERO;
    c.antiban.connect_jitter_max = Duration::from_millis(5);
    c.supervisor.restart_backoff = Duration::from_millis(10);
    c
}

struct Harness {
    sup: ActorRef<SupervisorMsg>,
    engine: ScriptedEngine,
    bus: Bus,
    store: Store,
}

async fn start(dir: &Path, engine: &ScriptedEngine, config: Config) -> Harness {
    start_with_clock(dir, engine, config, Arc::new(SystemClock)).await
}

async fn start_with_clock(
    dir: &Path,
    engine: &ScriptedEngine,
    config: Config,
    clock: crate::clock::SharedClock,
) -> Harness {
    start_with_env(dir, engine, config, clock, |_| {}).await
}

async fn start_with_env(
    dir: &Path,
    engine: &ScriptedEngine,
    config: Config,
    clock: crate::clock::SharedClock,
    tweak: impl FnOnce(&mut SessionEnv),
) -> Harness {
    start_full(dir, engine, config, clock, tweak, None).await
}

async fn start_full(
    dir: &Path,
    engine: &ScriptedEngine,
    config: Config,
    clock: crate::clock::SharedClock,
    tweak: impl FnOnce(&mut SessionEnv),
    fleet: Option<shared::FleetSeam>,
) -> Harness {
    let store = Store::open(dir).expect("store");
    let bus = Bus::new(1024);
    let mut env =
        SessionEnv::from_config(&config, clock, bus.clone(), Some(Arc::new(store.clone())));
    tweak(&mut env);
    let engines =
        EngineSet::default().with(crate::engine::EngineKind::Webjs, Arc::new(engine.clone()));
    let args = SupervisorArgs {
        rng_seed: Some(42),
        fleet,
        ..SupervisorArgs::on_store(config, store.clone(), engines, env)
    };
    let (sup, _) = Actor::spawn(None, actor::SupervisorActor, args)
        .await
        .expect("spawn supervisor");
    Harness {
        sup,
        engine: engine.clone(),
        bus,
        store,
    }
}

impl Harness {
    async fn stop(self) {
        self.sup
            .stop_and_wait(None, Some(WAIT))
            .await
            .expect("supervisor stops");
    }

    async fn create(&self, tenant: &str) -> SessionId {
        let new = NewSession {
            tenant: TenantId::new(tenant).expect("id"),
            name: format!("{tenant} desk"),
            engine: crate::engine::EngineKind::Webjs,
            user_agent: None,
            proxy: None,
            cloud: None,
        };
        let view = call!(self.sup, |r| SupervisorMsg::Create { new, reply: r })
            .expect("call")
            .expect("create");
        view.id
    }

    async fn connect(&self, id: &SessionId) -> ConnectOutcome {
        call!(self.sup, |r| SupervisorMsg::Connect {
            id: id.clone(),
            reply: r
        })
        .expect("call")
        .expect("connect")
    }

    async fn get(&self, id: &SessionId) -> SessionView {
        call!(self.sup, |r| SupervisorMsg::Get {
            id: id.clone(),
            reply: r
        })
        .expect("call")
        .expect("get")
    }

    /// Connects and scans a fresh session until READY.
    async fn make_ready(&self, id: &SessionId, rx: &mut broadcast::Receiver<BusEvent>) {
        assert!(matches!(
            self.connect(id).await,
            ConnectOutcome::Queued { .. }
        ));
        wait_for(rx, id, "QR").await;
        assert!(self.engine.scan(id, "5491100000001"));
        wait_for(rx, id, "READY").await;
    }
}

/// Waits for `id` to enter `state`; returns the transitions seen meanwhile.
async fn wait_for(
    rx: &mut broadcast::Receiver<BusEvent>,
    id: &SessionId,
    state: &str,
) -> Vec<TransitionEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{id} did not reach {state}; saw {seen:#?}"))
            .expect("bus open");
        let BusEvent::Transition(t) = ev else {
            continue;
        };
        let done = t.session == *id && t.to.name() == state;
        seen.push(t);
        if done {
            return seen;
        }
    }
}

#[tokio::test]
async fn a_panicking_session_is_restarted_and_the_others_stay_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = start(dir.path(), &ScriptedEngine::new(), test_config()).await;
    let mut rx = h.bus.subscribe();
    let mut ids = Vec::new();
    for tenant in ["clinic", "shop", "crm"] {
        let id = h.create(tenant).await;
        h.make_ready(&id, &mut rx).await;
        ids.push(id);
    }
    let victim = ids[1].clone();
    h.engine.panic_on_send(&victim);
    let sent = call!(h.sup, |r| SupervisorMsg::SendText {
        id: victim.clone(),
        to: "5491100000000".into(),
        text: "hola".into(),
        reply: r
    })
    .expect("call");
    assert_eq!(
        sent,
        Err(SupervisorError::Unavailable),
        "the actor died mid-send"
    );

    // The supervisor reports the crash, restarts the actor and reconnects it
    // (desired state is running; the profile is paired, so no QR).
    let seen = wait_for(&mut rx, &victim, "READY").await;
    let victim_states: Vec<&str> = seen
        .iter()
        .filter(|t| t.session == victim)
        .map(|t| t.to.name())
        .collect();
    assert_eq!(
        victim_states,
        ["DISCONNECTED", "CONNECTING", "AUTHENTICATED", "READY"]
    );
    assert!(
        seen.iter().all(|t| t.session == victim),
        "other sessions must not move: {seen:#?}"
    );
    for other in [&ids[0], &ids[2]] {
        assert_eq!(h.get(other).await.state.name(), "READY");
        assert_eq!(h.engine.starts(other), 1, "never restarted");
    }
    assert_eq!(h.engine.starts(&victim), 2);
    assert!(h.engine.is_running(&victim));
    h.stop().await;
}

#[tokio::test]
async fn a_whole_restart_restores_running_sessions_and_leaves_stopped_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = ScriptedEngine::new();
    let (running, stopped, never) = {
        let h = start(dir.path(), &engine, test_config()).await;
        let mut rx = h.bus.subscribe();
        let running = h.create("clinic").await;
        h.make_ready(&running, &mut rx).await;
        let stopped = h.create("shop").await;
        h.make_ready(&stopped, &mut rx).await;
        let view = call!(h.sup, |r| SupervisorMsg::Disconnect {
            id: stopped.clone(),
            reply: r
        })
        .expect("call")
        .expect("disconnect");
        assert_eq!(view.state.reason(), Some(DisconnectReason::Manual));
        let never = h.create("crm").await;
        h.stop().await;
        (running, stopped, never)
    };
    assert!(!engine.is_running(&running), "shutdown closed every driver");
    assert!(!engine.is_running(&stopped));

    let h = start(dir.path(), &engine, test_config()).await;
    let mut rx = h.bus.subscribe();
    let seen = wait_for(&mut rx, &running, "READY").await;
    assert!(
        seen.iter().all(|t| t.to.name() != "QR"),
        "restored without a QR: {seen:#?}"
    );
    assert_eq!(
        h.get(&stopped).await.state.reason(),
        Some(DisconnectReason::Manual)
    );
    assert_eq!(
        h.get(&never).await.state.reason(),
        Some(DisconnectReason::NeverConnected)
    );
    assert!(!engine.is_running(&stopped));
    assert_eq!(
        engine.starts(&stopped),
        1,
        "a stopped session is not restored"
    );
    assert_eq!(engine.starts(&never), 0);
    h.stop().await;
}

#[tokio::test]
async fn connect_on_a_live_session_returns_its_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = start(dir.path(), &ScriptedEngine::new(), test_config()).await;
    let mut rx = h.bus.subscribe();
    let id = h.create("clinic").await;
    h.make_ready(&id, &mut rx).await;
    match h.connect(&id).await {
        ConnectOutcome::AlreadyLive { session } => assert_eq!(session.state.name(), "READY"),
        other => panic!("expected AlreadyLive, got {other:?}"),
    }
    assert_eq!(h.engine.starts(&id), 1);
    h.stop().await;
}

#[tokio::test]
async fn a_remote_logout_clears_the_desire_to_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = start(dir.path(), &ScriptedEngine::new(), test_config()).await;
    let mut rx = h.bus.subscribe();
    let id = h.create("clinic").await;
    h.make_ready(&id, &mut rx).await;
    assert_eq!(
        h.store
            .get_session(&id)
            .expect("get")
            .expect("exists")
            .desired,
        DesiredState::Running
    );
    h.engine.emit(
        &id,
        crate::engine::EngineEvent::Disconnected {
            reason: DisconnectReason::Logout,
            detail: "phone".into(),
        },
    );
    wait_for(&mut rx, &id, "DISCONNECTED").await;
    assert!(!h.engine.is_paired(&id), "logout wipes the profile");
    // The supervisor records it; a Get after the report sees the same.
    let view = h.get(&id).await;
    assert_eq!(view.state.reason(), Some(DisconnectReason::Logout));
    let record = h.store.get_session(&id).expect("get").expect("exists");
    assert_eq!(record.desired, DesiredState::Stopped);
    assert_eq!(record.last_reason, Some(DisconnectReason::Logout));
    h.stop().await;
}

#[tokio::test]
async fn delete_unpairs_stops_and_forgets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = start(dir.path(), &ScriptedEngine::new(), test_config()).await;
    let mut rx = h.bus.subscribe();
    let id = h.create("clinic").await;
    h.make_ready(&id, &mut rx).await;
    call!(h.sup, |r| SupervisorMsg::Delete {
        id: id.clone(),
        reply: r
    })
    .expect("call")
    .expect("delete");
    assert!(!h.engine.is_running(&id));
    assert!(!h.engine.is_paired(&id));
    assert_eq!(h.store.get_session(&id).expect("get"), None);
    let gone = call!(h.sup, |r| SupervisorMsg::Get {
        id: id.clone(),
        reply: r
    })
    .expect("call");
    assert_eq!(gone, Err(SupervisorError::NotFound(id.clone())));
    let list = call!(h.sup, |r| SupervisorMsg::List {
        tenant: None,
        reply: r
    })
    .expect("call");
    assert!(list.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn deleting_a_tenant_deletes_its_sessions_and_no_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = start(dir.path(), &ScriptedEngine::new(), test_config()).await;
    let mut rx = h.bus.subscribe();
    let a = h.create("clinic").await;
    let b = h.create("clinic").await;
    let other = h.create("shop").await;
    h.make_ready(&a, &mut rx).await;
    let sup = Supervisor::from_actor(h.sup.clone());
    let clinic = TenantId::new("clinic").expect("id");
    assert_eq!(sup.delete_tenant(clinic.clone()).await, Ok(2));
    assert!(!h.engine.is_running(&a), "the live one is stopped");
    assert!(!h.engine.is_paired(&a), "and unpaired");
    for id in [&a, &b] {
        assert_eq!(h.store.get_session(id).expect("get"), None);
        assert_eq!(
            sup.get(id.clone()).await,
            Err(SupervisorError::NotFound(id.clone()))
        );
    }
    let left = sup.list(None).await.expect("list");
    assert_eq!(
        left.iter().map(|v| v.id.clone()).collect::<Vec<_>>(),
        vec![other]
    );
    assert_eq!(sup.delete_tenant(clinic).await, Ok(0), "nothing left");
    h.stop().await;
}

#[tokio::test]
async fn list_filters_by_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = start(dir.path(), &ScriptedEngine::new(), test_config()).await;
    let a = h.create("clinic").await;
    let _b = h.create("shop").await;
    let tenant = Some(TenantId::new("clinic").expect("id"));
    let list = call!(h.sup, |r| SupervisorMsg::List { tenant, reply: r }).expect("call");
    assert_eq!(
        list.iter().map(|v| v.id.clone()).collect::<Vec<_>>(),
        vec![a]
    );
    h.stop().await;
}

#[tokio::test]
async fn a_session_that_keeps_crashing_stops_being_restarted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config();
    config.supervisor.restart_budget = 2;
    config.supervisor.restart_backoff = Duration::ZERO;
    let h = start(dir.path(), &ScriptedEngine::new(), config).await;
    let mut rx = h.bus.subscribe();
    let id = h.create("clinic").await;
    h.make_ready(&id, &mut rx).await;
    for round in 0..3 {
        h.engine.panic_on_send(&id);
        let sent = call!(h.sup, |r| SupervisorMsg::SendText {
            id: id.clone(),
            to: "1".into(),
            text: "x".into(),
            reply: r
        })
        .expect("call");
        assert!(sent.is_err(), "round {round}");
        wait_for(&mut rx, &id, "DISCONNECTED").await;
        if round < 2 {
            wait_for(&mut rx, &id, "READY").await;
        }
    }
    // Budget spent: the third crash is not followed by a restart. A Get is
    // answered after the crash was handled; the driver was released.
    let view = h.get(&id).await;
    assert_eq!(view.state.reason(), Some(DisconnectReason::EngineError));
    assert_eq!(h.engine.starts(&id), 3);
    // A user's connect still works: it spawns a fresh actor.
    assert!(matches!(
        h.connect(&id).await,
        ConnectOutcome::Queued { .. }
    ));
    wait_for(&mut rx, &id, "READY").await;
    h.stop().await;
}

async fn rate_status(h: &Harness, tenant: &str) -> admission::TenantStatus {
    let tenant = Some(TenantId::new(tenant).expect("id"));
    let report = call!(h.sup, |r| SupervisorMsg::RateLimitStatus {
        tenant,
        reply: r
    })
    .expect("call");
    report
        .organizations
        .into_iter()
        .next()
        .expect("one organization")
}

#[tokio::test]
async fn the_515_right_after_a_scan_restarts_without_a_block_and_a_later_515_bans() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(crate::clock::ManualClock::new(
        crate::clock::Timestamp::from_millis(1_768_590_000_000),
    ));
    let h = start_with_clock(
        dir.path(),
        &ScriptedEngine::new(),
        test_config(),
        clock.clone(),
    )
    .await;
    let mut rx = h.bus.subscribe();
    let id = h.create("clinic").await;
    h.make_ready(&id, &mut rx).await;

    clock.advance(Duration::from_secs(5));
    assert!(h
        .engine
        .emit(&id, crate::engine::EngineEvent::StreamError { code: 515 }));
    let seen = wait_for(&mut rx, &id, "READY").await;
    let states: Vec<&str> = seen.iter().map(|t| t.to.name()).collect();
    assert_eq!(
        states,
        ["CONNECTING", "AUTHENTICATED", "READY"],
        "a restart on the same pairing"
    );
    let status = rate_status(&h, "clinic").await;
    assert!(!status.is_blocked_515 && status.can_connect, "{status:?}");
    assert_eq!(status.attempts_last_24h, 1, "the restart spent no attempt");

    clock.advance(Duration::from_secs(3600));
    assert!(h
        .engine
        .emit(&id, crate::engine::EngineEvent::StreamError { code: 515 }));
    let seen = wait_for(&mut rx, &id, "DISCONNECTED").await;
    assert_eq!(
        seen.last().and_then(|t| t.reason),
        Some(DisconnectReason::Banned)
    );
    let status = rate_status(&h, "clinic").await;
    assert!(status.is_blocked_515, "{status:?}");
    assert_eq!(
        status.block_reason,
        Some(admission::DenyReason::Error515Block)
    );
    assert_eq!(
        status.block_until,
        Some(clock.now().plus(Duration::from_secs(24 * 3600)))
    );
    match h.connect(&id).await {
        ConnectOutcome::Denied { reason, .. } => {
            assert_eq!(reason, admission::DenyReason::Error515Block)
        }
        other => panic!("expected a denial, got {other:?}"),
    }

    // An admin lifts it; the audit log says who.
    let lifted = call!(h.sup, |r| SupervisorMsg::Unblock {
        tenant: TenantId::new("clinic").expect("id"),
        by: "root".into(),
        reply: r
    })
    .expect("call")
    .expect("unblock");
    assert!(lifted);
    let audit = crate::store::AuditRepo::audit_since(&h.store, 0, 10).expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].actor.as_str(), audit[0].action.as_str()),
        ("root", "antiban.unblock")
    );
    assert!(rate_status(&h, "clinic").await.can_connect);
    h.stop().await;
}

#[tokio::test]
async fn an_unscanned_qr_ends_in_a_cooldown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config();
    config.engine.qr_window = Duration::from_millis(50);
    let h = start(dir.path(), &ScriptedEngine::new(), config).await;
    let mut rx = h.bus.subscribe();
    let id = h.create("shop").await;
    assert!(matches!(
        h.connect(&id).await,
        ConnectOutcome::Queued { .. }
    ));
    let seen = wait_for(&mut rx, &id, "DISCONNECTED").await;
    assert_eq!(
        seen.last().and_then(|t| t.reason),
        Some(DisconnectReason::QrTimeout)
    );
    let status = rate_status(&h, "shop").await;
    assert_eq!(
        status.block_reason,
        Some(admission::DenyReason::CooldownAfterFailure)
    );
    assert_eq!(status.wait_time_minutes, 120);
    assert!(status.last_failure.is_some());
    match h.connect(&id).await {
        ConnectOutcome::Denied { reason, .. } => {
            assert_eq!(reason, admission::DenyReason::CooldownAfterFailure)
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    h.stop().await;
}

#[tokio::test]
async fn a_disconnect_while_queued_cancels_the_start_and_refunds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config();
    config.antiban.connect_delay = Duration::from_secs(3600);
    config.antiban.tenant_attempts_per_day = 1;
    let h = start(dir.path(), &ScriptedEngine::new(), config).await;
    let id = h.create("crm").await;
    let ConnectOutcome::Queued { position, .. } = h.connect(&id).await else {
        panic!("queued expected");
    };
    assert_eq!(position, 1);
    let queue = call!(h.sup, |r| SupervisorMsg::Queue { reply: r }).expect("call");
    assert_eq!(queue.len(), 1);
    call!(h.sup, |r| SupervisorMsg::Disconnect {
        id: id.clone(),
        reply: r
    })
    .expect("call")
    .expect("disconnect");
    let queue = call!(h.sup, |r| SupervisorMsg::Queue { reply: r }).expect("call");
    assert!(queue.is_empty());
    assert_eq!(h.engine.starts(&id), 0);
    assert!(
        matches!(h.connect(&id).await, ConnectOutcome::Queued { .. }),
        "the cancelled attempt was refunded (daily limit 1)"
    );
    h.stop().await;
}

/// The next admission decision published about `id`.
async fn next_admission(
    rx: &mut broadcast::Receiver<BusEvent>,
    id: &SessionId,
) -> crate::bus::AdmissionEvent {
    next_event(rx, "admission decision", |ev| match ev {
        BusEvent::Admission(a) if a.session == *id => Some(a),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn admission_decisions_carry_their_data_and_the_real_attempt_kind() {
    use crate::bus::AdmissionDecision as D;
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = ScriptedEngine::new();
    let mut config = test_config();
    config.antiban.tenant_attempts_per_day = 2;
    let running = {
        let h = start(dir.path(), &engine, config.clone()).await;
        let mut rx = h.bus.subscribe();
        let running = h.create("clinic").await;
        h.make_ready(&running, &mut rx).await;
        h.stop().await;
        running
    };
    config.antiban.connect_delay = Duration::from_secs(3600);
    let h = start(dir.path(), &engine, config).await;
    let mut rx = h.bus.subscribe();
    // The restore after the restart is published as a restore.
    let a = next_admission(&mut rx, &running).await;
    assert!(matches!(a.decision, D::Queued { .. }), "{a:?}");
    assert_eq!(a.kind, "restore");
    let a = next_admission(&mut rx, &running).await;
    assert_eq!((a.decision, a.kind), (D::Started, "restore"));
    // A queued connect withdrawn by a disconnect is published as cancelled.
    let id = h.create("clinic").await;
    let ConnectOutcome::Queued { start_at, .. } = h.connect(&id).await else {
        panic!("queued expected");
    };
    let a = next_admission(&mut rx, &id).await;
    assert_eq!((a.decision, a.kind), (D::Queued { start_at }, "connect"));
    call!(h.sup, |r| SupervisorMsg::Disconnect {
        id: id.clone(),
        reply: r
    })
    .expect("call")
    .expect("disconnect");
    let a = next_admission(&mut rx, &id).await;
    assert_eq!((a.decision, a.kind), (D::Cancelled, "connect"));
    // The day's budget (2: the first connect and this one, refunded) has
    // room for one more; the one after is denied with its data.
    let other = h.create("clinic").await;
    assert!(matches!(
        h.connect(&id).await,
        ConnectOutcome::Queued { .. }
    ));
    let _ = next_admission(&mut rx, &id).await;
    let ConnectOutcome::Denied { wait, .. } = h.connect(&other).await else {
        panic!("denied expected");
    };
    let a = next_admission(&mut rx, &other).await;
    let D::Denied {
        reason,
        wait_time_minutes,
        block_until,
    } = a.decision
    else {
        panic!("denied expected: {a:?}");
    };
    assert_eq!(reason, "daily_limit");
    assert_eq!(wait_time_minutes, wait.as_secs().div_ceil(60));
    assert!(block_until.is_some());
    h.stop().await;
}

#[tokio::test]
async fn creation_respects_the_per_tenant_session_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config();
    config.antiban.max_sessions_per_tenant = 2;
    let h = start(dir.path(), &ScriptedEngine::new(), config).await;
    h.create("clinic").await;
    h.create("clinic").await;
    let new = NewSession {
        tenant: TenantId::new("clinic").expect("id"),
        name: "third".into(),
        engine: crate::engine::EngineKind::Webjs,
        user_agent: None,
        proxy: None,
        cloud: None,
    };
    let out = call!(h.sup, |r| SupervisorMsg::Create { new, reply: r }).expect("call");
    match out {
        Err(SupervisorError::Denied(d)) => {
            assert_eq!(d.reason, admission::DenyReason::TenantSessionLimit)
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    h.create("shop").await;
    h.stop().await;
}

#[tokio::test]
async fn auto_reconnect_retries_a_crashed_browser_through_admission() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config();
    // Paired sessions restore through their breaker; with that off,
    // auto_reconnect is what brings a crashed browser back.
    config.supervisor.restore_local_faults = false;
    config.antiban.auto_reconnect = true;
    config.antiban.reconnect_backoff_base = Duration::from_millis(20);
    config.antiban.reconnect_max_tries = 2;
    let h = start(dir.path(), &ScriptedEngine::new(), config).await;
    let mut rx = h.bus.subscribe();
    let id = h.create("clinic").await;
    h.make_ready(&id, &mut rx).await;
    h.engine.emit(
        &id,
        crate::engine::EngineEvent::Disconnected {
            reason: DisconnectReason::BrowserCrashed,
            detail: "killed".into(),
        },
    );
    let seen = wait_for(&mut rx, &id, "READY").await;
    let states: Vec<&str> = seen
        .iter()
        .filter(|t| t.session == id)
        .map(|t| t.to.name())
        .collect();
    assert_eq!(
        states,
        ["DISCONNECTED", "CONNECTING", "AUTHENTICATED", "READY"],
        "reconnected on the same pairing"
    );
    assert_eq!(h.engine.starts(&id), 2);
    let status = {
        let tenant = Some(TenantId::new("clinic").expect("id"));
        call!(h.sup, |r| SupervisorMsg::RateLimitStatus {
            tenant,
            reply: r
        })
        .expect("call")
    };
    assert_eq!(
        status.organizations[0].attempts_last_24h, 2,
        "the reconnect was an admitted attempt"
    );
    h.stop().await;
}

#[tokio::test]
async fn with_automatic_restore_and_reconnect_off_a_crashed_browser_stays_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config();
    config.supervisor.restore_local_faults = false;
    let h = start(dir.path(), &ScriptedEngine::new(), config).await;
    let mut rx = h.bus.subscribe();
    let id = h.create("clinic").await;
    h.make_ready(&id, &mut rx).await;
    h.engine.emit(
        &id,
        crate::engine::EngineEvent::Disconnected {
            reason: DisconnectReason::BrowserCrashed,
            detail: "killed".into(),
        },
    );
    wait_for(&mut rx, &id, "DISCONNECTED").await;
    // A Get is answered after every report of the crash was handled.
    assert_eq!(
        h.get(&id).await.state.reason(),
        Some(DisconnectReason::BrowserCrashed)
    );
    let queue = call!(h.sup, |r| SupervisorMsg::Queue { reply: r }).expect("call");
    assert!(queue.is_empty(), "nothing scheduled");
    assert_eq!(h.engine.starts(&id), 1);
    h.stop().await;
}

async fn describe(h: &Harness, id: &SessionId) -> SessionDetail {
    call!(h.sup, |r| SupervisorMsg::Describe {
        id: id.clone(),
        reply: r
    })
    .expect("call")
    .expect("describe")
}

/// Reads the bus until `pick` takes an event (or panics naming `what`).
async fn next_event<T>(
    rx: &mut broadcast::Receiver<BusEvent>,
    what: &str,
    pick: impl Fn(BusEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
            .expect("bus open");
        if let Some(found) = pick(ev) {
            return found;
        }
    }
}

/// Waits for the next scheduled restore of `id`.
async fn next_recovery(
    rx: &mut broadcast::Receiver<BusEvent>,
    id: &SessionId,
) -> crate::bus::RecoveryEvent {
    next_event(rx, "restore", |ev| match ev {
        BusEvent::Recovery(r) if r.session == *id => Some(r),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_crashed_browser_on_a_paired_profile_is_restored_by_itself_as_a_restore() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config();
    config.supervisor.restore_backoff_base = Duration::from_millis(20);
    let h = start(dir.path(), &ScriptedEngine::new(), config).await;
    let mut rx = h.bus.subscribe();
    let id = h.create("clinic").await;
    let neighbour = h.create("shop").await;
    h.make_ready(&id, &mut rx).await;
    h.make_ready(&neighbour, &mut rx).await;
    let record = h.store.get_session(&id).expect("read").expect("record");
    assert!(record.paired && record.paired_at.is_some(), "{record:?}");
    h.engine.crash(&id);
    let r = next_recovery(&mut rx, &id).await;
    assert_eq!((r.breaker, r.consecutive_failures), ("closed", 1));
    let seen = wait_for(&mut rx, &id, "READY").await;
    let states: Vec<&str> = seen
        .iter()
        .filter(|t| t.session == id)
        .map(|t| t.to.name())
        .collect();
    assert_eq!(states, ["CONNECTING", "AUTHENTICATED", "READY"], "no QR");
    assert!(
        seen.iter().all(|t| t.session != neighbour),
        "the neighbour never moved: {seen:#?}"
    );
    assert_eq!(
        describe(&h, &id).await.recovery,
        None,
        "READY closes the breaker"
    );
    let status = rate_status(&h, "clinic").await;
    assert_eq!(
        status.attempts_last_24h, 1,
        "a restore spends no pairing budget"
    );
    assert!(
        status.can_connect,
        "a local fault costs no cooldown: {status:?}"
    );
    let after = h.store.get_session(&id).expect("read").expect("record");
    assert_eq!(
        after.paired_at, record.paired_at,
        "a restore is no new pairing (the warm-up goes on)"
    );
    h.stop().await;
}

#[tokio::test]
async fn whatsapps_verdicts_never_reconnect_by_themselves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config();
    config.supervisor.restore_backoff_base = Duration::from_millis(1);
    config.antiban.auto_reconnect = true;
    config.antiban.reconnect_backoff_base = Duration::from_millis(1);
    let h = start(dir.path(), &ScriptedEngine::new(), config).await;
    let mut rx = h.bus.subscribe();
    for (n, reason) in [
        DisconnectReason::Logout,
        DisconnectReason::Conflict,
        DisconnectReason::Banned,
        DisconnectReason::ProxyBlocked,
    ]
    .into_iter()
    .enumerate()
    {
        let id = h.create(&format!("tenant{n}")).await;
        h.make_ready(&id, &mut rx).await;
        h.engine.emit(
            &id,
            crate::engine::EngineEvent::Disconnected {
                reason,
                detail: "verdict".into(),
            },
        );
        wait_for(&mut rx, &id, "DISCONNECTED").await;
        let d = describe(&h, &id).await;
        assert_eq!(d.view.state.reason(), Some(reason));
        assert_eq!(d.recovery, None, "{reason:?}");
        let record = h.store.get_session(&id).expect("read").expect("record");
        assert_eq!(record.desired, DesiredState::Stopped, "{reason:?}");
        assert_eq!(h.engine.starts(&id), 1, "{reason:?}");
    }
    let queue = call!(h.sup, |r| SupervisorMsg::Queue { reply: r }).expect("call");
    assert!(queue.is_empty(), "nothing scheduled: {queue:?}");
    h.stop().await;
}

#[tokio::test]
async fn five_failed_restores_open_the_breaker_then_one_half_open_try_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config();
    config.supervisor.restore_backoff_base = Duration::from_secs(1);
    config.supervisor.restore_backoff_max = Duration::from_secs(30);
    config.supervisor.breaker_failures = 5;
    config.supervisor.breaker_open_for = Duration::from_secs(60);
    let clock = Arc::new(crate::clock::ManualClock::new(
        crate::clock::Timestamp::from_millis(1_768_590_000_000),
    ));
    let h = start_with_clock(dir.path(), &ScriptedEngine::new(), config, clock.clone()).await;
    let mut rx = h.bus.subscribe();
    let id = h.create("clinic").await;
    h.make_ready(&id, &mut rx).await;
    h.engine.fail_start(&id);
    h.engine.crash(&id);
    // The crash, then four failed restores: 1, 2, 4, 8 s apart.
    for (n, wait) in [1u64, 2, 4, 8].into_iter().enumerate() {
        let r = next_recovery(&mut rx, &id).await;
        assert_eq!(r.consecutive_failures, n as u32 + 1);
        assert_eq!(r.breaker, "closed");
        assert_eq!(
            r.next_try_at.map(|t| t.since(r.at)),
            Some(Duration::from_secs(wait))
        );
        clock.set(r.next_try_at.expect("a try"));
    }
    let r = next_recovery(&mut rx, &id).await;
    assert_eq!((r.breaker, r.consecutive_failures), ("open", 5));
    let until = r.next_try_at.expect("a half-open try");
    assert_eq!(until.since(r.at), Duration::from_secs(60));
    let shown = describe(&h, &id)
        .await
        .recovery
        .expect("shown in the session");
    assert_eq!(shown.breaker, recovery::BreakerState::Open);
    assert_eq!(shown.next_try_at, Some(until));
    assert_eq!(h.engine.starts(&id), 5, "the first run and four restores");
    // The half-open try fails: open again for a minute, one try only.
    clock.set(until);
    let r = next_recovery(&mut rx, &id).await;
    assert_eq!((r.breaker, r.consecutive_failures), ("open", 6));
    assert_eq!(h.engine.starts(&id), 6, "exactly one half-open try");
    // The next half-open try works: READY, breaker closed.
    h.engine.allow_start(&id);
    clock.set(r.next_try_at.expect("a try"));
    wait_for(&mut rx, &id, "READY").await;
    assert_eq!(describe(&h, &id).await.recovery, None);
    assert_eq!(h.engine.starts(&id), 7);
    h.stop().await;
}

/// Waits for the next pairing code shown by `id`.
async fn next_code(
    rx: &mut broadcast::Receiver<BusEvent>,
    id: &SessionId,
) -> crate::bus::PairingCodeEvent {
    next_event(rx, "pairing code", |ev| match ev {
        BusEvent::PairingCode(p) if p.session == *id => Some(p),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_shown_pairing_code_is_refreshed_while_unscanned_each_refresh_admitted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config();
    config.antiban.pairing_codes_per_phone_per_hour = 2;
    let h = start_with_env(
        dir.path(),
        &ScriptedEngine::new(),
        config,
        Arc::new(SystemClock),
        |env| env.pairing_code_ttl = Duration::from_millis(100),
    )
    .await;
    let mut rx = h.bus.subscribe();
    let id = h.create("clinic").await;
    h.connect(&id).await;
    wait_for(&mut rx, &id, "QR").await;
    let phone = "5491122334455".to_owned();
    let first = call!(h.sup, |r| SupervisorMsg::PairingCode {
        id: id.clone(),
        phone: phone.clone(),
        reply: r
    })
    .expect("call")
    .expect("a code");
    assert_eq!(next_code(&mut rx, &id).await.code, first.code);
    // Its time is up while nobody typed it: a fresh one, admitted like the first.
    let fresh = next_code(&mut rx, &id).await;
    assert_ne!(fresh.code, first.code);
    assert!(fresh.expires_at > first.expires_at);
    assert_eq!(
        h.get(&id).await.pairing_code.map(|p| p.code),
        Some(fresh.code.clone())
    );
    // The number's hourly budget (2) is spent: a third code is refused.
    let third = call!(h.sup, |r| SupervisorMsg::PairingCode {
        id: id.clone(),
        phone,
        reply: r
    })
    .expect("call");
    match third {
        Err(SupervisorError::Denied(d)) => {
            assert_eq!(d.reason, admission::DenyReason::PairingCodeLimit)
        }
        other => panic!("the per-number limit holds for refreshes too: {other:?}"),
    }
    h.stop().await;
}

#[path = "fleet_tests.rs"]
mod fleet;

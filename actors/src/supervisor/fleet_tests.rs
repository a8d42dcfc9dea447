//! The supervisor in a fleet, on the scripted engine and a shared admission
//! kept in memory (the PostgreSQL one is `centinela-fleet`'s, tested
//! there): decisions made off the supervisor's mailbox, refunds of
//! decisions that come back too late, the database down, fencing, outcomes
//! and overrides in the shared ledger, and tenants adopted and released.

use super::*;
use crate::clock::Timestamp;
use crate::config::AntibanConfig;
use crate::engine::EngineEvent;
use crate::supervisor::admission::{counts, evaluate, AttemptRequest, Denial};
use crate::supervisor::ledger::{Ledger, LedgerEvent};
use crate::supervisor::shared::{
    FleetSeam, SharedAdmission, SharedError, SharedVerdict, TenantEvent,
};
use std::sync::Mutex;
use tokio::sync::{watch, Notify};

/// What the fake shared ledger saw.
#[derive(Default)]
struct Seen {
    ledger: Ledger,
    next: u64,
    decided: Vec<AttemptRequest>,
    cancelled: Vec<u64>,
    records: Vec<(TenantId, TenantEvent, bool)>,
    /// Every call fails with this while set.
    fail: Option<SharedError>,
}

/// A shared admission in memory: the same pure `evaluate` over one ledger,
/// a gate that holds decisions (to see the supervisor answer meanwhile),
/// and a switch that makes every call fail as a fleet's would.
struct FakeShared {
    cfg: AntibanConfig,
    seen: Mutex<Seen>,
    open: watch::Sender<bool>,
    /// Notified when a decision reaches the gate, and on every refund.
    changed: Notify,
}

impl FakeShared {
    fn new(cfg: AntibanConfig) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            seen: Mutex::default(),
            open: watch::channel(true).0,
            changed: Notify::new(),
        })
    }

    fn seen<T>(&self, f: impl FnOnce(&mut Seen) -> T) -> T {
        f(&mut self.seen.lock().expect("fake lock"))
    }

    fn fail(&self) -> Result<(), SharedError> {
        self.seen(|s| s.fail.clone()).map_or(Ok(()), Err)
    }

    /// Waits until `done` holds of what was seen.
    async fn until(&self, what: &str, done: impl Fn(&Seen) -> bool) {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                if self.seen(|s| done(s)) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("the shared ledger never saw {what}"));
    }
}

#[async_trait::async_trait]
impl SharedAdmission for FakeShared {
    async fn decide(&self, req: &AttemptRequest) -> Result<SharedVerdict, SharedError> {
        self.changed.notify_waiters();
        self.seen(|s| s.decided.push(req.clone()));
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
        self.fail()?;
        let now = Timestamp::from_millis(1_768_590_000_000);
        self.seen(|s| {
            let verdict = evaluate(
                &self.cfg,
                &s.ledger,
                &req.tenant,
                req.kind,
                req.live,
                &req.egress,
                now,
            );
            if let Err(denial) = verdict {
                return Ok(SharedVerdict::Denied(denial));
            }
            s.next += 1;
            s.ledger.apply(&LedgerEvent::Attempt {
                id: s.next,
                tenant: req.tenant.clone(),
                session: req.session.clone(),
                kind: req.kind,
                counted: counts(&self.cfg, req.kind),
                at: now,
                cloud: false,
            });
            Ok(SharedVerdict::Admitted { attempt: s.next })
        })
    }

    async fn record(
        &self,
        tenant: &TenantId,
        event: TenantEvent,
        fenced: bool,
    ) -> Result<(), SharedError> {
        self.fail()?;
        let at = Timestamp::from_millis(1_768_590_000_000);
        let tenant = tenant.clone();
        let stored = match &event {
            TenantEvent::Banned { session } => Some(LedgerEvent::Banned {
                tenant: tenant.clone(),
                session: session.clone(),
                at,
                until: at.plus(self.cfg.ban_block),
            }),
            TenantEvent::Unblocked { by } => Some(LedgerEvent::Unblocked {
                tenant: tenant.clone(),
                by: by.clone(),
                at,
            }),
            _ => None,
        };
        self.seen(|s| {
            if let Some(e) = &stored {
                s.ledger.apply(e);
            }
            s.records.push((tenant, event, fenced));
        });
        self.changed.notify_waiters();
        Ok(())
    }

    async fn cancel(&self, attempt: u64) -> Result<(), SharedError> {
        self.seen(|s| s.cancelled.push(attempt));
        self.changed.notify_waiters();
        Ok(())
    }

    async fn pairing_code(
        &self,
        tenant: &TenantId,
        phone: &str,
        egress: &str,
    ) -> Result<Result<(), Denial>, SharedError> {
        self.fail()?;
        let now = Timestamp::from_millis(1_768_590_000_000);
        self.seen(|s| {
            let judged = crate::supervisor::admission::judge_pairing_code(
                &self.cfg,
                &s.ledger.pairing_codes,
                phone,
                egress,
                now,
            );
            if let Err(denial) = judged {
                return Ok(Err(denial));
            }
            s.ledger.apply(&LedgerEvent::PairingCode {
                tenant: tenant.clone(),
                phone: phone.to_owned(),
                egress: egress.to_owned(),
                at: now,
            });
            Ok(Ok(()))
        })
    }

    async fn view(
        &self,
        _tenant: &TenantId,
        _egress: &str,
    ) -> Result<(Ledger, Timestamp), SharedError> {
        self.fail()?;
        let now = Timestamp::from_millis(1_768_590_000_000);
        Ok((self.seen(|s| s.ledger.clone()), now))
    }
}

fn clinic() -> TenantId {
    TenantId::new("clinic").expect("id")
}

async fn start_fleet(dir: &Path, engine: &ScriptedEngine) -> (Harness, Arc<FakeShared>) {
    let config = test_config();
    let shared = FakeShared::new(config.antiban.clone());
    let seam = FleetSeam {
        admission: shared.clone(),
        egress: "node-a".into(),
    };
    let clock = Arc::new(SystemClock);
    let h = start_full(dir, engine, config, clock, |_| {}, Some(seam)).await;
    (h, shared)
}

impl Harness {
    fn handle(&self) -> Supervisor {
        Supervisor::from_actor(self.sup.clone())
    }

    async fn adopt(&self, tenant: TenantId) -> usize {
        self.handle().adopt_tenant(tenant).await.expect("adopt")
    }

    async fn try_connect(&self, id: &SessionId) -> Result<ConnectOutcome, SupervisorError> {
        self.handle().connect(id.clone()).await
    }
}

#[tokio::test]
async fn a_fleet_node_hosts_only_adopted_tenants_and_a_released_one_comes_back_without_a_qr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = ScriptedEngine::new();
    let (h, shared) = start_fleet(dir.path(), &engine).await;
    let sup = h.handle();
    let new = |tenant: &str| NewSession {
        tenant: TenantId::new(tenant).expect("id"),
        name: "desk".into(),
        engine: crate::engine::EngineKind::Webjs,
        user_agent: None,
        proxy: None,
        cloud: None,
    };
    assert_eq!(
        sup.create(new("clinic")).await,
        Err(SupervisorError::NotOwner(clinic())),
        "a tenant this node does not hold"
    );
    assert_eq!(h.adopt(clinic()).await, 0);
    let mut rx = h.bus.subscribe();
    let id = h.create("clinic").await;
    h.make_ready(&id, &mut rx).await;
    let decided = shared.seen(|s| s.decided.clone());
    assert_eq!(decided.len(), 1, "the shared ledger decided the connect");
    assert_eq!(decided[0].kind, admission::AttemptKind::Connect);
    assert_eq!(
        decided[0].egress, "node-a",
        "the node's egress, not `server`"
    );
    let local = crate::supervisor::ledger::LedgerRepo::load(&h.store, Timestamp::from_millis(0))
        .expect("local ledger");
    assert!(
        local.is_empty(),
        "nothing in the node's own ledger: {local:?}"
    );
    let detail = sup.describe(id.clone()).await.expect("describe");
    assert_eq!(detail.egress, "node-a");

    // Released: the browser stops, nothing is written, nothing answers here.
    let before = h.store.get_session(&id).expect("read").expect("record");
    assert_eq!(sup.release_tenant(clinic(), "lost").await, Ok(1));
    assert!(!engine.is_running(&id), "the browser stopped");
    assert_eq!(h.store.get_session(&id).expect("read"), Some(before));
    assert_eq!(
        h.store.get_session(&id).expect("read").map(|r| r.desired),
        Some(DesiredState::Running),
        "the desire to run is the next owner's to act on"
    );
    assert_eq!(
        sup.get(id.clone()).await,
        Err(SupervisorError::NotFound(id.clone()))
    );
    assert_eq!(sup.list(Some(clinic())).await.expect("list"), vec![]);

    // Adopted again (as a new owner would): restored, no QR.
    assert_eq!(h.adopt(clinic()).await, 1);
    let seen = wait_for(&mut rx, &id, "READY").await;
    assert!(
        seen.iter().all(|t| t.to.name() != "QR"),
        "restored without a QR: {seen:#?}"
    );
    let kinds: Vec<_> = shared.seen(|s| s.decided.iter().map(|r| r.kind).collect());
    assert_eq!(
        kinds,
        [
            admission::AttemptKind::Connect,
            admission::AttemptKind::Restore
        ]
    );
    h.stop().await;
}

#[tokio::test]
async fn a_decision_under_way_stalls_nothing_and_a_stop_meanwhile_refunds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = ScriptedEngine::new();
    let (h, shared) = start_fleet(dir.path(), &engine).await;
    h.adopt(clinic()).await;
    let id = h.create("clinic").await;
    shared.open.send_replace(false);
    let sup = h.handle();
    let connect = tokio::spawn({
        let (sup, id) = (sup.clone(), id.clone());
        async move { sup.connect(id).await }
    });
    shared.until("the decision", |s| s.decided.len() == 1).await;

    // The supervisor answers while the decision waits.
    let detail = tokio::time::timeout(WAIT, sup.describe(id.clone()))
        .await
        .expect("describe answered during a decision")
        .expect("describe");
    assert!(!detail.view.state.is_live());
    assert_eq!(
        h.try_connect(&id).await,
        Err(SupervisorError::Deciding),
        "one decision at a time"
    );
    sup.disconnect(id.clone()).await.expect("disconnect");
    shared.open.send_replace(true);
    let answered = tokio::time::timeout(WAIT, connect)
        .await
        .expect("connect answered")
        .expect("task");
    assert_eq!(answered, Err(SupervisorError::Interrupted));
    shared.until("the refund", |s| s.cancelled == [1]).await;
    assert_eq!(engine.starts(&id), 0, "never started");
    h.stop().await;
}

#[tokio::test]
async fn with_the_fleet_database_down_nothing_is_admitted_and_the_caller_is_told_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = ScriptedEngine::new();
    let (h, shared) = start_fleet(dir.path(), &engine).await;
    h.adopt(clinic()).await;
    let mut rx = h.bus.subscribe();
    let ready = h.create("clinic").await;
    h.make_ready(&ready, &mut rx).await;
    let id = h.create("clinic").await;
    let down = SharedError::Unavailable("connection refused".into());
    shared.seen(|s| s.fail = Some(down));
    match h.try_connect(&id).await {
        Err(SupervisorError::FleetUnavailable(why)) => assert!(why.contains("refused"), "{why}"),
        other => panic!("expected FleetUnavailable, got {other:?}"),
    }
    assert_eq!(engine.starts(&id), 0);
    let detail = h.handle().describe(id.clone()).await.expect("describe");
    assert_eq!(detail.admission, None, "not queued");
    assert!(
        h.get(&ready).await.state.is_live(),
        "a READY session keeps running"
    );
    // Back: admitted again.
    shared.seen(|s| s.fail = None);
    assert!(matches!(
        h.try_connect(&id).await,
        Ok(ConnectOutcome::Queued { .. })
    ));
    h.stop().await;
}

#[tokio::test]
async fn a_fenced_decision_lets_the_tenant_go_here() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = ScriptedEngine::new();
    let (h, shared) = start_fleet(dir.path(), &engine).await;
    h.adopt(clinic()).await;
    let id = h.create("clinic").await;
    shared.seen(|s| s.fail = Some(SharedError::Fenced(clinic())));
    assert_eq!(
        h.try_connect(&id).await,
        Err(SupervisorError::NotOwner(clinic()))
    );
    let sup = h.handle();
    assert_eq!(sup.list(Some(clinic())).await.expect("list"), vec![]);
    assert!(
        h.store.get_session(&id).expect("read").is_some(),
        "nothing deleted"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_ban_goes_to_the_shared_ledger_fenced_and_an_unblock_unfenced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = ScriptedEngine::new();
    let (h, shared) = start_fleet(dir.path(), &engine).await;
    h.adopt(clinic()).await;
    let mut rx = h.bus.subscribe();
    let id = h.create("clinic").await;
    h.make_ready(&id, &mut rx).await;
    assert!(engine.emit(
        &id,
        EngineEvent::Disconnected {
            reason: DisconnectReason::Banned,
            detail: "TOS_BLOCK".into(),
        }
    ));
    wait_for(&mut rx, &id, "DISCONNECTED").await;
    shared
        .until("the ban", |s| {
            s.records
                .iter()
                .any(|(_, e, _)| matches!(e, TenantEvent::Banned { .. }))
        })
        .await;
    let (tenant, event, fenced) = shared.seen(|s| s.records[0].clone());
    assert_eq!(tenant, clinic());
    assert_eq!(
        event,
        TenantEvent::Banned {
            session: id.clone()
        }
    );
    assert!(fenced, "an outcome is the owner's to record");

    let sup = h.handle();
    let report = sup.rate_limit_status(Some(clinic())).await.expect("status");
    let status = &report.organizations[0];
    assert!(
        status.is_blocked_515,
        "the shared ledger's view: {status:?}"
    );
    match h.try_connect(&id).await {
        Ok(ConnectOutcome::Denied { reason, .. }) => {
            assert_eq!(reason, admission::DenyReason::Error515Block)
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    assert_eq!(sup.unblock(clinic(), "root".into()).await, Ok(true));
    let (_, event, fenced) = shared.seen(|s| s.records[1].clone());
    assert_eq!(event, TenantEvent::Unblocked { by: "root".into() });
    assert!(!fenced, "an admin acts from any node");
    let audit = crate::store::AuditRepo::audit_since(&h.store, 0, 10).expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "antiban.unblock");
    assert_eq!(audit[0].data, serde_json::json!({"was_blocked": true}));
    h.stop().await;
}

#[tokio::test]
async fn a_fleet_nodes_pairing_codes_are_judged_by_the_shared_ledger_not_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = ScriptedEngine::new();
    let (h, shared) = start_fleet(dir.path(), &engine).await;
    h.adopt(clinic()).await;
    let mut rx = h.bus.subscribe();
    let id = h.create("clinic").await;
    h.connect(&id).await;
    wait_for(&mut rx, &id, "QR").await;
    // Another node spent the number's hour (the shared ledger has it).
    let limit = test_config().antiban.pairing_codes_per_phone_per_hour;
    let phone = "5491122334455";
    shared.seen(|s| {
        for _ in 0..limit {
            s.ledger.apply(&LedgerEvent::PairingCode {
                tenant: TenantId::new("shop").expect("id"),
                phone: phone.to_owned(),
                egress: "node-b".into(),
                at: Timestamp::from_millis(1_768_590_000_000),
            });
        }
    });
    let refused = h.handle().pairing_code(id.clone(), phone.into()).await;
    match refused {
        Err(SupervisorError::Denied(d)) => {
            assert_eq!(d.reason, admission::DenyReason::PairingCodeLimit)
        }
        other => panic!("refused by the shared ledger: {other:?}"),
    }
    // Another number is admitted there, and recorded there, not here.
    let code = h
        .handle()
        .pairing_code(id.clone(), "5491100000002".into())
        .await
        .expect("a code");
    assert!(!code.code.is_empty());
    let codes = shared.seen(|s| s.ledger.pairing_codes.len());
    assert_eq!(codes, limit as usize + 1);
    let local = crate::supervisor::ledger::LedgerRepo::load(&h.store, Timestamp::from_millis(0))
        .expect("local ledger");
    assert!(
        local.is_empty(),
        "nothing in the node's own ledger: {local:?}"
    );
    // The database down: said so.
    shared.seen(|s| s.fail = Some(SharedError::Unavailable("down".into())));
    assert!(matches!(
        h.handle()
            .pairing_code(id.clone(), "5491100000003".into())
            .await,
        Err(SupervisorError::FleetUnavailable(_))
    ));
    h.stop().await;
}

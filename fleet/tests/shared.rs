//! Real supervisors (scripted engines, each node its own redb file) on one
//! PostgreSQL, deciding through [`PgSharedAdmission`]: connects racing on
//! two nodes behind one egress spend the hourly budget once, not once per
//! node; a node that lost a tenant's lease is fenced and lets its sessions
//! go; the database down refuses connects fast and says why.

mod common;

use centinela_actors::bus::Bus;
use centinela_actors::clock::SystemClock;
use centinela_actors::config::Config;
use centinela_actors::engine::scripted::ScriptedEngine;
use centinela_actors::engine::{EngineKind, EngineSet};
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::session::actor::SessionEnv;
use centinela_actors::store::Store;
use centinela_actors::supervisor::admission::DenyReason;
use centinela_actors::supervisor::shared::FleetSeam;
use centinela_actors::supervisor::{
    ConnectOutcome, NewSession, Supervisor, SupervisorArgs, SupervisorError,
};
use centinela_fleet::{Fleet, FleetAdmission, Leases, NodeId, NodeSpec, Owned, PgSharedAdmission};
use common::PgCluster;
use std::sync::Arc;
use std::time::Duration;

const EGRESS: &str = "203.0.113.7";

/// One node: its supervisor, its leases and the tenants it holds.
struct Node {
    sup: Supervisor,
    leases: Leases,
    owned: Owned,
    _dir: tempfile::TempDir,
}

fn config(per_hour: u32) -> Config {
    let mut c = Config::defaults();
    c.antiban.global_attempts_per_hour = per_hour;
    c.antiban.tenant_attempts_per_day = 1000;
    c.antiban.connect_delay = Duration::ZERO;
    c.antiban.connect_jitter_min = Duration::ZERO;
    c.antiban.connect_jitter_max = Duration::ZERO;
    c.antiban.queue_spacing = Duration::from_millis(1);
    c
}

async fn node(pg: &PgCluster, name: &str, config: Config) -> Node {
    let fleet = Fleet::connect(&pg.url(), 4).await.expect("connect");
    let id = NodeId::new(name).expect("node id");
    let spec = NodeSpec {
        id: id.clone(),
        advertise_url: format!("http://{name}.invalid"),
        egress: EGRESS.into(),
        capacity: 100,
    };
    fleet.register(&spec).await.expect("register");
    let leases = Leases::new(&fleet, id, Duration::from_secs(60));
    let owned = Owned::default();
    let admission = FleetAdmission::new(&fleet, config.antiban.clone());
    let seam = FleetSeam {
        admission: Arc::new(PgSharedAdmission::new(
            admission,
            leases.clone(),
            owned.clone(),
        )),
        egress: EGRESS.into(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let env = SessionEnv::from_config(
        &config,
        Arc::new(SystemClock),
        Bus::new(256),
        Some(Arc::new(store.clone())),
    );
    let engines = EngineSet::default().with(EngineKind::Webjs, Arc::new(ScriptedEngine::new()));
    let args = SupervisorArgs {
        fleet: Some(seam),
        ..SupervisorArgs::on_store(config, store, engines, env)
    };
    let (sup, _) = Supervisor::spawn(args).await.expect("supervisor");
    Node {
        sup,
        leases,
        owned,
        _dir: dir,
    }
}

fn tenant(i: usize) -> TenantId {
    TenantId::new(format!("t{i:02}")).expect("tenant id")
}

impl Node {
    /// Wins `tenant`'s lease and hosts it; answers its new session.
    async fn host(&self, tenant: TenantId) -> SessionId {
        let lease = self
            .leases
            .claim(&tenant)
            .await
            .expect("claim")
            .expect("free");
        self.owned.insert(lease);
        self.sup.adopt_tenant(tenant.clone()).await.expect("adopt");
        let new = NewSession {
            tenant,
            name: "desk".into(),
            engine: EngineKind::Webjs,
            user_agent: None,
            proxy: None,
            cloud: None,
        };
        self.sup.create(new).await.expect("create").id
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_racing_on_two_nodes_behind_one_egress_spend_the_hourly_budget_once() {
    let pg = PgCluster::start();
    let (a, b) = (
        node(&pg, "a", config(4)).await,
        node(&pg, "b", config(4)).await,
    );
    let mut sessions = Vec::new();
    for i in 0..10 {
        let n = if i % 2 == 0 { &a } else { &b };
        sessions.push((n.sup.clone(), n.host(tenant(i)).await));
    }
    let outcomes = futures::future::join_all(
        sessions
            .iter()
            .map(|(sup, id)| async move { sup.connect(id.clone()).await }),
    )
    .await;
    let admitted = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(ConnectOutcome::Queued { .. })))
        .count();
    let limited = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o,
                Ok(ConnectOutcome::Denied {
                    reason: DenyReason::ServerRateLimit,
                    ..
                })
            )
        })
        .count();
    assert_eq!(
        (admitted, limited),
        (4, 6),
        "one hourly budget for the egress: {outcomes:#?}"
    );
    let report = a.sup.rate_limit_status(None).await.expect("status");
    assert_eq!(
        report.global.global_attempts_last_hour, 4,
        "node a's report counts node b's attempts too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_a_tenant_is_fenced_and_lets_its_sessions_go() {
    let pg = PgCluster::start();
    let (a, b) = (
        node(&pg, "a", config(100)).await,
        node(&pg, "b", config(100)).await,
    );
    let id = a.host(tenant(1)).await;
    // A paused past its lease: b takes the tenant; a still thinks it holds it.
    pg.expire_lease(&tenant(1)).await;
    let lease = b
        .leases
        .claim(&tenant(1))
        .await
        .expect("claim")
        .expect("won");
    assert!(a.owned.contains(&tenant(1)), "a has not noticed yet");
    assert_eq!(
        a.sup.connect(id.clone()).await,
        Err(SupervisorError::NotOwner(tenant(1)))
    );
    // The release happened in the step that answered: nothing to wait for.
    assert_eq!(a.sup.list(Some(tenant(1))).await.expect("list"), vec![]);
    b.owned.insert(lease);
    let admission = FleetAdmission::new(
        &Fleet::connect(&pg.url(), 1).await.expect("connect"),
        config(100).antiban,
    );
    let (ledger, _) = admission.view(&tenant(1), EGRESS).await.expect("view");
    assert!(
        ledger.global.is_empty(),
        "the fenced decision wrote nothing"
    );
    assert!(ledger.tenant(&tenant(1)).is_none(), "{ledger:?}");
}

/// A node's shared admission alone, holding `tenant`'s lease.
async fn shared_holding(
    pg: &PgCluster,
    name: &str,
    tenant: &TenantId,
    config: &Config,
) -> PgSharedAdmission {
    let n = node(pg, name, config.clone()).await;
    let lease = n.leases.claim(tenant).await.expect("claim").expect("free");
    n.owned.insert(lease);
    let fleet = Fleet::connect(&pg.url(), 2).await.expect("connect");
    PgSharedAdmission::new(
        FleetAdmission::new(&fleet, config.antiban.clone()),
        n.leases.clone(),
        n.owned.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_codes_asked_through_two_nodes_count_once_per_egress_and_per_phone() {
    use centinela_actors::supervisor::shared::{SharedAdmission, SharedError};
    let pg = PgCluster::start();
    let mut config = config(100);
    config.antiban.pairing_codes_per_egress_per_hour = 3;
    config.antiban.pairing_codes_per_phone_per_hour = 2;
    let a = shared_holding(&pg, "a", &tenant(1), &config).await;
    let b = shared_holding(&pg, "b", &tenant(2), &config).await;
    // Three codes through one egress, from two nodes, three numbers.
    let asks = [
        (&a, tenant(1), "5491100000001"),
        (&b, tenant(2), "5491100000002"),
        (&a, tenant(1), "5491100000003"),
    ];
    for (node, t, phone) in &asks {
        assert_eq!(
            node.pairing_code(t, phone, EGRESS).await,
            Ok(Ok(())),
            "{phone}"
        );
    }
    // The fourth is refused on either node: the egress's hour is full.
    for (node, t) in [(&a, tenant(1)), (&b, tenant(2))] {
        let denied = node
            .pairing_code(&t, "5491100000004", EGRESS)
            .await
            .expect("decided")
            .expect_err("over the egress's hour");
        assert_eq!(denied.reason, DenyReason::PairingCodeLimit);
        assert!(denied.wait_minutes() >= 59, "{denied:?}");
    }
    // Per phone, over every node and egress: two for one number, the
    // third refused though its egresses are fresh.
    let phone = "5491100000009";
    assert_eq!(
        a.pairing_code(&tenant(1), phone, "198.51.100.1").await,
        Ok(Ok(()))
    );
    assert_eq!(
        b.pairing_code(&tenant(2), phone, "198.51.100.2").await,
        Ok(Ok(()))
    );
    let denied = a
        .pairing_code(&tenant(1), phone, "198.51.100.3")
        .await
        .expect("decided")
        .expect_err("over the phone's hour");
    assert_eq!(denied.reason, DenyReason::PairingCodeLimit);
    // A node without the tenant's lease writes nothing.
    assert_eq!(
        b.pairing_code(&tenant(1), "5491100000010", "198.51.100.4")
            .await,
        Err(SharedError::Fenced(tenant(1)))
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM pairing_codes")
        .fetch_one(Fleet::connect(&pg.url(), 1).await.expect("connect").pool())
        .await
        .expect("count");
    assert_eq!(rows, 5, "the admitted ones only");
}

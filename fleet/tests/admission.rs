//! Fleet-wide admission against a real PostgreSQL: several nodes (each its
//! own pool) deciding at once never let the hourly per-egress or the daily
//! per-tenant window exceed its limit, and what one node records about a
//! tenant (cooldown, ban, proxy hold) holds on every other.

mod common;

use centinela_actors::config::{AntibanConfig, Config};
use centinela_actors::engine::EngineKind;
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::supervisor::admission::{AttemptKind, AttemptRequest, DenyReason};
use centinela_fleet::{
    Fence, Fleet, FleetAdmission, FleetError, Leases, NodeId, NodeSpec, TenantEvent, Verdict,
};
use common::PgCluster;
use std::collections::BTreeMap;
use std::time::Duration;

fn antiban(per_hour: u32, per_day: u32) -> AntibanConfig {
    AntibanConfig {
        global_attempts_per_hour: per_hour,
        tenant_attempts_per_day: per_day,
        max_live_sessions: 1000,
        ..Config::defaults().antiban
    }
}

/// Three nodes: three pools on one database, the same rules.
async fn nodes(pg: &PgCluster, cfg: &AntibanConfig, n: usize) -> Vec<FleetAdmission> {
    let mut out = Vec::new();
    for _ in 0..n {
        let fleet = Fleet::connect(&pg.url(), 6).await.expect("connect");
        out.push(FleetAdmission::new(&fleet, cfg.clone()));
    }
    out
}

fn tenant(i: usize) -> TenantId {
    TenantId::new(format!("t{i:02}")).expect("tenant id")
}

fn request(tenant: &TenantId, egress: &str) -> AttemptRequest {
    AttemptRequest {
        tenant: tenant.clone(),
        session: SessionId::new("s1").expect("session id"),
        kind: AttemptKind::Connect,
        live: 0,
        egress: egress.into(),
        engine: EngineKind::Webjs,
    }
}

fn denied(verdict: &Verdict) -> Option<DenyReason> {
    match verdict {
        Verdict::Admitted { .. } => None,
        Verdict::Denied(d) => Some(d.reason),
    }
}

/// 3 nodes × 10 tenants × `per_tenant` decisions, all spawned at once on
/// one egress; answers the admitted count per tenant and every denial reason.
async fn storm(
    admissions: &[FleetAdmission],
    per_tenant: usize,
) -> (BTreeMap<TenantId, u32>, Vec<DenyReason>) {
    let mut tasks = Vec::new();
    for round in 0..per_tenant {
        for i in 0..10 {
            for node in admissions {
                let (node, t) = (node.clone(), tenant((i + round) % 10));
                tasks.push(tokio::spawn(async move {
                    let v = node
                        .decide(&request(&t, "203.0.113.7"), None)
                        .await
                        .expect("decide");
                    (t, v)
                }));
            }
        }
    }
    let mut admitted = BTreeMap::new();
    let mut reasons = Vec::new();
    for task in tasks {
        let (t, verdict) = task.await.expect("task");
        match denied(&verdict) {
            None => *admitted.entry(t).or_insert(0) += 1,
            Some(r) => reasons.push(r),
        }
    }
    (admitted, reasons)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_from_three_nodes_never_exceeds_the_hourly_limit_of_the_egress() {
    let pg = PgCluster::start();
    let cfg = antiban(12, 2);
    let admissions = nodes(&pg, &cfg, 3).await;
    let (admitted, reasons) = storm(&admissions, 4).await;
    let total: u32 = admitted.values().sum();
    assert_eq!(
        total, 12,
        "exactly the hourly limit, fleet-wide: {admitted:?}"
    );
    assert!(
        admitted.values().all(|n| *n <= 2),
        "daily limit per tenant: {admitted:?}"
    );
    assert_eq!(reasons.len(), 120 - 12);
    assert!(reasons
        .iter()
        .all(|r| matches!(r, DenyReason::ServerRateLimit | DenyReason::DailyLimit)));
    let fleet = Fleet::connect(&pg.url(), 1).await.expect("connect");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM admission_attempts")
        .fetch_one(fleet.pool())
        .await
        .expect("count");
    assert_eq!(rows, 12, "only admitted attempts are stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_from_three_nodes_never_exceeds_the_daily_limit_of_a_tenant() {
    let pg = PgCluster::start();
    let cfg = antiban(1000, 2);
    let admissions = nodes(&pg, &cfg, 3).await;
    let (admitted, reasons) = storm(&admissions, 4).await;
    assert_eq!(admitted.len(), 10);
    assert!(
        admitted.values().all(|n| *n == 2),
        "each tenant exactly its daily 2: {admitted:?}"
    );
    assert!(reasons.iter().all(|r| *r == DenyReason::DailyLimit));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hourly_limit_is_per_egress_and_the_daily_limit_follows_the_tenant() {
    let pg = PgCluster::start();
    let cfg = antiban(1, 2);
    let [a, b] = <[FleetAdmission; 2]>::try_from(nodes(&pg, &cfg, 2).await).expect("two");
    let (t1, t2) = (tenant(1), tenant(2));
    let first = a
        .decide(&request(&t1, "egress-a"), None)
        .await
        .expect("decide");
    let Verdict::Admitted { attempt, .. } = first else {
        panic!("first attempt admitted: {first:?}")
    };
    let second = b
        .decide(&request(&t2, "egress-a"), None)
        .await
        .expect("decide");
    assert_eq!(
        denied(&second),
        Some(DenyReason::ServerRateLimit),
        "egress-a's hour is full"
    );
    let other = b
        .decide(&request(&t2, "egress-b"), None)
        .await
        .expect("decide");
    assert_eq!(denied(&other), None, "another egress has its own hour");
    let again = b
        .decide(&request(&t1, "egress-c"), None)
        .await
        .expect("decide");
    assert_eq!(denied(&again), None, "t1's second attempt of the day");
    let third = a
        .decide(&request(&t1, "egress-d"), None)
        .await
        .expect("decide");
    assert_eq!(
        denied(&third),
        Some(DenyReason::DailyLimit),
        "t1's day is full on any egress"
    );

    // A cancelled attempt is refunded fleet-wide.
    assert!(b.cancel(attempt).await.expect("cancel"));
    assert!(!b.cancel(attempt).await.expect("cancel twice"));
    let refunded = b
        .decide(&request(&t2, "egress-a"), None)
        .await
        .expect("decide");
    assert_eq!(denied(&refunded), None, "egress-a's slot came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooldown_a_ban_and_a_proxy_hold_recorded_on_one_node_hold_on_the_others() {
    let pg = PgCluster::start();
    let cfg = antiban(100, 100);
    let [a, b, c] = <[FleetAdmission; 3]>::try_from(nodes(&pg, &cfg, 3).await).expect("three");
    let s = SessionId::new("s1").expect("session id");
    let (cooled, banned, held) = (tenant(1), tenant(2), tenant(3));

    let failure = a
        .record(&cooled, TenantEvent::Failure { session: s.clone() }, None)
        .await
        .expect("record");
    let verdict = b
        .decide(&request(&cooled, "server"), None)
        .await
        .expect("decide");
    let Verdict::Denied(denial) = &verdict else {
        panic!("cooldown holds on node b: {verdict:?}")
    };
    assert_eq!(denial.reason, DenyReason::CooldownAfterFailure);
    assert_eq!(
        Some(denial.block_until),
        match failure {
            centinela_actors::supervisor::ledger::LedgerEvent::Failure { until, .. } => Some(until),
            _ => None,
        }
    );
    assert!(denial.wait <= Duration::from_secs(2 * 3600));
    c.record(
        &cooled,
        TenantEvent::CooldownReset { by: "admin".into() },
        None,
    )
    .await
    .expect("record");
    assert_eq!(
        denied(
            &a.decide(&request(&cooled, "server"), None)
                .await
                .expect("decide")
        ),
        None
    );

    a.record(&banned, TenantEvent::Banned { session: s.clone() }, None)
        .await
        .expect("record");
    let verdict = c
        .decide(&request(&banned, "server"), None)
        .await
        .expect("decide");
    assert_eq!(
        denied(&verdict),
        Some(DenyReason::Error515Block),
        "the block follows the tenant"
    );

    b.record(
        &held,
        TenantEvent::ProxyBlocked {
            session: s.clone(),
            egress: "http://proxy-1:3128".into(),
        },
        None,
    )
    .await
    .expect("record");
    let on_held = a
        .decide(&request(&held, "http://proxy-1:3128"), None)
        .await
        .expect("decide");
    assert_eq!(denied(&on_held), Some(DenyReason::ProxyBlock));
    let elsewhere = c
        .decide(&request(&held, "http://proxy-2:3128"), None)
        .await
        .expect("decide");
    assert_eq!(
        denied(&elsewhere),
        None,
        "another path of the tenant may connect"
    );
    c.record(&held, TenantEvent::Unblocked { by: "admin".into() }, None)
        .await
        .expect("record");
    let lifted = b
        .decide(&request(&held, "http://proxy-1:3128"), None)
        .await
        .expect("decide");
    assert_eq!(
        denied(&lifted),
        None,
        "the unblock lifts the hold everywhere"
    );
}

/// A registered node's leases and its admission, on its own pool.
async fn fleet_node(pg: &PgCluster, id: &str, cfg: &AntibanConfig) -> (Leases, FleetAdmission) {
    let fleet = Fleet::connect(&pg.url(), 4).await.expect("connect");
    let id = NodeId::new(id).expect("node id");
    let spec = NodeSpec {
        id: id.clone(),
        advertise_url: format!("http://{id}:3012"),
        egress: "server".into(),
        capacity: 10,
    };
    fleet.register(&spec).await.expect("register");
    let leases = Leases::new(&fleet, id, Duration::from_secs(30));
    (leases, FleetAdmission::new(&fleet, cfg.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_the_tenant_can_neither_admit_nor_record_for_it() {
    let pg = PgCluster::start();
    let cfg = antiban(100, 5);
    let (a_leases, a) = fleet_node(&pg, "node-a", &cfg).await;
    let (b_leases, b) = fleet_node(&pg, "node-b", &cfg).await;
    let (t, other) = (tenant(1), tenant(2));
    let old = a_leases.claim(&t).await.expect("claim").expect("free");
    let a_fence = Fence {
        leases: &a_leases,
        lease: &old,
    };
    let first = a
        .decide(&request(&t, "server"), Some(a_fence))
        .await
        .expect("decide");
    assert_eq!(denied(&first), None, "the owner decides");
    let wrong = a.decide(&request(&other, "server"), Some(a_fence)).await;
    assert!(
        matches!(wrong, Err(FleetError::Fenced { .. })),
        "a lease on another tenant: {wrong:?}"
    );

    // node-a is paused past its lease; node-b takes the tenant.
    pg.expire_lease(&t).await;
    let new = b_leases.claim(&t).await.expect("claim").expect("expired");

    let stale = a.decide(&request(&t, "server"), Some(a_fence)).await;
    assert!(matches!(stale, Err(FleetError::Fenced { .. })), "{stale:?}");
    let s = SessionId::new("s1").expect("session id");
    let outcome = a
        .record(&t, TenantEvent::Failure { session: s }, Some(a_fence))
        .await;
    assert!(
        matches!(outcome, Err(FleetError::Fenced { .. })),
        "{outcome:?}"
    );
    let db = Fleet::connect(&pg.url(), 1).await.expect("connect");
    let attempts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM admission_attempts WHERE tenant = $1")
            .bind(t.as_str())
            .fetch_one(db.pool())
            .await
            .expect("count");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM admission_events")
        .fetch_one(db.pool())
        .await
        .expect("count");
    assert_eq!((attempts, events), (1, 0), "the fenced node wrote nothing");

    let b_fence = Fence {
        leases: &b_leases,
        lease: &new,
    };
    let next = b
        .decide(&request(&t, "server"), Some(b_fence))
        .await
        .expect("decide");
    assert_eq!(denied(&next), None, "the new owner decides");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_drops_only_rows_no_window_reads_and_the_limits_hold_after_it() {
    let pg = PgCluster::start();
    let cfg = antiban(2, 100);
    let node = nodes(&pg, &cfg, 1).await.remove(0);
    let fleet = Fleet::connect(&pg.url(), 1).await.expect("connect");
    // Two fresh attempts fill the egress's hour.
    for t in [tenant(1), tenant(2)] {
        let v = node.decide(&request(&t, "e1"), None).await.expect("decide");
        assert_eq!(denied(&v), None);
    }
    // Rows from three days and three hours ago (the database's clock).
    let now_ms: i64 = sqlx::query_scalar("SELECT (extract(epoch FROM now()) * 1000)::bigint")
        .fetch_one(fleet.pool())
        .await
        .expect("now");
    let old = now_ms - 3 * 24 * 3_600_000;
    sqlx::query(
        "INSERT INTO admission_attempts (tenant, session, egress, kind, counted, cloud, at_ms)
         VALUES ('t09', 's9', 'e1', 'connect', true, false, $1)",
    )
    .bind(old)
    .execute(fleet.pool())
    .await
    .expect("old attempt");
    sqlx::query(
        "INSERT INTO pairing_codes (tenant, phone, egress, at_ms) VALUES
         ('t09', '5491100000001', 'e1', $1), ('t09', '5491100000001', 'e1', $2)",
    )
    .bind(now_ms - 3 * 3_600_000)
    .bind(now_ms - 60_000)
    .execute(fleet.pool())
    .await
    .expect("codes");
    assert_eq!(
        node.prune().await.expect("prune"),
        2,
        "the old attempt and the old code"
    );
    assert_eq!(node.prune().await.expect("again"), 0);
    let left: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM admission_attempts), (SELECT count(*) FROM pairing_codes)",
    )
    .fetch_one(fleet.pool())
    .await
    .expect("count");
    assert_eq!(left, (2, 1));
    // The hour is still full.
    let v = node
        .decide(&request(&tenant(3), "e1"), None)
        .await
        .expect("decide");
    assert_eq!(denied(&v), Some(DenyReason::ServerRateLimit));
}

//! Ownership leases against a real PostgreSQL (a throwaway cluster per
//! test): one owner per tenant under races, expiry and fencing, renewal,
//! orphan claims within capacity.

mod common;

use centinela_actors::ids::TenantId;
use centinela_fleet::{Epoch, Fleet, FleetError, Lease, Leases, NodeId, NodeSpec};
use common::PgCluster;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const TTL: Duration = Duration::from_secs(30);

/// A node: its own pool (as a separate process would have), registered.
async fn node(pg: &PgCluster, id: &str, capacity: u32, ttl: Duration) -> Leases {
    let fleet = Fleet::connect(&pg.url(), 8).await.expect("connect");
    let id = NodeId::new(id).expect("node id");
    fleet
        .register(&NodeSpec {
            id: id.clone(),
            advertise_url: format!("http://{id}.internal:8080"),
            egress: "server".into(),
            capacity,
        })
        .await
        .expect("register");
    Leases::new(&fleet, id, ttl)
}

fn tenant(i: usize) -> TenantId {
    TenantId::new(format!("t{i:03}")).expect("tenant id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_racing_for_the_same_tenants_leave_each_with_exactly_one_owner() {
    let pg = PgCluster::start();
    let a = node(&pg, "node-a", 100, TTL).await;
    let b = node(&pg, "node-b", 100, TTL).await;
    let tenants: Vec<TenantId> = (0..40).map(tenant).collect();
    let mut tasks = Vec::new();
    for t in &tenants {
        for n in [&a, &b] {
            let (n, t) = (n.clone(), t.clone());
            tasks.push(tokio::spawn(async move {
                let won = n.claim(&t).await.expect("claim");
                (n.node().clone(), t, won)
            }));
        }
    }
    let mut winners: BTreeMap<TenantId, Vec<(NodeId, Epoch)>> = BTreeMap::new();
    for task in tasks {
        let (node, t, won) = task.await.expect("task");
        if let Some(lease) = won {
            assert_eq!(lease.tenant, t);
            winners.entry(t).or_default().push((node, lease.epoch));
        }
    }
    assert_eq!(winners.len(), tenants.len(), "every tenant was won");
    for t in &tenants {
        let won = &winners[t];
        assert_eq!(won.len(), 1, "{t}: exactly one winner, got {won:?}");
        let owner = a.owner_of(t).await.expect("owner").expect("owned");
        assert_eq!(owner, won[0], "{t}: the table agrees with the winner");
        assert_eq!(owner.1, Epoch(1), "{t}: first claim is epoch 1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_goes_to_another_node_at_the_next_epoch_and_fences_the_old_owner() {
    let pg = PgCluster::start();
    let a = node(&pg, "node-a", 10, TTL).await;
    let b = node(&pg, "node-b", 10, TTL).await;
    let t = tenant(1);
    let old = a.claim(&t).await.expect("claim").expect("free tenant");
    assert_eq!(old.epoch, Epoch(1));
    assert_eq!(
        b.claim(&t).await.expect("claim"),
        None,
        "a live lease is not taken"
    );
    assert_eq!(
        a.claim(&t).await.expect("reclaim"),
        Some(old.clone()),
        "the owner's own claim keeps its epoch"
    );

    pg.expire_lease(&t).await;
    let new = b
        .claim(&t)
        .await
        .expect("claim")
        .expect("expired lease is free");
    assert_eq!(new.epoch, Epoch(2), "a change of hands bumps the epoch");

    // The old owner comes back: every fenced write of it matches nothing.
    let fleet = Fleet::connect(&pg.url(), 2).await.expect("connect");
    let mut tx = fleet.pool().begin().await.expect("begin");
    let fenced = a.fence(&mut tx, &old).await;
    assert!(
        matches!(&fenced, Err(FleetError::Fenced { tenant, epoch }) if *tenant == t && *epoch == Epoch(1)),
        "old owner is fenced: {fenced:?}"
    );
    drop(tx);
    assert!(matches!(
        a.release(&old).await,
        Err(FleetError::Fenced { .. })
    ));
    assert_eq!(a.claim(&t).await.expect("claim"), None);
    let mut tx = fleet.pool().begin().await.expect("begin");
    b.fence(&mut tx, &new)
        .await
        .expect("the new owner passes its fence");
    tx.commit().await.expect("commit");
    let owner = a.owner_of(&t).await.expect("owner");
    assert_eq!(owner, Some((b.node().clone(), Epoch(2))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lease_that_is_not_renewed_runs_out_on_the_database_clock() {
    let pg = PgCluster::start();
    let a = node(&pg, "node-a", 10, Duration::from_secs(1)).await;
    let b = node(&pg, "node-b", 10, TTL).await;
    let t = tenant(1);
    let old = a.claim(&t).await.expect("claim").expect("free tenant");
    // The database waits until its own clock is past the lease's end (the
    // only clock a lease is judged by), bounded by a statement timeout.
    let db = Fleet::connect(&pg.url(), 1).await.expect("connect");
    let mut conn = db.pool().acquire().await.expect("connection");
    sqlx::query("SET statement_timeout = '30s'")
        .execute(&mut *conn)
        .await
        .expect("timeout");
    sqlx::query(
        "SELECT pg_sleep_until(lease_until + interval '10 milliseconds')
         FROM tenant_owners WHERE tenant = $1",
    )
    .bind(t.as_str())
    .execute(&mut *conn)
    .await
    .expect("the lease's end passes on the database's clock");
    let new = b
        .claim(&t)
        .await
        .expect("claim")
        .expect("a 1 s lease not renewed has run out");
    assert_eq!(new.epoch, Epoch(old.epoch.0 + 1));
    assert!(
        a.renew().await.expect("renew").is_empty(),
        "nothing left to renew"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_answers_only_the_tenants_still_held() {
    let pg = PgCluster::start();
    let a = node(&pg, "node-a", 10, TTL).await;
    let b = node(&pg, "node-b", 10, TTL).await;
    let (kept, taken, lapsed) = (tenant(1), tenant(2), tenant(3));
    let mut held = Vec::new();
    for t in [&kept, &taken, &lapsed] {
        held.push(a.claim(t).await.expect("claim").expect("free"));
    }
    pg.expire_lease(&taken).await;
    b.claim(&taken)
        .await
        .expect("claim")
        .expect("expired lease");
    pg.expire_lease(&lapsed).await;

    let renewed = a.renew().await.expect("renew");
    assert_eq!(
        renewed,
        vec![held[0].clone()],
        "only the live lease is renewed"
    );
    let lost: BTreeSet<&Lease> = held.iter().filter(|l| !renewed.contains(l)).collect();
    assert_eq!(lost.len(), 2, "the caller sees which it lost");
    assert_eq!(
        a.owner_of(&lapsed).await.expect("owner"),
        None,
        "a lapsed lease is not revived by a renewal"
    );
    assert_eq!(b.renew().await.expect("renew").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orphans_are_claimed_up_to_free_capacity_and_never_twice() {
    let pg = PgCluster::start();
    let a = node(&pg, "node-a", 10, TTL).await;
    let b = node(&pg, "node-b", 12, TTL).await;
    let tenants: Vec<TenantId> = (0..30).map(tenant).collect();
    for t in &tenants {
        a.enroll(t).await.expect("enroll");
    }
    a.claim(&tenants[0]).await.expect("claim").expect("free");
    a.claim(&tenants[1]).await.expect("claim").expect("free");

    // Both nodes, four loops each, all at once.
    let mut tasks = Vec::new();
    for n in [&a, &b] {
        for _ in 0..4 {
            let n = n.clone();
            tasks.push(tokio::spawn(async move {
                let got = n.claim_orphans(5).await.expect("claim orphans");
                (n.node().clone(), got)
            }));
        }
    }
    let mut claimed: BTreeMap<TenantId, NodeId> = BTreeMap::new();
    for task in tasks {
        let (node, got) = task.await.expect("task");
        for lease in got {
            assert_eq!(lease.epoch, Epoch(1), "an orphan never owned before");
            let before = claimed.insert(lease.tenant.clone(), node.clone());
            assert_eq!(before, None, "{} claimed twice", lease.tenant);
        }
    }
    let count = |n: &NodeId| claimed.values().filter(|o| *o == n).count();
    assert!(
        count(a.node()) <= 8,
        "node-a had 8 free: {}",
        count(a.node())
    );
    assert!(
        count(b.node()) <= 12,
        "node-b had 12 free: {}",
        count(b.node())
    );
    assert!(!claimed.contains_key(&tenants[0]) && !claimed.contains_key(&tenants[1]));

    // Topping up fills each node exactly to its capacity, no further.
    a.claim_orphans(100).await.expect("top up");
    b.claim_orphans(100).await.expect("top up");
    assert_eq!(a.renew().await.expect("renew").len(), 10);
    assert_eq!(b.renew().await.expect("renew").len(), 12);
    assert!(a.claim_orphans(100).await.expect("full").is_empty());
    let mut owners = BTreeMap::new();
    for t in &tenants {
        if let Some((owner, _)) = a.owner_of(t).await.expect("owner") {
            *owners.entry(owner).or_insert(0) += 1;
        }
    }
    assert_eq!(
        owners.values().sum::<i32>(),
        22,
        "8 orphans left for a third node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tenant_is_given_up_by_its_owner_and_kept_for_its_target_until_the_move_lapses() {
    use centinela_fleet::MoveRefused;
    let pg = PgCluster::start();
    let a = node(&pg, "node-a", 10, TTL).await;
    let b = node(&pg, "node-b", 1, TTL).await;
    let c = node(&pg, "node-c", 10, TTL).await;
    let fleet = Fleet::connect(&pg.url(), 1).await.expect("connect");
    let t = tenant(1);
    let refused = fleet.move_tenant(&t, "node-b", TTL).await;
    assert!(
        matches!(refused, Err(MoveRefused::NotHosted(_))),
        "{refused:?}"
    );
    let lease = a.claim(&t).await.expect("claim").expect("free");
    let refused = fleet.move_tenant(&t, "node-z", TTL).await;
    assert!(
        matches!(refused, Err(MoveRefused::UnknownNode(_))),
        "{refused:?}"
    );
    let refused = fleet.move_tenant(&t, "node-a", TTL).await;
    assert!(
        matches!(refused, Err(MoveRefused::AlreadyThere(..))),
        "{refused:?}"
    );

    let asked = fleet.move_tenant(&t, "node-b", TTL).await.expect("asked");
    assert_eq!(
        (asked.from.map(|n| n.to_string()), asked.to.to_string()),
        (Some("node-a".to_owned()), "node-b".to_owned())
    );
    assert_eq!(a.moving().await.expect("moving"), vec![lease.clone()]);
    let held = |nodes: &[centinela_fleet::NodeRow], node: &str| {
        nodes
            .iter()
            .find(|n| n.spec.id.as_str() == node)
            .map(|n| n.tenants.clone())
            .unwrap_or_default()
    };
    let nodes = fleet.nodes().await.expect("nodes");
    assert_eq!(
        held(&nodes, "node-a")
            .iter()
            .map(|t| t.moving_to.as_deref())
            .collect::<Vec<_>>(),
        vec![Some("node-b")],
        "the fleet's view shows the pending move"
    );
    assert_eq!(b.moving().await.expect("moving"), vec![], "b holds nothing");
    assert_eq!(
        a.renew().await.expect("renew"),
        vec![lease.clone()],
        "a holds it until it gives it up"
    );
    a.release(&lease).await.expect("given up");
    // Kept for node-b: no other node takes it, by name or as an orphan.
    assert_eq!(c.claim_orphans(10).await.expect("claim"), vec![]);
    assert_eq!(c.claim(&t).await.expect("claim"), None);
    assert_eq!(
        b.claim_orphans(10).await.expect("claim"),
        vec![Lease {
            tenant: t.clone(),
            epoch: Epoch(lease.epoch.0 + 1)
        }]
    );
    assert_eq!(
        b.moving().await.expect("moving"),
        vec![],
        "the move is done"
    );
    let nodes = fleet.nodes().await.expect("nodes");
    assert_eq!(held(&nodes, "node-b").len(), 1);
    assert_eq!(held(&nodes, "node-b")[0].moving_to, None);

    // node-b is full now; node-c's heartbeat an hour old is not live.
    let t2 = tenant(2);
    let lease2 = a.claim(&t2).await.expect("claim").expect("free");
    let refused = fleet.move_tenant(&t2, "node-b", TTL).await;
    assert!(matches!(refused, Err(MoveRefused::Full(_))), "{refused:?}");
    fleet.move_tenant(&t2, "node-c", TTL).await.expect("asked");
    a.release(&lease2).await.expect("given up");
    // The target never comes: once the move lapses any node may take it.
    sqlx::query("UPDATE tenant_owners SET move_until = now() - interval '1 second'")
        .execute(fleet.pool())
        .await
        .expect("lapse");
    sqlx::query("UPDATE nodes SET heartbeat_at = now() - interval '1 hour' WHERE id = 'node-c'")
        .execute(fleet.pool())
        .await
        .expect("silence");
    assert_eq!(
        a.claim_orphans(10).await.expect("claim"),
        vec![Lease {
            tenant: t2.clone(),
            epoch: Epoch(lease2.epoch.0 + 1)
        }]
    );
    let refused = fleet.move_tenant(&t2, "node-c", TTL).await;
    assert!(
        matches!(refused, Err(MoveRefused::NotLive(_))),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_a_frozen_node_left_open_does_not_hold_its_locks_for_ever() {
    let pg = PgCluster::start();
    let frozen = Fleet::connect(&pg.url(), 1).await.expect("connect");
    let other = Fleet::connect(&pg.url(), 1).await.expect("connect");
    let shown: String = sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
        .fetch_one(other.pool())
        .await
        .expect("show");
    assert_eq!(shown, "10s");
    // The frozen node took an admission lock and never came back to it.
    let mut open = frozen.pool().begin().await.expect("begin");
    sqlx::query("SELECT pg_advisory_xact_lock(42)")
        .execute(&mut *open)
        .await
        .expect("lock");
    // The other node waits for the lock, and gets it once the server has
    // ended the idle transaction.
    let got = tokio::time::timeout(
        centinela_fleet::IDLE_TRANSACTION_TIMEOUT * 3,
        sqlx::query("SELECT pg_advisory_lock(42)").execute(other.pool()),
    )
    .await
    .expect("the lock within three timeouts");
    got.expect("locked");
    assert!(
        sqlx::query("SELECT 1").execute(&mut *open).await.is_err(),
        "the frozen node's transaction is gone"
    );
}

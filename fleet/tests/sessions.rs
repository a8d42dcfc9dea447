//! The fleet's session records on a real PostgreSQL: the owner's writes
//! are seen by every node and mirrored into its own store; a node without
//! the tenant's lease, or with a lease that was taken, writes nothing; a
//! new owner mirrors the tenant's records before it hosts them.

mod common;

use centinela_actors::clock::Timestamp;
use centinela_actors::engine::EngineKind;
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::store::{DesiredState, SessionRecord, SessionRepo, StoreError};
use centinela_fleet::FleetSessions;
use common::{Member, PgCluster};

/// A node with the fleet's session records.
struct Node {
    sessions: FleetSessions,
    member: Member,
}

impl std::ops::Deref for Node {
    type Target = Member;
    fn deref(&self) -> &Member {
        &self.member
    }
}

async fn node(pg: &PgCluster, name: &str) -> Node {
    let m = Member::join(pg, name).await;
    Node {
        sessions: FleetSessions::new(&m.fleet, m.leases.clone(), m.owned.clone(), m.local.clone()),
        member: m,
    }
}

fn clinic() -> TenantId {
    TenantId::new("clinic").expect("id")
}

fn record(id: &str, tenant: &TenantId) -> SessionRecord {
    SessionRecord {
        id: SessionId::new(id).expect("id"),
        tenant: tenant.clone(),
        name: format!("{id} desk"),
        engine: EngineKind::Webjs,
        desired: DesiredState::Running,
        user_agent: None,
        proxy: None,
        last_reason: None,
        paired: true,
        paired_at: None,
        created_at: Timestamp::from_millis(1_768_590_000_000),
        cloud: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owners_writes_are_seen_everywhere_and_mirrored_locally() {
    let pg = PgCluster::start();
    let (a, b) = (node(&pg, "a").await, node(&pg, "b").await);
    a.hold(&clinic()).await;
    let s1 = record("s1", &clinic());
    a.sessions.put_session(&s1).expect("put");
    assert_eq!(
        b.sessions.get_session(&s1.id).expect("get"),
        Some(s1.clone())
    );
    assert_eq!(b.sessions.list_sessions().expect("list"), vec![s1.clone()]);
    assert_eq!(
        a.local.get_session(&s1.id).expect("local"),
        Some(s1.clone())
    );
    assert_eq!(
        b.local.get_session(&s1.id).expect("local"),
        None,
        "b hosts nothing"
    );

    // b is not the owner: it writes nothing.
    let mut stopped = s1.clone();
    stopped.desired = DesiredState::Stopped;
    assert!(matches!(
        b.sessions.put_session(&stopped),
        Err(StoreError::NotHeld(t)) if t == "clinic"
    ));
    assert!(matches!(
        b.sessions.delete_session(&s1.id),
        Err(StoreError::NotHeld(_))
    ));
    assert_eq!(
        a.sessions.get_session(&s1.id).expect("get"),
        Some(s1.clone())
    );

    // The owner deletes: gone everywhere, its profile snapshot too.
    let lease = a.owned.get(&clinic()).expect("held");
    centinela_fleet::Snapshots::new(&a.fleet)
        .put(&a.leases, &lease, &s1.id, b"sealed", &[7; 32], 6)
        .await
        .expect("snapshot");
    assert!(a.sessions.delete_session(&s1.id).expect("delete"));
    assert!(
        centinela_fleet::Snapshots::new(&a.fleet)
            .get(&s1.id)
            .await
            .expect("read")
            .is_none(),
        "a deleted session's pairing does not stay in the fleet"
    );
    assert_eq!(b.sessions.get_session(&s1.id).expect("get"), None);
    assert_eq!(a.local.get_session(&s1.id).expect("local"), None);
    assert!(!a.sessions.delete_session(&s1.id).expect("twice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_was_taken_writes_nothing_and_the_new_owner_mirrors_the_tenant() {
    let pg = PgCluster::start();
    let (a, b) = (node(&pg, "a").await, node(&pg, "b").await);
    a.hold(&clinic()).await;
    let s1 = record("s1", &clinic());
    a.sessions.put_session(&s1).expect("put");
    // b once hosted the tenant and kept a record since deleted.
    b.local
        .put_session(&record("gone", &clinic()))
        .expect("old local record");

    pg.expire_lease(&clinic()).await;
    b.hold(&clinic()).await;
    let mut late = s1.clone();
    late.desired = DesiredState::Stopped;
    assert!(
        matches!(a.sessions.put_session(&late), Err(StoreError::NotHeld(_))),
        "a still believes it holds the tenant, at a stale epoch"
    );
    assert_eq!(
        b.sessions.get_session(&s1.id).expect("get"),
        Some(s1.clone())
    );
    assert_eq!(
        a.local.get_session(&s1.id).expect("local"),
        Some(s1.clone()),
        "nothing mirrored"
    );

    assert_eq!(
        b.sessions
            .mirror_tenant(&clinic())
            .await
            .expect("mirror")
            .len(),
        1
    );
    let local: Vec<SessionId> = b
        .local
        .list_sessions()
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        local,
        vec![s1.id.clone()],
        "the fleet's records, and only those"
    );
}

#[test]
fn outside_a_multi_threaded_runtime_a_call_is_refused_not_a_panic() {
    let pg = PgCluster::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let a = runtime.block_on(node(&pg, "a"));
    let out = runtime.block_on(async { a.sessions.list_sessions() });
    assert!(matches!(out, Err(StoreError::Unavailable(_))), "{out:?}");
    assert!(matches!(
        a.sessions.list_sessions(),
        Err(StoreError::Unavailable(_))
    ));
}

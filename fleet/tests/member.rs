//! The membership loop against a real PostgreSQL (a throwaway cluster per
//! test), with a host that records every adopt and release: one holder per
//! tenant across members, a lost lease, the deadline with the database
//! down and claims after it is back, a member paused past its leases (as by
//! SIGSTOP), a drain handing tenants over, capacity, and leftovers of an
//! earlier run given back.
//!
//! Leases last 3 s (the shortest the config allows). Tests wait on the
//! journal or the loop's status with a generous timeout, never on time, and
//! assert orders and epochs; the one bound on time is the deadline's
//! guarantee (a tenant is released before its lease can end).

mod common;

use centinela_actors::ids::TenantId;
use centinela_fleet::{
    Claimed, Epoch, Fleet, Lease, Leases, Member, MemberConfig, MemberHandle, MemberStatus, NodeId,
    NodeSpec, Owned, Release, TenantHost,
};
use common::PgCluster;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::{timeout, Instant};

const TTL: Duration = Duration::from_secs(3);
/// How long any awaited event may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Adopt(Epoch),
    Release(Release),
}

/// One host call, in the order the calls were made (across members).
#[derive(Debug, Clone)]
struct Event {
    at: Instant,
    node: &'static str,
    tenant: TenantId,
    call: Call,
    /// The member's last successful renewal (its send) when the call was
    /// made: the loop publishes it before it calls the host.
    renewed: Option<Instant>,
}

type Journal = Arc<watch::Sender<Vec<Event>>>;

/// A host that starts and stops nothing: it writes each call down.
struct Recorder {
    node: &'static str,
    journal: Journal,
    status: OnceLock<watch::Receiver<MemberStatus>>,
}

impl Recorder {
    fn note(&self, tenant: &TenantId, call: Call) {
        let renewed = self.status.get().and_then(|s| s.borrow().renewed);
        // The instant is taken under the journal's lock: order = time.
        self.journal.send_modify(|events| {
            events.push(Event {
                at: Instant::now(),
                node: self.node,
                tenant: tenant.clone(),
                call,
                renewed,
            })
        });
    }
}

#[async_trait::async_trait]
impl TenantHost for Recorder {
    async fn adopt(&self, lease: &Lease) {
        self.note(&lease.tenant, Call::Adopt(lease.epoch));
    }

    async fn release(&self, tenant: &TenantId, why: Release) {
        self.note(tenant, Call::Release(why));
    }
}

/// A running member and the set it holds.
struct Node {
    handle: MemberHandle,
    owned: Owned,
    status: watch::Receiver<MemberStatus>,
}

async fn start(pg: &PgCluster, id: &'static str, capacity: u32, journal: &Journal) -> Node {
    let fleet = Fleet::connect(&pg.url(), 4).await.expect("connect");
    let owned = Owned::default();
    let host = Arc::new(Recorder {
        node: id,
        journal: journal.clone(),
        status: OnceLock::new(),
    });
    let member = Member::new(
        fleet,
        spec(id, capacity),
        MemberConfig::new(TTL),
        owned.clone(),
        host.clone(),
    );
    host.status.set(member.status()).expect("set once");
    let handle = member.spawn();
    let status = handle.status();
    Node {
        handle,
        owned,
        status,
    }
}

fn spec(id: &str, capacity: u32) -> NodeSpec {
    NodeSpec {
        id: NodeId::new(id).expect("node id"),
        advertise_url: format!("http://{id}.internal:8080"),
        egress: "server".into(),
        capacity,
    }
}

fn tenant(i: usize) -> TenantId {
    TenantId::new(format!("t{i:03}")).expect("tenant id")
}

/// Enrolls `n` tenants, unowned, and answers them.
async fn enroll(pg: &PgCluster, n: usize) -> Vec<TenantId> {
    let fleet = Fleet::connect(&pg.url(), 1).await.expect("connect");
    let leases = Leases::new(&fleet, NodeId::new("enroller").expect("id"), TTL);
    let tenants: Vec<TenantId> = (0..n).map(tenant).collect();
    for t in &tenants {
        leases.enroll(t).await.expect("enroll");
    }
    tenants
}

fn journal() -> Journal {
    Arc::new(watch::Sender::new(Vec::new()))
}

/// Waits until the journal satisfies `done`, at most [`PATIENCE`].
async fn until(journal: &Journal, what: &str, mut done: impl FnMut(&[Event]) -> bool) {
    let mut rx = journal.subscribe();
    let waited = timeout(PATIENCE, rx.wait_for(|events| done(events))).await;
    assert!(
        matches!(waited, Ok(Ok(_))),
        "{what}: not within {PATIENCE:?}; journal: {:#?}",
        *journal.borrow()
    );
}

/// Waits until the member's status satisfies `done`, at most [`PATIENCE`].
async fn until_status(node: &mut Node, what: &str, done: impl FnMut(&MemberStatus) -> bool) {
    let waited = timeout(PATIENCE, node.status.wait_for(done)).await;
    assert!(
        matches!(waited, Ok(Ok(_))),
        "{what}: not within {PATIENCE:?}"
    );
}

/// Who holds each tenant at the end of `events`, checking on the way that
/// no tenant was ever held by two at once, that every epoch adopted is
/// higher than the last, and that each node's calls for a tenant alternate
/// adopt, release.
fn holders(events: &[Event]) -> BTreeMap<TenantId, (&'static str, Epoch)> {
    let mut held: BTreeMap<TenantId, (&'static str, Epoch)> = BTreeMap::new();
    let mut last: BTreeMap<TenantId, Epoch> = BTreeMap::new();
    for e in events {
        match e.call {
            Call::Adopt(epoch) => {
                let before = held.insert(e.tenant.clone(), (e.node, epoch));
                assert_eq!(
                    before, None,
                    "{} adopted by {} while held: {events:#?}",
                    e.tenant, e.node
                );
                let prev = last.insert(e.tenant.clone(), epoch);
                assert!(prev < Some(epoch), "{}: epochs must rise", e.tenant);
            }
            Call::Release(_) => {
                let holder = held.remove(&e.tenant).map(|(node, _)| node);
                assert_eq!(
                    holder,
                    Some(e.node),
                    "{}: released by a non-holder",
                    e.tenant
                );
            }
        }
    }
    held
}

fn adopts<'a>(events: &'a [Event], node: &'a str) -> impl Iterator<Item = &'a Event> + 'a {
    events
        .iter()
        .filter(move |e| e.node == node && matches!(e.call, Call::Adopt(_)))
}

fn releases<'a>(
    events: &'a [Event],
    node: &'a str,
    why: Release,
) -> impl Iterator<Item = &'a Event> + 'a {
    events
        .iter()
        .filter(move |e| e.node == node && e.call == Call::Release(why))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_share_the_tenants_each_held_by_exactly_one() {
    let pg = PgCluster::start();
    let tenants = enroll(&pg, 10).await;
    let journal = journal();
    let nodes = [
        start(&pg, "node-a", 4, &journal).await,
        start(&pg, "node-b", 4, &journal).await,
        start(&pg, "node-c", 4, &journal).await,
    ];
    until(&journal, "all ten adopted", |events| {
        holders(events).len() == tenants.len()
    })
    .await;

    let held = holders(&journal.borrow());
    let mut seen = BTreeSet::new();
    let fleet = Fleet::connect(&pg.url(), 1).await.expect("connect");
    let reader = Leases::new(&fleet, NodeId::new("reader").expect("id"), TTL);
    for (node, id) in nodes.iter().zip(["node-a", "node-b", "node-c"]) {
        let leases = node.owned.leases();
        assert!(leases.len() <= 4, "{id} within capacity: {leases:?}");
        for lease in leases {
            assert!(
                seen.insert(lease.tenant.clone()),
                "{} held twice",
                lease.tenant
            );
            assert_eq!(held[&lease.tenant], (id, lease.epoch), "Owned = the host");
            let owner = reader.owner_of(&lease.tenant).await.expect("owner");
            assert_eq!(owner, Some((NodeId::new(id).expect("id"), lease.epoch)));
        }
    }
    assert_eq!(seen, tenants.into_iter().collect(), "every tenant is held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_by_another_member_is_released_as_lost() {
    let pg = PgCluster::start();
    let tenants = enroll(&pg, 3).await;
    let journal = journal();
    let mut a = start(&pg, "node-a", 3, &journal).await;
    until_status(&mut a, "node-a holds three", |s| s.held.len() == 3).await;
    // node-a may take no more, so the lapsed tenant can only go to node-b.
    let fleet = Fleet::connect(&pg.url(), 1).await.expect("connect");
    sqlx::query("UPDATE nodes SET capacity = 0 WHERE id = 'node-a'")
        .execute(fleet.pool())
        .await
        .expect("lower capacity");
    let b = start(&pg, "node-b", 10, &journal).await;

    let t = &tenants[1];
    pg.expire_lease(t).await;
    until(&journal, "node-b adopts the lapsed tenant", |events| {
        adopts(events, "node-b").any(|e| e.tenant == *t)
    })
    .await;
    until(&journal, "node-a releases it as lost", |events| {
        releases(events, "node-a", Release::Lost).any(|e| e.tenant == *t)
    })
    .await;

    let events = journal.borrow().clone();
    let b_adopt: Vec<&Event> = adopts(&events, "node-b").collect();
    assert_eq!(b_adopt.len(), 1, "node-b took only the lapsed tenant");
    assert_eq!(b_adopt[0].call, Call::Adopt(Epoch(2)), "at the next epoch");
    assert_eq!(b.owned.leases(), vec![lease(t, 2)]);
    assert!(!a.owned.contains(t), "the lost tenant left node-a's Owned");
    assert_eq!(
        a.owned.leases(),
        vec![lease(&tenants[0], 1), lease(&tenants[2], 1)],
        "the others stay, at their epoch"
    );
    let a_released: Vec<&Event> = events
        .iter()
        .filter(|e| e.node == "node-a" && matches!(e.call, Call::Release(_)))
        .collect();
    assert_eq!(a_released.len(), 1, "only the lost one: {a_released:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_down_every_tenant_is_released_before_its_lease_ends_then_claimed_again()
{
    let pg = PgCluster::start();
    let tenants = enroll(&pg, 3).await;
    let journal = journal();
    let mut a = start(&pg, "node-a", 10, &journal).await;
    until_status(&mut a, "node-a holds three", |s| s.held.len() == 3).await;

    let stopped = Instant::now();
    tokio::task::block_in_place(|| pg.stop());
    let gone = |events: &[Event]| {
        tenants.iter().all(|t| {
            releases(events, "node-a", Release::Deadline).any(|e| e.tenant == *t && e.at >= stopped)
        })
    };
    until(&journal, "every tenant released at the deadline", gone).await;
    assert!(a.owned.is_empty(), "nothing held without a renewal");

    // Every lease lasts past the send of the last renewal that succeeded
    // before the release, plus the ttl.
    for e in releases(&journal.borrow(), "node-a", Release::Deadline) {
        let renewed = e.renewed.expect("renewed before it held anything");
        assert!(
            e.at < renewed + TTL,
            "{} released {:?} after its lease could end",
            e.tenant,
            e.at.saturating_duration_since(renewed + TTL)
        );
    }

    let back = Instant::now();
    tokio::task::block_in_place(|| pg.start_again());
    until(&journal, "the tenants adopted again", |events| {
        tenants
            .iter()
            .all(|t| adopts(events, "node-a").any(|e| e.tenant == *t && e.at >= back))
    })
    .await;
    let events = journal.borrow().clone();
    holders(&events);
    for e in adopts(&events, "node-a").filter(|e| e.at >= back) {
        assert_eq!(
            e.call,
            Call::Adopt(Epoch(2)),
            "{}: claimed afresh",
            e.tenant
        );
    }
    let expected: Vec<Lease> = tenants.iter().map(|t| lease(t, 2)).collect();
    assert_eq!(a.owned.leases(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_member_releases_each_tenant_before_another_adopts_it() {
    let pg = PgCluster::start();
    let tenants = enroll(&pg, 4).await;
    let journal = journal();
    let mut a = start(&pg, "node-a", 10, &journal).await;
    until_status(&mut a, "node-a holds four", |s| s.held.len() == 4).await;
    let mut b = start(&pg, "node-b", 10, &journal).await;
    until_status(&mut b, "node-b has run a round", |s| s.rounds >= 1).await;
    assert!(b.owned.is_empty(), "nothing was free for node-b");

    let owned_a = a.owned.clone();
    timeout(PATIENCE, a.handle.drain())
        .await
        .expect("drain returns");
    assert!(owned_a.is_empty(), "a drained member holds nothing");
    until(&journal, "node-b adopts the four", |events| {
        adopts(events, "node-b").count() == tenants.len()
    })
    .await;

    let events = journal.borrow().clone();
    let held = holders(&events);
    for t in &tenants {
        let released = releases(&events, "node-a", Release::Drain)
            .find(|e| e.tenant == *t)
            .expect("node-a released it for the drain");
        let adopted = adopts(&events, "node-b")
            .find(|e| e.tenant == *t)
            .expect("node-b adopted it");
        assert!(released.at <= adopted.at, "{t}: release before adopt");
        assert_eq!(adopted.call, Call::Adopt(Epoch(2)), "{t}: epoch rose");
        assert_eq!(held[t], ("node-b", Epoch(2)));
    }
    assert_eq!(b.owned.len(), tenants.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_never_holds_more_tenants_than_its_capacity() {
    let pg = PgCluster::start();
    let tenants = enroll(&pg, 10).await;
    let journal = journal();
    let mut a = start(&pg, "node-a", 3, &journal).await;
    until_status(&mut a, "node-a holds three", |s| s.held.len() == 3).await;
    // Three more rounds with seven orphans still free.
    let rounds = a.status.borrow().rounds;
    until_status(&mut a, "three more rounds", |s| s.rounds >= rounds + 3).await;
    assert_eq!(a.owned.len(), 3, "full at three");

    let b = start(&pg, "node-b", 10, &journal).await;
    until(&journal, "node-b adopts the other seven", |events| {
        adopts(events, "node-b").count() == 7
    })
    .await;
    let events = journal.borrow().clone();
    let mut most = 0;
    let mut now = 0_i32;
    for e in events.iter().filter(|e| e.node == "node-a") {
        now += if matches!(e.call, Call::Adopt(_)) {
            1
        } else {
            -1
        };
        most = most.max(now);
    }
    assert_eq!(most, 3, "node-a held three at most");
    let all: BTreeSet<TenantId> = a
        .owned
        .leases()
        .into_iter()
        .chain(b.owned.leases())
        .map(|l| l.tenant)
        .collect();
    assert_eq!(all, tenants.into_iter().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_left_by_an_earlier_run_of_the_node_are_claimed_afresh() {
    let pg = PgCluster::start();
    let tenants = enroll(&pg, 2).await;
    // An earlier run of node-a took both and died without releasing them.
    let fleet = Fleet::connect(&pg.url(), 1).await.expect("connect");
    fleet.register(&spec("node-a", 10)).await.expect("register");
    let earlier = Leases::new(&fleet, NodeId::new("node-a").expect("id"), TTL * 10);
    for t in &tenants {
        earlier.claim(t).await.expect("claim").expect("free");
    }

    let journal = journal();
    let mut a = start(&pg, "node-a", 10, &journal).await;
    until_status(&mut a, "node-a holds two", |s| s.held.len() == 2).await;
    let expected: Vec<Lease> = tenants.iter().map(|t| lease(t, 2)).collect();
    assert_eq!(
        a.owned.leases(),
        expected,
        "a new epoch fences the earlier run's writers, without waiting for its leases to end"
    );
}

fn lease(tenant: &TenantId, epoch: i64) -> Lease {
    Lease {
        tenant: tenant.clone(),
        epoch: Epoch(epoch),
    }
}

/// A host that blocks its runtime's only thread inside its first adopt,
/// until the test lets it go: the member's whole process paused (SIGSTOP)
/// with its tenants held.
struct Pausing {
    recorder: Recorder,
    pause: Mutex<Option<(oneshot::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
}

#[async_trait::async_trait]
impl TenantHost for Pausing {
    async fn adopt(&self, lease: &Lease) {
        self.recorder.adopt(lease).await;
        let pause = self.pause.lock().expect("pause lock").take();
        if let Some((paused, resume)) = pause {
            let _ = paused.send(());
            // Blocks the thread (not just this task): nothing of the
            // member runs, timers included, until the test resumes it.
            let _ = resume.recv();
        }
    }

    async fn release(&self, tenant: &TenantId, why: Release) {
        self.recorder.release(tenant, why).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_paused_past_its_leases_releases_them_on_resume_before_renewing() {
    let pg = PgCluster::start();
    let tenants = enroll(&pg, 2).await;
    let journal = journal();
    let (paused_tx, paused) = oneshot::channel();
    let (resume, resume_rx) = std::sync::mpsc::channel();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let host = Arc::new(Pausing {
        recorder: Recorder {
            node: "node-a",
            journal: journal.clone(),
            status: OnceLock::new(),
        },
        pause: Mutex::new(Some((paused_tx, resume_rx))),
    });
    let (url, owned_a) = (pg.url(), Owned::default());
    let (owned, hosted) = (owned_a.clone(), host.clone());
    // node-a alone on a one-thread runtime: its pool, its loop, its timers.
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let fleet = Fleet::connect(&url, 2).await.expect("connect");
            let member = Member::new(
                fleet,
                spec("node-a", 10),
                MemberConfig::new(TTL),
                owned,
                hosted.clone(),
            );
            hosted.recorder.status.set(member.status()).expect("once");
            let _handle = member.spawn();
            let _ = stop_rx.await;
        });
    });
    timeout(PATIENCE, paused)
        .await
        .expect("node-a adopts and pauses")
        .expect("paused");

    // While node-a is paused, its leases run out on the database's clock
    // and node-b takes them over.
    let fleet = Fleet::connect(&pg.url(), 1).await.expect("connect");
    let mut conn = fleet.pool().acquire().await.expect("connection");
    sqlx::query("SET statement_timeout = '30s'")
        .execute(&mut *conn)
        .await
        .expect("timeout");
    sqlx::query(
        "SELECT pg_sleep_until(max(lease_until) + interval '10 milliseconds') FROM tenant_owners",
    )
    .execute(&mut *conn)
    .await
    .expect("the leases' end passes on the database's clock");
    let b = start(&pg, "node-b", 10, &journal).await;
    until(&journal, "node-b takes both over", |events| {
        adopts(events, "node-b").count() == 2
    })
    .await;

    let mut status_a = host.recorder.status.get().expect("set").clone();
    let resumed = Instant::now();
    resume.send(()).expect("node-a is waiting");
    // The ones node-a adopted before it paused (the first, at least; the
    // others are not adopted after the pause: their deadline has passed).
    let adopted: BTreeSet<TenantId> = adopts(&journal.borrow(), "node-a")
        .map(|e| e.tenant.clone())
        .collect();
    assert!(adopted.contains(&tenants[0]));
    until(&journal, "node-a releases what it adopted", |events| {
        adopted.iter().all(|t| {
            events
                .iter()
                .any(|e| e.node == "node-a" && e.tenant == *t && e.at >= resumed)
        })
    })
    .await;
    let rounds = status_a.borrow().rounds;
    let waited = timeout(PATIENCE, status_a.wait_for(|s| s.rounds >= rounds + 2)).await;
    assert!(
        matches!(waited, Ok(Ok(_))),
        "node-a goes on after the pause"
    );

    let events = journal.borrow().clone();
    for e in events
        .iter()
        .filter(|e| e.node == "node-a" && e.at >= resumed)
    {
        assert_eq!(
            e.call,
            Call::Release(Release::Deadline),
            "{}: only releases after the pause, at the deadline",
            e.tenant
        );
        let renewed = e.renewed.expect("renewed before the pause");
        assert!(
            renewed < resumed,
            "{}: released before any renewal after the pause",
            e.tenant
        );
    }
    assert!(owned_a.is_empty(), "node-a holds nothing it lost");
    let expected: Vec<Lease> = tenants.iter().map(|t| lease(t, 2)).collect();
    assert_eq!(b.owned.leases(), expected, "node-b keeps them");

    drop(stop);
    tokio::task::block_in_place(|| thread.join()).expect("node-a's thread");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_by_name_is_adopted_kept_through_renewals_and_bounded_by_capacity() {
    let pg = PgCluster::start();
    let journal = journal();
    let mut a = start(&pg, "node-a", 2, &journal).await;
    let mut b = start(&pg, "node-b", 2, &journal).await;
    until_status(&mut a, "a's first round", |s| s.rounds >= 1).await;
    until_status(&mut b, "b's first round", |s| s.rounds >= 1).await;
    let (claim_a, claim_b) = (a.handle.claimer(), b.handle.claimer());

    assert_eq!(claim_a.claim(&tenant(1)).await, Claimed::Held);
    assert_eq!(
        claim_a.claim(&tenant(1)).await,
        Claimed::Held,
        "ours already"
    );
    assert_eq!(claim_b.claim(&tenant(1)).await, Claimed::Taken);
    assert_eq!(claim_a.claim(&tenant(2)).await, Claimed::Held);
    assert_eq!(claim_a.claim(&tenant(3)).await, Claimed::Full, "capacity 2");
    assert_eq!(claim_b.claim(&tenant(3)).await, Claimed::Held);

    // Two more rounds: the renewals keep what was claimed between them.
    let after = a.status.borrow().rounds + 2;
    until_status(&mut a, "two more rounds", |s| s.rounds >= after).await;
    let events = journal.borrow().clone();
    let held = holders(&events);
    assert_eq!(held.get(&tenant(1)), Some(&("node-a", Epoch(1))));
    assert_eq!(held.get(&tenant(2)), Some(&("node-a", Epoch(1))));
    assert_eq!(held.get(&tenant(3)), Some(&("node-b", Epoch(1))));
    assert!(
        events.iter().all(|e| !matches!(e.call, Call::Release(_))),
        "nothing released: {events:#?}"
    );
    assert!(a.owned.contains(&tenant(1)) && a.owned.contains(&tenant(2)));
    a.handle.drain().await;
    b.handle.drain().await;
}

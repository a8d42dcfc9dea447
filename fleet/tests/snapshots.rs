//! Sealed profile snapshots against a real PostgreSQL (a throwaway cluster
//! per test): a packed, sealed profile stored by the tenant's owner comes
//! back and unpacks to the same files on another node; a node that lost
//! the tenant can neither replace nor delete it; a snapshot opens only as
//! the session it was sealed for.

mod common;

use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::secret::{SecretBox, SecretError};
use centinela_fleet::snapshot::{aad, seal};
use centinela_fleet::{
    pack, unpack, Epoch, Fleet, FleetError, Lease, Leases, NodeId, NodeSpec, Packed, Snapshots,
};
use common::PgCluster;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(30);
const LIMIT: u64 = 1 << 20;
const IDB: &str = "Default/IndexedDB/http_127.0.0.1_9000.indexeddb.leveldb";

/// A node with its own pool, registered: its leases and its table handle.
async fn node(pg: &PgCluster, id: &str) -> (Leases, Snapshots) {
    let fleet = Fleet::connect(&pg.url(), 4).await.expect("connect");
    let id = NodeId::new(id).expect("node id");
    fleet
        .register(&NodeSpec {
            id: id.clone(),
            advertise_url: format!("http://{id}.internal:8080"),
            egress: "server".into(),
            capacity: 10,
        })
        .await
        .expect("register");
    (Leases::new(&fleet, id, TTL), Snapshots::new(&fleet))
}

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).expect("tenant id")
}

fn session(name: &str) -> SessionId {
    SessionId::new(name).expect("session id")
}

fn secrets() -> SecretBox {
    SecretBox::new([9; 32])
}

/// A small profile whose pairing is `device`, with a cache beside it.
fn profile(dir: &Path, device: &[u8]) -> Packed {
    let files: [(String, &[u8]); 4] = [
        (format!("{IDB}/000003.log"), device),
        (format!("{IDB}/CURRENT"), b"MANIFEST-000001\n"),
        (
            "Default/Local Storage/leveldb/CURRENT".into(),
            b"MANIFEST-000001\n",
        ),
        ("Default/Cache/Cache_Data/index".into(), b"cache"),
    ];
    for (rel, data) in files {
        let at = dir.join(rel);
        fs::create_dir_all(at.parent().expect("parent")).expect("mkdir");
        fs::write(at, data).expect("write");
    }
    pack(dir, LIMIT).expect("pack")
}

/// Every regular file under `dir` with its contents.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(at) = dirs.pop() {
        for entry in fs::read_dir(&at).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("under").to_string_lossy();
                out.insert(rel.into_owned(), fs::read(&path).expect("read"));
            }
        }
    }
    out
}

async fn put(
    snapshots: &Snapshots,
    leases: &Leases,
    lease: &Lease,
    s: &SessionId,
    packed: &Packed,
) -> Result<(), FleetError> {
    let sealed = seal(&secrets(), &lease.tenant, s, packed);
    let size = packed.bytes.len() as u64;
    snapshots
        .put(leases, lease, s, &sealed, &packed.sha256, size)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_put_by_the_owner_restores_the_same_pairing_on_the_next_owner() {
    let pg = PgCluster::start();
    let (a, a_snaps) = node(&pg, "node-a").await;
    let (b, b_snaps) = node(&pg, "node-b").await;
    let (t, s) = (tenant("t1"), session("s1"));
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("a/profiles/s1");
    let packed = profile(&source, b"device-7 paired to +5491100000000");
    let lease = a.claim(&t).await.expect("claim").expect("free");
    put(&a_snaps, &a, &lease, &s, &packed).await.expect("put");

    let stored = b_snaps.get(&s).await.expect("get").expect("stored");
    assert_eq!(stored.tenant, t);
    assert_eq!(stored.epoch, lease.epoch);
    assert_eq!(stored.sha256, packed.sha256);
    assert_eq!(stored.size, packed.bytes.len() as u64);
    assert!(stored.taken_at.as_millis() > 0);
    assert!(
        !stored.sealed.windows(8).any(|w| w == b"device-7"),
        "sealed, not in the clear"
    );
    assert_eq!(b_snaps.get(&session("s2")).await.expect("get"), None);

    // The tenant moves: node B restores into its own data dir.
    pg.expire_lease(&t).await;
    b.claim(&t).await.expect("claim").expect("expired");
    let opened = stored.open(&secrets(), &s).expect("opens");
    assert_eq!(opened, packed.bytes);
    let target = dir.path().join("b/profiles/s1");
    unpack(&opened, &target, LIMIT).expect("unpack");
    let mut expected = files(&source);
    expected.remove("Default/Cache/Cache_Data/index");
    assert_eq!(files(&target), expected, "the pairing, not the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_put_by_the_owner_replaces_its_snapshot() {
    let pg = PgCluster::start();
    let (a, snaps) = node(&pg, "node-a").await;
    let (t, s) = (tenant("t1"), session("s1"));
    let dir = tempfile::tempdir().expect("tempdir");
    let lease = a.claim(&t).await.expect("claim").expect("free");
    let first = profile(&dir.path().join("p"), b"first");
    put(&snaps, &a, &lease, &s, &first).await.expect("put");
    let second = profile(&dir.path().join("p"), b"second, longer");
    assert_ne!(first.sha256, second.sha256);
    put(&snaps, &a, &lease, &s, &second).await.expect("put");
    let stored = snaps.get(&s).await.expect("get").expect("stored");
    assert_eq!(stored.sha256, second.sha256);
    assert_eq!(stored.open(&secrets(), &s).expect("opens"), second.bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_the_tenant_cannot_replace_its_snapshot() {
    let pg = PgCluster::start();
    let (a, a_snaps) = node(&pg, "node-a").await;
    let (b, b_snaps) = node(&pg, "node-b").await;
    let (t, s) = (tenant("t1"), session("s1"));
    let dir = tempfile::tempdir().expect("tempdir");
    let old = a.claim(&t).await.expect("claim").expect("free");
    let good = profile(&dir.path().join("good"), b"good pairing");
    put(&a_snaps, &a, &old, &s, &good).await.expect("put");

    pg.expire_lease(&t).await;
    let new = b.claim(&t).await.expect("claim").expect("expired");
    assert_eq!(new.epoch, Epoch(2));
    let stale = profile(&dir.path().join("stale"), b"stale pairing");
    let fenced = put(&a_snaps, &a, &old, &s, &stale).await;
    assert!(
        matches!(&fenced, Err(FleetError::Fenced { tenant, epoch }) if *tenant == t && *epoch == Epoch(1)),
        "{fenced:?}"
    );
    let kept = b_snaps.get(&s).await.expect("get").expect("stored");
    assert_eq!(
        (kept.epoch, kept.sha256),
        (Epoch(1), good.sha256),
        "row unchanged"
    );

    put(&b_snaps, &b, &new, &s, &stale)
        .await
        .expect("the new owner writes");
    let now = b_snaps.get(&s).await.expect("get").expect("stored");
    assert_eq!((now.epoch, now.sha256), (Epoch(2), stale.sha256));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_never_replaces_a_snapshot_written_at_a_higher_epoch() {
    let pg = PgCluster::start();
    let (a, snaps) = node(&pg, "node-a").await;
    let (t, s) = (tenant("t1"), session("s1"));
    let dir = tempfile::tempdir().expect("tempdir");
    let lease = a.claim(&t).await.expect("claim").expect("free");
    let first = profile(&dir.path().join("p"), b"first");
    put(&snaps, &a, &lease, &s, &first).await.expect("put");
    // A row from a later epoch than any live lease (a tenant whose
    // ownership row was made again, its epochs restarting).
    let db = Fleet::connect(&pg.url(), 1).await.expect("connect");
    sqlx::query("UPDATE profile_snapshots SET epoch = 99 WHERE session = $1")
        .bind(s.as_str())
        .execute(db.pool())
        .await
        .expect("bump");
    let second = profile(&dir.path().join("p"), b"second");
    let refused = put(&snaps, &a, &lease, &s, &second).await;
    assert!(
        matches!(refused, Err(FleetError::Fenced { .. })),
        "{refused:?}"
    );
    let kept = snaps.get(&s).await.expect("get").expect("stored");
    assert_eq!((kept.epoch, kept.sha256), (Epoch(99), first.sha256));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_of_another_tenant_is_not_overwritten() {
    let pg = PgCluster::start();
    let (a, snaps) = node(&pg, "node-a").await;
    let s = session("s1");
    let dir = tempfile::tempdir().expect("tempdir");
    let one = a.claim(&tenant("t1")).await.expect("claim").expect("free");
    let two = a.claim(&tenant("t2")).await.expect("claim").expect("free");
    let first = profile(&dir.path().join("p"), b"t1's pairing");
    put(&snaps, &a, &one, &s, &first).await.expect("put");
    let refused = put(&snaps, &a, &two, &s, &first).await;
    assert!(
        matches!(&refused, Err(FleetError::ForeignSession(x)) if *x == s),
        "{refused:?}"
    );
    assert_eq!(
        snaps.get(&s).await.expect("get").expect("stored").tenant,
        tenant("t1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_delete_is_fenced_and_removes_the_snapshot_for_good() {
    let pg = PgCluster::start();
    let (a, a_snaps) = node(&pg, "node-a").await;
    let (b, b_snaps) = node(&pg, "node-b").await;
    let (t, s) = (tenant("t1"), session("s1"));
    let dir = tempfile::tempdir().expect("tempdir");
    let old = a.claim(&t).await.expect("claim").expect("free");
    let packed = profile(&dir.path().join("p"), b"pairing");
    put(&a_snaps, &a, &old, &s, &packed).await.expect("put");

    pg.expire_lease(&t).await;
    let new = b.claim(&t).await.expect("claim").expect("expired");
    let fenced = a_snaps.delete(&a, &old, &s).await;
    assert!(
        matches!(fenced, Err(FleetError::Fenced { .. })),
        "{fenced:?}"
    );
    assert!(b_snaps.get(&s).await.expect("get").is_some(), "row stays");

    assert!(
        b_snaps.delete(&b, &new, &s).await.expect("delete"),
        "deleted"
    );
    assert_eq!(b_snaps.get(&s).await.expect("get"), None);
    assert!(
        !b_snaps.delete(&b, &new, &s).await.expect("delete"),
        "nothing left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_sealed_for_one_session_does_not_open_as_another() {
    let pg = PgCluster::start();
    let (a, snaps) = node(&pg, "node-a").await;
    let t = tenant("t1");
    let (s1, s2) = (session("s1"), session("s2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let lease = a.claim(&t).await.expect("claim").expect("free");
    let packed = profile(&dir.path().join("p"), b"s1's pairing");
    let sealed = seal(&secrets(), &t, &s1, &packed);
    let size = packed.bytes.len() as u64;
    // s1's sealed bytes stored as s2's snapshot (a swapped row).
    for s in [&s1, &s2] {
        snaps
            .put(&a, &lease, s, &sealed, &packed.sha256, size)
            .await
            .expect("put");
    }
    let own = snaps.get(&s1).await.expect("get").expect("stored");
    assert_eq!(own.open(&secrets(), &s1).expect("opens"), packed.bytes);
    let swapped = snaps.get(&s2).await.expect("get").expect("stored");
    assert!(matches!(
        swapped.open(&secrets(), &s2),
        Err(SecretError::Open)
    ));

    let mut other_tenant = own.clone();
    other_tenant.tenant = tenant("t2");
    assert!(
        other_tenant.open(&secrets(), &s1).is_err(),
        "tenant is bound too"
    );
    assert!(
        own.open(&SecretBox::new([1; 32]), &s1).is_err(),
        "other key"
    );
    assert_eq!(aad(&t, &s1), b"profile\0t1\0s1");
}

//! The fleet's accounts on a real PostgreSQL: what one pool writes another
//! reads (each pool a node), with the single-node store's answers — the
//! same `AccountError` for a duplicate or a missing tenant, live API keys
//! by hash until revoked — one setting value however many nodes race to
//! set it, and a purge that leaves nothing of the tenant's accounts in the
//! fleet and nothing of the tenant in the purging node's own store — run
//! only by the node that hosts the tenant, when one does.

mod common;

use centinela_actors::clock::Timestamp;
use centinela_actors::ids::{SessionId, TenantId, UserId};
use centinela_actors::store::{
    AccountError, AccountRepo, ApiKeyRecord, Role, Store, StoreError, TenantRecord, UserRecord,
    WebhookRepo, WebhookTarget,
};
use centinela_fleet::{Fleet, NodeAccounts, PgAccounts, Snapshots};
use common::{Member, PgCluster};
use std::sync::Arc;

async fn accounts(pg: &PgCluster) -> PgAccounts {
    let fleet = Fleet::connect(&pg.url(), 2).await.expect("connect");
    PgAccounts::new(&fleet)
}

fn tid(id: &str) -> TenantId {
    TenantId::new(id).expect("tenant id")
}

fn tenant(id: &str) -> TenantRecord {
    TenantRecord {
        id: tid(id),
        name: format!("{id} clinic"),
        created_at: Timestamp::from_millis(1_768_590_000_000),
    }
}

fn user(name: &str, tenant: Option<&str>) -> UserRecord {
    UserRecord {
        id: UserId::generate(),
        username: name.into(),
        password_hash: "$argon2id$v=19$fake".into(),
        role: match tenant {
            Some(_) => Role::Tenant,
            None => Role::Admin,
        },
        tenant: tenant.map(tid),
        created_at: Timestamp::from_millis(1_768_590_000_001),
        password_version: 0,
    }
}

fn key(id: &str, tenant: &str, hash_byte: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        tenant: tid(tenant),
        name: "crm".into(),
        hash: hash_byte.repeat(32),
        prefix: format!("cnt_{}", hash_byte.repeat(2)),
        created_at: Timestamp::from_millis(1_768_590_000_002),
        revoked_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_node_writes_another_reads_back_unchanged() {
    let pg = PgCluster::start();
    let (a, b) = (accounts(&pg).await, accounts(&pg).await);
    a.create_tenant(&tenant("clinic")).expect("tenant");
    a.create_tenant(&tenant("bakery")).expect("tenant");
    assert_eq!(
        b.tenant(&tid("clinic")).expect("read"),
        Some(tenant("clinic"))
    );
    assert_eq!(b.tenant(&tid("nobody")).expect("read"), None);
    assert_eq!(
        b.tenants().expect("list"),
        vec![tenant("bakery"), tenant("clinic")]
    );

    let ana = user("Ana", Some("clinic"));
    let root = user("root", None);
    a.create_user(&ana).expect("user");
    a.create_user(&root).expect("admin");
    assert_eq!(b.user(&ana.id).expect("read"), Some(ana.clone()));
    assert_eq!(b.user_by_name("ANA").expect("read"), Some(ana.clone()));
    assert_eq!(b.user_by_name("root").expect("read"), Some(root.clone()));
    let mut both = vec![ana.clone(), root.clone()];
    both.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(b.users().expect("list"), both);

    // A password change is seen at once by the other node.
    let mut changed = ana.clone();
    changed.password_hash = "$argon2id$v=19$other".into();
    changed.password_version = 1;
    b.update_user(&changed).expect("update");
    assert_eq!(a.user(&ana.id).expect("read"), Some(changed.clone()));
    assert!(matches!(
        a.update_user(&user("ghost", None)),
        Err(AccountError::NotFound(_))
    ));

    let k = key("k1", "clinic", "ab");
    a.create_api_key(&k).expect("key");
    assert_eq!(b.api_keys(&tid("clinic")).expect("list"), vec![k.clone()]);
    assert_eq!(b.api_keys(&tid("bakery")).expect("list"), vec![]);

    assert!(b.delete_user(&ana.id).expect("delete"));
    assert!(!a.delete_user(&ana.id).expect("twice"));
    assert_eq!(a.user_by_name("ana").expect("read"), None);
    assert_eq!(a.users().expect("list"), vec![root]);
}

/// The same operations on the single-node store and on the fleet's:
/// each refusal is the same `AccountError` variant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_and_missing_tenants_are_refused_as_the_single_node_store_refuses_them() {
    let pg = PgCluster::start();
    let fleet = accounts(&pg).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let redb = Store::open(dir.path()).expect("store");
    let stores: [(&str, &dyn AccountRepo); 2] = [("redb", &redb), ("fleet", &fleet)];
    for (name, store) in stores {
        store.create_tenant(&tenant("clinic")).expect("tenant");
        store
            .create_user(&user("Ana", Some("clinic")))
            .expect("user");
        let outcomes = [
            ("same tenant id", store.create_tenant(&tenant("clinic"))),
            ("same username", store.create_user(&user("Ana", None))),
            (
                "other case",
                store.create_user(&user("aNA", Some("clinic"))),
            ),
        ];
        for (what, outcome) in outcomes {
            assert!(
                matches!(outcome, Err(AccountError::Exists(_))),
                "{name}, {what}: {outcome:?}"
            );
        }
        let outcomes = [
            ("user", store.create_user(&user("bea", Some("gone")))),
            ("api key", store.create_api_key(&key("k0", "gone", "cd"))),
        ];
        for (what, outcome) in outcomes {
            assert!(
                matches!(outcome, Err(AccountError::NotFound(_))),
                "{name}, {what} of a tenant not on record: {outcome:?}"
            );
        }
        assert_eq!(store.user_by_name("bea").expect("read"), None, "{name}");
        assert_eq!(
            store.api_keys(&tid("gone")).expect("read"),
            vec![],
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_is_found_by_its_hash_on_any_node_until_its_tenant_revokes_it() {
    let pg = PgCluster::start();
    let (a, b) = (accounts(&pg).await, accounts(&pg).await);
    a.create_tenant(&tenant("clinic")).expect("tenant");
    a.create_tenant(&tenant("bakery")).expect("tenant");
    let k = key("k1", "clinic", "ab");
    a.create_api_key(&k).expect("key");
    assert_eq!(b.api_key_by_hash(&k.hash).expect("lookup"), Some(k.clone()));
    assert_eq!(b.api_key_by_hash(&"ef".repeat(32)).expect("lookup"), None);

    // Another tenant cannot revoke it, nor can anyone revoke a key that is not there.
    let at = Timestamp::from_millis(1_768_590_100_000);
    assert!(!b.revoke_api_key(&tid("bakery"), "k1", at).expect("revoke"));
    assert!(!b.revoke_api_key(&tid("clinic"), "k9", at).expect("revoke"));
    assert_eq!(a.api_key_by_hash(&k.hash).expect("lookup"), Some(k.clone()));

    assert!(b.revoke_api_key(&tid("clinic"), "k1", at).expect("revoke"));
    assert_eq!(a.api_key_by_hash(&k.hash).expect("lookup"), None);
    // Revoking again keeps the first time.
    let later = Timestamp::from_millis(1_768_590_200_000);
    assert!(a
        .revoke_api_key(&tid("clinic"), "k1", later)
        .expect("again"));
    let listed = a.api_keys(&tid("clinic")).expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revoked_at, Some(at));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_through_one_node_is_revoked_on_every_node_and_swept_once_expired() {
    let pg = PgCluster::start();
    let (a, b) = (accounts(&pg).await, accounts(&pg).await);
    let now = Timestamp::from_millis(1_000_000);
    a.revoke_token("jti-old", Timestamp::from_millis(2_000_000), now)
        .expect("revoke");
    assert!(b.is_token_revoked("jti-old").expect("check"));
    assert!(!b.is_token_revoked("jti-other").expect("check"));

    // Once its token would have expired, the next revocation sweeps it.
    let after = Timestamp::from_millis(3_000_000);
    b.revoke_token("jti-new", Timestamp::from_millis(4_000_000), after)
        .expect("revoke");
    assert!(a.is_token_revoked("jti-new").expect("check"));
    assert!(!a.is_token_revoked("jti-old").expect("check"), "swept");
}

/// Nodes starting together each generate a JWT secret and race to keep
/// theirs: every node gets the one the database kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_racing_to_set_a_setting_all_get_the_one_value_kept() {
    let pg = PgCluster::start();
    let nodes = [accounts(&pg).await, accounts(&pg).await];
    for round in 0..20 {
        let key = format!("jwt_secret_{round}");
        let start = Arc::new(tokio::sync::Barrier::new(nodes.len()));
        let racers: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let (node, key, start) = (node.clone(), key.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    node.setting_or_insert(&key, &format!("secret-of-node-{i}"))
                        .expect("set")
                })
            })
            .collect();
        let mut got = Vec::new();
        for racer in racers {
            got.push(racer.await.expect("racer"));
        }
        let kept = nodes[0].setting(&key).expect("read").expect("set");
        assert!(kept.starts_with("secret-of-node-"), "{kept}");
        assert_eq!(got, vec![kept.clone(), kept], "round {round}");
    }
    assert_eq!(nodes[1].setting("never-set").expect("read"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_removes_the_tenants_users_and_keys_from_the_fleet_and_nothing_else() {
    let pg = PgCluster::start();
    let (a, b) = (accounts(&pg).await, accounts(&pg).await);
    for t in ["clinic", "bakery"] {
        a.create_tenant(&tenant(t)).expect("tenant");
    }
    let (ana, bea, cid, root) = (
        user("ana", Some("clinic")),
        user("bea", Some("clinic")),
        user("cid", Some("bakery")),
        user("root", None),
    );
    for u in [&ana, &bea, &cid, &root] {
        a.create_user(u).expect("user");
    }
    a.create_api_key(&key("k1", "clinic", "a1")).expect("key");
    a.create_api_key(&key("k2", "clinic", "a2")).expect("key");
    a.create_api_key(&key("k3", "bakery", "a3")).expect("key");

    let purged = b.purge_tenant(&tid("clinic")).expect("purge");
    assert!(purged.existed);
    assert_eq!((purged.users, purged.api_keys), (2, 2));

    assert_eq!(a.tenant(&tid("clinic")).expect("read"), None);
    assert_eq!(a.user_by_name("ana").expect("read"), None);
    assert_eq!(a.user(&bea.id).expect("read"), None);
    assert_eq!(a.api_keys(&tid("clinic")).expect("list"), vec![]);
    assert_eq!(a.api_key_by_hash(&"a1".repeat(32)).expect("lookup"), None);
    // The other tenant and the admin are untouched.
    assert_eq!(a.user_by_name("cid").expect("read"), Some(cid));
    assert_eq!(a.user_by_name("root").expect("read"), Some(root));
    assert_eq!(a.api_keys(&tid("bakery")).expect("list").len(), 1);
    // The name is free again, and nothing of the old tenant comes back.
    assert!(matches!(
        a.create_user(&user("ana", Some("clinic"))),
        Err(AccountError::NotFound(_))
    ));
    a.create_tenant(&tenant("clinic")).expect("re-created");
    a.create_user(&user("ana", Some("clinic")))
        .expect("name free");
    assert_eq!(a.api_keys(&tid("clinic")).expect("list"), vec![]);
    assert!(!b.purge_tenant(&tid("nobody")).expect("purge").existed);
}

/// A node of the fleet with its accounts, its leases and its own store.
struct Node {
    accounts: NodeAccounts,
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
        accounts: NodeAccounts::new(&m.fleet, m.leases.clone(), m.owned.clone(), m.local.clone()),
        member: m,
    }
}

/// A node's accounts: the fleet's, with tenant records in the node's store
/// for the node-local tables that check them; a purge clears both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_mirrors_tenant_records_for_its_local_tables_and_its_purge_clears_both() {
    let pg = PgCluster::start();
    let (a, b) = (node(&pg, "a").await, node(&pg, "b").await);
    a.accounts.create_tenant(&tenant("clinic")).expect("tenant");
    assert!(matches!(
        b.accounts.create_tenant(&tenant("clinic")),
        Err(AccountError::Exists(_))
    ));
    assert_eq!(
        a.local.tenant(&tid("clinic")).expect("read"),
        Some(tenant("clinic"))
    );
    assert_eq!(
        b.accounts.tenant(&tid("clinic")).expect("read"),
        Some(tenant("clinic"))
    );

    // b's own tables refuse the tenant until it mirrors the record.
    let hook = WebhookTarget {
        tenant: tid("clinic"),
        url: "https://hooks.example/clinic".into(),
        secret: "s".repeat(32),
    };
    assert!(!b.local.set_target(&hook).expect("set"));
    assert!(b
        .accounts
        .mirror_tenant(&tid("clinic"))
        .await
        .expect("mirror"));
    assert!(!b
        .accounts
        .mirror_tenant(&tid("nobody"))
        .await
        .expect("mirror"));
    assert_eq!(b.local.tenant(&tid("nobody")).expect("read"), None);
    assert!(b.local.set_target(&hook).expect("set"));
    b.accounts
        .create_user(&user("ana", Some("clinic")))
        .expect("user");

    // Never hosted by any node: any node purges it (here from the
    // blocking pool, as tenant deletion calls it).
    let accounts = b.accounts.clone();
    let purged = tokio::task::spawn_blocking(move || accounts.purge_tenant(&tid("clinic")))
        .await
        .expect("purge task")
        .expect("purge");
    assert!(purged.existed && purged.webhook);
    assert_eq!(purged.users, 1);
    assert_eq!(a.accounts.tenant(&tid("clinic")).expect("read"), None);
    assert_eq!(a.accounts.user_by_name("ana").expect("read"), None);
    assert_eq!(b.local.tenant(&tid("clinic")).expect("read"), None);
    assert_eq!(b.local.target(&tid("clinic")).expect("read"), None);
}

/// A hosted tenant's sessions live on the node that hosts it: only that
/// node purges it, and its profile snapshots and its lease go with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_node_hosting_a_tenant_purges_it_and_its_snapshots_go_too() {
    let pg = PgCluster::start();
    let (a, b) = (node(&pg, "a").await, node(&pg, "b").await);
    a.accounts.create_tenant(&tenant("clinic")).expect("tenant");
    a.accounts
        .create_user(&user("ana", Some("clinic")))
        .expect("user");
    let lease = a
        .leases
        .claim(&tid("clinic"))
        .await
        .expect("claim")
        .expect("won");
    a.owned.insert(lease.clone());
    let fleet = Fleet::connect(&pg.url(), 1).await.expect("connect");
    let snapshots = Snapshots::new(&fleet);
    let session = SessionId::new("s1").expect("id");
    snapshots
        .put(&a.leases, &lease, &session, b"sealed", &[7; 32], 6)
        .await
        .expect("snapshot");

    assert!(matches!(
        b.accounts.purge_tenant(&tid("clinic")),
        Err(StoreError::NotHeld(t)) if t == "clinic"
    ));
    assert!(
        b.accounts.user_by_name("ana").expect("read").is_some(),
        "nothing was removed"
    );
    assert!(snapshots.get(&session).await.expect("read").is_some());

    let purged = a.accounts.purge_tenant(&tid("clinic")).expect("purge");
    assert!(purged.existed);
    assert_eq!(purged.users, 1);
    assert_eq!(b.accounts.user_by_name("ana").expect("read"), None);
    assert!(snapshots.get(&session).await.expect("read").is_none());
    assert_eq!(
        b.leases.owner_of(&tid("clinic")).await.expect("owner"),
        None,
        "no lease outlives the tenant"
    );
    // Re-created, it is a new tenant nobody hosted: any node purges it.
    a.accounts.create_tenant(&tenant("clinic")).expect("again");
    a.owned.remove(&tid("clinic"));
    assert!(
        b.accounts
            .purge_tenant(&tid("clinic"))
            .expect("purge")
            .existed
    );
}

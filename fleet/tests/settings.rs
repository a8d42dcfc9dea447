//! Each tenant's webhook target and auto-reply rules on a real PostgreSQL:
//! the owner writes the fleet and its own store; a node that does not host
//! the tenant reads the fleet's and writes it only while nobody hosts the
//! tenant (never its own store); a node whose lease was taken writes
//! nothing; a new owner's copy replaces what its store had from before;
//! the target is sealed at rest (a node with another key cannot read it);
//! a purge takes the tenant's settings with it.

mod common;

use centinela_actors::clock::Timestamp;
use centinela_actors::ids::TenantId;
use centinela_actors::secret::SecretBox;
use centinela_actors::store::{
    AccountRepo, AutoReplyRepo, AutoReplyRule, AutoReplyRules, StoreError, TenantRecord,
    TenantSettingsRepo, WebhookRepo, WebhookTarget,
};
use centinela_fleet::{FleetSettings, PgAccounts};
use common::{Member, PgCluster};
use std::sync::Arc;

const KEY: [u8; 32] = [7; 32];
const SECRET: &str = "the-signing-secret-of-clinic";

/// A node with the fleet's tenant settings, sealing under `key`.
struct Node {
    settings: FleetSettings,
    member: Member,
}

impl std::ops::Deref for Node {
    type Target = Member;
    fn deref(&self) -> &Member {
        &self.member
    }
}

async fn node(pg: &PgCluster, name: &str, key: [u8; 32]) -> Node {
    let m = Member::join(pg, name).await;
    // Every node that ever hosts the tenant has its record.
    m.local.create_tenant(&record()).expect("local tenant");
    let sealing = Arc::new(SecretBox::new(key));
    Node {
        settings: FleetSettings::new(
            &m.fleet,
            m.leases.clone(),
            m.owned.clone(),
            m.local.clone(),
            sealing,
        ),
        member: m,
    }
}

impl Node {
    async fn rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM tenant_settings WHERE tenant = 'clinic'")
            .fetch_one(self.fleet.pool())
            .await
            .expect("count")
    }
}

fn clinic() -> TenantId {
    TenantId::new("clinic").expect("id")
}

fn record() -> TenantRecord {
    TenantRecord {
        id: clinic(),
        name: "clinic".into(),
        created_at: Timestamp::from_millis(1_768_590_000_000),
    }
}

fn target(url: &str) -> WebhookTarget {
    WebhookTarget {
        tenant: clinic(),
        url: url.into(),
        secret: SECRET.into(),
    }
}

fn rules(keyword: &str) -> AutoReplyRules {
    AutoReplyRules {
        enabled: true,
        rules: vec![AutoReplyRule {
            keyword: keyword.into(),
            reply: format!("about {keyword}: see our site"),
            enabled: true,
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_writes_the_fleet_and_its_store_and_a_node_that_does_not_host_the_tenant_cannot()
{
    let pg = PgCluster::start();
    let (a, b) = (node(&pg, "a", KEY).await, node(&pg, "b", KEY).await);
    let fleet_accounts = PgAccounts::new(&a.fleet);
    // Not on record in the fleet yet: nothing is written.
    assert!(!b
        .settings
        .set_auto_reply_rules(&clinic(), &rules("x"))
        .expect("write"));
    assert_eq!(a.rows().await, 0);
    fleet_accounts.create_tenant(&record()).expect("tenant");

    // Nobody hosts the tenant: any node writes the fleet, and only the fleet.
    assert!(b
        .settings
        .set_auto_reply_rules(&clinic(), &rules("hours"))
        .expect("write"));
    assert_eq!(
        a.settings.auto_reply_rules(&clinic()).expect("read"),
        rules("hours")
    );
    assert_eq!(
        b.local.auto_replies(&clinic()).expect("local"),
        AutoReplyRules::default()
    );

    // a hosts it: its writes reach its store too; b reads them, writes none.
    a.hold(&clinic()).await;
    assert!(a
        .settings
        .set_webhook_target(&target("https://crm.example/a"))
        .expect("set"));
    assert_eq!(
        a.local.target(&clinic()).expect("local"),
        Some(target("https://crm.example/a"))
    );
    assert_eq!(
        b.settings.webhook_target(&clinic()).expect("read"),
        Some(target("https://crm.example/a"))
    );
    assert_eq!(b.local.target(&clinic()).expect("local"), None);
    for refused in [
        b.settings
            .set_webhook_target(&target("https://evil.example/")),
        b.settings.delete_webhook_target(&clinic()),
        b.settings.set_auto_reply_rules(&clinic(), &rules("b")),
    ] {
        assert!(
            matches!(refused, Err(StoreError::NotHeld(ref t)) if t == "clinic"),
            "{refused:?}"
        );
    }
    assert!(a
        .settings
        .set_auto_reply_rules(&clinic(), &rules("prices"))
        .expect("write"));
    assert_eq!(
        a.local.auto_replies(&clinic()).expect("local"),
        rules("prices")
    );
    assert_eq!(
        b.settings.auto_reply_rules(&clinic()).expect("read"),
        rules("prices")
    );

    // The signing secret is not in the database in the clear, and a node
    // with another key cannot open it.
    let raw: Vec<u8> =
        sqlx::query_scalar("SELECT value FROM tenant_settings WHERE kind = 'webhook'")
            .fetch_one(a.fleet.pool())
            .await
            .expect("raw");
    assert!(!raw.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    let other = node(&pg, "c", [9; 32]).await;
    assert!(matches!(
        other.settings.webhook_target(&clinic()),
        Err(StoreError::Corrupt {
            table: "tenant_settings",
            ..
        })
    ));

    // The owner removes the target: gone from the fleet and its store.
    assert!(a.settings.delete_webhook_target(&clinic()).expect("delete"));
    assert_eq!(b.settings.webhook_target(&clinic()).expect("read"), None);
    assert_eq!(a.local.target(&clinic()).expect("local"), None);
    assert!(!a.settings.delete_webhook_target(&clinic()).expect("twice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_owner_copies_the_fleets_settings_over_its_old_ones_and_a_purge_takes_them() {
    let pg = PgCluster::start();
    let (a, b) = (node(&pg, "a", KEY).await, node(&pg, "b", KEY).await);
    PgAccounts::new(&a.fleet)
        .create_tenant(&record())
        .expect("tenant");
    // b hosted the tenant once, with a target and rules since changed.
    b.local
        .set_target(&target("https://old.example/"))
        .expect("old target");
    b.local
        .set_auto_replies(&clinic(), &rules("old"))
        .expect("old rules");

    a.hold(&clinic()).await;
    assert!(a
        .settings
        .set_webhook_target(&target("https://crm.example/a"))
        .expect("set"));
    assert!(a
        .settings
        .set_auto_reply_rules(&clinic(), &rules("hours"))
        .expect("write"));

    pg.expire_lease(&clinic()).await;
    b.hold(&clinic()).await;
    assert!(
        matches!(
            a.settings.set_auto_reply_rules(&clinic(), &rules("late")),
            Err(StoreError::NotHeld(_))
        ),
        "a still believes it holds the tenant, at a stale epoch"
    );
    let copied = b.settings.mirror_tenant(&clinic()).await.expect("mirror");
    assert_eq!(copied.webhook, Some(target("https://crm.example/a")));
    assert_eq!(copied.auto_replies, rules("hours"));
    assert_eq!(
        b.local.target(&clinic()).expect("local"),
        Some(target("https://crm.example/a"))
    );
    assert_eq!(
        b.local.auto_replies(&clinic()).expect("local"),
        rules("hours")
    );

    // The fleet has no target any more: the next copy removes the old one.
    assert!(b.settings.delete_webhook_target(&clinic()).expect("delete"));
    b.local
        .set_target(&target("https://old.example/"))
        .expect("stale again");
    b.settings.mirror_tenant(&clinic()).await.expect("mirror");
    assert_eq!(b.local.target(&clinic()).expect("local"), None);

    assert_eq!(b.rows().await, 1);
    PgAccounts::new(&b.fleet)
        .purge_tenant(&clinic())
        .expect("purge");
    assert_eq!(b.rows().await, 0, "the tenant's settings went with it");
}

//! The fleet's messages on a real PostgreSQL, through two nodes: the send
//! queue a lost owner left is the next owner's (what was `sending` is in
//! flight there, a scheduled message still waits its turn, an idempotency
//! key still answers the first message) and the lost owner writes nothing
//! more; the new-contact budget and the activity counts one node spent are
//! read on the other; the store's rules hold (history pages, engine ids
//! per session, a code's text dropped, the bounded inbox, duplicates);
//! retention spares queued messages, running campaigns' and other nodes'
//! tenants'; the outbox writer answers a tenant the node lost without
//! failing the rest of its batch; a purged tenant's messages go with it.
//! Campaigns and webhook deliveries, the fleet's too: each node runs and
//! delivers only what it holds, and a lost owner writes nothing more.

mod common;

use centinela_actors::clock::Timestamp;
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::messaging::{Outbox, OutboxError};
use centinela_actors::secret::SecretBox;
use centinela_actors::store::{
    AccountRepo, ActivityRepo, CampaignRecord, CampaignRepo, CampaignStatus, ContactRepo, Counts,
    Delivery, DeliveryStatus, InboxRepo, Incoming, IncomingRecord, MessageRecord, MessageRepo,
    MessageStatus, SessionRecord, SessionRepo, StoreError, TenantRecord, TenantSettingsRepo,
    WebhookRepo, WebhookTarget, INBOX_CAPACITY, REDACTED_TEXT,
};
use centinela_fleet::{
    FleetCampaigns, FleetDeliveries, FleetMessages, FleetSessions, FleetSettings, PgAccounts,
};
use common::{Member, PgCluster};
use std::sync::Arc;
use std::time::Duration;

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);
const PEER: &str = "5491100000001";

struct Node {
    messages: FleetMessages,
    campaigns: FleetCampaigns,
    deliveries: FleetDeliveries,
    settings: FleetSettings,
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
        messages: FleetMessages::new(&m.fleet, m.leases.clone(), m.owned.clone()),
        campaigns: FleetCampaigns::new(&m.fleet, m.leases.clone(), m.owned.clone()),
        deliveries: FleetDeliveries::new(
            &m.fleet,
            m.leases.clone(),
            m.owned.clone(),
            m.local.clone(),
        ),
        settings: FleetSettings::new(
            &m.fleet,
            m.leases.clone(),
            m.owned.clone(),
            m.local.clone(),
            Arc::new(SecretBox::ephemeral()),
        ),
        sessions: FleetSessions::new(&m.fleet, m.leases.clone(), m.owned.clone(), m.local.clone()),
        member: m,
    }
}

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).expect("id")
}

fn session(id: &str) -> SessionId {
    SessionId::new(id).expect("id")
}

/// `tenants` on record in the fleet and in `owner`'s store, each with one
/// session `<tenant>-desk` written by `owner`, which holds them.
async fn hosting(owner: &Node, tenants: &[&str]) {
    let accounts = PgAccounts::new(&owner.fleet);
    for t in tenants {
        let record = TenantRecord {
            id: tenant(t),
            name: (*t).into(),
            created_at: T0,
        };
        accounts.create_tenant(&record).expect("tenant");
        // A node hosting a tenant has its record (adoption copies it).
        owner.local.create_tenant(&record).expect("tenant here");
        owner.hold(&tenant(t)).await;
        let record = SessionRecord {
            id: session(&format!("{t}-desk")),
            tenant: tenant(t),
            name: "desk".into(),
            engine: centinela_actors::engine::EngineKind::Webjs,
            desired: centinela_actors::store::DesiredState::Running,
            user_agent: None,
            proxy: None,
            last_reason: None,
            paired: true,
            paired_at: None,
            created_at: T0,
            cloud: None,
        };
        owner.sessions.put_session(&record).expect("session");
    }
}

fn queued(t: &str, to: &str, at: Timestamp) -> MessageRecord {
    MessageRecord::queued(
        tenant(t),
        session(&format!("{t}-desk")),
        to.into(),
        format!("hola {to}"),
        at,
    )
}

fn accept_one(repo: &dyn MessageRepo, m: MessageRecord) -> MessageRecord {
    repo.accept(&[m]).expect("accept")[0]
        .clone()
        .expect("stored")
}

fn incoming(t: &str, id: &str, from: &str, at: Timestamp) -> IncomingRecord {
    IncomingRecord {
        seq: 0,
        id: id.into(),
        tenant: tenant(t),
        session: session(&format!("{t}-desk")),
        from: from.into(),
        jid: None,
        text: format!("hola from {from}"),
        at,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_owner_finds_the_queue_where_the_lost_owner_left_it() {
    let pg = PgCluster::start();
    let (a, b) = (node(&pg, "a").await, node(&pg, "b").await);
    hosting(&a, &["clinic"]).await;
    let desk = session("clinic-desk");
    let mut handed = accept_one(&a.messages, queued("clinic", "111111", T0));
    let later = T0.plus(Duration::from_secs(3600));
    let scheduled = accept_one(
        &a.messages,
        queued("clinic", "222222", T0).not_before(Some(later)),
    );
    let keyed = accept_one(
        &a.messages,
        queued("clinic", "333333", T0).with_key(Some("order-7".into())),
    );
    handed.status = MessageStatus::Sending;
    a.messages.update(&handed).expect("sending");

    // a is cut off; b wins the tenant.
    pg.expire_lease(&tenant("clinic")).await;
    b.hold(&tenant("clinic")).await;
    assert_eq!(
        b.messages.in_flight(&desk).expect("in flight"),
        vec![handed.clone()],
        "what a was handing over is in flight on b (its recovery marks it unknown)"
    );
    assert_eq!(
        b.messages.next_queued(&desk, T0).expect("next"),
        Some(keyed.clone()),
        "the first due in acceptance order: the scheduled one waits"
    );
    let again = accept_one(
        &b.messages,
        queued("clinic", "333333", T0).with_key(Some("order-7".into())),
    );
    assert_eq!(again, keyed, "the key answers the message a accepted");
    let mut sent = keyed.clone();
    sent.status = MessageStatus::Sent;
    b.messages.update(&sent).expect("b sends");
    assert_eq!(
        b.messages.next_queued(&desk, T0).expect("next"),
        Some(scheduled.clone()),
        "nothing else due: the one due soonest"
    );
    assert_eq!(
        b.messages.next_queued(&desk, later).expect("next"),
        Some(scheduled.clone())
    );

    // a, still believing it holds the tenant, writes nothing.
    let mut late = scheduled.clone();
    late.status = MessageStatus::Sending;
    assert!(matches!(
        a.messages.update(&late),
        Err(StoreError::NotHeld(_))
    ));
    assert!(matches!(
        a.messages.accept(&[queued("clinic", "444444", T0)]),
        Err(StoreError::NotHeld(_))
    ));
    assert!(matches!(
        a.messages.note_exchange(&desk, "555555", T0, true),
        Err(StoreError::NotHeld(_))
    ));
    assert_eq!(
        b.messages.message(&scheduled.id).expect("read"),
        Some(scheduled),
        "a's late write left no trace"
    );
    assert_eq!(b.messages.messages(&desk, 10, None).expect("list").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_contact_budget_and_activity_one_node_spent_are_spent_on_every_node() {
    let pg = PgCluster::start();
    let (a, b) = (node(&pg, "a").await, node(&pg, "b").await);
    hosting(&a, &["clinic"]).await;
    let desk = session("clinic-desk");
    for (i, to) in ["111111", "222222"].iter().enumerate() {
        let mut m = accept_one(&a.messages, queued("clinic", to, T0));
        m.status = MessageStatus::Sent;
        m.updated_at = T0.plus(Duration::from_secs(i as u64 + 1));
        a.messages.update(&m).expect("sent");
        m.status = MessageStatus::Delivered;
        a.messages.update(&m).expect("delivered is no second send");
    }
    let mut failed = accept_one(&a.messages, queued("clinic", "999999", T0));
    failed.status = MessageStatus::Failed;
    failed.error = Some("not_on_whatsapp".into());
    a.messages.update(&failed).expect("failed");
    // A reply, and a stranger writing first.
    let reply = incoming("clinic", "in1", "111111", T0.plus(Duration::from_secs(5)));
    assert_eq!(
        a.messages.store_incoming(&reply).expect("in"),
        Incoming::New(1)
    );
    a.messages
        .store_incoming(&incoming(
            "clinic",
            "in2",
            PEER,
            T0.plus(Duration::from_secs(6)),
        ))
        .expect("in");

    pg.expire_lease(&tenant("clinic")).await;
    b.hold(&tenant("clinic")).await;
    let spent = b.messages.new_contacts(&desk, T0).expect("contacts");
    assert_eq!(
        spent.sends,
        [
            T0.plus(Duration::from_secs(1)),
            T0.plus(Duration::from_secs(2))
        ],
        "a's two first messages count on b"
    );
    assert_eq!(spent.replied, 1);
    assert_eq!(
        b.messages
            .known(&desk, &["111111", PEER, "777777"])
            .expect("known"),
        [true, true, false]
    );
    assert!(
        !b.messages.is_known(&desk, "999999").expect("known"),
        "a failed send is no exchange"
    );
    assert_eq!(
        b.messages.activity(&desk, T0).expect("activity"),
        Counts {
            sent: 2,
            failed: 1,
            not_on_whatsapp: 1,
            deferred: 0,
            received: 2
        }
    );
    // The same message handed over again, now on b: stored once.
    assert_eq!(
        b.messages.store_incoming(&reply).expect("again"),
        Incoming::Duplicate(1)
    );
    assert_eq!(
        b.messages.activity(&desk, T0).expect("activity").received,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stores_rules_hold_on_the_fleet() {
    let pg = PgCluster::start();
    let a = node(&pg, "a").await;
    hosting(&a, &["clinic", "shop"]).await;
    let desk = session("clinic-desk");
    // History: newest first, paged by id.
    let ids: Vec<String> = (0..5)
        .map(|i| {
            accept_one(
                &a.messages,
                queued(
                    "clinic",
                    &format!("10000{i}"),
                    T0.plus(Duration::from_secs(i)),
                ),
            )
            .id
        })
        .collect();
    let page = a.messages.messages(&desk, 2, None).expect("page");
    assert_eq!(
        page.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        [ids[4].clone(), ids[3].clone()]
    );
    let next = a.messages.messages(&desk, 10, Some(&ids[3])).expect("next");
    assert_eq!(
        next.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        [ids[2].clone(), ids[1].clone(), ids[0].clone()]
    );
    assert!(
        a.messages
            .messages(&session("shop-desk"), 10, Some(&ids[3]))
            .expect("foreign cursor")
            .is_empty(),
        "another session's cursor: nothing after it"
    );
    // One key twice in a batch: the first is the message, answered twice.
    let (first, second) = (
        queued("clinic", "777000", T0).with_key(Some("twice".into())),
        queued("clinic", "777001", T0).with_key(Some("twice".into())),
    );
    let answers = a.messages.accept(&[first.clone(), second]).expect("accept");
    assert_eq!(answers, vec![Some(first.clone()), Some(first)]);
    // A session that is not the tenant's stores nothing.
    let mut stray = queued("clinic", "123123", T0);
    stray.session = session("shop-desk");
    assert_eq!(a.messages.accept(&[stray]).expect("accept"), vec![None]);
    assert_eq!(
        a.messages.messages(&desk, 100, None).expect("list").len(),
        6,
        "five, and one of the two with a key"
    );
    // Engine ids per session.
    let mut m = a.messages.message(&ids[0]).expect("read").expect("there");
    m.status = MessageStatus::Sent;
    m.engine_id = Some("true_111@c.us_ABC".into());
    a.messages.update(&m).expect("sent");
    assert_eq!(
        a.messages
            .by_engine_id(&desk, "true_111@c.us_ABC")
            .expect("ack"),
        Some(m.clone())
    );
    assert_eq!(
        a.messages
            .by_engine_id(&session("shop-desk"), "true_111@c.us_ABC")
            .expect("ack"),
        None,
        "another session's page cannot move it"
    );
    // A code's text goes once it leaves the queue.
    let code = accept_one(
        &a.messages,
        queued("clinic", "200000", T0).carrying_code("otp_1".into(), T0),
    );
    assert_eq!(
        a.messages.message(&code.id).expect("read"),
        Some(code.clone())
    );
    let mut done = code.clone();
    done.status = MessageStatus::Sent;
    a.messages.update(&done).expect("sent");
    let kept = a.messages.message(&code.id).expect("read").expect("there");
    assert_eq!(kept.text, REDACTED_TEXT);
    // The inbox: bounded, newest first, paged by sequence.
    let shop = session("shop-desk");
    for i in 0..INBOX_CAPACITY + 3 {
        a.messages
            .store_incoming(&incoming(
                "shop",
                &format!("in{i}"),
                PEER,
                T0.plus(Duration::from_millis(i)),
            ))
            .expect("in");
    }
    let top = a.messages.incoming(&shop, 2, None).expect("inbox");
    assert_eq!(
        top.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [INBOX_CAPACITY + 3, INBOX_CAPACITY + 2]
    );
    let below = a.messages.incoming(&shop, 10, Some(5)).expect("inbox");
    assert_eq!(
        below.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [4],
        "the oldest were dropped"
    );
    let all = a.messages.incoming(&shop, 5000, None).expect("inbox");
    assert_eq!(all.len() as u64, INBOX_CAPACITY);
    assert_eq!(all.last().map(|m| m.seq), Some(4));
    assert_eq!(
        a.messages
            .store_incoming(&incoming("shop", "in0", PEER, T0))
            .expect("gone"),
        Incoming::New(INBOX_CAPACITY + 4),
        "a message that left the inbox is new again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_only_finished_messages_of_held_tenants_outside_running_campaigns() {
    let pg = PgCluster::start();
    let (a, b) = (node(&pg, "a").await, node(&pg, "b").await);
    hosting(&a, &["clinic"]).await;
    hosting(&b, &["shop"]).await;
    let finish = |n: &Node, m: MessageRecord| {
        let mut m = accept_one(&n.messages, m);
        m.status = MessageStatus::Delivered;
        n.messages.update(&m).expect("delivered");
        m
    };
    let old = finish(&a, queued("clinic", "111111", T0));
    let waiting = accept_one(&a.messages, queued("clinic", "222222", T0));
    let running = finish(
        &a,
        queued("clinic", "333333", T0).with_key(Some("campaign/c1/0".into())),
    );
    let ended = finish(
        &a,
        queued("clinic", "444444", T0).with_key(Some("campaign/c2/0".into())),
    );
    let theirs = finish(&b, queued("shop", "555555", T0));
    for (id, status) in [
        ("c1", CampaignStatus::Running),
        ("c2", CampaignStatus::Completed),
    ] {
        a.campaigns
            .put_campaign(&CampaignRecord {
                id: id.into(),
                tenant: tenant("clinic"),
                session: session("clinic-desk"),
                name: id.into(),
                template: "hola".into(),
                recipients: Vec::new(),
                status,
                next: 0,
                sent: 0,
                failed: 0,
                created_at: T0,
                updated_at: T0,
                paused: None,
            })
            .expect("campaign");
    }
    let cutoff = T0.plus(Duration::from_secs(60));
    assert_eq!(a.messages.prune_finished(cutoff, 100).expect("prune"), 2);
    let gone = |id: &str| a.messages.message(id).expect("read").is_none();
    assert!(gone(&old.id) && gone(&ended.id));
    assert!(!gone(&waiting.id), "still queued");
    assert!(!gone(&running.id), "its campaign's runner still reads it");
    assert!(!gone(&theirs.id), "b's tenant: b prunes it");
    assert_eq!(a.messages.prune_finished(cutoff, 100).expect("prune"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_answers_a_lost_tenant_and_writes_the_rest_of_its_batch() {
    let pg = PgCluster::start();
    let (a, b) = (node(&pg, "a").await, node(&pg, "b").await);
    hosting(&a, &["clinic", "shop"]).await;
    pg.expire_lease(&tenant("shop")).await;
    b.hold(&tenant("shop")).await;
    let (outbox, _task) = Outbox::start(Arc::new(a.messages.clone()), None);
    // Sent at once, so the writer takes them in one batch.
    let (kept, lost) = tokio::join!(
        outbox.accept(queued("clinic", "111111", T0)),
        outbox.accept(queued("shop", "222222", T0)),
    );
    let kept = kept.expect("clinic is still a's");
    assert!(
        matches!(lost, Err(OutboxError::Store(StoreError::NotHeld(ref t))) if t == "shop"),
        "{lost:?}"
    );
    assert_eq!(
        b.messages.message(&kept.id).expect("read"),
        Some(kept.clone())
    );
    assert!(b
        .messages
        .messages(&session("shop-desk"), 10, None)
        .expect("list")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_tenants_messages_inbox_contacts_and_activity_go_with_it() {
    let pg = PgCluster::start();
    let a = node(&pg, "a").await;
    hosting(&a, &["clinic", "shop"]).await;
    for t in ["clinic", "shop"] {
        let mut m = accept_one(&a.messages, queued(t, "111111", T0));
        m.status = MessageStatus::Sent;
        a.messages.update(&m).expect("sent");
        a.messages
            .store_incoming(&incoming(t, "in1", PEER, T0))
            .expect("in");
    }
    let purged = PgAccounts::new(&a.fleet)
        .purge_tenant(&tenant("clinic"))
        .expect("purge");
    assert_eq!(
        (
            purged.messages,
            purged.incoming,
            purged.contacts,
            purged.activity_hours
        ),
        (1, 1, 2, 1)
    );
    let desk = session("clinic-desk");
    assert!(a
        .messages
        .messages(&desk, 10, None)
        .expect("list")
        .is_empty());
    assert!(a.messages.incoming(&desk, 10, None).expect("in").is_empty());
    assert!(!a.messages.is_known(&desk, PEER).expect("known"));
    assert_eq!(
        a.messages.activity(&desk, T0).expect("activity"),
        Counts::default()
    );
    let shop = session("shop-desk");
    assert_eq!(a.messages.messages(&shop, 10, None).expect("list").len(), 1);
    assert!(a.messages.is_known(&shop, "111111").expect("known"));
}

fn campaign(id: &str, t: &str, status: CampaignStatus) -> CampaignRecord {
    CampaignRecord {
        id: id.into(),
        tenant: tenant(t),
        session: session(&format!("{t}-desk")),
        name: id.into(),
        template: "hola {n}".into(),
        recipients: Vec::new(),
        status,
        next: 0,
        sent: 0,
        failed: 0,
        created_at: T0,
        updated_at: T0,
        paused: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_runs_the_campaigns_of_the_tenants_it_holds_and_the_next_owner_goes_on() {
    let pg = PgCluster::start();
    let (a, b) = (node(&pg, "a").await, node(&pg, "b").await);
    hosting(&a, &["clinic"]).await;
    hosting(&b, &["shop"]).await;
    let mut ours = campaign("c1", "clinic", CampaignStatus::Running);
    a.campaigns.put_campaign(&ours).expect("put");
    a.campaigns
        .put_campaign(&campaign("c2", "clinic", CampaignStatus::Draft))
        .expect("put");
    b.campaigns
        .put_campaign(&campaign("c3", "shop", CampaignStatus::Running))
        .expect("put");
    assert!(
        matches!(
            a.campaigns
                .put_campaign(&campaign("c4", "shop", CampaignStatus::Draft)),
            Err(StoreError::NotHeld(_))
        ),
        "shop is b's"
    );
    let ids = |v: Vec<CampaignRecord>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        ids(a.campaigns.running_campaigns().expect("running")),
        ["c1"]
    );
    assert_eq!(
        ids(b.campaigns.running_campaigns().expect("running")),
        ["c3"]
    );
    assert_eq!(
        ids(b.campaigns.campaigns().expect("all")),
        ["c1", "c2", "c3"],
        "every node reads every campaign"
    );
    ours.next = 3;
    ours.sent = 2;
    a.campaigns.put_campaign(&ours).expect("progress");

    // a is cut off: b runs c1 from where a left it; a writes nothing.
    pg.expire_lease(&tenant("clinic")).await;
    b.hold(&tenant("clinic")).await;
    assert_eq!(
        ids(b.campaigns.running_campaigns().expect("running")),
        ["c1", "c3"]
    );
    assert_eq!(
        b.campaigns.campaign("c1").expect("read"),
        Some(ours.clone())
    );
    let mut late = ours.clone();
    late.next = 9;
    assert!(matches!(
        a.campaigns.put_campaign(&late),
        Err(StoreError::NotHeld(_))
    ));
    assert_eq!(b.campaigns.campaign("c1").expect("read"), Some(ours));
}

fn delivery(id: &str, t: &str, at: Timestamp) -> Delivery {
    Delivery {
        id: id.into(),
        tenant: tenant(t),
        body: format!("{{\"delivery_id\":\"{id}\"}}"),
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_at: at,
        last_error: None,
        created_at: at,
        last_attempt_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_are_queued_with_a_target_and_made_by_whoever_holds_the_tenant() {
    let pg = PgCluster::start();
    let (a, b) = (node(&pg, "a").await, node(&pg, "b").await);
    hosting(&a, &["clinic", "shop"]).await;
    let desk = session("clinic-desk");
    assert!(
        !a.deliveries
            .queue_delivery(&delivery("d0", "clinic", T0), &desk)
            .expect("queue"),
        "no target: nothing queued"
    );
    a.settings
        .set_webhook_target(&WebhookTarget {
            tenant: tenant("clinic"),
            url: "https://crm.example/hook".into(),
            secret: "a-secret-of-enough-length".into(),
        })
        .expect("target");
    assert!(
        !a.deliveries
            .queue_delivery(&delivery("d0", "clinic", T0), &session("shop-desk"))
            .expect("queue"),
        "another tenant's session: nothing queued"
    );
    for (id, at) in [("d2", T0.plus(Duration::from_secs(2))), ("d1", T0)] {
        assert!(a
            .deliveries
            .queue_delivery(&delivery(id, "clinic", at), &desk)
            .expect("queue"));
    }
    let (d, target) = a
        .deliveries
        .delivery_and_target("d1")
        .expect("read")
        .expect("there");
    assert_eq!(d, delivery("d1", "clinic", T0));
    assert_eq!(
        target.map(|t| t.url),
        Some("https://crm.example/hook".to_owned()),
        "the target from the owner's copy"
    );
    let ids = |v: Vec<Delivery>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(ids(a.deliveries.pending().expect("pending")), ["d1", "d2"]);
    assert!(
        b.deliveries.pending().expect("pending").is_empty(),
        "b holds nothing"
    );

    // a made d1; then a is cut off, and b makes d2.
    let mut made = delivery("d1", "clinic", T0);
    made.status = DeliveryStatus::Delivered;
    made.attempts = 1;
    made.last_attempt_at = Some(T0.plus(Duration::from_secs(1)));
    assert!(a.deliveries.update_delivery(&made).expect("update"));
    pg.expire_lease(&tenant("clinic")).await;
    b.hold(&tenant("clinic")).await;
    assert_eq!(ids(b.deliveries.pending().expect("pending")), ["d2"]);
    let mut late = delivery("d2", "clinic", T0);
    late.status = DeliveryStatus::Dead;
    assert!(matches!(
        a.deliveries.update_delivery(&late),
        Err(StoreError::NotHeld(_))
    ));
    assert_eq!(
        ids(b
            .deliveries
            .deliveries(&tenant("clinic"), Some(DeliveryStatus::Delivered))
            .expect("list")),
        ["d1"]
    );
    assert_eq!(
        ids(b
            .deliveries
            .deliveries(&tenant("clinic"), None)
            .expect("list")),
        ["d2", "d1"],
        "newest first"
    );
    assert!(
        !b.deliveries
            .update_delivery(&delivery("gone", "clinic", T0))
            .expect("update"),
        "only over a delivery still there"
    );
    // Retention: finished before the cutoff, of held tenants (a's
    // membership loop has let clinic go by its next round).
    a.owned.remove(&tenant("clinic"));
    assert_eq!(
        a.deliveries
            .prune_deliveries(T0.plus(Duration::from_secs(60)))
            .expect("prune"),
        0,
        "a holds clinic no more"
    );
    assert_eq!(
        b.deliveries
            .prune_deliveries(T0.plus(Duration::from_secs(60)))
            .expect("prune"),
        1
    );
    assert_eq!(ids(b.deliveries.pending().expect("pending")), ["d2"]);
}

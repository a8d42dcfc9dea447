//! The runner against a real store: a campaign written straight to the
//! store (as one left `running` by an earlier process) whose recipient
//! cannot be rendered.

use super::*;
use crate::bus::{CampaignEvent, MessageStatusEvent};
use crate::clock::{ManualClock, Timestamp};
use crate::ids::{SessionId, TenantId};
use crate::store::{Recipient, SessionRecord, SessionRepo, Store};
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn recipient(to: &str, value: String) -> Recipient {
    Recipient {
        to: to.into(),
        vars: BTreeMap::from([("v".to_owned(), value)]),
    }
}

/// The next campaign event matching `pred`, within the wait.
async fn progress(
    rx: &mut broadcast::Receiver<BusEvent>,
    pred: impl Fn(&CampaignEvent) -> bool,
) -> CampaignEvent {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("campaign progress within the wait")
            .expect("bus open");
        if let BusEvent::Campaign(c) = ev {
            if pred(&c) {
                return c;
            }
        }
    }
}

#[tokio::test]
async fn a_stored_recipient_that_cannot_render_is_failed_and_the_campaign_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let tenant = TenantId::new("clinic").expect("id");
    let session = SessionId::new("s1").expect("id");
    let now = Timestamp::from_millis(1_000_000);
    let c = CampaignRecord {
        id: "c_bomb".into(),
        tenant: tenant.clone(),
        session: session.clone(),
        name: "turnos".into(),
        template: "{v}{v}".into(),
        recipients: vec![
            // 2 × 3,000 characters: over the rendered cap.
            recipient("5491100000001", "x".repeat(3000)),
            recipient("5491100000002", "hola".into()),
        ],
        status: CampaignStatus::Running,
        next: 0,
        sent: 0,
        failed: 0,
        created_at: now,
        updated_at: now,
        paused: None,
    };
    store
        .put_campaign(&c)
        .expect("stored behind the API's back");
    store
        .put_session(&SessionRecord::of(&tenant, &session))
        .expect("session");

    let bus = Bus::default();
    let mut rx = bus.subscribe();
    let (outbox, _writer) = Outbox::start(Arc::new(store.clone()), None);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let (_campaigns, _runner) = Campaigns::start(
        Arc::new(store.clone()),
        outbox,
        &bus,
        Arc::new(ManualClock::new(now)),
        5,
        stop,
    );

    let queued = progress(&mut rx, |c| c.queued == 2).await;
    assert_eq!(
        (queued.status, queued.failed, queued.sent),
        (CampaignStatus::Running, 1, 0),
        "the first recipient failed, the second was queued"
    );
    assert_eq!(
        store
            .by_idempotency_key(&tenant, "campaign/c_bomb/0")
            .expect("read"),
        None,
        "nothing was queued for the recipient that cannot render"
    );
    let mut second = store
        .by_idempotency_key(&tenant, "campaign/c_bomb/1")
        .expect("read")
        .expect("the second recipient's message");
    assert_eq!(second.text, "holahola");

    // The session sends it: the runner counts it and completes.
    second.status = MessageStatus::Sent;
    store.update(&second).expect("update");
    bus.publish(BusEvent::MessageStatus(MessageStatusEvent {
        tenant: tenant.clone(),
        session: session.clone(),
        message_id: second.id.clone(),
        status: MessageStatus::Sent,
        otp: None,
        at: now,
    }));
    let done = progress(&mut rx, |c| c.status == CampaignStatus::Completed).await;
    assert_eq!((done.sent, done.failed, done.total), (1, 1, 2));
    let stored = store.campaign("c_bomb").expect("read").expect("kept");
    assert_eq!(
        (stored.status, stored.sent, stored.failed),
        (CampaignStatus::Completed, 1, 1)
    );
}

#[tokio::test]
async fn a_running_campaign_whose_session_is_gone_is_cancelled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let tenant = TenantId::new("clinic").expect("id");
    let now = Timestamp::from_millis(1_000_000);
    // Left running by an earlier process; its session was deleted since.
    let c = CampaignRecord {
        id: "c_orphan".into(),
        tenant: tenant.clone(),
        session: SessionId::new("s_gone").expect("id"),
        name: "turnos".into(),
        template: "{v}".into(),
        recipients: vec![recipient("5491100000001", "hola".into())],
        status: CampaignStatus::Running,
        next: 0,
        sent: 0,
        failed: 0,
        created_at: now,
        updated_at: now,
        paused: None,
    };
    store.put_campaign(&c).expect("stored");

    let bus = Bus::default();
    let mut rx = bus.subscribe();
    let (outbox, _writer) = Outbox::start(Arc::new(store.clone()), None);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let (_campaigns, _runner) = Campaigns::start(
        Arc::new(store.clone()),
        outbox,
        &bus,
        Arc::new(ManualClock::new(now)),
        5,
        stop,
    );

    let done = progress(&mut rx, |c| c.status != CampaignStatus::Running).await;
    assert_eq!(
        (done.status, done.queued, done.sent),
        (CampaignStatus::Cancelled, 0, 0)
    );
    assert_eq!(
        store
            .by_idempotency_key(&tenant, "campaign/c_orphan/0")
            .expect("read"),
        None,
        "no message was stored for the missing session"
    );
}

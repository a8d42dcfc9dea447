//! The new-contact budget in the sender, against a real store and the
//! scripted engine. The injected clock follows tokio's paused clock, so the
//! actor's timers and the budget's 24 h agree and a day passes at once.

use super::*;
use crate::bus::MessageStatusEvent;
use crate::clock::Clock;
use crate::engine::EngineEvent;
use crate::messaging::budget::{ContactBudget, DAY};
use crate::store::{ContactRepo, DeferralReason};

/// Wall-clock time that moves with tokio's (paused) clock.
struct TokioClock {
    base: Timestamp,
    start: tokio::time::Instant,
}

impl TokioClock {
    fn at(base: Timestamp) -> Arc<TokioClock> {
        Arc::new(TokioClock {
            base,
            start: tokio::time::Instant::now(),
        })
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let ms = i64::try_from(self.start.elapsed().as_millis()).expect("fits");
        Timestamp::from_millis(self.base.as_millis() + ms)
    }
}

const FULL: ContactBudget = ContactBudget {
    per_day: 20,
    warmup_days: 0,
    warmup_start: 20,
};

/// A READY session with `budget`, its sender on `store` and `clock`.
async fn session(store: &Store, clock: Arc<TokioClock>, budget: ContactBudget) -> Fixture {
    let repo = store.clone();
    let mut f = fixture_with(move |env| {
        env.messages = Some(Arc::new(repo));
        env.clock = clock;
        env.contact_budget = budget;
    })
    .await;
    on_record(store, &f.id);
    connect_and_scan(&mut f).await;
    f
}

/// The number of the `i`th new contact.
fn number(i: usize) -> String {
    format!("54911000{i:05}")
}

/// Queues one message to each of `to`, in order; returns their ids.
fn queue_to(f: &Fixture, store: &Store, to: &[String]) -> Vec<String> {
    let batch: Vec<MessageRecord> = to
        .iter()
        .map(|to| {
            MessageRecord::queued(
                TenantId::new("t1").expect("id"),
                f.id.clone(),
                to.clone(),
                "hola".into(),
                Timestamp::from_millis(1_000_000),
            )
        })
        .collect();
    let ids = batch.iter().map(|m| m.id.clone()).collect();
    store.accept(&batch).expect("accept");
    f.actor.cast(SessionMsg::Outbox).expect("cast");
    ids
}

/// The next status change on the bus, within `within` (tokio time).
async fn next_status(f: &mut Fixture, within: Duration) -> MessageStatusEvent {
    loop {
        let ev = tokio::time::timeout(within, f.events.recv())
            .await
            .expect("a status change in time")
            .expect("bus open");
        if let BusEvent::MessageStatus(m) = ev {
            return m;
        }
    }
}

/// Status changes until `n` messages were sent or deferred; the sent ones.
async fn settle(f: &mut Fixture, n: usize) -> Vec<MessageStatusEvent> {
    let mut out = Vec::new();
    let mut done = 0;
    while done < n {
        let m = next_status(f, Duration::from_secs(120)).await;
        match m.status {
            MessageStatus::Sent => {
                done += 1;
                out.push(m);
            }
            MessageStatus::Deferred => done += 1,
            _ => {}
        }
    }
    out
}

fn status_of(store: &Store, id: &str) -> MessageRecord {
    store.message(id).expect("read").expect("stored")
}

#[tokio::test(start_paused = true)]
async fn the_21st_new_contact_in_a_day_waits_until_the_first_send_is_a_day_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let clock = TokioClock::at(Timestamp::from_millis(1_000_000));
    let mut f = session(&store, clock, FULL).await;
    let to: Vec<String> = (0..22).map(number).collect();
    let ids = queue_to(&f, &store, &to);
    let sent = settle(&mut f, 22).await;
    assert_eq!(sent.len(), 20, "twenty new contacts a day");
    let first = sent[0].at;
    let (m21, m22) = (status_of(&store, &ids[20]), status_of(&store, &ids[21]));
    assert_eq!(m21.status, MessageStatus::Deferred);
    let deferral = m21.deferred.expect("why it waits");
    assert_eq!(deferral.reason, DeferralReason::NewContactBudget);
    assert_eq!(deferral.next_attempt_at, first.plus(DAY));
    assert_eq!(m21.send_at, Some(first.plus(DAY)));
    assert_eq!(m22.status, MessageStatus::Deferred, "never dropped");
    assert_eq!(
        m22.deferred.expect("deferred").next_attempt_at,
        sent[1].at.plus(DAY)
    );

    // A day later each goes out in its order, as the oldest sends age out.
    let later = next_status(&mut f, DAY + Duration::from_secs(60)).await;
    assert_eq!(later.message_id, ids[20]);
    assert_eq!(later.status, MessageStatus::Sending);
    assert!(
        later.at >= first.plus(DAY),
        "{} not before {}",
        later.at,
        first
    );
    let mut went = Vec::new();
    while went.last() != Some(&ids[21]) {
        let m = next_status(&mut f, DAY).await;
        if m.status == MessageStatus::Sent {
            assert!(m.at >= sent[went.len()].at.plus(DAY), "{m:?}");
            went.push(m.message_id);
        }
    }
    assert_eq!(went, ids[20..], "in their order");
    let out = status_of(&store, &ids[20]);
    assert_eq!(out.status, MessageStatus::Sent);
    assert_eq!(out.deferred, None, "the deferral is cleared once it goes");
    assert_eq!(f.engine.sent().len(), 22, "every message went out");
}

#[tokio::test(start_paused = true)]
async fn a_contact_who_wrote_first_is_answered_over_budget_and_never_deferred() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let clock = TokioClock::at(Timestamp::from_millis(1_000_000));
    let one = ContactBudget {
        per_day: 1,
        warmup_days: 0,
        warmup_start: 1,
    };
    let mut f = session(&store, clock, one).await;
    let known = "5491177777777".to_owned();
    assert!(f.engine.emit(
        &f.id,
        EngineEvent::MessageIn {
            id: "in1".into(),
            from: known.clone(),
            jid: format!("{known}@c.us"),
            text: "hola, tienen turno?".into(),
        }
    ));
    // The actor writes the inbox (and the contact) before it publishes.
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(60), f.events.recv())
            .await
            .expect("the incoming message in time")
            .expect("bus open");
        if matches!(ev, BusEvent::MessageIn(_)) {
            break;
        }
    }
    assert!(store.is_known(&f.id, &known).expect("read"));
    let first = queue_to(&f, &store, &[number(1)]);
    assert_eq!(
        settle(&mut f, 1).await[0].message_id,
        first[0],
        "the budget's one"
    );
    let ids = queue_to(&f, &store, &[number(2), known.clone(), known]);
    let sent = settle(&mut f, 3).await;
    let sent: Vec<&str> = sent.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(
        sent,
        [ids[1].as_str(), ids[2].as_str()],
        "the known contact passes"
    );
    assert_eq!(status_of(&store, &ids[0]).status, MessageStatus::Deferred);
    for id in &ids[1..] {
        let m = status_of(&store, id);
        assert_eq!((m.status, m.deferred), (MessageStatus::Sent, None));
    }
    assert_eq!(
        store
            .new_contact_sends(&f.id, Timestamp::from_millis(0))
            .expect("read")
            .len(),
        1,
        "a reply does not count"
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_on_the_same_store_keeps_the_days_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let clock = TokioClock::at(Timestamp::from_millis(1_000_000));
    let mut f = session(&store, clock.clone(), FULL).await;
    let to: Vec<String> = (0..20).map(number).collect();
    queue_to(&f, &store, &to);
    let sent = settle(&mut f, 20).await;
    assert_eq!(sent.len(), 20);
    f.actor.stop(None);
    drop(f);

    let mut again = session(&store, TokioClock::at(clock.now()), FULL).await;
    let ids = queue_to(&again, &store, &[number(20)]);
    assert!(settle(&mut again, 1).await.is_empty(), "nothing sent");
    let m = status_of(&store, &ids[0]);
    assert_eq!(m.status, MessageStatus::Deferred);
    assert_eq!(
        m.deferred.expect("deferred").next_attempt_at,
        sent[0].at.plus(DAY)
    );
}

#[tokio::test(start_paused = true)]
async fn a_number_paired_today_reaches_five_new_contacts_with_the_default_warm_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let clock = TokioClock::at(Timestamp::from_millis(1_000_000));
    let defaults = crate::config::Config::defaults().messaging.contact_budget();
    assert_eq!(
        (
            defaults.per_day,
            defaults.warmup_days,
            defaults.warmup_start
        ),
        (20, 7, 5)
    );
    // The scan in `session` is this number's first READY: day 1 of its
    // warm-up.
    let mut f = session(&store, clock, defaults).await;
    let to: Vec<String> = (0..7).map(number).collect();
    let ids = queue_to(&f, &store, &to);
    let sent = settle(&mut f, 7).await;
    assert_eq!(sent.len(), 5, "day 1: five");
    for id in &ids[5..] {
        assert_eq!(status_of(&store, id).status, MessageStatus::Deferred);
    }
}

/// Tells the session actor about new messages, as the supervisor does.
struct ToActor(ActorRef<SessionMsg>);

impl crate::messaging::outbox::Notify for ToActor {
    fn messages_queued(&self, _session: SessionId) {
        let _ = self.0.cast(SessionMsg::Outbox);
    }
}

/// The next event on `rx` that `pick` turns into something, within a day
/// of tokio time.
async fn next_of<T>(
    rx: &mut broadcast::Receiver<BusEvent>,
    pick: impl Fn(&BusEvent) -> Option<T>,
) -> T {
    loop {
        let ev = tokio::time::timeout(DAY, rx.recv())
            .await
            .expect("the event in time")
            .expect("bus open");
        if let Some(t) = pick(&ev) {
            return t;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_campaign_to_strangers_who_never_answer_pauses_itself_when_the_risk_turns_high() {
    use crate::messaging::{Campaigns, Outbox, RiskWatch};
    use crate::store::{CampaignRecord, CampaignRepo, CampaignStatus, InboxRepo, Recipient};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let clock = TokioClock::at(Timestamp::from_millis(1_000_000));
    let bus_slot = Arc::new(std::sync::Mutex::new(None));
    let (repo, slot, c2) = (store.clone(), bus_slot.clone(), clock.clone());
    let mut f = fixture_with(move |env| {
        env.messages = Some(Arc::new(repo));
        env.clock = c2;
        env.contact_budget = FULL;
        *slot.lock().expect("slot") = Some(env.bus.clone());
    })
    .await;
    on_record(&store, &f.id);
    connect_and_scan(&mut f).await;
    let bus = bus_slot.lock().expect("slot").clone().expect("the bus");
    let mut rx = bus.subscribe();

    let mut config = crate::config::Config::defaults();
    config.messaging.warmup_days = 0;
    config.risk.min_sample = 5;
    let watch = RiskWatch::new(Arc::new(store.clone()), clock.clone(), &config);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let (outbox, _writer) = Outbox::start(
        Arc::new(store.clone()),
        Some(Arc::new(ToActor(f.actor.clone()))),
    );
    let (campaigns, _runner) = Campaigns::start(
        Arc::new(store.clone()),
        outbox,
        &bus,
        clock.clone(),
        5,
        stop.clone(),
    );
    let _watch = watch.start(&bus, campaigns.clone(), stop);
    let now = clock.now();
    store
        .put_campaign(&CampaignRecord {
            id: "c_cold".into(),
            tenant: TenantId::new("t1").expect("id"),
            session: f.id.clone(),
            name: "lista fría".into(),
            template: "Hola, ¿conocés nuestra promo?".into(),
            recipients: (0..12)
                .map(|i| Recipient {
                    to: number(i),
                    vars: Default::default(),
                })
                .collect(),
            status: CampaignStatus::Draft,
            next: 0,
            sent: 0,
            failed: 0,
            created_at: now,
            updated_at: now,
            paused: None,
        })
        .expect("campaign");
    campaigns.run("c_cold").await.expect("runs");

    // Five strangers written to and none answered: 0 % of the sample.
    let risk = next_of(&mut rx, |ev| match ev {
        BusEvent::Risk(r) => Some(r.clone()),
        _ => None,
    })
    .await;
    assert_eq!((risk.level, risk.was), ("high", "low"));
    assert_eq!(risk.reasons, ["low_new_contact_reply_rate"]);
    let paused = next_of(&mut rx, |ev| match ev {
        BusEvent::Campaign(c) if c.status == CampaignStatus::Paused => Some(c.clone()),
        _ => None,
    })
    .await;
    assert!(
        paused.queued <= 6,
        "it stopped at the fifth send: {paused:?}"
    );
    let c = store.campaign("c_cold").expect("read").expect("kept");
    let pause = c.paused.expect("why it paused");
    assert_eq!(pause.reason, "risk_high");
    assert_eq!(pause.detail, "low_new_contact_reply_rate");
    let report = watch.report(&f.id).expect("read").expect("on record");
    assert_eq!(report.level, crate::messaging::risk::RiskLevel::High);
    assert_eq!(report.week.new_contacts, paused.queued as u64);
    assert_eq!(report.week.new_contact_reply_rate, Some(0.0));
    assert_eq!(report.budget.used as usize, paused.queued);

    // Two of them write back: 2 of 6 or fewer is over 25 %, and risk falls.
    for i in 0..2 {
        store
            .store_incoming(&crate::store::IncomingRecord {
                seq: 0,
                id: format!("in{i}"),
                tenant: TenantId::new("t1").expect("id"),
                session: f.id.clone(),
                from: number(i),
                jid: None,
                text: "no, gracias".into(),
                at: clock.now(),
            })
            .expect("incoming");
        bus.publish(BusEvent::MessageIn(crate::bus::MessageEvent {
            tenant: TenantId::new("t1").expect("id"),
            session: f.id.clone(),
            id: format!("in{i}"),
            from: number(i),
            jid: format!("{}@c.us", number(i)),
            text: "no, gracias".into(),
            at: clock.now(),
        }));
    }
    let fell = next_of(&mut rx, |ev| match ev {
        BusEvent::Risk(r) => Some(r.clone()),
        _ => None,
    })
    .await;
    assert_eq!(fell.was, "high");
    assert_ne!(fell.level, "high", "{fell:?}");
}

/// A verification code's message to `to`, valid until `expires_at`.
fn queue_code(f: &Fixture, store: &Store, to: &str, expires_at: Timestamp) -> String {
    let m = MessageRecord::queued(
        TenantId::new("t1").expect("id"),
        f.id.clone(),
        to.to_owned(),
        "123456 es tu código de verificación de Centinela".into(),
        Timestamp::from_millis(1_000_000),
    )
    .carrying_code("otp_1".into(), expires_at);
    let id = m.id.clone();
    store.accept(&[m]).expect("accept");
    f.actor.cast(SessionMsg::Outbox).expect("cast");
    id
}

#[tokio::test(start_paused = true)]
async fn an_admitted_code_goes_out_over_the_budget_and_still_counts_against_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let clock = TokioClock::at(Timestamp::from_millis(1_000_000));
    let one = ContactBudget {
        per_day: 1,
        warmup_days: 0,
        warmup_start: 1,
    };
    let mut f = session(&store, clock.clone(), one).await;
    queue_to(&f, &store, &[number(1)]);
    assert_eq!(settle(&mut f, 1).await.len(), 1, "the budget's one");
    let code = queue_code(&f, &store, &number(2), clock.now().plus(DAY));
    let sent = settle(&mut f, 1).await;
    assert_eq!(
        sent.iter()
            .map(|m| m.message_id.as_str())
            .collect::<Vec<_>>(),
        [code.as_str()],
        "sent, not deferred"
    );
    assert_eq!(
        store
            .new_contact_sends(&f.id, Timestamp::from_millis(0))
            .expect("read")
            .len(),
        2,
        "the code's recipient is a new contact too"
    );
    let m = status_of(&store, &code);
    assert_eq!(m.text, crate::store::REDACTED_TEXT, "wiped once sent");
    let (_, _, text) = f.engine.sent().last().cloned().expect("sent");
    assert!(
        text.starts_with("123456 "),
        "the phone got the code: {text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_code_that_expires_in_the_queue_is_failed_not_sent_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let clock = TokioClock::at(Timestamp::from_millis(1_000_000));
    let mut f = session(&store, clock.clone(), FULL).await;
    let code = queue_code(&f, &store, &number(3), clock.now());
    let failed = loop {
        let m = next_status(&mut f, Duration::from_secs(120)).await;
        if m.message_id == code && m.status != MessageStatus::Queued {
            break m;
        }
    };
    assert_eq!(failed.status, MessageStatus::Failed);
    assert_eq!(failed.otp.as_deref(), Some("otp_1"));
    let m = status_of(&store, &code);
    assert_eq!(m.error.as_deref(), Some("expired"));
    assert_eq!(m.text, crate::store::REDACTED_TEXT);
    assert!(f.engine.sent().is_empty(), "nothing went out");
}

#[path = "memory_tests.rs"]
mod memory_tests;

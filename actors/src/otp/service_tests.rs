//! The OTP service against a real store and outbox on a manual clock:
//! every rule of seed 004 with its time, the new-contact budget, a restart
//! that keeps the limits and the pending code, and the code nowhere but in
//! the queued message (wiped once it is sent).

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::config::Config;
use crate::store::Store;

const PHONE: &str = "+5491122334455";
const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);
const SECRET: &[u8] = b"a-test-secret-of-thirty-two-bytes!";

struct Fixture {
    otp: Otp,
    store: Store,
    clock: Arc<ManualClock>,
    bus: Bus,
    tenant: TenantId,
    session: SessionId,
    outbox_task: tokio::task::JoinHandle<()>,
}

fn full_budget() -> ContactBudget {
    ContactBudget {
        per_day: 20,
        warmup_days: 0,
        warmup_start: 20,
    }
}

/// The service on the store in `dir`, with tenant `t`'s session `s` on record.
fn service(dir: &std::path::Path, clock: Arc<ManualClock>, budget: ContactBudget) -> Fixture {
    let store = Store::open(dir).expect("store");
    let (tenant, session) = (
        TenantId::new("t").expect("id"),
        SessionId::new("s").expect("id"),
    );
    store
        .put_session(&SessionRecord::of(&tenant, &session))
        .expect("session");
    let bus = Bus::default();
    let (outbox, outbox_task) = Outbox::start(Arc::new(store.clone()), None);
    let (otp, _) = Otp::start(
        OtpParts {
            otps: Arc::new(store.clone()),
            store: Arc::new(store.clone()),
            outbox,
            clock: clock.clone(),
            config: Config::defaults().otp,
            budget,
            secret: SECRET.to_vec(),
        },
        &bus,
    );
    Fixture {
        otp,
        store,
        clock,
        bus,
        tenant,
        session,
        outbox_task,
    }
}

fn start(dir: &std::path::Path) -> Fixture {
    service(dir, Arc::new(ManualClock::new(T0)), full_budget())
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().expect("an address"))
}

impl Fixture {
    fn ask(&self, phone: &str, client: Option<IpAddr>) -> NewOtp {
        NewOtp {
            tenant: self.tenant.clone(),
            session: self.session.clone(),
            phone: phone.into(),
            purpose: OtpPurpose::Registration,
            client,
        }
    }

    async fn create(&self) -> OtpRecord {
        self.otp
            .create(self.ask(PHONE, ip("203.0.113.7")))
            .await
            .expect("issued")
    }

    /// The code, as the queued message carries it (what the phone will get).
    fn code_of(&self, r: &OtpRecord) -> String {
        let id = r.message_id.as_deref().expect("a message");
        let m = self.store.message(id).expect("read").expect("queued");
        assert_eq!(m.otp.as_deref(), Some(r.id.as_str()), "marked secret");
        assert_eq!(m.visible_text(), crate::store::REDACTED_TEXT);
        let code = m.text.split(' ').next().expect("a code first").to_owned();
        assert_eq!(code.len(), 6, "{}", m.text);
        code
    }

    fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }
}

const MIN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_code_is_sent_as_the_seed_says_and_verifies_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = start(dir.path());
    let r = f.create().await;
    assert_eq!(
        (r.phone.as_str(), r.status, r.attempts_left),
        (PHONE, OtpStatus::Pending, 3)
    );
    assert_eq!(
        (r.expires_at, r.resend_at),
        (T0.plus(MIN * 10), T0.plus(MIN))
    );
    let code = f.code_of(&r);
    let m = f
        .store
        .message(r.message_id.as_deref().expect("id"))
        .expect("read")
        .expect("queued");
    assert_eq!(
        m.text,
        format!("{code} es tu código de verificación de Centinela")
    );
    assert_eq!(m.to, "5491122334455", "digits, as the engines spell them");
    assert_eq!(m.expires_at, Some(r.expires_at), "never sent stale");
    assert!(!r.digest.contains(&code));

    let mut events = f.bus.subscribe();
    f.advance(MIN * 9);
    let (v, after) = f.otp.verify(&r.id, &code).expect("verify");
    assert_eq!((v, after.status), (Verdict::Verified, OtpStatus::Verified));
    let Ok(BusEvent::Otp(ev)) = events.try_recv() else {
        panic!("an otp event");
    };
    assert_eq!(
        (ev.kind, ev.otp.as_str()),
        (OtpEventKind::Verified, r.id.as_str())
    );
    assert_eq!(
        f.otp.verify(&r.id, &code).expect("verify").0,
        Verdict::AlreadyUsed,
        "single use"
    );
    assert!(matches!(
        f.otp.verify("otp_nope", &code),
        Err(OtpError::NotFound(_))
    ));
}

#[tokio::test]
async fn three_wrong_codes_void_it_and_each_failure_is_announced_without_the_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = start(dir.path());
    let r = f.create().await;
    let code = f.code_of(&r);
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let mut events = f.bus.subscribe();
    let verdicts: Vec<Verdict> = (0..3)
        .map(|_| f.otp.verify(&r.id, wrong).expect("verify").0)
        .collect();
    assert_eq!(
        verdicts,
        [
            Verdict::Wrong { attempts_left: 2 },
            Verdict::Wrong { attempts_left: 1 },
            Verdict::TooManyAttempts
        ]
    );
    assert_eq!(
        f.otp.verify(&r.id, &code).expect("verify").0,
        Verdict::TooManyAttempts,
        "the right code no longer works"
    );
    let mut reasons = Vec::new();
    while let Ok(ev) = events.try_recv() {
        let text = serde_json::to_string(&ev).expect("json");
        assert!(!text.contains(&code), "{text}");
        if let BusEvent::Otp(o) = ev {
            reasons.push((o.reason, o.attempts_left));
        }
    }
    assert_eq!(
        reasons,
        [
            (Some("invalid_code"), 2),
            (Some("invalid_code"), 1),
            (Some("too_many_attempts"), 0)
        ]
    );
}

#[tokio::test]
async fn a_code_expires_after_ten_minutes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = start(dir.path());
    let r = f.create().await;
    let code = f.code_of(&r);
    f.advance(MIN * 10);
    assert_eq!(
        f.otp.verify(&r.id, &code).expect("verify").0,
        Verdict::Expired
    );
}

#[tokio::test]
async fn a_resend_waits_a_minute_and_voids_the_old_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = start(dir.path());
    let r = f.create().await;
    let old = f.code_of(&r);
    f.advance(Duration::from_secs(59));
    let early = f.otp.resend(&r.id, ip("203.0.113.7")).await;
    assert!(
        matches!(early, Err(OtpError::TooSoon { at, wait }) if at == T0.plus(MIN) && wait == Duration::from_secs(1)),
        "{early:?}"
    );
    f.advance(Duration::from_secs(1));
    let again = f
        .otp
        .resend(&r.id, ip("203.0.113.7"))
        .await
        .expect("resent");
    assert_eq!(again.id, r.id, "the same OTP");
    assert_eq!(again.sends, 2);
    assert_eq!(
        again.expires_at,
        T0.plus(MIN * 11),
        "valid ten minutes from now"
    );
    let new = f.code_of(&again);
    let withdrawn = f
        .store
        .message(r.message_id.as_deref().expect("id"))
        .expect("read")
        .expect("kept");
    assert_eq!(
        (withdrawn.status, withdrawn.error.as_deref()),
        (MessageStatus::Failed, Some("superseded")),
        "the old code's message leaves the queue"
    );
    assert_eq!(withdrawn.text, crate::store::REDACTED_TEXT);
    if new != old {
        let (v, _) = f.otp.verify(&r.id, &old).expect("verify");
        assert_eq!(
            v,
            Verdict::Wrong { attempts_left: 2 },
            "the old code is void"
        );
    }
    assert_eq!(
        f.otp.verify(&r.id, &new).expect("verify").0,
        Verdict::Verified
    );
    assert!(matches!(
        f.otp.resend(&r.id, None).await,
        Err(OtpError::AlreadyUsed)
    ));
}

#[tokio::test]
async fn a_new_code_for_the_phone_voids_the_previous_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = start(dir.path());
    let first = f.create().await;
    let code = f.code_of(&first);
    let second = f.create().await;
    assert_eq!(
        f.otp.verify(&first.id, &code).expect("verify").0,
        Verdict::Superseded
    );
    assert!(matches!(
        f.otp.resend(&first.id, None).await,
        Err(OtpError::Voided(OtpStatus::Superseded))
    ));
    let code = f.code_of(&second);
    assert_eq!(
        f.otp.verify(&second.id, &code).expect("verify").0,
        Verdict::Verified
    );
}

#[tokio::test]
async fn five_codes_a_day_per_phone_then_a_refusal_until_the_first_is_a_day_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = start(dir.path());
    for i in 0..5 {
        f.otp
            .create(f.ask(PHONE, ip(&format!("198.51.100.{i}"))))
            .await
            .expect("within the limit");
        f.advance(MIN * 30);
    }
    let refused = f.otp.create(f.ask(PHONE, ip("198.51.100.9"))).await;
    let Err(OtpError::Limited {
        reason, retry_at, ..
    }) = refused
    else {
        panic!("refused expected: {refused:?}");
    };
    assert_eq!((reason, retry_at), (LimitReason::PhoneLimit, T0.plus(DAY)));
    f.otp
        .create(f.ask("+5491122334466", ip("198.51.100.9")))
        .await
        .expect("another phone is not limited");
    f.advance(T0.plus(DAY).since(f.clock.now()));
    f.otp
        .create(f.ask(PHONE, ip("198.51.100.9")))
        .await
        .expect("the first send is a day old");
}

#[tokio::test]
async fn ten_codes_an_hour_per_client_address_then_a_refusal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = start(dir.path());
    for i in 0..10 {
        f.otp
            .create(f.ask(&format!("+54911223344{i:02}"), ip("203.0.113.7")))
            .await
            .expect("within the limit");
        f.advance(MIN);
    }
    let refused = f
        .otp
        .create(f.ask("+5491122334499", ip("203.0.113.7")))
        .await;
    let Err(OtpError::Limited {
        reason, retry_at, ..
    }) = refused
    else {
        panic!("refused expected: {refused:?}");
    };
    assert_eq!(
        (reason, retry_at),
        (LimitReason::AddressLimit, T0.plus(HOUR))
    );
    f.otp
        .create(f.ask("+5491122334499", ip("203.0.113.8")))
        .await
        .expect("another address is not limited");
    f.advance(T0.plus(HOUR).since(f.clock.now()));
    f.otp
        .create(f.ask("+5491122334498", ip("203.0.113.7")))
        .await
        .expect("an hour after the first");
}

#[tokio::test]
async fn a_restart_keeps_the_limits_and_the_pending_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(T0));
    let (pending, code) = {
        let f = service(dir.path(), clock.clone(), full_budget());
        for i in 0..4 {
            f.otp
                .create(f.ask(PHONE, ip(&format!("198.51.100.{i}"))))
                .await
                .expect("issued");
        }
        let r = f.create().await;
        let code = f.code_of(&r);
        // Everything of the first service goes but the data dir: the
        // outbox writer lets go of the store once the service is gone.
        let Fixture {
            otp,
            store,
            outbox_task,
            ..
        } = f;
        drop((otp, store));
        outbox_task.await.expect("the outbox writer ends");
        (r, code)
    };
    let f = service(dir.path(), clock, full_budget());
    let refused = f.otp.create(f.ask(PHONE, ip("198.51.100.9"))).await;
    assert!(
        matches!(
            refused,
            Err(OtpError::Limited {
                reason: LimitReason::PhoneLimit,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(
        f.otp.verify(&pending.id, &code).expect("verify").0,
        Verdict::Verified
    );
}

#[tokio::test]
async fn a_code_the_new_contact_budget_could_not_send_now_is_refused_with_its_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = ContactBudget {
        per_day: 1,
        warmup_days: 0,
        warmup_start: 1,
    };
    let f = service(dir.path(), Arc::new(ManualClock::new(T0)), one);
    f.store
        .note_exchange(&f.session, "5491100000001", T0, true)
        .expect("note");
    f.advance(MIN);
    let refused = f.otp.create(f.ask(PHONE, None)).await;
    let Err(OtpError::Limited {
        reason, retry_at, ..
    }) = refused
    else {
        panic!("refused expected: {refused:?}");
    };
    assert_eq!(
        (reason, retry_at),
        (LimitReason::NewContactBudget, T0.plus(DAY))
    );
    f.store
        .note_exchange(&f.session, "5491122334455", T0, false)
        .expect("note");
    f.otp
        .create(f.ask(PHONE, None))
        .await
        .expect("a number that wrote first is no new contact");
}

#[tokio::test]
async fn bad_numbers_and_other_tenants_sessions_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = start(dir.path());
    for phone in ["5491122334455", "+54 12", "+hola", ""] {
        let out = f.otp.create(f.ask(phone, None)).await;
        assert!(matches!(out, Err(OtpError::Phone(_))), "{phone:?}: {out:?}");
    }
    let other = NewOtp {
        tenant: TenantId::new("u").expect("id"),
        ..f.ask(PHONE, None)
    };
    assert!(matches!(
        f.otp.create(other).await,
        Err(OtpError::SessionNotFound(_))
    ));
}

#[tokio::test]
async fn once_its_message_is_sent_the_code_is_in_no_row_of_the_store_and_otp_sent_is_announced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = start(dir.path());
    let mut events = f.bus.subscribe();
    let r = f.create().await;
    let code = f.code_of(&r);
    let mut m = f
        .store
        .message(r.message_id.as_deref().expect("id"))
        .expect("read")
        .expect("queued");
    // As the sender does.
    m.status = MessageStatus::Sent;
    f.store.update(&m).expect("update");
    f.bus.publish(BusEvent::MessageStatus(MessageStatusEvent {
        tenant: m.tenant.clone(),
        session: m.session.clone(),
        message_id: m.id.clone(),
        status: MessageStatus::Sent,
        otp: m.otp.clone(),
        at: f.clock.now(),
    }));
    let sent = loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("in time")
            .expect("bus open");
        if let BusEvent::Otp(o) = ev {
            break o;
        }
    };
    assert_eq!(
        (sent.kind, sent.otp.as_str()),
        (OtpEventKind::Sent, r.id.as_str())
    );
    let (rows, _) = f.store.rows().expect("rows");
    for (table, rows) in rows {
        for row in rows {
            assert!(!row.contains(&code), "{table}: {row}");
        }
    }
    assert_eq!(
        f.otp.verify(&r.id, &code).expect("verify").0,
        Verdict::Verified
    );
}

#[tokio::test]
async fn a_code_whose_message_failed_is_void_and_announced_undelivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = start(dir.path());
    let mut events = f.bus.subscribe();
    let r = f.create().await;
    f.bus.publish(BusEvent::MessageStatus(MessageStatusEvent {
        tenant: r.tenant.clone(),
        session: r.session.clone(),
        message_id: r.message_id.clone().expect("id"),
        status: MessageStatus::Failed,
        otp: Some(r.id.clone()),
        at: f.clock.now(),
    }));
    let failed = loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("in time")
            .expect("bus open");
        if let BusEvent::Otp(o) = ev {
            break o;
        }
    };
    assert_eq!(
        (failed.kind, failed.reason),
        (OtpEventKind::Failed, Some("undelivered"))
    );
    let code = f.code_of(&r);
    assert_eq!(
        f.otp.verify(&r.id, &code).expect("verify").0,
        Verdict::Undelivered
    );
}

#[tokio::test]
async fn an_otp_is_kept_for_the_retention_after_it_expired_then_pruned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = start(dir.path());
    let first = f.create().await;
    let retention = f.otp.config().retention;
    assert_eq!(retention, Duration::from_secs(7 * 86_400), "the default");
    // Just inside the retention: still there after the next issue.
    f.advance(MIN * 10 + retention - MIN);
    let other = f
        .otp
        .create(f.ask("+5491122334477", ip("203.0.113.8")))
        .await
        .expect("issued");
    assert!(f.otp.get(&first.id).expect("read").is_some());
    // Past it, and an hour after the last prune: gone on the next issue.
    f.advance(MIN * 61);
    f.otp
        .create(f.ask("+5491122334488", ip("203.0.113.9")))
        .await
        .expect("issued");
    assert_eq!(f.otp.get(&first.id).expect("read"), None);
    assert!(
        f.otp.get(&other.id).expect("read").is_some(),
        "not expired long enough"
    );
}

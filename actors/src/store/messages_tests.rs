//! The outbox store's tests.

use super::*;
use crate::store::{SessionRecord, SessionRepo};

/// A store with sessions s1 and s2 of tenant `t` on record.
fn open(dir: &std::path::Path) -> Store {
    let store = Store::open(dir).expect("open");
    let t = TenantId::new("t").expect("id");
    for s in ["s1", "s2"] {
        let s = SessionId::new(s).expect("id");
        store
            .put_session(&SessionRecord::of(&t, &s))
            .expect("session");
    }
    store
}

fn stored(answers: Vec<Option<MessageRecord>>) -> Vec<MessageRecord> {
    answers.into_iter().map(|a| a.expect("stored")).collect()
}

#[test]
fn a_message_is_stored_only_while_its_session_is_on_record_as_its_tenants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let m = |id: &str, tenant: &str, session: &str| {
        let mut m = MessageRecord::queued(
            TenantId::new(tenant).expect("id"),
            SessionId::new(session).expect("id"),
            "5491100000000".into(),
            "x".into(),
            Timestamp::from_millis(1),
        )
        .with_key(Some("k".into()));
        m.id = id.into();
        m
    };
    assert!(store
        .delete_session(&SessionId::new("s2").expect("id"))
        .expect("delete"));
    let answers = store
        .accept(&[
            m("gone", "t", "s2"),
            m("other", "u", "s1"),
            m("ok", "t", "s1"),
        ])
        .expect("accept");
    let ids: Vec<_> = answers
        .iter()
        .map(|a| a.as_ref().map(|m| m.id.as_str()))
        .collect();
    assert_eq!(
        ids,
        [None, None, Some("ok")],
        "a deleted session, another tenant's"
    );
    assert_eq!(store.message("gone").expect("read"), None);
    assert_eq!(store.message("other").expect("read"), None);
    let u = TenantId::new("u").expect("id");
    assert_eq!(
        store.by_idempotency_key(&u, "k").expect("read"),
        None,
        "no key kept"
    );
    let s2 = SessionId::new("s2").expect("id");
    assert_eq!(
        store
            .next_queued(&s2, Timestamp::from_millis(1))
            .expect("read"),
        None
    );
}

#[test]
fn a_message_scheduled_for_later_does_not_block_the_ones_behind_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let m = |id: &str, at: Option<i64>| MessageRecord {
        id: id.into(),
        tenant: TenantId::new("t").expect("id"),
        session: SessionId::new("s1").expect("id"),
        to: "5491100000000".into(),
        text: id.into(),
        idempotency_key: None,
        status: MessageStatus::Queued,
        created_at: Timestamp::from_millis(1),
        send_at: at.map(Timestamp::from_millis),
        updated_at: Timestamp::from_millis(1),
        engine_id: None,
        error: None,
        answers: None,
        deferred: None,
        template: None,
        otp: None,
        expires_at: None,
    };
    store
        .accept(&[
            m("tomorrow", Some(86_400_000)),
            m("soon", Some(5_000)),
            m("now", None),
        ])
        .expect("accept");
    let s = SessionId::new("s1").expect("id");
    let next = |t: i64| {
        store
            .next_queued(&s, Timestamp::from_millis(t))
            .expect("next")
            .map(|m| m.id)
    };
    assert_eq!(next(1_000), Some("now".into()), "the due one goes first");
    let mut sent = store.message("now").expect("get").expect("exists");
    sent.status = MessageStatus::Sent;
    store.update(&sent).expect("update");
    assert_eq!(next(1_000), Some("soon".into()), "then the one due soonest");
    assert_eq!(
        next(90_000_000),
        Some("tomorrow".into()),
        "in order once both are due"
    );
}

#[test]
fn a_deferred_message_stays_in_the_queue_and_lets_later_ones_pass_until_it_is_due() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let (t, s) = (
        TenantId::new("t").expect("id"),
        SessionId::new("s1").expect("id"),
    );
    let m = |to: &str| {
        MessageRecord::queued(
            t.clone(),
            s.clone(),
            to.into(),
            "x".into(),
            Timestamp::from_millis(1),
        )
    };
    let [new, known] = [m("111111"), m("222222")];
    store.accept(&[new.clone(), known.clone()]).expect("accept");
    let mut deferred = new.clone();
    deferred.status = MessageStatus::Deferred;
    deferred.send_at = Some(Timestamp::from_millis(50_000));
    deferred.deferred = Some(Deferral {
        reason: DeferralReason::NewContactBudget,
        next_attempt_at: Timestamp::from_millis(50_000),
    });
    store.update(&deferred).expect("update");
    let next = |at: i64| {
        store
            .next_queued(&s, Timestamp::from_millis(at))
            .expect("next")
            .map(|m| m.id)
    };
    assert_eq!(next(10), Some(known.id.clone()), "the later one goes first");
    let mut sent = known;
    sent.status = MessageStatus::Sent;
    store.update(&sent).expect("update");
    assert_eq!(next(10), Some(new.id.clone()), "still queued, due later");
    assert_eq!(next(50_000), Some(new.id.clone()), "and due at its time");
    let read = store.message(&new.id).expect("read").expect("stored");
    assert_eq!(read.deferred, deferred.deferred, "the deferral is kept");
}

#[test]
fn idempotency_keys_return_the_first_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let m = |id: &str| MessageRecord {
        id: id.into(),
        tenant: TenantId::new("t").expect("id"),
        session: SessionId::new("s1").expect("id"),
        to: "5491100000000".into(),
        text: "x".into(),
        idempotency_key: Some("k".into()),
        status: MessageStatus::Queued,
        created_at: Timestamp::from_millis(1),
        send_at: None,
        updated_at: Timestamp::from_millis(1),
        engine_id: None,
        error: None,
        answers: None,
        deferred: None,
        template: None,
        otp: None,
        expires_at: None,
    };
    let out = stored(store.accept(&[m("a"), m("b")]).expect("accept"));
    assert_eq!(out[0].id, "a");
    assert_eq!(out[1].id, "a", "the same key in one batch is one message");
    let again = stored(store.accept(&[m("c")]).expect("accept"));
    assert_eq!(again[0].id, "a");
    let s = SessionId::new("s1").expect("id");
    assert_eq!(
        store
            .next_queued(&s, Timestamp::from_millis(1))
            .expect("next")
            .map(|m| m.id),
        Some("a".into())
    );
}

#[test]
fn engine_ids_are_looked_up_within_their_session_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let m = |id: &str, session: &str| MessageRecord {
        id: id.into(),
        tenant: TenantId::new("t").expect("id"),
        session: SessionId::new(session).expect("id"),
        to: "5491100000000".into(),
        text: "x".into(),
        idempotency_key: None,
        status: MessageStatus::Queued,
        created_at: Timestamp::from_millis(1),
        send_at: None,
        updated_at: Timestamp::from_millis(1),
        engine_id: None,
        error: None,
        answers: None,
        deferred: None,
        template: None,
        otp: None,
        expires_at: None,
    };
    let out = stored(store.accept(&[m("a", "s1"), m("b", "s2")]).expect("accept"));
    for (rec, engine_id) in out.iter().zip(["true_549@c.us_X1", "true_549@c.us_X2"]) {
        let mut sent = rec.clone();
        sent.status = MessageStatus::Sent;
        sent.engine_id = Some(engine_id.into());
        store.update(&sent).expect("update");
    }
    let s1 = SessionId::new("s1").expect("id");
    let s2 = SessionId::new("s2").expect("id");
    let found = |s: &SessionId, e: &str| store.by_engine_id(s, e).expect("read").map(|m| m.id);
    assert_eq!(found(&s1, "true_549@c.us_X1"), Some("a".into()));
    assert_eq!(found(&s2, "true_549@c.us_X2"), Some("b".into()));
    assert_eq!(
        found(&s2, "true_549@c.us_X1"),
        None,
        "another session's page cannot move it"
    );
}

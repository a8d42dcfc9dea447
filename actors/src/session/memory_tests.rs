//! The memory guard in the session actor, against a real store and the
//! scripted engine (which reports the memory a test sets), on tokio's
//! paused clock with the injected clock following it.

use super::*;
use crate::bus::MemoryRestartEvent;
use crate::session::MemoryGuard;

const MB: u64 = 1 << 20;
const LIMIT: u64 = 100 * MB;
/// 80 characters at 10 a second: eight seconds of "typing…".
const LONG: &str =
    "Hola, le recordamos su turno de mañana a las 10:30 en la clínica. Gracias!!!!!!!";

/// A READY session whose sender types at 10 characters a second, with the
/// memory guard at [`LIMIT`], checking every 5 s.
async fn guarded(store: &Store, min_uptime: Duration) -> Fixture {
    let repo = store.clone();
    let clock = TokioClock::at(Timestamp::from_millis(1_000_000));
    let mut f = fixture_with(move |env| {
        env.messages = Some(Arc::new(repo));
        env.clock = clock;
        env.typing = crate::messaging::Typing {
            chars_per_second: 10,
        };
        env.memory = MemoryGuard {
            limit: LIMIT,
            interval: Duration::from_secs(5),
            min_uptime,
        };
    })
    .await;
    on_record(store, &f.id);
    connect_and_scan(&mut f).await;
    f
}

/// Every bus event until the session leaves READY (that transition last),
/// or `None` if it has not within `within` (tokio time).
async fn until_disconnected(f: &mut Fixture, within: Duration) -> Option<Vec<BusEvent>> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let ev = match tokio::time::timeout_at(deadline, f.events.recv()).await {
            Err(_) => return None,
            Ok(ev) => ev.expect("bus open"),
        };
        let done = matches!(&ev, BusEvent::Transition(t) if t.to.name() == "DISCONNECTED");
        seen.push(ev);
        if done {
            return Some(seen);
        }
    }
}

fn restarts(events: &[BusEvent]) -> Vec<MemoryRestartEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            BusEvent::MemoryRestart(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn over_the_limit_the_browser_restarts_only_after_the_message_being_typed_is_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let mut f = guarded(&store, Duration::ZERO).await;
    f.engine.set_memory(&f.id, 200 * MB);
    let ids = queue_to(&f, &store, &[number(1), number(2)]);
    // Long texts: the first is still being typed at the first check (5 s).
    for id in &ids {
        let mut m = status_of(&store, id);
        m.text = LONG.into();
        store.update(&m).expect("update");
    }

    let events = until_disconnected(&mut f, Duration::from_secs(120))
        .await
        .expect("restarted within 120 s");
    let sent_at = events
        .iter()
        .find_map(|e| match e {
            BusEvent::MessageStatus(m)
                if m.message_id == ids[0] && m.status == MessageStatus::Sent =>
            {
                Some(m.at)
            }
            _ => None,
        })
        .expect("the message being typed went out first");
    let BusEvent::Transition(gone) = events.last().expect("last") else {
        unreachable!()
    };
    assert_eq!(
        gone.to.reason(),
        Some(DisconnectReason::MemoryLimit),
        "{gone:?}"
    );
    assert!(
        gone.at.since(sent_at) >= crate::session::memory::QUIET_AFTER_SEND,
        "not before its receipts could arrive: sent {sent_at}, restarted {}",
        gone.at
    );
    assert_eq!(
        restarts(&events),
        [MemoryRestartEvent {
            tenant: TenantId::new("t1").expect("id"),
            session: f.id.clone(),
            bytes: 200 * MB,
            limit: LIMIT,
            at: gone.at,
        }]
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, BusEvent::MessageStatus(m) if m.message_id == ids[1])),
        "the second message did not start: {events:?}"
    );
    assert_eq!(status_of(&store, &ids[1]).status, MessageStatus::Queued);
    assert_eq!(f.engine.sent().len(), 1, "one message handed over");
    assert!(
        store.in_flight(&f.id).expect("read").is_empty(),
        "nothing in flight"
    );
}

#[tokio::test(start_paused = true)]
async fn under_the_limit_nothing_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let mut f = guarded(&store, Duration::ZERO).await;
    f.engine.set_memory(&f.id, LIMIT);
    assert!(
        until_disconnected(&mut f, Duration::from_secs(600))
            .await
            .is_none(),
        "READY for ten minutes at the limit (not over it)"
    );
    let view = call!(f.actor, SessionMsg::Get).expect("get");
    assert_eq!(view.state.name(), "READY");
}

#[tokio::test(start_paused = true)]
async fn a_session_ready_for_less_than_the_minimum_uptime_is_not_restarted_until_it_has_been() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let mut f = guarded(&store, Duration::from_secs(1_800)).await;
    f.engine.set_memory(&f.id, 300 * MB);
    let ready_at = tokio::time::Instant::now();
    assert!(
        until_disconnected(&mut f, Duration::from_secs(1_790))
            .await
            .is_none(),
        "not within the first 30 minutes"
    );
    let events = until_disconnected(&mut f, Duration::from_secs(60))
        .await
        .expect("restarted once 30 minutes READY");
    assert!(ready_at.elapsed() >= Duration::from_secs(1_800));
    assert_eq!(restarts(&events).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_driver_that_reports_no_memory_is_never_restarted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let mut f = guarded(&store, Duration::ZERO).await;
    assert!(until_disconnected(&mut f, Duration::from_secs(600))
        .await
        .is_none());
}

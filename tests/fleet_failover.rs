//! Fleet failover with real browsers (the rig: `tests/common/fleet.rs`):
//! two `centinela serve` processes on one throwaway PostgreSQL and one
//! `centinela sim`, real Chromium, real engine. The owner of a paired
//! session is `kill -9`ed (its pid alone: its browsers die with it), or
//! frozen with SIGSTOP past its lease (its pages leave WhatsApp by the
//! dead-man switch); the other node takes the tenant once the lease has run
//! out, restores the profile snapshot the owner stored when the pairing
//! became durable, and the session is READY again without a QR. The
//! simulator never sees two pages of one pairing at once. The send queue
//! and the new-contact budget are the fleet's: what the dead owner had
//! accepted is sent by the next one when due, once.

mod common;

use common::browser::browser_slot;
use common::fleet::Rig;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_of_the_owner_brings_the_session_back_ready_elsewhere_without_a_qr() {
    let _slot = browser_slot().await;
    let rig = Rig::start();
    // The service's pid alone: its browsers must die with it.
    let f = rig.failover(0, false).await;
    eprintln!(
        "failover: kill -9 → READY on the other node in {:?}",
        f.elapsed
    );
    assert!(!f.states.iter().any(|s| s == "QR"), "no QR: {:?}", f.states);
    assert_eq!(f.states.last().map(String::as_str), Some("READY"));
    assert_eq!(f.view["phone"], "5491122330000", "the same pairing");
    assert_eq!(f.owner, ("b0".to_owned(), 2), "moved at the next epoch");
    // Within the lease, a claim period and a restore (generous on 2 cores).
    assert!(f.elapsed < Duration::from_secs(60), "{:?}", f.elapsed);
    assert_eq!(
        rig.overlaps().await["total"],
        0,
        "never two pages on one pairing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_owner_is_taken_over_and_when_woken_lets_the_tenant_go_writing_nothing() {
    let _slot = browser_slot().await;
    let rig = Rig::start();
    let f = rig.freeze(0).await;
    eprintln!(
        "failover: SIGSTOP → READY on the other node in {:?}",
        f.failover.elapsed
    );
    assert!(
        !f.failover.states.iter().any(|s| s == "QR"),
        "no QR: {:?}",
        f.failover.states
    );
    assert_eq!(f.failover.owner, ("b0".to_owned(), 2));
    assert_eq!(
        f.on_a,
        (200, "b0".to_owned()),
        "the woken owner hosts the session no more: it forwards the call to the new owner"
    );
    assert_eq!(f.released["tenant"], "clinic0");
    // Woken, the owner finds its lease's deadline long past (it lets the
    // tenant go) and its page gone (the dead-man switch: a stop it would
    // record, fenced): nothing of it reached the record.
    assert_ne!(f.record["last_reason"], "engine_error", "{}", f.record);
    assert_eq!(f.record["desired"], "running", "{}", f.record);
    assert_eq!(
        f.overlaps["total"], 0,
        "never two pages on one pairing: {}",
        f.overlaps
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_leaves_the_send_queue_and_the_new_contact_budget_to_the_next_owner() {
    let _slot = browser_slot().await;
    let rig = Rig::start();
    let q = rig.queue_failover(0, Duration::from_secs(20)).await;
    eprintln!("queue failover: {q:?}");
    assert_eq!(
        q.again["id"], q.accepted["id"],
        "the idempotency key answers the first message on the new owner"
    );
    assert_eq!(q.scheduled["status"], "sent", "{}", q.scheduled);
    assert!(
        q.killed_at < q.due,
        "the owner died before the message was due"
    );
    let sent_at = centinela_actors::clock::Timestamp::parse_rfc3339(
        q.sent_at.as_str().expect("an RFC 3339 time"),
    )
    .expect("a time");
    assert!(
        sent_at >= q.due,
        "not before its time: {sent_at} < {}",
        q.due
    );
    let texts: Vec<&str> = q
        .on_phone
        .iter()
        .map(|m| m["text"].as_str().expect("text"))
        .collect();
    assert_eq!(
        texts,
        ["first, on a", "scheduled, due after the kill"],
        "each sent once, the stranger not at all"
    );
    assert_eq!(q.stranger["status"], "deferred", "{}", q.stranger);
    assert_eq!(
        q.stranger["deferred"]["reason"], "new_contact_budget",
        "the day's one new contact was spent on the dead owner: {}",
        q.stranger
    );
}

//! Fleet failover with real browsers (the rig: `tests/common/fleet.rs`):
//! two `centinela serve` processes on one throwaway PostgreSQL and one
//! `centinela sim`, real Chromium, real engine. The owner of a paired
//! session is `kill -9`ed; the other node takes the tenant once its lease
//! has run out, restores the profile snapshot the owner stored when the
//! pairing became durable, and the session is READY again without a QR.

mod common;

use common::browser::browser_slot;
use common::fleet::Rig;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_of_the_owner_brings_the_session_back_ready_elsewhere_without_a_qr() {
    let _slot = browser_slot().await;
    let rig = Rig::start();
    let f = rig.failover(0).await;
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
}

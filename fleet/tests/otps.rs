//! The fleet's verification codes on a real PostgreSQL, through two nodes:
//! the per-phone limit counts both nodes' sends (also when they issue at
//! once), a new code voids the phone's previous one whoever sent it, a
//! refused precondition writes nothing, a code is read and verified through
//! the node that did not send it, expired codes are pruned, and a purged
//! tenant's codes go with it.

mod common;

use centinela_actors::clock::Timestamp;
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::store::{
    AccountRepo, Issue, OtpPurpose, OtpRecord, OtpRepo, OtpStatus, SendLimit, TenantRecord,
};
use centinela_fleet::{FleetOtps, PgAccounts};
use common::{Member, PgCluster};
use std::time::Duration;

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);
const PHONE: &str = "+5491122334455";
const DAY: Duration = Duration::from_secs(24 * 3600);

fn clinic() -> TenantId {
    TenantId::new("clinic").expect("id")
}

fn record(id: &str, at: Timestamp) -> OtpRecord {
    OtpRecord {
        id: id.into(),
        tenant: clinic(),
        session: SessionId::new("desk").expect("id"),
        phone: PHONE.into(),
        purpose: OtpPurpose::Registration,
        digest: format!("hmac-of-{id}"),
        status: OtpStatus::Pending,
        attempts_left: 5,
        created_at: at,
        issued_at: at,
        expires_at: at.plus(Duration::from_secs(300)),
        resend_at: at.plus(Duration::from_secs(60)),
        sends: 1,
        message_id: Some(format!("m_{id}")),
        updated_at: at,
    }
}

fn per_phone(max: u32) -> Vec<SendLimit> {
    vec![
        SendLimit {
            scope: format!("phone:{PHONE}"),
            max,
            window: DAY,
        },
        SendLimit {
            scope: "addr:203.0.113.9".into(),
            max: 100,
            window: Duration::from_secs(3600),
        },
    ]
}

/// Two nodes' codes, the tenant on record in the fleet.
async fn two_nodes(pg: &PgCluster) -> (FleetOtps, FleetOtps, Member) {
    let (a, b) = (Member::join(pg, "a").await, Member::join(pg, "b").await);
    PgAccounts::new(&a.fleet)
        .create_tenant(&TenantRecord {
            id: clinic(),
            name: "clinic".into(),
            created_at: T0,
        })
        .expect("tenant");
    (FleetOtps::new(&a.fleet), FleetOtps::new(&b.fleet), a)
}

fn issue(otps: &FleetOtps, r: &OtpRecord, limits: &[SendLimit], now: Timestamp) -> Issue {
    otps.issue_otp(r, limits, now, &mut |found| found.is_none())
        .expect("issue")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limits_count_every_nodes_sends_and_a_new_code_voids_the_last_wherever_it_was_sent() {
    let pg = PgCluster::start();
    let (a, b, _m) = two_nodes(&pg).await;
    let limits = per_phone(3);
    let at = |m: u64| T0.plus(Duration::from_secs(60 * m));
    assert_eq!(
        issue(&a, &record("o1", at(0)), &limits, at(0)),
        Issue::Stored { superseded: vec![] }
    );
    // b's code for the same phone voids a's.
    let Issue::Stored { superseded } = issue(&b, &record("o2", at(1)), &limits, at(1)) else {
        panic!("stored");
    };
    assert_eq!(superseded.len(), 1);
    assert_eq!(superseded[0].id, "o1");
    assert_eq!(
        b.otp("o1").expect("read").map(|r| r.status),
        Some(OtpStatus::Superseded)
    );
    assert!(matches!(
        issue(&a, &record("o3", at(2)), &limits, at(2)),
        Issue::Stored { .. }
    ));
    // Three sends through two nodes: the phone's day is spent until the
    // first of them leaves the window.
    assert_eq!(
        issue(&b, &record("o4", at(3)), &limits, at(3)),
        Issue::Limited {
            index: 0,
            retry_at: at(0).plus(DAY)
        }
    );
    assert_eq!(b.otp("o4").expect("read"), None, "nothing written");
    assert_eq!(
        a.otp_sends(&limits[0].scope, at(0).minus(DAY))
            .expect("sends"),
        vec![at(0), at(1), at(2)]
    );
    // A day after the first send there is room for one again.
    assert!(matches!(
        issue(&b, &record("o4", at(0).plus(DAY)), &limits, at(0).plus(DAY)),
        Issue::Stored { .. }
    ));

    // A precondition that refuses the record on file writes nothing.
    let mut resend = record("o4", at(0).plus(DAY));
    resend.sends = 2;
    let refused = a
        .issue_otp(&resend, &limits, at(0).plus(DAY), &mut |found| {
            found.is_some_and(|r| r.sends > 1)
        })
        .expect("issue");
    assert!(
        matches!(refused, Issue::Refused(Some(ref r)) if r.sends == 1),
        "{refused:?}"
    );
    assert_eq!(
        a.otp_sends(&limits[0].scope, at(0)).expect("sends").len(),
        3,
        "no send logged for the refused code"
    );

    // Verified through the node that did not send it, once.
    let verified = a
        .update_otp("o4", &mut |r| {
            r.status = OtpStatus::Verified;
            true
        })
        .expect("update");
    assert_eq!(verified.map(|r| r.status), Some(OtpStatus::Verified));
    assert_eq!(
        b.otp("o4").expect("read").map(|r| r.status),
        Some(OtpStatus::Verified)
    );
    assert_eq!(a.update_otp("nope", &mut |_| true).expect("update"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_issued_at_once_through_two_nodes_never_pass_the_limit() {
    let pg = PgCluster::start();
    let (a, b, _m) = two_nodes(&pg).await;
    let limits = per_phone(3);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let otps = if i % 2 == 0 { a.clone() } else { b.clone() };
        let limits = limits.clone();
        tasks.push(tokio::spawn(async move {
            let r = record(&format!("o{i}"), T0);
            matches!(issue(&otps, &r, &limits, T0), Issue::Stored { .. })
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += usize::from(t.await.expect("task"));
    }
    assert_eq!(stored, 3);
    assert_eq!(
        a.otp_sends(&limits[0].scope, T0.minus(DAY))
            .expect("sends")
            .len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_codes_are_pruned_and_a_purged_tenants_codes_go_with_it() {
    let pg = PgCluster::start();
    let (a, b, m) = two_nodes(&pg).await;
    let limits = per_phone(10);
    issue(&a, &record("old", T0), &limits, T0);
    let later = T0.plus(Duration::from_secs(3600));
    let mut other = record("new", later);
    other.phone = "+5491199998888".into();
    issue(&b, &other, &limits, later);
    // "old" expired five minutes after T0; "new" has not.
    assert_eq!(
        a.prune_otps(T0.plus(Duration::from_secs(301)))
            .expect("prune"),
        1
    );
    assert_eq!(b.otp("old").expect("read"), None);
    assert!(b.otp("new").expect("read").is_some());
    let latest: Vec<String> = sqlx::query_scalar("SELECT otp FROM otp_latest ORDER BY otp")
        .fetch_all(m.fleet.pool())
        .await
        .expect("latest");
    assert_eq!(latest, vec!["new".to_owned()]);

    PgAccounts::new(&m.fleet)
        .purge_tenant(&clinic())
        .expect("purge");
    assert_eq!(a.otp("new").expect("read"), None);
    let sends: i64 = sqlx::query_scalar("SELECT count(*) FROM otp_sends")
        .fetch_one(m.fleet.pool())
        .await
        .expect("count");
    assert_eq!(sends, 0);
}

//! `cargo bench --bench fleet [-- --runs N --seconds S]`: fleet mode's two
//! figures, on one throwaway PostgreSQL (Debian's, on loopback):
//!
//! 1. **Admission decisions per second, fleet-wide**: three nodes (three
//!    pools of 4 connections) decide connects for 300 tenants spread over
//!    10 egresses, 16 decisions in flight per node, for `--seconds` (10).
//!    Each decision is the real one — advisory locks on egress and tenant,
//!    the windows read, the pure `evaluate`, the insert, commit — with the
//!    limits high enough that most are admitted (an admitted decision
//!    writes; a denied one only reads).
//! 2. **Durable message accepts per second on PostgreSQL**: one node's
//!    outbox writer (group commit, as `cargo bench --bench messages`
//!    measures on redb) over the fleet's `messages` table, fenced, with
//!    256 concurrent callers for 50 sessions of one tenant.
//! 3. **Failover time**: `--runs` (10) times, two `serve` processes and one
//!    `centinela sim`, real Chromium: a session is paired on the first, the
//!    service's pid is `kill -9`ed (its browsers die with it), and the time until the session is READY
//!    on the other node (no QR) is taken. Leases of 3 s.
//!
//! Prints the figures (p50/max of the failover); asserts only what a run
//! needs to be a failover (READY elsewhere, no QR).

#[path = "../tests/common/mod.rs"]
mod common;

use centinela_actors::config::Config;
use centinela_actors::engine::EngineKind;
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::supervisor::admission::{AttemptKind, AttemptRequest};
use centinela_fleet::{Fleet, FleetAdmission, Verdict};
use common::fleet::Rig;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const NODES: usize = 3;
const IN_FLIGHT: usize = 16;
const TENANTS: usize = 300;
const EGRESSES: usize = 10;

async fn decisions(rig: &Rig, seconds: u64) {
    let mut cfg = Config::defaults().antiban;
    cfg.global_attempts_per_hour = 1_000_000;
    cfg.tenant_attempts_per_day = 1_000_000;
    cfg.max_live_sessions = 1_000_000;
    let admitted = Arc::new(AtomicU64::new(0));
    let denied = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for node in 0..NODES {
        let fleet = Fleet::connect(&rig.pg.url(), 4).await.expect("connect");
        let admission = FleetAdmission::new(&fleet, cfg.clone());
        for w in 0..IN_FLIGHT {
            let (admission, admitted, denied) =
                (admission.clone(), admitted.clone(), denied.clone());
            workers.push(tokio::spawn(async move {
                let mut i = node * IN_FLIGHT + w;
                while Instant::now() < until {
                    let t = i % TENANTS;
                    let req = AttemptRequest {
                        tenant: TenantId::new(format!("t{t}")).expect("id"),
                        session: SessionId::new(format!("s{t}")).expect("id"),
                        kind: AttemptKind::Connect,
                        live: 0,
                        egress: format!("198.51.100.{}", t % EGRESSES),
                        engine: EngineKind::Webjs,
                    };
                    match admission.decide(&req, None).await.expect("decide") {
                        Verdict::Admitted { .. } => admitted.fetch_add(1, Ordering::Relaxed),
                        Verdict::Denied(_) => denied.fetch_add(1, Ordering::Relaxed),
                    };
                    i += NODES * IN_FLIGHT;
                }
            }));
        }
    }
    let started = Instant::now();
    for w in workers {
        w.await.expect("worker");
    }
    let secs = started.elapsed().as_secs_f64();
    let (a, d) = (
        admitted.load(Ordering::Relaxed),
        denied.load(Ordering::Relaxed),
    );
    println!(
        "admission: {:.0} decisions/s fleet-wide ({NODES} nodes × {IN_FLIGHT} in flight, {TENANTS} tenants, {EGRESSES} egresses; {a} admitted, {d} denied in {secs:.1} s)",
        (a + d) as f64 / secs
    );
}

const CALLERS: usize = 256;
const PER_CALLER: usize = 100;

async fn accepts(rig: &Rig) {
    use centinela_actors::clock::{Clock, SystemClock};
    use centinela_actors::messaging::Outbox;
    use centinela_actors::store::{
        AccountRepo, DesiredState, MessageRecord, SessionRecord, SessionRepo, Store, TenantRecord,
    };
    use centinela_fleet::{
        FleetMessages, FleetSessions, Leases, NodeId, NodeSpec, Owned, PgAccounts,
    };
    let fleet = Fleet::connect(&rig.pg.url(), 8).await.expect("connect");
    let id = NodeId::new("bench-outbox").expect("id");
    fleet
        .register(&NodeSpec {
            id: id.clone(),
            advertise_url: "http://bench.invalid".into(),
            egress: "198.51.100.200".into(),
            capacity: 10,
        })
        .await
        .expect("register");
    let leases = Leases::new(&fleet, id, Duration::from_secs(600));
    let owned = Owned::default();
    let tenant = TenantId::new("outbox-bench").expect("id");
    let now = SystemClock.now();
    PgAccounts::new(&fleet)
        .create_tenant(&TenantRecord {
            id: tenant.clone(),
            name: "bench".into(),
            created_at: now,
        })
        .expect("tenant");
    owned.insert(leases.claim(&tenant).await.expect("claim").expect("won"));
    let dir = tempfile::tempdir().expect("tempdir");
    let local = Store::open(dir.path()).expect("store");
    let sessions = FleetSessions::new(&fleet, leases.clone(), owned.clone(), local);
    for s in 0..50 {
        sessions
            .put_session(&SessionRecord {
                id: SessionId::new(format!("bench-s{s}")).expect("id"),
                tenant: tenant.clone(),
                name: "bench".into(),
                engine: EngineKind::Webjs,
                desired: DesiredState::Stopped,
                user_agent: None,
                proxy: None,
                last_reason: None,
                paired: false,
                paired_at: None,
                created_at: now,
                cloud: None,
            })
            .expect("session");
    }
    let (outbox, _task) = Outbox::start(Arc::new(FleetMessages::new(&fleet, leases, owned)), None);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CALLERS {
        let (outbox, tenant) = (outbox.clone(), tenant.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..PER_CALLER {
                let i = c * PER_CALLER + n;
                let m = MessageRecord::queued(
                    tenant.clone(),
                    SessionId::new(format!("bench-s{}", i % 50)).expect("id"),
                    "5491100000000".into(),
                    format!("hola {i}"),
                    SystemClock.now(),
                )
                .with_key(Some(format!("k{i}")));
                outbox.accept(m).await.expect("accepted");
            }
        }));
    }
    for t in tasks {
        t.await.expect("caller");
    }
    let total = CALLERS * PER_CALLER;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "outbox on PostgreSQL: {total} durable accepts by {CALLERS} callers in {secs:.2} s = {:.0} accepts/s",
        total as f64 / secs
    );
}

/// Events one node publishes as fast as it can, in batches of
/// [`RELAY_BATCH`] (as `publish_events` sends a hub's), for `seconds`,
/// and another node follows: how many a second arrive, how many went
/// missing, and the time from publish to arrival.
async fn relay(rig: &Rig, seconds: u64) {
    use centinela_fleet::events::{follow, publish, Relayed};
    const RELAY_BATCH: usize = 64;
    let publisher = Fleet::connect(&rig.pg.url(), 2).await.expect("connect");
    let follower = Fleet::connect(&rig.pg.url(), 2).await.expect("connect");
    let sent: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Option<usize>, Instant)>();
    let listening = follow(&follower, "node-b".into(), move |e| {
        let seq = serde_json::from_str::<serde_json::Value>(&e.json)
            .ok()
            .and_then(|v| v["seq"].as_u64());
        let _ = tx.send((seq.map(|s| s as usize), Instant::now()));
    });
    // A LISTEN is not retroactive: unnumbered warm-up events go until one
    // arrives, so the follower hears every numbered one.
    let warm = Relayed {
        node: "node-a".into(),
        tenant: None,
        json: r#"{"type":"warm_up"}"#.into(),
    };
    let mut heard = false;
    for _ in 0..300 {
        publish(publisher.pool(), std::slice::from_ref(&warm))
            .await
            .expect("warm-up");
        if tokio::time::timeout(Duration::from_millis(100), rx.recv())
            .await
            .is_ok()
        {
            heard = true;
            break;
        }
    }
    assert!(heard, "the follower never heard the publisher");
    while rx.try_recv().is_ok() {}
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    while Instant::now() < until {
        let mut batch = Vec::with_capacity(RELAY_BATCH);
        {
            let mut s = sent.lock().expect("sent");
            for _ in 0..RELAY_BATCH {
                let seq = s.len();
                s.push(Instant::now());
                batch.push(Relayed {
                    node: "node-a".into(),
                    tenant: Some(format!("t{}", seq % 30)),
                    json: format!(
                        r#"{{"type":"transition","seq":{seq},"tenant_id":"t{}","session_id":"s_{seq:08}","from":{{"state":"AUTHENTICATED"}},"to":{{"state":"READY","me":"5491122334455"}},"at":1800000000000}}"#,
                        seq % 30
                    ),
                });
            }
        }
        publish(publisher.pool(), &batch).await.expect("publish");
    }
    let published = sent.lock().expect("sent").len();
    let pub_secs = started.elapsed().as_secs_f64();
    let mut arrived = vec![None; published];
    let mut latencies = Vec::with_capacity(published);
    let drain_until = Instant::now() + Duration::from_secs(30);
    while latencies.len() < published && Instant::now() < drain_until {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some((None, _))) => {}
            Ok(Some((Some(seq), at))) => {
                if let Some(slot) = arrived.get_mut(seq) {
                    if slot.is_none() {
                        *slot = Some(at);
                        let sent_at = sent.lock().expect("sent")[seq];
                        latencies.push(at.saturating_duration_since(sent_at));
                    }
                }
            }
            _ => break,
        }
    }
    listening.abort();
    let secs = started.elapsed().as_secs_f64();
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64) * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "relay: {:.0} events/s published, {:.0}/s arrived on the other node ({} of {published} in {secs:.1} s, {} missing); publish → arrival p50 {:.1} ms, p99 {:.1} ms",
        published as f64 / pub_secs,
        latencies.len() as f64 / secs,
        latencies.len(),
        published - latencies.len(),
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.99).as_secs_f64() * 1e3,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs = arg("--runs", 10) as usize;
    let seconds = arg("--seconds", 10);
    let rig = Rig::start();
    decisions(&rig, seconds).await;
    relay(&rig, seconds).await;
    accepts(&rig).await;
    let mut times = Vec::with_capacity(runs);
    for run in 0..runs {
        let f = rig.failover(run, false).await;
        assert!(
            !f.states.iter().any(|s| s == "QR")
                && f.states.last().map(String::as_str) == Some("READY"),
            "run {run}: {:?}",
            f.states
        );
        println!("failover run {run}: {:?} (owner {:?})", f.elapsed, f.owner);
        times.push(f.elapsed);
    }
    times.sort();
    if let (Some(p50), Some(max)) = (times.get(times.len() / 2), times.last()) {
        println!(
            "failover: kill -9 → READY elsewhere, lease 3 s, {runs} runs: p50 {:.2} s, max {:.2} s",
            p50.as_secs_f64(),
            max.as_secs_f64()
        );
    }
}

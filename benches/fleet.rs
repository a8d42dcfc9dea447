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
//! 2. **Failover time**: `--runs` (10) times, two `serve` processes and one
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs = arg("--runs", 10) as usize;
    let seconds = arg("--seconds", 10);
    let rig = Rig::start();
    decisions(&rig, seconds).await;
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

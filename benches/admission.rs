//! `cargo bench --bench admission`: admission decisions per second, and the
//! p50/p99 latency of a connect request through the supervisor actor with
//! 10,000 tenants (one session each). Prints the figures; asserts nothing.

use centinela_actors::bus::Bus;
use centinela_actors::clock::{Clock, SystemClock};
use centinela_actors::config::Config;
use centinela_actors::engine::{EngineKind, EngineSet};
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::session::actor::SessionEnv;
use centinela_actors::store::Store;
use centinela_actors::supervisor::admission::{
    evaluate, Admission, AttemptKind, AttemptRequest, Outcome,
};
use centinela_actors::supervisor::ledger::{Ledger, LedgerEvent};
use centinela_actors::supervisor::{NewSession, Supervisor, SupervisorArgs};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TENANTS: usize = 10_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn tenant(i: usize) -> TenantId {
    TenantId::new(format!("tenant{i}")).expect("valid id")
}

/// The pure rules over a ledger holding 10,000 tenants' history.
fn bench_policy(config: &Config) {
    let now = SystemClock.now();
    // A mixed history: 2 attempts in the last hour server-wide, every tenant
    // with one attempt earlier today, every 7th cooling down, every 50th banned.
    let mut ledger = Ledger::default();
    for i in 0..TENANTS {
        let at = if i < 2 {
            now.minus(Duration::from_secs(60))
        } else {
            now.minus(Duration::from_secs(3600 + (i % 80_000) as u64))
        };
        let session = SessionId::new(format!("s{i}")).expect("valid id");
        ledger.apply(&LedgerEvent::Attempt {
            id: i as u64,
            tenant: tenant(i),
            session: session.clone(),
            kind: AttemptKind::Connect,
            counted: true,
            at,
            cloud: false,
        });
        if i % 7 == 0 {
            ledger.apply(&LedgerEvent::Failure {
                tenant: tenant(i),
                session: session.clone(),
                at,
                until: now.plus(Duration::from_secs(600)),
            });
        }
        if i % 50 == 0 {
            ledger.apply(&LedgerEvent::Banned {
                tenant: tenant(i),
                session,
                at,
                until: now.plus(Duration::from_secs(3600)),
            });
        }
    }
    let requests: Vec<AttemptRequest> = (0..TENANTS)
        .map(|i| AttemptRequest {
            tenant: tenant(i),
            session: SessionId::new(format!("s{i}")).expect("valid id"),
            kind: AttemptKind::Connect,
            live: (i % 8) as u32,
            egress: "server".into(),
            engine: centinela_actors::engine::EngineKind::Webjs,
        })
        .collect();
    let rounds = 100;
    let start = Instant::now();
    let mut denied = 0usize;
    for _ in 0..rounds {
        for r in &requests {
            let verdict = evaluate(
                &config.antiban,
                &ledger,
                &r.tenant,
                r.kind,
                r.live,
                &r.egress,
                now,
            );
            denied += usize::from(verdict.is_err());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let n = rounds * TENANTS;
    println!(
        "policy: {n} decisions in {secs:.3} s = {:.0} decisions/s ({denied} denied)",
        n as f64 / secs
    );
}

/// `Admission::admit` with its redb ledger (admitted attempts are fsynced).
fn bench_admission(config: &Config, dir: &std::path::Path) {
    let store = Store::open(&dir.join("admission")).expect("store");
    let now = SystemClock.now();
    let mut adm =
        Admission::load(config.antiban.clone(), Arc::new(store), Some(7), now).expect("load");
    for i in (0..TENANTS).step_by(50) {
        let s = SessionId::new(format!("s{i}")).expect("valid id");
        adm.record(&tenant(i), &s, Outcome::Failure, now)
            .expect("record");
    }
    let mut lat = Vec::with_capacity(TENANTS * 10);
    let start = Instant::now();
    for round in 0..10 {
        for i in 0..TENANTS {
            let r = AttemptRequest {
                tenant: tenant(i),
                session: SessionId::new(format!("s{i}")).expect("valid id"),
                kind: AttemptKind::Connect,
                live: 0,
                egress: "server".into(),
                engine: centinela_actors::engine::EngineKind::Webjs,
            };
            let t = Instant::now();
            adm.admit(&r, now.plus(Duration::from_millis(round)))
                .expect("admit");
            lat.push(t.elapsed());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "admission (with ledger): {} decisions in {secs:.3} s = {:.0} decisions/s, p50 {:?}, p99 {:?}",
        lat.len(),
        lat.len() as f64 / secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
}

async fn bench_supervisor(config: Config, dir: &std::path::Path) {
    let store = Store::open(&dir.join("supervisor")).expect("store");
    let env = SessionEnv::from_config(&config, Arc::new(SystemClock), Bus::default(), None);
    let args = SupervisorArgs {
        rng_seed: Some(1),
        ..SupervisorArgs::on_store(config, store, EngineSet::default(), env)
    };
    let (sup, handle) = Supervisor::spawn(args).await.expect("supervisor");
    let created = Instant::now();
    let mut ids = Vec::with_capacity(TENANTS);
    for i in 0..TENANTS {
        let new = NewSession {
            tenant: tenant(i),
            name: format!("desk {i}"),
            engine: EngineKind::Webjs,
            user_agent: None,
            proxy: None,
            cloud: None,
        };
        let view = sup.create(new).await.expect("create");
        ids.push(view.id);
    }
    println!(
        "setup: {TENANTS} sessions created in {:.1} s",
        created.elapsed().as_secs_f64()
    );
    let mut lat = Vec::with_capacity(TENANTS * 3);
    let start = Instant::now();
    for _ in 0..3 {
        for id in &ids {
            let t = Instant::now();
            let _ = sup.connect(id.clone()).await;
            lat.push(t.elapsed());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "connect via supervisor actor ({TENANTS} tenants): {} requests in {secs:.3} s = {:.0}/s, p50 {:?}, p99 {:?}, max {:?}",
        lat.len(),
        lat.len() as f64 / secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    let _ = sup.stop(Duration::from_secs(30)).await;
    let _ = handle.await;
}

fn main() {
    let mut config = Config::defaults();
    // Room for 10,000 tenants' sessions; every other limit as shipped.
    config.antiban.max_sessions = TENANTS as u32;
    let dir = tempfile::tempdir().expect("tempdir");
    bench_policy(&config);
    bench_admission(&config, dir.path());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(bench_supervisor(config, dir.path()));
}

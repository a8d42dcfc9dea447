//! `cargo bench --bench engine`: starts 1, 5 and 10 READY sessions on the
//! simulator with the real webjs engine and prints, per round, memory per
//! session (PSS of each session's Chromium process tree), connect→QR and
//! scan→READY times; then the same memory figure for Chromium launched with
//! whatsapp-web.js's defaults (Puppeteer's default args and wwebjs's user
//! agent) on the same page, and the ratio. `-- --flags` prints instead the
//! flag table: PSS per session at 5 sessions with each lean flag taken out
//! and each candidate added. Prints; asserts nothing.

#[path = "../tests/common/mod.rs"]
mod common;

use centinela_actors::bus::BusEvent;
use centinela_actors::ids::SessionId;
use centinela_actors::session::SessionState;
use centinela_actors::supervisor::NewSession;
use centinela_engine_webjs::process;
use common::browser::{engine_config, Centinela, Sim};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// whatsapp-web.js 1.34: Puppeteer 24's default launch arguments.
const PUPPETEER_DEFAULT_ARGS: &[&str] = &[
    "allow-pre-commit-input",
    "disable-background-networking",
    "disable-background-timer-throttling",
    "disable-backgrounding-occluded-windows",
    "disable-breakpad",
    "disable-client-side-phishing-detection",
    "disable-component-extensions-with-background-pages",
    "disable-crash-reporter",
    "disable-default-apps",
    "disable-dev-shm-usage",
    "disable-hang-monitor",
    "disable-infobars",
    "disable-ipc-flooding-protection",
    "disable-popup-blocking",
    "disable-prompt-on-repost",
    "disable-renderer-backgrounding",
    "disable-search-engine-choice-screen",
    "disable-sync",
    "enable-automation",
    "export-tagged-pdf",
    "force-color-profile=srgb",
    "generate-pdf-document-outline",
    "metrics-recording-only",
    "no-first-run",
    "password-store=basic",
    "use-mock-keychain",
    "disable-features=Translate,AcceptCHFrame,MediaRouter,OptimizationHints,ProcessPerSiteUpToMainFrameThreshold,IsolateSandboxedIframes",
    "enable-features=PdfOopif",
    "disable-blink-features=AutomationControlled",
];

/// whatsapp-web.js's default user agent.
const WWEBJS_UA: &str =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/101.0.4951.67 Safari/537.36";

/// PSS in KiB of the browser using `profile`: every process naming the
/// profile, with all their descendants.
fn pss_kib(profile: &Path) -> u64 {
    let mut pids = process::using_profile(profile);
    for root in pids.clone() {
        pids.extend(process::descendants(root));
    }
    pids.sort_unstable();
    pids.dedup();
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .sum()
}

async fn next_state(
    rx: &mut broadcast::Receiver<BusEvent>,
    id: &SessionId,
    state: &str,
) -> SessionState {
    loop {
        match tokio::time::timeout(Duration::from_secs(120), rx.recv()).await {
            Ok(Ok(BusEvent::Transition(t))) if t.session == *id && t.to.name() == state => {
                return t.to
            }
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            other => panic!("{id} never reached {state}: {other:?}"),
        }
    }
}

/// The pairing-durability window of `id`: READY → the engine's
/// `pairing_durable` (its page's IndexedDB writes committed).
async fn durable_window(rx: &mut broadcast::Receiver<BusEvent>, id: &SessionId) -> Duration {
    loop {
        match tokio::time::timeout(Duration::from_secs(120), rx.recv()).await {
            Ok(Ok(BusEvent::PairingDurable(p))) if p.session == *id => {
                return p.at.since(p.ready_at)
            }
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            other => panic!("{id} never reported its pairing durable: {other:?}"),
        }
    }
}

struct Round {
    pss_per_session_mib: f64,
    connect_to_qr: Vec<Duration>,
    scan_to_ready: Vec<Duration>,
    ready_to_durable: Vec<Duration>,
}

/// `-- --flags`: the flag table. Each row is the lean set with one flag
/// taken out (what that flag saves) or one candidate added (what it would
/// save), at `FLAG_ROUND` sessions, against the lean set itself.
const FLAG_ROUND: usize = 5;

fn variants() -> Vec<(String, Vec<String>)> {
    let lean: Vec<String> = centinela_engine_webjs::LEAN_ARGS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut out = vec![("lean set (as shipped)".to_owned(), lean.clone())];
    for f in [
        "renderer-process-limit=1",
        "js-flags=--max-old-space-size=256",
        "disable-site-isolation-trials",
        "disable-gpu",
        "disable-dev-shm-usage",
        "disable-renderer-backgrounding",
    ] {
        let without: Vec<String> = lean.iter().filter(|a| a.as_str() != f).cloned().collect();
        out.push((format!("without {f}"), without));
    }
    let features = lean
        .iter()
        .find(|a| a.starts_with("disable-features="))
        .cloned()
        .unwrap_or_default();
    for (name, change) in [
        (
            "with js-flags=--max-old-space-size=128",
            ("js-flags=", "js-flags=--max-old-space-size=128".to_owned()),
        ),
        (
            "with the back-forward cache off",
            ("disable-features=", format!("{features},BackForwardCache")),
        ),
        (
            "with V8's lite mode (js-flags=--lite-mode)",
            (
                "js-flags=",
                "js-flags=--max-old-space-size=256 --lite-mode".to_owned(),
            ),
        ),
    ] {
        let mut v: Vec<String> = lean
            .iter()
            .filter(|a| !a.starts_with(change.0))
            .cloned()
            .collect();
        v.push(change.1);
        out.push((name.to_owned(), v));
    }
    out.push((
        "with process-per-site".to_owned(),
        lean.iter()
            .cloned()
            .chain(["process-per-site".to_owned()])
            .collect(),
    ));
    out
}

/// How a round's browsers are launched.
enum Launch {
    Lean,
    Wwebjs,
    /// Exactly these flags (no lean set under them).
    Flags(Vec<String>),
}

async fn round(sim: &Sim, n: usize, launch: Launch) -> Round {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = engine_config(dir.path(), &sim.wa_url());
    config.antiban.max_live_sessions = 20;
    let baseline = matches!(launch, Launch::Wwebjs);
    if let Launch::Flags(flags) = &launch {
        config.engine.lean_flags = false;
        config.engine.extra_args = flags.clone();
    }
    if baseline {
        // whatsapp-web.js launches full Chromium (Puppeteer's `headless: true`).
        config.engine.headless_shell = false;
        config.engine.lean_flags = false;
        config.engine.extra_args = PUPPETEER_DEFAULT_ARGS
            .iter()
            .map(|s| s.to_string())
            .collect();
    }
    let c = Centinela::start(config).await;
    let mut rx = c.bus.subscribe();
    let (mut to_qr, mut to_ready, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    let mut to_durable = Vec::new();
    for i in 0..n {
        let new = NewSession {
            tenant: centinela_actors::ids::TenantId::new(format!("bench{i}")).expect("id"),
            name: format!("bench {i}"),
            engine: centinela_actors::engine::EngineKind::Webjs,
            user_agent: baseline.then(|| WWEBJS_UA.to_owned()),
            proxy: None,
            cloud: None,
        };
        let id = c.sup.create(new).await.expect("create").id;
        let t = Instant::now();
        c.connect(&id).await;
        let SessionState::Qr { code, .. } = next_state(&mut rx, &id, "QR").await else {
            unreachable!("next_state returns the named state")
        };
        to_qr.push(t.elapsed());
        let phone = format!("54911{:07}", i + if baseline { 5000 } else { 0 });
        let t = Instant::now();
        let (status, _) = sim
            .post("/sim/scan", json!({"qr": code, "phone": phone}))
            .await;
        assert_eq!(status, 200);
        next_state(&mut rx, &id, "READY").await;
        to_ready.push(t.elapsed());
        to_durable.push(durable_window(&mut rx, &id).await);
        ids.push(id);
    }
    let profiles: Vec<_> = ids
        .iter()
        .map(|id| dir.path().join("profiles").join(id.as_str()))
        .collect();
    let total: u64 = profiles.iter().map(|p| pss_kib(p)).sum();
    let procs: usize = profiles
        .iter()
        .map(|p| process::using_profile(p).len())
        .sum();
    println!("  ({} processes for {n} sessions)", procs);
    c.stop().await;
    Round {
        pss_per_session_mib: total as f64 / n as f64 / 1024.0,
        connect_to_qr: to_qr,
        scan_to_ready: to_ready,
        ready_to_durable: to_durable,
    }
}

fn summary(v: &mut [Duration]) -> String {
    v.sort();
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    format!("mean {:?}, max {:?}", mean, v[v.len() - 1])
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let flags = std::env::args().any(|a| a == "--flags");
    rt.block_on(async {
        let sim = Sim::start(Duration::from_secs(20)).await;
        if flags {
            println!("| Chromium flags (n = {FLAG_ROUND}) | PSS/session | connect→QR | scan→READY |");
            println!("|---|---|---|---|");
            for (name, args) in variants() {
                let mut r = round(&sim, FLAG_ROUND, Launch::Flags(args)).await;
                println!(
                    "| {name} | {:.1} MiB | {} | {} |",
                    r.pss_per_session_mib,
                    summary(&mut r.connect_to_qr),
                    summary(&mut r.scan_to_ready)
                );
            }
            return;
        }
        let mut lean_pss = Vec::new();
        for n in [1usize, 5, 10] {
            let mut r = round(&sim, n, Launch::Lean).await;
            lean_pss.push(r.pss_per_session_mib);
            println!(
                "centinela  n={n:2}: PSS/session {:.1} MiB | connect→QR {} | scan→READY {} | READY→pairing durable {}",
                r.pss_per_session_mib,
                summary(&mut r.connect_to_qr),
                summary(&mut r.scan_to_ready),
                summary(&mut r.ready_to_durable)
            );
        }
        let mut b = round(&sim, 5, Launch::Wwebjs).await;
        println!(
            "wwebjs defaults n= 5: PSS/session {:.1} MiB | connect→QR {} | scan→READY {}",
            b.pss_per_session_mib,
            summary(&mut b.connect_to_qr),
            summary(&mut b.scan_to_ready)
        );
        println!(
            "ratio (centinela n=5 / wwebjs defaults n=5): {:.2}",
            lean_pss[1] / b.pss_per_session_mib
        );
    });
}

//! `cargo bench --bench soak [-- --minutes N --sessions M --warm W]` (60,
//! 20 and 400): M READY sessions on the simulator with the real webjs
//! engine; first each exchanges W messages each way with its phone as fast
//! as they go (the page's V8 heaps grow to their working size over the
//! first few hundred messages: +12 MiB in one renderer over 400 incoming,
//! flat over the next 400), then steady traffic (each one message out and
//! one in a minute) for N minutes, sampled every 5 minutes: per-session
//! PSS, file descriptors and threads (this process and every browser), the
//! store file's size and the inbox's; the audit log's size at the end.
//! Passes when PSS/session grows at most 10 % after the burst and a
//! 10-minute warm-up, descriptors and threads stay flat, and every session
//! is READY at the end; prints the verdict and exits non-zero on a failure.
//! Its 3-minute version is `tests/soak.rs`, in `./test.sh`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| {
            v.parse().unwrap_or_else(|_| panic!("{name} N"))
        })
}

fn main() {
    let minutes = arg("--minutes", 60);
    let sessions = arg("--sessions", 20) as usize;
    let warm = arg("--warm", 400) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        common::load::soak(
            dir.path(),
            sessions,
            Duration::from_secs(minutes * 60),
            Duration::from_secs(300),
            Duration::from_secs(600.min(minutes * 60 / 3)),
            Duration::from_secs(60),
            warm,
        )
        .await
    });
    let (first, last) = (
        &report.samples[0],
        &report.samples[report.samples.len() - 1],
    );
    println!(
        "soak {minutes} min, {sessions} sessions: PSS/session {:.1} → {:.1} MiB ({:+.1} % after warm-up), descriptors {} → {}, threads {} → {}, store {:.2} → {:.2} MiB, inbox {} → {}, {} sends, audit {} entries",
        first.pss_mib,
        last.pss_mib,
        report.pss_growth * 100.0,
        first.descriptors,
        last.descriptors,
        first.threads,
        last.threads,
        first.store_mib,
        last.store_mib,
        first.inbox,
        last.inbox,
        report.sends,
        report.audit_entries
    );
    if report.failures.is_empty() {
        println!("soak: passed");
    } else {
        println!("soak: FAILED: {}", report.failures.join("; "));
        std::process::exit(1);
    }
}

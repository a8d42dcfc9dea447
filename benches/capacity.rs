//! `cargo bench --bench capacity [-- --max N --every S]`: how many READY
//! sessions one machine holds. An in-process `serve --demo` (the real webjs
//! engine, a real Chromium per session, the bundled simulator as the
//! phones) is ramped in steps of 10 READY sessions up to `--max` (150). Each
//! READY session has light traffic: one message out (through the outbox)
//! and one in (from its simulated phone) every `--every` seconds (60). After
//! each step, over one traffic round, it prints: sessions, the PSS of all
//! browsers (total and per session), this process's RSS (the service runs
//! in it), the machine's CPU %, connect→QR and scan→READY p50/p99 (of the
//! step's connects), send→sent p99 (of the round; pacing and typing are
//! set to zero, so this is the machine's latency, not the human pacing),
//! and the p99 of `GET /api/v1/sessions/{id}` under a light wrk load (-c4).
//! It stops early, saying why, when a bound breaks: memory over 90 % of the
//! machine, connect→QR p99 over 5 s, or the API p99 over 100 ms. Prints;
//! asserts nothing but that the service answers.

#[path = "../tests/common/mod.rs"]
mod common;

use common::load::{cpu_jiffies, meminfo, own_rss, quantile, wrk_ms, Load, PER_TENANT};
use std::time::Duration;

const MAX_CONNECT_TO_QR: Duration = Duration::from_secs(5);
const MAX_API_P99_MS: f64 = 100.0;
const MAX_MEMORY_SHARE: f64 = 0.90;

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
    let max = arg("--max", 150) as usize;
    let every = Duration::from_secs(arg("--every", 60));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        common::proc::ensure_wrk();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut load = Load::start(dir.path(), max, every).await;
        println!("| sessions | PSS total | PSS/session | service RSS | CPU % | connect→QR p50/p99 | scan→READY p50/p99 | send→sent p99 | GET session p99 (wrk -c4) |");
        println!("|---|---|---|---|---|---|---|---|---|");
        let (mem_total, _) = meminfo();
        let mut stop_why = format!("reached --max {max}");
        'ramp: loop {
            let n = load.ids().len();
            if n >= max {
                break;
            }
            let (mut to_qr, mut to_ready) = (Vec::new(), Vec::new());
            for _ in 0..PER_TENANT.min(max - n) {
                let (q, r) = load.add_session().await;
                to_qr.push(q);
                to_ready.push(r);
            }
            // One traffic round at this size, measured.
            load.take_send_to_sent();
            let (busy0, total0) = cpu_jiffies();
            tokio::time::sleep(every).await;
            let (busy1, total1) = cpu_jiffies();
            let cpu = 100.0 * (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64;
            let mut sent = load.take_send_to_sent();
            let pss: u64 = load.pss_by_session().values().sum();
            let rss = own_rss();
            let ids = load.ids();
            let list = ids.iter().map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(",");
            let script = dir.path().join("get.lua");
            std::fs::write(&script, format!("local ids = {{{list}}}\nlocal n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format(\"GET\", \"/api/v1/sessions/\" .. ids[(n % #ids) + 1], {{[\"Authorization\"] = \"Bearer {}\"}})\nend\n", load.admin)).expect("script");
            let url = load.base.clone();
            let run = tokio::task::spawn_blocking(move || common::proc::wrk(&url, &script, 4, 5)).await.expect("wrk");
            let api_p99 = wrk_ms(&run.p99);
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            let n = ids.len();
            let (qr50, qr99) = (quantile(&mut to_qr, 0.5), quantile(&mut to_qr, 0.99));
            println!(
                "| {n} | {:.0} MiB | {:.1} MiB | {:.0} MiB | {cpu:.0} | {:.2} / {:.2} s | {:.2} / {:.2} s | {} | {} |",
                mib(pss),
                mib(pss) / n as f64,
                mib(rss),
                qr50.as_secs_f64(),
                qr99.as_secs_f64(),
                quantile(&mut to_ready, 0.5).as_secs_f64(),
                quantile(&mut to_ready, 0.99).as_secs_f64(),
                if sent.is_empty() { "–".to_owned() } else { format!("{:.2} s ({} sends)", quantile(&mut sent, 0.99).as_secs_f64(), sent.len()) },
                run.p99,
            );
            let (_, available) = meminfo();
            let used = 1.0 - available as f64 / mem_total.max(1) as f64;
            for (broken, why) in [
                (used > MAX_MEMORY_SHARE, format!("memory {:.0} % of the machine used (bound {:.0} %)", used * 100.0, MAX_MEMORY_SHARE * 100.0)),
                (qr99 > MAX_CONNECT_TO_QR, format!("connect→QR p99 {:.2} s over {MAX_CONNECT_TO_QR:?}", qr99.as_secs_f64())),
                (api_p99 > MAX_API_P99_MS, format!("GET /api/v1/sessions/{{id}} p99 {} over {MAX_API_P99_MS} ms", run.p99)),
                (run.non_2xx != "0", format!("the API answered {} non-2xx", run.non_2xx)),
            ] {
                if broken {
                    stop_why = why;
                    break 'ramp;
                }
            }
        }
        println!("stopped at {} READY sessions: {stop_why}", load.ids().len());
        load.stop().await;
    });
}

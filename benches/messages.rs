//! `cargo bench --bench messages`: durable message accepts per second —
//! through the outbox writer (group commit) with 256 concurrent callers, and
//! over HTTP (`POST /api/v1/sessions/{id}/messages` under wrk, installed if
//! missing). A message counts once its batch is committed to disk. Prints;
//! asserts nothing.

#[path = "../tests/common/mod.rs"]
mod common;

use centinela_actors::clock::{Clock, SystemClock};
use centinela_actors::engine::scripted::ScriptedEngine;
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::messaging::Outbox;
use centinela_actors::store::{MessageRecord, Store};
use common::api::{api_config, start_api, ADMIN, ADMIN_PASSWORD};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const CALLERS: usize = 256;
const PER_CALLER: usize = 200;

fn record(i: usize) -> MessageRecord {
    let now = SystemClock.now();
    MessageRecord::queued(
        TenantId::new("bench").expect("id"),
        SessionId::new(format!("s{}", i % 50)).expect("id"),
        "5491100000000".into(),
        format!("hola {i}"),
        now,
    )
    .with_key(Some(format!("k{i}")))
}

async fn bench_outbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let (outbox, _task) = Outbox::start(Arc::new(store), None);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CALLERS {
        let outbox = outbox.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..PER_CALLER {
                outbox
                    .accept(record(c * PER_CALLER + n))
                    .await
                    .expect("accepted");
            }
        }));
    }
    for t in tasks {
        t.await.expect("caller");
    }
    let total = CALLERS * PER_CALLER;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "outbox: {total} durable accepts by {CALLERS} callers in {secs:.2} s = {:.0} accepts/s",
        total as f64 / secs
    );
}

async fn bench_http() {
    common::proc::ensure_wrk();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_api(api_config(dir.path()), ScriptedEngine::new(), None).await;
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let (token, _) = s.api.tenant_with_user(&admin, "bench").await;
    let session = s.api.create_session(&token, None, "desk").await;
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{{\"to\":\"5491100000000\",\"text\":\"hola\"}}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {token}\"\nwrk.path = \"/api/v1/sessions/{session}/messages\"\n"
        ),
    )
    .expect("script");
    let url = s.server.url("");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("wrk")
            .args(["-t1", "-c128", "-d10s", "--latency", "-s"])
            .arg(&script)
            .arg(url)
            .output()
            .expect("wrk")
    })
    .await
    .expect("wrk task");
    let text = String::from_utf8_lossy(&out.stdout);
    let pick = |p: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(p))
            .map(str::trim)
            .unwrap_or("?")
            .to_owned()
    };
    println!(
        "POST /api/v1/sessions/{{id}}/messages (wrk -t1 -c128 -d10s): {} | latency {} | {} | {}",
        pick("Requests/sec"),
        pick("50%"),
        pick("99%"),
        pick("Non-2xx")
    );
    let _ = s.server.shutdown().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        bench_outbox().await;
        bench_http().await;
    });
}

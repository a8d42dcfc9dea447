//! `cargo bench --bench otp`: verification codes through the API, end to
//! end — `POST /api/v1/otp`, the code's message through the outbox and a
//! session's sender to the (scripted) engine, then `POST
//! /api/v1/otp/{id}/verify` with the code the engine was handed. Pacing,
//! typing and the limits are lifted (they are anti-ban waits, not work),
//! so the figure is the service's cost: the HTTP layer, the HMACs and the
//! redb transactions of each issue, send and verify. Prints; asserts nothing.

#[path = "../tests/common/mod.rs"]
mod common;

use centinela_actors::engine::scripted::ScriptedEngine;
use common::api::{api_config, start_api, Cred, Ws, ADMIN, ADMIN_PASSWORD};
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const SESSIONS: usize = 8;
const CALLERS: usize = 32;
const PER_CALLER: usize = 25;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

/// OTP ids whose `otp.sent` the WebSocket showed.
#[derive(Default)]
struct Sent {
    ids: Mutex<HashSet<String>>,
    changed: Notify,
}

impl Sent {
    async fn wait(&self, id: &str) {
        loop {
            let changed = self.changed.notified();
            if self.ids.lock().expect("lock").contains(id) {
                return;
            }
            tokio::time::timeout(Duration::from_secs(60), changed)
                .await
                .expect("otp.sent within a minute");
        }
    }
}

async fn run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = api_config(dir.path());
    config.messaging.send_delay_min = Duration::ZERO;
    config.messaging.send_delay_max = Duration::ZERO;
    config.messaging.sends_per_minute = 1_000_000;
    config.messaging.typing_chars_per_second = 0;
    config.messaging.new_contacts_per_day = 1_000_000;
    config.messaging.warmup_days = 0;
    config.otp.per_phone_per_day = 1_000_000;
    config.otp.per_address_per_hour = 1_000_000;
    config.antiban.max_live_sessions = SESSIONS as u32;
    let s = start_api(config, ScriptedEngine::new(), None).await;
    let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        let r = s.ready_session(&format!("t{}", sessions.len())).await;
        sessions.push(r.id);
    }
    let sent = Arc::new(Sent::default());
    let mut ws = Ws::connect(&s.api.base, &format!("token={admin}")).await;
    let reader = {
        let sent = sent.clone();
        tokio::spawn(async move {
            loop {
                let v = ws.next(|v| v["type"] == "otp.sent").await;
                let id = v["otp_id"].as_str().unwrap_or_default().to_owned();
                sent.ids.lock().expect("lock").insert(id);
                sent.changed.notify_waiters();
            }
        })
    };
    println!("setup: {SESSIONS} READY sessions (scripted engine), {CALLERS} callers × {PER_CALLER} codes");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CALLERS {
        let (api, admin, engine, sent) =
            (s.api.clone(), admin.clone(), s.engine.clone(), sent.clone());
        let session = sessions[c % SESSIONS].clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(PER_CALLER);
            for n in 0..PER_CALLER {
                let t0 = Instant::now();
                let phone = format!("+54911{:04}{:04}", 2000 + c, n);
                let r = api
                    .call(
                        "POST",
                        "/api/v1/otp",
                        Cred::Token(&admin),
                        Some(json!({"phone": phone, "session_id": session, "purpose": "login"})),
                    )
                    .await;
                assert_eq!(r.status, 201, "{}", r.text);
                let id = r.body["id"].as_str().expect("id").to_owned();
                sent.wait(&id).await;
                let digits = phone.trim_start_matches('+');
                let code = engine
                    .sent()
                    .iter()
                    .rev()
                    .find(|(_, to, _)| to == digits)
                    .and_then(|(_, _, text)| text.split(' ').next().map(str::to_owned))
                    .expect("the code was handed to the engine");
                let r = api
                    .call(
                        "POST",
                        &format!("/api/v1/otp/{id}/verify"),
                        Cred::Token(&admin),
                        Some(json!({"code": code})),
                    )
                    .await;
                assert_eq!(r.status, 200, "{}", r.text);
                latencies.push(t0.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("caller"));
    }
    let elapsed = start.elapsed();
    all.sort();
    let codes = all.len();
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "otp: {codes} codes sent and verified in {:.2} s: {:.0} sends+verifies/s ({:.0} codes/s end to end), per code p50 {:.1} ms, p99 {:.1} ms",
        elapsed.as_secs_f64(),
        (2 * codes) as f64 / elapsed.as_secs_f64(),
        codes as f64 / elapsed.as_secs_f64(),
        pct(0.5).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
    );
    reader.abort();
    s.server.shutdown().await.expect("shutdown");
}

//! `cargo bench --bench api`: with 1,000 sessions (scripted engine — this is
//! about the HTTP layer), prints the throughput and p50/p99 latency of
//! `GET /api/v1/sessions/{id}` under wrk on loopback (installed from Debian
//! when missing), and the p50/p99 time from a state transition to its
//! delivery at 1,000 connected WebSocket clients. Prints; asserts nothing.

#[path = "../tests/common/mod.rs"]
mod common;

use centinela_actors::engine::scripted::ScriptedEngine;
use common::api::{api_config, start_api, Cred, ADMIN, ADMIN_PASSWORD};
use futures::StreamExt;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SESSIONS: usize = 1000;
const CLIENTS: usize = 1000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    common::proc::ensure_wrk();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = api_config(dir.path());
        config.antiban.max_sessions = SESSIONS as u32;
        config.antiban.max_live_sessions = SESSIONS as u32;
        let s = start_api(config, ScriptedEngine::new(), None).await;
        let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
        let mut ids = Vec::with_capacity(SESSIONS);
        for t in 0..SESSIONS / 5 {
            let tenant = format!("tenant{t}");
            let r = s.api.call("POST", "/api/v1/tenants", Cred::Token(&admin), Some(json!({"id": tenant, "name": tenant}))).await;
            assert_eq!(r.status, 201);
            for n in 0..5 {
                ids.push(s.api.create_session(&admin, Some(&tenant), &format!("desk {n}")).await);
            }
        }
        println!("setup: {} sessions of {} tenants", ids.len(), SESSIONS / 5);

        // 1. GET /api/v1/sessions/{id} under wrk.
        let script = dir.path().join("get.lua");
        let list = ids.iter().map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(",");
        std::fs::write(
            &script,
            format!(
                "local ids = {{{list}}}\nlocal n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format(\"GET\", \"/api/v1/sessions/\" .. ids[(n % #ids) + 1], {{[\"Authorization\"] = \"Bearer {admin}\"}})\nend\n"
            ),
        )
        .expect("lua script");
        let out = tokio::task::spawn_blocking({
            let url = s.server.url("");
            let script = script.clone();
            move || {
                Command::new("wrk")
                    .args(["-t1", "-c32", "-d10s", "--latency", "-s"])
                    .arg(&script)
                    .arg(url)
                    .output()
                    .expect("run wrk")
            }
        })
        .await
        .expect("wrk task");
        let text = String::from_utf8_lossy(&out.stdout);
        let pick = |prefix: &str| text.lines().find(|l| l.trim_start().starts_with(prefix)).map(str::trim).unwrap_or("?").to_owned();
        println!("GET /api/v1/sessions/{{id}} (wrk -t1 -c32 -d10s): {} | latency {} | {} | non-2xx: {}", pick("Requests/sec"), pick("50%"), pick("99%"), pick("Non-2xx").replace("Non-2xx or 3xx responses:", ""));

        // 2. Fan-out to 1,000 WebSocket clients.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, i64, i64)>();
        let base = s.api.base.replacen("http://", "ws://", 1);
        for _ in 0..CLIENTS {
            let (mut ws, _) = tokio_tungstenite::connect_async(format!("{base}/api/v1/ws?token={admin}")).await.expect("ws");
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(Ok(msg)) = ws.next().await {
                    let received = now_ms();
                    if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                        let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                        if v["type"] == "transition" {
                            let at = v["at"].as_str().and_then(centinela_actors::clock::Timestamp::parse_rfc3339).map_or(0, |t| t.as_millis());
                            let _ = tx.send((v["session_id"].as_str().unwrap_or_default().to_owned(), at, received));
                        }
                    }
                }
            });
        }
        println!("{CLIENTS} WebSocket clients connected");
        let mut delays = Vec::new();
        for id in ids.iter().take(20) {
            // One connect: DISCONNECTED→CONNECTING→QR, each delivered to every client.
            s.api.call("POST", &format!("/api/v1/sessions/{id}/connect"), Cred::Token(&admin), None).await;
            let mut got = 0;
            while got < 2 * CLIENTS {
                let (sid, at, received) = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.expect("delivery").expect("open");
                if sid == *id {
                    delays.push(received - at);
                    got += 1;
                }
            }
        }
        delays.sort_unstable();
        println!(
            "transition → delivery at {CLIENTS} clients: {} deliveries, p50 {} ms, p99 {} ms, max {} ms",
            delays.len(),
            percentile(&delays, 0.5),
            percentile(&delays, 0.99),
            delays[delays.len() - 1]
        );
        let _ = s.server.shutdown().await;
    });
}

//! `cargo bench --bench store [-- --messages N]`: whether costs grow with
//! data. One session's store is filled to 10³ and then to N (default 10⁶)
//! outgoing messages (finished: delivered, with engine ids and idempotency
//! keys), beside 1,000 ended campaigns and 10 running ones. At each level
//! it prints: the fill rate (one commit per 5,000), durable accepts/s over
//! HTTP (`POST …/messages` under wrk, 64 connections), the p99 of
//! `GET …/messages?limit=50` for the first (newest) and the last (oldest)
//! page under wrk, the p99 of an idempotency lookup, a campaign step's
//! store work (read the running campaigns, look up the last message by
//! key, write the record), and the redb file's size. The server runs with
//! the scripted engine (this is about the store). Prints; asserts nothing.

#[path = "../tests/common/mod.rs"]
mod common;

use centinela_actors::clock::Timestamp;
use centinela_actors::engine::scripted::ScriptedEngine;
use centinela_actors::ids::{SessionId, TenantId};
use centinela_actors::store::{
    CampaignRecord, CampaignRepo, CampaignStatus, MessageRecord, MessageRepo, MessageStatus,
    Recipient, Store,
};
use common::api::{api_config, start_api, ADMIN, ADMIN_PASSWORD};
use common::proc::{wrk, wrk_script};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TENANT: &str = "bench";
const USER_PASSWORD: &str = "tenant-password-1";
const BATCH: usize = 5_000;
/// Created-at of message 0; message i is `BASE + i` ms.
const BASE: i64 = 1_700_000_000_000;

fn message_id(i: usize) -> String {
    format!("m_{i:010}")
}

fn message(session: &SessionId, i: usize) -> MessageRecord {
    let at = Timestamp::from_millis(BASE + i as i64);
    let mut m = MessageRecord::queued(
        TenantId::new(TENANT).expect("id"),
        session.clone(),
        format!("54911{:08}", i % 50_000),
        format!(
            "Hola, su turno es el {} a las 10:30. Responda SI para confirmar.",
            i % 28 + 1
        ),
        at,
    )
    .with_key(Some(format!("k{i}")));
    m.id = message_id(i);
    m.status = MessageStatus::Delivered;
    m.engine_id = Some(format!("true_54911{:08}@c.us_3EB0{i:016X}", i % 50_000));
    m
}

fn campaign(session: &SessionId, id: String, status: CampaignStatus) -> CampaignRecord {
    CampaignRecord {
        id,
        tenant: TenantId::new(TENANT).expect("id"),
        session: session.clone(),
        name: "recordatorios".into(),
        template: "Hola {name}, su turno es mañana.".into(),
        recipients: (0..1_000)
            .map(|i| Recipient {
                to: format!("54911{i:08}"),
                vars: BTreeMap::from([("name".to_owned(), format!("Paciente {i}"))]),
            })
            .collect(),
        status,
        next: 500,
        sent: 499,
        failed: 0,
        created_at: Timestamp::from_millis(BASE),
        updated_at: Timestamp::from_millis(BASE),
        paused: None,
    }
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * 0.99).round() as usize]
}

fn top_level() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--messages")
        .and_then(|i| args.get(i + 1))
        .map_or(1_000_000, |n| n.parse().expect("--messages N"))
}

/// Store-level figures at this fill: (idempotency lookup p99, campaign
/// step p99).
fn store_figures(store: &Store, filled: usize) -> (Duration, Duration) {
    let tenant = TenantId::new(TENANT).expect("id");
    let lookups: Vec<Duration> = (0..2_000)
        .map(|n| {
            let key = format!("k{}", (n * 7_919) % filled);
            let t = Instant::now();
            let found = store.by_idempotency_key(&tenant, &key).expect("lookup");
            let d = t.elapsed();
            assert!(found.is_some(), "{key} is stored");
            d
        })
        .collect();
    let steps: Vec<Duration> = (0..200)
        .map(|n| {
            let t = Instant::now();
            let running = store.running_campaigns().expect("running");
            let mut c = running[n % running.len()].clone();
            let last = store
                .by_idempotency_key(&tenant, &format!("k{}", n % filled))
                .expect("last");
            assert!(last.is_some());
            c.sent += 1;
            store.put_campaign(&c).expect("save");
            t.elapsed()
        })
        .collect();
    (p99(lookups), p99(steps))
}

fn main() {
    let top = top_level();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = api_config(dir.path());
        // The tenant, its user and session, through the API.
        let s = start_api(config.clone(), ScriptedEngine::new(), None).await;
        let admin = s.api.login(ADMIN, ADMIN_PASSWORD).await;
        s.api.tenant_with_user(&admin, TENANT).await;
        let token = s.api.login(&format!("{TENANT}-user"), USER_PASSWORD).await;
        let id = s.api.create_session(&token, None, "desk").await;
        s.server.shutdown().await.expect("shutdown");
        let session = SessionId::new(id.clone()).expect("id");

        println!("| stored messages | fill (msg/s) | POST accepts/s | GET first page p99 | GET last page p99 | idempotency p99 | campaign step p99 | redb file |");
        println!("|---|---|---|---|---|---|---|---|");
        let mut filled = 0;
        for level in [1_000, top] {
            let store = Store::open(dir.path()).expect("open");
            if filled == 0 {
                for n in 0..1_000 {
                    store
                        .put_campaign(&campaign(&session, format!("c_done_{n}"), CampaignStatus::Completed))
                        .expect("campaign");
                }
                for n in 0..10 {
                    store
                        .put_campaign(&campaign(&session, format!("c_run_{n}"), CampaignStatus::Running))
                        .expect("campaign");
                }
            }
            let t = Instant::now();
            let added = level.saturating_sub(filled);
            while filled < level {
                let end = (filled + BATCH).min(level);
                let batch: Vec<MessageRecord> = (filled..end).map(|i| message(&session, i)).collect();
                store.accept(&batch).expect("accept");
                filled = end;
            }
            let fill_rate = added as f64 / t.elapsed().as_secs_f64();
            let (idem, step) = store_figures(&store, filled);
            drop(store);

            let s = start_api(config.clone(), ScriptedEngine::new(), None).await;
            let token = s.api.login(&format!("{TENANT}-user"), USER_PASSWORD).await;
            let url = s.server.url("");
            let work = dir.path().to_path_buf();
            let path = format!("/api/v1/sessions/{id}/messages");
            let (first, last, post) = tokio::task::spawn_blocking(move || {
                let first = wrk_script(&work, "first.lua", "GET", &format!("{path}?limit=50"), &token, None);
                let last = wrk_script(
                    &work,
                    "last.lua",
                    "GET",
                    &format!("{path}?limit=50&before={}", message_id(50)),
                    &token,
                    None,
                );
                let post = wrk_script(
                    &work,
                    "post.lua",
                    "POST",
                    &path,
                    &token,
                    Some(r#"{"to":"5491100000000","text":"hola"}"#),
                );
                (wrk(&url, &first, 8, 5), wrk(&url, &last, 8, 5), wrk(&url, &post, 64, 5))
            })
            .await
            .expect("wrk");
            s.server.shutdown().await.expect("shutdown");
            for (name, run) in [("first page", &first), ("last page", &last), ("post", &post)] {
                assert_eq!(run.non_2xx, "0", "{name}: every answer 2xx ({run:?})");
            }
            let size = std::fs::metadata(dir.path().join("centinela.redb")).expect("stat").len();
            println!(
                "| {filled} | {fill_rate:.0} | {} | {} | {} | {:.2} ms | {:.2} ms | {:.1} MiB |",
                post.requests_per_sec,
                first.p99,
                last.p99,
                idem.as_secs_f64() * 1e3,
                step.as_secs_f64() * 1e3,
                size as f64 / (1024.0 * 1024.0)
            );
        }
    });
}

//! Fleet failover with real browsers: two `centinela serve` processes on
//! one throwaway PostgreSQL and one `centinela sim` (WhatsApp: it does not
//! die with a node), real Chromium, real engine. The owner of a paired
//! session is `kill -9`ed; the other node takes the tenant once its lease
//! has run out, restores the profile snapshot the owner stored when the
//! pairing became durable, and the session is READY again without a QR.

#[path = "../fleet/tests/common/mod.rs"]
mod pg;

mod common;

use common::api::{Api, Cred, Ws};
use common::browser::browser_slot;
use common::proc::{spawn_serve_logged, spawn_until, terminate, until_logged};
use pg::PgCluster;
use serde_json::json;
use std::time::{Duration, Instant};

const PASSWORD: &str = "fleet-test-password";
const KEY: &str = "3f6c1d0a9b8e7f6a5c4b3a29181706f5e4d3c2b1a09f8e7d6c5b4a3928170605";

fn env(pg: &PgCluster, node: &str, wa_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CENTINELA_ADMIN_PASSWORD", PASSWORD.into()),
        ("CENTINELA__ENGINE__WA_URL", wa_url.into()),
        ("CENTINELA__ANTIBAN__CONNECT_DELAY", "0s".into()),
        ("CENTINELA__ANTIBAN__CONNECT_JITTER_MIN", "0s".into()),
        ("CENTINELA__ANTIBAN__CONNECT_JITTER_MAX", "0s".into()),
        ("CENTINELA__ANTIBAN__QUEUE_SPACING", "0s".into()),
        ("CENTINELA__STORAGE__SECRET_KEY", KEY.into()),
        ("CENTINELA__FLEET__DATABASE_URL", pg.url()),
        ("CENTINELA__FLEET__NODE_ID", node.into()),
        (
            "CENTINELA__FLEET__ADVERTISE_URL",
            format!("http://{node}.invalid"),
        ),
        ("CENTINELA__FLEET__LEASE_TTL", "3s".into()),
        ("CENTINELA__FLEET__EGRESS", "203.0.113.7".into()),
    ]
}

fn node(
    pg: &PgCluster,
    name: &str,
    data: &std::path::Path,
    wa_url: &str,
) -> (std::process::Child, Api, std::sync::mpsc::Receiver<String>) {
    let env = env(pg, name, wa_url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let data = data.to_string_lossy().into_owned();
    // In a process group of its own: a kill of the group is a container's
    // kill (the node and every browser it started).
    let (child, listen, lines) = spawn_serve_logged(&data, &env, true);
    (child, Api::new(&format!("http://{listen}")), lines)
}

async fn admin_with_tenant(api: &Api) -> String {
    let admin = api.login("admin", PASSWORD).await;
    let r = api
        .call(
            "POST",
            "/api/v1/tenants",
            Cred::Token(&admin),
            Some(json!({"id": "clinic", "name": "Clinic"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    admin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_of_the_owner_brings_the_session_back_ready_elsewhere_without_a_qr() {
    let _slot = browser_slot().await;
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sim, sim_listen, _) = spawn_until(
        &["sim", "--listen", "127.0.0.1:0"],
        &[],
        "simulator serving",
    );
    let sim_api = Api::new(&format!("http://{sim_listen}"));
    let wa_url = format!("http://{sim_listen}/sim/wa/");

    let (a, api_a, log_a) = node(&pg, "node-a", &dir.path().join("a"), &wa_url);
    let (b, api_b, _log_b) = node(&pg, "node-b", &dir.path().join("b"), &wa_url);
    let admin_a = admin_with_tenant(&api_a).await;
    let admin_b = admin_with_tenant(&api_b).await;
    let session = api_a.create_session(&admin_a, Some("clinic"), "desk").await;
    let mut ws_a = Ws::connect(&api_a.base, &format!("token={admin_a}")).await;
    let mut ws_b = Ws::connect(&api_b.base, &format!("token={admin_b}")).await;
    api_a.session_action(&admin_a, &session, "connect").await;
    let qr = ws_a.until_state(&session, "QR").await;
    let r = sim_api
        .call(
            "POST",
            "/sim/scan",
            Cred::None,
            Some(json!({"qr": qr["to"]["code"], "phone": "5491122334455"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    ws_a.until_state(&session, "READY").await;
    // The owner stores the profile once the page says the pairing is durable.
    let stored = until_logged(&log_a, "profile stored in the fleet", common::WAIT);
    assert_eq!(stored["fields"]["session"], session.as_str());

    let killed = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", a.id())])
        .status()
        .expect("kill");
    assert!(killed.success());
    let at = Instant::now();
    let mut a = a;
    let _ = a.wait();

    // node-b takes the tenant when the lease has run out, and restores it.
    let mut states = Vec::new();
    loop {
        let t = ws_b
            .next(|v| v["type"] == "transition" && v["session_id"] == session.as_str())
            .await;
        let state = t["to"]["state"].as_str().unwrap_or_default().to_owned();
        states.push(state.clone());
        if state == "READY" {
            break;
        }
    }
    let failover = at.elapsed();
    eprintln!("failover: kill -9 → READY on node-b in {failover:?}");
    assert!(!states.contains(&"QR".to_owned()), "no QR: {states:?}");
    let view = api_b
        .call(
            "GET",
            &format!("/api/v1/sessions/{session}"),
            Cred::Token(&admin_b),
            None,
        )
        .await;
    assert_eq!(view.status, 200, "{}", view.text);
    assert_eq!(view.body["phone"], "5491122334455");
    // Within the lease, a claim period and a restore (generous on 2 cores).
    assert!(failover < Duration::from_secs(60), "{failover:?}");
    let fleet = centinela_fleet::Fleet::connect(&pg.url(), 1)
        .await
        .expect("connect");
    let reader = centinela_fleet::NodeId::new("reader").expect("id");
    let leases = centinela_fleet::Leases::new(&fleet, reader, Duration::from_secs(3));
    let clinic = centinela_actors::ids::TenantId::new("clinic").expect("id");
    let (owner, epoch) = leases
        .owner_of(&clinic)
        .await
        .expect("owner")
        .expect("owned");
    assert_eq!(
        (owner.as_str(), epoch.0),
        ("node-b", 2),
        "moved at the next epoch"
    );

    terminate(b);
    let _ = sim.kill();
    let _ = sim.wait();
}

//! The simulator is a faithful model of WhatsApp Web: the unmodified
//! whatsapp-web.js 1.34.7 (pinned in `tests/conformance/wwebjs/`) drives it
//! in real Chromium, loading it as `https://web.whatsapp.com/` through a
//! host-resolver rule, and must pass every step of `conformance.js` — QR,
//! send, incoming (chat, history, `@lid`), acks, chat states and seen marks
//! (recorded by the simulator's server, in order), restart without a QR,
//! pairing code, and both logouts. `./test.sh` installs Node and the npm
//! packages (scripts/ensure-deps.sh).

mod common;

use centinela_web::sim::SimOptions;
use common::browser::{browser_slot, Sim};
use std::path::Path;
use std::time::Duration;

/// Longer than the script's own whole-run limit (240 s), so the script
/// reports which step failed before this gives up.
const RUN_LIMIT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_web_js_drives_the_simulator() {
    let _slot = browser_slot().await;
    let sim = Sim::start_with(SimOptions::default(), true).await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/wwebjs");
    assert!(
        dir.join("node_modules/whatsapp-web.js/package.json")
            .exists(),
        "npm packages missing: run ./test.sh (scripts/ensure-deps.sh installs them)"
    );
    let chromium = std::env::var("CENTINELA__ENGINE__CHROMIUM_PATH")
        .unwrap_or_else(|_| "/usr/bin/chromium".into());
    let run = tokio::process::Command::new("node")
        .arg("conformance.js")
        .current_dir(&dir)
        .env("SIM_ADDR", sim.addr.to_string())
        .env("CHROMIUM", chromium)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(RUN_LIMIT, run)
        .await
        .expect("the conformance run ends within its limit")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.lines().any(|l| l == "8 passed, 0 failed"),
        "whatsapp-web.js against the simulator:\n{stdout}\n{stderr}"
    );
}

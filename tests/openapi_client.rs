//! The OpenAPI document is complete enough to generate a working client:
//! `openapi-python-client` (pinned in `tests/openapi_client/requirements.txt`)
//! generates a typed Python client from a running `serve --demo`'s own
//! `/api/openapi.json`, and `flow.py` drives one whole flow with it — log
//! in, tenant, session, connect, QR, link on the demo phone, READY, send,
//! the message's status, a typed 404 — parsing every answer into the
//! generated models. `./test.sh` installs Python's packages
//! (scripts/ensure-deps.sh).

mod common;

use common::browser::browser_slot;
use common::proc::{spawn_serve_with, terminate};
use std::path::Path;
use std::time::Duration;

/// Longer than the flow's own waits (120 s each), so the flow reports
/// which step failed before this gives up.
const RUN_LIMIT: Duration = Duration::from_secs(300);
const PASSWORD: &str = "an-admin-password";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_generated_from_the_openapi_document_drives_a_session() {
    let _slot = browser_slot().await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi_client");
    let venv = dir.join(".venv/bin");
    assert!(
        venv.join("openapi-python-client").exists(),
        "Python packages missing: run ./test.sh (scripts/ensure-deps.sh installs them)"
    );
    let data = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let data_path = data.path().to_string_lossy().into_owned();
    let (child, listen, _) = spawn_serve_with(
        &data_path,
        &["--demo"],
        &[("CENTINELA_ADMIN_PASSWORD", PASSWORD)],
    );
    let path = format!(
        "{}:{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = tokio::process::Command::new(venv.join("python"))
        .arg(dir.join("flow.py"))
        .arg(format!("http://{listen}"))
        .arg(PASSWORD)
        .arg(work.path())
        .env("PATH", path)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(RUN_LIMIT, run)
        .await
        .expect("the flow ends within its limit")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.lines().any(|l| l == "flow passed"),
        "the generated client's flow:\n{stdout}\n{stderr}"
    );
    assert!(terminate(child).success(), "serve stops cleanly");
}

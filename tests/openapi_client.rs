//! The OpenAPI document is complete enough to generate a working client:
//! `openapi-python-client` (pinned in `tests/openapi_client/requirements.txt`)
//! generates a typed Python client from a running `serve --demo`'s own
//! `/api/openapi.json`, and `flow.py` drives one whole flow with it — log
//! in, tenant, session, connect, QR, link on the demo phone, READY, send,
//! the message's status, a typed 404 — parsing every answer into the
//! generated models. `./test.sh` installs Python's packages
//! (scripts/ensure-deps.sh).

mod common;

use common::api::{Api, Ws};
use common::browser::browser_slot;
use common::proc::{spawn_serve_with, terminate};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The whole flow's limit; each event it waits for has the WebSocket
/// helper's own (shorter) wait, which names the event that did not come.
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
    let base = format!("http://{listen}");
    // Follows every event from before the flow starts, so none is missed.
    let api = Api::new(&base);
    let admin = api.login("admin", PASSWORD).await;
    let mut ws = Ws::connect(&base, &format!("token={admin}")).await;
    let path = format!(
        "{}:{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut flow = tokio::process::Command::new(venv.join("python"))
        .arg(dir.join("flow.py"))
        .arg(&base)
        .arg(PASSWORD)
        .arg(work.path())
        .env("PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python runs");
    let mut answers = flow.stdin.take().expect("stdin");
    let mut lines = BufReader::new(flow.stdout.take().expect("stdout")).lines();
    let mut stdout = Vec::new();
    let deadline = tokio::time::Instant::now() + RUN_LIMIT;
    while let Some(line) = tokio::time::timeout_at(deadline, lines.next_line())
        .await
        .expect("the flow ends within its limit")
        .expect("read the flow's output")
    {
        stdout.push(line.clone());
        let Some(event) = line.strip_prefix("wait ") else {
            continue;
        };
        match event.split(' ').collect::<Vec<_>>()[..] {
            ["state", session, state] => {
                ws.until_state(session, state).await;
            }
            ["message", id] => {
                // Sent (or further), or failed: never a status on the way.
                let settled = ["sent", "delivered", "read", "played", "failed"];
                let v = ws
                    .next(|v| {
                        v["type"] == "message_status"
                            && v["message_id"] == id
                            && settled.iter().any(|s| v["status"] == *s)
                    })
                    .await;
                assert_ne!(v["status"], "failed", "{v}");
            }
            _ => panic!("the flow asked for an unknown event: {line}"),
        }
        answers.write_all(b"came\n").await.expect("answer the flow");
    }
    let out = tokio::time::timeout_at(deadline, flow.wait_with_output())
        .await
        .expect("the flow ends within its limit")
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = stdout.join("\n");
    assert!(
        out.status.success() && stdout.lines().any(|l| l == "flow passed"),
        "the generated client's flow:\n{stdout}\n{stderr}"
    );
    assert!(terminate(child).success(), "serve stops cleanly");
}

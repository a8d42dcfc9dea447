//! `centinela doctor` checks that a WhatsApp Web page still offers every
//! module and function the engine uses: it passes against the simulator and
//! fails, naming the module, against a simulator that never registers one
//! (as a WhatsApp Web update that renamed it would). The binary, real
//! Chromium, the simulator as its own process.

mod common;

use common::browser::browser_slot;
use common::proc::{spawn_until, BIN};
use std::process::Command;

fn doctor(wa_url: &str) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["doctor", "--wa-url", wa_url])
        .env("RUST_LOG", "warn")
        .output()
        .expect("doctor runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_on_the_contract_and_names_a_missing_module() {
    let _slot = browser_slot().await;
    let (mut sim, listen, _) = spawn_until(
        &["sim", "--listen", "127.0.0.1:0"],
        &[],
        "simulator serving",
    );
    let (ok, table) = doctor(&format!("http://{listen}/sim/wa/"));
    assert!(ok, "{table}");
    assert!(table.contains("WhatsApp Web 2.3000"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("WAWebSendMsgChatAction") && l.ends_with("ok")),
        "{table}"
    );
    let _ = sim.kill();
    let _ = sim.wait();

    let (mut sim, listen, _) = spawn_until(
        &[
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--without-module",
            "WAWebMsgKey",
        ],
        &[],
        "simulator serving",
    );
    let (ok, table) = doctor(&format!("http://{listen}/sim/wa/"));
    assert!(!ok, "a missing module fails the check:\n{table}");
    let line = table
        .lines()
        .find(|l| l.starts_with("WAWebMsgKey"))
        .unwrap_or_else(|| panic!("the table names the module:\n{table}"));
    assert!(line.contains(" no "), "{line}");
    assert!(table.contains("FAILED"), "{table}");
    let _ = sim.kill();
    let _ = sim.wait();
}

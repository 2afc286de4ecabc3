//! ghz, the load tester the gateway's users run, against the real server on 127.0.0.1:0 through
//! server reflection: every call of a bounded run is answered, with the code that means what
//! happened. ghz is in no package registry the project's machines reach, so the test is ignored:
//! the test count shows it did not run, instead of a pass. `cargo test -- --ignored` runs it where
//! ghz is on `PATH` (and fails where it is not). The project's own load tool,
//! `ecs-gateway-load`, drives the bench instead.

use std::path::PathBuf;

use crate::support::{Gateway, Setup, ecs_client, start_simulator, test_credential};
use ecs_gateway::simulator::SimulatorConfig;

fn ghz() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("ghz"))
            .find(|candidate| candidate.is_file())
    })
}

/// Runs a bounded ghz load (`total` calls, 50 at a time) and returns its JSON report.
async fn run(
    ghz: &PathBuf,
    addr: std::net::SocketAddr,
    data: &str,
    total: u32,
) -> serde_json::Value {
    let output = tokio::process::Command::new(ghz)
        .args([
            "--insecure",
            "--call",
            "ecsgateway.v1.CloudAssistantService/StopInvocation",
        ])
        .args([
            "-d",
            data,
            "-n",
            &total.to_string(),
            "-c",
            "50",
            "-t",
            "10s",
            "-O",
            "json",
        ])
        .arg(addr.to_string())
        .output()
        .await
        .expect("ghz runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("ghz prints a JSON report")
}

#[tokio::test]
#[ignore = "needs ghz on PATH, which is in no registry these machines reach; run with --ignored"]
async fn ghz_gets_an_answer_for_every_call_with_the_code_that_fits() {
    let ghz =
        ghz().expect("ghz on PATH: this test runs only with --ignored where ghz is installed");
    let (url, simulator) =
        start_simulator(SimulatorConfig::with_credential(test_credential())).await;
    // Load, not the account's quota (tests/gateway/quota.rs), is what this drives.
    let setup = Setup {
        flags: vec!["--api-quota", "StopInvocation=1000000/60s"],
        ..Setup::default()
    };
    let gateway = Gateway::start_setup(ecs_client(&url, test_credential()), setup, None).await;

    let ok = run(
        &ghz,
        gateway.addr,
        r#"{"region_id":"cn-hangzhou","invoke_id":"t-demo0001"}"#,
        2000,
    )
    .await;
    assert_eq!(ok["count"], 2000, "{ok}");
    assert_eq!(ok["statusCodeDistribution"]["OK"], 2000, "{ok}");
    let sent = simulator.requests_received();
    assert_eq!(sent, 2000);

    // A misspelt region: all refused by the gateway itself, none sent upstream.
    let refused = run(
        &ghz,
        gateway.addr,
        r#"{"region_id":"cn-hangzou","invoke_id":"t-demo0001"}"#,
        1000,
    )
    .await;
    assert_eq!(
        refused["statusCodeDistribution"]["NotFound"], 1000,
        "{refused}"
    );
    assert_eq!(simulator.requests_received(), sent);
}

//! The real binary: refuses to start without credentials, and drains in-flight calls on SIGTERM.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{request, start_simulator, test_credential};
use ecs_gateway::pb::cloud_assistant_service_client::CloudAssistantServiceClient;
use ecs_gateway::simulator::SimulatorConfig;
use ecs_gateway::simulator::faults::Faults;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_ecs-gateway");

fn gateway_command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
        .env_remove("RUST_LOG")
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Reads JSON log lines until the "listening" one; returns the address.
async fn listening_addr(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["message"] == "ecs-gateway listening" {
                return v["addr"].as_str().unwrap().to_owned();
            }
        }
        panic!("the gateway exited before listening");
    })
    .await
    .expect("the gateway starts");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    addr
}

#[tokio::test]
async fn without_credentials_the_gateway_refuses_to_start_and_names_the_variable() {
    let output = gateway_command().output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ALIBABA_CLOUD_ACCESS_KEY_ID"), "{stderr}");

    let output = gateway_command()
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIsomething")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_bad_endpoint_is_refused_at_start() {
    let output = gateway_command()
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "id")
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")
        .args(["--endpoint", "ftp://nowhere/"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("must be an absolute http:// or https:// URL")
    );
}

#[tokio::test]
async fn sigterm_lets_every_call_in_flight_finish_and_exits_zero() {
    let credential = test_credential();
    let config = SimulatorConfig {
        faults: Faults {
            latency: Some((Duration::from_millis(600), Duration::from_millis(600))),
            ..Faults::default()
        },
        ..SimulatorConfig::with_credential(credential.clone())
    };
    let (url, simulator) = start_simulator(config).await;
    let mut child = gateway_command()
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", credential.access_key_id())
        .env(
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            credential.access_key_secret(),
        )
        .args(["--endpoint", &url])
        .spawn()
        .unwrap();
    let addr = listening_addr(&mut child).await;
    let client = CloudAssistantServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    let calls: Vec<_> = (0..20)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                client
                    .stop_invocation(request("cn-hangzhou", "t-demo0008", &[]))
                    .await
            })
        })
        .collect();
    assert!(
        common::eventually(Duration::from_secs(5), || simulator.requests_received()
            == 20)
        .await
    );

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());

    // While the 20 calls are still draining, the listener is already closed.
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(refused, "new connections are refused once shutdown starts");
    assert!(
        calls.iter().any(|c| !c.is_finished()),
        "checked during the drain, not after it"
    );

    for call in calls {
        call.await
            .unwrap()
            .expect("every in-flight call completes OK");
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "no new connections after shutdown"
    );
}

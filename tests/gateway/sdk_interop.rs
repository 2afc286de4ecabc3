//! Alibaba's own Python SDKs, pointed at the simulator — signing V1 (the legacy SDK, the Tea SDK
//! with `signature_algorithm='v2'`) and V3 (the Tea SDK's default) — get 200 for a good request and
//! SignatureDoesNotMatch for a wrong secret: the simulator judges signatures as ECS does.
//! `scripts/test.sh` installs the SDKs (scripts/test-requirements.txt); without them this fails.

use crate::support::{start_simulator, test_credential};
use ecs_gateway::simulator::ExecutionStatus;
use ecs_gateway::simulator::SimulatorConfig;

#[tokio::test]
async fn alibabas_python_sdks_are_judged_like_ecs_judges_them() {
    let credential = test_credential();
    let (url, simulator) =
        start_simulator(SimulatorConfig::with_credential(credential.clone())).await;
    let host = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let output = tokio::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/sdk/check_sdks.py"
        ))
        .args([
            &host,
            credential.access_key_id(),
            credential.access_key_secret(),
        ])
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let results: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 9, "{stdout}");
    for r in &results {
        match r["case"].as_str().unwrap() {
            "good" => {
                assert_eq!(r["ok"], true, "{r}");
                assert_eq!(r["request_id"].as_str().unwrap().len(), 36, "{r}");
            }
            "wrong-secret" => {
                assert_eq!(r["ok"], false, "{r}");
                assert_eq!(r["status"], 400, "{r}");
                // The legacy SDK compares the string to sign that ECS echoes in SignatureDoesNotMatch
                // with its own; when they are equal it reports InvalidAccessKeySecret instead. So that
                // code proves the simulator's canonicalization matches the SDK's byte for byte.
                let expected = if r["sdk"] == "legacy" {
                    "InvalidAccessKeySecret"
                } else {
                    "SignatureDoesNotMatch"
                };
                assert_eq!(r["code"], expected, "{r}");
            }
            "unknown-invocation" => {
                assert_eq!(r["ok"], false, "{r}");
                assert_eq!(r["code"], "InvalidInvokeId.NotFound", "{r}");
            }
            other => panic!("unexpected case {other}"),
        }
    }
    // The good requests really stopped something: InstanceId.N arrived and was honoured.
    let legacy = simulator.world().get("cn-hangzhou", "t-demo0006").unwrap();
    assert_eq!(
        legacy.executions[1].1,
        ExecutionStatus::Cancelled,
        "{legacy:?}"
    );
    let tea = simulator.world().get("cn-hangzhou", "t-demo0007").unwrap();
    assert_eq!(tea.stops, 1, "{tea:?}");
    let tea_v3 = simulator.world().get("cn-hangzhou", "t-demo0008").unwrap();
    assert_eq!(tea_v3.stops, 1, "{tea_v3:?}");
}

//! Text logs (the default format) carry the call span and never a secret.

mod support;

use ecs_gateway::testing::observe::LogFormat;
use support::log_capture::{assert_no_secrets, run_scenario};

#[tokio::test]
async fn text_logs_hold_the_call_span_and_no_secret() {
    let (logs, request_id) = run_scenario(LogFormat::Text).await;
    assert_no_secrets(&logs);
    let finished: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("call finished"))
        .collect();
    assert_eq!(finished.len(), 1, "{logs}");
    let line = finished[0];
    for field in [
        "region=\"cn-hangzhou\"",
        "invoke_id=\"t-demo0003\"",
        "instances=0",
        "grpc_code=Ok",
        "latency_us=",
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
    assert!(
        line.contains(&format!("request_id=\"{request_id}\"")),
        "{line}"
    );
}

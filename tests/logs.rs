//! JSON logs carry what operators need and never a secret, token, signature or signed URL — even
//! at TRACE, where reqwest and hyper log too.

mod common;

use common::log_capture::{assert_no_secrets, run_scenario};
use ecs_gateway::telemetry::LogFormat;

#[tokio::test]
async fn json_logs_hold_the_call_span_and_no_secret() {
    let (logs, request_id) = run_scenario(LogFormat::Json).await;
    assert_no_secrets(&logs);
    let finished: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "call finished")
        .collect();
    assert_eq!(finished.len(), 1, "{logs}");
    let span = &finished[0]["span"];
    assert_eq!(span["region"], "cn-hangzhou");
    assert_eq!(span["invoke_id"], "t-demo0003");
    assert_eq!(span["instances"], 0);
    assert_eq!(span["request_id"], request_id.as_str());
    assert_eq!(span["grpc_code"], "Ok");
    assert!(span["latency_us"].as_u64().is_some(), "{span}");
}

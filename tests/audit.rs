//! The audit line: one per call, saying who asked (caller and peer), what (region, invoke id,
//! instances) and what came of it (gRPC code, ECS code, RequestId, attempts, latency), for calls
//! refused before ECS too; never the token. And a reload that fails is logged at error level.

mod support;

use std::time::Duration;

use ecs_gateway::simulator::SimulatorConfig;
use ecs_gateway::testing::auth::SecurityFiles;
use ecs_gateway::testing::observe::LogFormat;
use ecs_gateway::testing::server::TlsFiles;
use serde_json::Value;
use support::log_capture::Capture;
use support::pki::{Ca, TempDir};
use support::{gateway_with_access, request, start_simulator, test_credential, with_bearer};

const TOKEN: &str = "audit-token-3b9d0c1e77";
// `printf %s audit-token-3b9d0c1e77 | sha256sum`
const TOKEN_SHA256: &str = "b5a6eb9a40e37fe39be975ec78198ce65188d2dcb68aec9418076518e01c2c1a";

fn with_token(
    region: &str,
    invoke_id: &str,
    token: &str,
) -> tonic::Request<ecs_gateway::pb::StopInvocationRequest> {
    with_bearer(request(region, invoke_id, &["i-demo01a"]), token)
}

/// A gateway in front of `url` that knows one caller, `billing` (its token is `TOKEN`), allowed in
/// cn-hangzhou only; the directory holding its files goes with it.
async fn billing_gateway(url: &str) -> (support::Gateway, TempDir) {
    let dir = TempDir::new();
    let files = SecurityFiles {
        tls: None,
        tokens: Some(dir.write("tokens", &format!("billing sha256:{TOKEN_SHA256}\n"))),
        policy: Some(dir.write(
            "policy.toml",
            "[callers.billing]\nregions = [\"cn-hangzhou\"]\n",
        )),
    };
    (gateway_with_access(url, files).await, dir)
}

#[tokio::test]
async fn every_call_gets_one_audit_line_naming_caller_peer_and_outcome_and_never_the_token() {
    let capture = Capture::shared(LogFormat::Json, "info");
    let (url, _sim) = start_simulator(SimulatorConfig::with_credential(test_credential())).await;
    let (gw, _dir) = billing_gateway(&url).await;
    let mut client = gw.client.clone();

    let ok = client
        .stop_invocation(with_token("cn-hangzhou", "t-demo0001", TOKEN))
        .await
        .unwrap();
    let request_id = ok.get_ref().request_id.clone();
    let missing = client
        .stop_invocation(with_token("cn-hangzhou", "t-nope", TOKEN))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let denied = client
        .stop_invocation(with_token("cn-beijing", "t-demo0002", TOKEN))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let wrong = client
        .stop_invocation(with_token("cn-hangzhou", "t-demo0003", "wrong-token-value"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);

    let logs = capture.text();
    assert!(
        !logs.contains(TOKEN) && !logs.contains("wrong-token-value"),
        "a token was logged: {logs}"
    );
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["span"]["name"] == "StopInvocation")
        .collect();
    // Other tests in this binary log to the same capture: keep this client's connection's lines.
    let first = lines
        .iter()
        .find(|l| l["span"]["invoke_id"] == "t-demo0001");
    let connection = first.map(|l| l["span"]["peer"].clone()).unwrap_or_default();
    let lines: Vec<Value> = lines
        .into_iter()
        .filter(|l| l["span"]["peer"] == connection)
        .collect();
    assert_eq!(lines.len(), 4, "one line per call: {logs}");
    let by_invoke = |id: &str| -> &Value {
        lines
            .iter()
            .map(|l| &l["span"])
            .find(|s| s["invoke_id"] == id)
            .unwrap_or_else(|| panic!("{id}: {logs}"))
    };
    let peer = |span: &Value| span["peer"].as_str().unwrap_or_default().to_owned();

    let ok = by_invoke("t-demo0001");
    assert_eq!(ok["caller"], "token:billing");
    assert!(peer(ok).starts_with("127.0.0.1:"), "{ok}");
    assert_eq!(ok["region"], "cn-hangzhou");
    assert_eq!(ok["instances"], 1);
    assert_eq!(ok["grpc_code"], "Ok");
    assert_eq!(ok["request_id"], request_id.as_str());
    assert_eq!(ok["attempts"], 1);
    assert!(ok["latency_us"].as_u64().is_some(), "{ok}");

    let missing = by_invoke("t-nope");
    assert_eq!(missing["grpc_code"], "NotFound");
    assert_eq!(missing["ecs_code"], "InvalidInvokeId.NotFound");
    assert_eq!(missing["attempts"], 1);
    assert_eq!(
        missing["request_id"].as_str().map(str::len),
        Some(36),
        "{missing}"
    );

    let denied = by_invoke("t-demo0002");
    assert_eq!(denied["caller"], "token:billing");
    assert_eq!(denied["region"], "cn-beijing");
    assert_eq!(denied["grpc_code"], "PermissionDenied");
    assert!(
        denied.get("attempts").is_none(),
        "nothing was sent: {denied}"
    );

    // Refused before the request was read: who and from where, and why.
    let unauthenticated = lines
        .iter()
        .map(|l| &l["span"])
        .find(|s| s["grpc_code"] == "Unauthenticated")
        .expect("the unauthenticated call is audited");
    assert!(peer(unauthenticated).starts_with("127.0.0.1:"));
    assert!(unauthenticated.get("caller").is_none());
}

#[tokio::test]
async fn reads_and_waits_get_audit_lines_as_stops_do() {
    let capture = Capture::shared(LogFormat::Json, "info");
    let (url, _sim) = start_simulator(SimulatorConfig {
        stop_delay: Duration::from_millis(200),
        ..SimulatorConfig::with_credential(test_credential())
    })
    .await;
    let (gw, _dir) = billing_gateway(&url).await;
    let mut client = gw.client.clone();
    let read = ecs_gateway::pb::GetInvocationRequest {
        region_id: "cn-hangzhou".into(),
        invoke_id: "t-demo0010".into(),
        ..Default::default()
    };
    let answer = client
        .get_invocation(with_bearer(read, TOKEN))
        .await
        .unwrap();
    let wait = ecs_gateway::pb::StopInvocationAndWaitRequest {
        region_id: "cn-hangzhou".into(),
        invoke_id: "t-demo0010".into(),
        ..Default::default()
    };
    let mut stream = client
        .stop_invocation_and_wait(with_bearer(wait, TOKEN))
        .await
        .unwrap()
        .into_inner();
    while stream.message().await.unwrap().is_some() {}

    // The wait's line is written as it ends, after its last message: give it a moment.
    let mut logs = capture.text();
    for _ in 0..50 {
        if logs.contains("wait finished") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        logs = capture.text();
    }
    assert!(!logs.contains(TOKEN), "a token was logged");
    let line = |name: &str| -> Value {
        logs.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["span"]["name"] == name && l["span"]["invoke_id"] == "t-demo0010")
            .unwrap_or_else(|| panic!("no {name} line: {logs}"))["span"]
            .clone()
    };
    let get = line("GetInvocation");
    assert_eq!(get["caller"], "token:billing");
    assert_eq!(get["grpc_code"], "Ok");
    assert_eq!(get["instances"], 3);
    assert_eq!(get["request_id"], answer.get_ref().request_id.as_str());
    let waited = line("StopInvocationAndWait");
    assert_eq!(waited["caller"], "token:billing");
    assert_eq!(waited["region"], "cn-hangzhou");
    assert_eq!(waited["grpc_code"], "Ok");
    assert_eq!(waited["targeted"], 3);
    assert_eq!(waited["final_instances"], 3);
    assert_eq!(waited["stops_sent"], 1);
    assert_eq!(waited["stops_failed"], 0);
    assert!(waited["latency_us"].as_u64().is_some(), "{waited}");
}

#[tokio::test]
async fn a_rotated_certificate_that_is_unusable_is_logged_at_error_and_not_used() {
    let capture = Capture::shared(LogFormat::Json, "info");
    let (ca, dir) = (Ca::new("test ca"), TempDir::new());
    let leaf = ca.server("gateway");
    let files = TlsFiles {
        cert: dir.write("tls.crt", &leaf.cert_pem),
        key: dir.write("tls.key", &leaf.key_pem),
        client_ca: None,
        client_cert_optional: false,
    };
    let tls = ecs_gateway::testing::server::watch_tls(files, Duration::from_millis(20), None)
        .await
        .unwrap();
    let before = tls.current();
    dir.write("tls.key", &ca.server("other").key_pem);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !capture.text().contains("is not the private key") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no error logged: {}",
            capture.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line: Value = capture
        .text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| {
            l["error"]
                .as_str()
                .is_some_and(|e| e.contains("is not the private key"))
        })
        .unwrap();
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["setting"], ecs_gateway::testing::server::TLS_SETTING);
    assert!(
        std::sync::Arc::ptr_eq(&before, &tls.current()),
        "the old configuration stays"
    );
    assert!(
        !capture.text().contains("PRIVATE KEY"),
        "key material was logged"
    );
}

#[tokio::test]
async fn a_token_or_policy_file_that_denies_everyone_is_applied_with_a_warning() {
    let capture = Capture::shared(LogFormat::Json, "info");
    let (url, _sim) = start_simulator(SimulatorConfig::with_credential(test_credential())).await;
    let dir = TempDir::new();
    let setup = support::Setup {
        security: SecurityFiles {
            tls: None,
            tokens: Some(dir.write("tokens", &format!("billing sha256:{TOKEN_SHA256}\n"))),
            policy: Some(dir.write("policy.toml", "[callers.billing]\nregions = [\"*\"]\n")),
        },
        reload_interval: Some(Duration::from_millis(20)),
        ..support::Setup::default()
    };
    let ecs = support::ecs_client(&url, test_credential());
    let gw = support::Gateway::start_setup(ecs, setup, None).await;
    let mut client = gw.client.clone();
    client
        .stop_invocation(with_token("cn-hangzhou", "t-demo0006", TOKEN))
        .await
        .unwrap();

    let warned = |setting: &str| {
        capture
            .text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|l| {
                l["level"] == "WARN"
                    && l["setting"] == setting
                    && l["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("names no caller"))
            })
    };
    dir.write("policy.toml", "");
    let policy = "--policy / ECS_GATEWAY_POLICY";
    assert!(
        support::eventually(Duration::from_secs(10), || warned(policy)).await,
        "{}",
        capture.text()
    );
    dir.write("tokens", "# nobody\n");
    let tokens = "--auth-tokens-file / ECS_GATEWAY_AUTH_TOKENS_FILE";
    assert!(
        support::eventually(Duration::from_secs(10), || warned(tokens)).await,
        "{}",
        capture.text()
    );
    let refused = client
        .stop_invocation(with_token("cn-hangzhou", "t-demo0007", TOKEN))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}

#[tokio::test]
async fn a_wait_whose_caller_never_reads_still_writes_its_audit_line_at_max_wait() {
    use ecs_gateway::testing::api::{ServiceSettings, WaitSettings};
    let capture = Capture::shared(LogFormat::Json, "info");
    let (url, sim) = start_simulator(SimulatorConfig {
        stop_delay: Duration::from_secs(3600),
        ..SimulatorConfig::with_credential(test_credential())
    })
    .await;
    let dir = TempDir::new();
    let setup = support::Setup {
        security: SecurityFiles {
            tls: None,
            tokens: Some(dir.write("tokens", &format!("billing sha256:{TOKEN_SHA256}\n"))),
            policy: None,
        },
        service: Some(ServiceSettings {
            wait: WaitSettings {
                max_wait: Duration::from_secs(1),
                ..WaitSettings::default()
            },
            ..ServiceSettings::default()
        }),
        ..support::Setup::default()
    };
    let gw =
        support::Gateway::start_setup(support::ecs_client(&url, test_credential()), setup, None)
            .await;
    let wait = ecs_gateway::pb::StopInvocationAndWaitRequest {
        region_id: "cn-hangzhou".into(),
        invoke_id: "t-demo1000".into(),
        ..Default::default()
    };
    let unread = support::unread::call(
        gw.addr,
        "/ecsgateway.v1.CloudAssistantService/StopInvocationAndWait",
        &wait,
        Some(TOKEN),
    )
    .await;
    // Nobody reads; the wait still ends at --max-wait, and says so.
    let mut logs = capture.text();
    for _ in 0..100 {
        if logs.contains("wait ended") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        logs = capture.text();
    }
    let line = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["span"]["name"] == "StopInvocationAndWait")
        .unwrap_or_else(|| panic!("no audit line for the unread wait: {logs}"))["span"]
        .clone();
    assert_eq!(line["caller"], "token:billing");
    assert_eq!(line["grpc_code"], "DeadlineExceeded");
    assert_eq!(line["targeted"], 1000);
    // Every stop was sent though nobody read: 800 stoppable instances, 16 calls.
    assert_eq!(line["stops_sent"], 16);
    assert_eq!(line["stops_failed"], 0);
    let stops = sim
        .calls()
        .iter()
        .filter(|c| c.action == "StopInvocation")
        .count();
    assert_eq!(stops, 16);
    assert!(!logs.contains(TOKEN), "a token was logged");
    drop(unread);
}

//! A stop goes upstream exactly as Alibaba's SDK would send it, and the answer comes back.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::{Gateway, at, pinned_client, request, start_simulator, test_credential};
use ecs_gateway::aliyun::Credential;
use ecs_gateway::aliyun::SignatureVersion;
use ecs_gateway::simulator::ExecutionStatus;
use ecs_gateway::simulator::SimulatorConfig;
use serde::Deserialize;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SUCCESS: &str = include_str!("../data/ecs/success.json");

async fn ecs_answering_success() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(SUCCESS, "application/json"))
        .mount(&server)
        .await;
    server
}

fn query_pairs(url: &url::Url) -> BTreeMap<String, String> {
    url.query_pairs().into_owned().collect()
}

#[tokio::test]
async fn the_upstream_receives_the_stop_invocation_vector_byte_for_byte() {
    // Inputs and expectations of the "StopInvocation POST, 2 instances" reference vector.
    let ecs = ecs_answering_success().await;
    let client = pinned_client(
        &format!("{}/", ecs.uri()),
        Credential::new("LTAI5tExampleAccessKey", "testsecret", None),
        at("2025-01-02T03:04:05Z"),
        "c3b5a1e0-5d3f-4a8e-9f1e-0d7c2b6a9e41",
        SignatureVersion::V1,
    );
    let mut gateway = Gateway::start(client).await;

    let response = gateway
        .client
        .stop_invocation(request(
            "cn-hangzhou",
            "t-hz0jdfwd9f2mxxx",
            &["i-bp67acfmxazb4p0001", "i-bp67acfmxazb4p0002"],
        ))
        .await
        .expect("stop succeeds");

    assert_eq!(
        response.get_ref().request_id,
        "473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E"
    );
    assert_eq!(
        response.metadata().get("x-acs-request-id").unwrap(),
        "473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E"
    );
    let received = ecs.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent.method.as_str(), "POST");
    assert_eq!(sent.url.path(), "/");
    assert!(sent.body.is_empty(), "every parameter goes in the query");
    assert_eq!(
        sent.url.query().unwrap(),
        "AccessKeyId=LTAI5tExampleAccessKey&Action=StopInvocation&Format=JSON&InstanceId.1=i-bp67acfmxazb4p0001&InstanceId.2=i-bp67acfmxazb4p0002&InvokeId=t-hz0jdfwd9f2mxxx&RegionId=cn-hangzhou&SignatureMethod=HMAC-SHA1&SignatureNonce=c3b5a1e0-5d3f-4a8e-9f1e-0d7c2b6a9e41&SignatureVersion=1.0&Timestamp=2025-01-02T03%3A04%3A05Z&Version=2014-05-26&Signature=mvqi7Hfbyp8Yzwvd3Aqd8XqoC5k%3D"
    );
    let agent = sent.headers.get("user-agent").unwrap().to_str().unwrap();
    assert!(agent.starts_with("ecs-gateway/0."), "{agent}");
    gateway.signal_shutdown();
}

#[derive(Deserialize)]
struct SdkFile {
    vectors: Vec<SdkVector>,
}

#[derive(Deserialize)]
struct SdkVector {
    label: String,
    access_key_id: String,
    secret: String,
    security_token: Option<String>,
    nonce: String,
    timestamp: String,
    request: SdkRequest,
    expect: SdkExpect,
}

#[derive(Deserialize)]
struct SdkRequest {
    region_id: String,
    invoke_id: String,
    instance_ids: Vec<String>,
    owner_id: Option<i64>,
    owner_account: Option<String>,
    resource_owner_id: Option<i64>,
    resource_owner_account: Option<String>,
}

#[derive(Deserialize)]
struct SdkExpect {
    params: BTreeMap<String, String>,
    signature: String,
}

#[tokio::test]
async fn awkward_requests_carry_the_signature_alibabas_sdk_computes() {
    // tests/data/gateway-sdk-vectors.json was produced by aliyun-python-sdk-core (scripts/gen_sdk_vectors.py).
    let file: SdkFile =
        serde_json::from_str(include_str!("../data/gateway-sdk-vectors.json")).unwrap();
    assert_eq!(file.vectors.len(), 3);
    for v in file.vectors {
        let ecs = ecs_answering_success().await;
        let credential = Credential::new(&v.access_key_id, &v.secret, v.security_token.clone());
        let client = pinned_client(
            &format!("{}/", ecs.uri()),
            credential,
            at(&v.timestamp),
            &v.nonce,
            SignatureVersion::V1,
        );
        let mut gateway = Gateway::start(client).await;
        let r = v.request;
        let call = ecs_gateway::pb::StopInvocationRequest {
            region_id: r.region_id,
            invoke_id: r.invoke_id,
            instance_ids: r.instance_ids,
            owner_id: r.owner_id,
            owner_account: r.owner_account,
            resource_owner_id: r.resource_owner_id,
            resource_owner_account: r.resource_owner_account,
            validate_only: false,
        };
        gateway.client.stop_invocation(call).await.expect(&v.label);

        let received = ecs.received_requests().await.unwrap();
        let mut sent = query_pairs(&received[0].url);
        let signature = sent.remove("Signature").expect("a Signature parameter");
        assert_eq!(sent, v.expect.params, "{}", v.label);
        assert_eq!(signature, v.expect.signature, "{}", v.label);
        gateway.signal_shutdown();
    }
}

#[tokio::test]
async fn the_simulator_cancels_pending_executions_and_leaves_running_ones() {
    let (url, simulator) =
        start_simulator(SimulatorConfig::with_credential(test_credential())).await;
    let gateway = Gateway::start(crate::support::ecs_client(&url, test_credential())).await;

    let response = gateway
        .client
        .clone()
        .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
        .await
        .expect("stop succeeds");

    let id = &response.get_ref().request_id;
    assert!(
        uuid::Uuid::parse_str(id).is_ok() && id.to_uppercase() == *id,
        "{id}"
    );
    let inv = simulator.world().get("cn-hangzhou", "t-demo0001").unwrap();
    let statuses: Vec<ExecutionStatus> = inv.executions.iter().map(|(_, s)| *s).collect();
    assert_eq!(
        statuses,
        // The running execution is being stopped, the pending one will never start, the finished
        // one stays as it ended.
        [
            ExecutionStatus::Stopping,
            ExecutionStatus::Cancelled,
            ExecutionStatus::Finished
        ]
    );
    assert_eq!(inv.stops, 1);
}

#[tokio::test]
async fn a_periodic_invocation_stops_scheduling() {
    let (url, simulator) =
        start_simulator(SimulatorConfig::with_credential(test_credential())).await;
    let gateway = Gateway::start(crate::support::ecs_client(&url, test_credential())).await;
    assert!(
        simulator
            .world()
            .get("cn-hangzhou", "t-demo0005")
            .unwrap()
            .scheduling
    );
    gateway
        .client
        .clone()
        .stop_invocation(request("cn-hangzhou", "t-demo0005", &["i-demo05b"]))
        .await
        .unwrap();
    assert!(
        !simulator
            .world()
            .get("cn-hangzhou", "t-demo0005")
            .unwrap()
            .scheduling
    );
}

#[tokio::test]
async fn dev_mode_serves_the_demo_invocations_with_no_credentials() {
    use clap::Parser as _;
    let cli = ecs_gateway::app::cli::Cli::try_parse_from([
        "ecs-gateway",
        "--dev",
        "--listen",
        "127.0.0.1:0",
    ])
    .unwrap();
    let settings = ecs_gateway::app::Settings::try_from(&cli.gateway).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // --dev never reads the chain: an empty environment proves it.
    let nothing =
        ecs_gateway::CredentialsFrom::Chain(ecs_gateway::aliyun::Env::from_pairs::<&str, &str>([]));
    let gateway = ecs_gateway::Gateway::build(settings, nothing)
        .await
        .unwrap();
    let addr = gateway.addr();
    let run = tokio::spawn(gateway.serve(async {
        let _ = rx.await;
    }));
    let mut client = connect(addr).await;
    let response = client
        .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
        .await
        .expect("dev stop succeeds");
    assert_eq!(response.get_ref().request_id.len(), 36);
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap();
}

async fn connect(
    addr: std::net::SocketAddr,
) -> ecs_gateway::pb::cloud_assistant_service_client::CloudAssistantServiceClient<
    tonic::transport::Channel,
> {
    // build() binds before it returns, but the server task may not be polled yet.
    for _ in 0..100 {
        if let Ok(c) =
            ecs_gateway::pb::cloud_assistant_service_client::CloudAssistantServiceClient::connect(
                format!("http://{addr}"),
            )
            .await
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gateway at {addr} never accepted a connection");
}

/// The request shapes the V3 fidelity tests send: no, one and 50 instances; an STS token.
fn v3_shapes() -> Vec<(Credential, Vec<String>)> {
    vec![
        (
            Credential::new("LTAI5tV3Fidelity", "fidelity secret+/", None),
            vec![],
        ),
        (
            Credential::new("LTAI5tV3Fidelity", "fidelity secret+/", None),
            vec!["i-bp6one".to_owned()],
        ),
        (
            Credential::new("LTAI5tV3Fidelity", "fidelity secret+/", None),
            (1..=50).map(|n| format!("i-bp6{n:03}")).collect(),
        ),
        (
            Credential::new(
                "STS.V3Fidelity",
                "sts-secret",
                Some("CAIS+token/with=odd".to_owned()),
            ),
            vec!["i-bp6sts".to_owned()],
        ),
    ]
}

/// An upstream that has received one StopInvocation of `invoke_id` on `instances` from a gateway
/// signing (V3, the default) with `credential`.
async fn stopped_through_a_gateway(
    credential: &Credential,
    instances: &[String],
    invoke_id: &str,
) -> MockServer {
    let ecs = ecs_answering_success().await;
    let client = crate::support::ecs_client(&format!("{}/", ecs.uri()), credential.clone());
    let mut gateway = Gateway::start(client).await;
    let ids: Vec<&str> = instances.iter().map(String::as_str).collect();
    gateway
        .client
        .stop_invocation(request("cn-hangzhou", invoke_id, &ids))
        .await
        .expect("stop succeeds");
    gateway.signal_shutdown();
    ecs
}

/// Runs a Python helper from tests/sdk with `args`, feeding it `stdin`; its stdout.
async fn python(script: &str, args: &[&str], stdin: &str) -> String {
    use tokio::io::AsyncWriteExt as _;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = tokio::process::Command::new(python)
        .arg(format!("{}/tests/sdk/{script}", env!("CARGO_MANIFEST_DIR")))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = child.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn alibabas_sdk_re_signs_every_v3_request_the_gateway_sends_to_the_same_signature() {
    let mut cases = Vec::new();
    let mut sent = Vec::new();
    for (credential, instances) in v3_shapes() {
        let ecs = stopped_through_a_gateway(&credential, &instances, "t-hz0v3fidelity").await;
        let received = ecs.received_requests().await.unwrap();
        let request = &received[0];
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let authorization = header("authorization").expect("signed with V3");
        let signed = authorization
            .split([' ', ','])
            .find_map(|f| f.strip_prefix("SignedHeaders="))
            .unwrap()
            .to_owned();
        assert!(
            request
                .url
                .query()
                .unwrap()
                .contains("InvokeId=t-hz0v3fidelity")
        );
        let headers: serde_json::Map<String, serde_json::Value> = signed
            .split(';')
            .map(|name| (name.to_owned(), header(name).expect(name).into()))
            .collect();
        assert_eq!(
            signed,
            if credential.security_token().is_some() {
                "host;x-acs-accesskey-id;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version"
            } else {
                "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
            }
        );
        let query: Vec<(String, String)> = request.url.query_pairs().into_owned().collect();
        cases.push(serde_json::json!({
            "method": request.method.as_str(),
            "query": query,
            "headers": headers,
            "access_key_id": credential.access_key_id(),
            "secret": credential.access_key_secret(),
        }));
        sent.push(authorization);
    }
    let resigned = python("resign_v3.py", &[], &serde_json::to_string(&cases).unwrap()).await;
    let resigned: Vec<&str> = resigned.lines().collect();
    assert_eq!(resigned, sent);
}

#[tokio::test]
async fn the_gateway_sends_what_the_tea_sdk_sends_in_its_default_mode() {
    for (credential, instances) in v3_shapes() {
        let ecs = stopped_through_a_gateway(&credential, &instances, "t-hz0v3tea").await;
        let ids: Vec<&str> = instances.iter().map(String::as_str).collect();
        let endpoint = ecs.uri().trim_start_matches("http://").to_owned();
        let token = credential.security_token().unwrap_or("-").to_owned();
        let mut args = vec![
            endpoint.as_str(),
            credential.access_key_id(),
            credential.access_key_secret(),
            token.as_str(),
            "cn-hangzhou",
            "t-hz0v3tea",
        ];
        args.extend(ids.iter().copied());
        python("tea_v3_capture.py", &args, "").await;
        let received = ecs.received_requests().await.unwrap();
        assert_eq!(received.len(), 2, "the gateway's request, then the SDK's");
        let (ours, sdk) = (&received[0], &received[1]);
        assert_eq!(ours.method, sdk.method);
        assert_eq!(ours.url.path(), sdk.url.path());
        assert_eq!(ours.body, sdk.body, "both empty");
        let pairs = |r: &wiremock::Request| -> BTreeMap<String, String> { query_pairs(&r.url) };
        assert_eq!(pairs(ours), pairs(sdk), "the same query");
        let acs = |r: &wiremock::Request| -> BTreeMap<String, String> {
            r.headers
                .iter()
                .filter(|(n, _)| n.as_str().starts_with("x-acs-"))
                // The SDK's telemetry of which credential provider it used (`static_ak`, …): not
                // part of the protocol, so the gateway does not claim to be an SDK provider.
                .filter(|(n, _)| n.as_str() != "x-acs-credentials-provider")
                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                .collect()
        };
        let (ours, sdk) = (acs(ours), acs(sdk));
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            sdk.keys().collect::<Vec<_>>(),
            "the same x-acs-* headers"
        );
        for same in [
            "x-acs-action",
            "x-acs-version",
            "x-acs-content-sha256",
            "x-acs-accesskey-id",
            "x-acs-security-token",
        ] {
            assert_eq!(ours.get(same), sdk.get(same), "{same}");
        }
    }
}

#[tokio::test]
async fn the_start_line_names_the_signature_and_either_one_stops_commands() {
    for (flags, expected) in [
        (vec!["--dev"], "v3"),
        (vec!["--dev", "--signature-version", "v1"], "v1"),
        (vec!["--dev", "--signature-version", "v3"], "v3"),
    ] {
        let binary = crate::support::binary::Binary::start(&flags, &[]).await;
        let line = binary.line("ecs-gateway listening").unwrap();
        assert_eq!(line["signature"], expected, "{flags:?}");
        let answer = binary
            .client()
            .await
            .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
            .await;
        assert!(answer.is_ok(), "{flags:?}: {answer:?}");
        binary.stop().await;
    }
}

//! Who may call, through the real server: TLS, mutual TLS and the identity a client certificate
//! names, bearer tokens, the per-caller policy, reloads of all three while calls run, and health
//! and reflection without a caller identity. Certificates are made at run time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::support::pki::{Ca, Leaf, TempDir, client_tls, dns, uri};
use crate::support::{
    Gateway, Setup, ecs_client, error_info, request, start_simulator, test_credential, tls_channel,
    with_bearer,
};
use ecs_gateway::pb::cloud_assistant_service_client::CloudAssistantServiceClient;
use ecs_gateway::simulator::{ExecutionStatus, Invocation};
use ecs_gateway::simulator::{Simulator, SimulatorConfig};
use ecs_gateway::testing::auth::SecurityFiles;
use ecs_gateway::testing::server::TlsFiles;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt as _;

/// Short, so that reload tests wait for tenths of seconds, not for the 5 s default.
const RELOAD: Duration = Duration::from_millis(50);
const BILLING_TOKEN: &str = "billing-token-7f3a9c2e";
const OPS_TOKEN: &str = "ops-token-51d0be88";

fn sha256_hex(token: &str) -> String {
    // Computed with sha2 here, independently of the gateway's parser (which only compares).
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn token_line(name: &str, token: &str) -> String {
    format!("{name} sha256:{}\n", sha256_hex(token))
}

/// A simulator with `t-demo0001` stoppable in cn-hangzhou (seeded), cn-shanghai and cn-beijing.
async fn upstream() -> (String, Simulator) {
    let (url, sim) = start_simulator(SimulatorConfig::with_credential(test_credential())).await;
    for region in ["cn-shanghai", "cn-beijing"] {
        let invocation = Invocation::new(&[("i-demo01a", ExecutionStatus::Running)]);
        sim.world().insert(region, "t-demo0001", invocation);
    }
    (url, sim)
}

fn with_token(region: &str, token: &str) -> tonic::Request<ecs_gateway::pb::StopInvocationRequest> {
    with_bearer(request(region, "t-demo0001", &[]), token)
}

fn caller_of(status: &tonic::Status) -> String {
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("ErrorInfo");
    info.metadata.get("caller").cloned().unwrap_or_default()
}

/// Writes the token and policy files, as the gateway's settings name them (TLS is `server_tls`'s).
fn access(dir: &TempDir, tokens: Option<&str>, policy: Option<&str>) -> SecurityFiles {
    SecurityFiles {
        tls: None,
        tokens: tokens.map(|t| dir.write("tokens", t)),
        policy: policy.map(|p| dir.write("policy.toml", p)),
    }
}

/// Writes the server certificate (and the client CA when given) as the listener's TLS files;
/// `optional_client_cert` when tokens may identify callers too.
fn server_tls(
    dir: &TempDir,
    server: &Leaf,
    client_ca: Option<&Ca>,
    optional_client_cert: bool,
) -> TlsFiles {
    TlsFiles {
        cert: dir.write("tls.crt", &server.cert_pem),
        key: dir.write("tls.key", &server.key_pem),
        client_ca: client_ca.map(|ca| dir.write("ca.crt", &ca.pem())),
        client_cert_optional: optional_client_cert,
    }
}

/// A gateway serving `tls` in front of `url`, admitting callers as `access` says, with a client
/// connected through `client`; files are re-read every `RELOAD`.
async fn start_tls(
    url: &str,
    access: SecurityFiles,
    tls: TlsFiles,
    client: tonic::transport::ClientTlsConfig,
) -> Gateway {
    let setup = Setup {
        security: SecurityFiles {
            tls: Some(tls),
            ..access
        },
        reload_interval: Some(RELOAD),
        ..Setup::default()
    };
    Gateway::start_setup(ecs_client(url, test_credential()), setup, Some(client)).await
}

/// A plaintext gateway in front of `url` admitting callers as `access` says; files are re-read
/// every `RELOAD`.
async fn gateway_with_access(url: &str, access: SecurityFiles) -> Gateway {
    let setup = Setup {
        security: access,
        reload_interval: Some(RELOAD),
        ..Setup::default()
    };
    Gateway::start_setup(ecs_client(url, test_credential()), setup, None).await
}

/// The certificate a fresh TLS handshake with the gateway presents.
async fn presented_certificate(addr: std::net::SocketAddr, ca: &Ca) -> Vec<u8> {
    let mut roots = RootCertStore::empty();
    roots.add(ca_der(ca)).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn ca_der(ca: &Ca) -> tokio_rustls::rustls::pki_types::CertificateDer<'static> {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    tokio_rustls::rustls::pki_types::CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap()
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(RELOAD).await;
    }
}

/// The code of a call by `ops` in `region`.
async fn ops_code(mut client: CloudAssistantServiceClient<Channel>, region: &str) -> Code {
    match client.stop_invocation(with_token(region, OPS_TOKEN)).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn tls_serves_calls_and_a_plaintext_client_gets_nothing() {
    let (url, sim) = upstream().await;
    let (ca, dir) = (Ca::new("test ca"), TempDir::new());
    let settings = server_tls(&dir, &ca.server("gateway"), None, false);
    let gw = start_tls(
        &url,
        SecurityFiles::default(),
        settings,
        client_tls(&ca, None),
    )
    .await;
    let answer = gw
        .client
        .clone()
        .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
        .await
        .unwrap();
    assert_eq!(answer.get_ref().request_id.len(), 36);

    let plain = Channel::from_shared(format!("http://{}", gw.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect_lazy();
    let err = CloudAssistantServiceClient::new(plain)
        .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    assert_eq!(sim.requests_received(), 1, "only the TLS call reached ECS");
}

#[tokio::test]
async fn mutual_tls_refuses_the_handshake_without_a_certificate_from_the_client_ca() {
    let (url, sim) = upstream().await;
    let (ca, dir) = (Ca::new("client ca"), TempDir::new());
    let settings = server_tls(&dir, &ca.server("gateway"), Some(&ca), false);
    let runner = ca.client(vec![uri("spiffe://test/ns/ops/sa/runner")], None);
    let gw = start_tls(
        &url,
        access(&dir, None, None),
        settings,
        client_tls(&ca, Some(&runner)),
    )
    .await;
    gw.client
        .clone()
        .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
        .await
        .expect("a client certificate from the CA is let in");

    // No certificate, and one from a CA the gateway does not trust: the handshake fails, so
    // there is no call, no health check, nothing.
    let stranger_ca = Ca::new("stranger ca");
    let stranger = stranger_ca.client(vec![uri("spiffe://test/ns/ops/sa/runner")], None);
    for identity in [None, Some(&stranger)] {
        let refused = match tls_channel(gw.addr, client_tls(&ca, identity)).await {
            Err(_) => true,
            // tonic may report the refusal on the first call rather than at connect.
            Ok(channel) => HealthClient::new(channel)
                .check(HealthCheckRequest::default())
                .await
                .is_err(),
        };
        assert!(refused, "identity present: {}", identity.is_some());
    }
    assert_eq!(sim.requests_received(), 1);
}

#[tokio::test]
async fn the_caller_is_the_spiffe_id_else_the_dns_san_else_the_cn_each_typed() {
    let (url, sim) = upstream().await;
    let (ca, dir) = (Ca::new("client ca"), TempDir::new());
    // Each identity may use one region, so the region each call is let into says which
    // identity the gateway read from the certificate.
    let policy = r#"
[callers."spiffe://test/ns/ops/sa/runner"]
regions = ["cn-hangzhou"]
[callers."dns:worker.internal"]
regions = ["cn-shanghai"]
[callers."cn:Legacy Client"]
regions = ["cn-beijing"]
[callers.billing]
regions = ["*"]
"#;
    let settings = server_tls(&dir, &ca.server("gateway"), Some(&ca), false);
    let access = access(&dir, None, Some(policy));
    let gw = start_tls(
        &url,
        access,
        settings,
        client_tls(&ca, Some(&ca.client(vec![], Some("unused")))),
    )
    .await;
    let cases = [
        (
            ca.client(
                vec![
                    dns("worker.internal"),
                    uri("spiffe://test/ns/ops/sa/runner"),
                ],
                Some("Legacy Client"),
            ),
            "spiffe://test/ns/ops/sa/runner",
            "cn-hangzhou",
        ),
        (
            ca.client(vec![dns("worker.internal")], Some("Legacy Client")),
            "dns:worker.internal",
            "cn-shanghai",
        ),
        (
            ca.client(vec![], Some("Legacy Client")),
            "cn:Legacy Client",
            "cn-beijing",
        ),
    ];
    for (leaf, identity, region) in cases {
        let channel = tls_channel(gw.addr, client_tls(&ca, Some(&leaf)))
            .await
            .unwrap();
        let mut client = CloudAssistantServiceClient::new(channel);
        client
            .stop_invocation(request(region, "t-demo0001", &[]))
            .await
            .unwrap_or_else(|s| panic!("{identity} in {region}: {s:?}"));
        for other in ["cn-hangzhou", "cn-shanghai", "cn-beijing"]
            .into_iter()
            .filter(|r| *r != region)
        {
            let denied = client
                .stop_invocation(request(other, "t-demo0001", &[]))
                .await
                .unwrap_err();
            assert_eq!(
                denied.code(),
                Code::PermissionDenied,
                "{identity} in {other}"
            );
            assert_eq!(error_info(&denied).0, "CALLER_NOT_ALLOWED");
            assert_eq!(caller_of(&denied), identity);
        }
    }
    // Names are typed: a certificate whose CN or DNS SAN reads like the token caller `billing` or
    // like the SPIFFE ID is neither, and a URI SAN that is not a SPIFFE ID names nobody.
    let impostors = [
        (ca.client(vec![], Some("billing")), "cn:billing"),
        (ca.client(vec![dns("billing")], None), "dns:billing"),
        (
            ca.client(vec![], Some("spiffe://test/ns/ops/sa/runner")),
            "cn:spiffe://test/ns/ops/sa/runner",
        ),
        (
            ca.client(vec![uri("https://test/ns/ops/sa/runner")], Some("x")),
            "cn:x",
        ),
    ];
    for (leaf, identity) in impostors {
        let channel = tls_channel(gw.addr, client_tls(&ca, Some(&leaf)))
            .await
            .unwrap();
        let denied = CloudAssistantServiceClient::new(channel)
            .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
            .await
            .unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied, "{identity}");
        assert_eq!(caller_of(&denied), identity);
    }
    // A certificate naming a caller the policy does not know.
    let unknown = gw
        .client
        .clone()
        .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::PermissionDenied);
    assert_eq!(caller_of(&unknown), "cn:unused");
    assert_eq!(
        sim.requests_received(),
        3,
        "only the allowed calls reached ECS"
    );
}

#[tokio::test]
async fn tokens_identify_callers_and_anything_else_is_unauthenticated_with_nothing_sent() {
    let (url, sim) = upstream().await;
    let dir = TempDir::new();
    let tokens = token_line("billing", BILLING_TOKEN);
    let gw = gateway_with_access(&url, access(&dir, Some(&tokens), None)).await;
    let mut client = gw.client.clone();
    client
        .stop_invocation(with_token("cn-hangzhou", BILLING_TOKEN))
        .await
        .expect("the right token");

    let mut two = with_token("cn-hangzhou", BILLING_TOKEN);
    two.metadata_mut()
        .append("authorization", MetadataValue::from_static("Bearer other"));
    let mut basic = tonic::Request::new(request("cn-hangzhou", "t-demo0001", &[]));
    basic.metadata_mut().insert(
        "authorization",
        MetadataValue::from_static("Basic YmlsbGluZzp4"),
    );
    let cases = [
        (
            "no token",
            tonic::Request::new(request("cn-hangzhou", "t-demo0001", &[])),
            "no caller identity",
        ),
        (
            "wrong token",
            with_token("cn-hangzhou", "billing-token-7f3a9c2f"),
            "not known",
        ),
        (
            "token with a newline",
            with_token("cn-hangzhou", &format!("{BILLING_TOKEN}x")),
            "not known",
        ),
        ("two headers", two, "exactly one"),
        ("basic auth", basic, "exactly one"),
    ];
    for (what, req, message) in cases {
        let status = client.stop_invocation(req).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{what}");
        assert_eq!(
            error_info(&status),
            ("UNAUTHENTICATED".to_owned(), "ecs-gateway".to_owned()),
            "{what}"
        );
        assert!(
            status.message().contains(message),
            "{what}: {}",
            status.message()
        );
        assert!(
            !status.message().contains("billing-token"),
            "{what}: the token is echoed"
        );
    }
    // An invalid request without a token is refused for the token, before its fields are read.
    let invalid = client
        .stop_invocation(request("", "", &[]))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::Unauthenticated);
    assert_eq!(sim.requests_received(), 1);
}

#[tokio::test]
async fn the_policy_allows_denies_and_rate_limits_callers_with_nothing_sent_when_refused() {
    let (url, sim) = upstream().await;
    let dir = TempDir::new();
    let tokens = format!(
        "{}{}{}",
        token_line("billing", BILLING_TOKEN),
        token_line("ops", OPS_TOKEN),
        token_line("stranger", "stranger-token"),
    );
    let policy = r#"
[callers.billing]
regions = ["cn-hangzhou", "cn-shanghai"]
rate = 2
[callers.ops]
regions = ["*"]
"#;
    let setup = Setup {
        security: access(&dir, Some(&tokens), Some(policy)),
        metrics: true,
        reload_interval: Some(RELOAD),
        ..Setup::default()
    };
    let gw = Gateway::start_setup(
        crate::support::ecs_client(&url, crate::support::test_credential()),
        setup,
        None,
    )
    .await;
    let mut client = gw.client.clone();

    let denied = client
        .stop_invocation(with_token("cn-beijing", BILLING_TOKEN))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(
        error_info(&denied),
        ("CALLER_NOT_ALLOWED".to_owned(), "ecs-gateway".to_owned())
    );
    assert!(
        denied.message().contains("cn-beijing"),
        "{}",
        denied.message()
    );
    let stranger = client
        .stop_invocation(with_token("cn-hangzhou", "stranger-token"))
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), Code::PermissionDenied);
    assert_eq!(caller_of(&stranger), "token:stranger");
    assert_eq!(sim.requests_received(), 0, "refused calls send nothing");

    // billing: a burst of 2, then RESOURCE_EXHAUSTED with the wait until its next call.
    let mut admitted = 0;
    let mut limited = None;
    for _ in 0..5 {
        match client
            .stop_invocation(with_token("cn-shanghai", BILLING_TOKEN))
            .await
        {
            Ok(_) => admitted += 1,
            Err(status) => limited = Some(status),
        }
    }
    // At 2 calls a second, at most one more slot can open while five quick calls are made.
    assert!((2..=3).contains(&admitted), "{admitted}");
    let shed = format!(
        "ecs_gateway_shed_total{{reason=\"caller_rate\"}} {}\n",
        5 - admitted
    );
    let metrics = gw.metrics.as_ref().expect("metrics are on");
    assert!(metrics.encode().contains(&shed), "{shed}");
    let limited = limited.expect("some calls are over the rate");
    assert_eq!(limited.code(), Code::ResourceExhausted);
    assert_eq!(error_info(&limited).0, "CALLER_RATE_EXCEEDED");
    let wait = limited
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(500),
        "{wait:?}"
    );
    // ops has no rate and every region.
    for region in [
        "cn-hangzhou",
        "cn-shanghai",
        "cn-beijing",
        "cn-hangzhou",
        "cn-hangzhou",
    ] {
        client
            .stop_invocation(with_token(region, OPS_TOKEN))
            .await
            .unwrap();
    }
    assert_eq!(sim.requests_received(), admitted + 5);
}

#[tokio::test]
async fn with_mutual_tls_and_tokens_either_identifies_the_caller_but_a_bad_token_never_passes() {
    let (url, sim) = upstream().await;
    let (ca, dir) = (Ca::new("client ca"), TempDir::new());
    let tokens = token_line("billing", BILLING_TOKEN);
    let policy = r#"
[callers.billing]
regions = ["cn-shanghai"]
[callers."spiffe://test/runner"]
regions = ["cn-hangzhou"]
"#;
    let settings = server_tls(&dir, &ca.server("gateway"), Some(&ca), true);
    let access = access(&dir, Some(&tokens), Some(policy));
    let runner = ca.client(vec![uri("spiffe://test/runner")], None);
    let gw = start_tls(&url, access, settings, client_tls(&ca, Some(&runner))).await;
    let mut with_cert = gw.client.clone();
    with_cert
        .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
        .await
        .expect("the certificate names the caller");
    let with_both = with_cert
        .stop_invocation(with_token("cn-shanghai", BILLING_TOKEN))
        .await;
    with_both.expect("a valid token names the caller, over the certificate");
    let bad = with_cert
        .stop_invocation(with_token("cn-hangzhou", "not-a-token"))
        .await
        .unwrap_err();
    assert_eq!(
        bad.code(),
        Code::Unauthenticated,
        "a bad token is not overlooked for the certificate"
    );

    // Without a certificate the handshake completes (tokens may identify), but a call needs one.
    let mut no_cert = CloudAssistantServiceClient::new(
        tls_channel(gw.addr, client_tls(&ca, None)).await.unwrap(),
    );
    no_cert
        .stop_invocation(with_token("cn-shanghai", BILLING_TOKEN))
        .await
        .expect("token alone");
    let anonymous = no_cert
        .stop_invocation(request("cn-shanghai", "t-demo0001", &[]))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    assert!(
        anonymous.message().contains("client certificate"),
        "{}",
        anonymous.message()
    );
    assert_eq!(sim.requests_received(), 3);
}

#[tokio::test]
async fn health_and_reflection_need_no_caller_identity() {
    let (url, sim) = upstream().await;
    let (ca, dir) = (Ca::new("client ca"), TempDir::new());
    let settings = server_tls(&dir, &ca.server("gateway"), Some(&ca), false);
    // A certificate the policy does not know: it completes the handshake, and nothing more.
    let nobody = ca.client(vec![uri("spiffe://test/nobody")], None);
    let policy = "[callers.\"spiffe://test/runner\"]\nregions = [\"*\"]\n";
    let gw = start_tls(
        &url,
        access(&dir, None, Some(policy)),
        settings,
        client_tls(&ca, Some(&nobody)),
    )
    .await;
    let health = HealthClient::new(gw.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(health.get_ref().status, 1, "SERVING");
    let denied = gw
        .client
        .clone()
        .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // Reflection, over the same connection.
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(gw.channel.clone())
        .server_reflection_info(tokio_stream::iter([ask]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("{answer:?}");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "ecsgateway.v1.CloudAssistantService")
    );
    assert_eq!(sim.requests_received(), 0);
}

#[tokio::test]
async fn certificates_rotate_in_place_without_dropping_connections_or_calls() {
    let (url, _sim) = upstream().await;
    let (ca, dir) = (Ca::new("test ca"), TempDir::new());
    let (first, second) = (ca.server("gateway-1"), ca.server("gateway-2"));
    let settings = server_tls(&dir, &first, None, false);
    let gw = start_tls(
        &url,
        SecurityFiles::default(),
        settings,
        client_tls(&ca, None),
    )
    .await;
    assert_eq!(
        presented_certificate(gw.addr, &ca).await,
        first.der.to_vec()
    );

    // Calls keep running on the connection made with the first certificate throughout.
    let failures = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let caller = {
        let (mut client, failures, calls, stop) = (
            gw.client.clone(),
            failures.clone(),
            calls.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.notified() => return,
                    result = client.stop_invocation(request("cn-hangzhou", "t-demo0001", &[])) => {
                        calls.fetch_add(1, Ordering::SeqCst);
                        if result.is_err() {
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }
        })
    };

    dir.write("tls.crt", &second.cert_pem);
    dir.write("tls.key", &second.key_pem);
    wait_until("the second certificate is served", || async {
        presented_certificate(gw.addr, &ca).await == second.der.to_vec()
    })
    .await;

    // A broken pair (the first certificate with the second key) keeps the second one.
    dir.write("tls.crt", &first.cert_pem);
    tokio::time::sleep(RELOAD * 6).await;
    assert_eq!(
        presented_certificate(gw.addr, &ca).await,
        second.der.to_vec()
    );
    dir.write("tls.crt", "not a certificate");
    tokio::time::sleep(RELOAD * 6).await;
    assert_eq!(
        presented_certificate(gw.addr, &ca).await,
        second.der.to_vec()
    );

    stop.notify_one();
    caller.await.unwrap();
    assert!(
        calls.load(Ordering::SeqCst) > 10,
        "calls ran during the rotation"
    );
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    // New connections work with the rotated certificate.
    let fresh = tls_channel(gw.addr, client_tls(&ca, None)).await.unwrap();
    CloudAssistantServiceClient::new(fresh)
        .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
        .await
        .unwrap();
}

#[tokio::test]
async fn tokens_and_policy_reload_while_calls_run() {
    let (url, _sim) = upstream().await;
    let dir = TempDir::new();
    let policy = "[callers.billing]\nregions = [\"cn-hangzhou\"]\n";
    let tokens = token_line("billing", BILLING_TOKEN);
    let access = access(&dir, Some(&tokens), Some(policy));
    let gw = gateway_with_access(&url, access).await;
    let client = gw.client.clone();

    let failures = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let caller = {
        let (mut client, failures, stop) = (gw.client.clone(), failures.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.notified() => return,
                    result = client.stop_invocation(with_token("cn-hangzhou", BILLING_TOKEN)) => {
                        if result.is_err() {
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }
        })
    };
    assert_eq!(
        ops_code(client.clone(), "cn-shanghai").await,
        Code::Unauthenticated
    );

    // A new caller: first its token, then its policy entry.
    dir.write(
        "tokens",
        &format!(
            "{}{}",
            token_line("billing", BILLING_TOKEN),
            token_line("ops", OPS_TOKEN)
        ),
    );
    wait_until("the new token is known", || {
        let client = client.clone();
        async move { ops_code(client, "cn-shanghai").await == Code::PermissionDenied }
    })
    .await;
    dir.write(
        "policy.toml",
        &format!("{policy}[callers.ops]\nregions = [\"cn-shanghai\"]\n"),
    );
    wait_until("the new policy applies", || {
        let client = client.clone();
        async move { ops_code(client, "cn-shanghai").await == Code::Ok }
    })
    .await;

    // Files that do not parse keep what is in use.
    dir.write("policy.toml", "[callers.ops\n");
    dir.write("tokens", "ops plaintext-token\n");
    tokio::time::sleep(RELOAD * 6).await;
    assert_eq!(ops_code(client.clone(), "cn-shanghai").await, Code::Ok);

    stop.notify_one();
    caller.await.unwrap();
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "billing's calls never failed during reloads"
    );

    // Revoking a token takes effect for calls on connections already open.
    dir.write("tokens", &token_line("billing", BILLING_TOKEN));
    wait_until("the revoked token is refused", || {
        let client = client.clone();
        async move { ops_code(client, "cn-shanghai").await == Code::Unauthenticated }
    })
    .await;
}

#[tokio::test]
async fn failed_handshakes_are_counted_by_reason_and_logged_once_per_client_address() {
    use rustls::pki_types::pem::PemObject as _;
    use x509_parser::prelude::{FromDer as _, X509Certificate};
    let (ca, stranger, dir) = (Ca::new("client ca"), Ca::new("stranger ca"), TempDir::new());
    let leaf = ca.server("gateway");
    let tls = server_tls(&dir, &leaf, Some(&ca), false);
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let credential = test_credential();
    let binary = crate::support::binary::Binary::start(
        &[
            "--endpoint",
            "http://127.0.0.1:9/",
            "--tls-cert",
            &path(&tls.cert),
            "--tls-key",
            &path(&tls.key),
            "--tls-client-ca",
            &path(tls.client_ca.as_ref().unwrap()),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", credential.access_key_id()),
            (
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                credential.access_key_secret(),
            ),
        ],
    )
    .await;
    let addr: std::net::SocketAddr = binary.addr.parse().unwrap();
    let attempt = |identity: Option<Leaf>| {
        let config = client_tls(&ca, identity.as_ref());
        async move {
            if let Ok(channel) = tls_channel(addr, config).await {
                let answer = CloudAssistantServiceClient::new(channel)
                    .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
                    .await;
                assert!(answer.is_err(), "{answer:?}");
            }
        }
    };
    for _ in 0..3 {
        attempt(None).await;
    }
    attempt(Some(stranger.client(vec![], Some("intruder")))).await;

    let counted = |exposition: &str, reason: &str| -> Option<u64> {
        let series = format!("ecs_gateway_tls_handshake_failures_total{{reason=\"{reason}\"}} ");
        exposition
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
    };
    let mut exposition = binary.scrape().await;
    for _ in 0..50 {
        if counted(&exposition, "bad_client_certificate").is_some_and(|n| n >= 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        exposition = binary.scrape().await;
    }
    // tonic may reconnect once after a failed handshake: at least one per attempt.
    assert!(
        counted(&exposition, "no_client_certificate").is_some_and(|n| n >= 3),
        "{exposition}"
    );
    assert!(
        counted(&exposition, "bad_client_certificate").is_some_and(|n| n >= 1),
        "{exposition}"
    );
    assert_eq!(counted(&exposition, "timeout"), Some(0), "{exposition}");
    // Four failures from one address: one warning. The log reaches us through the process's
    // batched stdout, after the counter: wait for it before counting.
    crate::support::eventually(Duration::from_secs(5), || {
        !binary.lines("TLS handshake failed").is_empty()
    })
    .await;
    let warned = binary.lines("TLS handshake failed");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert_eq!(warned[0]["level"], "WARN");
    assert_eq!(warned[0]["reason"], "no_client_certificate");

    // The serving certificate's expiry, as its own notAfter says.
    let der = rustls::pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
    let (_, cert) = X509Certificate::from_der(der.as_ref()).unwrap();
    let expiry = format!(
        "ecs_gateway_tls_certificate_expiry_timestamp_seconds {}\n",
        cert.validity().not_after.timestamp()
    );
    assert!(exposition.contains(&expiry), "{exposition}");
    binary.stop().await;
}

#[tokio::test]
async fn a_certificate_with_an_overlong_name_gets_a_small_status_and_no_identity() {
    let (url, sim) = upstream().await;
    let (ca, dir) = (Ca::new("client ca"), TempDir::new());
    let settings = server_tls(&dir, &ca.server("gateway"), Some(&ca), false);
    let policy = "[callers.\"cn:short\"]\nregions = [\"*\"]\n";
    let long_id = format!("spiffe://test/{}", "a".repeat(3000));
    let leaf = ca.client(vec![uri(&long_id)], Some("short"));
    let gw = start_tls(
        &url,
        access(&dir, None, Some(policy)),
        settings,
        client_tls(&ca, Some(&leaf)),
    )
    .await;
    // The SPIFFE ID is past 256 characters, so it names nobody; the CN is next.
    let answer = gw
        .client
        .clone()
        .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
        .await;
    assert!(answer.is_ok(), "{answer:?}");
    let leaf = ca.client(vec![uri(&long_id)], None);
    let channel = tls_channel(gw.addr, client_tls(&ca, Some(&leaf)))
        .await
        .unwrap();
    let refused = CloudAssistantServiceClient::new(channel)
        .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let size = refused.message().len() + refused.details().len();
    assert!(size < 4096, "{size} bytes of status");
    assert!(!refused.message().contains("aaaa"), "{}", refused.message());
    assert_eq!(sim.requests_received(), 1);
}

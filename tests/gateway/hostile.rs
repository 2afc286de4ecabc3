//! Hostile traffic against the real server on 127.0.0.1:0: connection limits and deadlines, idle
//! and old connections, bounded errors, hostile upstream answers, the retry budget, and threads
//! under a DNS outage.

use std::sync::Arc;
use std::time::Duration;

use crate::support::dns::FakeDns;
use crate::support::echo::{Echo, ID, SECRET, TOKEN};
use crate::support::{
    Gateway, ecs_answering, ecs_client, eventually, gateway_for, gateway_for_server, request,
    settings, test_credential,
};
use ecs_gateway::aliyun::Credential;
use ecs_gateway::aliyun::DnsConfig;
use ecs_gateway::aliyun::Regions;
use ecs_gateway::aliyun::Sources;
use ecs_gateway::aliyun::signer::percent_encode;
use ecs_gateway::aliyun::{EcsClient, SystemClock, UuidNonce};
use ecs_gateway::pb::StopInvocationRequest;
use ecs_gateway::testing::api::ServiceSettings;
use ecs_gateway::testing::server::ConnectionSettings;
use ecs_gateway::testing::server::ServerSettings;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tonic::Code;
use tonic_types::StatusExt as _;
use wiremock::{Mock, MockServer, ResponseTemplate};

const SUCCESS: &str = include_str!("../data/ecs/success.json");
/// grpc-java's default metadata limit is 8 KiB; the gateway promises half of it.
const TRAILER_LIMIT: usize = 4096;

fn connection_settings(change: impl FnOnce(&mut ConnectionSettings)) -> ServerSettings {
    let mut settings = ServerSettings::default();
    change(&mut settings.connection);
    settings
}

/// True once the peer closes `stream` (a read of 0 bytes or an error), within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 256];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read).await.is_ok()
}

#[tokio::test]
async fn connections_past_the_limit_are_closed_at_once_and_calls_go_on() {
    let ecs = ecs_answering(200, SUCCESS).await;
    let gateway = gateway_for_server(
        &ecs,
        ServerSettings {
            max_connections: 2,
            ..ServerSettings::default()
        },
    )
    .await;
    // The test client holds one slot; one idle socket takes the other.
    let _idle = TcpStream::connect(gateway.addr).await.unwrap();
    let mut refused = TcpStream::connect(gateway.addr).await.unwrap();
    assert!(closed_within(&mut refused, Duration::from_secs(2)).await);
    let ok = gateway
        .client
        .clone()
        .stop_invocation(request("cn-hangzhou", "t-1", &[]))
        .await;
    assert!(ok.is_ok(), "the admitted connection still serves: {ok:?}");
}

#[tokio::test]
async fn a_silent_or_slow_handshake_is_cut_off() {
    let ecs = ecs_answering(200, SUCCESS).await;
    let gateway = gateway_for_server(
        &ecs,
        connection_settings(|c| c.handshake_timeout = Duration::from_millis(300)),
    )
    .await;
    let mut silent = TcpStream::connect(gateway.addr).await.unwrap();
    let mut slowloris = TcpStream::connect(gateway.addr).await.unwrap();
    let trickle = async move {
        for byte in b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" {
            if slowloris.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        closed_within(&mut slowloris, Duration::from_secs(3)).await
    };
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
    assert!(trickle.await, "the slowloris connection was closed");
    let ok = gateway
        .client
        .clone()
        .stop_invocation(request("cn-hangzhou", "t-1", &[]))
        .await;
    assert!(
        ok.is_ok(),
        "a real client completes its handshake in time: {ok:?}"
    );
}

/// An HTTP/2 client connection with the handshake done and the connection driven in the background.
async fn h2_connect(
    addr: std::net::SocketAddr,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    (send, tokio::spawn(connection))
}

#[tokio::test]
async fn an_idle_connection_gets_goaway_and_is_closed() {
    let ecs = ecs_answering(200, SUCCESS).await;
    let gateway = gateway_for_server(
        &ecs,
        connection_settings(|c| c.max_idle = Duration::from_millis(300)),
    )
    .await;
    let (_send, connection) = h2_connect(gateway.addr).await;
    let ended = tokio::time::timeout(Duration::from_secs(3), connection).await;
    assert!(
        ended.is_ok(),
        "the idle connection was closed by the server"
    );
}

#[tokio::test]
async fn an_old_connection_gets_goaway_and_its_call_in_flight_still_finishes() {
    let ecs = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(SUCCESS, "application/json")
                .set_delay(Duration::from_millis(1000)),
        )
        .mount(&ecs)
        .await;
    let gateway = gateway_for_server(
        &ecs,
        connection_settings(|c| c.max_age = Duration::from_millis(300)),
    )
    .await;
    let (mut send, connection) = h2_connect(gateway.addr).await;
    let call = http::Request::post(format!(
        "http://{}/ecsgateway.v1.CloudAssistantService/StopInvocation",
        gateway.addr
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(())
    .unwrap();
    let payload = crate::support::raw::encode(&request("cn-hangzhou", "t-1", &[]));
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    let (response, mut body) = send.send_request(call, false).unwrap();
    body.send_data(frame.into(), true).unwrap();

    let mut response = response.await.unwrap().into_body();
    while let Some(chunk) = response.data().await {
        let chunk = chunk.unwrap();
        let _ = response.flow_control().release_capacity(chunk.len());
    }
    let trailers = response.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0", "the call outlived the GOAWAY");
    let ended = tokio::time::timeout(Duration::from_secs(3), connection).await;
    assert!(
        ended.is_ok(),
        "the old connection closed after its last call"
    );
}

#[tokio::test]
async fn the_stream_limit_is_announced_in_settings() {
    let ecs = ecs_answering(200, SUCCESS).await;
    let gateway =
        gateway_for_server(&ecs, connection_settings(|c| c.max_concurrent_streams = 7)).await;
    let tcp = TcpStream::connect(gateway.addr).await.unwrap();
    let (_send, mut connection) = h2::client::handshake(tcp).await.unwrap();
    // Drive the connection briefly so the server's SETTINGS are read.
    let _ = tokio::time::timeout(Duration::from_millis(300), &mut connection).await;
    assert_eq!(connection.max_concurrent_send_streams(), 7);
}

#[tokio::test]
async fn ten_thousand_invalid_ids_give_a_small_answer_with_ten_violations() {
    let ecs = ecs_answering(200, SUCCESS).await;
    // Large enough a message limit for 10,000 ids to reach validation.
    let gateway = Gateway::start_with(
        ecs_client(&format!("{}/", ecs.uri()), test_credential()),
        ServiceSettings {
            max_request_bytes: 4 * 1024 * 1024,
            ..ServiceSettings::default()
        },
        ServerSettings::default(),
    )
    .await;
    let ids: Vec<String> = (0..10_000).map(|i| format!("bad id {i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    // 40 invalid ids stay under the count limit, so each of them is a violation.
    let many = request("", "", &refs[..40]);
    for req in [request("cn-hangzhou", "t-1", &refs), many] {
        let status = gateway
            .client
            .clone()
            .stop_invocation(req.clone())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad = status.get_error_details().bad_request().cloned().unwrap();
        assert!(bad.field_violations.len() <= 11, "{bad:?}");
        assert!(status.message().len() < 300, "{}", status.message());
        let raw = crate::support::raw::call(gateway.addr, &crate::support::raw::encode(&req)).await;
        assert_eq!(raw.status, "3");
        assert!(raw.header_bytes < TRAILER_LIMIT, "{raw:?}");
    }
    let status = gateway
        .client
        .clone()
        .stop_invocation(request("", "", &refs[..40]))
        .await
        .unwrap_err();
    let bad = status.get_error_details().bad_request().cloned().unwrap();
    assert_eq!(bad.field_violations.len(), 11);
    assert_eq!(
        bad.field_violations[10].description,
        "and 32 more violations"
    );
    assert!(ecs.received_requests().await.unwrap().is_empty());
}

async fn echo_gateway(status: u16, request_id: String) -> (Gateway, MockServer) {
    let ecs = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Echo { status, request_id })
        .mount(&ecs)
        .await;
    let credential = Credential::new(ID, SECRET, Some(TOKEN.into()));
    let gateway = Gateway::start(ecs_client(&format!("{}/", ecs.uri()), credential)).await;
    (gateway, ecs)
}

/// Everything a caller can see of a status, as text: the message, every string of every
/// detail, and the metadata.
fn visible(status: &tonic::Status) -> String {
    let details = status.get_error_details();
    let mut text = status.message().to_owned();
    if let Some(info) = details.error_info() {
        text.push_str(&format!(
            "{} {} {:?}",
            info.reason, info.domain, info.metadata
        ));
    }
    if let Some(info) = details.request_info() {
        text.push_str(&format!("{} {}", info.request_id, info.serving_data));
    }
    if let Some(help) = details.help() {
        for link in &help.links {
            text.push_str(&format!("{} {}", link.description, link.url));
        }
    }
    for entry in status.metadata().iter() {
        if let tonic::metadata::KeyAndValueRef::Ascii(key, value) = entry {
            text.push_str(&format!("{key}={value:?}"));
        }
    }
    text
}

#[tokio::test]
async fn an_echoing_upstream_leaks_no_credential_and_cannot_bloat_the_answer() {
    let hostile_id = format!("{ID}-{}", "A".repeat(60_000));
    let (gateway, _ecs) = echo_gateway(503, hostile_id).await;
    let status = gateway.refused_t1().await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let shown = visible(&status);
    for leak in [
        ID,
        SECRET,
        TOKEN,
        &percent_encode(TOKEN).to_string(),
        "Signature=",
        "Signature%3D",
        "SecurityToken",
        "\r",
        "\u{1b}",
    ] {
        assert!(!shown.contains(leak), "{leak:?} reached the caller");
    }
    let details = status.get_error_details();
    assert!(
        details.help().is_none(),
        "no link off Alibaba Cloud domains"
    );
    assert!(
        details.request_info().is_none(),
        "the RequestId was not one"
    );
    assert!(status.metadata().get("x-acs-request-id").is_none());
    let delay = details.retry_info().unwrap().retry_delay.unwrap();
    assert_eq!(
        delay,
        Duration::from_secs(60),
        "Retry-After 100000 is capped"
    );
    assert!(status.message().len() <= 600, "{}", status.message().len());

    let raw = crate::support::raw::call(
        gateway.addr,
        &crate::support::raw::encode(&request("cn-hangzhou", "t-1", &[])),
    )
    .await;
    assert_eq!(raw.status, "14");
    assert!(raw.header_bytes < TRAILER_LIMIT, "{raw:?}");
}

#[tokio::test]
async fn a_success_with_a_giant_request_id_is_still_a_success() {
    let (gateway, _ecs) = echo_gateway(200, "R".repeat(60_000)).await;
    let answer = gateway
        .client
        .clone()
        .stop_invocation(request("cn-hangzhou", "t-1", &[]))
        .await
        .expect("ECS said 200");
    assert_eq!(answer.get_ref().request_id, "");
    assert!(answer.metadata().get("x-acs-request-id").is_none());
}

#[tokio::test]
async fn the_retry_budget_bounds_attempts_when_everything_fails() {
    let ecs = ecs_answering(503, include_str!("../data/ecs/service-unavailable.json")).await;
    let started = tokio::time::Instant::now();
    let mut s = settings(&format!("{}/", ecs.uri()));
    s.retry_budget = 0.2;
    let gateway = Gateway::start(EcsClient::new(test_credential(), s).unwrap()).await;
    let calls = 500;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let client = gateway.client.clone();
            tokio::spawn(async move {
                for _ in 0..calls / 20 {
                    let status = client
                        .clone()
                        .stop_invocation(request("cn-hangzhou", "t-1", &[]))
                        .await
                        .unwrap_err();
                    assert_eq!(status.code(), Code::Unavailable);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let attempts = ecs.received_requests().await.unwrap().len() as f64;
    // A fifth of the calls, plus the reserve: 10 a second over any 10 s, all there from the start.
    let bound = 1.2 * calls as f64 + 10.0 * seconds.max(10.0);
    assert!(
        attempts <= bound,
        "{attempts} attempts > {bound} in {seconds:.2} s"
    );
    assert!(
        attempts > calls as f64,
        "some retries were still made: {attempts}"
    );
}

/// Threads of this process, from /proc.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_outage_with_800_calls_in_flight_adds_no_threads() {
    let dns = FakeDns::start().await;
    let mut s = settings("http://ecs.{region}.gw.test:9/");
    s.dns = DnsConfig::Servers(vec![dns.addr]);
    s.retry.max_retries = 0;
    let client = EcsClient::with_sources(
        test_credential(),
        s,
        Sources {
            clock: Arc::new(SystemClock),
            nonces: Arc::new(UuidNonce),
            ..Sources::default()
        },
    )
    .unwrap();
    let mut server = ServerSettings::default();
    server.connection.max_concurrent_streams = 1000;
    let gateway = Gateway::start_with(
        client,
        ServiceSettings {
            regions: Regions::Any,
            ..ServiceSettings::default()
        },
        server,
    )
    .await;
    let before = threads();
    let calls: Vec<_> = (0..800)
        .map(|_| {
            let mut client = gateway.client.clone();
            tokio::spawn(async move {
                let mut req = tonic::Request::new(request("silent-dns-1", "t-1", &[]));
                req.set_timeout(Duration::from_secs(3));
                client.stop_invocation(req).await
            })
        })
        .collect();
    // The resolver has been asked, and nobody answers: every call is waiting on DNS.
    assert!(
        eventually(Duration::from_secs(5), || calls
            .iter()
            .all(|c| !c.is_finished()))
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = threads();
    let mut late = 0;
    for call in calls {
        let status = call.await.unwrap().unwrap_err();
        // The gateway answers 20 ms before the caller's deadline; when 800 deadlines fall due at
        // once on two busy cores, a few answers can come after the client's own timer fired. That
        // is the client's CANCELLED, not a lost call; anything else is a wrong answer.
        if status.code() == Code::Cancelled && status.message() == "Timeout expired" {
            late += 1;
            continue;
        }
        assert!(
            matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded),
            "{status:?}"
        );
    }
    assert!(late < 800, "no call was answered by the gateway");
    assert!(
        during < 64,
        "{before} threads before, {during} during the outage"
    );
    eprintln!(
        "threads: {before} before, {during} with 800 calls waiting on a silent DNS server; {late} answers came after the client's own timeout"
    );
}

/// The request shape the Python grpcio check sends, as hex.
fn hex(req: &StopInvocationRequest) -> String {
    crate::support::raw::encode(req)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn python_grpcio_within_its_16_kib_metadata_limit_sees_the_real_codes() {
    let ecs = ecs_answering(200, SUCCESS).await;
    let invalid_gateway = gateway_for(&ecs).await;
    let (giant_id_gateway, _echo) = echo_gateway(200, "R".repeat(60_000)).await;
    let ids: Vec<String> = (0..60).map(|i| format!("bad id {i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    // Async, so that the gateways on this test's runtime keep serving while Python waits.
    let run = async |addr: std::net::SocketAddr, req: StopInvocationRequest| {
        let output = tokio::process::Command::new(&python)
            .arg("tests/grpcio/call.py")
            .arg(addr.to_string())
            .arg(hex(&req))
            .output()
            .await
            .expect("python3 runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let refused = run(invalid_gateway.addr, request("", "t-1", &refs[..40])).await;
    assert!(refused.starts_with("INVALID_ARGUMENT"), "{refused}");
    let over_count = run(invalid_gateway.addr, request("cn-hangzhou", "t-1", &refs)).await;
    assert!(over_count.starts_with("INVALID_ARGUMENT"), "{over_count}");
    let ok = run(giant_id_gateway.addr, request("cn-hangzhou", "t-1", &[])).await;
    assert_eq!(ok, "OK");
}

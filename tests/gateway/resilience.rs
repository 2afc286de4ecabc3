//! Retries, deadlines, cancellation and misbehaving upstreams: bounded time, contract codes, and
//! a gateway that keeps serving.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{
    CountingNonce, FixedNonce, Gateway, RawBehavior, RawUpstream, ecs_answering, ecs_client,
    eventually, gateway_for, request, settings, test_credential,
};
use ecs_gateway::aliyun::Sources;
use ecs_gateway::aliyun::{EcsClient, SystemClock};
use tonic::Code;
use tonic_types::StatusExt as _;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const UNAVAILABLE_BODY: &str = include_str!("../data/ecs/service-unavailable.json");
const NONCE_USED: &str = r#"{"RequestId":"22222222-0000-4000-8000-000000000001","HostId":"ecs.aliyuncs.com","Code":"SignatureNonceUsed","Message":"Specified signature nonce was used already."}"#;

fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

async fn call(gateway: &Gateway, timeout: Option<Duration>) -> Result<String, tonic::Status> {
    let mut req = tonic::Request::new(request("cn-hangzhou", "t-1", &[]));
    if let Some(t) = timeout {
        req.set_timeout(t);
    }
    gateway
        .client
        .clone()
        .stop_invocation(req)
        .await
        .map(|r| r.into_inner().request_id)
}

async fn still_serving(gateway: &Gateway) {
    let mut health = tonic_health::pb::health_client::HealthClient::new(gateway.channel.clone());
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("the gateway still answers");
    assert_eq!(answer.get_ref().status, 1);
}

#[tokio::test]
async fn every_retry_is_signed_anew_with_a_fresh_nonce_and_signature() {
    let ecs = ecs_answering(503, UNAVAILABLE_BODY).await;
    let gateway = gateway_for(&ecs).await;
    let status = call(&gateway, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);

    let received = ecs.received_requests().await.unwrap();
    assert_eq!(received.len(), 3, "default policy: 1 attempt + 2 retries");
    // V3 (the default) carries the nonce and signature in headers.
    let header = |r: &wiremock::Request, name: &str| {
        r.headers.get(name).unwrap().to_str().unwrap().to_owned()
    };
    let nonces: HashSet<String> = received
        .iter()
        .map(|r| header(r, "x-acs-signature-nonce"))
        .collect();
    let signatures: HashSet<String> = received
        .iter()
        .map(|r| header(r, "authorization"))
        .collect();
    assert_eq!(nonces.len(), 3, "{nonces:?}");
    assert_eq!(signatures.len(), 3, "{signatures:?}");
}

#[tokio::test]
async fn a_used_nonce_gets_exactly_one_fresh_nonce_retry() {
    let ecs = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_raw(NONCE_USED, "application/json"))
        .up_to_n_times(1)
        .mount(&ecs)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(include_str!("../data/ecs/success.json"), "application/json"),
        )
        .mount(&ecs)
        .await;
    let client = EcsClient::with_sources(
        test_credential(),
        settings(&format!("{}/", ecs.uri())),
        Sources {
            clock: Arc::new(SystemClock),
            nonces: Arc::new(CountingNonce::default()),
            ..Sources::default()
        },
    )
    .unwrap();
    let gateway = Gateway::start(client).await;
    assert!(call(&gateway, None).await.is_ok());
    let received = ecs.received_requests().await.unwrap();
    let nonces: Vec<&str> = received
        .iter()
        .map(|r| {
            r.headers
                .get("x-acs-signature-nonce")
                .unwrap()
                .to_str()
                .unwrap()
        })
        .collect();
    assert_eq!(nonces, ["nonce-1", "nonce-2"]);
}

#[tokio::test]
async fn a_nonce_that_keeps_colliding_ends_as_internal_after_two_attempts() {
    let ecs = ecs_answering(400, NONCE_USED).await;
    let client = EcsClient::with_sources(
        test_credential(),
        settings(&format!("{}/", ecs.uri())),
        Sources {
            clock: Arc::new(SystemClock),
            nonces: Arc::new(FixedNonce("same".into())),
            ..Sources::default()
        },
    )
    .unwrap();
    let gateway = Gateway::start(client).await;
    let status = call(&gateway, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(reason(&status), "SIGNATURE_NONCE_USED");
    assert_eq!(ecs.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_deadline_shorter_than_the_upstream_ends_in_deadline_exceeded_and_drops_the_request() {
    let upstream = RawUpstream::start(RawBehavior::Hang).await;
    let gateway = Gateway::start(ecs_client(&upstream.url, test_credential())).await;

    let status = call(&gateway, Some(Duration::from_millis(300)))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(
        reason(&status),
        "DEADLINE_EXCEEDED",
        "the status is the gateway's, not tonic's timer"
    );
    assert!(
        eventually(Duration::from_secs(3), || upstream.peer_closed() == 1).await,
        "the upstream request was cancelled (connection closed)"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(upstream.accepted(), 1, "no attempt after the deadline");
    still_serving(&gateway).await;
}

#[tokio::test]
async fn no_backoff_sleeps_past_the_deadline() {
    let ecs = ecs_answering(503, UNAVAILABLE_BODY).await;
    let mut s = settings(&format!("{}/", ecs.uri()));
    s.retry.base = Duration::from_secs(5);
    s.retry.cap = Duration::from_secs(10);
    let gateway = Gateway::start(EcsClient::new(test_credential(), s).unwrap()).await;
    // Every backoff (>= 5 s) would end past the 1 s deadline, so the real failure is reported at once.
    let status = call(&gateway, Some(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(ecs.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_cancelled_call_drops_its_upstream_request() {
    let upstream = RawUpstream::start(RawBehavior::Hang).await;
    let gateway = Gateway::start(ecs_client(&upstream.url, test_credential())).await;
    let mut client = gateway.client.clone();
    let in_flight = tokio::spawn(async move {
        client
            .stop_invocation(request("cn-hangzhou", "t-1", &[]))
            .await
    });
    assert!(eventually(Duration::from_secs(3), || upstream.accepted() == 1).await);
    in_flight.abort();
    assert!(
        eventually(Duration::from_secs(3), || upstream.peer_closed() == 1).await,
        "the upstream connection is closed once the caller cancels"
    );
    still_serving(&gateway).await;
}

#[tokio::test]
async fn a_hanging_upstream_is_retried_per_attempt_timeout_then_unavailable() {
    let upstream = RawUpstream::start(RawBehavior::Hang).await;
    let mut s = settings(&upstream.url);
    s.attempt_timeout = Duration::from_millis(200);
    let gateway = Gateway::start(EcsClient::new(test_credential(), s).unwrap()).await;
    let status = call(&gateway, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(reason(&status), "UPSTREAM_TIMEOUT");
    assert_eq!(upstream.accepted(), 3);
    still_serving(&gateway).await;
}

#[tokio::test]
async fn an_upstream_that_resets_connections_is_retried_then_unavailable() {
    let upstream = RawUpstream::start(RawBehavior::Close).await;
    let gateway = Gateway::start(ecs_client(&upstream.url, test_credential())).await;
    let status = call(&gateway, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(reason(&status), "UPSTREAM_UNAVAILABLE");
    assert!(status.get_error_details().retry_info().is_some());
    assert_eq!(upstream.accepted(), 3);
    assert!(
        !status.message().contains("Signature"),
        "{}",
        status.message()
    );
    still_serving(&gateway).await;
}

#[tokio::test]
async fn a_down_upstream_is_unavailable_with_retry_info() {
    let closed = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let gateway = Gateway::start(ecs_client(&url, test_credential())).await;
    let status = call(&gateway, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason(&status), "UPSTREAM_UNAVAILABLE");
    assert!(
        !status.message().contains("127.0.0.1"),
        "no URL in the message: {}",
        status.message()
    );
    still_serving(&gateway).await;
}

#[tokio::test]
async fn garbage_from_the_upstream_maps_to_contract_codes() {
    let cases: [(&[u8], Code, u64); 3] = [
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
            Code::Unknown,
            1,
        ),
        (
            b"\x00\x01garbage that is not HTTP\r\n\r\n",
            Code::Unavailable,
            3,
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 500\r\nconnection: close\r\n\r\n{\"Req",
            Code::Unavailable,
            3,
        ),
    ];
    for (bytes, code, attempts) in cases {
        let upstream = RawUpstream::start(RawBehavior::Respond(bytes)).await;
        let gateway = Gateway::start(ecs_client(&upstream.url, test_credential())).await;
        let status = call(&gateway, None).await.unwrap_err();
        let label = String::from_utf8_lossy(bytes);
        assert_eq!(status.code(), code, "{label}: {status:?}");
        assert_eq!(upstream.accepted(), attempts, "{label}");
        still_serving(&gateway).await;
    }
}

#[tokio::test]
async fn a_freshly_started_gateway_retries_a_burst_of_transient_failures() {
    let ecs = MockServer::start().await;
    let burst = 40;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_raw(UNAVAILABLE_BODY, "application/json"))
        .up_to_n_times(burst)
        .mount(&ecs)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(include_str!("../data/ecs/success.json"), "application/json"),
        )
        .mount(&ecs)
        .await;
    let client = EcsClient::new(test_credential(), settings(&format!("{}/", ecs.uri()))).unwrap();
    let gateway = Gateway::start(client).await;
    // The whole burst at once, first thing: each call's first attempt fails, its retry succeeds.
    let calls: Vec<_> = (0..burst).map(|_| call(&gateway, None)).collect();
    let answers = futures_util::future::join_all(calls).await;
    let failed: Vec<_> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {burst} not retried: {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(
        ecs.received_requests().await.unwrap().len() as u64,
        2 * burst
    );
}

//! Permanent failures are reported as permanent and never retried; transient ones stay
//! UNAVAILABLE; every call has a ceiling; bad wire input is the caller's INVALID_ARGUMENT.
//! Each through the real server on 127.0.0.1:0 with a real upstream.

use std::sync::Arc;
use std::time::Duration;

use crate::support::dns::FakeDns;
use crate::support::{
    Gateway, RawBehavior, RawUpstream, ecs_answering, ecs_client, error_info, eventually,
    gateway_for, request, settings, test_credential,
};
use ecs_gateway::aliyun::DnsConfig;
use ecs_gateway::aliyun::Regions;
use ecs_gateway::aliyun::Sources;
use ecs_gateway::aliyun::{EcsClient, SystemClock, UuidNonce};
use ecs_gateway::testing::api::ServiceSettings;
use ecs_gateway::testing::server::ServerSettings;
use tonic::Code;
use tonic_types::StatusExt as _;

const SUCCESS: &str = include_str!("../data/ecs/success.json");

fn has_retry_info(status: &tonic::Status) -> bool {
    status.get_error_details().retry_info().is_some()
}

async fn gateway_with(ecs: EcsClient, service: ServiceSettings) -> Gateway {
    Gateway::start_with(ecs, service, ServerSettings::default()).await
}

fn any_region() -> ServiceSettings {
    ServiceSettings {
        regions: Regions::Any,
        ..ServiceSettings::default()
    }
}

async fn stop(
    gateway: &Gateway,
    req: impl tonic::IntoRequest<ecs_gateway::pb::StopInvocationRequest>,
) -> Result<tonic::Response<ecs_gateway::pb::StopInvocationResponse>, tonic::Status> {
    gateway.client.clone().stop_invocation(req).await
}

#[tokio::test]
async fn a_region_off_the_list_is_not_found_and_nothing_is_sent() {
    let ecs = ecs_answering(200, SUCCESS).await;
    let gateway = gateway_for(&ecs).await;
    let status = stop(&gateway, request("cn-hangzou", "t-1", &[]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(
        error_info(&status),
        ("INVALID_REGION_ID_NOT_FOUND".into(), "ecs-gateway".into())
    );
    assert!(!has_retry_info(&status));
    assert!(
        status.message().contains("cn-hangzou"),
        "{}",
        status.message()
    );
    assert!(ecs.received_requests().await.unwrap().is_empty());

    // A listed region goes through.
    let ok = stop(&gateway, request("cn-hangzhou", "t-1", &[])).await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test]
async fn regions_that_are_no_dns_label_fail_validation_even_with_any_region_allowed() {
    let ecs = ecs_answering(200, SUCCESS).await;
    let gateway = gateway_with(
        ecs_client(&format!("{}/", ecs.uri()), test_credential()),
        any_region(),
    )
    .await;
    for region in ["a".repeat(64), "2130706433".to_owned()] {
        let status = stop(&gateway, request(&region, "t-1", &[]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{region}");
        let bad = status.get_error_details().bad_request().cloned().unwrap();
        assert_eq!(bad.field_violations[0].field, "region_id");
    }
    assert!(ecs.received_requests().await.unwrap().is_empty());
}

/// An ECS client that resolves `http://ecs.{region}.gw.test:PORT/` through `dns`.
fn client_via_dns(dns: &FakeDns, port: u16) -> EcsClient {
    let mut s = settings(&format!("http://ecs.{{region}}.gw.test:{port}/"));
    s.dns = DnsConfig::Servers(vec![dns.addr]);
    EcsClient::with_sources(
        test_credential(),
        s,
        Sources {
            clock: Arc::new(SystemClock),
            nonces: Arc::new(UuidNonce),
            ..Sources::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn dns_no_such_host_is_not_found_once_and_a_failing_resolver_is_retried() {
    let ecs = ecs_answering(200, SUCCESS).await;
    let port = ecs.address().port();

    // Resolution works: the name resolves to the loopback upstream.
    let dns = FakeDns::start().await;
    let gateway = gateway_with(client_via_dns(&dns, port), any_region()).await;
    let ok = stop(&gateway, request("cn-hangzhou", "t-1", &[])).await;
    assert!(ok.is_ok(), "{ok:?}");
    assert!(dns.queries() >= 1);

    // NXDOMAIN: NOT_FOUND, no RetryInfo, one attempt (one round of lookups, never repeated).
    let dns = FakeDns::start().await;
    let gateway = gateway_with(client_via_dns(&dns, port), any_region()).await;
    let status = stop(&gateway, request("nx-nowhere-1", "t-1", &[]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(error_info(&status).0, "UPSTREAM_HOST_NOT_FOUND");
    assert!(!has_retry_info(&status));
    let nx_queries = dns.queries();

    // SERVFAIL (a resolver that is failing): UNAVAILABLE with RetryInfo, after three attempts.
    let failing = FakeDns::start().await;
    let gateway = gateway_with(client_via_dns(&failing, port), any_region()).await;
    let status = stop(&gateway, request("fail-dns-1", "t-1", &[]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(has_retry_info(&status));
    let fail_queries = failing.queries();
    assert!(
        nx_queries >= 1 && fail_queries >= 3 * nx_queries,
        "one attempt for NXDOMAIN ({nx_queries} queries), three for SERVFAIL ({fail_queries})"
    );
    assert_eq!(ecs.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_certificate_the_gateway_cannot_verify_is_internal_and_tried_once() {
    let upstream = crate::support::tls::SelfSignedUpstream::start().await;
    let gateway = gateway_with(
        ecs_client(&upstream.url, test_credential()),
        ServiceSettings::default(),
    )
    .await;
    let status = stop(&gateway, request("cn-hangzhou", "t-1", &[]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert_eq!(error_info(&status).0, "UPSTREAM_CERTIFICATE_UNTRUSTED");
    assert!(!has_retry_info(&status));
    assert!(
        status.message().contains("certificate"),
        "{}",
        status.message()
    );
    assert_eq!(upstream.handshakes(), 1, "not retried");
}

#[tokio::test]
async fn owner_accounts_are_bounded_and_printable_before_anything_is_sent() {
    let ecs = ecs_answering(200, SUCCESS).await;
    let gateway = gateway_for(&ecs).await;
    let mut req = request("cn-hangzhou", "t-1", &[]);
    req.owner_account = Some("x".repeat(22_000));
    req.resource_owner_account = Some("evil\r\nHeader: 1".into());
    let status = stop(&gateway, req).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = status
        .get_error_details()
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(fields, ["owner_account", "resource_owner_account"]);
    assert!(ecs.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_malformed_grpc_timeout_is_invalid_argument_naming_the_header() {
    let ecs = ecs_answering(200, SUCCESS).await;
    let gateway = gateway_for(&ecs).await;
    for bad in ["abc", "-1S", "1SS", "123456789S"] {
        let mut req = tonic::Request::new(request("cn-hangzhou", "t-1", &[]));
        req.metadata_mut()
            .insert("grpc-timeout", bad.parse().unwrap());
        let status = stop(&gateway, req).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad}: {status:?}");
        assert!(status.message().contains("grpc-timeout"), "{bad}");
        assert_eq!(error_info(&status).0, "INVALID_GRPC_TIMEOUT");
    }
    assert!(ecs.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_maximum_call_duration_ends_calls_without_or_with_a_longer_deadline() {
    let upstream = RawUpstream::start(RawBehavior::Hang).await;
    let gateway = gateway_with(
        ecs_client(&upstream.url, test_credential()),
        ServiceSettings {
            max_call_duration: Duration::from_millis(300),
            ..ServiceSettings::default()
        },
    )
    .await;
    for timeout in [None, Some(Duration::from_secs(20))] {
        let mut req = tonic::Request::new(request("cn-hangzhou", "t-1", &[]));
        if let Some(t) = timeout {
            req.set_timeout(t);
        }
        let status = tokio::time::timeout(Duration::from_secs(10), stop(&gateway, req))
            .await
            .expect("the ceiling, not the upstream's 5 s attempt timeout, ends the call")
            .unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{timeout:?}");
        assert_eq!(error_info(&status).0, "DEADLINE_EXCEEDED");
    }
    assert!(
        eventually(Duration::from_secs(2), || upstream.peer_closed() == 2).await,
        "the upstream requests were dropped"
    );
}

#[tokio::test]
async fn undecodable_requests_are_the_callers_invalid_argument() {
    let ecs = ecs_answering(200, SUCCESS).await;
    let gateway = gateway_for(&ecs).await;
    // region_id (field 1) holding bytes that are not UTF-8; then a length running past the end.
    for payload in [&[0x0A, 0x02, 0xC3, 0x28][..], &[0x0A, 0x05, b'a'][..]] {
        let answer = crate::support::raw::call(gateway.addr, payload).await;
        assert_eq!(
            answer.status, "3",
            "INVALID_ARGUMENT for {payload:?}: {answer:?}"
        );
        assert!(
            answer.message.contains("StopInvocationRequest"),
            "{payload:?}: {answer:?}"
        );
    }
    assert!(ecs.received_requests().await.unwrap().is_empty());
}

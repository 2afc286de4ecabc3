//! Bad input gets INVALID_ARGUMENT with every violation listed, and nothing is sent upstream.

use crate::support::{Gateway, ecs_client, request, test_credential};
use ecs_gateway::pb::StopInvocationRequest;
use tonic::Code;
use tonic_types::StatusExt as _;
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn gateway_with_silent_upstream() -> (Gateway, MockServer) {
    let ecs = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(include_str!("../data/ecs/success.json"), "application/json"),
        )
        .expect(0)
        .mount(&ecs)
        .await;
    let gateway = Gateway::start(ecs_client(&format!("{}/", ecs.uri()), test_credential())).await;
    (gateway, ecs)
}

fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    let bad = status
        .get_error_details()
        .bad_request()
        .cloned()
        .expect("a BadRequest");
    bad.field_violations
        .into_iter()
        .map(|v| (v.field, v.description))
        .collect()
}

#[tokio::test]
async fn regions_that_could_steer_the_host_are_refused_before_sending() {
    let (gateway, ecs) = gateway_with_silent_upstream().await;
    for region in [
        "cn-hangzhou.evil.example",
        "cn/../x",
        "a b",
        "",
        "CN-HANGZHOU",
        "cn-hangzhou:443",
        "-x",
    ] {
        let status = gateway
            .client
            .clone()
            .stop_invocation(request(region, "t-1", &[]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{region:?}");
        let v = violations(&status);
        assert_eq!(v.len(), 1, "{region:?}: {v:?}");
        assert_eq!(v[0].0, "region_id");
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.reason, "INVALID_REQUEST");
    }
    assert!(ecs.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn every_violation_is_listed_with_field_and_rule() {
    let (gateway, ecs) = gateway_with_silent_upstream().await;
    let mut ids: Vec<String> = (0..50).map(|i| format!("i-{i}")).collect();
    ids[3] = "i-0".into();
    ids[7] = "i 7".into();
    let req = StopInvocationRequest {
        region_id: "".into(),
        invoke_id: "t-".repeat(70),
        instance_ids: ids,
        ..Default::default()
    };
    let status = gateway
        .client
        .clone()
        .stop_invocation(req)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violations(&status),
        [
            ("region_id".to_owned(), "is required".to_owned()),
            (
                "invoke_id".to_owned(),
                "must be at most 128 characters".to_owned()
            ),
            (
                "instance_ids[3]".to_owned(),
                "duplicates an earlier instance ID".to_owned()
            ),
            (
                "instance_ids[7]".to_owned(),
                "must contain only ASCII letters, digits, '-' and '_'".to_owned()
            ),
        ]
    );
    assert!(
        status.message().contains("region_id is required"),
        "{}",
        status.message()
    );
    assert!(ecs.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_oversized_message_is_refused_with_a_clear_status() {
    let (gateway, ecs) = gateway_with_silent_upstream().await;
    let req = request("cn-hangzhou", "t-1", &[&"i".repeat(70 * 1024)]);
    let status = gateway
        .client
        .clone()
        .stop_invocation(req)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
    assert!(ecs.received_requests().await.unwrap().is_empty());
}

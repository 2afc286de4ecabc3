//! Each upstream answer maps to the contract's gRPC code and details (reference/error-mapping.md).

use crate::support::{ecs_answering, gateway_for, request};
use tonic::Code;
use tonic_types::StatusExt as _;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

struct Case {
    file: &'static str,
    body: &'static str,
    http: u16,
    code: Code,
    reason: &'static str,
    domain: &'static str,
    message: &'static str,
    request_id: Option<&'static str>,
    retry_info: bool,
    attempts: usize,
}

const ECS: &str = "ecs.aliyuncs.com";
const GW: &str = "ecs-gateway";

macro_rules! body {
    ($f:literal) => {
        ($f, include_str!(concat!("../data/ecs/", $f)))
    };
}

fn cases() -> Vec<Case> {
    let case = |(file, body): (&'static str, &'static str),
                http,
                code,
                reason,
                domain,
                message,
                request_id,
                retry_info,
                attempts| Case {
        file,
        body,
        http,
        code,
        reason,
        domain,
        message,
        request_id,
        retry_info,
        attempts,
    };
    vec![
        case(
            body!("region-api-not-supported.json"),
            400,
            Code::InvalidArgument,
            "REGION_ID_API_NOT_SUPPORTED",
            ECS,
            "RegionId.ApiNotSupported: The api is not supported in this region.",
            Some("11111111-0000-4000-8000-000000000001"),
            false,
            1,
        ),
        case(
            body!("instance-ids-exceed-limit.json"),
            403,
            Code::InvalidArgument,
            "INSTANCE_IDS_EXCEED_LIMIT",
            ECS,
            "InstanceIds.ExceedLimit: The number of instance IDs exceeds the upper limit.",
            Some("11111111-0000-4000-8000-000000000002"),
            false,
            1,
        ),
        case(
            body!("operation-forbidden.json"),
            403,
            Code::PermissionDenied,
            "OPERATION_FORBIDDEN",
            ECS,
            "Operation.Forbidden: The operation is not permitted.",
            Some("11111111-0000-4000-8000-000000000003"),
            false,
            1,
        ),
        case(
            body!("invalid-region-not-found.json"),
            404,
            Code::NotFound,
            "INVALID_REGION_ID_NOT_FOUND",
            ECS,
            "InvalidRegionId.NotFound: The RegionId provided does not exist in our records.",
            Some("11111111-0000-4000-8000-000000000004"),
            false,
            1,
        ),
        case(
            body!("invalid-invoke-id-not-found.json"),
            404,
            Code::NotFound,
            "INVALID_INVOKE_ID_NOT_FOUND",
            ECS,
            "InvalidInvokeId.NotFound: The specified invoke ID does not exist.",
            Some("540CFF28-407A-40B5-B6A5-74B000000005"),
            false,
            1,
        ),
        // Older revisions answered 400 for the same code: the code decides.
        case(
            body!("invalid-invoke-id-not-found.json"),
            400,
            Code::NotFound,
            "INVALID_INVOKE_ID_NOT_FOUND",
            ECS,
            "InvalidInvokeId.NotFound: The specified invoke ID does not exist.",
            Some("540CFF28-407A-40B5-B6A5-74B000000005"),
            false,
            1,
        ),
        case(
            body!("internal-error-dispatch.json"),
            500,
            Code::Unavailable,
            "INTERNAL_ERROR_DISPATCH",
            ECS,
            "InternalError.Dispatch: An error occurred when you dispatched the request. Try again later.",
            Some("11111111-0000-4000-8000-000000000006"),
            true,
            3,
        ),
        case(
            body!("throttling-user.json"),
            400,
            Code::ResourceExhausted,
            "THROTTLING_USER",
            ECS,
            "Throttling.User: Request was denied due to user flow control.",
            Some("11111111-0000-4000-8000-000000000007"),
            true,
            3,
        ),
        case(
            body!("signature-does-not-match.json"),
            400,
            Code::Internal,
            "SIGNATURE_DOES_NOT_MATCH",
            ECS,
            "SignatureDoesNotMatch: Specified signature is not matched with our calculation.",
            Some("11111111-0000-4000-8000-000000000008"),
            false,
            1,
        ),
        case(
            body!("invalid-access-key.json"),
            404,
            Code::Internal,
            "INVALID_ACCESS_KEY_ID_NOT_FOUND",
            ECS,
            "InvalidAccessKeyId.NotFound: Specified access key is not found.",
            Some("11111111-0000-4000-8000-000000000012"),
            false,
            1,
        ),
        case(
            body!("service-unavailable.json"),
            503,
            Code::Unavailable,
            "SERVICE_UNAVAILABLE",
            ECS,
            "ServiceUnavailable: The request has failed due to a temporary failure of the server.",
            Some("11111111-0000-4000-8000-000000000009"),
            true,
            3,
        ),
        case(
            body!("forbidden-ram.json"),
            403,
            Code::PermissionDenied,
            "FORBIDDEN_RAM",
            ECS,
            "Forbidden.RAM: User not authorized to operate on the specified resource, or this API does not support RAM.",
            Some("11111111-0000-4000-8000-000000000010"),
            false,
            1,
        ),
        case(
            body!("lowercase-keys-not-found.json"),
            404,
            Code::NotFound,
            "INVALID_INVOKE_ID_NOT_FOUND",
            ECS,
            "InvalidInvokeId.NotFound: The specified invoke ID does not exist.",
            Some("11111111-0000-4000-8000-000000000011"),
            false,
            1,
        ),
        case(
            body!("bad-gateway.html"),
            502,
            Code::Unavailable,
            "UPSTREAM_MALFORMED_RESPONSE",
            GW,
            "ECS answered HTTP 502 with a body that is not an ECS response",
            None,
            true,
            3,
        ),
        case(
            body!("no-code-500.json"),
            500,
            Code::Internal,
            "UPSTREAM_MALFORMED_RESPONSE",
            GW,
            "ECS answered HTTP 500 with a body that is not an ECS response",
            Some("11111111-0000-4000-8000-000000000013"),
            false,
            1,
        ),
        case(
            body!("success-without-request-id.txt"),
            200,
            Code::Unknown,
            "UPSTREAM_MALFORMED_RESPONSE",
            GW,
            "ECS answered HTTP 200 without a readable RequestId; whether the invocation stopped is unknown",
            None,
            false,
            1,
        ),
        case(
            body!("success-without-request-id.txt"),
            418,
            Code::Unknown,
            "UPSTREAM_MALFORMED_RESPONSE",
            GW,
            "ECS answered HTTP 418 with a body that is not an ECS response",
            None,
            false,
            1,
        ),
        case(
            body!("success-without-request-id.txt"),
            409,
            Code::Aborted,
            "UPSTREAM_MALFORMED_RESPONSE",
            GW,
            "ECS answered HTTP 409 with a body that is not an ECS response",
            None,
            false,
            1,
        ),
    ]
}

#[tokio::test]
async fn every_upstream_answer_maps_to_its_contract_status() {
    for case in cases() {
        let ecs = MockServer::start().await;
        let content_type = if case.file.ends_with(".html") {
            "text/html"
        } else {
            "application/json;charset=utf-8"
        };
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(case.http).set_body_raw(case.body, content_type))
            .mount(&ecs)
            .await;
        let gateway = gateway_for(&ecs).await;
        let label = format!("{} as HTTP {}", case.file, case.http);

        let status = gateway
            .client
            .clone()
            .stop_invocation(request("cn-hangzhou", "t-1", &[]))
            .await
            .expect_err(&label);

        assert_eq!(status.code(), case.code, "{label}: {status:?}");
        assert_eq!(status.message(), case.message, "{label}");
        let details = status.get_error_details();
        let info = details
            .error_info()
            .unwrap_or_else(|| panic!("{label}: no ErrorInfo"));
        assert_eq!(info.reason, case.reason, "{label}");
        assert_eq!(info.domain, case.domain, "{label}");
        assert_eq!(
            info.metadata.get("httpStatus").map(String::as_str),
            Some(case.http.to_string().as_str()),
            "{label}"
        );
        assert_eq!(
            info.metadata.get("requestId").map(String::as_str),
            case.request_id,
            "{label}"
        );
        assert_eq!(
            details.retry_info().is_some(),
            case.retry_info,
            "{label}: RetryInfo"
        );
        assert_eq!(
            details.request_info().map(|r| r.request_id.as_str()),
            case.request_id,
            "{label}: RequestInfo"
        );
        assert_eq!(
            status
                .metadata()
                .get("x-acs-request-id")
                .map(|v| v.to_str().unwrap()),
            case.request_id,
            "{label}: x-acs-request-id"
        );
        if case.domain == ECS {
            let code = info
                .metadata
                .get("aliyunCode")
                .unwrap_or_else(|| panic!("{label}: aliyunCode"));
            assert!(case.message.starts_with(code.as_str()), "{label}");
            let recommend = case.body.contains("Recommend");
            assert_eq!(details.help().is_some(), recommend, "{label}: Help");
            if recommend {
                let link = &details.help().unwrap().links[0].url;
                assert!(link.contains(&format!("q={code}")), "{label}: {link}");
            }
        }
        assert_eq!(
            ecs.received_requests().await.unwrap().len(),
            case.attempts,
            "{label}: attempts"
        );
    }
}

/// Everything a caller could see of the error status for a canned ECS answer.
async fn rendered_error(http_status: u16, body: &str) -> String {
    let ecs = ecs_answering(http_status, body).await;
    let gateway = gateway_for(&ecs).await;
    let status = gateway.refused_t1().await;
    format!("{status:?} {:?}", status.get_error_details())
}

#[tokio::test]
async fn the_echoed_string_to_sign_never_reaches_the_caller() {
    let everything = rendered_error(
        400,
        include_str!("../data/ecs/signature-does-not-match.json"),
    )
    .await;
    for leak in [
        "string to sign",
        "LTAItestGatewayKey",
        "sts-token-echo",
        "AccessKeyId%3D",
        "test-secret-value",
    ] {
        assert!(!everything.contains(leak), "{leak:?} leaked: {everything}");
    }
}

#[tokio::test]
async fn ram_denial_details_stay_out_of_the_message() {
    let everything = rendered_error(403, include_str!("../data/ecs/forbidden-ram.json")).await;
    assert!(
        !everything.contains("EncodedDiagnosticMessage") && !everything.contains("ops-bot"),
        "{everything}"
    );
}

#[tokio::test]
async fn throttling_honours_retry_after_and_reports_it() {
    use std::time::Duration;
    let (status, attempts, elapsed) = throttled_with(&[("Retry-After", "1")]).await;
    // Two retries, each waiting out the requested second.
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(retry_delay(&status), Some(Duration::from_secs(1)));
    assert_eq!(attempts, 3);
}

/// A gateway in front of an ECS that throttles every call with these headers; returns the status,
/// how many attempts reached ECS and how long the call took.
async fn throttled_with(headers: &[(&str, &str)]) -> (tonic::Status, usize, std::time::Duration) {
    let ecs = MockServer::start().await;
    let mut answer = ResponseTemplate::new(400).set_body_raw(
        include_str!("../data/ecs/throttling-user.json"),
        "application/json",
    );
    for (name, value) in headers {
        answer = answer.insert_header(*name, *value);
    }
    Mock::given(method("POST"))
        .respond_with(answer)
        .mount(&ecs)
        .await;
    let gateway = gateway_for(&ecs).await;
    let started = std::time::Instant::now();
    let status = gateway.refused_t1().await;
    let elapsed = started.elapsed();
    (
        status,
        ecs.received_requests().await.unwrap().len(),
        elapsed,
    )
}

fn retry_delay(status: &tonic::Status) -> Option<std::time::Duration> {
    status
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay)
}

#[tokio::test]
async fn x_acs_retry_after_is_milliseconds_as_in_the_tea_sdk() {
    use std::time::Duration;
    // 300 ms: short, so waited out before each of the two retries, and reported as 300 ms.
    let (status, attempts, elapsed) = throttled_with(&[("x-acs-retry-after", "300")]).await;
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(retry_delay(&status), Some(Duration::from_millis(300)));
    assert_eq!(attempts, 3);
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");

    // 2500 ms is longer than the test gateway waits (2 s): handed to the caller at once, as 2.5 s
    // (read as seconds it would have been capped to a minute).
    let (status, attempts, _) = throttled_with(&[("x-acs-retry-after", "2500")]).await;
    assert_eq!(retry_delay(&status), Some(Duration::from_millis(2500)));
    assert_eq!(attempts, 1);

    // ECS's own header wins over HTTP's when both are sent; a value the SDK ignores is ignored.
    let (status, attempts, _) =
        throttled_with(&[("x-acs-retry-after", "2500"), ("retry-after", "1")]).await;
    assert_eq!(retry_delay(&status), Some(Duration::from_millis(2500)));
    assert_eq!(attempts, 1);
    let (status, _, _) = throttled_with(&[("x-acs-retry-after", "0"), ("retry-after", "3")]).await;
    assert_eq!(retry_delay(&status), Some(Duration::from_secs(3)));
}

#[tokio::test]
async fn http_retry_after_is_seconds() {
    use std::time::Duration;
    // 3 s is past the test gateway's 2 s: reported, not waited.
    let (status, attempts, _) = throttled_with(&[("retry-after", "3")]).await;
    assert_eq!(retry_delay(&status), Some(Duration::from_secs(3)));
    assert_eq!(attempts, 1);
}

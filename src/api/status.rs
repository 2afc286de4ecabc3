//! Gateway and upstream failures → `tonic::Status` with rich details: the one mapping table.

use std::collections::HashMap;
use std::time::Duration;

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt as _};

use crate::aliyun::error::{EcsError, ErrorClass, Limit, TransportKind};
use crate::aliyun::request::RegionId;
use crate::api::deadline::{GRPC_TIMEOUT_HEADER, MalformedTimeout};
use crate::api::validate::Violations;
use crate::auth::policy::{Denial, Permission};
use crate::auth::{Caller, Unauthenticated};
use crate::wait::Busy;

/// `ErrorInfo.domain` for errors ECS returned.
pub(crate) const ECS_DOMAIN: &str = "ecs.aliyuncs.com";
/// `ErrorInfo.domain` for the gateway's own errors.
pub(crate) const GATEWAY_DOMAIN: &str = "ecs-gateway";
/// Response metadata key carrying ECS's RequestId, on success and on error.
pub(crate) const REQUEST_ID_METADATA: &str = "x-acs-request-id";
/// The retry delay suggested when ECS gave none.
const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// The longest retry delay a status suggests, wherever the wait came from (ECS, Redis, a rate).
pub(crate) const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// `wait`, at most [`MAX_RETRY_DELAY`]: a caller told to wait longer would rather ask again.
fn bounded_delay(wait: Duration) -> Duration {
    wait.min(MAX_RETRY_DELAY)
}

/// The gRPC code for each class of failure (`reference/error-mapping.md`).
pub(crate) fn grpc_code(class: ErrorClass) -> Code {
    use ErrorClass::*;
    match class {
        InvalidArgument => Code::InvalidArgument,
        PermissionDenied => Code::PermissionDenied,
        NotFound | HostNotFound => Code::NotFound,
        Throttled | FleetQuota => Code::ResourceExhausted,
        // Rule 2: the gateway owns the credential, so a rejection is the gateway's fault.
        CredentialRejected | NonceReused | RequestBuiltWrong | UpstreamInternal
        | UntrustedUpstream => Code::Internal,
        Transient | Unreachable | AttemptTimedOut | Interrupted | CredentialsUnavailable => {
            Code::Unavailable
        }
        Conflict => Code::Aborted,
        Unknown | OutcomeUnknown => Code::Unknown,
        DeadlineExceeded => Code::DeadlineExceeded,
    }
}

/// `InvalidInvokeId.NotFound` → `INVALID_INVOKE_ID_NOT_FOUND`.
pub(crate) fn reason_from_code(code: &str) -> String {
    let mut reason = String::with_capacity(code.len() + 8);
    let mut previous: Option<char> = None;
    for c in code.chars() {
        if !c.is_ascii_alphanumeric() {
            if !reason.is_empty() && !reason.ends_with('_') {
                reason.push('_');
            }
        } else {
            let boundary = c.is_ascii_uppercase()
                && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit());
            if boundary && !reason.ends_with('_') {
                reason.push('_');
            }
            reason.push(c.to_ascii_uppercase());
        }
        previous = Some(c);
    }
    reason.trim_end_matches('_').to_owned()
}

/// The status for a failed stop (an ECS client failure).
pub fn from_ecs_error(error: &EcsError) -> Status {
    ecs_status(error, Permission::Stop).0
}

/// The status for a failed read of an invocation: read wording where a stop's would mislead.
pub(crate) fn from_ecs_read_error(error: &EcsError) -> Status {
    ecs_status(error, Permission::Read).0
}

/// The status for an ECS client failure of a call that would `what`, and its `ErrorInfo` reason.
pub(crate) fn ecs_status(error: &EcsError, what: Permission) -> (Status, String) {
    let class = error.class();
    let code = grpc_code(class);
    let mut details = ErrorDetails::new();
    let mut metadata = HashMap::new();
    let mut retry_after = None;
    let (reason, domain, message) = match error {
        EcsError::Api(api) => {
            metadata.insert("aliyunCode".to_owned(), api.code.clone());
            metadata.insert("httpStatus".to_owned(), api.http_status.to_string());
            if let Some(host_id) = &api.host_id {
                metadata.insert("hostId".to_owned(), host_id.clone());
            }
            if let Some(link) = &api.recommend {
                details.add_help_link(format!("ECS troubleshooting for {}", api.code), link);
            }
            retry_after = api.retry_after;
            let message = if api.message.is_empty() {
                api.code.clone()
            } else {
                format!("{}: {}", api.code, api.message)
            };
            (reason_from_code(&api.code), ECS_DOMAIN, message)
        }
        EcsError::Malformed { http_status, .. } => {
            metadata.insert("httpStatus".to_owned(), http_status.to_string());
            let message = if what == Permission::Read {
                format!(
                    "ECS answered the read with HTTP {http_status} and a body the gateway cannot read; the invocation's status is unknown"
                )
            } else if class == ErrorClass::OutcomeUnknown {
                format!(
                    "ECS answered HTTP {http_status} without a readable RequestId; whether the invocation stopped is unknown"
                )
            } else {
                format!("ECS answered HTTP {http_status} with a body that is not an ECS response")
            };
            (
                "UPSTREAM_MALFORMED_RESPONSE".to_owned(),
                GATEWAY_DOMAIN,
                message,
            )
        }
        EcsError::Transport { kind, detail } => {
            let (reason, message) = match kind {
                TransportKind::Timeout => ("UPSTREAM_TIMEOUT", "ECS did not answer in time"),
                TransportKind::Connect | TransportKind::Interrupted => {
                    ("UPSTREAM_UNAVAILABLE", "ECS could not be reached")
                }
                TransportKind::NoSuchHost => (
                    "UPSTREAM_HOST_NOT_FOUND",
                    "the ECS endpoint's host does not exist (is the region right?)",
                ),
                TransportKind::UntrustedCertificate => (
                    "UPSTREAM_CERTIFICATE_UNTRUSTED",
                    "the gateway could not verify the ECS endpoint's TLS certificate",
                ),
                TransportKind::Build => (
                    "REQUEST_NOT_BUILT",
                    "the gateway could not build the upstream request",
                ),
            };
            let message = format!("{message}: {detail}");
            (reason.to_owned(), GATEWAY_DOMAIN, message)
        }
        EcsError::CredentialsUnavailable => (
            "CREDENTIALS_UNAVAILABLE".to_owned(),
            GATEWAY_DOMAIN,
            "the gateway holds no valid Alibaba Cloud credential right now (it expired and refreshing it fails); nothing was sent to ECS; retry shortly"
                .to_owned(),
        ),
        EcsError::NotAdmitted(refused) => {
            retry_after = Some(refused.retry_after);
            let wait = bounded_delay(refused.retry_after);
            let reason = match refused.limit {
                Limit::Rate { per_second } => {
                    metadata.insert("rate".to_owned(), per_second.to_string());
                    "FLEET_RATE_EXCEEDED"
                }
                Limit::Quota {
                    action,
                    calls,
                    period,
                } => {
                    metadata.insert("action".to_owned(), action.to_owned());
                    metadata.insert("calls".to_owned(), calls.to_string());
                    metadata.insert("periodSeconds".to_owned(), period.as_secs().to_string());
                    "API_QUOTA_EXCEEDED"
                }
                Limit::Throttled { action } => {
                    metadata.insert("action".to_owned(), action.to_owned());
                    "ECS_THROTTLED"
                }
            };
            (
                reason.to_owned(),
                GATEWAY_DOMAIN,
                format!(
                    "{} for this account and region; nothing was sent; retry in {wait:?}",
                    refused.limit
                ),
            )
        }
        EcsError::DeadlineExceeded => (
            "DEADLINE_EXCEEDED".to_owned(),
            GATEWAY_DOMAIN,
            "the call's deadline (grpc-timeout, or the gateway's maximum call duration) ran out before ECS answered; the upstream request was dropped"
                .to_owned(),
        ),
    };
    if matches!(code, Code::Unavailable | Code::ResourceExhausted) {
        details.set_retry_info(Some(bounded_delay(
            retry_after.unwrap_or(DEFAULT_RETRY_DELAY),
        )));
    }
    if let Some(request_id) = error.request_id() {
        metadata.insert("requestId".to_owned(), request_id.to_owned());
        details.set_request_info(request_id, "");
    }
    details.set_error_info(reason.clone(), domain, metadata);
    let status = Status::with_error_details_and_metadata(
        code,
        message,
        details,
        request_id_metadata(error.request_id()),
    );
    (status, reason)
}

/// The status for a request that failed validation: every violation in a `BadRequest`.
pub(crate) fn from_violations(violations: &Violations) -> Status {
    let mut field_violations: Vec<FieldViolation> = violations
        .listed
        .iter()
        .map(|v| FieldViolation::new(&v.field, &v.description))
        .collect();
    if violations.more > 0 {
        field_violations.push(FieldViolation::new(
            "",
            format!("and {} more violations", violations.more),
        ));
    }
    let mut details = ErrorDetails::with_bad_request(field_violations);
    details.set_error_info("INVALID_REQUEST", GATEWAY_DOMAIN, HashMap::new());
    Status::with_error_details(Code::InvalidArgument, violations.to_string(), details)
}

/// The status for a region that passed validation but is not one the gateway serves: nothing was
/// sent, and no retry will help.
pub(crate) fn unknown_region(region: &RegionId) -> Status {
    let details = ErrorDetails::with_error_info(
        "INVALID_REGION_ID_NOT_FOUND",
        GATEWAY_DOMAIN,
        HashMap::from([("regionId".to_owned(), region.as_str().to_owned())]),
    );
    Status::with_error_details(
        Code::NotFound,
        format!("region_id {region:?} is not a region this gateway serves"),
        details,
    )
}

/// The status for a call without a valid caller identity: nothing was sent.
pub(crate) fn unauthenticated(error: Unauthenticated) -> Status {
    let details = ErrorDetails::with_error_info("UNAUTHENTICATED", GATEWAY_DOMAIN, HashMap::new());
    Status::with_error_details(Code::Unauthenticated, error.to_string(), details)
}

/// The `ErrorInfo` reason of a policy refusal.
pub(crate) fn denial_reason(denial: &Denial) -> &'static str {
    match denial {
        Denial::UnknownCaller | Denial::Region => "CALLER_NOT_ALLOWED",
        Denial::ReadOnly => "CALLER_READ_ONLY",
        Denial::Rate { .. } => "CALLER_RATE_EXCEEDED",
    }
}

/// The status for a call that would `what` and that the per-caller policy refuses: nothing was
/// sent.
pub(crate) fn denied(
    caller: &Caller,
    region: &RegionId,
    what: Permission,
    denial: &Denial,
) -> Status {
    let mut metadata = HashMap::from([("caller".to_owned(), caller.name().to_owned())]);
    let reason = denial_reason(denial);
    match denial {
        Denial::UnknownCaller => Status::with_error_details(
            Code::PermissionDenied,
            format!("caller {:?} is not in this gateway's policy", caller.name()),
            ErrorDetails::with_error_info(reason, GATEWAY_DOMAIN, metadata),
        ),
        Denial::Region => {
            metadata.insert("regionId".to_owned(), region.as_str().to_owned());
            let doing = match what {
                Permission::Stop => "stop commands",
                Permission::Read => "read invocations",
            };
            Status::with_error_details(
                Code::PermissionDenied,
                format!(
                    "caller {:?} may not {doing} in region {region:?}",
                    caller.name()
                ),
                ErrorDetails::with_error_info(reason, GATEWAY_DOMAIN, metadata),
            )
        }
        Denial::ReadOnly => {
            metadata.insert("regionId".to_owned(), region.as_str().to_owned());
            Status::with_error_details(
                Code::PermissionDenied,
                format!(
                    "caller {:?} may read invocations in region {region:?} but not stop them (policy access = \"read\")",
                    caller.name()
                ),
                ErrorDetails::with_error_info(reason, GATEWAY_DOMAIN, metadata),
            )
        }
        Denial::Rate {
            per_second,
            retry_after,
        } => {
            let retry_after = bounded_delay(*retry_after);
            metadata.insert("rate".to_owned(), per_second.to_string());
            let mut details = ErrorDetails::with_error_info(reason, GATEWAY_DOMAIN, metadata);
            details.set_retry_info(Some(retry_after));
            Status::with_error_details(
                Code::ResourceExhausted,
                format!(
                    "caller {:?} is over its rate of {per_second} calls per second; retry in {retry_after:?}",
                    caller.name()
                ),
                details,
            )
        }
    }
}

/// The status for an invocation ECS does not list in the region.
pub(crate) fn invocation_not_found(invoke_id: &str, region: &RegionId) -> Status {
    let metadata = HashMap::from([
        ("invokeId".to_owned(), invoke_id.to_owned()),
        ("regionId".to_owned(), region.as_str().to_owned()),
    ]);
    Status::with_error_details(
        Code::NotFound,
        format!("ECS lists no invocation {invoke_id:?} in region {region:?}"),
        ErrorDetails::with_error_info("INVOCATION_NOT_FOUND", GATEWAY_DOMAIN, metadata),
    )
}

/// The status a wait ends with at its deadline, after the latest statuses were sent; with what the
/// last poll said when it failed.
pub(crate) fn wait_deadline(
    ended: usize,
    targeted: usize,
    last_poll_error: Option<&str>,
) -> Status {
    let mut metadata = HashMap::from([
        ("finalInstances".to_owned(), ended.to_string()),
        ("targetedInstances".to_owned(), targeted.to_string()),
    ]);
    let mut message = format!(
        "{ended} of {targeted} targeted instances reached an end state before the deadline (grpc-timeout, or the gateway's --max-wait); the latest statuses were sent; nothing more is sent to ECS"
    );
    if let Some(error) = last_poll_error {
        message.push_str("; the last read of the invocation failed: ");
        message.push_str(error);
        metadata.insert("lastPollError".to_owned(), error.to_owned());
    }
    Status::with_error_details(
        Code::DeadlineExceeded,
        message,
        ErrorDetails::with_error_info("WAIT_DEADLINE_EXCEEDED", GATEWAY_DOMAIN, metadata),
    )
}

/// The status for a wait refused because the replica (or the caller) holds its most waits, polls
/// its most invocations, or the caller already waits on the invocation with its most owner-field
/// variants: nothing was read or sent.
pub(crate) fn waits_busy(busy: Busy) -> Status {
    let (reason, whose, limit) = match busy {
        Busy::Caller(limit) => (
            "CALLER_WAITS_EXHAUSTED",
            "this caller holds its most StopInvocationAndWait streams at once",
            limit,
        ),
        Busy::Replica(limit) => (
            "WAITS_EXHAUSTED",
            "this gateway replica holds its most StopInvocationAndWait streams at once",
            limit,
        ),
        Busy::Invocations(limit) => (
            "POLLED_INVOCATIONS_EXHAUSTED",
            "this gateway replica follows its most distinct invocations at once",
            limit,
        ),
        Busy::OwnerVariants(limit) => (
            "OWNER_VARIANTS_EXHAUSTED",
            "this caller already waits on this invocation with its most distinct sets of owner_id, owner_account, resource_owner_id and resource_owner_account (each set is polled on its own)",
            limit,
        ),
    };
    let mut details = ErrorDetails::with_error_info(
        reason,
        GATEWAY_DOMAIN,
        HashMap::from([("limit".to_owned(), limit.to_string())]),
    );
    details.set_retry_info(Some(DEFAULT_RETRY_DELAY));
    Status::with_error_details(
        Code::ResourceExhausted,
        format!("{whose} ({limit}); nothing was read or sent; retry later"),
        details,
    )
}

/// The status for a wait on every instance of an invocation that has more than a wait may
/// target: nothing was stopped.
pub(crate) fn too_many_targets(count: usize, limit: usize) -> Status {
    let mut details = ErrorDetails::new();
    details.add_precondition_failure_violation(
        "TOO_MANY_INSTANCES",
        "instance_ids",
        format!("the invocation has {count} instances and a wait may target at most {limit}; name them in instance_ids, {limit} at a time"),
    );
    details.set_error_info(
        "WAIT_TOO_MANY_INSTANCES",
        GATEWAY_DOMAIN,
        HashMap::from([
            ("instances".to_owned(), count.to_string()),
            ("limit".to_owned(), limit.to_string()),
        ]),
    );
    Status::with_error_details(
        Code::FailedPrecondition,
        format!(
            "instance_ids is empty and the invocation has {count} instances, more than the {limit} a wait may target (--max-wait-instances); nothing was stopped"
        ),
        details,
    )
}

/// The status of a wait whose task ended without an outcome.
pub(crate) fn wait_crashed() -> Status {
    Status::with_error_details(
        Code::Internal,
        "the wait ended without an outcome (a fault in the gateway); the latest statuses were sent; call StopInvocationAndWait again to resume it",
        ErrorDetails::with_error_info("WAIT_FAILED", GATEWAY_DOMAIN, HashMap::new()),
    )
}

/// The status a wait ends with when this replica shuts down: resume it on another.
pub(crate) fn wait_interrupted() -> Status {
    let mut details =
        ErrorDetails::with_error_info("GATEWAY_DRAINING", GATEWAY_DOMAIN, HashMap::new());
    details.set_retry_info(Some(DEFAULT_RETRY_DELAY));
    Status::with_error_details(
        Code::Unavailable,
        "this gateway replica is shutting down; the latest statuses were sent; call StopInvocationAndWait again (another replica will answer) to resume the wait: only instances still running are stopped again",
        details,
    )
}

/// The status for a `grpc-timeout` header that is present but malformed.
pub(crate) fn malformed_timeout(error: MalformedTimeout) -> Status {
    let details = ErrorDetails::with_error_info(
        "INVALID_GRPC_TIMEOUT",
        GATEWAY_DOMAIN,
        HashMap::from([("header".to_owned(), GRPC_TIMEOUT_HEADER.to_owned())]),
    );
    Status::with_error_details(Code::InvalidArgument, error.to_string(), details)
}

/// The status for a request message that is not valid protobuf for its type (bad wire format,
/// invalid UTF-8 in a string): the caller sent it, so it is `INVALID_ARGUMENT`, not `INTERNAL`.
pub(crate) fn undecodable(message_type: &str, error: &prost::DecodeError) -> Status {
    let details = ErrorDetails::with_error_info(
        "UNDECODABLE_REQUEST",
        GATEWAY_DOMAIN,
        HashMap::from([("messageType".to_owned(), message_type.to_owned())]),
    );
    Status::with_error_details(
        Code::InvalidArgument,
        format!("the request is not a valid {message_type}: {error}"),
        details,
    )
}

/// The status a client reports for an answer it cannot decode: the server is at fault.
pub(crate) fn undecodable_answer(message_type: &str, error: &prost::DecodeError) -> Status {
    Status::internal(format!("the answer is not a valid {message_type}: {error}"))
}

/// The status for a call refused because the gateway is at its concurrency limit.
pub(crate) fn overloaded(limit: usize) -> Status {
    let mut details = ErrorDetails::with_error_info(
        "GATEWAY_OVERLOADED",
        GATEWAY_DOMAIN,
        HashMap::from([("maxConcurrentRequests".to_owned(), limit.to_string())]),
    );
    details.set_retry_info(Some(Duration::from_millis(100)));
    Status::with_error_details(
        Code::ResourceExhausted,
        format!("the gateway is at its limit of {limit} concurrent requests; retry shortly"),
        details,
    )
}

/// Metadata with `x-acs-request-id` when there is a (non-empty) RequestId that is a valid header
/// value.
pub(crate) fn request_id_metadata(request_id: Option<&str>) -> MetadataMap {
    let mut metadata = MetadataMap::new();
    let request_id = request_id.filter(|id| !id.is_empty());
    if let Some(value) = request_id.and_then(|id| MetadataValue::try_from(id).ok()) {
        metadata.insert(REQUEST_ID_METADATA, value);
    }
    metadata
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_status_asks_a_caller_to_wait_more_than_a_minute() {
        use tonic_types::StatusExt as _;
        let caller = Caller::Named("token:billing".into());
        let region = RegionId::parse("cn-hangzhou").unwrap();
        let ten_thousand_years = Duration::from_secs(10_000 * 365 * 24 * 3600);
        let status = denied(
            &caller,
            &region,
            Permission::Stop,
            &Denial::Rate {
                per_second: 0.001,
                retry_after: ten_thousand_years,
            },
        );
        let delay = status.get_details_retry_info().and_then(|r| r.retry_delay);
        assert_eq!(delay, Some(Duration::from_secs(60)));
        assert!(
            status.message().ends_with("retry in 60s"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn a_busy_wait_says_which_limit_once() {
        let status = waits_busy(Busy::Caller(250));
        assert_eq!(
            status.message(),
            "this caller holds its most StopInvocationAndWait streams at once (250); nothing was read or sent; retry later"
        );
        let status = waits_busy(Busy::OwnerVariants(4));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status.message().contains("owner_account"),
            "{}",
            status.message()
        );
        assert!(
            status
                .message()
                .ends_with("(4); nothing was read or sent; retry later")
        );
    }

    #[test]
    fn reasons_are_upper_snake_case() {
        assert_eq!(
            reason_from_code("InvalidInvokeId.NotFound"),
            "INVALID_INVOKE_ID_NOT_FOUND"
        );
        assert_eq!(reason_from_code("Throttling.User"), "THROTTLING_USER");
        assert_eq!(
            reason_from_code("InternalError.Dispatch"),
            "INTERNAL_ERROR_DISPATCH"
        );
        assert_eq!(
            reason_from_code("SignatureDoesNotMatch"),
            "SIGNATURE_DOES_NOT_MATCH"
        );
        assert_eq!(
            reason_from_code("UnsupportedHTTPMethod"),
            "UNSUPPORTED_HTTPMETHOD"
        );
        assert_eq!(
            reason_from_code("InstanceIds.ExceedLimit"),
            "INSTANCE_IDS_EXCEED_LIMIT"
        );
    }

    #[test]
    fn what_the_gateway_retries_a_client_may_retry_too() {
        use crate::aliyun::retry::{Decision, decide};
        // AIP-194: UNAVAILABLE and RESOURCE_EXHAUSTED are the codes clients retry; the gateway's own
        // retry policy must agree with the codes it reports.
        // Except an expired credential: the code says retry, and the caller should, on another
        // replica (this one turns NOT_SERVING); retrying here would only wait. And the fleet's
        // quota: the caller retries after RetryInfo's delay; waiting here would hold its call and
        // a concurrency slot for the same outcome.
        for class in ErrorClass::ALL.into_iter().filter(|c| {
            !matches!(
                c,
                ErrorClass::CredentialsUnavailable | ErrorClass::FleetQuota
            )
        }) {
            let retried = matches!(decide(class), Decision::Backoff(_));
            let retryable_code = matches!(
                grpc_code(class),
                Code::Unavailable | Code::ResourceExhausted
            );
            assert_eq!(retried, retryable_code, "{class:?}");
        }
    }

    #[test]
    fn a_bad_request_id_is_left_out_of_metadata_rather_than_failing() {
        assert!(
            request_id_metadata(Some("bad\nvalue"))
                .get(REQUEST_ID_METADATA)
                .is_none()
        );
        assert_eq!(
            request_id_metadata(Some("ABC-1"))
                .get(REQUEST_ID_METADATA)
                .unwrap(),
            "ABC-1"
        );
    }
}

//! StopInvocationAndWait on the wire: the wait's steps as messages, its end as the stream's
//! status, and a stop call's failure as the `StopError` a unary stop would have got.

use tonic::Status;

use crate::aliyun::request::RegionId;
use crate::api::validate::{MAX_LISTED, Violation, Violations};
use crate::api::{invocation, status};
use crate::auth::Caller;
use crate::auth::policy::Permission;
use crate::pb::{
    InstanceStatus, StopError, StopInvocationAndWaitResponse, StopResult, WaitMessageKind,
};
use crate::wait::outbox::Step;
use crate::wait::outcome::{End, StopAnswer, StopFailure};
use crate::wait::view::{Kind, Message, Target, Unresolved};

/// Who waits on what: what the statuses name.
#[derive(Debug)]
pub(crate) struct Waiting {
    /// The caller.
    pub caller: Caller,
    /// The region of the invocation.
    pub region: RegionId,
    /// The invocation.
    pub invoke_id: String,
}

impl Waiting {
    /// The stream's item for `step`: a message, the end's status, or `None` once it ended OK.
    pub(crate) fn item(
        &self,
        step: Step<'_>,
    ) -> Option<Result<StopInvocationAndWaitResponse, Status>> {
        match step {
            Step::Message(message, stops) => Some(Ok(self.message(message, stops))),
            Step::End(end) => self.status(&end).map(Err),
        }
    }

    /// The status `end` closes the stream with; `None` for OK.
    pub(crate) fn status(&self, end: &End) -> Option<Status> {
        let status = match end {
            End::AllFinal => return None,
            End::NotFound => status::invocation_not_found(&self.invoke_id, &self.region),
            End::ReadFailed(error) | End::PollFailed(error) => status::from_ecs_read_error(error),
            End::Unresolved(Unresolved::TooMany { count, limit }) => {
                status::too_many_targets(*count, *limit)
            }
            End::Unresolved(Unresolved::Outside(outside)) => self.outside(outside),
            End::StopFailed(failure) => self.failure(failure).0,
            End::Deadline {
                ended,
                targeted,
                last_poll_error,
            } => status::wait_deadline(*ended, *targeted, last_poll_error.as_deref()),
            End::Draining => status::wait_interrupted(),
            End::Gone => Status::cancelled("the caller went away"),
            End::Crashed => status::wait_crashed(),
        };
        Some(status)
    }

    fn message(
        &self,
        message: Message<'_>,
        stops: Vec<StopAnswer>,
    ) -> StopInvocationAndWaitResponse {
        let instances = message
            .targets
            .iter()
            .map(|target| match target {
                Target::Listed(state) => invocation::instance(state),
                Target::Unlisted(id) => InstanceStatus {
                    instance_id: (*id).to_owned(),
                    ..InstanceStatus::default()
                },
            })
            .collect();
        let kind = match message.kind {
            Kind::Snapshot => WaitMessageKind::Snapshot,
            Kind::Changes => WaitMessageKind::Changes,
            Kind::Final => WaitMessageKind::Final,
        };
        StopInvocationAndWaitResponse {
            stops: stops.into_iter().map(|s| self.stop_result(s)).collect(),
            invocation: Some(invocation::invocation(message.invocation, instances)),
            final_instances: u32::try_from(message.ended).unwrap_or(u32::MAX),
            targeted_instances: u32::try_from(message.targeted).unwrap_or(u32::MAX),
            kind: kind.into(),
        }
    }

    fn stop_result(&self, answer: StopAnswer) -> StopResult {
        match answer.outcome {
            Ok(request_id) => StopResult {
                instance_ids: answer.instance_ids,
                request_id,
                error: None,
            },
            Err(failure) => {
                let request_id = match &failure {
                    StopFailure::Ecs(error) => error.request_id().unwrap_or_default().to_owned(),
                    StopFailure::Denied(_) => String::new(),
                };
                let (status, reason) = self.failure(&failure);
                StopResult {
                    instance_ids: answer.instance_ids,
                    request_id,
                    error: Some(StopError {
                        code: status.code() as i32,
                        message: status.message().to_owned(),
                        reason,
                        details: status.details().to_vec(),
                    }),
                }
            }
        }
    }

    /// The status a unary stop would have got, and its reason.
    fn failure(&self, failure: &StopFailure) -> (Status, String) {
        match failure {
            StopFailure::Ecs(error) => status::ecs_status(error, Permission::Stop),
            StopFailure::Denied(denial) => (
                status::denied(&self.caller, &self.region, Permission::Stop, denial),
                status::denial_reason(denial).to_owned(),
            ),
        }
    }

    /// Asked instances that are not the invocation's, each named (the first ten).
    fn outside(&self, outside: &[(usize, String)]) -> Status {
        let listed = outside
            .iter()
            .take(MAX_LISTED)
            .map(|(i, id)| Violation {
                field: format!("instance_ids[{i}]"),
                description: format!(
                    "{id:?} is not an instance of invocation {:?}",
                    self.invoke_id
                ),
            })
            .collect();
        status::from_violations(&Violations {
            listed,
            more: outside.len().saturating_sub(MAX_LISTED),
        })
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use tonic::Code;

    use super::*;
    use crate::aliyun::error::{ApiError, EcsError};
    use crate::aliyun::invocation::{InstanceState, InvocationState, MAX_ERROR_INFO, MAX_SHORT};
    use crate::aliyun::request::MAX_INSTANCE_IDS;
    use crate::aliyun::scrub;
    use crate::wait::MAX_WAIT_INSTANCES_LIMIT;
    use crate::wait::read::Read;
    use crate::wait::view::View;

    /// The most a gRPC client decodes by default (tonic, grpc-go, grpc-java).
    const CLIENT_DECODE_LIMIT: usize = 4 * 1024 * 1024;

    fn waiting() -> Waiting {
        Waiting {
            caller: Caller::Named("spiffe://prod.example/ns/billing/sa/api".into()),
            region: RegionId::parse("cn-hangzhou").unwrap(),
            invoke_id: "t-".to_owned() + &"x".repeat(126),
        }
    }

    /// `n` as text of exactly `len` bytes, multi-byte where the gateway keeps them.
    fn filled(n: usize, len: usize) -> String {
        let head = format!("{n}-");
        head.clone() + &"é".repeat((len - head.len()) / 2) + &"x".repeat((len - head.len()) % 2)
    }

    #[test]
    fn the_largest_final_message_a_wait_can_send_fits_what_clients_decode() {
        // Every field at the most the gateway keeps from ECS, for the most targets a wait may have.
        let instances: Vec<InstanceState> = (0..MAX_WAIT_INSTANCES_LIMIT)
            .map(|n| InstanceState {
                instance_id: filled(n, MAX_SHORT),
                status: filled(n, MAX_SHORT),
                exit_code: Some(i64::MIN),
                error_code: filled(n, MAX_SHORT),
                error_info: filled(n, MAX_ERROR_INFO),
                start_time: filled(n, MAX_SHORT),
                finish_time: filled(n, MAX_SHORT),
                stop_time: filled(n, MAX_SHORT),
            })
            .collect();
        let read = Read::new(InvocationState {
            invoke_id: "t-1".into(),
            status: filled(0, MAX_SHORT),
            instances,
        });
        let mut view = View::resolve(&read, &[], MAX_WAIT_INSTANCES_LIMIT).unwrap();
        // Every stop call failed, with ECS's longest error, all merged into the last message.
        let error = EcsError::Api(ApiError {
            http_status: 400,
            code: filled(0, scrub::MAX_CODE),
            message: filled(0, scrub::MAX_TEXT),
            request_id: Some("R".repeat(scrub::MAX_REQUEST_ID)),
            host_id: Some(filled(0, scrub::MAX_HOST_ID)),
            recommend: Some(
                "https://api.aliyun.com/troubleshoot?q=".to_owned()
                    + &"q".repeat(scrub::MAX_LINK - 40),
            ),
            retry_after: None,
            retry_after_sent: false,
        });
        let stops: Vec<StopAnswer> = (0..MAX_WAIT_INSTANCES_LIMIT.div_ceil(MAX_INSTANCE_IDS))
            .map(|c| StopAnswer {
                instance_ids: (0..MAX_INSTANCE_IDS)
                    .map(|n| filled(c * 50 + n, MAX_SHORT))
                    .collect(),
                outcome: Err(StopFailure::Ecs(error.clone())),
            })
            .collect();
        let message = waiting().message(view.message(Kind::Final), stops);
        assert_eq!(
            message.invocation.as_ref().unwrap().instances.len(),
            MAX_WAIT_INSTANCES_LIMIT
        );
        let size = message.encoded_len();
        assert!(size < CLIENT_DECODE_LIMIT, "{size} bytes");
        // And not by accident: the bound is near, so the limit is not far too strict either.
        assert!(size > CLIENT_DECODE_LIMIT * 3 / 4, "{size} bytes");
    }

    #[test]
    fn a_wait_that_ended_without_an_outcome_is_internal_never_ok() {
        let status = waiting().status(&End::Crashed).expect("never OK");
        assert_eq!(status.code(), Code::Internal);
        assert!(waiting().status(&End::AllFinal).is_none());
        assert_eq!(
            waiting().status(&End::Draining).unwrap().code(),
            Code::Unavailable
        );
        assert_eq!(
            waiting().status(&End::Gone).unwrap().code(),
            Code::Cancelled
        );
    }

    #[test]
    fn a_stop_call_that_failed_says_what_a_unary_stop_would_have() {
        let error = EcsError::Api(ApiError {
            http_status: 400,
            code: "InvalidParameter".into(),
            message: "bad".into(),
            request_id: Some("REQ-1".into()),
            host_id: None,
            recommend: None,
            retry_after: None,
            retry_after_sent: false,
        });
        let unary = status::from_ecs_error(&error);
        let result = waiting().stop_result(StopAnswer {
            instance_ids: vec!["i-a".into()],
            outcome: Err(StopFailure::Ecs(error)),
        });
        let failed = result.error.unwrap();
        assert_eq!(result.request_id, "REQ-1");
        assert_eq!(failed.code, Code::InvalidArgument as i32);
        assert_eq!(failed.reason, "INVALID_PARAMETER");
        assert_eq!(failed.message, unary.message());
        // The whole google.rpc.Status a unary call carries (its metadata map in any order).
        use tonic_types::StatusExt as _;
        let carried = Status::with_details(Code::InvalidArgument, "", failed.details.into());
        let info = |s: &Status| {
            let info = s.get_details_error_info().expect("an ErrorInfo");
            (info.reason, info.domain, info.metadata)
        };
        assert_eq!(info(&carried), info(&unary));
        let request = |s: &Status| s.get_details_request_info().map(|r| r.request_id);
        assert_eq!(request(&carried), Some("REQ-1".to_owned()));
    }
}

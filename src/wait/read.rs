//! What a read of a followed invocation gives its waiters, and what a failed one means: read
//! again, slow down, or end them. Shared by the first read and the group's poller.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::MAX_WAIT_INSTANCES_LIMIT;
use crate::aliyun::client::{EcsClient, Failed};
use crate::aliyun::error::{EcsError, ErrorClass};
use crate::aliyun::invocation::InvocationState;
use crate::aliyun::request::{DescribeInvocation, InvocationResults, LIST_PAGE_SIZE};

/// The longest one read (its retries included) may take.
pub(crate) const READ_BUDGET: Duration = Duration::from_secs(10);

/// The most DescribeInvocationResults pages one completion reads: enough for the largest wait.
const MAX_RESULT_PAGES: usize = MAX_WAIT_INSTANCES_LIMIT.div_ceil(LIST_PAGE_SIZE);

/// Instances of a followed invocation that its DescribeInvocations answers leave out, found
/// through DescribeInvocationResults: every later read of it is completed with them.
#[derive(Debug, Default)]
pub(crate) struct Extra(Mutex<HashSet<Box<str>>>);

impl Extra {
    /// The instances known so far.
    pub(crate) fn ids(&self) -> HashSet<Box<str>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Adds `ids`, found through DescribeInvocationResults.
    pub(crate) fn add(&self, ids: impl IntoIterator<Item = Box<str>>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(ids);
    }
}

/// `state` completed with those of `wanted` that it leaves out, as DescribeInvocationResults
/// pages them (at most [`MAX_RESULT_PAGES`] pages, for a caller or in the background), and which
/// it found: a DescribeInvocations answer need not list every instance of a large invocation.
pub(crate) async fn complete(
    client: &EcsClient,
    invocation: &DescribeInvocation,
    mut state: InvocationState,
    wanted: &HashSet<Box<str>>,
    background: bool,
) -> Result<(InvocationState, Vec<Box<str>>), EcsError> {
    let listed: HashSet<&str> = state
        .instances
        .iter()
        .map(|i| i.instance_id.as_str())
        .collect();
    let mut missing: HashSet<&str> = wanted
        .iter()
        .map(|id| &**id)
        .filter(|id| !listed.contains(id))
        .collect();
    let mut found = Vec::new();
    let mut extra = Vec::new();
    let mut request = InvocationResults {
        region_id: invocation.region_id.clone(),
        invoke_id: invocation.invoke_id.clone(),
        next_token: None,
        owner: invocation.owner.clone(),
    };
    for _ in 0..MAX_RESULT_PAGES {
        if missing.is_empty() {
            break;
        }
        let deadline = Some(Instant::now() + READ_BUDGET);
        let page = client
            .invocation_results(&request, deadline, background)
            .await
            .map_err(|Failed { error, .. }| error)?;
        for instance in page.instances {
            if missing.remove(instance.instance_id.as_str()) {
                found.push(Box::from(instance.instance_id.as_str()));
                extra.push(instance);
            }
        }
        match page.next_token {
            Some(token) => request.next_token = Some(token),
            None => break,
        }
    }
    state.instances.extend(extra);
    Ok((state, found))
}

/// How many polls in a row may fail for the gateway's own fault (credential, clock, signature)
/// before the loop gives up: one may be a refresh racing an expiry; several are not.
const GATEWAY_FAULTS_TO_END: u32 = 3;

/// One read of an invocation, shared by every waiter on it.
#[derive(Debug, Clone)]
pub(crate) struct Read {
    /// The invocation and its instances.
    pub state: Arc<InvocationState>,
    /// Its instance IDs, sorted, each once: the targets of every wait on all its instances.
    pub ids: Arc<[Box<str>]>,
}

impl Read {
    /// `state`, with its sorted IDs.
    pub(crate) fn new(state: InvocationState) -> Self {
        let mut ids: Vec<Box<str>> = state
            .instances
            .iter()
            .map(|i| Box::from(i.instance_id.as_str()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Self {
            state: Arc::new(state),
            ids: ids.into(),
        }
    }
}

/// What the latest poll of an invocation found.
#[derive(Debug)]
pub(crate) enum Polled {
    /// The invocation and its instances, shared by every waiter.
    Read(Read),
    /// ECS lists no such invocation (any more).
    NotFound,
    /// The read failed; the loop polls again.
    Failed(EcsError),
    /// Polling cannot succeed: every waiter ends with the status a unary read would get.
    Ended(EcsError),
}

/// The latest poll's result; `None` until the first poll is answered.
pub(crate) type Latest = Option<Arc<Polled>>;

/// What a poll loop does after a failed read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Poll again at the usual pace.
    Again,
    /// Poll again when ECS (or the fleet's quota) says, at most a minute on.
    SlowDown,
    /// Stop polling: the waiters end with this failure.
    End,
}

/// The poll loop's policy, by class: what the client already retried is polled again; ECS's
/// refusals end the waiters at once; the gateway's own faults end them once they repeat.
pub(crate) fn after_failure(class: ErrorClass, in_a_row: u32) -> AfterFailure {
    use ErrorClass::*;
    match class {
        Throttled | FleetQuota => AfterFailure::SlowDown,
        InvalidArgument | PermissionDenied | NotFound | HostNotFound | RequestBuiltWrong => {
            AfterFailure::End
        }
        CredentialRejected | NonceReused | UntrustedUpstream | CredentialsUnavailable
            if in_a_row >= GATEWAY_FAULTS_TO_END =>
        {
            AfterFailure::End
        }
        _ => AfterFailure::Again,
    }
}

/// How long ECS or the fleet's quota asked the caller to wait, when it said.
pub(crate) fn slow_down(error: &EcsError) -> Option<Duration> {
    match error {
        EcsError::Api(api) => api.retry_after,
        EcsError::NotAdmitted(refused) => Some(refused.retry_after),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aliyun::retry::{Decision, decide};
    use ErrorClass::*;

    #[test]
    fn each_class_of_failed_read_is_polled_again_slowed_or_ends_the_waiters() {
        use AfterFailure::{Again, End, SlowDown};
        let expected = [
            (InvalidArgument, End, End),
            (PermissionDenied, End, End),
            (NotFound, End, End),
            (HostNotFound, End, End),
            (RequestBuiltWrong, End, End),
            (Throttled, SlowDown, SlowDown),
            (FleetQuota, SlowDown, SlowDown),
            (CredentialRejected, Again, End),
            (NonceReused, Again, End),
            (UntrustedUpstream, Again, End),
            (CredentialsUnavailable, Again, End),
            (Transient, Again, Again),
            (UpstreamInternal, Again, Again),
            (Conflict, Again, Again),
            (Unknown, Again, Again),
            (OutcomeUnknown, Again, Again),
            (Unreachable, Again, Again),
            (AttemptTimedOut, Again, Again),
            (Interrupted, Again, Again),
            (DeadlineExceeded, Again, Again),
        ];
        assert_eq!(
            expected.len(),
            ErrorClass::ALL.len(),
            "every class is listed"
        );
        for (class, once, repeated) in expected {
            assert_eq!(after_failure(class, 1), once, "{class:?} once");
            assert_eq!(
                after_failure(class, GATEWAY_FAULTS_TO_END),
                repeated,
                "{class:?} repeated"
            );
        }
    }

    #[test]
    fn polls_never_end_on_what_the_client_retries_and_always_end_on_repeated_gateway_faults() {
        // Tied to the retry policy and the fault list: a class the client retries is transient, so
        // polling on is right; a gateway fault that repeats will not mend itself.
        for class in ErrorClass::ALL {
            let ends = after_failure(class, u32::MAX) == AfterFailure::End;
            if matches!(decide(class), Decision::Backoff(_)) {
                assert!(!ends, "{class:?} is retried by the client, so polled again");
            }
            if class.is_gateway_fault() {
                assert!(ends, "{class:?} is the gateway's own fault");
            }
        }
    }
}

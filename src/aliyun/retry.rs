//! Which failures are retried (one exhaustive match, a reason per arm) and the backoff between tries.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tracing::{Instrument as _, field};

use super::error::{EcsError, ErrorClass, TransportKind};
use super::retry_budget::{Budget as _, RetryBudget};

/// Retry settings: how many retries, and the bounds of the decorrelated-jitter backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` attempts at most).
    pub max_retries: u32,
    /// The smallest backoff.
    pub base: Duration,
    /// The largest backoff.
    pub cap: Duration,
    /// The longest server-requested delay (`Retry-After`) the gateway will wait out itself.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(2),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Give up and report the failure.
    Stop(&'static str),
    /// Try again after a backoff, within the retry budget.
    Backoff(&'static str),
    /// Try again at once with a fresh nonce, once per call, outside the retry budget.
    FreshNonceOnce(&'static str),
}

/// The retry policy: every class of failure, and why it is or is not retried. StopInvocation is
/// idempotent (stopping twice is harmless), so anything that may not have reached ECS is retried.
pub(crate) fn decide(class: ErrorClass) -> Decision {
    use Decision::*;
    use ErrorClass::*;
    match class {
        InvalidArgument => Stop("ECS refused the arguments; the same request fails again"),
        PermissionDenied => Stop("RAM or the resource forbids it; retrying cannot change that"),
        NotFound => Stop("the region or invocation does not exist"),
        CredentialRejected => {
            Stop("the gateway's credential or clock is wrong; an operator must fix it")
        }
        RequestBuiltWrong => Stop("the gateway built a request ECS does not understand"),
        UpstreamInternal => Stop("an unlisted 500/501 is not known to be transient"),
        Conflict => Stop("a conflict needs the caller to decide"),
        Unknown => Stop("an unexpected status is not known to be transient"),
        OutcomeUnknown => Stop("ECS answered 2xx; the stop may have happened"),
        DeadlineExceeded => Stop("the caller's deadline has run out"),
        HostNotFound => Stop("DNS says the host does not exist; it will say so again"),
        UntrustedUpstream => {
            Stop("the certificate will not verify on a second try; an operator must fix it")
        }
        CredentialsUnavailable => Stop(
            "no credential is valid; this replica is NOT_SERVING, so the caller retries elsewhere",
        ),
        FleetQuota => Stop("the fleet's quota toward ECS is spent; RetryInfo says when it refills"),
        NonceReused => {
            FreshNonceOnce("a nonce collision executed nothing; re-sign with a new nonce")
        }
        Throttled => Backoff("throttling clears with time"),
        Transient => Backoff("ECS or its proxy says try again later"),
        Unreachable => Backoff("no connection was made, so nothing was sent"),
        AttemptTimedOut => Backoff("the attempt timed out; stopping twice is harmless"),
        Interrupted => Backoff("the connection broke; stopping twice is harmless"),
    }
}

/// Exponential backoff with decorrelated jitter: each delay is uniform in `[base, 3 × previous]`,
/// capped — spreads retries from many replicas without synchronizing them.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    previous: Duration,
}

impl Backoff {
    /// Starts a backoff sequence for `policy`.
    pub(crate) fn new(policy: &RetryPolicy) -> Self {
        Self {
            base: policy.base,
            cap: policy.cap,
            previous: policy.base,
        }
    }

    /// The next delay, drawn from `rng`.
    pub(crate) fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let upper = (self.previous * 3).clamp(self.base, self.cap);
        let delay = if upper > self.base {
            rng.random_range(self.base..=upper)
        } else {
            self.base
        };
        self.previous = delay;
        delay.min(self.cap)
    }
}

/// What one attempt came to: what the layers above count and trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// From its start to its answer (or its timeout).
    pub took: Duration,
    /// The answer's HTTP status; `None` when there was no answer (the client fills it in on success).
    pub http_status: Option<u16>,
    /// ECS's error code, scrubbed.
    pub ecs_code: Option<String>,
    /// Why it failed; `None` when it succeeded.
    pub failure: Option<ErrorClass>,
}

/// Every attempt of one call, and whether the retry budget cut it short.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trail {
    /// The attempts, in order.
    pub attempts: Vec<Attempt>,
    /// A retry was due and the budget refused it.
    pub budget_refused: bool,
}

impl Trail {
    fn push(&mut self, took: Duration, error: Option<&EcsError>, span: &tracing::Span) {
        let (http_status, ecs_code) = match error {
            Some(EcsError::Api(api)) => (Some(api.http_status), Some(api.code.clone())),
            Some(EcsError::Malformed { http_status, .. }) => (Some(*http_status), None),
            _ => (None, None),
        };
        if let Some(code) = &ecs_code {
            span.record("ecs_code", code.as_str());
        }
        self.attempts.push(Attempt {
            took,
            http_status,
            ecs_code,
            failure: error.map(EcsError::class),
        });
    }
}

/// Runs `attempt` until it succeeds, fails for good, the caller's deadline arrives, or `budget`
/// refuses a retry. Each attempt is bounded by `attempt_timeout`; no attempt starts and no backoff
/// sleeps past `deadline`. Returns the value and the number of attempts made; `trail` gets each
/// attempt, and each runs in an `upstream_attempt` span (for trace export) naming why it was made.
pub(crate) async fn run<T, F, Fut>(
    policy: &RetryPolicy,
    attempt_timeout: Duration,
    deadline: Option<Instant>,
    budget: &RetryBudget,
    trail: &mut Trail,
    mut attempt: F,
) -> Result<(T, u32), EcsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, EcsError>>,
{
    let mut backoff = Backoff::new(policy);
    let mut retries = 0;
    let mut fresh_nonce_used = false;
    let mut attempts = 0;
    let mut retry_reason: Option<ErrorClass> = None;
    budget.deposit();
    loop {
        attempts += 1;
        let span = tracing::debug_span!(
            "upstream_attempt",
            attempt = attempts,
            retry_reason = retry_reason.map(ErrorClass::name),
            http_status = field::Empty,
            ecs_code = field::Empty,
        );
        let started = Instant::now();
        let bounded = tokio::time::timeout(attempt_timeout, attempt().instrument(span.clone()));
        let outcome = match deadline {
            // Dropping the attempt on the deadline drops its HTTP request and connection.
            Some(deadline) => match tokio::time::timeout_at(deadline, bounded).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    let error = EcsError::DeadlineExceeded;
                    trail.push(started.elapsed(), Some(&error), &span);
                    return Err(error);
                }
            },
            None => bounded.await,
        };
        let error = match outcome {
            Ok(Ok(value)) => {
                trail.push(started.elapsed(), None, &span);
                return Ok((value, attempts));
            }
            Ok(Err(error)) => error,
            Err(_) => EcsError::Transport {
                kind: TransportKind::Timeout,
                detail: format!("no answer within {attempt_timeout:?}"),
            },
        };
        trail.push(started.elapsed(), Some(&error), &span);
        let class = error.class();
        retry_reason = Some(class);
        let delay = match decide(class) {
            Decision::Stop(_) => return Err(error),
            Decision::FreshNonceOnce(reason) if !fresh_nonce_used => {
                fresh_nonce_used = true;
                tracing::info!(attempt = attempts, ?class, reason, "retrying at once");
                continue;
            }
            Decision::FreshNonceOnce(_) => return Err(error),
            Decision::Backoff(_) if retries >= policy.max_retries => return Err(error),
            Decision::Backoff(_) if !budget.withdraw() => {
                trail.budget_refused = true;
                tracing::debug!(
                    attempt = attempts,
                    ?class,
                    "retry budget spent; not retrying"
                );
                return Err(error);
            }
            Decision::Backoff(reason) => {
                let jitter = backoff.next_delay(&mut rand::rng());
                let asked = match &error {
                    EcsError::Api(api) => api.retry_after,
                    _ => None,
                };
                let delay = match asked {
                    // Waiting longer than the policy allows is the caller's call, via RetryInfo.
                    Some(asked) if asked > policy.max_retry_after => return Err(error),
                    Some(asked) => asked.max(jitter),
                    None => jitter,
                };
                tracing::info!(attempt = attempts, ?class, reason, ?delay, "retrying");
                delay
            }
        };
        // No sleep that would end past the caller's deadline: report the real failure instead.
        // The extra millisecond is the timer wheel's rounding of every sleep.
        if deadline.is_some_and(|d| Instant::now() + delay + Duration::from_millis(1) >= d) {
            return Err(error);
        }
        tokio::time::sleep(delay).await;
        // A backstop for the rounding above: never start an attempt at or after the deadline.
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(error);
        }
        retries += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    #[test]
    fn only_transient_classes_back_off() {
        use ErrorClass::*;
        let retried: Vec<ErrorClass> = ErrorClass::ALL
            .into_iter()
            .filter(|c| matches!(decide(*c), Decision::Backoff(_)))
            .collect();
        assert_eq!(
            retried,
            [
                Throttled,
                Transient,
                Unreachable,
                AttemptTimedOut,
                Interrupted
            ]
        );
        assert!(matches!(decide(NonceReused), Decision::FreshNonceOnce(_)));
    }

    #[test]
    fn delays_stay_within_base_and_cap() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..100 {
            let mut backoff = Backoff::new(&policy);
            for _ in 0..10 {
                let d = backoff.next_delay(&mut rng);
                assert!(
                    d >= Duration::from_millis(100) && d <= Duration::from_secs(2),
                    "{d:?}"
                );
            }
        }
    }

    #[test]
    fn delays_grow_on_average() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(11);
        let (mut first, mut fourth) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..200 {
            let mut backoff = Backoff::new(&policy);
            first += backoff.next_delay(&mut rng);
            backoff.next_delay(&mut rng);
            backoff.next_delay(&mut rng);
            fourth += backoff.next_delay(&mut rng);
        }
        assert!(fourth > first * 2, "first {first:?} fourth {fourth:?}");
    }

    mod run {
        use std::cell::RefCell;
        use std::time::Duration;

        use tokio::time::Instant;

        use super::super::*;
        use crate::aliyun::error::ApiError;

        fn api(code: &str, http_status: u16, retry_after: Option<Duration>) -> EcsError {
            EcsError::Api(ApiError {
                http_status,
                code: code.into(),
                message: String::new(),
                request_id: None,
                host_id: None,
                recommend: None,
                retry_after,
                retry_after_sent: false,
            })
        }

        fn transport(kind: TransportKind) -> EcsError {
            EcsError::Transport {
                kind,
                detail: String::new(),
            }
        }

        const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

        #[tokio::test(start_paused = true)]
        async fn the_trail_has_every_attempt_and_says_when_the_budget_refused() {
            let outcomes = std::cell::RefCell::new(vec![
                Err(api("ServiceUnavailable", 503, None)),
                Err(transport(TransportKind::Connect)),
                Ok("id"),
            ]);
            let mut trail = Trail::default();
            let next = || {
                let outcome = outcomes.borrow_mut().remove(0);
                async move { outcome }
            };
            let budget = crate::aliyun::retry_budget::with_reserve(1000.0, 1000);
            let result = run(
                &RetryPolicy::default(),
                ATTEMPT_TIMEOUT,
                None,
                &budget,
                &mut trail,
                next,
            )
            .await;
            assert_eq!(result.unwrap(), ("id", 3));
            let seen: Vec<_> = trail
                .attempts
                .iter()
                .map(|a| (a.http_status, a.ecs_code.as_deref(), a.failure))
                .collect();
            assert_eq!(
                seen,
                [
                    (
                        Some(503),
                        Some("ServiceUnavailable"),
                        Some(ErrorClass::Transient)
                    ),
                    (None, None, Some(ErrorClass::Unreachable)),
                    (None, None, None),
                ]
            );
            assert!(!trail.budget_refused);

            // An empty budget: the first failure is the last.
            let mut trail = Trail::default();
            let empty = crate::aliyun::retry_budget::with_reserve(0.0, 0);
            let once = || async { Err::<&str, _>(api("ServiceUnavailable", 503, None)) };
            let result = run(
                &RetryPolicy::default(),
                ATTEMPT_TIMEOUT,
                None,
                &empty,
                &mut trail,
                once,
            )
            .await;
            assert!(result.is_err());
            assert_eq!(trail.attempts.len(), 1);
            assert!(trail.budget_refused);
        }

        /// Runs the loop over a script of outcomes (the last one repeats), recording when each
        /// attempt started. `None` in the script is an attempt that never answers.
        async fn script(
            outcomes: Vec<Option<Result<&'static str, EcsError>>>,
            deadline: Option<Duration>,
        ) -> (Result<(&'static str, u32), EcsError>, Vec<Duration>) {
            let start = Instant::now();
            let starts = RefCell::new(Vec::new());
            let policy = RetryPolicy::default();
            // A budget that never refuses: these tests are about the loop, not the budget.
            let budget = crate::aliyun::retry_budget::with_reserve(1000.0, 1000);
            let result = run(
                &policy,
                ATTEMPT_TIMEOUT,
                deadline.map(|d| start + d),
                &budget,
                &mut Trail::default(),
                || {
                    let n = starts.borrow().len();
                    starts.borrow_mut().push(start.elapsed());
                    let outcome = outcomes[n.min(outcomes.len() - 1)].clone();
                    async move {
                        match outcome {
                            Some(outcome) => outcome,
                            None => std::future::pending().await,
                        }
                    }
                },
            )
            .await;
            (result, starts.into_inner())
        }

        fn gaps(starts: &[Duration]) -> Vec<Duration> {
            starts.windows(2).map(|w| w[1] - w[0]).collect()
        }

        #[tokio::test(start_paused = true)]
        async fn each_transient_class_gets_three_attempts_with_bounded_backoff() {
            let transient = [
                api("ServiceUnavailable", 503, None),
                api("InternalError.Dispatch", 500, None),
                api("Throttling.User", 400, None),
                transport(TransportKind::Connect),
                transport(TransportKind::Interrupted),
                transport(TransportKind::Timeout),
            ];
            for error in transient {
                let (result, starts) = script(vec![Some(Err(error.clone()))], None).await;
                assert_eq!(result.unwrap_err(), error);
                assert_eq!(starts.len(), 3, "{error:?}");
                for gap in gaps(&starts) {
                    assert!(
                        gap >= Duration::from_millis(100) && gap <= Duration::from_secs(2),
                        "{error:?}: {gap:?}"
                    );
                }
            }
        }

        #[tokio::test(start_paused = true)]
        async fn a_hanging_attempt_times_out_and_is_retried() {
            let (result, starts) = script(vec![None, Some(Ok("R-1"))], None).await;
            assert_eq!(result.unwrap(), ("R-1", 2));
            assert!(
                starts[1] >= ATTEMPT_TIMEOUT + Duration::from_millis(100),
                "{starts:?}"
            );
        }

        #[tokio::test(start_paused = true)]
        async fn non_retryable_classes_get_one_attempt() {
            for error in [
                api("InvalidInvokeId.NotFound", 404, None),
                api("Operation.Forbidden", 403, None),
                api("SignatureDoesNotMatch", 400, None),
                api("InvalidParameter", 400, None),
                api("InvalidApi.NotFound", 404, None),
                api("Mystery", 500, None),
                EcsError::Malformed {
                    http_status: 200,
                    request_id: None,
                },
                transport(TransportKind::NoSuchHost),
                transport(TransportKind::UntrustedCertificate),
                transport(TransportKind::Build),
            ] {
                let (result, starts) = script(vec![Some(Err(error.clone()))], None).await;
                assert_eq!(result.unwrap_err(), error);
                assert_eq!(starts, [Duration::ZERO], "{error:?}");
            }
        }

        #[tokio::test(start_paused = true)]
        async fn a_used_nonce_is_retried_once_at_once_outside_the_budget() {
            let used = api("SignatureNonceUsed", 400, None);
            let (result, starts) = script(vec![Some(Err(used.clone()))], None).await;
            assert_eq!(result.unwrap_err(), used);
            assert_eq!(starts, [Duration::ZERO, Duration::ZERO]);

            // The nonce retry does not eat into the transient budget.
            let busy = api("ServiceUnavailable", 503, None);
            let (result, starts) =
                script(vec![Some(Err(used)), Some(Err(busy.clone()))], None).await;
            assert_eq!(result.unwrap_err(), busy);
            assert_eq!(starts.len(), 4);
        }

        #[tokio::test(start_paused = true)]
        async fn retry_after_is_honoured_and_a_long_one_is_left_to_the_caller() {
            let asked = api("Throttling", 400, Some(Duration::from_secs(1)));
            let (result, starts) = script(vec![Some(Err(asked)), Some(Ok("R-2"))], None).await;
            assert_eq!(result.unwrap(), ("R-2", 2));
            assert!(
                starts[1] >= Duration::from_secs(1) && starts[1] <= Duration::from_secs(2),
                "{starts:?}"
            );

            let too_long = api("Throttling", 400, Some(Duration::from_secs(60)));
            let (result, starts) = script(vec![Some(Err(too_long.clone()))], None).await;
            assert_eq!(result.unwrap_err(), too_long);
            assert_eq!(starts.len(), 1);
        }

        #[tokio::test(start_paused = true)]
        async fn a_hanging_upstream_ends_exactly_at_the_deadline() {
            let start = Instant::now();
            let (result, starts) = script(vec![None], Some(Duration::from_millis(300))).await;
            assert_eq!(result.unwrap_err(), EcsError::DeadlineExceeded);
            assert_eq!(start.elapsed(), Duration::from_millis(300));
            assert_eq!(starts.len(), 1);
        }

        #[tokio::test(start_paused = true)]
        async fn no_attempt_starts_and_no_backoff_ends_past_the_deadline() {
            let busy = api("ServiceUnavailable", 503, None);
            for _ in 0..500 {
                let start = Instant::now();
                let deadline = Duration::from_millis(250);
                let (result, starts) = script(vec![Some(Err(busy.clone()))], Some(deadline)).await;
                assert_eq!(
                    result.unwrap_err(),
                    busy,
                    "the real failure, not DEADLINE_EXCEEDED"
                );
                assert!(starts.iter().all(|s| *s < deadline), "{starts:?}");
                assert!(start.elapsed() < deadline);
            }
        }
    }
}

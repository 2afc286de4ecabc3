//! Which failures are retried (one exhaustive match, a reason per arm) and the backoff between tries.

use std::time::Duration;

use rand::Rng;

use super::error::ErrorClass;

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
pub enum Decision {
    /// Give up and report the failure.
    Stop(&'static str),
    /// Try again after a backoff, within the retry budget.
    Backoff(&'static str),
    /// Try again at once with a fresh nonce, once per call, outside the retry budget.
    FreshNonceOnce(&'static str),
}

/// The retry policy: every class of failure, and why it is or is not retried. StopInvocation is
/// idempotent (stopping twice is harmless), so anything that may not have reached ECS is retried.
pub fn decide(class: ErrorClass) -> Decision {
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
pub struct Backoff {
    base: Duration,
    cap: Duration,
    previous: Duration,
}

impl Backoff {
    /// Starts a backoff sequence for `policy`.
    pub fn new(policy: &RetryPolicy) -> Self {
        Self {
            base: policy.base,
            cap: policy.cap,
            previous: policy.base,
        }
    }

    /// The next delay, drawn from `rng`.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    #[test]
    fn only_transient_classes_back_off() {
        use ErrorClass::*;
        let retried: Vec<ErrorClass> = [
            InvalidArgument,
            PermissionDenied,
            NotFound,
            Throttled,
            CredentialRejected,
            NonceReused,
            RequestBuiltWrong,
            Transient,
            UpstreamInternal,
            Conflict,
            Unknown,
            OutcomeUnknown,
            Unreachable,
            AttemptTimedOut,
            Interrupted,
            DeadlineExceeded,
        ]
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
}

//! A request rate valid by construction: calls per second, with a burst of as many calls.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{NotUntil, Quota};

/// The highest rate accepted, in calls per second.
pub(crate) const MAX_RATE: f64 = 1_000_000.0;
/// The lowest rate accepted: one call in 1000 s. Below it a slot's length overflows the limiters'
/// nanosecond arithmetic (a rate of 1e-12 made governor panic), and no operator means it.
pub(crate) const MIN_RATE: f64 = 0.001;

/// The rule a rate must meet, as operators read it in errors.
pub(crate) const RATE_RULE: &str = "must be a number of calls per second from 0.001 to 1000000";

/// Calls per second, from [`MIN_RATE`] to [`MAX_RATE`]; the burst is as many calls (at least
/// one), so an idle client may spend one second's worth at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(f64);

impl Rate {
    /// The rate, or [`RATE_RULE`] when `per_second` is not one.
    pub fn new(per_second: f64) -> Result<Self, &'static str> {
        if (MIN_RATE..=MAX_RATE).contains(&per_second) {
            Ok(Self(per_second))
        } else {
            Err(RATE_RULE)
        }
    }

    /// Calls per second.
    pub fn per_second(self) -> f64 {
        self.0
    }

    /// Calls admitted at once after an idle second.
    pub fn burst(self) -> NonZeroU32 {
        // Truncation is exact within MAX_RATE.
        NonZeroU32::new(self.0.floor() as u32).unwrap_or(NonZeroU32::MIN)
    }

    /// The time one call's slot takes.
    pub fn interval(self) -> Duration {
        Duration::from_secs_f64(1.0 / self.0)
    }

    /// The same limit for a process-local governor limiter.
    pub fn quota(self) -> Quota {
        // A period of at least 1 µs is never zero, so `with_period` always succeeds.
        Quota::with_period(self.interval())
            .unwrap_or(Quota::per_second(NonZeroU32::MAX))
            .allow_burst(self.burst())
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/s", self.0)
    }
}

impl std::str::FromStr for Rate {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s.trim().parse().map_err(|_| RATE_RULE)?)
    }
}

/// The instant type of the process-local limiters.
pub(crate) type LocalInstant = <DefaultClock as governor::clock::Clock>::Instant;

/// How long until a local limiter that said no would say yes.
pub(crate) fn local_wait(not_until: NotUntil<LocalInstant>) -> Duration {
    not_until.wait_time_from(DefaultClock::default().now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever rate is accepted, nothing derived from it panics, and a limiter built from it
        /// answers.
        #[test]
        fn no_accepted_rate_panics(
            per_second in prop_oneof![proptest::num::f64::ANY, 0.0005f64..2_000_000.0]
        ) {
            if let Ok(rate) = Rate::new(per_second) {
                let limiter = governor::DefaultDirectRateLimiter::direct(rate.quota());
                prop_assert!(limiter.check().is_ok(), "the first call is admitted");
                let _ = limiter.check().map_err(local_wait);
                prop_assert!(rate.interval() <= Duration::from_secs(1000));
                prop_assert!(rate.burst().get() >= 1);
            }
        }
    }

    #[test]
    fn a_rate_is_positive_finite_and_bounded() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 2e6, 1e-12, 0.000_999] {
            assert_eq!(Rate::new(bad), Err(RATE_RULE), "{bad}");
        }
        assert_eq!("abc".parse::<Rate>(), Err(RATE_RULE));
        assert_eq!("20".parse::<Rate>().unwrap().per_second(), 20.0);
    }

    #[test]
    fn the_burst_is_a_seconds_worth_and_never_zero() {
        assert_eq!(Rate::new(20.0).unwrap().burst().get(), 20);
        assert_eq!(Rate::new(2.5).unwrap().burst().get(), 2);
        assert_eq!(Rate::new(0.1).unwrap().burst().get(), 1);
        assert_eq!(
            Rate::new(20.0).unwrap().interval(),
            Duration::from_millis(50)
        );
        assert_eq!(
            Rate::new(MAX_RATE).unwrap().interval(),
            Duration::from_micros(1)
        );
    }
}

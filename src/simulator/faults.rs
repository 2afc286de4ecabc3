//! Fault injection for the simulator: latency, 500s, 503s, throttling and connection resets.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng as _;

/// Which faults to inject; all off by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Added latency: a fixed delay (`min == max`) or uniform in `[min, max]`.
    pub latency: Option<(Duration, Duration)>,
    /// Share of requests answered 500 `InternalError.Dispatch`, 0–1.
    pub error_500_rate: f64,
    /// Share of requests answered 503 `ServiceUnavailable`, 0–1.
    pub error_503_rate: f64,
    /// Requests per second per simulator past which calls get 400 `Throttling.User`.
    pub throttle_rps: Option<u32>,
    /// Share of requests whose connection is closed without an answer, 0–1.
    pub reset_rate: f64,
}

/// What a fault roll decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Injected {
    /// No fault: judge the request normally.
    None,
    /// Answer 500 `InternalError.Dispatch`.
    InternalError,
    /// Answer 503 `ServiceUnavailable`.
    Unavailable,
    /// Answer 400 `Throttling.User`.
    Throttled,
    /// Close the connection without answering.
    Reset,
}

/// Parses `50ms` or `50ms..200ms`.
pub(crate) fn parse_latency(value: &str) -> Result<(Duration, Duration), String> {
    let parse = |s: &str| humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?}: {e}"));
    match value.split_once("..") {
        Some((lo, hi)) => {
            let (lo, hi) = (parse(lo)?, parse(hi)?);
            if lo > hi {
                return Err(format!("latency range {value:?} has min > max"));
            }
            Ok((lo, hi))
        }
        None => parse(value).map(|d| (d, d)),
    }
}

/// The faults in force plus the throttling window.
#[derive(Debug)]
pub(crate) struct FaultState {
    faults: Faults,
    window: Mutex<(Instant, u32)>,
}

impl FaultState {
    /// Fault state for `faults`.
    pub(crate) fn new(faults: Faults) -> Self {
        Self {
            faults,
            window: Mutex::new((Instant::now(), 0)),
        }
    }

    /// The latency to add to this request.
    pub(crate) fn latency(&self) -> Option<Duration> {
        let (lo, hi) = self.faults.latency?;
        Some(if hi > lo {
            rand::rng().random_range(lo..=hi)
        } else {
            lo
        })
    }

    /// Rolls the dice for this request.
    pub(crate) fn roll(&self) -> Injected {
        if let Some(limit) = self.faults.throttle_rps {
            let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if now.duration_since(window.0) >= Duration::from_secs(1) {
                *window = (now, 0);
            }
            window.1 += 1;
            if window.1 > limit {
                return Injected::Throttled;
            }
        }
        let f = &self.faults;
        if f.reset_rate + f.error_500_rate + f.error_503_rate <= 0.0 {
            return Injected::None;
        }
        let x: f64 = rand::rng().random();
        if x < f.reset_rate {
            Injected::Reset
        } else if x < f.reset_rate + f.error_500_rate {
            Injected::InternalError
        } else if x < f.reset_rate + f.error_500_rate + f.error_503_rate {
            Injected::Unavailable
        } else {
            Injected::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_parses_fixed_and_ranges() {
        assert_eq!(
            parse_latency("50ms").unwrap(),
            (Duration::from_millis(50), Duration::from_millis(50))
        );
        assert_eq!(
            parse_latency("50ms..200ms").unwrap(),
            (Duration::from_millis(50), Duration::from_millis(200))
        );
        assert!(parse_latency("200ms..50ms").is_err());
        assert!(parse_latency("soon").is_err());
    }

    #[test]
    fn no_faults_means_no_injection() {
        let state = FaultState::new(Faults::default());
        assert!((0..1000).all(|_| state.roll() == Injected::None));
        assert_eq!(state.latency(), None);
    }

    #[test]
    fn throttling_starts_past_the_limit() {
        let state = FaultState::new(Faults {
            throttle_rps: Some(3),
            ..Faults::default()
        });
        let rolls: Vec<Injected> = (0..5).map(|_| state.roll()).collect();
        assert_eq!(&rolls[..3], &[Injected::None; 3]);
        assert_eq!(&rolls[3..], &[Injected::Throttled; 2]);
    }

    #[test]
    fn rates_are_roughly_honoured() {
        let state = FaultState::new(Faults {
            error_503_rate: 0.2,
            ..Faults::default()
        });
        let hits = (0..10_000)
            .filter(|_| state.roll() == Injected::Unavailable)
            .count();
        assert!((1_500..2_500).contains(&hits), "{hits}");
    }
}

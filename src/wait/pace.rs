//! When the next poll of an invocation goes: soon after the stops, then less and less often.

use std::time::Duration;

use rand::Rng;

/// How often an invocation is polled while streams wait on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPace {
    /// The first interval, after the stops were sent.
    pub first: Duration,
    /// The longest interval: each grows by half of itself up to this.
    pub max: Duration,
}

impl Default for PollPace {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(1),
            max: Duration::from_secs(5),
        }
    }
}

/// The intervals of one poll loop.
#[derive(Debug)]
pub(crate) struct Pace {
    settings: PollPace,
    next: Duration,
}

impl Pace {
    /// Starts at `settings.first`.
    pub(crate) fn new(settings: PollPace) -> Self {
        Self {
            settings,
            next: settings.first,
        }
    }

    /// The next interval: the current one less up to a fifth of it, chosen at random so that
    /// replicas waiting on the same account drift apart; never more than `max`.
    pub(crate) fn next(&mut self, rng: &mut impl Rng) -> Duration {
        let base = self.next.min(self.settings.max);
        self.next = (base + base / 2).min(self.settings.max);
        base.mul_f64(rng.random_range(0.8..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_grow_from_the_first_to_the_max_and_never_past_it() {
        let mut rng = rand::rng();
        let mut pace = Pace::new(PollPace::default());
        let intervals: Vec<Duration> = (0..8).map(|_| pace.next(&mut rng)).collect();
        let secs: Vec<f64> = intervals.iter().map(Duration::as_secs_f64).collect();
        assert!((0.8..=1.0).contains(&secs[0]), "{secs:?}");
        assert!((1.2..=1.5).contains(&secs[1]), "{secs:?}");
        assert!(secs.iter().all(|s| *s <= 5.0), "{secs:?}");
        assert!((4.0..=5.0).contains(&secs[7]), "{secs:?}");
    }
}

//! A process-wide retry budget (after Envoy's retry budgets and grpc-go's retry throttling): retries
//! may add at most `ratio` to the calls made, plus a small steady allowance so a quiet gateway can
//! still retry. In a fault storm or under throttling, the gateway then multiplies the load on the
//! account-wide API quota by at most `1 + ratio`, instead of by `1 + max_retries`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Retries allowed per second on top of the ratio.
pub(crate) const MIN_RETRIES_PER_SECOND: f64 = 10.0;
/// How much unused budget may be saved up: the last this-many seconds' worth.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);

/// Tokens: each call earns `ratio`, time earns [`MIN_RETRIES_PER_SECOND`], a retry spends one.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    ratio: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    refilled_at: Instant,
    /// Tokens earned from calls in the current and the previous window, which bound the savings.
    earned_now: f64,
    earned_before: f64,
    window_started: Instant,
}

impl RetryBudget {
    /// A budget letting retries add `ratio` (0.2 = 20%) to the calls made; it starts empty.
    pub(crate) fn new(ratio: f64) -> Self {
        let now = Instant::now();
        Self {
            ratio: ratio.max(0.0),
            state: Mutex::new(State {
                tokens: 0.0,
                refilled_at: now,
                earned_now: 0.0,
                earned_before: 0.0,
                window_started: now,
            }),
        }
    }

    /// Records a call's first attempt.
    pub(crate) fn record_call(&self) {
        let mut state = self.lock();
        state.refill(Instant::now());
        state.tokens += self.ratio;
        state.earned_now += self.ratio;
        state.cap();
    }

    /// Takes one retry from the budget; `false` means the retry must not be made.
    pub(crate) fn try_retry(&self) -> bool {
        let mut state = self.lock();
        state.refill(Instant::now());
        if state.tokens >= 1.0 {
            state.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain numbers, always consistent: a panic elsewhere cannot poison it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        self.tokens += elapsed.as_secs_f64() * MIN_RETRIES_PER_SECOND;
        self.refilled_at = now;
        while now.saturating_duration_since(self.window_started) >= WINDOW {
            self.earned_before = self.earned_now;
            self.earned_now = 0.0;
            self.window_started += WINDOW;
            if now.saturating_duration_since(self.window_started) >= WINDOW {
                // Idle for more than a window: nothing earned before now counts any more.
                self.earned_before = 0.0;
                self.window_started = now;
            }
        }
        self.cap();
    }

    /// Savings are bounded by what the last window earned, so a long quiet spell cannot bank
    /// a burst of retries.
    fn cap(&mut self) {
        let ceiling =
            MIN_RETRIES_PER_SECOND * WINDOW.as_secs_f64() + self.earned_now.max(self.earned_before);
        self.tokens = self.tokens.min(ceiling);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_add_at_most_the_ratio_plus_the_steady_allowance() {
        let budget = RetryBudget::new(0.2);
        let started = Instant::now();
        let mut retries = 0;
        for _ in 0..500 {
            budget.record_call();
            // Every call wants two retries, as with an upstream that fails everything.
            retries += usize::from(budget.try_retry()) + usize::from(budget.try_retry());
            tokio::time::advance(Duration::from_millis(2)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        let bound = 0.2 * 500.0 + MIN_RETRIES_PER_SECOND * seconds;
        assert!(retries as f64 <= bound, "{retries} > {bound}");
        assert!(
            retries as f64 >= bound - 2.0,
            "the budget is spent, not hoarded: {retries}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_gateway_can_still_retry() {
        let budget = RetryBudget::new(0.2);
        assert!(!budget.try_retry(), "it starts empty");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(budget.try_retry());
        assert!(!budget.try_retry());
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_quiet_spell_banks_at_most_one_window() {
        let budget = RetryBudget::new(0.2);
        tokio::time::advance(Duration::from_secs(3600)).await;
        let granted = (0..1000).filter(|_| budget.try_retry()).count();
        assert_eq!(granted, 100);
    }
}

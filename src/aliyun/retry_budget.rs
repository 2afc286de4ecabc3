//! The process-wide retry budget (Finagle's, as tower's `TpsBudget`; grpc-go's retry throttling
//! and Envoy's retry budgets are the same idea): retries may add at most `ratio` to the calls made,
//! plus a reserve of [`MIN_RETRIES_PER_SECOND`] over the last [`TTL`] — there from the start, so a
//! freshly started gateway retries a transient failure. In a fault storm or under throttling the
//! gateway then multiplies the load on the account-wide API quota by at most `1 + ratio`, instead
//! of by `1 + max_retries`.

use std::time::Duration;

pub(crate) use tower::retry::budget::{Budget, TpsBudget as RetryBudget};

/// Retries allowed per second on top of the ratio.
pub(crate) const MIN_RETRIES_PER_SECOND: u32 = 10;
/// How long a call's deposit, and a retry's withdrawal, count.
pub(crate) const TTL: Duration = Duration::from_secs(10);

/// A budget letting retries add `ratio` (0.2 = 20%) to the calls made, plus the reserve.
pub(crate) fn retry_budget(ratio: f64) -> RetryBudget {
    with_reserve(ratio, MIN_RETRIES_PER_SECOND)
}

/// A budget with `min_per_second` as its reserve; `ratio` is held to what tower accepts.
pub(crate) fn with_reserve(ratio: f64, min_per_second: u32) -> RetryBudget {
    let ratio = if ratio.is_nan() {
        0.0
    } else {
        ratio.clamp(0.0, 1000.0)
    };
    RetryBudget::new(TTL, min_per_second, ratio as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_fresh_budget_has_its_reserve_at_once() {
        let budget = retry_budget(0.2);
        let granted = (0..1000).filter(|_| budget.withdraw()).count();
        assert_eq!(
            granted,
            (MIN_RETRIES_PER_SECOND as usize) * 10,
            "the reserve"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_add_at_most_the_ratio_plus_the_reserve() {
        let budget = retry_budget(0.2);
        let mut retries = 0;
        for _ in 0..5000 {
            budget.deposit();
            // Every call wants two retries, as with an upstream that fails everything.
            retries += usize::from(budget.withdraw()) + usize::from(budget.withdraw());
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        // 5 s: a fifth of 5000 calls, plus the reserve.
        let bound = 5000 / 5 + (MIN_RETRIES_PER_SECOND as usize) * 10;
        assert!(retries <= bound, "{retries} > {bound}");
        assert!(
            retries >= bound * 9 / 10,
            "the budget is spent, not hoarded: {retries}"
        );
    }

    #[test]
    fn out_of_range_ratios_do_not_panic() {
        for ratio in [f64::NAN, -1.0, 1e9, f64::INFINITY] {
            let _ = retry_budget(ratio);
        }
    }
}

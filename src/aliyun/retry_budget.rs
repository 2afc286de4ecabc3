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

/// The most calls one retry may be owed to: ratios down to 1/1000 (0.1%).
const MAX_CALLS_PER_RETRY: f64 = 1000.0;

/// `ratio` (0–1) when tower's budget keeps it exactly, else the nearest ratio below it that it
/// does. `TpsBudget` charges a retry `(1 / ratio) as isize` calls' deposits, truncated, so only 0
/// and 1/n for a whole n are kept: 0.6 would be charged one call, allowing 100% retries
/// (tower-rs/tower#857).
pub(crate) fn exact_ratio(ratio: f64) -> Result<f64, f64> {
    if ratio == 0.0 {
        return Ok(0.0);
    }
    let calls = 1.0 / ratio;
    let whole = calls.round();
    if (calls - whole).abs() <= whole * 1e-9 && (1.0..=MAX_CALLS_PER_RETRY).contains(&whole) {
        Ok(1.0 / whole)
    } else {
        Err(1.0 / calls.ceil().min(MAX_CALLS_PER_RETRY))
    }
}

/// The f32 ratio whose inverse tower computes as `calls`: 1/calls, moved down a step at a time
/// while f32 division would give just under `calls` (1/7 gives 6.9999995, truncated to 6).
fn per_calls(calls: f32) -> f32 {
    let mut ratio = 1.0 / calls;
    while 1.0 / ratio < calls {
        ratio = ratio.next_down();
    }
    ratio
}

/// A budget letting retries add `ratio` (0.2 = 20%) to the calls made, plus the reserve.
pub(crate) fn retry_budget(ratio: f64) -> RetryBudget {
    with_reserve(ratio, MIN_RETRIES_PER_SECOND)
}

/// A budget with `min_per_second` as its reserve; `ratio` is held to what tower accepts, and a
/// ratio up to 1 to the nearest one tower keeps exactly (see [`exact_ratio`]).
pub(crate) fn with_reserve(ratio: f64, min_per_second: u32) -> RetryBudget {
    let ratio = if ratio.is_nan() {
        0.0
    } else {
        ratio.clamp(0.0, 1000.0)
    };
    let percent = if ratio <= 1.0 {
        let exact = exact_ratio(ratio).unwrap_or_else(|below| below);
        if exact == 0.0 {
            0.0
        } else {
            per_calls((1.0 / exact).round() as f32)
        }
    } else {
        ratio as f32
    };
    RetryBudget::new(TTL, min_per_second, percent)
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

    /// Retries granted with no reserve after `calls` deposits.
    fn granted(ratio: f64, calls: usize) -> usize {
        let budget = with_reserve(ratio, 0);
        (0..calls).for_each(|_| budget.deposit());
        (0..calls * 2).filter(|_| budget.withdraw()).count()
    }

    #[tokio::test(start_paused = true)]
    async fn a_ratio_of_one_in_n_grants_exactly_one_retry_in_n_calls() {
        for (ratio, expected) in [
            (1.0, 3000),
            (0.5, 1500),
            (1.0 / 3.0, 1000),
            (0.2, 600),
            (0.1, 300),
            (1.0 / 7.0, 428),
            (0.001, 3),
        ] {
            assert_eq!(granted(ratio, 3000), expected, "ratio {ratio}");
        }
        assert_eq!(granted(0.0, 3000), 0);
    }

    #[test]
    fn ratios_tower_cannot_keep_are_refused_naming_the_nearest_below() {
        assert_eq!(exact_ratio(0.2), Ok(0.2));
        assert_eq!(exact_ratio(0.5), Ok(0.5));
        assert_eq!(exact_ratio(1.0), Ok(1.0));
        assert_eq!(exact_ratio(0.0), Ok(0.0));
        assert_eq!(exact_ratio(1.0 / 3.0), Ok(1.0 / 3.0));
        assert_eq!(exact_ratio(0.6), Err(0.5));
        assert_eq!(exact_ratio(0.3), Err(0.25));
        assert_eq!(exact_ratio(0.15), Err(1.0 / 7.0));
        assert_eq!(exact_ratio(0.0001), Err(0.001));
    }

    #[tokio::test(start_paused = true)]
    async fn every_ratio_kept_grants_one_retry_per_n_calls_for_each_n() {
        // One call short of two retries' worth grants one: a charge of n - 1 would grant two.
        for n in 1..=1000 {
            assert_eq!(granted(1.0 / n as f64, 2 * n - 1), 1, "1/{n}");
            assert_eq!(granted(1.0 / n as f64, 2 * n), 2, "1/{n}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_inexact_ratio_given_anyway_is_held_to_the_nearest_below_never_rounded_up() {
        // Before: 0.6 was charged one call a retry, so every call could be retried.
        assert_eq!(granted(0.6, 3000), 1500);
    }

    #[test]
    fn out_of_range_ratios_do_not_panic() {
        for ratio in [f64::NAN, -1.0, 1e9, f64::INFINITY] {
            let _ = retry_budget(ratio);
        }
    }
}

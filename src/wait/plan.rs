//! Whether a group reads the invocations it follows in one status with a listing or one by one:
//! whichever costs fewer calls, from what the last listing of that status cost.

use std::time::Duration;

use tokio::time::Instant;

use crate::aliyun::request::LIST_PAGE_SIZE;

/// The aggregate statuses a followed invocation can be in that ECS's `InvokeStatus` filter takes;
/// the filter's other values are end states, which nobody waits in.
const LISTABLE: [&str; 4] = ["Pending", "Scheduled", "Running", "Stopping"];

/// How long what a listing cost is trusted: a region's listings grow and shrink as others invoke.
pub(crate) const COST_KEPT: Duration = Duration::from_secs(60);

/// What listing one status cost when last tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cost {
    /// It ended after this many pages.
    Pages(usize),
    /// It was cut off after this many pages, or failed: it costs more.
    MoreThan(usize),
}

/// A listing's cost and when it was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Learnt {
    /// What it cost.
    pub cost: Cost,
    /// When.
    pub at: Instant,
}

/// Whether reading the `followed` invocations in `status` with one listing costs fewer calls than
/// reading each: the last listing's cost while it is fresh, else the fewest pages that could hold
/// them.
pub(crate) fn listing_pays(
    status: &str,
    followed: usize,
    last: Option<&Learnt>,
    now: Instant,
) -> bool {
    if !LISTABLE.contains(&status) {
        return false;
    }
    let pages = match last.filter(|l| now.saturating_duration_since(l.at) < COST_KEPT) {
        Some(Learnt {
            cost: Cost::Pages(pages),
            ..
        }) => *pages,
        Some(Learnt {
            cost: Cost::MoreThan(pages),
            ..
        }) => pages.saturating_add(1),
        None => followed.div_ceil(LIST_PAGE_SIZE),
    };
    pages < followed
}

/// The most pages a listing for `followed` invocations may take: fewer than the reads it stands
/// for, so that a listing never costs more than reading each would have.
pub(crate) fn page_cap(followed: usize) -> usize {
    followed.saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_is_chosen_only_where_it_costs_fewer_calls() {
        let now = Instant::now();
        let learnt = |cost| Learnt { cost, at: now };
        let cases = [
            // status, followed, last listing, lists?
            ("Running", 1, None, false),
            ("Running", 2, None, true),
            ("Running", 50, None, true),
            ("Running", 1000, None, true),
            ("Running", 3, Some(learnt(Cost::Pages(2))), true),
            ("Running", 3, Some(learnt(Cost::Pages(3))), false),
            ("Running", 3, Some(learnt(Cost::MoreThan(2))), false),
            ("Running", 30, Some(learnt(Cost::MoreThan(2))), true),
            (
                "Running",
                30,
                Some(learnt(Cost::MoreThan(usize::MAX))),
                false,
            ),
            ("Stopping", 10, None, true),
            ("Pending", 10, None, true),
            ("Scheduled", 10, None, true),
            ("Success", 10, None, false),
            ("Resuming", 10, None, false),
            ("", 10, None, false),
        ];
        for (status, followed, last, lists) in cases {
            assert_eq!(
                listing_pays(status, followed, last.as_ref(), now),
                lists,
                "{status} x{followed} after {last:?}"
            );
        }
    }

    #[test]
    fn a_costly_listing_is_tried_again_once_its_cost_is_stale() {
        let then = Instant::now();
        let now = then + COST_KEPT;
        let failed = Learnt {
            cost: Cost::MoreThan(usize::MAX),
            at: then,
        };
        assert!(!listing_pays("Running", 100, Some(&failed), then));
        assert!(listing_pays("Running", 100, Some(&failed), now));
    }

    #[test]
    fn a_listing_stops_short_of_the_reads_it_stands_for() {
        assert_eq!(page_cap(0), 0);
        assert_eq!(page_cap(2), 1);
        assert_eq!(page_cap(1000), 999);
    }
}

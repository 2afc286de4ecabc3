//! The account's API quota as ECS counts it: per action, per region, per account, in fixed windows
//! of the clock (ECS's minutes: "throttled at minute T, the operation can be called again as of
//! minute T+1"). A decision is a pure function of the time, the window's count and the time the
//! action is blocked until, so the Redis script and this replica's own ledger decide alike.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::aliyun::request::ACTIONS;

/// The quotas applied when `--api-quota` is not given: StopInvocation's published figure.
/// DescribeInvocations publishes none and is left unlimited by default: until the poll loops of
/// many invocations read in turn, a low guess would slow every wait.
pub(crate) const DEFAULT_QUOTAS: &str = "StopInvocation=1000/60s";

/// ECS's minute: how long an action stays closed when ECS throttles it without saying for how
/// long.
pub(crate) const ECS_MINUTE: Duration = Duration::from_secs(60);

/// The rule an `--api-quota` value must meet, as operators read it in errors.
const QUOTA_RULE: &str = "must be ACTION=COUNT/PERIOD, such as StopInvocation=1000/60s, with COUNT from 1 to 1000000 and PERIOD from 1s to 1h";

/// One action's quota as Alibaba states it: `calls` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiQuota {
    /// The action, one the gateway calls.
    pub action: &'static str,
    /// Calls per period.
    pub calls: u32,
    /// The window, whole seconds.
    pub period: Duration,
}

impl std::str::FromStr for ApiQuota {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        let rule = |why: &str| format!("{QUOTA_RULE} ({why})");
        let (action, rest) = value.trim().split_once('=').ok_or_else(|| rule("no '='"))?;
        let action = ACTIONS
            .into_iter()
            .find(|known| *known == action.trim())
            .ok_or_else(|| rule(&format!("the gateway calls only {}", ACTIONS.join(" and "))))?;
        let (calls, period) = rest.split_once('/').ok_or_else(|| rule("no '/'"))?;
        let calls: u32 = calls
            .trim()
            .parse()
            .ok()
            .filter(|c| (1..=1_000_000).contains(c))
            .ok_or_else(|| rule("COUNT"))?;
        let period = humantime::parse_duration(period.trim())
            .ok()
            .filter(|p| {
                p.subsec_nanos() == 0
                    && (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(p)
            })
            .ok_or_else(|| rule("PERIOD, in whole seconds"))?;
        Ok(Self {
            action,
            calls,
            period,
        })
    }
}

impl std::fmt::Display for ApiQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={}/{}",
            self.action,
            self.calls,
            humantime::format_duration(self.period)
        )
    }
}

impl ApiQuota {
    /// The calls of a window that background work (a wait's later polls) may take: all but a
    /// quarter, kept for callers, so that a caller's read finds room however many waits poll.
    /// A quota of one call keeps no reserve (its polls would never run).
    pub(crate) fn background_calls(&self) -> u32 {
        (self.calls - self.calls / 4).max(1)
    }

    /// The calls of a window an attempt may find taken and still go.
    pub(crate) fn ceiling(&self, background: bool) -> u32 {
        if background {
            self.background_calls()
        } else {
            self.calls
        }
    }
}

/// `--quota-share`: the part of each quota the gateways may spend, from 0.01 to 1; the rest is
/// left to the console and the account's other tools.
pub(crate) fn share(value: &str) -> Result<f64, String> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| (0.01..=1.0).contains(s))
        .ok_or_else(|| "must be a fraction from 0.01 to 1, such as 0.5".to_owned())
}

/// The quotas the gateway keeps: each configured action's share of its quota, per window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    by_action: Vec<ApiQuota>,
}

impl Quotas {
    /// `quotas` (a later one for the same action replaces an earlier one), each cut to `share`
    /// (rounded down, at least one call).
    pub fn new(quotas: &[ApiQuota], share: f64) -> Self {
        let mut by_action: Vec<ApiQuota> = Vec::new();
        for quota in quotas {
            let calls = ((f64::from(quota.calls) * share).floor() as u32).max(1);
            let quota = ApiQuota { calls, ..*quota };
            match by_action.iter_mut().find(|q| q.action == quota.action) {
                Some(known) => *known = quota,
                None => by_action.push(quota),
            }
        }
        Self { by_action }
    }

    /// The gateway's quota for `action`; `None` when it has none.
    pub fn of(&self, action: &str) -> Option<ApiQuota> {
        self.by_action.iter().find(|q| q.action == action).copied()
    }

    /// Every quota kept.
    pub fn all(&self) -> &[ApiQuota] {
        &self.by_action
    }
}

impl std::fmt::Display for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let all: Vec<String> = self.by_action.iter().map(ToString::to_string).collect();
        f.write_str(&all.join(","))
    }
}

/// What a decision found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The attempt may go; its call is counted.
    Admitted,
    /// ECS throttled the action; it opens in this many milliseconds.
    Blocked(u64),
    /// The window's share is spent; the next window opens in this many milliseconds.
    Spent(u64),
}

/// The window `now_ms` falls in.
pub(crate) fn window(now_ms: u64, period: Duration) -> u64 {
    now_ms / period_ms(period)
}

fn period_ms(period: Duration) -> u64 {
    (period.as_millis() as u64).max(1)
}

/// Whether one more call of an action may go at `now_ms`, `used` calls into its window, the
/// action blocked until `blocked_until_ms` (0 when never), as background work or for a caller;
/// the same rules as `quota.lua`.
pub(crate) fn decide(
    now_ms: u64,
    quota: Option<ApiQuota>,
    used: u32,
    blocked_until_ms: u64,
    background: bool,
) -> Decision {
    if blocked_until_ms > now_ms {
        return Decision::Blocked(blocked_until_ms - now_ms);
    }
    match quota {
        Some(quota) if used >= quota.ceiling(background) => {
            let period = period_ms(quota.period);
            Decision::Spent((window(now_ms, quota.period) + 1) * period - now_ms)
        }
        _ => Decision::Admitted,
    }
}

/// Until when an action ECS throttled at `now_ms` stays closed: for as long as ECS asked, else to
/// the start of ECS's next minute; the same rule as `block.lua`.
pub(crate) fn blocked_until(now_ms: u64, asked: Option<Duration>) -> u64 {
    match asked {
        Some(asked) if !asked.is_zero() => now_ms + asked.as_millis() as u64,
        _ => (window(now_ms, ECS_MINUTE) + 1) * period_ms(ECS_MINUTE),
    }
}

/// Milliseconds since the Unix epoch on this replica's clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// More entries than this, and those whose window and block are over are dropped.
const MAX_LEDGER_ENTRIES: usize = 4096;

/// This replica's own counts and blocks, by (account, region, action): what decides without
/// Redis, and what remembers a throttle when Redis is gone.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Entry {
    /// Starts the window of `now_ms` afresh when the counted one has ended.
    fn roll(&mut self, quota: Option<ApiQuota>, now_ms: u64) {
        if now_ms >= self.window_end_ms {
            self.used = 0;
            self.owed = 0;
            self.window_end_ms =
                quota.map_or(0, |q| (window(now_ms, q.period) + 1) * period_ms(q.period));
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    /// When the counted window ends.
    window_end_ms: u64,
    used: u32,
    /// Calls admitted here alone in the window, which the fleet's count does not hold yet.
    owed: u32,
    blocked_until_ms: u64,
}

impl Ledger {
    /// Decides one attempt at `now_ms` for the action kept under `key`, counting it when
    /// admitted.
    pub(crate) fn take(
        &self,
        key: &str,
        quota: Option<ApiQuota>,
        background: bool,
        now_ms: u64,
    ) -> Decision {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_LEDGER_ENTRIES && !entries.contains_key(key) {
            entries.retain(|_, e| e.blocked_until_ms > now_ms || e.window_end_ms > now_ms);
        }
        let entry = entries.entry(key.to_owned()).or_default();
        if now_ms >= entry.window_end_ms {
            entry.used = 0;
            entry.window_end_ms =
                quota.map_or(0, |q| (window(now_ms, q.period) + 1) * period_ms(q.period));
        }
        let decision = decide(
            now_ms,
            quota,
            entry.used,
            entry.blocked_until_ms,
            background,
        );
        if decision == Decision::Admitted && quota.is_some() {
            entry.used += 1;
            entry.owed += 1;
        }
        decision
    }

    /// The fleet had counted `counted` calls of the action kept under `key` in the window of
    /// `now_ms`: a decision this replica makes alone later in the window starts from there.
    pub(crate) fn seen(&self, key: &str, quota: ApiQuota, counted: u32, now_ms: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.entry(key.to_owned()).or_default();
        entry.roll(Some(quota), now_ms);
        entry.used = entry.used.max(counted);
    }

    /// The calls admitted here alone in the window of `now_ms` that the fleet's count does not
    /// hold yet, handed over to be added to it (see [`Self::owe`] when that fails).
    pub(crate) fn settle(&self, key: &str, quota: Option<ApiQuota>, now_ms: u64) -> u32 {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = entries.get_mut(key) else {
            return 0;
        };
        entry.roll(quota, now_ms);
        std::mem::take(&mut entry.owed)
    }

    /// `owed` calls [`Self::settle`] handed over did not reach the fleet's count after all.
    pub(crate) fn owe(&self, key: &str, owed: u32) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = entries.get_mut(key) {
            entry.owed += owed;
        }
    }

    /// Gives back a call [`Self::take`] counted but that was not sent.
    pub(crate) fn refund(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = entries.get_mut(key) {
            entry.used = entry.used.saturating_sub(1);
            // Refunded, it is owed to the fleet's count no more.
            entry.owed = entry.owed.saturating_sub(1);
        }
    }

    /// How long the action kept under `key` stays closed from `now_ms`, when it is.
    pub(crate) fn blocked(&self, key: &str, now_ms: u64) -> Option<u64> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let until = entries.get(key)?.blocked_until_ms;
        (until > now_ms).then(|| until - now_ms)
    }

    /// Closes the action kept under `key` until `until_ms` (a later block is kept); how long from
    /// `now_ms` it stays closed.
    pub(crate) fn block(&self, key: &str, until_ms: u64, now_ms: u64) -> u64 {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.entry(key.to_owned()).or_default();
        entry.blocked_until_ms = entry.blocked_until_ms.max(until_ms);
        entry.blocked_until_ms.saturating_sub(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2027-01-15T08:00:00Z, in ms: the start of a minute.
    const MINUTE_START: u64 = 1_800_000_000_000;

    const STOP: ApiQuota = ApiQuota {
        action: "StopInvocation",
        calls: 3,
        period: Duration::from_secs(60),
    };

    #[test]
    fn a_quota_reads_as_alibaba_states_it_and_refuses_what_it_cannot_keep() {
        let quota: ApiQuota = "StopInvocation=1000/60s".parse().unwrap();
        assert_eq!(
            quota,
            ApiQuota {
                action: "StopInvocation",
                calls: 1000,
                period: Duration::from_secs(60)
            }
        );
        assert_eq!(quota.to_string(), "StopInvocation=1000/1m");
        let minute: ApiQuota = " DescribeInvocations = 200 / 1m ".parse().unwrap();
        assert_eq!(minute.calls, 200);
        for bad in [
            "StopInvocation",
            "StopInvocations=1000/60s",
            "RunCommand=10/60s",
            "StopInvocation=0/60s",
            "StopInvocation=-1/60s",
            "StopInvocation=1000",
            "StopInvocation=1000/0s",
            "StopInvocation=1000/1500ms",
            "StopInvocation=1000/2h",
            "StopInvocation=1000001/60s",
        ] {
            let error = bad.parse::<ApiQuota>().unwrap_err();
            assert!(
                error.starts_with("must be ACTION=COUNT/PERIOD"),
                "{bad}: {error}"
            );
        }
        assert!(
            "RunCommand=1/1s"
                .parse::<ApiQuota>()
                .unwrap_err()
                .contains("StopInvocation and DescribeInvocations")
        );
    }

    #[test]
    fn the_share_rounds_down_keeps_one_call_and_a_later_quota_replaces_an_earlier() {
        let quotas = Quotas::new(
            &[
                STOP,
                "DescribeInvocations=5/1s".parse().unwrap(),
                "StopInvocation=1000/60s".parse().unwrap(),
            ],
            0.5,
        );
        assert_eq!(quotas.of("StopInvocation").unwrap().calls, 500);
        assert_eq!(quotas.of("DescribeInvocations").unwrap().calls, 2);
        assert_eq!(quotas.all().len(), 2);
        assert_eq!(
            Quotas::new(&[STOP], 0.01)
                .of("StopInvocation")
                .unwrap()
                .calls,
            1
        );
        assert_eq!(Quotas::new(&[], 0.5).of("StopInvocation"), None);
        assert_eq!(share("0.5"), Ok(0.5));
        for bad in ["0", "1.5", "-0.2", "half", "NaN"] {
            assert!(share(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn windows_are_the_clocks_minutes_and_a_spent_one_opens_at_the_next() {
        // 10.25 s into a minute.
        let minute_start = MINUTE_START;
        let now = minute_start + 10_250;
        assert_eq!(decide(now, Some(STOP), 2, 0, false), Decision::Admitted);
        assert_eq!(
            decide(now, Some(STOP), 3, 0, false),
            Decision::Spent(49_750)
        );
        assert_eq!(decide(now, None, 1_000_000, 0, false), Decision::Admitted);
        assert_eq!(
            window(minute_start - 1, STOP.period) + 1,
            window(minute_start, STOP.period)
        );
    }

    #[test]
    fn background_work_leaves_a_quarter_of_each_window_to_callers() {
        let now = MINUTE_START + 1_000;
        let reads = ApiQuota {
            action: "DescribeInvocations",
            calls: 100,
            period: Duration::from_secs(60),
        };
        assert_eq!(reads.background_calls(), 75);
        assert_eq!(decide(now, Some(reads), 74, 0, true), Decision::Admitted);
        assert_eq!(
            decide(now, Some(reads), 75, 0, true),
            Decision::Spent(59_000)
        );
        assert_eq!(decide(now, Some(reads), 99, 0, false), Decision::Admitted);
        assert_eq!(
            decide(now, Some(reads), 100, 0, false),
            Decision::Spent(59_000)
        );
        // A one-call quota keeps no reserve: polls must still run.
        let one = ApiQuota { calls: 1, ..reads };
        assert_eq!(one.background_calls(), 1);
        assert_eq!(ApiQuota { calls: 3, ..reads }.background_calls(), 3);
        assert_eq!(ApiQuota { calls: 4, ..reads }.background_calls(), 3);
    }

    #[test]
    fn a_block_comes_before_the_quota_and_lasts_what_ecs_asked_or_to_the_next_minute() {
        let minute_start = MINUTE_START;
        let now = minute_start + 45_000;
        assert_eq!(
            blocked_until(now, Some(Duration::from_millis(2500))),
            now + 2500
        );
        assert_eq!(blocked_until(now, None), minute_start + 60_000);
        assert_eq!(
            blocked_until(now, Some(Duration::ZERO)),
            minute_start + 60_000
        );
        assert_eq!(
            decide(now, Some(STOP), 0, now + 2500, false),
            Decision::Blocked(2500)
        );
        assert_eq!(
            decide(now + 2500, Some(STOP), 0, now + 2500, false),
            Decision::Admitted
        );
        assert_eq!(decide(now, None, 0, now + 1, false), Decision::Blocked(1));
    }

    #[test]
    fn the_ledger_counts_per_key_and_window_and_keeps_the_later_block() {
        let ledger = Ledger::default();
        let minute_start = MINUTE_START;
        let now = minute_start + 1_000;
        for _ in 0..3 {
            assert_eq!(ledger.take("a", Some(STOP), false, now), Decision::Admitted);
        }
        assert_eq!(
            ledger.take("a", Some(STOP), false, now),
            Decision::Spent(59_000)
        );
        ledger.refund("a");
        assert_eq!(ledger.take("a", Some(STOP), false, now), Decision::Admitted);
        assert_eq!(
            ledger.take("a", Some(STOP), false, now),
            Decision::Spent(59_000)
        );
        // Another account, region or action has its own count.
        assert_eq!(ledger.take("b", Some(STOP), false, now), Decision::Admitted);
        // The next minute starts afresh.
        assert_eq!(
            ledger.take("a", Some(STOP), false, minute_start + 60_000),
            Decision::Admitted
        );
        assert_eq!(ledger.block("b", now + 5_000, now), 5_000);
        assert_eq!(ledger.block("b", now + 1_000, now), 5_000);
        assert_eq!(
            ledger.take("b", Some(STOP), false, now + 4_000),
            Decision::Blocked(1_000)
        );
        assert_eq!(ledger.blocked("b", now + 4_000), Some(1_000));
        assert_eq!(ledger.blocked("a", now), None);
        // Redis said the fleet had counted 2 of 3: alone, this replica takes only the third.
        ledger.seen("c", STOP, 2, now);
        assert_eq!(ledger.take("c", Some(STOP), false, now), Decision::Admitted);
        assert_eq!(
            ledger.take("c", Some(STOP), false, now),
            Decision::Spent(59_000)
        );
        // What "c" admitted alone is owed to the fleet's count once, and again if that fails;
        // a call given back is not owed.
        assert_eq!(ledger.take("e", Some(STOP), false, now), Decision::Admitted);
        ledger.refund("e");
        assert_eq!(ledger.settle("e", Some(STOP), now), 0);
        assert_eq!(ledger.settle("c", Some(STOP), now), 1);
        assert_eq!(ledger.settle("c", Some(STOP), now), 0);
        ledger.owe("c", 1);
        assert_eq!(ledger.settle("c", Some(STOP), MINUTE_START + 60_000), 0);
        // A count seen in an earlier window does not hold in the next.
        ledger.seen("d", STOP, 3, now);
        assert_eq!(
            ledger.take("d", Some(STOP), false, MINUTE_START + 60_000),
            Decision::Admitted
        );
        assert_eq!(
            ledger.take("b", None, false, now + 5_000),
            Decision::Admitted
        );
    }
}

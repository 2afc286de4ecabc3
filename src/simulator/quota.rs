//! The simulator's API quotas, as ECS keeps them: per action, counted in fixed windows of the
//! clock (ECS's are minutes); a call past the window's count is throttled until the next window,
//! with the wait said in one of the header styles Alibaba's SDKs read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::header::HeaderValue;

/// How a throttled answer says how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleHeaders {
    /// `x-acs-retry-after`, milliseconds (what the newest Tea core reads).
    AcsRetryAfter,
    /// `x-ratelimit-user-api: Limit:…,Remain:0,TimeLeft:…,Reset:…` (what the Go core reads).
    RateLimitUser,
    /// Nothing: the caller must know that ECS's windows are minutes.
    Silent,
}

/// One action's quota.
#[derive(Debug, Clone, Copy)]
struct Quota {
    calls: u32,
    period: Duration,
    headers: ThrottleHeaders,
    window: u64,
    used: u32,
    throttled: u64,
}

/// Every action's quota and count; no quota, no limit.
#[derive(Debug, Default)]
pub(crate) struct Quotas {
    by_action: Mutex<HashMap<String, Quota>>,
}

impl Quotas {
    /// Limits `action` to `calls` per `period` from now on.
    pub(crate) fn set(&self, action: &str, calls: u32, period: Duration, headers: ThrottleHeaders) {
        let quota = Quota {
            calls,
            period: period.max(Duration::from_millis(1)),
            headers,
            window: 0,
            used: 0,
            throttled: 0,
        };
        self.lock().insert(action.to_owned(), quota);
    }

    /// Calls of `action` throttled so far.
    pub(crate) fn throttled(&self, action: &str) -> u64 {
        self.lock().get(action).map_or(0, |q| q.throttled)
    }

    /// Counts one call of `action`; the headers of a throttled answer when its window is spent.
    pub(crate) fn charge(&self, action: &str) -> Option<Vec<(&'static str, HeaderValue)>> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut quotas = self.lock();
        let quota = quotas.get_mut(action)?;
        let period = quota.period.as_millis() as u64;
        let window = now / period;
        if window != quota.window {
            quota.window = window;
            quota.used = 0;
        }
        quota.used = quota.used.saturating_add(1);
        if quota.used <= quota.calls {
            return None;
        }
        quota.throttled += 1;
        let next = (window + 1) * period;
        let left = next - now;
        let value = |text: String| HeaderValue::from_str(&text).ok();
        let headers = match quota.headers {
            ThrottleHeaders::AcsRetryAfter => value(left.to_string())
                .map(|v| ("x-acs-retry-after", v))
                .into_iter()
                .collect(),
            ThrottleHeaders::RateLimitUser => value(format!(
                "Limit:{},Remain:0,TimeLeft:{left},Reset:{}",
                quota.calls,
                next / 1000
            ))
            .map(|v| ("x-ratelimit-user-api", v))
            .into_iter()
            .collect(),
            ThrottleHeaders::Silent => Vec::new(),
        };
        Some(headers)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Quota>> {
        self.by_action.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_its_count_an_action_is_throttled_to_the_end_of_the_window_and_others_are_not() {
        let quotas = Quotas::default();
        quotas.set(
            "StopInvocation",
            2,
            Duration::from_secs(3600),
            ThrottleHeaders::RateLimitUser,
        );
        assert!(quotas.charge("StopInvocation").is_none());
        assert!(quotas.charge("StopInvocation").is_none());
        let headers = quotas.charge("StopInvocation").expect("throttled");
        let (name, value) = &headers[0];
        assert_eq!(*name, "x-ratelimit-user-api");
        let value = value.to_str().unwrap();
        assert!(value.starts_with("Limit:2,Remain:0,TimeLeft:"), "{value}");
        assert!(quotas.charge("DescribeInvocations").is_none());
        assert_eq!(quotas.throttled("StopInvocation"), 1);
        assert_eq!(quotas.throttled("DescribeInvocations"), 0);
    }
}

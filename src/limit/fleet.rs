//! Rates shared by every replica: one GCRA bucket per key in Redis, one atomic script call per
//! decision. When Redis does not answer within a few milliseconds, each replica decides alone with
//! its local limiter (at the same rate) until Redis answers again: a slow or dead Redis costs the
//! fleet its shared limit, never its availability.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::IntoConnectionInfo as _;
use redis::aio::MultiplexedConnection;
use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;

use super::quota::{ApiQuota, Decision};
use super::rate::Rate;
use crate::observe::metrics::Metrics;

/// How long a connection attempt to Redis may take, at start and when reconnecting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The pause between reconnection attempts while Redis is down.
const RECONNECT_EVERY: Duration = Duration::from_millis(500);
/// Every key the gateway writes starts with this, so that a shared Redis stays tidy.
const KEY_PREFIX: &str = "ecs-gateway:v1:";

/// A `redis://` URL; its `Debug` and `Display` leave out the user name and password.
#[derive(Clone)]
pub struct RedisUrl {
    url: url::Url,
}

impl std::str::FromStr for RedisUrl {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        const RULE: &str = "must be a redis://[:PASSWORD@]HOST[:PORT][/DB] URL";
        let url = url::Url::parse(value.trim()).map_err(|_| RULE.to_owned())?;
        match url.scheme() {
            "redis" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(Self { url }),
            "rediss" => Err(format!(
                "{RULE}: TLS to Redis (rediss://) is not built in; reach Redis over the pod network or a local TLS proxy"
            )),
            _ => Err(RULE.to_owned()),
        }
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = self.url.host_str().unwrap_or_default();
        let port = self.url.port().unwrap_or(6379);
        write!(f, "redis://{host}:{port}{}", self.url.path())
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// What a bucket limits; its Redis key holds a hash, never the AccessKeyId, role or caller name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Bucket(String);

impl Bucket {
    /// Calls to ECS by one principal (an AccessKeyId, or a role; see
    /// `CredentialSupply::principal`) in one region.
    pub fn upstream(principal: &str, region: &str) -> Self {
        Self(format!(
            "{KEY_PREFIX}upstream:{}:{region}",
            digest(principal)
        ))
    }

    /// One caller's calls (its policy rate).
    pub fn caller(name: &str) -> Self {
        Self(format!("{KEY_PREFIX}caller:{}", digest(name)))
    }

    /// One action's calls by one principal in one region: its quota's windows and its block.
    pub fn action(principal: &str, region: &str, action: &str) -> Self {
        Self(format!(
            "{KEY_PREFIX}action:{}:{region}:{action}",
            digest(principal)
        ))
    }

    /// The key of an action bucket's blocked-until time.
    fn blocked(&self) -> String {
        format!("{}:blocked", self.0)
    }

    /// The prefix of an action bucket's window counters.
    fn windows(&self) -> String {
        format!("{}:window:", self.0)
    }

    /// The Redis key.
    pub fn key(&self) -> &str {
        &self.0
    }
}

/// The invocations one listing can hold, as the fleet shares their polling: one principal's, in
/// one region, with one set of owner fields. Its keys hold hashes, never the principal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Group(String);

impl Group {
    /// The group of `principal`'s invocations in `region` read with the owner fields `owner`
    /// (in any stable spelling).
    pub fn new(principal: &str, region: &str, owner: &str) -> Self {
        Self(format!(
            "{KEY_PREFIX}group:{}:{region}:{}",
            digest(principal),
            digest(owner)
        ))
    }

    fn read(&self, invoke_id: &str) -> String {
        format!("{}:read:{invoke_id}", self.0)
    }
}

/// The first 16 bytes of SHA-256, in hex: enough to keep buckets apart, nothing to recover.
fn digest(value: &str) -> String {
    use std::fmt::Write as _;
    let hash = Sha256::digest(value.as_bytes());
    let mut hex = String::with_capacity(32);
    for byte in &hash[..16] {
        // Writing into a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// The Redis store could not be set up (a bad URL or password file; an unreachable Redis is not an
/// error).
#[derive(Debug, thiserror::Error)]
#[error("{setting} ({url}): {reason}")]
pub struct StoreError {
    setting: &'static str,
    /// The URL as `Display` shows it: without its password.
    url: String,
    reason: String,
}

/// Where the Redis password comes from, besides the URL.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// The server.
    pub url: RedisUrl,
    /// A file holding the password (a mounted Secret), re-read at every reconnection so that a
    /// rotated password is picked up; it replaces a password in the URL.
    pub password_file: Option<PathBuf>,
    /// The longest a decision waits for Redis.
    pub timeout: Duration,
}

impl RedisSettings {
    /// The connection settings, with the password file read now.
    fn client(&self) -> Result<redis::Client, StoreError> {
        let url_error = |reason: String| StoreError {
            setting: "--redis-url / ECS_GATEWAY_REDIS_URL",
            url: self.url.to_string(),
            reason,
        };
        let mut info = self
            .url
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| url_error(e.to_string()))?;
        if let Some(path) = &self.password_file {
            let text = crate::bounded::read_text(path).map_err(|e| StoreError {
                setting: "--redis-password-file / ECS_GATEWAY_REDIS_PASSWORD_FILE",
                url: self.url.to_string(),
                reason: format!("cannot read {}: {e}", path.display()),
            })?;
            let settings = info.redis_settings().clone().set_password(text.trim());
            info = info.set_redis_settings(settings);
        }
        redis::Client::open(info).map_err(|e| url_error(e.to_string()))
    }
}

/// The shared rate store; clones share one connection.
#[derive(Clone)]
pub struct FleetStore {
    inner: Arc<Inner>,
}

struct Inner {
    settings: RedisSettings,
    /// `None` while Redis is unreachable: decisions are local, and the supervisor reconnects.
    connection: ArcSwapOption<MultiplexedConnection>,
    lost: Arc<Notify>,
    scripts: [redis::Script; 8],
    metrics: Option<Metrics>,
}

/// The scripts, by position in `Inner::scripts`.
const GCRA: usize = 0;
const QUOTA: usize = 1;
const BLOCK: usize = 2;
const REFUND: usize = 3;
const LEASE: usize = 4;
const ANNOUNCE: usize = 5;
const SHARE: usize = 6;
const FETCH: usize = 7;

/// How long a group's work in Redis (announcing, sharing, fetching reads) may take: it is
/// background work with larger answers than a decision, and a slow answer must not drop the
/// connection every decision uses.
const GROUP_TIMEOUT: Duration = Duration::from_millis(250);
/// The most keys one fetch asks for (Lua's `unpack` has a stack limit).
const FETCH_CHUNK: usize = 500;

impl std::fmt::Debug for FleetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetStore")
            .field("url", &self.inner.settings.url)
            .field("timeout", &self.inner.settings.timeout)
            .field("connected", &self.inner.connection.load().is_some())
            .finish()
    }
}

impl FleetStore {
    /// Connects to Redis (waiting at most a second) and keeps reconnecting in the background
    /// whenever it is lost. Fails only on settings that can never work.
    pub async fn connect(
        settings: RedisSettings,
        metrics: Option<Metrics>,
    ) -> Result<Self, StoreError> {
        settings.client()?;
        let inner = Arc::new(Inner {
            settings,
            connection: ArcSwapOption::empty(),
            lost: Arc::new(Notify::new()),
            scripts: [
                redis::Script::new(include_str!("gcra.lua")),
                redis::Script::new(include_str!("quota.lua")),
                redis::Script::new(include_str!("block.lua")),
                redis::Script::new(include_str!("refund.lua")),
                redis::Script::new(include_str!("lease.lua")),
                redis::Script::new(include_str!("announce.lua")),
                redis::Script::new(include_str!("share.lua")),
                redis::Script::new(include_str!("fetch.lua")),
            ],
            metrics,
        });
        if let Some(metrics) = &inner.metrics {
            metrics.fleet_store_connected(false);
        }
        // The first attempt is awaited, so a replica that can reach Redis starts fleet-wide.
        let reachable = match inner.reconnect().await {
            Ok(()) => true,
            Err(reason) => {
                tracing::warn!(redis = %inner.settings.url, %reason, "fleet limiter: Redis does not answer; this replica applies the fleet-wide rates on its own until it does");
                false
            }
        };
        tokio::spawn(supervise(Arc::downgrade(&inner), reachable));
        Ok(Self { inner })
    }

    /// Whether decisions are being made in Redis now.
    pub fn is_connected(&self) -> bool {
        self.inner.connection.load().is_some()
    }

    /// Takes one call from `bucket` at `rate`, fleet-wide; `Err` is the wait until the next slot.
    /// Without an answer from Redis in time, `local` decides (and the call is counted as such).
    pub async fn acquire(
        &self,
        bucket: &Bucket,
        rate: Rate,
        local: impl FnOnce() -> Result<(), Duration>,
    ) -> Result<(), Duration> {
        let interval_us = 1e6 / rate.per_second();
        let tolerance_us = interval_us * f64::from(rate.burst().get());
        let mut call = self.inner.scripts[GCRA].key(bucket.key());
        call.arg(interval_us).arg(tolerance_us);
        match self.eval::<i64>(&call).await {
            None => self.inner.decide_locally(local),
            Some(wait_us) if wait_us <= 0 => Ok(()),
            // No honest bucket asks for more than a slot past its burst; a key another tenant of a
            // shared Redis wrote could, and must not refuse a caller for years.
            Some(wait_us) => Err(Duration::from_micros(
                wait_us
                    .unsigned_abs()
                    .min((interval_us + tolerance_us) as u64),
            )),
        }
    }

    /// Decides one attempt of the action kept in `bucket` (see [`Bucket::action`]) against
    /// `quota` (its background share for background work), fleet-wide: a block set by any replica
    /// first, then the window's count (with `owed` added: calls this replica admitted alone in the
    /// window), which comes back with an admission. `None` with the decision when Redis did not
    /// answer in time and `local` decided.
    pub async fn take(
        &self,
        bucket: &Bucket,
        quota: Option<ApiQuota>,
        background: bool,
        owed: u32,
        local: impl FnOnce() -> Decision,
    ) -> (Decision, Option<u32>) {
        let (period_ms, calls) = quota.map_or((0, 0), |q| {
            (q.period.as_millis() as u64, q.ceiling(background))
        });
        let mut call = self.inner.scripts[QUOTA].key(bucket.blocked());
        call.key(bucket.windows())
            .arg(period_ms)
            .arg(calls)
            .arg(owed);
        // As in `acquire`, a foreign key cannot hold an action for longer than a minute.
        let cap = |ms: i64| ms.clamp(1, 60_000) as u64;
        match self.eval::<(i64, i64)>(&call).await {
            None => (self.inner.decide_locally(local), None),
            Some((1, ms)) => (Decision::Blocked(cap(ms)), None),
            Some((2, ms)) => (Decision::Spent(cap(ms)), Some(calls)),
            Some((_, used)) => (
                Decision::Admitted,
                Some(used.clamp(0, i64::from(u32::MAX)) as u32),
            ),
        }
    }

    /// Gives back to `quota` a call [`Self::take`] admitted but that was not sent; without Redis,
    /// `local` does.
    pub async fn refund(&self, bucket: &Bucket, quota: ApiQuota, local: impl FnOnce()) {
        let mut call = self.inner.scripts[REFUND].key(bucket.windows());
        call.arg(quota.period.as_millis() as u64);
        if self.eval::<i64>(&call).await.is_none() {
            local();
        }
    }

    /// Closes the action kept in `bucket` for every replica, for `asked` (or to ECS's next
    /// minute), keeping a later block; how long it stays closed. Without Redis, `local` does.
    pub async fn block(
        &self,
        bucket: &Bucket,
        asked: Option<Duration>,
        local: impl FnOnce() -> u64,
    ) -> u64 {
        let mut call = self.inner.scripts[BLOCK].key(bucket.blocked());
        call.arg(asked.map_or(0, |a| a.as_millis() as u64));
        match self.eval::<i64>(&call).await {
            Some(ms) => ms.clamp(0, 60_000) as u64,
            None => local(),
        }
    }

    /// Takes or renews the lease of `group` for `replica` for `lifetime`: whether it holds it;
    /// `None` without Redis.
    pub async fn lease(&self, group: &Group, replica: &str, lifetime: Duration) -> Option<bool> {
        let mut call = self.inner.scripts[LEASE].key(format!("{}:lease", group.0));
        call.arg(replica).arg(lifetime.as_millis() as u64);
        self.eval_within::<i64>(&call, GROUP_TIMEOUT)
            .await
            .map(|held| held == 1)
    }

    /// Announces the invocations `ids` this replica follows in `group` for `lifetime`: every one
    /// the fleet follows there (at most `most`); `None` without Redis.
    pub async fn announce(
        &self,
        group: &Group,
        ids: &[&str],
        lifetime: Duration,
        most: usize,
    ) -> Option<Vec<String>> {
        let mut call = self.inner.scripts[ANNOUNCE].key(format!("{}:followed", group.0));
        call.arg(lifetime.as_millis() as u64).arg(most);
        for id in ids {
            call.arg(*id);
        }
        self.eval_within(&call, GROUP_TIMEOUT).await
    }

    /// Shares the reads of `group` (invoke id, read) for `lifetime`; whether Redis took them.
    pub async fn share(&self, group: &Group, reads: &[(&str, String)], lifetime: Duration) -> bool {
        if reads.is_empty() {
            return true;
        }
        let mut call = self.inner.scripts[SHARE].prepare_invoke();
        call.arg(lifetime.as_millis() as u64);
        for (id, read) in reads {
            call.key(group.read(id)).arg(read);
        }
        self.eval_within::<i64>(&call, GROUP_TIMEOUT)
            .await
            .is_some()
    }

    /// The reads of `ids` the group's poller shared, in order (`None` where there is none);
    /// `None` without Redis.
    pub async fn fetch(&self, group: &Group, ids: &[&str]) -> Option<Vec<Option<String>>> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(FETCH_CHUNK) {
            let mut call = self.inner.scripts[FETCH].prepare_invoke();
            for id in chunk {
                call.key(group.read(id));
            }
            found.extend(
                self.eval_within::<Vec<Option<String>>>(&call, GROUP_TIMEOUT)
                    .await?,
            );
        }
        Some(found)
    }

    /// Runs `call` in Redis within the timeout; `None` (and the connection dropped) when Redis
    /// is not there or does not answer in time.
    async fn eval<T: redis::FromRedisValue>(
        &self,
        call: &redis::ScriptInvocation<'_>,
    ) -> Option<T> {
        self.eval_within(call, self.inner.settings.timeout).await
    }

    /// [`Self::eval`] within `timeout`.
    async fn eval_within<T: redis::FromRedisValue>(
        &self,
        call: &redis::ScriptInvocation<'_>,
        timeout: Duration,
    ) -> Option<T> {
        let inner = &*self.inner;
        let current = inner.connection.load_full();
        let shared = current.as_ref()?;
        let mut connection = MultiplexedConnection::clone(shared);
        match tokio::time::timeout(timeout, call.invoke_async::<T>(&mut connection)).await {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(error)) => {
                inner.lose(&current, &error.to_string());
                None
            }
            Err(_) => {
                inner.lose(&current, &format!("no answer within {timeout:?}"));
                None
            }
        }
    }
}

impl Inner {
    fn decide_locally<T>(&self, local: impl FnOnce() -> T) -> T {
        if let Some(metrics) = &self.metrics {
            metrics.fleet_local_decision();
        }
        local()
    }

    /// Drops the connection `failed` once, however many calls saw it fail (and never a newer one),
    /// and wakes the supervisor.
    fn lose(&self, failed: &Option<Arc<MultiplexedConnection>>, why: &str) {
        let previous = self.connection.compare_and_swap(failed, None);
        let dropped = matches!((&*previous, failed), (Some(p), Some(f)) if Arc::ptr_eq(p, f));
        if dropped {
            tracing::warn!(redis = %self.settings.url, reason = why, "fleet limiter: lost Redis; this replica applies the fleet-wide rates on its own until it answers again");
            if let Some(metrics) = &self.metrics {
                metrics.fleet_store_connected(false);
            }
            self.lost.notify_one();
        }
    }

    /// One connection attempt; on success, decisions go to Redis again. The error says why not.
    async fn reconnect(&self) -> Result<(), String> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(CONNECT_TIMEOUT));
        let client = self.settings.client().map_err(|e| e.to_string())?;
        let attempt = client.get_multiplexed_async_connection_with_config(&config);
        let mut connection = tokio::time::timeout(CONNECT_TIMEOUT, attempt)
            .await
            .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        // Load the scripts now, so that each decision is one EVALSHA round trip.
        for script in &self.scripts {
            let invocation = script.prepare_invoke();
            tokio::time::timeout(CONNECT_TIMEOUT, invocation.load_async(&mut connection))
                .await
                .map_err(|_| format!("SCRIPT LOAD unanswered within {CONNECT_TIMEOUT:?}"))?
                .map_err(|e| e.to_string())?;
        }
        self.connection.store(Some(Arc::new(connection)));
        if let Some(metrics) = &self.metrics {
            metrics.fleet_store_connected(true);
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.lost.notify_one();
    }
}

/// Reconnects whenever the connection is lost, until the store is dropped.
async fn supervise(inner: Weak<Inner>, mut connected: bool) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        if connected {
            // Wait for a lost connection without keeping the store alive (dropping it wakes us).
            let lost = strong.lost.clone();
            drop(strong);
            lost.notified().await;
            connected = false;
            // A moment on local limits before trying again: a Redis that answers slowly under
            // load then costs at most two log lines per pause, not two per call.
            tokio::time::sleep(RECONNECT_EVERY).await;
            continue;
        }
        match strong.reconnect().await {
            Ok(()) => {
                tracing::info!(redis = %strong.settings.url, "fleet limiter: Redis answers; rates are fleet-wide again");
                connected = true;
                continue;
            }
            Err(reason) => {
                tracing::debug!(redis = %strong.settings.url, %reason, "fleet limiter: Redis still does not answer");
            }
        }
        drop(strong);
        tokio::time::sleep(RECONNECT_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_never_shows_its_password() {
        let url: RedisUrl = "redis://:hunter2@redis.default.svc:6380/2".parse().unwrap();
        assert_eq!(url.to_string(), "redis://redis.default.svc:6380/2");
        assert!(!format!("{url:?}").contains("hunter2"));
        let user: RedisUrl = "redis://gateway:hunter2@10.0.0.7".parse().unwrap();
        assert_eq!(user.to_string(), "redis://10.0.0.7:6379");
        assert!(
            "rediss://x"
                .parse::<RedisUrl>()
                .unwrap_err()
                .contains("TLS")
        );
        assert!("http://x".parse::<RedisUrl>().is_err());
        assert!("redis://".parse::<RedisUrl>().is_err());
    }

    #[test]
    fn keys_hold_a_hash_of_the_access_key_id_and_caller_never_the_value() {
        let id = "LTAI5tExampleKeyId";
        let upstream = Bucket::upstream(id, "cn-hangzhou");
        assert!(!upstream.key().contains(id));
        assert!(upstream.key().starts_with("ecs-gateway:v1:upstream:"));
        assert!(upstream.key().ends_with(":cn-hangzhou"));
        // sha256("LTAI5tExampleKeyId"), first 16 bytes, from `sha256sum`.
        assert!(
            upstream
                .key()
                .contains(":2fdf35c08e8e3086b2c6d99c6a9c073c:"),
            "{}",
            upstream.key()
        );
        assert_ne!(upstream, Bucket::upstream(id, "cn-shanghai"));
        let caller = Bucket::caller("billing");
        assert!(!caller.key().contains("billing"));
        assert_ne!(caller.key(), Bucket::caller("payroll").key());
    }
}

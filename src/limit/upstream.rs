//! What the gateways may send to ECS, per account and region: no call of an action ECS throttled
//! until the time it gave, each action's share of the account's quota in ECS's windows, and
//! optionally a smoothing rate for every action together (`--fleet-rate`), in that order, so that
//! a closed action takes nothing from the rate the others share. Every attempt, retries included,
//! is decided here, because Alibaba throttles the account, not the replica.
//!
//! The account is the credential's principal: the AccessKeyId of a long-lived key but the role of
//! temporary credentials, since every replica's STS session (RRSA, RAM roles) has an AccessKeyId of
//! its own and keying by it would give each replica its own quota.

use std::time::Duration;

use futures_util::future::BoxFuture;
use governor::DefaultKeyedRateLimiter;

use super::fleet::{Bucket, FleetStore};
use super::quota::{self, Decision, Ledger, Quotas};
use super::rate::{Rate, local_wait};
use crate::aliyun::client::{Admission, Attempt};
use crate::aliyun::error::{Limit, NotAdmitted};
use crate::observe::metrics::{Metrics, Shed};

/// More local rate buckets than this, and the full (idle) ones are dropped.
const MAX_LOCAL_BUCKETS: usize = 1024;

/// The limits toward ECS, shared through Redis when a store is given, else this replica's own.
#[derive(Debug)]
pub struct UpstreamQuota {
    quotas: Quotas,
    /// `--fleet-rate`, which needs the store.
    rate: Option<Rate>,
    store: Option<FleetStore>,
    /// Counts and blocks while Redis does not answer (or without one); blocks always.
    ledger: Ledger,
    /// This replica's own rate buckets, used while Redis does not answer.
    local_rates: Option<DefaultKeyedRateLimiter<Bucket>>,
    metrics: Option<Metrics>,
}

impl UpstreamQuota {
    /// `quotas`, and `rate` for every action together, shared through `store` when given.
    pub fn new(
        quotas: Quotas,
        rate: Option<Rate>,
        store: Option<FleetStore>,
        metrics: Option<Metrics>,
    ) -> Self {
        if let Some(metrics) = &metrics {
            for quota in quotas.all() {
                metrics.api_quota(quota.action, quota.calls, quota.period);
            }
        }
        Self {
            quotas,
            local_rates: rate.map(|rate| DefaultKeyedRateLimiter::keyed(rate.quota())),
            rate,
            store,
            ledger: Ledger::default(),
            metrics,
        }
    }

    fn shed(&self, limit: Shed) {
        if let Some(metrics) = &self.metrics {
            metrics.shed(limit);
        }
    }

    async fn decide(&self, attempt: Attempt<'_>) -> Result<(), NotAdmitted> {
        let bucket = Bucket::action(attempt.principal, attempt.region, attempt.action);
        let quota = self.quotas.of(attempt.action);
        let background = attempt.background;
        let local = || {
            self.ledger
                .take(bucket.key(), quota, background, quota::now_ms())
        };
        // A block this replica saw holds even when Redis lost it.
        let decision = match self.ledger.blocked(bucket.key(), quota::now_ms()) {
            Some(ms) => Decision::Blocked(ms),
            None => match &self.store {
                Some(store) => {
                    // What this replica admitted alone while Redis was away joins the count.
                    let owed = self.ledger.settle(bucket.key(), quota, quota::now_ms());
                    let (decision, counted) =
                        store.take(&bucket, quota, background, owed, local).await;
                    match (counted, quota) {
                        // Should Redis go, this replica goes on from the fleet's count, not 0.
                        (Some(counted), Some(quota)) => {
                            self.ledger
                                .seen(bucket.key(), quota, counted, quota::now_ms());
                        }
                        (None, _) => self.ledger.owe(bucket.key(), owed),
                        _ => {}
                    }
                    decision
                }
                None => local(),
            },
        };
        let (limit, ms) = match (decision, quota) {
            (Decision::Admitted, _) => {
                let smoothed = self.smooth(attempt).await;
                // Refused by the rate, the call is not sent: the quota gets it back.
                if let (Err(_), Some(quota)) = (&smoothed, quota) {
                    let local = || self.ledger.refund(bucket.key());
                    match &self.store {
                        Some(store) => store.refund(&bucket, quota, local).await,
                        None => local(),
                    }
                }
                return smoothed;
            }
            (Decision::Blocked(ms), _) => {
                self.shed(Shed::EcsThrottled);
                let action = attempt.action;
                (Limit::Throttled { action }, ms)
            }
            (Decision::Spent(ms), Some(quota)) => {
                self.shed(Shed::ApiQuota);
                let (action, calls, period) = (quota.action, quota.calls, quota.period);
                (
                    Limit::Quota {
                        action,
                        calls,
                        period,
                    },
                    ms,
                )
            }
            (Decision::Spent(_), None) => return self.smooth(attempt).await,
        };
        Err(NotAdmitted {
            limit,
            retry_after: Duration::from_millis(ms),
        })
    }

    /// `--fleet-rate`, within the quota.
    async fn smooth(&self, attempt: Attempt<'_>) -> Result<(), NotAdmitted> {
        let (Some(rate), Some(store), Some(local_rates)) =
            (self.rate, &self.store, &self.local_rates)
        else {
            return Ok(());
        };
        let bucket = Bucket::upstream(attempt.principal, attempt.region);
        let local = || {
            // Buckets are few (principals × regions); forget idle ones should that ever change.
            if local_rates.len() > MAX_LOCAL_BUCKETS {
                local_rates.retain_recent();
            }
            local_rates.check_key(&bucket).map_err(local_wait)
        };
        store
            .acquire(&bucket, rate, local)
            .await
            .map_err(|retry_after| {
                self.shed(Shed::FleetRate);
                NotAdmitted {
                    limit: Limit::Rate {
                        per_second: rate.per_second(),
                    },
                    retry_after,
                }
            })
    }

    async fn close(&self, attempt: Attempt<'_>, asked: Option<Duration>) {
        let bucket = Bucket::action(attempt.principal, attempt.region, attempt.action);
        let now = quota::now_ms();
        let until = quota::blocked_until(now, asked);
        // Calls in flight when the minute closed hear it together: one line says it.
        let news = self.ledger.blocked(bucket.key(), now).is_none();
        let local = self.ledger.block(bucket.key(), until, now);
        let ms = match &self.store {
            Some(store) => store.block(&bucket, asked, || local).await,
            None => local,
        };
        if let Some(metrics) = &self.metrics {
            metrics.ecs_blocked(attempt.action, now + ms);
        }
        if news {
            tracing::warn!(
                action = attempt.action,
                region = attempt.region,
                blocked_for = ?Duration::from_millis(ms),
                fleet_wide = self.store.as_ref().is_some_and(FleetStore::is_connected),
                "ECS throttled the action for this account and region; no call of it is sent until then"
            );
        }
    }
}

impl Admission for UpstreamQuota {
    fn admit<'a>(&'a self, attempt: Attempt<'a>) -> BoxFuture<'a, Result<(), NotAdmitted>> {
        Box::pin(self.decide(attempt))
    }

    fn throttled<'a>(&'a self, attempt: Attempt<'a>, asked: Option<Duration>) -> BoxFuture<'a, ()> {
        Box::pin(self.close(attempt, asked))
    }
}

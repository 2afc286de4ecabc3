//! The fleet's quota toward ECS: every attempt, retries included, takes a slot from the bucket of
//! its credential's principal and region, because Alibaba throttles the account, not the replica.
//! The principal is the AccessKeyId of a long-lived key but the role of temporary credentials:
//! every replica's STS session (RRSA, RAM roles) has an AccessKeyId of its own, and keying by it
//! would give each replica its own bucket.

use std::time::Duration;

use futures_util::future::BoxFuture;
use governor::DefaultKeyedRateLimiter;

use super::fleet::{Bucket, FleetStore};
use super::rate::{Rate, local_wait};
use crate::aliyun::client::Admission;
use crate::aliyun::error::NotAdmitted;

/// More local buckets than this, and the full (idle) ones are dropped.
const MAX_LOCAL_BUCKETS: usize = 1024;

/// `--fleet-rate`: upstream calls per second for the whole fleet, per credential and region.
#[derive(Debug)]
pub struct UpstreamQuota {
    rate: Rate,
    store: FleetStore,
    /// This replica's own buckets, used while Redis does not answer.
    local: DefaultKeyedRateLimiter<Bucket>,
}

impl UpstreamQuota {
    /// A quota of `rate` shared through `store`.
    pub fn new(rate: Rate, store: FleetStore) -> Self {
        Self {
            rate,
            store,
            local: DefaultKeyedRateLimiter::keyed(rate.quota()),
        }
    }

    async fn take(&self, principal: &str, region: &str) -> Result<(), Duration> {
        let bucket = Bucket::upstream(principal, region);
        let local = || {
            // Buckets are few (principals × regions); forget idle ones should that ever change.
            if self.local.len() > MAX_LOCAL_BUCKETS {
                self.local.retain_recent();
            }
            self.local.check_key(&bucket).map_err(local_wait)
        };
        self.store.acquire(&bucket, self.rate, local).await
    }
}

impl Admission for UpstreamQuota {
    fn admit<'a>(
        &'a self,
        principal: &'a str,
        region: &'a str,
    ) -> BoxFuture<'a, Result<(), NotAdmitted>> {
        Box::pin(async move {
            self.take(principal, region)
                .await
                .map_err(|retry_after| NotAdmitted {
                    per_second: self.rate.per_second(),
                    retry_after,
                })
        })
    }
}

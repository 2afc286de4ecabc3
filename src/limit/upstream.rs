//! The fleet's quota toward ECS: every attempt, retries included, takes a slot from the bucket of
//! its credential and region, because Alibaba throttles the account, not the replica.

use std::time::Duration;

use futures_util::future::BoxFuture;
use governor::DefaultKeyedRateLimiter;

use super::fleet::{Bucket, FleetStore};
use super::rate::{Rate, local_wait};
use crate::aliyun::client::Admission;
use crate::aliyun::error::NotAdmitted;

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

    async fn take(&self, access_key_id: &str, region: &str) -> Result<(), Duration> {
        let bucket = Bucket::upstream(access_key_id, region);
        let local = || self.local.check_key(&bucket).map_err(local_wait);
        self.store.acquire(&bucket, self.rate, local).await
    }
}

impl Admission for UpstreamQuota {
    fn admit<'a>(
        &'a self,
        access_key_id: &'a str,
        region: &'a str,
    ) -> BoxFuture<'a, Result<(), NotAdmitted>> {
        Box::pin(async move {
            self.take(access_key_id, region)
                .await
                .map_err(|retry_after| NotAdmitted {
                    per_second: self.rate.per_second(),
                    retry_after,
                })
        })
    }
}

//! The invocations this replica follows for waiting streams: every stream waiting on the same
//! invocation reads the same DescribeInvocations answers — the first read of a new wait included —
//! so N waiters cost what one does. The first read is a caller's; after it, the invocation joins
//! its (region, owner) group, whose poller reads it in the background until the last waiter has
//! gone, or polling cannot succeed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::group::{self, GroupKey, Joined, Registry};
use super::pace::PollPace;
use super::read::{AfterFailure, Extra, Latest, Polled, READ_BUDGET, Read, after_failure};
use crate::aliyun::client::{Described, EcsClient, Failed};
use crate::aliyun::request::{DescribeInvocation, RegionId};
use crate::limit::fleet::FleetStore;
use crate::observe::metrics::{Metrics, PollOutcome};

/// The instances of one invocation that a wait of this replica has taken it upon itself to stop,
/// so that concurrent waits on it, which read the same answer, do not stop them again.
#[derive(Debug, Default)]
pub(crate) struct Claims(Mutex<HashSet<Box<str>>>);

impl Claims {
    /// Of `ids`, those nobody has claimed yet, now claimed by the caller.
    pub(crate) fn claim(&self, ids: Vec<String>) -> Vec<String> {
        let mut claimed = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        ids.into_iter()
            .filter(|id| claimed.insert(Box::from(id.as_str())))
            .collect()
    }

    /// Gives `ids` back: their stop was not sent after all.
    pub(crate) fn release(&self, ids: &[String]) {
        let mut claimed = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for id in ids {
            claimed.remove(id.as_str());
        }
    }
}

/// The poll loops of this replica; clones share them.
#[derive(Clone, Debug)]
pub(crate) struct Polls {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    client: EcsClient,
    pace: PollPace,
    metrics: Option<Metrics>,
    /// Where the fleet's replicas share the polling of each group, when there is one.
    fleet: Option<FleetStore>,
    /// This replica, as a group's lease names it.
    replica: String,
    loops: Mutex<HashMap<DescribeInvocation, Loop>>,
    /// Where each group's poller takes the invocations that join it.
    groups: Mutex<HashMap<GroupKey, mpsc::UnboundedSender<Joined>>>,
    /// When each region's loops last said they were throttled, and how many kept quiet since.
    throttle_said: Mutex<HashMap<RegionId, (Instant, u64)>>,
}

/// A waiter's hold on one invocation's loop: its reads, and the stops claimed on it. The loop
/// lives while any waiter holds one.
#[derive(Debug)]
pub(crate) struct Follow {
    /// The latest read, as the loop publishes it.
    pub polled: watch::Receiver<Latest>,
    /// The stops the waiters on this invocation have taken on.
    pub claims: Arc<Claims>,
    /// Its instances that DescribeInvocations leaves out.
    pub extra: Arc<Extra>,
}

/// One invocation's loop as its waiters find it.
#[derive(Debug, Clone)]
struct Loop {
    sender: Arc<watch::Sender<Latest>>,
    claims: Arc<Claims>,
    extra: Arc<Extra>,
}

impl Polls {
    /// Loops that read through `client` at `pace`, counted in `metrics` when given.
    pub(crate) fn new(
        client: EcsClient,
        pace: PollPace,
        metrics: Option<Metrics>,
        fleet: Option<FleetStore>,
    ) -> Self {
        Self {
            inner: Arc::new(Shared {
                client,
                pace,
                metrics,
                fleet,
                replica: uuid::Uuid::new_v4().to_string(),
                loops: Mutex::new(HashMap::new()),
                groups: Mutex::new(HashMap::new()),
                throttle_said: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The results of the loop polling `invocation`, started (reading at once) if none runs while
    /// fewer than `max_loops` do, and the stops its waiters have claimed; `None` past the limit.
    pub(crate) fn watch(
        &self,
        invocation: &DescribeInvocation,
        max_loops: usize,
    ) -> Option<Follow> {
        let mut loops = self.lock();
        if let Some(found) = loops.get(invocation) {
            return Some(Follow {
                polled: found.sender.subscribe(),
                claims: found.claims.clone(),
                extra: found.extra.clone(),
            });
        }
        if loops.len() >= max_loops {
            return None;
        }
        let (sender, receiver) = watch::channel(None);
        let sender = Arc::new(sender);
        let claims = Arc::new(Claims::default());
        let extra = Arc::new(Extra::default());
        let found = Loop {
            sender: sender.clone(),
            claims: claims.clone(),
            extra: extra.clone(),
        };
        loops.insert(invocation.clone(), found);
        tokio::spawn(
            self.clone()
                .first_read(invocation.clone(), sender, extra.clone()),
        );
        Some(Follow {
            polled: receiver,
            claims,
            extra,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DescribeInvocation, Loop>> {
        // The map is only read and written whole under the lock: a poisoned one is still sound.
        self.inner
            .loops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The caller's read of an invocation nobody followed: published to every waiter, then the
    /// invocation joins its group, unless it is gone or polling cannot succeed.
    async fn first_read(
        self,
        invocation: DescribeInvocation,
        sender: Arc<watch::Sender<Latest>>,
        extra: Arc<Extra>,
    ) {
        let deadline = Some(Instant::now() + READ_BUDGET);
        let outcome = self
            .inner
            .client
            .describe_invocation(&invocation, deadline)
            .await;
        let (polled, status) = match outcome {
            Ok(Described {
                invocation: Some(state),
                ..
            }) => {
                self.count(PollOutcome::Read);
                let status = state.status.clone();
                (Polled::Read(Read::new(state)), status)
            }
            Ok(Described {
                invocation: None, ..
            }) => {
                self.count(PollOutcome::NotFound);
                (Polled::NotFound, String::new())
            }
            Err(Failed { error, .. }) => {
                let polled = if after_failure(error.class(), 1) == AfterFailure::End {
                    Polled::Ended(error)
                } else {
                    Polled::Failed(error)
                };
                self.count(PollOutcome::Failed);
                (polled, String::new())
            }
        };
        let ended = matches!(polled, Polled::NotFound | Polled::Ended(_));
        sender.send_replace(Some(Arc::new(polled)));
        if ended {
            // Whoever waits next starts afresh.
            self.retire(&invocation, &sender, true);
            return;
        }
        self.join(Joined {
            invocation,
            sender,
            status,
            extra,
        });
    }

    /// Hands `joined` to its group's poller, starting one if none runs.
    fn join(&self, joined: Joined) {
        let key = GroupKey::of(&joined.invocation);
        let mut groups = self.lock_groups();
        let joined = match groups.get(&key) {
            Some(poller) => match poller.send(joined) {
                Ok(()) => return,
                // Its poller is gone (it can only have panicked): start another.
                Err(mpsc::error::SendError(joined)) => joined,
            },
            None => joined,
        };
        let (poller, joins) = mpsc::unbounded_channel();
        // The receiver is held just below: this send cannot fail.
        let _ = poller.send(joined);
        groups.insert(key.clone(), poller);
        tokio::spawn(group::run(self.clone(), key, joins));
    }

    fn lock_groups(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<GroupKey, mpsc::UnboundedSender<Joined>>> {
        // Only read and written whole under the lock: a poisoned one is still sound.
        self.inner
            .groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Registry for Polls {
    fn fleet(&self) -> Option<(&FleetStore, &str)> {
        let inner = &*self.inner;
        inner
            .fleet
            .as_ref()
            .map(|store| (store, inner.replica.as_str()))
    }

    /// Removes the loop of `invocation` when nobody waits on it any more (or `always`); whether
    /// it did.
    fn retire(
        &self,
        invocation: &DescribeInvocation,
        sender: &Arc<watch::Sender<Latest>>,
        always: bool,
    ) -> bool {
        // Under the lock, so that no waiter subscribes between the count and the removal.
        let mut loops = self.lock();
        if !always && sender.receiver_count() > 0 {
            return false;
        }
        if loops
            .get(invocation)
            .is_some_and(|found| Arc::ptr_eq(&found.sender, sender))
        {
            loops.remove(invocation);
        }
        true
    }

    /// Whether a loop of `region` may say it was throttled now, and how many throttled reads of
    /// its loops went unsaid since the last line: one line a second for a region's loops
    /// together, however many there are (the account is throttled, not one invocation).
    fn may_say_throttled(&self, region: &RegionId) -> Option<u64> {
        let mut said = self
            .inner
            .throttle_said
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match said.get_mut(region) {
            Some((at, unsaid)) if at.elapsed() < Duration::from_secs(1) => {
                *unsaid += 1;
                None
            }
            Some((at, unsaid)) => {
                *at = Instant::now();
                Some(std::mem::take(unsaid))
            }
            None => {
                said.insert(region.clone(), (Instant::now(), 0));
                Some(0)
            }
        }
    }

    /// Called by a group's poller with no members left: removes the group, unless an invocation
    /// joined meanwhile, which is returned to be polled.
    fn leave(&self, key: &GroupKey, joins: &mut mpsc::UnboundedReceiver<Joined>) -> Option<Joined> {
        // Under the lock, so that no invocation joins between the check and the removal.
        let mut groups = self.lock_groups();
        if let Ok(joined) = joins.try_recv() {
            return Some(joined);
        }
        groups.remove(key);
        None
    }

    /// The client reads go through.
    fn client(&self) -> &EcsClient {
        &self.inner.client
    }

    /// How often followed invocations are read.
    fn pace(&self) -> PollPace {
        self.inner.pace
    }

    /// Counts one poll by how it ended.
    fn count(&self, outcome: PollOutcome) {
        if let Some(metrics) = &self.inner.metrics {
            metrics.polled(outcome);
        }
    }
}

//! One poll loop per invocation in this replica: every stream waiting on the same invocation reads
//! the same DescribeInvocations answers, so N waiters cost one poll per interval; the loop ends
//! once the last waiter has gone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::pace::{Pace, PollPace};
use crate::aliyun::client::{Described, EcsClient, Failed};
use crate::aliyun::error::{EcsError, ErrorClass};
use crate::aliyun::invocation::InvocationState;
use crate::aliyun::request::DescribeInvocation;
use crate::observe::metrics::{Metrics, PollOutcome};

/// The longest one poll (its retries included) may take.
const POLL_BUDGET: Duration = Duration::from_secs(10);
/// The longest a throttled loop waits before polling again, whatever ECS or the quota says.
const MAX_SLOW_DOWN: Duration = Duration::from_secs(60);

/// What the latest poll of an invocation found.
#[derive(Debug)]
pub(crate) enum Polled {
    /// The invocation and its instances.
    Read(InvocationState),
    /// ECS lists no such invocation (any more).
    NotFound,
    /// ECS refused the read in a way polling again will not change (arguments, permissions).
    Refused(EcsError),
}

/// The latest poll's result; `None` until the first poll is answered.
pub(crate) type Latest = Option<Arc<Polled>>;

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
    loops: Mutex<HashMap<DescribeInvocation, Arc<watch::Sender<Latest>>>>,
    started: AtomicU64,
}

impl Polls {
    /// Loops that read through `client` at `pace`, counted in `metrics` when given.
    pub(crate) fn new(client: EcsClient, pace: PollPace, metrics: Option<Metrics>) -> Self {
        Self {
            inner: Arc::new(Shared {
                client,
                pace,
                metrics,
                loops: Mutex::new(HashMap::new()),
                started: AtomicU64::new(0),
            }),
        }
    }

    /// The results of the loop polling `invocation`, started if none is running.
    pub(crate) fn watch(&self, invocation: &DescribeInvocation) -> watch::Receiver<Latest> {
        let mut loops = self.lock();
        if let Some(sender) = loops.get(invocation) {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(None);
        let sender = Arc::new(sender);
        loops.insert(invocation.clone(), sender.clone());
        self.inner.started.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(self.clone().run(invocation.clone(), sender));
        receiver
    }

    /// How many poll loops have been started since the gateway started.
    pub(crate) fn loops_started(&self) -> u64 {
        self.inner.started.load(Ordering::Relaxed)
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<DescribeInvocation, Arc<watch::Sender<Latest>>>> {
        // The map is only read and written whole under the lock: a poisoned one is still sound.
        self.inner
            .loops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Removes the loop of `invocation` when nobody waits on it any more; whether it did.
    fn retire(&self, invocation: &DescribeInvocation, sender: &Arc<watch::Sender<Latest>>) -> bool {
        // Under the lock, so that no waiter subscribes between the count and the removal.
        let mut loops = self.lock();
        if sender.receiver_count() > 0 {
            return false;
        }
        if loops
            .get(invocation)
            .is_some_and(|s| Arc::ptr_eq(s, sender))
        {
            loops.remove(invocation);
        }
        true
    }

    async fn run(self, invocation: DescribeInvocation, sender: Arc<watch::Sender<Latest>>) {
        let mut pace = Pace::new(self.inner.pace);
        let mut wait = pace.next(&mut rand::rng());
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = sender.closed() => {}
            }
            if self.retire(&invocation, &sender) {
                return;
            }
            let outcome = self
                .inner
                .client
                .describe_invocation(&invocation, Some(Instant::now() + POLL_BUDGET))
                .await;
            wait = pace.next(&mut rand::rng());
            let (polled, counted) = match outcome {
                Ok(Described {
                    invocation: Some(state),
                    ..
                }) => (Polled::Read(state), PollOutcome::Read),
                Ok(Described {
                    invocation: None, ..
                }) => (Polled::NotFound, PollOutcome::NotFound),
                Err(Failed { error, .. }) => match error.class() {
                    ErrorClass::InvalidArgument
                    | ErrorClass::PermissionDenied
                    | ErrorClass::NotFound
                    | ErrorClass::RequestBuiltWrong => {
                        (Polled::Refused(error), PollOutcome::Failed)
                    }
                    ErrorClass::Throttled | ErrorClass::FleetQuota => {
                        self.count(PollOutcome::Throttled);
                        wait = wait
                            .max(slow_down(&error).unwrap_or(wait))
                            .min(MAX_SLOW_DOWN);
                        tracing::info!(
                            invoke_id = invocation.invoke_id.as_str(),
                            wait_ms = wait.as_millis() as u64,
                            "a poll for waiting streams was throttled; polling again later"
                        );
                        continue;
                    }
                    class => {
                        self.count(PollOutcome::Failed);
                        tracing::warn!(
                            invoke_id = invocation.invoke_id.as_str(),
                            ?class,
                            %error,
                            "a poll for waiting streams failed; polling again later"
                        );
                        continue;
                    }
                },
            };
            self.count(counted);
            sender.send_replace(Some(Arc::new(polled)));
        }
    }

    fn count(&self, outcome: PollOutcome) {
        if let Some(metrics) = &self.inner.metrics {
            metrics.polled(outcome);
        }
    }
}

/// How long ECS or the fleet's quota asked the caller to wait, when it said.
fn slow_down(error: &EcsError) -> Option<Duration> {
    match error {
        EcsError::Api(api) => api.retry_after,
        EcsError::NotAdmitted(refused) => Some(refused.retry_after),
        _ => None,
    }
}

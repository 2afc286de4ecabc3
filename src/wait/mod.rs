//! StopInvocationAndWait, all of it: [`Waits`] admits a wait (bounded in number, per caller too)
//! and starts it; [`run`] reads the invocation through the shared poll loops, stops what can still
//! be stopped, and follows the reads until every target is final or an exit comes; the
//! [`view::View`] says what changed; the [`outbox`] hands it to the stream without ever waiting
//! for the reader. It knows no gRPC: the API maps its steps and ends to messages and statuses.

mod group;
pub(crate) mod outbox;
pub(crate) mod outcome;
pub(crate) mod pace;
mod plan;
pub(crate) mod polls;
pub(crate) mod read;
mod run;
pub(crate) mod view;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::aliyun::client::EcsClient;
use crate::aliyun::request::{DescribeInvocation, Owner, RegionId, StopInvocation};
use crate::auth::{Access, Caller};
use crate::observe::metrics::Metrics;
use outbox::Reader;
use outcome::{End, Tally};
use pace::PollPace;
use polls::{Follow, Polls};

/// The most instances a wait may target: a FINAL message of this many instances, each with every
/// field at the most the gateway keeps, and its stop results, stays under the 4 MiB that gRPC
/// clients decode by default (a test in `api::wait` builds that message).
pub(crate) const MAX_WAIT_INSTANCES_LIMIT: usize = 2000;

/// How waits are bounded and paced.
#[derive(Debug, Clone)]
pub struct WaitSettings {
    /// The most instances one wait may target (at most [`MAX_WAIT_INSTANCES_LIMIT`]).
    pub max_instances: usize,
    /// The longest a wait lasts, whatever its `grpc-timeout`.
    pub max_wait: Duration,
    /// How often invocations are polled.
    pub pace: PollPace,
    /// Stop calls of one wait in flight at once.
    pub stop_concurrency: usize,
    /// Waits held at once by this replica; more are refused.
    pub max_concurrent: usize,
    /// Waits held at once by one caller.
    pub max_per_caller: usize,
    /// Distinct invocations polled at once (each holds its latest read); a wait on one more is
    /// refused.
    pub max_invocations: usize,
}

impl Default for WaitSettings {
    fn default() -> Self {
        Self {
            max_instances: 1000,
            max_wait: Duration::from_secs(600),
            pace: PollPace::default(),
            stop_concurrency: 4,
            max_concurrent: 1000,
            max_per_caller: 250,
            max_invocations: 100,
        }
    }
}

/// What a wait is asked to do.
#[derive(Debug)]
pub(crate) struct Wait {
    /// Who waits: the stops are taken from its rate.
    pub caller: Caller,
    /// The invocation, the asked instances (every one when empty) and the owner fields.
    pub stop: StopInvocation,
    /// When the wait ends, whatever else happens.
    pub deadline: Instant,
}

/// Why a wait was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// The replica holds its most waits.
    Replica(usize),
    /// The caller holds its most waits.
    Caller(usize),
    /// The replica polls its most distinct invocations, and this is another.
    Invocations(usize),
    /// The caller waits on this invocation with its most distinct owner fields, and these are
    /// others: each set is polled on its own, so more would multiply the reads of one invocation.
    OwnerVariants(usize),
}

/// The most distinct owner-field sets one caller may wait on one invocation with at once.
pub(crate) const MAX_OWNER_VARIANTS: usize = 4;

/// One caller's waits: how many, and on each invocation, how many with each owner-field set.
#[derive(Debug, Default)]
struct Held {
    waits: usize,
    variants: HashMap<(RegionId, String), HashMap<Owner, usize>>,
}

/// The waits of this replica; clones share them.
#[derive(Clone, Debug)]
pub(crate) struct Waits {
    inner: Arc<Shared>,
}

/// What every wait of the replica runs with.
#[derive(Debug)]
pub(crate) struct Shared {
    client: EcsClient,
    access: Access,
    polls: Polls,
    settings: WaitSettings,
    metrics: Option<Metrics>,
    draining: watch::Sender<bool>,
    slots: Arc<Semaphore>,
    per_caller: Mutex<HashMap<String, Held>>,
}

/// An admitted wait: its place, and its hold on the invocation's poll loop.
#[derive(Debug)]
pub(crate) struct Admitted {
    slot: Slot,
    follow: Follow,
}

/// One admitted wait's place: freed when its stream and its task are both gone.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    caller: String,
    invocation: DescribeInvocation,
    waits: Arc<Shared>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self
            .waits
            .per_caller
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(mine) = held.get_mut(&self.caller) else {
            return;
        };
        mine.waits -= 1;
        let key = invocation_key(&self.invocation);
        if let Some(owners) = mine.variants.get_mut(&key) {
            if let Some(n) = owners.get_mut(&self.invocation.owner) {
                *n -= 1;
                if *n == 0 {
                    owners.remove(&self.invocation.owner);
                }
            }
            if owners.is_empty() {
                mine.variants.remove(&key);
            }
        }
        if mine.waits == 0 {
            held.remove(&self.caller);
        }
    }
}

/// An invocation without its owner fields.
fn invocation_key(invocation: &DescribeInvocation) -> (RegionId, String) {
    (invocation.region_id.clone(), invocation.invoke_id.clone())
}

impl Waits {
    /// Waits that stop and read through `client`, taking stops from `access`'s rates.
    pub(crate) fn new(
        client: EcsClient,
        access: Access,
        settings: WaitSettings,
        metrics: Option<Metrics>,
    ) -> Self {
        let polls = Polls::new(
            client.clone(),
            settings.pace,
            metrics.clone(),
            access.fleet.clone(),
        );
        Self {
            inner: Arc::new(Shared {
                client,
                access,
                polls,
                slots: Arc::new(Semaphore::new(settings.max_concurrent)),
                settings,
                metrics,
                draining: watch::channel(false).0,
                per_caller: Mutex::default(),
            }),
        }
    }

    /// How waits are bounded.
    pub(crate) fn settings(&self) -> &WaitSettings {
        &self.inner.settings
    }

    /// Ends every wait with `Draining` (once its stop calls in flight are answered), and refuses
    /// new ones.
    pub(crate) fn drain(&self) {
        self.inner.draining.send_replace(true);
    }

    /// Whether the replica is shutting down.
    pub(crate) fn draining(&self) -> bool {
        *self.inner.draining.borrow()
    }

    /// A place for one more wait of `caller` on `invocation`, and its hold on the invocation's
    /// poll loop (which reads at once when new), or why there is none; nothing waits for one.
    pub(crate) fn admit(
        &self,
        caller: &Caller,
        invocation: &DescribeInvocation,
    ) -> Result<Admitted, Busy> {
        let settings = &self.inner.settings;
        let mut held = self
            .inner
            .per_caller
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mine = held.get(caller.name());
        if mine.is_some_and(|m| m.waits >= settings.max_per_caller) {
            return Err(Busy::Caller(settings.max_per_caller));
        }
        let owners = mine.and_then(|m| m.variants.get(&invocation_key(invocation)));
        if owners
            .is_some_and(|o| !o.contains_key(&invocation.owner) && o.len() >= MAX_OWNER_VARIANTS)
        {
            return Err(Busy::OwnerVariants(MAX_OWNER_VARIANTS));
        }
        let permit = self
            .inner
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Busy::Replica(settings.max_concurrent))?;
        let follow = self
            .inner
            .polls
            .watch(invocation, settings.max_invocations)
            .ok_or(Busy::Invocations(settings.max_invocations))?;
        let mine = held.entry(caller.name().to_owned()).or_default();
        mine.waits += 1;
        *mine
            .variants
            .entry(invocation_key(invocation))
            .or_default()
            .entry(invocation.owner.clone())
            .or_default() += 1;
        let slot = Slot {
            _permit: permit,
            caller: caller.name().to_owned(),
            invocation: invocation.clone(),
            waits: self.inner.clone(),
        };
        Ok(Admitted { slot, follow })
    }

    /// Starts `wait` in `slot` on its own task, in the current span; `on_end` hears how it ended
    /// before the stream does. The stream's side.
    pub(crate) fn start(
        &self,
        admitted: Admitted,
        wait: Wait,
        on_end: impl FnOnce(&Tally, &End) + Send + 'static,
    ) -> Reader {
        let Admitted { slot, follow } = admitted;
        let (writer, reader) = outbox::outbox(slot);
        let shared = self.inner.clone();
        tokio::spawn(
            async move {
                let _waiting = shared.metrics.as_ref().map(Metrics::wait_started);
                let mut tally = Tally::default();
                let end = AssertUnwindSafe(run::run(&shared, &wait, follow, &writer, &mut tally))
                    .catch_unwind()
                    .await
                    .unwrap_or(End::Crashed);
                on_end(&tally, &end);
                writer.end(end);
            }
            .instrument(tracing::Span::current()),
        );
        reader
    }
}

//! StopInvocationAndWait: read the invocation, stop the targeted instances that can still be
//! stopped (in ECS calls of at most 50, a few at a time), then follow the shared poll loop and
//! stream every change until each targeted instance is final, the deadline comes, the caller goes
//! away, or the replica shuts down.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tonic::Status;
use tonic_types::StatusExt as _;

use crate::aliyun::client::{EcsClient, Failed, Stopped};
use crate::aliyun::invocation::{InvocationState, is_final, stoppable};
use crate::aliyun::request::{DescribeInvocation, MAX_INSTANCE_IDS, StopInvocation};
use crate::api::invocation;
use crate::api::status;
use crate::api::validate::{MAX_LISTED, Violation, Violations};
use crate::auth::policy::{Denial, Permission};
use crate::auth::{Access, Caller};
use crate::pb::{StopError, StopInvocationAndWaitResponse, StopResult};
use crate::wait::polls::{Polled, Polls};

/// How waits are bounded and paced.
#[derive(Debug, Clone)]
pub struct WaitSettings {
    /// The most instances one wait may target.
    pub max_instances: usize,
    /// The longest a wait lasts, whatever its `grpc-timeout`.
    pub max_wait: Duration,
    /// How often invocations are polled.
    pub pace: crate::wait::pace::PollPace,
    /// Stop calls of one wait in flight at once.
    pub stop_concurrency: usize,
}

impl Default for WaitSettings {
    fn default() -> Self {
        Self {
            max_instances: 1000,
            max_wait: Duration::from_secs(600),
            pace: crate::wait::pace::PollPace::default(),
            stop_concurrency: 4,
        }
    }
}

/// What one wait works with.
pub(crate) struct Wait<'a> {
    /// The ECS client the stops go through.
    pub client: &'a EcsClient,
    /// The policy and rates the stops are taken from.
    pub access: &'a Access,
    /// The shared poll loops.
    pub polls: &'a Polls,
    /// Turns true when the replica starts shutting down.
    pub draining: watch::Receiver<bool>,
    /// Stop calls in flight at once.
    pub stop_concurrency: usize,
    /// Who waits.
    pub caller: &'a Caller,
    /// Where the messages go.
    pub sink: &'a mpsc::Sender<Result<StopInvocationAndWaitResponse, Status>>,
}

/// How a wait went: the targeted and final counts, and the stops sent.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    /// Instances targeted.
    pub targeted: usize,
    /// Of them, final at the end.
    pub ended: usize,
    /// Stop calls sent (chunks).
    pub stops: usize,
}

impl Wait<'_> {
    /// Runs the wait for `stop` until `deadline`; `Ok` once every targeted instance is final.
    pub(crate) async fn run(
        self,
        stop: &StopInvocation,
        deadline: Instant,
        tally: &mut Tally,
    ) -> Result<(), Status> {
        let read = DescribeInvocation {
            region_id: stop.region_id.clone(),
            invoke_id: stop.invoke_id.clone(),
            owner: stop.owner.clone(),
        };
        let first = self
            .client
            .describe_invocation(&read, Some(deadline))
            .await
            .map_err(|failed| status::from_ecs_error(&failed.error))?;
        let Some(state) = first.invocation else {
            return Err(status::invocation_not_found(
                &stop.invoke_id,
                &stop.region_id,
            ));
        };
        let targets = if stop.instance_ids.is_empty() {
            state
                .instances
                .iter()
                .map(|i| i.instance_id.clone())
                .collect()
        } else {
            outside(&stop.instance_ids, &state)?;
            stop.instance_ids.clone()
        };
        let mut view = View::new(targets);
        view.update(&state);
        tally.targeted = view.targets.len();
        // Only what a stop can still change: a re-issued wait stops nothing twice.
        let to_stop: Vec<String> = view
            .targets
            .iter()
            .zip(&view.statuses)
            .filter(|(_, status)| stoppable(status))
            .map(|(id, _)| id.clone())
            .collect();
        let chunks: Vec<StopInvocation> = to_stop
            .chunks(MAX_INSTANCE_IDS)
            .map(|ids| StopInvocation {
                instance_ids: ids.to_vec(),
                ..stop.clone()
            })
            .collect();
        tally.stops = chunks.len();
        let mut sent_any = false;
        {
            // All made at once, at most `stop_concurrency` sending at a time.
            let limit = Semaphore::new(self.stop_concurrency.max(1));
            let mut answers = FuturesUnordered::new();
            for chunk in &chunks {
                answers.push(self.stop_limited(&limit, chunk, deadline));
            }
            while let Some(result) = answers.next().await {
                self.send(view.message(vec![result])).await?;
                sent_any = true;
            }
        }
        tally.ended = view.ended();
        // Nothing to stop (a re-issued wait, or an invocation that has ended): one message.
        if !sent_any {
            self.send(view.message(Vec::new())).await?;
        }
        if view.all_final() {
            return Ok(());
        }
        let mut polled = self.polls.watch(&read);
        let mut draining = self.draining.clone();
        loop {
            tokio::select! {
                changed = polled.changed() => {
                    if changed.is_err() {
                        return Err(Status::unavailable("the poll loop of this invocation ended"));
                    }
                    let latest = polled.borrow_and_update().clone();
                    match latest.as_deref() {
                        Some(Polled::Read(state)) => {
                            if view.update(state) {
                                tally.ended = view.ended();
                                self.send(view.message(Vec::new())).await?;
                            }
                            if view.all_final() {
                                return Ok(());
                            }
                        }
                        Some(Polled::NotFound) => {
                            return Err(status::invocation_not_found(&stop.invoke_id, &stop.region_id));
                        }
                        Some(Polled::Refused(error)) => return Err(status::from_ecs_error(error)),
                        None => {}
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    return Err(status::wait_deadline(view.ended(), view.targets.len()));
                }
                // The guard `wait_for` returns is not Send: dropped inside.
                () = async { drop(draining.wait_for(|draining| *draining).await) } => {
                    return Err(status::wait_interrupted());
                }
                () = self.sink.closed() => return Err(Status::cancelled("the caller went away")),
            }
        }
    }

    /// Sends one message; an error when the caller has gone.
    async fn send(&self, message: StopInvocationAndWaitResponse) -> Result<(), Status> {
        self.sink
            .send(Ok(message))
            .await
            .map_err(|_| Status::cancelled("the caller went away"))
    }

    async fn stop_limited(
        &self,
        limit: &Semaphore,
        chunk: &StopInvocation,
        deadline: Instant,
    ) -> StopResult {
        // Never closed, so acquiring cannot fail.
        let _slot = limit.acquire().await.ok();
        self.stop_chunk(chunk, deadline).await
    }

    /// One stop call of at most 50 instances: admitted by the caller's rate (waiting for it,
    /// within the deadline), then sent, retried and limited like a unary stop.
    async fn stop_chunk(&self, chunk: &StopInvocation, deadline: Instant) -> StopResult {
        let admitted = loop {
            match self
                .access
                .authorize(self.caller, &chunk.region_id, Permission::Stop)
                .await
            {
                Err(Denial::Rate { retry_after, .. })
                    if Instant::now() + retry_after < deadline =>
                {
                    tokio::time::sleep(retry_after).await;
                }
                other => break other,
            }
        };
        let outcome = match admitted {
            Err(denial) => Err(status::denied(self.caller, &chunk.region_id, &denial)),
            Ok(()) => match self.client.stop_invocation(chunk, Some(deadline)).await {
                Ok(Stopped { request_id, .. }) => Ok(request_id),
                Err(Failed { error, .. }) => Err(status::from_ecs_error(&error)),
            },
        };
        match outcome {
            Ok(request_id) => StopResult {
                instance_ids: chunk.instance_ids.clone(),
                request_id,
                error: None,
            },
            Err(status) => StopResult {
                instance_ids: chunk.instance_ids.clone(),
                request_id: status
                    .get_details_request_info()
                    .map(|info| info.request_id)
                    .unwrap_or_default(),
                error: Some(StopError {
                    code: status.code() as i32,
                    message: status.message().to_owned(),
                    reason: status
                        .get_details_error_info()
                        .map(|info| info.reason)
                        .unwrap_or_default(),
                    details: status.details().to_vec(),
                }),
            },
        }
    }
}

/// Refuses instance IDs that are not instances of the invocation, naming each (the first ten).
fn outside(asked: &[String], state: &InvocationState) -> Result<(), Status> {
    let known: HashSet<&str> = state
        .instances
        .iter()
        .map(|i| i.instance_id.as_str())
        .collect();
    let mut listed = Vec::new();
    let mut more = 0;
    for (i, id) in asked.iter().enumerate() {
        if known.contains(id.as_str()) {
            continue;
        }
        if listed.len() < MAX_LISTED {
            listed.push(Violation {
                field: format!("instance_ids[{i}]"),
                description: format!(
                    "{id:?} is not an instance of invocation {:?}",
                    state.invoke_id
                ),
            });
        } else {
            more += 1;
        }
    }
    if listed.is_empty() {
        Ok(())
    } else {
        Err(status::from_violations(&Violations { listed, more }))
    }
}

/// The targeted instances' latest statuses.
struct View {
    targets: Vec<String>,
    index: HashMap<String, usize>,
    statuses: Vec<String>,
    latest: Option<InvocationState>,
}

impl View {
    fn new(targets: Vec<String>) -> Self {
        let index = targets
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        let statuses = vec![String::new(); targets.len()];
        Self {
            targets,
            index,
            statuses,
            latest: None,
        }
    }

    /// Takes `state` in; whether a targeted instance's status (or the aggregate) changed.
    fn update(&mut self, state: &InvocationState) -> bool {
        let mut changed = self
            .latest
            .as_ref()
            .is_none_or(|latest| latest.status != state.status);
        for instance in &state.instances {
            if let Some(&i) = self.index.get(&instance.instance_id)
                && self.statuses[i] != instance.status
            {
                self.statuses[i].clone_from(&instance.status);
                changed = true;
            }
        }
        self.latest = Some(state.clone());
        changed
    }

    fn ended(&self) -> usize {
        self.statuses.iter().filter(|s| is_final(s)).count()
    }

    fn all_final(&self) -> bool {
        self.ended() == self.targets.len()
    }

    /// A message with `stops` and every targeted instance, in the order they were asked for.
    fn message(&self, stops: Vec<StopResult>) -> StopInvocationAndWaitResponse {
        let invocation = self.latest.as_ref().map(|state| {
            let by_id: HashMap<&str, &crate::aliyun::invocation::InstanceState> = state
                .instances
                .iter()
                .map(|i| (i.instance_id.as_str(), i))
                .collect();
            let instances = self
                .targets
                .iter()
                .map(|id| match by_id.get(id.as_str()) {
                    Some(instance) => invocation::instance(instance),
                    None => crate::pb::InstanceStatus {
                        instance_id: id.clone(),
                        ..Default::default()
                    },
                })
                .collect();
            invocation::invocation(state, instances)
        });
        StopInvocationAndWaitResponse {
            stops,
            invocation,
            final_instances: u32::try_from(self.ended()).unwrap_or(u32::MAX),
            targeted_instances: u32::try_from(self.targets.len()).unwrap_or(u32::MAX),
        }
    }
}

//! One wait, in named phases: `Reading` (the first read, through the shared poll loop),
//! `Stopping` (stop calls of at most 50, a few at a time, while reads keep coming in) and
//! `Following` (reads only), with its exits — the deadline, the drain, the caller going — heard in
//! every phase. Nothing here waits for the reader.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::Wait;
use super::outbox::Writer;
use super::outcome::{End, StopAnswer, StopFailure, Tally};
use super::polls::{Claims, Follow};
use super::read::{Extra, Latest, Polled, Read, complete, slow_down};
use super::view::View;
use crate::aliyun::client::{Failed, Stopped};
use crate::aliyun::error::{EcsError, ErrorClass};
use crate::aliyun::request::{DescribeInvocation, MAX_INSTANCE_IDS, StopInvocation};
use crate::aliyun::retry::Trail;
use crate::auth::policy::{Denial, Permission};

/// The wait for a throttled stop call when ECS named none.
const THROTTLED_STOP_DELAY: Duration = Duration::from_secs(1);
/// The longest a throttled stop call waits before it is sent again.
const MAX_STOP_DELAY: Duration = Duration::from_secs(60);

/// What ends a wait from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Deadline,
    Draining,
    Gone,
}

/// Where a wait is once it has read the invocation.
enum Phase {
    /// Stop calls are out; reads are followed meanwhile.
    Stopping,
    /// Every stop call is answered; reads only.
    Following,
}

/// The exits every phase hears.
struct Exits<'a> {
    deadline: Instant,
    draining: watch::Receiver<bool>,
    writer: &'a Writer,
}

impl Exits<'_> {
    /// The first exit to come.
    async fn next(&mut self) -> Exit {
        tokio::select! {
            () = tokio::time::sleep_until(self.deadline) => Exit::Deadline,
            // The guard `wait_for` returns is not Send: dropped inside. A closed channel is no drain.
            () = async {
                if self.draining.wait_for(|d| *d).await.is_err() {
                    std::future::pending::<()>().await;
                }
            } => Exit::Draining,
            () = self.writer.gone() => Exit::Gone,
        }
    }
}

/// How one stop call went.
enum Chunk {
    /// Answered (or refused for good); whether it reached ECS.
    Answered(StopAnswer, bool),
    /// Not sent: the wait was halted first.
    NotSent,
}

/// Runs `wait` to its end on the loop it `follow`s, counting into `tally` as it goes.
pub(super) async fn run(
    shared: &Shared,
    wait: &Wait,
    follow: Follow,
    writer: &Writer,
    tally: &mut Tally,
) -> End {
    let mut exits = Exits {
        deadline: wait.deadline,
        draining: shared.draining.subscribe(),
        writer,
    };
    let Follow {
        mut polled,
        claims,
        extra,
    } = follow;
    let mut last_poll_error = None;
    let deadline_end = |tally: &Tally, last: &mut Option<String>| End::Deadline {
        ended: tally.ended,
        targeted: tally.targeted,
        last_poll_error: last.take(),
    };
    let exit_end = |exit: Exit, tally: &Tally, last: &mut Option<String>| match exit {
        Exit::Deadline => deadline_end(tally, last),
        Exit::Draining => End::Draining,
        Exit::Gone => End::Gone,
    };

    // Reading: the loop's latest read when there is one, else its first.
    let first = tokio::select! {
        first = first_read(&mut polled) => first,
        exit = exits.next() => return exit_end(exit, tally, &mut last_poll_error),
    };
    let first = match first.as_deref() {
        None => return End::Crashed,
        Some(Polled::Read(first)) => first.clone(),
        Some(Polled::NotFound) => return End::NotFound,
        Some(Polled::Failed(error) | Polled::Ended(error)) => {
            return End::ReadFailed(error.clone());
        }
    };
    let first = tokio::select! {
        first = with_left_out(shared, wait, first, &extra) => match first {
            Ok(first) => first,
            Err(error) => return End::ReadFailed(error),
        },
        exit = exits.next() => return exit_end(exit, tally, &mut last_poll_error),
    };
    let view = match View::resolve(
        &first,
        &wait.stop.instance_ids,
        shared.settings.max_instances,
    ) {
        Ok(view) => view,
        Err(unresolved) => return End::Unresolved(unresolved),
    };
    tally.targeted = view.targeted();
    tally.ended = view.ended();
    let mut all_final = view.all_final();
    // What another wait of this replica is stopping already is not stopped twice.
    let to_stop = claims.claim(view.stoppable());
    writer.resolved(view);

    // Stopping: every call made at once, at most `stop_concurrency` sending at a time.
    let halt = CancellationToken::new();
    let limit = Semaphore::new(shared.settings.stop_concurrency.max(1));
    let mut answers: FuturesUnordered<_> = to_stop
        .chunks(MAX_INSTANCE_IDS)
        .map(|ids| {
            let chunk = StopInvocation {
                instance_ids: ids.to_vec(),
                ..wait.stop.clone()
            };
            stop(shared, wait, chunk, &limit, &halt, &claims)
        })
        .collect();
    let mut phase = if answers.is_empty() {
        Phase::Following
    } else {
        Phase::Stopping
    };
    let mut failure: Option<StopFailure> = None;
    let mut halted: Option<Exit> = None;
    loop {
        if let Phase::Following = phase {
            if let Some(exit) = halted {
                return exit_end(exit, tally, &mut last_poll_error);
            }
            if all_final {
                return End::AllFinal;
            }
            if let Some(failure) = failure.take() {
                return End::StopFailed(failure);
            }
        }
        tokio::select! {
            answer = answers.next(), if matches!(phase, Phase::Stopping) => match answer {
                None => phase = Phase::Following,
                Some(Chunk::NotSent) => {}
                Some(Chunk::Answered(answer, sent)) => {
                    tally.stops_sent += usize::from(sent);
                    if let Err(why) = &answer.outcome {
                        tally.stops_failed += 1;
                        failure.get_or_insert_with(|| why.clone());
                    }
                    writer.stopped(answer);
                }
            },
            changed = polled.changed() => {
                if changed.is_err() {
                    // The loop ends only with a last word, which was read before this.
                    return End::Crashed;
                }
                let latest = polled.borrow_and_update().clone();
                match latest.as_deref() {
                    Some(Polled::Read(read)) => {
                        last_poll_error = None;
                        let counts = writer.update(|view| {
                            let changed = view.update(read.state.clone());
                            (changed, (view.ended(), view.all_final()))
                        });
                        if let Some((ended, done)) = counts {
                            tally.ended = ended;
                            all_final = done;
                        }
                    }
                    Some(Polled::NotFound) => return End::NotFound,
                    Some(Polled::Ended(error)) => return End::PollFailed(error.clone()),
                    Some(Polled::Failed(error)) => last_poll_error = Some(error.to_string()),
                    None => {}
                }
            }
            exit = exits.next(), if halted.is_none() => match (exit, &phase) {
                (Exit::Deadline, _) | (_, Phase::Following) => {
                    return exit_end(exit, tally, &mut last_poll_error);
                }
                // Drain or caller gone while stopping: the calls out are answered, none new go.
                _ => {
                    halt.cancel();
                    halted = Some(exit);
                }
            },
            () = tokio::time::sleep_until(wait.deadline), if halted.is_some() => {
                return deadline_end(tally, &mut last_poll_error);
            }
        }
    }
}

/// The latest result of the loop, or its first once it comes; `None` if the loop ended first.
/// `first`, with the asked instances it does not list read through DescribeInvocationResults
/// (and remembered, so that every later read of the invocation has them): whether
/// DescribeInvocations lists every instance of a large invocation is documented nowhere. Those
/// that are not found there either are not the invocation's.
async fn with_left_out(
    shared: &Shared,
    wait: &Wait,
    first: Read,
    extra: &Extra,
) -> Result<Read, EcsError> {
    let asked = &wait.stop.instance_ids;
    let listed: HashSet<&str> = first.ids.iter().map(|id| &**id).collect();
    let left_out: HashSet<Box<str>> = asked
        .iter()
        .filter(|id| !listed.contains(id.as_str()))
        .map(|id| Box::from(id.as_str()))
        .collect();
    if left_out.is_empty() {
        return Ok(first);
    }
    let invocation = DescribeInvocation {
        region_id: wait.stop.region_id.clone(),
        invoke_id: wait.stop.invoke_id.clone(),
        owner: wait.stop.owner.clone(),
    };
    let state = first.state.as_ref().clone();
    let (state, found) = complete(&shared.client, &invocation, state, &left_out, false).await?;
    if found.is_empty() {
        return Ok(first);
    }
    extra.add(found);
    Ok(Read::new(state))
}

async fn first_read(polled: &mut watch::Receiver<Latest>) -> Latest {
    match polled.wait_for(Option::is_some).await {
        Ok(latest) => latest.clone(),
        Err(_) => None,
    }
}

/// One stop call of at most 50 instances: taken from the caller's rate (waiting for it), sent,
/// retried like a unary stop, and when ECS throttles it, sent again once ECS says — all within
/// the deadline, and never after `halt`. Not sent, or refused for good, its instances are given
/// back to `claims`, for another wait to try.
async fn stop(
    shared: &Shared,
    wait: &Wait,
    chunk: StopInvocation,
    limit: &Semaphore,
    halt: &CancellationToken,
    claims: &Claims,
) -> Chunk {
    let chunk_ids = chunk.instance_ids.clone();
    let outcome = send_stop(shared, wait, chunk, limit, halt).await;
    if let Chunk::NotSent
    | Chunk::Answered(
        StopAnswer {
            outcome: Err(_), ..
        },
        _,
    ) = &outcome
    {
        claims.release(&chunk_ids);
    }
    outcome
}

async fn send_stop(
    shared: &Shared,
    wait: &Wait,
    chunk: StopInvocation,
    limit: &Semaphore,
    halt: &CancellationToken,
) -> Chunk {
    let _slot = tokio::select! {
        slot = limit.acquire() => slot,
        () = halt.cancelled() => return Chunk::NotSent,
    };
    let mut sent = false;
    let answered = |outcome, sent| {
        Chunk::Answered(
            StopAnswer {
                instance_ids: chunk.instance_ids.clone(),
                outcome,
            },
            sent,
        )
    };
    loop {
        if halt.is_cancelled() {
            return Chunk::NotSent;
        }
        let later = match shared
            .access
            .authorize(&wait.caller, &chunk.region_id, Permission::Stop)
            .await
        {
            Err(Denial::Rate { retry_after, .. }) => retry_after,
            Err(denial) => return answered(Err(StopFailure::Denied(denial)), sent),
            Ok(()) => match shared
                .client
                .stop_invocation(&chunk, Some(wait.deadline))
                .await
            {
                Ok(Stopped { request_id, .. }) => return answered(Ok(request_id), true),
                Err(Failed { error, trail }) => {
                    sent |= reached_ecs(&trail);
                    match throttled(&error) {
                        Some(later) => later,
                        None => return answered(Err(StopFailure::Ecs(error)), sent),
                    }
                }
            },
        };
        if Instant::now() + later >= wait.deadline {
            // The deadline comes first: the wait ends with it, and this call is not sent again.
            return Chunk::NotSent;
        }
        tokio::select! {
            () = tokio::time::sleep(later) => {}
            () = halt.cancelled() => return Chunk::NotSent,
        }
    }
}

/// How long to hold a throttled stop call before sending it again; `None` when not throttled.
fn throttled(error: &EcsError) -> Option<Duration> {
    matches!(
        error.class(),
        ErrorClass::Throttled | ErrorClass::FleetQuota
    )
    .then(|| {
        slow_down(error)
            .unwrap_or(THROTTLED_STOP_DELAY)
            .min(MAX_STOP_DELAY)
    })
}

/// Whether any attempt of `trail` was handed to the transport.
fn reached_ecs(trail: &Trail) -> bool {
    trail
        .attempts
        .iter()
        .any(|a| a.failure.is_none_or(ErrorClass::sent_upstream))
}

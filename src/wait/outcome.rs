//! What a wait tells its caller besides statuses: each stop call's answer, how the wait ended,
//! and the counts its audit line carries.

use crate::aliyun::error::EcsError;
use crate::auth::policy::Denial;
use crate::wait::view::Unresolved;

/// Why a stop call of a wait failed for good.
#[derive(Debug, Clone)]
pub(crate) enum StopFailure {
    /// ECS, or the way to it, refused; as a unary stop would have been.
    Ecs(EcsError),
    /// The caller's policy refused (not its rate: a wait waits for that).
    Denied(Denial),
}

/// One stop call's answer.
#[derive(Debug, Clone)]
pub(crate) struct StopAnswer {
    /// The instances the call named (at most 50).
    pub instance_ids: Vec<String>,
    /// ECS's RequestId, or why the call failed for good.
    pub outcome: Result<String, StopFailure>,
}

/// How a wait ended.
#[derive(Debug)]
pub(crate) enum End {
    /// Every target reached an end state.
    AllFinal,
    /// ECS lists no such invocation (any more).
    NotFound,
    /// The first read failed.
    ReadFailed(EcsError),
    /// The asked instances cannot be waited on.
    Unresolved(Unresolved),
    /// A stop call failed for good; the others were answered.
    StopFailed(StopFailure),
    /// Polling cannot succeed (the gateway's credential, clock or request is wrong, or ECS refuses
    /// the read).
    PollFailed(EcsError),
    /// The deadline came first.
    Deadline {
        /// Targets in an end state.
        ended: usize,
        /// Targets.
        targeted: usize,
        /// What the last poll said, when it failed.
        last_poll_error: Option<String>,
    },
    /// The replica is shutting down.
    Draining,
    /// The caller went away.
    Gone,
    /// The wait's task ended without an outcome (a panic): never read as success.
    Crashed,
}

/// The counts of one wait, for its audit line.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    /// Instances targeted.
    pub targeted: usize,
    /// Of them, in an end state at the end.
    pub ended: usize,
    /// Stop calls that reached ECS, counted as they are answered.
    pub stops_sent: usize,
    /// Stop calls that failed for good.
    pub stops_failed: usize,
}

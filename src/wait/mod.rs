//! Waiting for an invocation's instances to reach their end states: one poll loop per invocation
//! in this replica, shared by every stream that waits on it, paced so that ECS's quota for
//! DescribeInvocations is spent slowly.

pub(crate) mod pace;
pub(crate) mod polls;

//! Rate limits on what the gateway sends: per credential and region toward ECS, per caller from
//! the policy; kept for the whole fleet in Redis when one is configured.

pub(crate) mod fleet;
pub(crate) mod quota;
pub(crate) mod rate;
pub(crate) mod upstream;

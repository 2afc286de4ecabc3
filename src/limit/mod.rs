//! Rate limits on what the gateway sends: per credential and region toward ECS, per caller from
//! the policy; kept for the whole fleet in Redis when one is configured.

pub mod fleet;
pub mod rate;
pub mod upstream;

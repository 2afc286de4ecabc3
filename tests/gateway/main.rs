//! The integration tests that can share one process: each module is one concern, and every
//! module starts real gateways and upstreams on 127.0.0.1:0 through [`support`]. Tests that
//! install a process-global log subscriber, and the vector runner (harness = false), are binaries
//! of their own beside this one.

#[path = "../support/mod.rs"]
mod support;

mod credentials_oracle;
mod deploy;
mod endpoints;
mod fleet;
mod ghz;
mod grpcurl;
mod honest_failures;
mod hostile;
mod listeners;
mod listings;
mod observability;
mod process;
mod quota;
mod resilience;
mod sdk_interop;
mod server;
mod simulator;
mod soak;
mod stop_invocation;
mod upstream_errors;
mod upstream_tls;
mod validation;
mod waits;
mod waits_bounded;
mod who_may_call;

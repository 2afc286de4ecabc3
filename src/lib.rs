//! `ecs-gateway`: a gRPC gateway that validates, signs and forwards ECS `StopInvocation` calls.
//!
//! Data flows one way: [`server`] (listener, connection, TLS, peer, health) → [`api`] (codec,
//! service, validate) → [`auth`] and [`limit`] → [`aliyun`] (client, signer, retry) → ECS →
//! [`api::status`] → caller. [`app`] builds it from settings; [`observe`] watches it.

pub mod aliyun;
pub mod api;
pub mod app;
pub mod auth;
pub mod limit;
pub mod observe;
pub mod pb;
pub mod reload;
pub mod server;
#[cfg(feature = "dev")]
pub mod simulator;

pub use app::{CredentialsFrom, Gateway, RunError, run, shutdown_signal};

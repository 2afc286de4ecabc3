//! `ecs-gateway`: a gRPC gateway that validates, signs and forwards ECS `StopInvocation` calls.
//!
//! Data flows one way: `server` (listener, connection, TLS, peer, health) → `api` (codec,
//! service, validate) → `auth` and `limit` → [`aliyun`] (client, signer, retry) → ECS →
//! `api::status` → caller. `StopInvocationAndWait` goes from `api` to `wait` (admission, the
//! wait's phases on a task of its own, the shared poll loops, the outbox its stream reads) and
//! back through `api::wait`. [`app`] builds it from settings; `observe` watches it, and counts
//! every ECS attempt where the client makes it.
//!
//! The public API is what a binary needs: [`app`] to build and serve the gateway, [`aliyun`] for
//! the ECS client and the credential, [`pb`] for the protocol, and (feature `dev`) [`simulator`].

pub mod aliyun;
pub mod app;
pub mod pb;
#[cfg(feature = "dev")]
pub mod simulator;
#[doc(hidden)]
pub mod testing;

pub(crate) mod api;
pub(crate) mod auth;
pub(crate) mod bounded;
pub(crate) mod identity;
pub(crate) mod limit;
pub(crate) mod observe;
pub(crate) mod reload;
pub(crate) mod server;
pub(crate) mod wait;

pub use app::{CredentialsFrom, Gateway, RunError, Settings, shutdown_signal};

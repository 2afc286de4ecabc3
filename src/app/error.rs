//! Why the gateway could not start: one variant per phase of start-up, each built where that
//! phase fails (never by a blanket `From<io::Error>`, which once reported the listener's own
//! failure as the dev simulator's).

use std::net::SocketAddr;

use super::settings::ConfigError;
use crate::aliyun::client::BuildError;
use crate::aliyun::credentials::chain::NothingFound;
use crate::aliyun::credentials::fetch::FetchError;
use crate::api::routes::ReflectionError;
use crate::limit::fleet::StoreError;
use crate::reload::LoadError;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A setting is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The gRPC address cannot be listened on.
    #[error("cannot listen on {addr} (--listen / ECS_GATEWAY_LISTEN): {error}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// No source in the credential chain gave a credential.
    #[error(transparent)]
    NoCredential(#[from] NothingFound),
    /// The credential machinery itself could not start, or the dev credential could not be had.
    #[error("credentials: {0}")]
    Credentials(#[from] FetchError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] BuildError),
    /// The in-process simulator (`--dev`) or the `simulator` subcommand could not start.
    #[error("cannot start the simulator: {0}")]
    Simulator(std::io::Error),
    /// A TLS, token or policy file is unusable.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The metrics address cannot be listened on.
    #[error("cannot listen on {addr} (--metrics-listen / ECS_GATEWAY_METRICS_LISTEN): {error}")]
    MetricsListen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The Redis URL is unusable.
    #[error(transparent)]
    Fleet(#[from] StoreError),
    /// Reflection could not load the descriptor set.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] ReflectionError),
    /// The health address cannot be listened on.
    #[error("cannot listen on {addr} (--health-listen / ECS_GATEWAY_HEALTH_LISTEN): {error}")]
    HealthListen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

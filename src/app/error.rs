//! Why the gateway could not start.

use crate::aliyun;
use crate::aliyun::credentials::chain::NothingFound;
use crate::aliyun::credentials::fetch::FetchError;
use crate::app::cli::ConfigError;
use crate::{limit, reload, server};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A setting is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No source in the credential chain gave a credential.
    #[error(transparent)]
    NoCredential(#[from] NothingFound),
    /// The credential machinery itself could not start, or the dev credential could not be had.
    #[error("credentials: {0}")]
    Credentials(#[from] FetchError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] aliyun::client::BuildError),
    /// The in-process simulator (`--dev`) could not start.
    #[error("cannot start the dev simulator: {0}")]
    Simulator(#[from] std::io::Error),
    /// A TLS, token or policy file is unusable.
    #[error(transparent)]
    Load(#[from] reload::LoadError),
    /// The metrics address cannot be listened on.
    #[error("cannot listen on {addr} (--metrics-listen / ECS_GATEWAY_METRICS_LISTEN): {error}")]
    MetricsListen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The Redis URL is unusable.
    #[error(transparent)]
    Fleet(#[from] limit::fleet::StoreError),
    /// The gRPC server failed.
    #[error(transparent)]
    Serve(#[from] server::ServeError),
}

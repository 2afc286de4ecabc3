//! What the integration tests, benches and the fuzz crate reach inside the gateway for: the
//! settings they change before `Gateway::build`, what they read after it (metrics), pieces they
//! drive alone (the TLS watcher, the fleet store, log capture), and the pure functions they check
//! stage by stage. Not an API: it shrinks as tests need less of the inside.

/// The gRPC face.
pub mod api {
    pub use crate::api::service::ServiceSettings;
    pub use crate::api::status::from_ecs_error;
    pub use crate::api::validate::stop_invocation;
    pub use crate::wait::WaitSettings;
    pub use crate::wait::pace::PollPace;
}

/// Callers' identities and policy.
pub mod auth {
    pub use crate::auth::files::SecurityFiles;
}

/// The server and its TLS.
pub mod server {
    pub use crate::reload::Reloading;
    pub use crate::server::ServerSettings;
    pub use crate::server::connection::ConnectionSettings;
    pub use crate::server::tls::{SETTING as TLS_SETTING, TlsFiles, watch as watch_tls};
}

/// Rates and the fleet's store.
pub mod limit {
    pub use crate::limit::fleet::{Bucket, FleetStore, RedisSettings};
    pub use crate::limit::quota::{ApiQuota, Decision, Quotas};
    pub use crate::limit::rate::Rate;
    pub use crate::limit::upstream::UpstreamQuota;
}

/// Metrics and log set-up.
pub mod observe {
    pub use crate::observe::log::{LogFormat, init_with};
    pub use crate::observe::metrics::{Metrics, Rpc};
}

/// Alibaba pieces below the client's API.
pub mod aliyun {
    pub use crate::aliyun::catalog::{mapped_regions, public_regions};
    pub use crate::aliyun::credentials::chain::resolve as resolve_chain;
    pub use crate::aliyun::credentials::fetch::Fetcher;
    pub use crate::aliyun::error::parse_body;
    pub use crate::aliyun::request::{Action, Param};
    pub use crate::aliyun::response::{Secrets, interpret};
    pub use crate::aliyun::tls::{client_config, native_roots};
}

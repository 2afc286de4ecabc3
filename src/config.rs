//! Command-line flags with environment fallbacks.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

use crate::aliyun::client::ClientSettings;
use crate::aliyun::endpoint::{DEFAULT_ENDPOINT, Endpoint, EndpointError};
use crate::aliyun::retry::RetryPolicy;
use crate::server::ServerSettings;
use crate::simulator::SimulatorArgs;
use crate::telemetry::LogFormat;

/// `ecs-gateway`: a gRPC gateway for ECS StopInvocation.
#[derive(Debug, Parser)]
#[command(
    name = "ecs-gateway",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Run something other than the gateway.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Gateway settings.
    #[command(flatten)]
    pub gateway: GatewayConfig,
    /// Log line format.
    #[arg(
        long,
        env = "ECS_GATEWAY_LOG_FORMAT",
        value_enum,
        default_value_t,
        global = true
    )]
    pub log_format: LogFormat,
}

/// What else the binary can run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the embedded ECS simulator alone (an ECS StopInvocation endpoint for tests and demos).
    Simulator(SimulatorArgs),
}

/// Gateway settings; every flag has an environment fallback.
#[derive(Debug, Clone, Args)]
pub struct GatewayConfig {
    /// Address the gRPC server listens on.
    #[arg(long, env = "ECS_GATEWAY_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// ECS endpoint URL; may contain {region}. Default: https://ecs.{region}.aliyuncs.com/
    #[arg(long, env = "ECS_GATEWAY_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Run against an in-process ECS simulator with demo credentials: no account, no network.
    #[arg(long)]
    pub dev: bool,
    /// Retries after the first attempt, for transient failures only.
    #[arg(long, env = "ECS_GATEWAY_MAX_RETRIES", default_value_t = 2)]
    pub max_retries: u32,
    /// Timeout of one upstream attempt.
    #[arg(long, env = "ECS_GATEWAY_UPSTREAM_TIMEOUT", default_value = "10s")]
    pub upstream_timeout: humantime::Duration,
    /// Upstream connect timeout.
    #[arg(long, env = "ECS_GATEWAY_CONNECT_TIMEOUT", default_value = "5s")]
    pub connect_timeout: humantime::Duration,
    /// Calls handled at once; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "ECS_GATEWAY_MAX_CONCURRENT_REQUESTS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_requests: u32,
    /// Largest request message accepted, in bytes.
    #[arg(long, env = "ECS_GATEWAY_MAX_REQUEST_BYTES", default_value_t = 64 * 1024)]
    pub max_request_bytes: usize,
    /// How long in-flight calls may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "ECS_GATEWAY_SHUTDOWN_GRACE", default_value = "30s")]
    pub shutdown_grace: humantime::Duration,
}

impl GatewayConfig {
    /// The endpoint template, checked.
    pub fn endpoint(&self) -> Result<Endpoint, EndpointError> {
        Endpoint::parse(self.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT))
    }

    /// ECS client settings derived from the flags.
    pub fn client_settings(&self) -> Result<ClientSettings, EndpointError> {
        let max_concurrent = self.max_concurrent_requests as usize;
        Ok(ClientSettings {
            endpoint: self.endpoint()?,
            connect_timeout: *self.connect_timeout,
            attempt_timeout: *self.upstream_timeout,
            retry: RetryPolicy {
                max_retries: self.max_retries,
                ..RetryPolicy::default()
            },
            // Enough idle connections for every admitted call to reuse one.
            pool_max_idle_per_host: max_concurrent.min(1024),
        })
    }

    /// gRPC server settings derived from the flags.
    pub fn server_settings(&self) -> ServerSettings {
        ServerSettings {
            max_request_bytes: self.max_request_bytes,
            shutdown_grace: *self.shutdown_grace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let cli = Cli::try_parse_from(["ecs-gateway"]).unwrap();
        let g = cli.gateway;
        assert_eq!(g.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(g.max_retries, 2);
        assert_eq!(*g.upstream_timeout, std::time::Duration::from_secs(10));
        assert_eq!(*g.connect_timeout, std::time::Duration::from_secs(5));
        assert_eq!(g.max_concurrent_requests, 1024);
        assert_eq!(g.max_request_bytes, 65536);
        assert_eq!(*g.shutdown_grace, std::time::Duration::from_secs(30));
        assert_eq!(g.endpoint().unwrap(), Endpoint::default());
    }

    #[test]
    fn durations_take_humantime() {
        let cli = Cli::try_parse_from(["ecs-gateway", "--upstream-timeout", "1500ms"]).unwrap();
        assert_eq!(
            *cli.gateway.upstream_timeout,
            std::time::Duration::from_millis(1500)
        );
    }

    #[test]
    fn zero_concurrency_is_refused() {
        assert!(Cli::try_parse_from(["ecs-gateway", "--max-concurrent-requests", "0"]).is_err());
    }
}

//! Command-line flags with environment fallbacks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};

use crate::aliyun::catalog::Network;
use crate::aliyun::client::ClientSettings;
use crate::aliyun::dns::DnsConfig;
use crate::aliyun::endpoint::{Endpoint, EndpointError};
use crate::aliyun::regions::Regions;
use crate::aliyun::retry::RetryPolicy;
use crate::api::service::ServiceSettings;
use crate::auth::Access;
pub use crate::auth::files::SecurityFiles;
use crate::limit::fleet::{RedisSettings, RedisUrl};
use crate::limit::rate::Rate;
use crate::observe::log::LogFormat;
use crate::server::ServerSettings;
use crate::server::connection::ConnectionSettings;
use crate::server::tls::TlsFiles;
use crate::simulator::SimulatorArgs;

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

/// The most retries `--max-retries` accepts: more would multiply load in an outage.
pub const MAX_RETRIES_LIMIT: u32 = 10;
/// The largest `--max-request-bytes`: a StopInvocation request is a few kilobytes at most.
pub const MAX_REQUEST_BYTES_LIMIT: u64 = 4 * 1024 * 1024;

/// Gateway settings; every flag has an environment fallback.
#[derive(Debug, Clone, Args)]
pub struct GatewayConfig {
    /// Address the gRPC server listens on.
    #[arg(long, env = "ECS_GATEWAY_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// ECS endpoint URL override; may contain {region} inside the host. Empty or unset: the host Alibaba's SDKs use for the region and --network.
    #[arg(long, env = "ECS_GATEWAY_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Alibaba Cloud network to reach ECS over: public, or vpc (VPC endpoints, from inside Alibaba Cloud).
    #[arg(long, env = "ECS_GATEWAY_NETWORK", value_enum, default_value_t)]
    pub network: Network,
    /// Serve Prometheus metrics on this address (GET /metrics); off when unset.
    #[arg(long, env = "ECS_GATEWAY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Also serve grpc.health.v1 alone, in plaintext, on this address: for probes that cannot
    /// speak TLS, such as the kubelet's gRPC probes. Off when unset.
    #[arg(long, env = "ECS_GATEWAY_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// Allow a plain http:// endpoint that is not loopback (the signed request travels unencrypted).
    #[arg(long, env = "ECS_GATEWAY_ALLOW_INSECURE_ENDPOINT")]
    pub allow_insecure_endpoint: bool,
    /// Regions served: a comma-separated list, or '*' for any valid region ID. Default: the public ECS regions.
    #[arg(long, env = "ECS_GATEWAY_REGIONS", value_parser = parse_regions)]
    pub regions: Option<Regions>,
    /// Run against an in-process ECS simulator with demo credentials: no account, no network.
    #[arg(long)]
    pub dev: bool,
    /// With --dev: take the credential from the simulator's instance metadata service, issued for
    /// this long (at least 5s) and refreshed before it expires, instead of a fixed demo AccessKey.
    #[arg(long, requires = "dev", value_parser = positive_duration)]
    pub dev_credential_lifetime: Option<Duration>,
    /// STS endpoint URL for AssumeRole / AssumeRoleWithOIDC, replacing the host Alibaba's SDKs derive
    /// (ALIBABA_CLOUD_STS_REGION, ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED).
    #[arg(long, env = "ECS_GATEWAY_STS_ENDPOINT", value_parser = credential_endpoint)]
    pub sts_endpoint: Option<url::Url>,
    /// The ECS instance metadata service, for the instance RAM role.
    #[arg(long, env = "ECS_GATEWAY_METADATA_ENDPOINT", default_value = crate::aliyun::credentials::fetch::DEFAULT_METADATA_ENDPOINT, value_parser = credential_endpoint)]
    pub metadata_endpoint: url::Url,
    /// Retries after the first attempt, for transient failures only (at most 10).
    #[arg(long, env = "ECS_GATEWAY_MAX_RETRIES", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_RETRIES_LIMIT)))]
    pub max_retries: u32,
    /// Share of calls that retries may add, process-wide (0.2 = 20%, plus 10 retries a second).
    #[arg(long, env = "ECS_GATEWAY_RETRY_BUDGET", default_value_t = 0.2, value_parser = ratio)]
    pub retry_budget: f64,
    /// Timeout of one upstream attempt.
    #[arg(long, env = "ECS_GATEWAY_UPSTREAM_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub upstream_timeout: Duration,
    /// Upstream connect timeout.
    #[arg(long, env = "ECS_GATEWAY_CONNECT_TIMEOUT", default_value = "5s", value_parser = positive_duration)]
    pub connect_timeout: Duration,
    /// Longest a call may take, for calls without a grpc-timeout or with a longer one.
    #[arg(long, env = "ECS_GATEWAY_MAX_CALL_DURATION", default_value = "25s", value_parser = positive_duration)]
    pub max_call_duration: Duration,
    /// Calls handled at once; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "ECS_GATEWAY_MAX_CONCURRENT_REQUESTS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_requests: u32,
    /// Largest request message accepted, in bytes (at most 4 MiB).
    #[arg(long, env = "ECS_GATEWAY_MAX_REQUEST_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u64).range(1..=MAX_REQUEST_BYTES_LIMIT))]
    pub max_request_bytes: u64,
    /// How long in-flight calls may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "ECS_GATEWAY_SHUTDOWN_GRACE", default_value = "30s", value_parser = positive_duration)]
    pub shutdown_grace: Duration,
    /// Time between health turning NOT_SERVING and the listener closing (let load balancers notice).
    #[arg(long, env = "ECS_GATEWAY_DRAIN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,
    /// Connections open at once; more are closed as they arrive.
    #[arg(long, env = "ECS_GATEWAY_MAX_CONNECTIONS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Time a new connection has to send the HTTP/2 preface and SETTINGS.
    #[arg(long, env = "ECS_GATEWAY_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub handshake_timeout: Duration,
    /// A connection without a stream for this long gets GOAWAY.
    #[arg(long, env = "ECS_GATEWAY_MAX_CONNECTION_IDLE", default_value = "5m", value_parser = positive_duration)]
    pub max_connection_idle: Duration,
    /// A connection gets GOAWAY at this age (±10%); calls in flight finish.
    #[arg(long, env = "ECS_GATEWAY_MAX_CONNECTION_AGE", default_value = "30m", value_parser = positive_duration)]
    pub max_connection_age: Duration,
    /// Streams one connection may have open at once.
    #[arg(long, env = "ECS_GATEWAY_MAX_CONCURRENT_STREAMS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,
    /// Serve TLS with this PEM certificate chain (leaf first); re-read when it changes.
    #[arg(long, env = "ECS_GATEWAY_TLS_CERT", value_parser = path_or_empty())]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert; re-read when it changes.
    #[arg(long, env = "ECS_GATEWAY_TLS_KEY", value_parser = path_or_empty())]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate chaining to these PEM CA certificates.
    #[arg(long, env = "ECS_GATEWAY_TLS_CLIENT_CA", value_parser = path_or_empty())]
    pub tls_client_ca: Option<PathBuf>,
    /// Callers' bearer tokens, one `NAME sha256:HEX` a line; re-read when it changes.
    #[arg(long, env = "ECS_GATEWAY_AUTH_TOKENS_FILE", value_parser = path_or_empty())]
    pub auth_tokens_file: Option<PathBuf>,
    /// Per-caller policy (TOML): the regions and rate each caller may use; re-read when it changes.
    #[arg(long, env = "ECS_GATEWAY_POLICY", value_parser = path_or_empty())]
    pub policy: Option<PathBuf>,
    /// Serve a non-loopback address without authenticating callers.
    #[arg(long, env = "ECS_GATEWAY_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,
    /// Serve gRPC server reflection (v1 and v1alpha).
    #[arg(long, env = "ECS_GATEWAY_REFLECTION", value_enum, default_value_t = Switch::On)]
    pub reflection: Switch,
    /// Redis shared by the replicas, which makes --fleet-rate and the policy's caller rates
    /// fleet-wide: redis://[:PASSWORD@]HOST[:PORT][/DB].
    #[arg(long, env = "ECS_GATEWAY_REDIS_URL", value_parser = concealed())]
    pub redis_url: Option<Concealed>,
    /// A file holding the Redis password (a mounted Secret), instead of one in --redis-url;
    /// re-read whenever the gateway reconnects.
    #[arg(long, env = "ECS_GATEWAY_REDIS_PASSWORD_FILE", value_parser = path_or_empty())]
    pub redis_password_file: Option<PathBuf>,
    /// Calls per second to ECS for the whole fleet, per credential and region (burst: as many);
    /// retries count. Needs --redis-url.
    #[arg(long, env = "ECS_GATEWAY_FLEET_RATE")]
    pub fleet_rate: Option<Rate>,
    /// Longest a call waits on Redis for a rate decision before this replica decides alone.
    #[arg(long, env = "ECS_GATEWAY_REDIS_TIMEOUT", default_value = "5ms", value_parser = positive_duration)]
    pub redis_timeout: Duration,
    /// How often the TLS, token and policy files are checked for changes.
    #[arg(long, env = "ECS_GATEWAY_RELOAD_INTERVAL", default_value = "5s", value_parser = positive_duration)]
    pub reload_interval: Duration,
}

/// A feature turned on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    /// Served.
    On,
    /// Not served.
    Off,
}

/// A humantime duration greater than zero.
fn positive_duration(value: &str) -> Result<Duration, String> {
    const RULE: &str = "must be a duration greater than zero, such as 500ms or 30s";
    match humantime::parse_duration(value) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err(RULE.to_owned()),
        Err(e) => Err(format!("{RULE} ({e})")),
    }
}

/// An http(s) URL a credential is fetched from; user info is refused (it would end up in logs).
fn credential_endpoint(value: &str) -> Result<url::Url, String> {
    let url =
        url::Url::parse(value).map_err(|e| format!("must be an http:// or https:// URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err("must be an http:// or https:// URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user info".into());
    }
    Ok(url)
}

/// A share from 0 to 1.
fn ratio(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("must be a number from 0 to 1, such as 0.2".to_owned()),
    }
}

fn parse_regions(value: &str) -> Result<Regions, String> {
    Regions::parse(value).map_err(|e| e.to_string())
}

/// A setting that cannot work, named as the operator typed it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The endpoint is unusable.
    #[error("--endpoint / ECS_GATEWAY_ENDPOINT {0}")]
    Endpoint(#[from] EndpointError),
    /// Only one of the certificate and its key.
    #[error(
        "--tls-cert / ECS_GATEWAY_TLS_CERT and --tls-key / ECS_GATEWAY_TLS_KEY go together: set both or neither"
    )]
    TlsIncomplete,
    /// Client certificates asked for without serving TLS.
    #[error(
        "--tls-client-ca / ECS_GATEWAY_TLS_CLIENT_CA needs TLS: set --tls-cert and --tls-key too"
    )]
    ClientCaWithoutTls,
    /// A policy without any way to tell callers apart.
    #[error(
        "--policy / ECS_GATEWAY_POLICY names callers, so it needs --auth-tokens-file or --tls-client-ca"
    )]
    PolicyWithoutAuthentication,
    /// The Redis URL is unusable (the URL itself is not repeated: it may hold a password).
    #[error("--redis-url / ECS_GATEWAY_REDIS_URL {0}")]
    RedisUrl(String),
    /// A fleet setting without the Redis that shares it.
    #[error(
        "{0} needs --redis-url / ECS_GATEWAY_REDIS_URL: fleet-wide limits are kept in Redis, and one replica's own would not be fleet-wide"
    )]
    WithoutRedis(&'static str),
    /// Serving a reachable address to anyone.
    #[error(
        "refusing to serve {addr} without authentication (anyone who can reach it could stop commands): set --auth-tokens-file or --tls-client-ca, listen on a loopback address, or set --allow-unauthenticated / ECS_GATEWAY_ALLOW_UNAUTHENTICATED=true"
    )]
    Unprotected {
        /// The address that is not loopback.
        addr: SocketAddr,
    },
}

/// A value that may hold a secret (a password in a URL): `Debug` hides it, and since it is parsed
/// after clap, no usage error echoes it.
#[derive(Clone)]
pub struct Concealed(String);

impl std::fmt::Debug for Concealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Concealed(..)")
    }
}

fn concealed() -> impl clap::builder::TypedValueParser<Value = Concealed> {
    clap::builder::StringValueParser::new().map(Concealed)
}

/// A path, where an empty value is accepted (and then means unset, see [`path_setting`]).
fn path_or_empty() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    clap::builder::OsStringValueParser::new().map(PathBuf::from)
}

/// A path setting; empty means unset, so that an environment variable can be cleared with `VAR=`.
fn path_setting(value: &Option<PathBuf>) -> Option<PathBuf> {
    value.clone().filter(|p| !p.as_os_str().is_empty())
}

impl GatewayConfig {
    /// The endpoint: the override, checked, when one is set; else the SDKs' hosts on `--network`.
    pub fn endpoint(&self) -> Result<Endpoint, ConfigError> {
        match self.endpoint_override() {
            Some(template) => Ok(Endpoint::parse(template)?),
            None => Ok(Endpoint::Sdk(self.network)),
        }
    }

    /// The `--endpoint` override, when set to something other than blanks.
    pub fn endpoint_override(&self) -> Option<&str> {
        self.endpoint.as_deref().filter(|e| !e.trim().is_empty())
    }

    /// ECS client settings derived from the flags.
    pub fn client_settings(&self) -> Result<ClientSettings, ConfigError> {
        let max_concurrent = self.max_concurrent_requests as usize;
        Ok(ClientSettings {
            endpoint: self.endpoint()?,
            connect_timeout: self.connect_timeout,
            attempt_timeout: self.upstream_timeout,
            retry: RetryPolicy {
                max_retries: self.max_retries,
                ..RetryPolicy::default()
            },
            // Enough idle connections for every admitted call to reuse one.
            pool_max_idle_per_host: max_concurrent.min(1024),
            dns: DnsConfig::System,
            retry_budget: self.retry_budget,
            admission: None,
        })
    }

    /// Where the fleet's rates are kept, when --redis-url is set.
    pub fn redis_settings(&self) -> Result<Option<RedisSettings>, ConfigError> {
        let password_file = path_setting(&self.redis_password_file);
        let url = self.redis_url.as_ref().filter(|u| !u.0.trim().is_empty());
        let Some(url) = url else {
            return match (self.fleet_rate, password_file) {
                (None, None) => Ok(None),
                (Some(_), _) => Err(ConfigError::WithoutRedis(
                    "--fleet-rate / ECS_GATEWAY_FLEET_RATE",
                )),
                (None, Some(_)) => Err(ConfigError::WithoutRedis(
                    "--redis-password-file / ECS_GATEWAY_REDIS_PASSWORD_FILE",
                )),
            };
        };
        let url: RedisUrl = url.0.parse().map_err(ConfigError::RedisUrl)?;
        Ok(Some(RedisSettings {
            url,
            password_file,
            timeout: self.redis_timeout,
        }))
    }

    /// The TLS, token and policy files, checked for settings that cannot work together.
    pub fn security_files(&self) -> Result<SecurityFiles, ConfigError> {
        let tls = match (path_setting(&self.tls_cert), path_setting(&self.tls_key)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(ConfigError::TlsIncomplete),
        };
        let client_ca = path_setting(&self.tls_client_ca);
        let tokens = path_setting(&self.auth_tokens_file);
        let tls = match (tls, client_ca) {
            (Some((cert, key)), client_ca) => Some(TlsFiles {
                cert,
                key,
                client_ca,
                // With tokens too, either identifies the caller, so a certificate is optional.
                client_cert_optional: tokens.is_some(),
            }),
            (None, Some(_)) => return Err(ConfigError::ClientCaWithoutTls),
            (None, None) => None,
        };
        let files = SecurityFiles {
            tls,
            tokens,
            policy: path_setting(&self.policy),
        };
        if files.policy.is_some() && !files.authenticates() {
            return Err(ConfigError::PolicyWithoutAuthentication);
        }
        Ok(files)
    }

    /// Refuses to serve a non-loopback `addr` to unauthenticated callers unless allowed to.
    pub fn check_protected(
        &self,
        addr: SocketAddr,
        authenticates: bool,
    ) -> Result<(), ConfigError> {
        if authenticates || addr.ip().to_canonical().is_loopback() || self.allow_unauthenticated {
            return Ok(());
        }
        Err(ConfigError::Unprotected { addr })
    }

    /// Per-call settings of the gRPC handler.
    pub fn service_settings(&self) -> ServiceSettings {
        ServiceSettings {
            max_concurrent_requests: self.max_concurrent_requests as usize,
            max_call_duration: self.max_call_duration,
            regions: self.regions.clone().unwrap_or_default(),
            // Loaded from files at start, by `run`.
            access: Access::default(),
            // Set by `run` when --metrics-listen is.
            metrics: None,
        }
    }

    /// gRPC server settings derived from the flags.
    pub fn server_settings(&self) -> ServerSettings {
        ServerSettings {
            // At most 4 MiB by the flag's range, so the cast cannot truncate.
            max_request_bytes: self.max_request_bytes as usize,
            max_connections: self.max_connections as usize,
            connection: ConnectionSettings {
                handshake_timeout: self.handshake_timeout,
                max_idle: self.max_connection_idle,
                max_age: self.max_connection_age,
                max_concurrent_streams: self.max_concurrent_streams,
                ..ConnectionSettings::default()
            },
            drain_delay: self.drain_delay,
            shutdown_grace: self.shutdown_grace,
            // Loaded from files at start, by `run`.
            tls: None,
            reflection: self.reflection == Switch::On,
            // Follows the credential, by `run`.
            ready: None,
            // Set by `run` when --metrics-listen is.
            metrics: None,
            health_listen: self.health_listen,
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
        assert_eq!(g.upstream_timeout, Duration::from_secs(10));
        assert_eq!(g.connect_timeout, Duration::from_secs(5));
        assert_eq!(g.max_call_duration, Duration::from_secs(25));
        assert_eq!(g.max_concurrent_requests, 1024);
        assert_eq!(g.max_request_bytes, 65536);
        assert_eq!(g.shutdown_grace, Duration::from_secs(30));
        assert_eq!(g.drain_delay, Duration::ZERO);
        assert_eq!(g.max_connections, 4096);
        assert_eq!(g.handshake_timeout, Duration::from_secs(10));
        assert_eq!(g.max_connection_idle, Duration::from_secs(300));
        assert_eq!(g.max_connection_age, Duration::from_secs(1800));
        assert_eq!(g.max_concurrent_streams, 256);
        assert!((g.retry_budget - 0.2).abs() < f64::EPSILON);
        assert!(!g.allow_insecure_endpoint);
        assert_eq!(g.endpoint().unwrap(), Endpoint::default());
        assert_eq!(g.service_settings().regions, Regions::public());
    }

    #[test]
    fn the_redis_password_shows_in_no_debug_output_and_no_error() {
        let parse = |url: &str| {
            Cli::try_parse_from(["ecs-gateway", "--redis-url", url, "--fleet-rate", "20"])
                .unwrap()
                .gateway
        };
        let good = parse("redis://:hunter2@redis.internal:6380/1");
        assert!(!format!("{good:?}").contains("hunter2"), "{good:?}");
        let settings = good.redis_settings().unwrap().unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
        assert_eq!(settings.url.to_string(), "redis://redis.internal:6380/1");
        assert_eq!(settings.timeout, Duration::from_millis(5));
        assert_eq!(good.fleet_rate.unwrap().per_second(), 20.0);
        for bad in [
            "rediss://:hunter2@redis.internal",
            "hunter2",
            "redis://:hunter2@",
        ] {
            let error = parse(bad).redis_settings().unwrap_err().to_string();
            assert!(
                error.starts_with("--redis-url / ECS_GATEWAY_REDIS_URL must be"),
                "{error}"
            );
            assert!(!error.contains("hunter2"), "{error}");
        }
        let unset = Cli::try_parse_from(["ecs-gateway"]).unwrap().gateway;
        assert!(unset.redis_settings().unwrap().is_none());
    }

    #[test]
    fn durations_take_humantime() {
        let cli = Cli::try_parse_from(["ecs-gateway", "--upstream-timeout", "1500ms"]).unwrap();
        assert_eq!(cli.gateway.upstream_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn limits_that_cannot_work_are_refused_naming_the_flag() {
        for args in [
            ["--upstream-timeout", "0s"],
            ["--connect-timeout", "0ms"],
            ["--max-call-duration", "0s"],
            ["--shutdown-grace", "--shutdown-grace=-1s"],
            ["--max-retries", "11"],
            ["--max-request-bytes", "4194305"],
            ["--regions", "Cn-Hangzhou"],
            ["--retry-budget", "1.5"],
        ] {
            let argv = if args[1].starts_with("--") {
                vec!["ecs-gateway", args[1]]
            } else {
                vec!["ecs-gateway", args[0], args[1]]
            };
            let err = Cli::try_parse_from(argv).unwrap_err();
            assert!(err.to_string().contains(args[0]), "{args:?}: {err}");
        }
        assert!(Cli::try_parse_from(["ecs-gateway", "--max-retries", "10"]).is_ok());
        assert!(Cli::try_parse_from(["ecs-gateway", "--max-request-bytes", "4194304"]).is_ok());
    }

    #[test]
    fn the_network_picks_the_sdk_hosts_unless_an_endpoint_overrides_it() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["ecs-gateway"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv)
                .unwrap()
                .gateway
                .endpoint()
                .unwrap()
        };
        assert_eq!(parse(&[]), Endpoint::Sdk(Network::Public));
        assert_eq!(parse(&["--network", "vpc"]), Endpoint::Sdk(Network::Vpc));
        let overridden = parse(&[
            "--network",
            "vpc",
            "--endpoint",
            "https://ecs.{region}.example/",
        ]);
        assert!(
            matches!(overridden, Endpoint::Template { .. }),
            "{overridden:?}"
        );
        assert!(Cli::try_parse_from(["ecs-gateway", "--network", "internal"]).is_err());
    }

    #[test]
    fn an_empty_endpoint_means_the_default() {
        let cli = Cli::try_parse_from(["ecs-gateway", "--endpoint", ""]).unwrap();
        assert_eq!(cli.gateway.endpoint().unwrap(), Endpoint::default());
    }

    #[test]
    fn empty_security_paths_mean_unset_and_combinations_that_cannot_work_are_refused() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["ecs-gateway"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv).unwrap().gateway.security_files()
        };
        let none = parse(&[
            "--tls-cert",
            "",
            "--tls-key",
            "",
            "--tls-client-ca",
            "",
            "--policy",
            "",
        ]);
        assert_eq!(none.unwrap(), SecurityFiles::default());
        assert!(matches!(
            parse(&["--tls-key", "k"]),
            Err(ConfigError::TlsIncomplete)
        ));
        assert!(matches!(
            parse(&["--tls-client-ca", "ca"]),
            Err(ConfigError::ClientCaWithoutTls)
        ));
        assert!(matches!(
            parse(&["--tls-cert", "c", "--tls-key", "k", "--policy", "p"]),
            Err(ConfigError::PolicyWithoutAuthentication)
        ));
        let both = parse(&[
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
            "--tls-client-ca",
            "ca",
            "--auth-tokens-file",
            "t",
        ])
        .unwrap();
        assert!(both.authenticates());
        assert!(
            both.tls.unwrap().client_cert_optional,
            "either a token or a certificate will do"
        );
        let mtls = parse(&["--tls-cert", "c", "--tls-key", "k", "--tls-client-ca", "ca"]).unwrap();
        assert!(!mtls.tls.unwrap().client_cert_optional);
    }

    #[test]
    fn protected_mode_serves_loopback_or_authenticated_callers_or_when_allowed() {
        let cli = Cli::try_parse_from(["ecs-gateway"]).unwrap().gateway;
        let any: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        for loopback in [
            "127.0.0.1:1",
            "127.8.9.10:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            cli.check_protected(loopback.parse().unwrap(), false)
                .unwrap();
        }
        assert!(matches!(
            cli.check_protected(any, false),
            Err(ConfigError::Unprotected { .. })
        ));
        assert!(
            cli.check_protected("[::]:1".parse().unwrap(), false)
                .is_err()
        );
        cli.check_protected(any, true).unwrap();
        let allowed = Cli::try_parse_from(["ecs-gateway", "--allow-unauthenticated"])
            .unwrap()
            .gateway;
        allowed.check_protected(any, false).unwrap();
    }

    #[test]
    fn zero_concurrency_is_refused() {
        assert!(Cli::try_parse_from(["ecs-gateway", "--max-concurrent-requests", "0"]).is_err());
    }
}

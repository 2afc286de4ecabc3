//! Command-line flags with environment fallbacks: the only module that knows clap. It parses
//! strings into values; whether the values work together is [`super::settings`]' job.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};

use crate::aliyun::catalog::Network;
use crate::aliyun::regions::Regions;
use crate::aliyun::signer::SignatureVersion;
use crate::limit::quota::{self, ApiQuota};
use crate::limit::rate::Rate;
use crate::observe::log::LogFormat;
#[cfg(feature = "dev")]
use crate::simulator::faults;

/// What a build without the `dev` feature answers to `--dev` and `simulator`.
pub(crate) const NOT_BUILT: &str = "this build has no dev tooling (--dev, the simulator subcommand): build with the `dev` feature, which is on by default (cargo run --release -- --dev)";

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
    pub gateway: GatewayArgs,
    /// Log line format.
    #[arg(
        long,
        env = "ECS_GATEWAY_LOG_FORMAT",
        value_enum,
        default_value_t,
        global = true
    )]
    pub log_format: LogFormatArg,
}

/// What else the binary can run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the embedded ECS simulator alone (an ECS StopInvocation endpoint for tests and demos).
    Simulator(SimulatorArgs),
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(arg: LogFormatArg) -> Self {
        match arg {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum NetworkArg {
    /// Internet endpoints, `ecs.<region>.aliyuncs.com`.
    #[default]
    Public,
    /// VPC endpoints, `ecs-vpc.<region>.aliyuncs.com`, from inside Alibaba Cloud.
    Vpc,
}

impl From<NetworkArg> for Network {
    fn from(arg: NetworkArg) -> Self {
        match arg {
            NetworkArg::Public => Network::Public,
            NetworkArg::Vpc => Network::Vpc,
        }
    }
}

/// `ecs-gateway simulator` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulatorArgs {
    /// Address the simulator listens on (plain HTTP).
    #[arg(long, env = "ECS_SIMULATOR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Added latency per request: `50ms`, or a uniform range `50ms..200ms`.
    #[cfg_attr(feature = "dev", arg(long, value_parser = faults::parse_latency))]
    #[cfg_attr(not(feature = "dev"), arg(long, value_parser = no_latency))]
    pub latency: Option<(Duration, Duration)>,
    /// Share of requests (0–1) answered 500 InternalError.Dispatch.
    #[arg(long, default_value_t = 0.0)]
    pub error_500_rate: f64,
    /// Share of requests (0–1) answered 503 ServiceUnavailable.
    #[arg(long, default_value_t = 0.0, value_parser = ratio)]
    pub error_503_rate: f64,
    /// Requests per second past which requests are answered 400 Throttling.User.
    #[arg(long)]
    pub throttle_rps: Option<u32>,
    /// Share of requests (0–1) whose connection is closed without an answer.
    #[arg(long, default_value_t = 0.0, value_parser = ratio)]
    pub reset_rate: f64,
    /// Lifetime of the temporary credentials the STS and metadata faces issue.
    #[arg(long, default_value = "1h", value_parser = duration_in(SEC * 5, HOUR * 12))]
    pub sts_lifetime: Duration,
    /// The OIDC token AssumeRoleWithOIDC must present (any non-empty one when unset).
    #[arg(long)]
    pub oidc_token: Option<String>,
    /// How long a running execution takes to go from Stopping to Stopped after a stop.
    #[arg(long, default_value = "2s", value_parser = duration_in(Duration::ZERO, HOUR))]
    pub stop_delay: Duration,
    /// An action's quota, as ECS keeps it: ACTION=COUNT/PERIOD (repeatable); a call past it in
    /// its window is answered 400 Throttling.User until the window ends. None by default.
    #[arg(long = "quota")]
    pub quotas: Vec<ApiQuota>,
    /// How a call past a --quota says how long to wait.
    #[arg(long, value_enum, default_value_t = QuotaHeaders::Acs)]
    pub quota_headers: QuotaHeaders,
}

/// How the simulator's throttled answers say how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QuotaHeaders {
    /// `x-acs-retry-after`, milliseconds (the newest Tea core's reading).
    Acs,
    /// `x-ratelimit-user-api` with `TimeLeft` (the Go core's reading).
    Ratelimit,
    /// No header: the caller must know that ECS's windows are minutes.
    Silent,
}

/// Without the simulator there is no latency to inject; the subcommand is refused anyway.
#[cfg(not(feature = "dev"))]
fn no_latency(_: &str) -> Result<(Duration, Duration), String> {
    Err(NOT_BUILT.to_owned())
}

/// The most retries `--max-retries` accepts: more would multiply load in an outage.
pub const MAX_RETRIES_LIMIT: u32 = 10;
/// The largest `--max-request-bytes`: a StopInvocation request is a few kilobytes at most.
pub const MAX_REQUEST_BYTES_LIMIT: u64 = 4 * 1024 * 1024;

/// Gateway settings; every flag has an environment fallback.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// Address the gRPC server listens on.
    #[arg(long, env = "ECS_GATEWAY_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// ECS endpoint URL override; may contain {region} inside the host. Empty or unset: the host Alibaba's SDKs use for the region and --network.
    #[arg(long, env = "ECS_GATEWAY_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Alibaba Cloud network to reach ECS over: public, or vpc (VPC endpoints, from inside Alibaba Cloud).
    #[arg(long, env = "ECS_GATEWAY_NETWORK", value_enum, default_value_t)]
    pub network: NetworkArg,
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
    #[arg(long, requires = "dev", value_parser = duration_in(SEC * 5, HOUR * 12))]
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
    /// How ECS calls are signed: v3 (ACS3-HMAC-SHA256, as Alibaba's SDKs sign today) or v1 (the
    /// RPC HMAC-SHA1 query signature).
    #[arg(long, env = "ECS_GATEWAY_SIGNATURE_VERSION", default_value = "v3")]
    pub signature_version: SignatureVersion,
    /// Share of calls that retries may add, process-wide (0.2 = 20%, plus 10 retries a second):
    /// 0 or 1/n (1, 0.5, 0.25, 0.2, 0.1, …), the ratios the budget keeps exactly.
    #[arg(long, env = "ECS_GATEWAY_RETRY_BUDGET", default_value_t = 0.2, value_parser = ratio)]
    pub retry_budget: f64,
    /// Timeout of one upstream attempt.
    #[arg(long, env = "ECS_GATEWAY_UPSTREAM_TIMEOUT", default_value = "10s", value_parser = duration_in(MS * 10, MIN * 5))]
    pub upstream_timeout: Duration,
    /// Upstream connect timeout.
    #[arg(long, env = "ECS_GATEWAY_CONNECT_TIMEOUT", default_value = "5s", value_parser = duration_in(MS * 10, MIN))]
    pub connect_timeout: Duration,
    /// Longest a call may take, for calls without a grpc-timeout or with a longer one.
    #[arg(long, env = "ECS_GATEWAY_MAX_CALL_DURATION", default_value = "25s", value_parser = duration_in(MS * 10, HOUR))]
    pub max_call_duration: Duration,
    /// Most instances one StopInvocationAndWait may target (stopped in ECS calls of at most 50); at
    /// most 2000, so that a message with every one stays under the 4 MiB gRPC clients accept.
    #[arg(long, env = "ECS_GATEWAY_MAX_WAIT_INSTANCES", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=crate::wait::MAX_WAIT_INSTANCES_LIMIT as i64))]
    pub max_wait_instances: u32,
    /// StopInvocationAndWait streams held at once by this replica; more are refused with
    /// RESOURCE_EXHAUSTED. Each holds its targets' statuses until its stream is gone (README, Bounds).
    #[arg(long, env = "ECS_GATEWAY_MAX_CONCURRENT_WAITS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_concurrent_waits: u32,
    /// StopInvocationAndWait streams one caller may hold at once.
    #[arg(long, env = "ECS_GATEWAY_MAX_WAITS_PER_CALLER", default_value_t = 250,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_waits_per_caller: u32,
    /// Distinct invocations this replica follows at once for waits (each holds its latest read);
    /// a wait on one more is refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "ECS_GATEWAY_MAX_POLLED_INVOCATIONS", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_polled_invocations: u32,
    /// Longest a StopInvocationAndWait lasts, for waits without a grpc-timeout or with a longer one.
    #[arg(long, env = "ECS_GATEWAY_MAX_WAIT", default_value = "10m", value_parser = duration_in(SEC, 24 * HOUR))]
    pub max_wait: Duration,
    /// Calls handled at once; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "ECS_GATEWAY_MAX_CONCURRENT_REQUESTS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_requests: u32,
    /// Largest request message accepted, in bytes (at most 4 MiB).
    #[arg(long, env = "ECS_GATEWAY_MAX_REQUEST_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u64).range(1..=MAX_REQUEST_BYTES_LIMIT))]
    pub max_request_bytes: u64,
    /// How long in-flight calls may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "ECS_GATEWAY_SHUTDOWN_GRACE", default_value = "30s", value_parser = duration_in(MS, HOUR))]
    pub shutdown_grace: Duration,
    /// Time between health turning NOT_SERVING and the listener closing (let load balancers notice).
    #[arg(long, env = "ECS_GATEWAY_DRAIN_DELAY", default_value = "0s", value_parser = duration_in(Duration::ZERO, MIN * 10))]
    pub drain_delay: Duration,
    /// Connections open at once; more are closed as they arrive.
    #[arg(long, env = "ECS_GATEWAY_MAX_CONNECTIONS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Time a new connection has to send the HTTP/2 preface and SETTINGS.
    #[arg(long, env = "ECS_GATEWAY_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = duration_in(MS * 100, MIN * 5))]
    pub handshake_timeout: Duration,
    /// A connection without a stream for this long gets GOAWAY.
    #[arg(long, env = "ECS_GATEWAY_MAX_CONNECTION_IDLE", default_value = "5m", value_parser = duration_in(SEC, HOUR * 24))]
    pub max_connection_idle: Duration,
    /// A connection gets GOAWAY at this age (±10%); calls in flight finish.
    #[arg(long, env = "ECS_GATEWAY_MAX_CONNECTION_AGE", default_value = "30m", value_parser = duration_in(SEC, HOUR * 24 * 30))]
    pub max_connection_age: Duration,
    /// After the max-age GOAWAY, how long calls in flight may take before the connection is
    /// closed under them (a stream whose caller stopped reading included).
    #[arg(long, env = "ECS_GATEWAY_MAX_CONNECTION_AGE_GRACE", default_value = "10m", value_parser = duration_in(SEC, HOUR * 24))]
    pub max_connection_age_grace: Duration,
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
    /// An ECS action's quota for the account, per region, as Alibaba states it: ACTION=COUNT/PERIOD
    /// (repeatable; comma-separated in the variable). Given ones replace the default of their
    /// action; StopInvocation's published 1000/60s applies unless replaced. DescribeInvocations
    /// has no published figure and no default: read yours in Quota Center. Kept fleet-wide with
    /// --redis-url, else per replica.
    #[arg(
        long = "api-quota",
        env = "ECS_GATEWAY_API_QUOTA",
        value_delimiter = ','
    )]
    pub api_quotas: Vec<ApiQuota>,
    /// The share of each --api-quota the gateways may spend (0.01 to 1); the rest is left to the
    /// console and the account's other tools.
    #[arg(long, env = "ECS_GATEWAY_QUOTA_SHARE", default_value = "1", value_parser = quota::share)]
    pub quota_share: f64,
    /// Calls per second to ECS for the whole fleet, per credential and region, every action
    /// together (burst: as many), within the quotas; retries count. Needs --redis-url.
    #[arg(long, env = "ECS_GATEWAY_FLEET_RATE")]
    pub fleet_rate: Option<Rate>,
    /// Longest a call waits on Redis for a rate decision before this replica decides alone.
    #[arg(long, env = "ECS_GATEWAY_REDIS_TIMEOUT", default_value = "5ms", value_parser = duration_in(MS, SEC * 10))]
    pub redis_timeout: Duration,
    /// How often the TLS, token and policy files are checked for changes.
    #[arg(long, env = "ECS_GATEWAY_RELOAD_INTERVAL", default_value = "5s", value_parser = duration_in(MS * 100, HOUR))]
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

/// A humantime duration from `min` to `max`: every duration setting has bounds, so that no value
/// an operator can type makes the gateway spin (`--reload-interval 1ns`) or overflow arithmetic
/// (`--max-connection-age 500000000000y`).
fn duration_in(
    min: Duration,
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |value| {
        let rule = || {
            let show = |d: Duration| humantime::format_duration(d).to_string();
            if min.is_zero() {
                format!("must be a duration of at most {}, such as 5s", show(max))
            } else {
                format!(
                    "must be a duration greater than zero, from {} to {}, such as 5s",
                    show(min),
                    show(max)
                )
            }
        };
        match humantime::parse_duration(value) {
            Ok(duration) if (min..=max).contains(&duration) => Ok(duration),
            Ok(_) => Err(rule()),
            Err(e) => Err(format!("{} ({e})", rule())),
        }
    }
}

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

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
        Ok(r) if (0.0..=1.0).contains(&r) => crate::aliyun::retry_budget::exact_ratio(r).map_err(|below| {
            format!(
                "must be 0 or 1/n for a whole n up to 1000 (1, 0.5, 0.25, 0.2, 0.1, …), the ratios the retry budget keeps exactly; {r} would allow more retries than it says: use {below}"
            )
        }),
        _ => Err("must be a number from 0 to 1, such as 0.2".to_owned()),
    }
}

fn parse_regions(value: &str) -> Result<Regions, String> {
    Regions::parse(value).map_err(|e| e.to_string())
}

/// A value that may hold a secret (a password in a URL): `Debug` hides it, and since it is parsed
/// after clap, no usage error echoes it.
#[derive(Clone)]
pub struct Concealed(pub(super) String);

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
pub(super) fn path_setting(value: &Option<PathBuf>) -> Option<PathBuf> {
    value.clone().filter(|p| !p.as_os_str().is_empty())
}

//! Parsed flags become plain settings here, with every check — cross-field ones included — made
//! before the gateway touches a file, a socket or the network (linkerd's "parse everything, then
//! build"). Settings are data; the handles made from them at start are [`super::Gateway::build`]'s.

use std::net::SocketAddr;
use std::time::Duration;

use url::Url;

use super::cli::{Concealed, GatewayArgs, NOT_BUILT, Switch, path_setting};
use crate::aliyun::catalog::Network;
use crate::aliyun::client::ClientSettings;
use crate::aliyun::dns::DnsConfig;
use crate::aliyun::endpoint::{Endpoint, EndpointError};
use crate::aliyun::retry::RetryPolicy;
use crate::api::service::ServiceSettings;
use crate::auth::files::SecurityFiles;
use crate::limit::fleet::{RedisSettings, RedisUrl};
use crate::limit::quota::{self, ApiQuota, Quotas};
use crate::limit::rate::Rate;
use crate::server::ServerSettings;
use crate::server::connection::ConnectionSettings;
use crate::server::tls::TlsFiles;
use crate::wait::WaitSettings;

/// Everything the gateway needs to start, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The gRPC address.
    pub listen: SocketAddr,
    /// `--dev`: an in-process simulator stands in for ECS; `None` in production.
    pub dev: Option<DevSettings>,
    /// The ECS client.
    pub client: ClientSettings,
    /// The gRPC handler.
    pub service: ServiceSettings,
    /// The gRPC server.
    pub server: ServerSettings,
    /// The TLS, token and policy files.
    pub security: SecurityFiles,
    /// Serve a non-loopback address without authentication.
    pub allow_unauthenticated: bool,
    /// Where temporary credentials are fetched from.
    pub credential_endpoints: CredentialEndpoints,
    /// The Prometheus address, when metrics are on.
    pub metrics_listen: Option<SocketAddr>,
    /// The plaintext address serving only `grpc.health.v1`, for probes that cannot speak TLS.
    pub health_listen: Option<SocketAddr>,
    /// The Redis the fleet shares, and the fleet's upstream rate.
    pub fleet: Option<FleetSettings>,
    /// The gateways' share of the account's quota of each action.
    pub quotas: Quotas,
    /// How often watched files are checked for changes.
    pub reload_interval: Duration,
    /// The network `--network` named (reported; the endpoint already follows it).
    pub network: Network,
    /// Whether `--endpoint` overrides the SDKs' hosts.
    pub endpoint_overridden: bool,
}

/// What `--dev` changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DevSettings {
    /// Fetch the credential from the simulator's metadata service, issued for this long.
    pub credential_lifetime: Option<Duration>,
}

/// The STS and metadata-service endpoints of the credential chain.
#[derive(Debug, Clone)]
pub struct CredentialEndpoints {
    /// Replaces every STS URL when set.
    pub sts: Option<Url>,
    /// The instance metadata service.
    pub metadata: Url,
}

/// The fleet's shared limiter.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// Where the buckets are kept.
    pub redis: RedisSettings,
    /// Calls per second to ECS for the whole fleet, when limited.
    pub rate: Option<Rate>,
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
    /// `--dev` or the `simulator` subcommand in a build without them.
    #[error("{0}")]
    DevNotBuilt(&'static str),
}

impl TryFrom<&GatewayArgs> for Settings {
    type Error = ConfigError;

    fn try_from(args: &GatewayArgs) -> Result<Self, ConfigError> {
        let dev = args.dev.then_some(DevSettings {
            credential_lifetime: args.dev_credential_lifetime,
        });
        if dev.is_some() && !cfg!(feature = "dev") {
            return Err(ConfigError::DevNotBuilt(NOT_BUILT));
        }
        let endpoint_override = args.endpoint.as_deref().filter(|e| !e.trim().is_empty());
        let network = Network::from(args.network);
        let endpoint = match endpoint_override {
            Some(template) => Endpoint::parse(template)?,
            None => Endpoint::Sdk(network),
        };
        // With --dev the endpoint is the in-process simulator's, whatever was set.
        if dev.is_none() {
            endpoint.check_transport(args.allow_insecure_endpoint)?;
        }
        let security = security_files(args)?;
        let settings = Settings {
            listen: args.listen,
            dev,
            client: client_settings(args, endpoint),
            service: ServiceSettings {
                max_concurrent_requests: args.max_concurrent_requests as usize,
                max_call_duration: args.max_call_duration,
                regions: args.regions.clone().unwrap_or_default(),
                // At most 4 MiB by the flag's range, so the cast cannot truncate.
                max_request_bytes: args.max_request_bytes as usize,
                reflection: args.reflection == Switch::On,
                wait: WaitSettings {
                    max_instances: args.max_wait_instances as usize,
                    max_wait: args.max_wait,
                    max_concurrent: args.max_concurrent_waits as usize,
                    max_per_caller: args.max_waits_per_caller as usize,
                    max_invocations: args.max_polled_invocations as usize,
                    ..WaitSettings::default()
                },
            },
            server: ServerSettings {
                max_connections: args.max_connections as usize,
                connection: ConnectionSettings {
                    handshake_timeout: args.handshake_timeout,
                    max_idle: args.max_connection_idle,
                    max_age: args.max_connection_age,
                    max_age_grace: args.max_connection_age_grace,
                    max_concurrent_streams: args.max_concurrent_streams,
                    ..ConnectionSettings::default()
                },
                drain_delay: args.drain_delay,
                shutdown_grace: args.shutdown_grace,
            },
            security,
            allow_unauthenticated: args.allow_unauthenticated,
            credential_endpoints: CredentialEndpoints {
                sts: args.sts_endpoint.clone(),
                metadata: args.metadata_endpoint.clone(),
            },
            metrics_listen: args.metrics_listen,
            health_listen: args.health_listen,
            fleet: fleet_settings(args)?,
            quotas: quotas(args),
            reload_interval: args.reload_interval,
            network,
            endpoint_overridden: endpoint_override.is_some(),
        };
        settings.check_protected(settings.listen)?;
        Ok(settings)
    }
}

impl Settings {
    /// Refuses to serve a non-loopback `addr` to unauthenticated callers unless allowed to.
    pub fn check_protected(&self, addr: SocketAddr) -> Result<(), ConfigError> {
        if self.security.authenticates()
            || addr.ip().to_canonical().is_loopback()
            || self.allow_unauthenticated
        {
            return Ok(());
        }
        Err(ConfigError::Unprotected { addr })
    }
}

/// ECS client settings derived from the flags.
fn client_settings(args: &GatewayArgs, endpoint: Endpoint) -> ClientSettings {
    let max_concurrent = args.max_concurrent_requests as usize;
    ClientSettings {
        endpoint,
        connect_timeout: args.connect_timeout,
        attempt_timeout: args.upstream_timeout,
        retry: RetryPolicy {
            max_retries: args.max_retries,
            ..RetryPolicy::default()
        },
        // Enough idle connections for every admitted call to reuse one.
        pool_max_idle_per_host: max_concurrent.min(1024),
        dns: DnsConfig::System,
        retry_budget: args.retry_budget,
        signature: args.signature_version,
    }
}

/// The default quotas, then those given (which replace a default of their action), cut to the
/// share.
fn quotas(args: &GatewayArgs) -> Quotas {
    let defaults = quota::DEFAULT_QUOTAS
        .split(',')
        .filter_map(|q| q.parse::<ApiQuota>().ok());
    let all: Vec<ApiQuota> = defaults.chain(args.api_quotas.iter().copied()).collect();
    Quotas::new(&all, args.quota_share)
}

/// Where the fleet's rates are kept, when --redis-url is set.
fn fleet_settings(args: &GatewayArgs) -> Result<Option<FleetSettings>, ConfigError> {
    let password_file = path_setting(&args.redis_password_file);
    let url = args
        .redis_url
        .as_ref()
        .filter(|u: &&Concealed| !u.0.trim().is_empty());
    let Some(url) = url else {
        return match (args.fleet_rate, password_file) {
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
    Ok(Some(FleetSettings {
        redis: RedisSettings {
            url,
            password_file,
            timeout: args.redis_timeout,
        },
        rate: args.fleet_rate,
    }))
}

/// The TLS, token and policy files, checked for settings that cannot work together.
fn security_files(args: &GatewayArgs) -> Result<SecurityFiles, ConfigError> {
    let tls = match (path_setting(&args.tls_cert), path_setting(&args.tls_key)) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err(ConfigError::TlsIncomplete),
    };
    let client_ca = path_setting(&args.tls_client_ca);
    let tokens = path_setting(&args.auth_tokens_file);
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
        policy: path_setting(&args.policy),
    };
    if files.policy.is_some() && !files.authenticates() {
        return Err(ConfigError::PolicyWithoutAuthentication);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use clap::Parser as _;

    use super::*;
    use crate::aliyun::regions::Regions;
    use crate::app::cli::Cli;

    fn settings(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut argv = vec!["ecs-gateway"];
        argv.extend_from_slice(args);
        Settings::try_from(&Cli::try_parse_from(argv).unwrap().gateway)
    }

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
        let s = Settings::try_from(&g).unwrap();
        assert_eq!(s.client.endpoint, Endpoint::default());
        assert_eq!(s.service.regions, Regions::public());
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
        let all = Settings::try_from(&good).unwrap();
        assert!(!format!("{all:?}").contains("hunter2"));
        let fleet = all.fleet.unwrap();
        let redis = fleet.redis;
        assert!(!format!("{redis:?}").contains("hunter2"));
        assert_eq!(redis.url.to_string(), "redis://redis.internal:6380/1");
        assert_eq!(redis.timeout, Duration::from_millis(5));
        assert_eq!(fleet.rate.unwrap().per_second(), 20.0);
        for bad in [
            "rediss://:hunter2@redis.internal",
            "hunter2",
            "redis://:hunter2@",
        ] {
            let error = Settings::try_from(&parse(bad)).unwrap_err().to_string();
            assert!(
                error.starts_with("--redis-url / ECS_GATEWAY_REDIS_URL must be"),
                "{error}"
            );
            assert!(!error.contains("hunter2"), "{error}");
        }
        assert!(settings(&[]).unwrap().fleet.is_none());
        for (args, named) in [
            (&["--fleet-rate", "20"][..], "--fleet-rate"),
            (
                &["--redis-password-file", "/run/pw"][..],
                "--redis-password-file",
            ),
        ] {
            let error = settings(args).unwrap_err().to_string();
            assert!(error.starts_with(named), "{error}");
            assert!(error.contains("needs --redis-url"), "{error}");
        }
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
            ["--retry-budget", "0.6"],
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
        let parse = |args: &[&str]| settings(args).unwrap().client.endpoint;
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
        assert_eq!(
            settings(&["--endpoint", ""]).unwrap().client.endpoint,
            Endpoint::default()
        );
    }

    #[test]
    fn empty_security_paths_mean_unset_and_combinations_that_cannot_work_are_refused() {
        let parse = |args: &[&str]| settings(args).map(|s| s.security);
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
        let open = settings(&[]).unwrap();
        let any: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        for loopback in [
            "127.0.0.1:1",
            "127.8.9.10:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            open.check_protected(loopback.parse().unwrap()).unwrap();
        }
        assert!(matches!(
            open.check_protected(any),
            Err(ConfigError::Unprotected { .. })
        ));
        assert!(open.check_protected("[::]:1".parse().unwrap()).is_err());
        // The listen address is checked with the rest, before anything starts.
        assert!(matches!(
            settings(&["--listen", "0.0.0.0:50051"]),
            Err(ConfigError::Unprotected { .. })
        ));
        let tokens = settings(&["--auth-tokens-file", "t"]).unwrap();
        tokens.check_protected(any).unwrap();
        let allowed = settings(&["--allow-unauthenticated"]).unwrap();
        allowed.check_protected(any).unwrap();
    }

    #[test]
    fn zero_concurrency_is_refused() {
        assert!(Cli::try_parse_from(["ecs-gateway", "--max-concurrent-requests", "0"]).is_err());
    }

    #[test]
    fn dev_tooling_follows_the_dev_feature() {
        let too_short = ["ecs-gateway", "--dev", "--dev-credential-lifetime", "1s"];
        let refused = Cli::try_parse_from(too_short).unwrap_err().to_string();
        assert!(refused.contains("from 5s to 12h"), "{refused}");
        let dev = settings(&["--dev", "--dev-credential-lifetime", "5s"]);
        if cfg!(feature = "dev") {
            let dev = dev.unwrap().dev.unwrap();
            assert_eq!(dev.credential_lifetime, Some(Duration::from_secs(5)));
        } else {
            let error = dev.unwrap_err().to_string();
            assert!(error.contains("build with the `dev` feature"), "{error}");
        }
        assert!(settings(&[]).unwrap().dev.is_none());
    }
}

//! Dev tooling, built only with the `dev` feature (on by default): `--dev`, which starts the
//! embedded ECS simulator in-process and signs with its demo credential, and the `simulator`
//! subcommand. This is the one product file that names the simulator; without the feature both are
//! refused with [`super::cli::NOT_BUILT`], and no demo key is in the binary.

#[cfg(feature = "dev")]
pub use with_simulator::run_simulator;
#[cfg(feature = "dev")]
pub(crate) use with_simulator::start;
#[cfg(not(feature = "dev"))]
pub use without_simulator::run_simulator;
#[cfg(not(feature = "dev"))]
pub(crate) use without_simulator::start;

#[cfg(feature = "dev")]
mod with_simulator {
    use std::future::Future;
    use std::net::SocketAddr;

    use tokio::net::TcpListener;

    use super::super::cli::{QuotaHeaders, SimulatorArgs};
    use super::super::error::RunError;
    use super::super::settings::DevSettings;
    use crate::aliyun::credentials::credential::Credential;
    use crate::aliyun::credentials::ecs_metadata::EcsRamRole;
    use crate::aliyun::credentials::fetch::{FetchError, Fetcher};
    use crate::aliyun::credentials::refresh::CredentialSupply;
    use crate::aliyun::credentials::source::Source;
    use crate::aliyun::endpoint::Endpoint;
    use crate::simulator::faults::Faults;
    use crate::simulator::{
        self, DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET, Simulator, SimulatorConfig,
        ThrottleHeaders,
    };

    /// Starts the in-process simulator; the endpoint to send to and the credential to sign with.
    pub(crate) async fn start(dev: &DevSettings) -> Result<(Endpoint, CredentialSupply), RunError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(RunError::Simulator)?;
        let addr = listener.local_addr().map_err(RunError::Simulator)?;
        let mut config = SimulatorConfig::demo();
        if let Some(lifetime) = dev.credential_lifetime {
            config.sts_lifetime = lifetime;
        }
        let demo = config.credential.clone();
        tokio::spawn(simulator::serve(listener, config, std::future::pending()));
        let endpoint = Endpoint::parse(&format!("http://{addr}/"))
            .expect("a loopback http URL is a valid endpoint");
        tracing::info!(simulator = %addr, "dev mode: forwarding to the in-process ECS simulator with demo credentials");
        let supply = match dev.credential_lifetime {
            None => CredentialSupply::fixed(demo),
            Some(_) => refreshing(addr).await?,
        };
        Ok((endpoint, supply))
    }

    /// `--dev-credential-lifetime`: the whole refresh path, against the simulator's metadata
    /// service.
    async fn refreshing(addr: SocketAddr) -> Result<CredentialSupply, RunError> {
        let metadata =
            url::Url::parse(&format!("http://{addr}/")).map_err(|e| FetchError(e.to_string()))?;
        let fetcher = Fetcher::new(None, metadata)?;
        let source = Source::EcsRamRole(EcsRamRole {
            role_name: None,
            imdsv1_disabled: true,
        });
        let first = source.fetch(&fetcher).await?;
        super::super::credentials::log_credential(
            "dev simulator's instance metadata service",
            &source,
            first.expiration(),
        );
        Ok(CredentialSupply::refreshing(source, first, fetcher))
    }

    /// `ecs-gateway simulator`: checks signatures against the `ALIBABA_CLOUD_*` credential, or the
    /// demo one when unset (printed at start).
    pub async fn run_simulator(
        args: SimulatorArgs,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RunError> {
        let credential = match Credential::from_env() {
            Ok(credential) => credential,
            Err(_) => {
                tracing::info!(
                    access_key_id = DEMO_ACCESS_KEY_ID,
                    access_key_secret = DEMO_ACCESS_KEY_SECRET,
                    "no ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET set: accepting the demo credential"
                );
                simulator::demo_credential()
            }
        };
        let config = SimulatorConfig {
            faults: Faults {
                latency: args.latency,
                error_500_rate: args.error_500_rate,
                error_503_rate: args.error_503_rate,
                throttle_rps: args.throttle_rps,
                reset_rate: args.reset_rate,
            },
            sts_lifetime: args.sts_lifetime,
            oidc_token: args.oidc_token.clone(),
            stop_delay: args.stop_delay,
            ..SimulatorConfig::with_credential(credential)
        };
        let listener = TcpListener::bind(args.listen)
            .await
            .map_err(RunError::Simulator)?;
        let addr = listener.local_addr().map_err(RunError::Simulator)?;
        tracing::info!(%addr, faults = ?config.faults, quotas = ?args.quotas, "ECS simulator listening");
        let simulator = Simulator::new(config);
        let headers = match args.quota_headers {
            QuotaHeaders::Acs => ThrottleHeaders::AcsRetryAfter,
            QuotaHeaders::Ratelimit => ThrottleHeaders::RateLimitUser,
            QuotaHeaders::Silent => ThrottleHeaders::Silent,
        };
        for quota in &args.quotas {
            simulator.set_quota(quota.action, quota.calls, quota.period, headers);
        }
        simulator.serve(listener, shutdown).await;
        Ok(())
    }
}

#[cfg(not(feature = "dev"))]
mod without_simulator {
    use std::future::Future;

    use super::super::cli::NOT_BUILT;
    use super::super::cli::SimulatorArgs;
    use super::super::error::RunError;
    use super::super::settings::{ConfigError, DevSettings};
    use crate::aliyun::credentials::refresh::CredentialSupply;
    use crate::aliyun::endpoint::Endpoint;

    /// Refused: this build has no simulator.
    pub(crate) async fn start(_: &DevSettings) -> Result<(Endpoint, CredentialSupply), RunError> {
        Err(ConfigError::DevNotBuilt(NOT_BUILT).into())
    }

    /// Refused: this build has no simulator.
    pub async fn run_simulator(
        _: SimulatorArgs,
        _: impl Future<Output = ()>,
    ) -> Result<(), RunError> {
        Err(ConfigError::DevNotBuilt(NOT_BUILT).into())
    }
}

//! The composition root: from settings to a running gateway.

pub mod cli;
mod error;
mod signal;

pub use error::RunError;
pub use signal::shutdown_signal;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::aliyun::client::EcsClient;
use crate::aliyun::credential::{ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_SECURITY_TOKEN};
use crate::aliyun::credentials::chain;
use crate::aliyun::credentials::ecs_metadata::EcsRamRole;
use crate::aliyun::credentials::env::Env;
use crate::aliyun::credentials::fetch::{FetchError, Fetcher};
use crate::aliyun::credentials::refresh::{CredentialSupply, describe_expiration};
use crate::aliyun::credentials::source::Source;
use crate::api::service::CloudAssistant;
use crate::app::cli::{ConfigError, GatewayConfig};
use crate::auth::Access;
use crate::limit::fleet::FleetStore;
use crate::limit::upstream::UpstreamQuota;
use crate::{aliyun, observe, server, simulator};

/// Where the gateway's credential comes from.
#[derive(Debug)]
pub enum CredentialsFrom {
    /// Alibaba's default chain, reading these variables (the process environment in `main`).
    Chain(Env),
    /// This supply, as it is (tests).
    Given(CredentialSupply),
}

/// Runs the gateway on `listener` until `shutdown` resolves. With `config.dev`, an in-process
/// simulator with demo credentials stands in for ECS; otherwise the credential comes from
/// `credentials`, and the start fails when there is none.
pub async fn run(
    config: GatewayConfig,
    credentials: CredentialsFrom,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let mut client_settings = config.client_settings()?;
    let credentials = if config.dev {
        let ignored = ignored_in_dev(&config, matches!(credentials, CredentialsFrom::Given(_)));
        if !ignored.is_empty() {
            tracing::warn!(
                ?ignored,
                "--dev ignores these settings: calls go to the in-process simulator with demo credentials"
            );
        }
        let sim_listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let sim_addr = sim_listener.local_addr()?;
        let mut sim_config = simulator::SimulatorConfig::demo();
        if let Some(lifetime) = config.dev_credential_lifetime {
            sim_config.sts_lifetime = lifetime.max(Duration::from_secs(5));
        }
        let demo = sim_config.credential.clone();
        tokio::spawn(simulator::serve(
            sim_listener,
            sim_config,
            std::future::pending(),
        ));
        client_settings.endpoint =
            aliyun::endpoint::Endpoint::parse(&format!("http://{sim_addr}/"))
                .map_err(ConfigError::from)?;
        tracing::info!(simulator = %sim_addr, "dev mode: forwarding to the in-process ECS simulator with demo credentials");
        match config.dev_credential_lifetime {
            None => CredentialSupply::fixed(demo),
            Some(_) => dev_refreshing(sim_addr).await?,
        }
    } else {
        client_settings
            .endpoint
            .check_transport(config.allow_insecure_endpoint)
            .map_err(ConfigError::from)?;
        if config.endpoint_override().is_some()
            && config.network != aliyun::catalog::Network::Public
        {
            tracing::warn!(
                network = ?config.network,
                "--endpoint overrides the endpoint, so --network is ignored (as in Alibaba's SDKs)"
            );
        }
        match credentials {
            CredentialsFrom::Given(supply) => supply,
            CredentialsFrom::Chain(env) => from_chain(&config, &env).await?,
        }
    };
    let ready = credentials.available();
    let metrics = config
        .metrics_listen
        .map(|_| observe::metrics::Metrics::new(Some(credentials.clone())));
    let redis = config.redis_settings()?;
    let fleet = match &redis {
        None => None,
        Some(redis) => Some(FleetStore::connect(redis.clone(), metrics.clone()).await?),
    };
    if let (Some(rate), Some(store)) = (config.fleet_rate, &fleet) {
        client_settings.admission = Some(Arc::new(UpstreamQuota::new(rate, store.clone())));
    }
    let client = EcsClient::new(credentials, client_settings)?;
    let addr = listener.local_addr()?;
    let files = config.security_files()?;
    config.check_protected(addr, files.authenticates())?;
    let mut service_settings = config.service_settings();
    let mut server_settings = config.server_settings();
    server_settings.ready = Some(ready);
    server_settings.metrics = metrics.clone();
    service_settings.metrics = metrics.clone();
    let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if let (Some(addr), Some(metrics)) = (config.metrics_listen, metrics) {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|error| RunError::MetricsListen { addr, error })?;
        tracing::info!(addr = %listener.local_addr()?, "metrics listening (GET /metrics)");
        tokio::spawn(observe::exporter::serve(listener, metrics, async {
            let _ = metrics_stopped.await;
        }));
    }
    service_settings.access =
        Access::load(&files, &service_settings.regions, config.reload_interval).await?;
    service_settings.access.fleet = fleet.clone();
    if let Some(tls_files) = files.tls.clone() {
        server_settings.tls = Some(server::tls::watch(tls_files, config.reload_interval).await?);
    }
    let service = CloudAssistant::new(client, service_settings);
    if !files.authenticates() && !addr.ip().to_canonical().is_loopback() {
        tracing::warn!(%addr, "serving without authentication (--allow-unauthenticated): anyone who can reach this address can stop commands");
    }
    tracing::info!(
        %addr,
        tls = files.tls.is_some(),
        client_certificates = files.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        tokens = files.tokens.is_some(),
        policy = files.policy.is_some(),
        network = ?config.network,
        endpoint_override = config.endpoint_override().is_some() || config.dev,
        redis = redis.as_ref().map(|r| tracing::field::display(&r.url)),
        fleet_rate = config.fleet_rate.map(|r| r.per_second()),
        "ecs-gateway listening"
    );
    if config.dev && files.tls.is_none() && !files.authenticates() {
        tracing::info!(
            "try: grpcurl -plaintext -d '{{\"region_id\":\"cn-hangzhou\",\"invoke_id\":\"t-demo0001\"}}' {addr} ecsgateway.v1.CloudAssistantService/StopInvocation"
        );
    }
    server::serve(listener, service, server_settings, shutdown).await?;
    drop(metrics_stop);
    Ok(())
}

/// The first credential the default chain finds, refreshed in the background when it expires.
async fn from_chain(config: &GatewayConfig, env: &Env) -> Result<CredentialSupply, RunError> {
    let fetcher = Fetcher::new(
        config.sts_endpoint.clone(),
        config.metadata_endpoint.clone(),
    )?;
    let found = chain::resolve(env, &fetcher).await?;
    for (step, why) in &found.passed_over {
        tracing::warn!(source = step.name(), reason = %why, "credential source configured but passed over");
    }
    log_credential(
        found.step.name(),
        &found.source,
        found.credential.expiration(),
    );
    Ok(if found.credential.expiration().is_some() {
        CredentialSupply::refreshing(found.source, found.credential, fetcher)
    } else {
        CredentialSupply::fixed(found.credential)
    })
}

/// `--dev-credential-lifetime`: the whole refresh path, against the simulator's metadata service.
async fn dev_refreshing(sim_addr: std::net::SocketAddr) -> Result<CredentialSupply, RunError> {
    let metadata =
        url::Url::parse(&format!("http://{sim_addr}/")).map_err(|e| FetchError(e.to_string()))?;
    let fetcher = Fetcher::new(None, metadata)?;
    let source = Source::EcsRamRole(EcsRamRole {
        role_name: None,
        imdsv1_disabled: true,
    });
    let first = source.fetch(&fetcher).await?;
    log_credential(
        "dev simulator's instance metadata service",
        &source,
        first.expiration(),
    );
    Ok(CredentialSupply::refreshing(source, first, fetcher))
}

/// Says where the credential came from and when it expires; never any part of it.
fn log_credential(from: &str, source: &Source, expiration: Option<std::time::SystemTime>) {
    tracing::info!(
        source = from,
        provider = source.kind(),
        expiration = %describe_expiration(expiration),
        "credential found"
    );
}

/// The settings `--dev` overrides, so that an operator who set them hears that they are unused.
fn ignored_in_dev(config: &GatewayConfig, credential_given: bool) -> Vec<&'static str> {
    let mut ignored: Vec<&'static str> =
        [ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_SECURITY_TOKEN]
            .into_iter()
            .filter(|name| std::env::var_os(name).is_some())
            .collect();
    if credential_given {
        ignored.push("credential");
    }
    if config.endpoint_override().is_some() {
        ignored.push("--endpoint / ECS_GATEWAY_ENDPOINT");
    }
    if config.network != aliyun::catalog::Network::Public {
        ignored.push("--network / ECS_GATEWAY_NETWORK");
    }
    ignored
}

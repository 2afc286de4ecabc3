//! The composition root (zero2prod's `Application::build`, linkerd's `Config::build`): checked
//! [`Settings`] and a credential source in, a bound, ready [`Gateway`] out; `main` and the tests
//! start the gateway the same way. Every handle — credentials, metrics, the fleet store, the
//! watched files, the ECS client — is made here and passed down as an argument.

pub mod cli;
mod credentials;
mod dev;
mod error;
pub mod settings;
mod signal;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use self::dev::run_simulator;
pub use self::error::RunError;
pub use self::settings::{ConfigError, Settings};
pub use self::signal::shutdown_signal;
use crate::aliyun::catalog::Network;
use crate::aliyun::client::{Admission, EcsClient, Sources};
use crate::aliyun::credentials::env::Env;
use crate::aliyun::credentials::refresh::CredentialSupply;
use crate::api::routes;
use crate::api::service::CloudAssistant;
use crate::auth::Access;
use crate::limit::fleet::FleetStore;
use crate::limit::upstream::UpstreamQuota;
pub use crate::observe::log::{LogFormat, Telemetry, init as init_logging};
use crate::observe::metrics::Metrics;
use crate::server::busy::Busy;
use crate::server::{self, Runtime, Served};

/// Where the gateway's credential comes from.
#[derive(Debug)]
pub enum CredentialsFrom {
    /// Alibaba's default chain, reading these variables (the process environment in `main`).
    Chain(Env),
    /// This supply, as it is (tests).
    Given(CredentialSupply),
    /// This ECS client, with the credential it holds: tests that pin its clock, nonces or quota.
    Client(EcsClient),
}

/// A gateway that is built, bound and ready to serve.
#[derive(Debug)]
pub struct Gateway {
    ports: server::Ports,
    addr: SocketAddr,
    served: Served,
    settings: server::ServerSettings,
    runtime: Runtime,
    exporter: Option<TcpListener>,
    handler: CloudAssistant,
}

impl Gateway {
    /// Makes every handle `settings` call for, in order — the dev simulator or the credential
    /// chain, metrics, the fleet store, the ECS client, the watched files — then binds the gRPC
    /// address last, so that it accepts only once the gateway can serve.
    pub async fn build(settings: Settings, credentials: CredentialsFrom) -> Result<Self, RunError> {
        let mut client_settings = settings.client.clone();
        let (supply, client) = match &settings.dev {
            Some(dev) => {
                let ignored = ignored_in_dev(&settings, &credentials);
                if !ignored.is_empty() {
                    tracing::warn!(
                        ?ignored,
                        "--dev ignores these settings: calls go to the in-process simulator with demo credentials"
                    );
                }
                let (endpoint, supply) = dev::start(dev).await?;
                client_settings.endpoint = endpoint;
                (supply, None)
            }
            None => {
                if settings.endpoint_overridden && settings.network != Network::Public {
                    tracing::warn!(
                        network = ?settings.network,
                        "--endpoint overrides the endpoint, so --network is ignored (as in Alibaba's SDKs)"
                    );
                }
                match credentials {
                    CredentialsFrom::Chain(env) => {
                        (credentials::from_chain(&settings, &env).await?, None)
                    }
                    CredentialsFrom::Given(supply) => (supply, None),
                    CredentialsFrom::Client(client) => (client.credentials().clone(), Some(client)),
                }
            }
        };
        let metrics = settings
            .metrics_listen
            .map(|_| Metrics::new(Some(supply.clone())));
        let fleet = match &settings.fleet {
            None => None,
            Some(fleet) => Some(FleetStore::connect(fleet.redis.clone(), metrics.clone()).await?),
        };
        let client = match client {
            Some(client) => client,
            None => {
                let rate = settings.fleet.as_ref().and_then(|f| f.rate);
                let quota = UpstreamQuota::new(
                    settings.quotas.clone(),
                    rate,
                    fleet.clone(),
                    metrics.clone(),
                );
                let sources = Sources {
                    admission: Some(Arc::new(quota) as Arc<dyn Admission>),
                    ..Sources::default()
                };
                EcsClient::with_sources(supply.clone(), client_settings, sources)?
            }
        };
        // Every ECS call — unary, a wait's stops and reads, polls — is counted where it is made.
        let client = match &metrics {
            Some(metrics) => client.observed_by(Arc::new(metrics.clone())),
            None => client,
        };
        let files = &settings.security;
        let mut access =
            Access::load(files, &settings.service.regions, settings.reload_interval).await?;
        access.fleet = fleet;
        let tls = match files.tls.clone() {
            Some(tls) => {
                Some(server::tls::watch(tls, settings.reload_interval, metrics.clone()).await?)
            }
            None => None,
        };
        let busy = Busy::default();
        let service = CloudAssistant::new(
            client,
            settings.service.clone(),
            access,
            metrics.clone(),
            busy.clone(),
        );
        let served = routes::routes(service.clone())?;
        // Every port binds last, once the gateway can serve; the gRPC port last of all.
        let exporter = match settings.metrics_listen {
            None => None,
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|error| RunError::MetricsListen { addr, error })?,
            ),
        };
        let health = match settings.health_listen {
            None => None,
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|error| RunError::HealthListen { addr, error })?,
            ),
        };
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|error| RunError::Listen {
                    addr: settings.listen,
                    error,
                })?;
        let addr = listener.local_addr().map_err(|error| RunError::Listen {
            addr: settings.listen,
            error,
        })?;
        let gateway = Self {
            ports: server::Ports {
                grpc: listener,
                health,
            },
            addr,
            served,
            settings: settings.server.clone(),
            runtime: Runtime {
                tls,
                ready: Some(supply.available()),
                metrics,
                busy,
            },
            exporter,
            handler: service,
        };
        gateway.announce(&settings);
        Ok(gateway)
    }

    /// The address the gRPC server is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address `/metrics` is served on, when metrics are on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.exporter.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// What the gateway counts, when metrics are on; tests read it directly.
    #[doc(hidden)]
    pub fn metrics(&self) -> Option<&Metrics> {
        self.runtime.metrics.as_ref()
    }

    /// Serves until `shutdown` resolves, then drains (see [`server::serve`]); waiting streams end
    /// at once, so that their callers resume on another replica instead of holding the drain.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) {
        let handler = self.handler.clone();
        let shutdown = async move {
            shutdown.await;
            handler.drain();
        };
        let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        if let (Some(listener), Some(metrics)) = (self.exporter, self.runtime.metrics.clone()) {
            tokio::spawn(crate::server::scrape::serve(listener, metrics, async {
                let _ = metrics_stopped.await;
            }));
        }
        server::serve(
            self.ports,
            self.served,
            self.settings,
            self.runtime,
            shutdown,
        )
        .await;
        drop(metrics_stop);
    }

    /// The start-up lines: what is served, how, and to whom.
    fn announce(&self, settings: &Settings) {
        if let Some(addr) = self.metrics_addr() {
            tracing::info!(%addr, "metrics listening (GET /metrics)");
        }
        if let Some(addr) = self.ports.health.as_ref().and_then(|l| l.local_addr().ok()) {
            tracing::info!(%addr, "health listening (plaintext, grpc.health.v1 only)");
        }
        let addr = self.addr;
        let files = &settings.security;
        if !files.authenticates() && !addr.ip().to_canonical().is_loopback() {
            tracing::warn!(%addr, "serving without authentication (--allow-unauthenticated): anyone who can reach this address can stop commands");
        }
        tracing::info!(
            %addr,
            tls = files.tls.is_some(),
            client_certificates = files.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
            tokens = files.tokens.is_some(),
            policy = files.policy.is_some(),
            network = ?settings.network,
            signature = settings.client.signature.name(),
            endpoint_override = settings.endpoint_overridden || settings.dev.is_some(),
            redis = settings.fleet.as_ref().map(|f| tracing::field::display(&f.redis.url)),
            fleet_rate = settings.fleet.as_ref().and_then(|f| f.rate).map(|r| r.per_second()),
            api_quotas = %settings.quotas,
            quotas_kept = if settings.fleet.is_some() { "fleet-wide, in Redis" } else { "by this replica alone (no --redis-url): each replica spends the whole share" },
            "ecs-gateway listening"
        );
        if settings.dev.is_some() && files.tls.is_none() && !files.authenticates() {
            tracing::info!(
                "try: grpcurl -plaintext -d '{{\"region_id\":\"cn-hangzhou\",\"invoke_id\":\"t-demo0001\"}}' {addr} ecsgateway.v1.CloudAssistantService/StopInvocation"
            );
        }
    }
}

/// The settings `--dev` overrides, so that an operator who set them hears that they are unused.
fn ignored_in_dev(settings: &Settings, credentials: &CredentialsFrom) -> Vec<&'static str> {
    use crate::aliyun::credentials::credential::{
        ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_SECURITY_TOKEN,
    };
    let mut ignored: Vec<&'static str> = match credentials {
        CredentialsFrom::Chain(env) => {
            [ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_SECURITY_TOKEN]
                .into_iter()
                .filter(|name| env.var(name).is_some())
                .collect()
        }
        CredentialsFrom::Given(_) | CredentialsFrom::Client(_) => vec!["credential"],
    };
    if settings.endpoint_overridden {
        ignored.push("--endpoint / ECS_GATEWAY_ENDPOINT");
    }
    if settings.network != Network::Public {
        ignored.push("--network / ECS_GATEWAY_NETWORK");
    }
    ignored
}

//! The gRPC server: whatever routes it is given, plus health, behind our own accept loop and
//! connection handling, and a shutdown that lets go of everything that is not a call. It knows no
//! API type: [`crate::api::routes`] hands it the routes and the name health reports them under.

pub(crate) mod connection;
pub(crate) mod health;
pub(crate) mod listener;
pub(crate) mod peer;
pub(crate) mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

use crate::observe::metrics::Metrics;
use crate::reload::Reloading;
use crate::server::health::DrainingHealth;
use crate::server::listener::{Accepted, Acceptor};
use connection::ConnectionSettings;

/// Limits and shutdown behaviour of the gRPC server.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Limits on each connection.
    pub connection: ConnectionSettings,
    /// Time between health turning NOT_SERVING and the listener closing, so that load balancers
    /// stop sending first.
    pub drain_delay: Duration,
    /// How long in-flight calls may take to finish once draining starts.
    pub shutdown_grace: Duration,
    /// A second, plaintext address serving only `grpc.health.v1`, for probes that cannot speak
    /// TLS (the kubelet's gRPC probes); none when unset.
    pub health_listen: Option<SocketAddr>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            connection: ConnectionSettings::default(),
            drain_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(30),
            health_listen: None,
        }
    }
}

/// What the server runs with besides its settings: handles made at start.
#[derive(Debug, Clone, Default)]
pub(crate) struct Runtime {
    /// TLS for the listener (kept current as its files rotate); plaintext when `None`.
    pub tls: Option<Reloading<rustls::ServerConfig>>,
    /// Whether the gateway can serve (it holds a valid credential); health follows it until
    /// draining. Always ready when `None`.
    pub ready: Option<watch::Receiver<bool>>,
    /// Where refused connections are counted, when metrics are on.
    pub metrics: Option<Metrics>,
}

/// The routes to serve and the service name health reports for them.
#[derive(Debug)]
pub(crate) struct Served {
    /// Every route but health, which the server adds.
    pub routes: Routes,
    /// The fully qualified gRPC service name whose health is reported.
    pub name: &'static str,
}

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The health address cannot be listened on.
    #[error("cannot listen on {addr} (--health-listen / ECS_GATEWAY_HEALTH_LISTEN): {error}")]
    HealthListen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

/// Serves `served` on `listener` until `shutdown` resolves. Then: health turns NOT_SERVING and
/// health watchers are let go; after the drain delay the listener closes and every connection gets
/// GOAWAY (those without a call close at once); calls in flight get the grace period; whatever is
/// left after it is dropped.
pub(crate) async fn serve(
    listener: TcpListener,
    served: Served,
    settings: ServerSettings,
    runtime: Runtime,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let Served { routes, name } = served;
    let health = HealthReporter::new();
    health
        .set_service_status(name, ServingStatus::Serving)
        .await;
    let (draining_tx, draining_rx) = watch::channel(false);
    if let Some(ready) = runtime.ready.clone() {
        tokio::spawn(follow_readiness(
            ready,
            health.clone(),
            name,
            draining_rx.clone(),
        ));
    }
    let (closing_tx, closing_rx) = watch::channel(false);
    let health_service = || {
        HealthServer::new(DrainingHealth::new(
            HealthService::from_health_reporter(health.clone()),
            draining_rx.clone(),
        ))
    };
    if let Some(addr) = settings.health_listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|error| ServeError::HealthListen { addr, error })?;
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "health listening (plaintext, grpc.health.v1 only)");
        }
        let mut closing = closing_rx.clone();
        let closed = async move {
            let _ = closing.wait_for(|closed| *closed).await;
        };
        let probes = tonic::transport::Server::builder()
            .add_service(health_service())
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), closed);
        tokio::spawn(probes);
    }
    let routes = routes.add_service(health_service()).prepare();
    let tls = runtime.tls.clone();

    let per_connection = Arc::new(settings.connection.clone());
    let mut acceptor =
        Acceptor::new(listener, settings.max_connections).counting_in(runtime.metrics.clone());
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = acceptor.accept() => {
                spawn(&mut connections, accepted, tls.as_ref(), &routes, &per_connection, &closing_rx);
            }
            // Reap finished connections as we go, so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }

    tracing::info!("shutdown requested: health NOT_SERVING, draining");
    health
        .set_service_status(name, ServingStatus::NotServing)
        .await;
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let _ = draining_tx.send(true);
    // Still accepting during the delay: the load balancer may not have noticed yet.
    let accepting = async {
        loop {
            let accepted = acceptor.accept().await;
            spawn(
                &mut connections,
                accepted,
                tls.as_ref(),
                &routes,
                &per_connection,
                &closing_rx,
            );
        }
    };
    let _ = tokio::time::timeout(settings.drain_delay, accepting).await;
    drop(acceptor);
    let _ = closing_tx.send(true);

    let grace = settings.shutdown_grace;
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            ?grace,
            left = connections.len(),
            "shutdown grace expired; dropping calls still in flight"
        );
        connections.shutdown().await;
    }
    tracing::info!("server stopped");
    Ok(())
}

/// Health follows `ready` (SERVING / NOT_SERVING, the service and the server as a whole) until
/// draining starts, which then owns it.
async fn follow_readiness(
    mut ready: watch::Receiver<bool>,
    health: HealthReporter,
    name: &'static str,
    mut draining: watch::Receiver<bool>,
) {
    loop {
        let status = if *ready.borrow_and_update() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        set_status(&health, name, status).await;
        // Draining may have started while this status was set: its NOT_SERVING must be the last word.
        if *draining.borrow() {
            set_status(&health, name, ServingStatus::NotServing).await;
            return;
        }
        tokio::select! {
            changed = ready.changed() => if changed.is_err() { return },
            _ = draining.wait_for(|d| *d) => return,
        }
    }
}

async fn set_status(health: &HealthReporter, name: &str, status: ServingStatus) {
    health.set_service_status(name, status).await;
    health.set_service_status("", status).await;
}

/// Serves one accepted connection on its own task, with the TLS configuration current at accept;
/// its slot is freed when the task ends.
fn spawn(
    connections: &mut JoinSet<()>,
    accepted: Accepted,
    tls: Option<&Reloading<rustls::ServerConfig>>,
    routes: &Routes,
    limits: &Arc<ConnectionSettings>,
    closing: &watch::Receiver<bool>,
) {
    let (routes, limits, closing) = (routes.clone(), limits.clone(), closing.clone());
    let tls = tls.map(Reloading::current);
    connections.spawn(async move {
        connection::serve(accepted.stream, accepted.peer, tls, routes, limits, closing).await;
        drop(accepted.slot);
    });
}

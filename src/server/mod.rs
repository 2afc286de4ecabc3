//! The gRPC server: whatever routes it is given, plus health, behind our own accept loop and
//! connection handling, and a shutdown that lets go of everything that is not a call. It knows no
//! API type: [`crate::api::routes`] hands it the routes and the name health reports them under.

pub(crate) mod busy;
pub(crate) mod connection;
pub(crate) mod handshake;
pub(crate) mod health;
pub(crate) mod listener;
pub(crate) mod peer;
pub(crate) mod scrape;
pub(crate) mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

use crate::observe::metrics::Metrics;
use crate::reload::Reloading;
use crate::server::handshake::HandshakeFailures;
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
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            connection: ConnectionSettings::default(),
            drain_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(30),
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
    /// The handler's work under way: once it is done, draining connections get a short flush,
    /// not the whole grace.
    pub busy: busy::Busy,
}

/// The routes to serve and the service name health reports for them.
#[derive(Debug)]
pub(crate) struct Served {
    /// Every route but health, which the server adds.
    pub routes: Routes,
    /// The fully qualified gRPC service name whose health is reported.
    pub name: &'static str,
}

/// The bound ports the server accepts on.
#[derive(Debug)]
pub(crate) struct Ports {
    /// The gRPC port: every route, TLS when configured.
    pub grpc: TcpListener,
    /// The plaintext probe port: `grpc.health.v1` only.
    pub health: Option<TcpListener>,
}

/// Serves `served` on the ports until `shutdown` resolves. Then: health turns NOT_SERVING and
/// health watchers are let go; after the drain delay the listeners close and every connection gets
/// GOAWAY (those without a call close at once); calls in flight get the grace period; whatever is
/// left after it is dropped. Both ports run the same accept loop and connection handling.
pub(crate) async fn serve(
    ports: Ports,
    served: Served,
    settings: ServerSettings,
    runtime: Runtime,
    shutdown: impl Future<Output = ()> + Send,
) {
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
    let limits = Arc::new(settings.connection.clone());
    let grace = settings.shutdown_grace;
    let probes = ports.health.map(|listener| {
        let acceptor = Acceptor::new(listener, HEALTH_MAX_CONNECTIONS, "health")
            .per_source(HEALTH_MAX_PER_SOURCE)
            .counting_in(runtime.metrics.clone());
        let routes = Routes::new(health_service()).prepare();
        let probe_limits = Arc::new(ConnectionSettings {
            handshake_timeout: settings
                .connection
                .handshake_timeout
                .min(HEALTH_HANDSHAKE_TIMEOUT),
            ..settings.connection.clone()
        });
        let mut port = Port::new(acceptor, None, routes, probe_limits, closing_rx.clone());
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            port.accept_until(async move {
                let _ = closing.wait_for(|closed| *closed).await;
            })
            .await;
            port.stop_accepting()
                .finish(grace, std::future::pending())
                .await;
        })
    });

    let routes = routes.add_service(health_service()).prepare();
    let acceptor = Acceptor::new(ports.grpc, settings.max_connections, "grpc")
        .counting_in(runtime.metrics.clone());
    let mut grpc = Port::new(acceptor, runtime.tls.clone(), routes, limits, closing_rx);
    grpc.accept_until(shutdown).await;

    tracing::info!("shutdown requested: health NOT_SERVING, draining");
    set_status(&health, name, ServingStatus::NotServing).await;
    let _ = draining_tx.send(true);
    // Still accepting during the delay: the load balancer may not have noticed yet.
    grpc.accept_until(tokio::time::sleep(settings.drain_delay))
        .await;
    let open = grpc.stop_accepting();
    let _ = closing_tx.send(true);
    let busy = runtime.busy.clone();
    open.finish(grace, async move {
        busy.idle().await;
        tokio::time::sleep(FLUSH_AFTER_WORK).await;
    })
    .await;
    if let Some(probes) = probes {
        let _ = probes.await;
    }
    tracing::info!("server stopped");
}

/// Once no call or wait is at work, how long draining connections may still take to deliver what
/// was answered: a caller reading normally needs milliseconds; one that stopped reading never
/// finishes.
const FLUSH_AFTER_WORK: Duration = Duration::from_secs(1);

/// The most probe connections open at once on the health port: the kubelet and a load balancer
/// need a few; a flood of idle sockets must not take the process's file descriptors.
const HEALTH_MAX_CONNECTIONS: usize = 64;
/// The most probe connections open at once from one address: the kubelet, or a load balancer's
/// node, needs one or two at a time; a client reconnecting in a loop must not hold every slot.
const HEALTH_MAX_PER_SOURCE: usize = 8;
/// The longest a probe connection may take to say its HTTP/2 preface: probes are plaintext and
/// near (they send it at once), so idle sockets are let go soon and the slots return.
const HEALTH_HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(500);

/// One listening port and the connections accepted on it.
struct Port {
    acceptor: Acceptor,
    tls: Option<Reloading<rustls::ServerConfig>>,
    failures: Arc<HandshakeFailures>,
    routes: Routes,
    limits: Arc<ConnectionSettings>,
    closing: watch::Receiver<bool>,
    connections: JoinSet<()>,
}

impl Port {
    fn new(
        acceptor: Acceptor,
        tls: Option<Reloading<rustls::ServerConfig>>,
        routes: Routes,
        limits: Arc<ConnectionSettings>,
        closing: watch::Receiver<bool>,
    ) -> Self {
        let failures = Arc::new(HandshakeFailures::new(acceptor.metrics().cloned()));
        Self {
            acceptor,
            tls,
            failures,
            routes,
            limits,
            closing,
            connections: JoinSet::new(),
        }
    }

    /// Accepts and serves connections until `stop` resolves.
    async fn accept_until(&mut self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                accepted = self.acceptor.accept() => self.spawn(accepted),
                // Reap finished connections as we go, so the set does not grow without bound.
                Some(_) = self.connections.join_next(), if !self.connections.is_empty() => {}
            }
        }
    }

    /// Serves one accepted connection on its own task, with the TLS configuration current at
    /// accept; its slot is freed when the task ends.
    fn spawn(&mut self, accepted: Accepted) {
        let routes = self.routes.clone();
        let (limits, closing) = (self.limits.clone(), self.closing.clone());
        let tls = self
            .tls
            .as_ref()
            .map(|tls| (tls.current(), self.failures.clone()));
        self.connections.spawn(async move {
            connection::serve(accepted.stream, accepted.peer, tls, routes, limits, closing).await;
            drop(accepted.slot);
        });
    }

    /// Closes the listener; the connections stay open.
    fn stop_accepting(self) -> Open {
        Open {
            name: self.acceptor.name(),
            connections: self.connections,
        }
    }
}

/// Connections still open on a port that no longer accepts.
struct Open {
    name: &'static str,
    connections: JoinSet<()>,
}

impl Open {
    /// Waits up to `grace` for the connections to end, or until `flushed` (the work is done and
    /// its answers had time to go), then drops those left.
    async fn finish(mut self, grace: Duration, flushed: impl Future<Output = ()>) {
        let drained = async { while self.connections.join_next().await.is_some() {} };
        let why = tokio::select! {
            () = drained => return,
            () = tokio::time::sleep(grace) => "shutdown grace expired; dropping calls still in flight",
            () = flushed => "no call is at work; dropping connections whose callers stopped reading",
        };
        tracing::warn!(
            listener = self.name,
            ?grace,
            left = self.connections.len(),
            "{why}"
        );
        self.connections.shutdown().await;
    }
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

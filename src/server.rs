//! The tonic server: the service, reflection (v1 and v1alpha), health, limits and graceful shutdown.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

use crate::health::DrainingHealth;
use crate::pb::FILE_DESCRIPTOR_SET;
use crate::pb::cloud_assistant_service_server::CloudAssistantServiceServer;
use crate::service::CloudAssistant;

/// Limits and shutdown behaviour of the gRPC server.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Largest request message accepted, in bytes.
    pub max_request_bytes: usize,
    /// How long in-flight calls may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_request_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// The server could not start or failed while serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Reflection could not load the descriptor set.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("gRPC transport failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Reflection over the gateway's API, health, and `google.rpc` error details — the last so that
/// grpcurl can decode `ErrorInfo`, `BadRequest` and friends in error statuses.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

/// Serves `service` on `listener` until `shutdown` resolves, then turns health NOT_SERVING, stops
/// accepting connections and lets in-flight calls finish within the grace period.
pub async fn serve(
    listener: TcpListener,
    service: CloudAssistant,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let health = HealthReporter::new();
    health
        .set_serving::<CloudAssistantServiceServer<CloudAssistant>>()
        .await;
    let (draining_tx, draining_rx) = watch::channel(false);
    let health_service = HealthServer::new(DrainingHealth::new(
        HealthService::from_health_reporter(health.clone()),
        draining_rx.clone(),
    ));

    let reflection_v1 = reflection().build_v1()?;
    // grpcurl 1.8 and other older tools speak only v1alpha.
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let gateway = CloudAssistantServiceServer::new(service)
        .max_decoding_message_size(settings.max_request_bytes);

    let signal = {
        let health = health.clone();
        async move {
            shutdown.await;
            tracing::info!("shutdown requested: health NOT_SERVING, draining in-flight calls");
            health
                .set_not_serving::<CloudAssistantServiceServer<CloudAssistant>>()
                .await;
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            let _ = draining_tx.send(true);
        }
    };

    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(gateway)
        .serve_with_incoming_shutdown(incoming, signal);

    let grace = settings.shutdown_grace;
    let mut draining = draining_rx;
    tokio::select! {
        result = server => result?,
        () = async move {
            if draining.wait_for(|d| *d).await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(?grace, "shutdown grace expired; dropping calls still in flight");
        }
    }
    tracing::info!("server stopped");
    Ok(())
}

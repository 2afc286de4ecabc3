//! gRPC health that lets shutdown finish: once draining starts, every `Watch` stream is sent
//! NOT_SERVING and then ended, so a watcher (a load balancer, a sidecar) never holds the process
//! open for the whole grace period.

use std::pin::Pin;

use futures_util::{Stream, StreamExt as _, stream};
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::HealthService;

/// The standard health service, with `Watch` streams that end when draining starts.
#[derive(Debug)]
pub(crate) struct DrainingHealth {
    inner: HealthService,
    draining: watch::Receiver<bool>,
}

impl DrainingHealth {
    /// Wraps `inner`; `draining` turns true once, when shutdown starts.
    pub(crate) fn new(inner: HealthService, draining: watch::Receiver<bool>) -> Self {
        Self { inner, draining }
    }
}

/// The stream type of `Watch`.
pub(crate) type WatchStream =
    Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for DrainingHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let updates = self.inner.watch(request).await?.into_inner();
        let mut draining = self.draining.clone();
        let drained = async move {
            // An error means the server is gone, which ends the stream just the same.
            let _ = draining.wait_for(|d| *d).await;
        };
        // The inner stream may be cut before it yields NOT_SERVING, so say it last in any case.
        let last = HealthCheckResponse {
            status: ServingStatus::NotServing as i32,
        };
        let stream = updates
            .take_until(drained)
            .chain(stream::once(async move { Ok(last) }));
        Ok(Response::new(Box::pin(stream)))
    }
}

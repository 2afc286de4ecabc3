//! The `CloudAssistantService` implementation: authenticate → validate → authorize → ECS client →
//! status, and one audit line per call.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tonic::{Code, Request, Response, Status};
use tracing::{Instrument as _, field};

use crate::aliyun::client::{EcsClient, Failed, Stopped};
use crate::aliyun::error::{EcsError, ErrorClass};
use crate::aliyun::regions::Regions;
use crate::aliyun::retry::Trail;
use crate::api::{deadline, status, validate};
use crate::auth::Access;
use crate::auth::policy::Denial;
use crate::observe::metrics::{Metrics, Shed};
use crate::observe::trace;
use crate::pb::cloud_assistant_service_server::CloudAssistantService;
use crate::pb::{StopInvocationRequest, StopInvocationResponse};
use crate::server::peer::Peer;

/// What the handler admits, and for how long.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Calls handled at once; more are refused at once.
    pub max_concurrent_requests: usize,
    /// The longest any call may take, whatever its `grpc-timeout`.
    pub max_call_duration: Duration,
    /// The regions requests may be sent to.
    pub regions: Regions,
    /// Largest request message accepted, in bytes.
    pub max_request_bytes: usize,
    /// Whether to serve reflection (v1 and v1alpha).
    pub reflection: bool,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 1024,
            max_call_duration: Duration::from_secs(25),
            regions: Regions::default(),
            max_request_bytes: 64 * 1024,
            reflection: true,
        }
    }
}

/// The gRPC handler; clones share the ECS client and the concurrency budget.
#[derive(Clone, Debug)]
pub(crate) struct CloudAssistant {
    client: EcsClient,
    permits: Arc<Semaphore>,
    settings: Arc<Handler>,
}

/// The handler's settings with the handles it was given.
#[derive(Debug)]
struct Handler {
    settings: ServiceSettings,
    access: Access,
    metrics: Option<Metrics>,
}

impl std::ops::Deref for Handler {
    type Target = ServiceSettings;

    fn deref(&self) -> &ServiceSettings {
        &self.settings
    }
}

impl CloudAssistant {
    /// A handler that admits at most `settings.max_concurrent_requests` calls at once and refuses
    /// the rest; `access` says who may call, and calls are counted in `metrics` when given.
    pub(crate) fn new(
        client: EcsClient,
        settings: ServiceSettings,
        access: Access,
        metrics: Option<Metrics>,
    ) -> Self {
        Self {
            client,
            permits: Arc::new(Semaphore::new(settings.max_concurrent_requests)),
            settings: Arc::new(Handler {
                settings,
                access,
                metrics,
            }),
        }
    }

    /// The handler's settings.
    pub(crate) fn settings(&self) -> &ServiceSettings {
        &self.settings.settings
    }

    fn shed(&self, limit: Shed) {
        if let Some(metrics) = &self.settings.metrics {
            metrics.shed(limit);
        }
    }

    async fn handle(
        &self,
        request: Request<StopInvocationRequest>,
    ) -> Result<Response<StopInvocationResponse>, Status> {
        let started = Instant::now();
        let settings = &*self.settings;
        let span = tracing::Span::current();
        let peer = request.extensions().get::<Peer>();
        if let Some(peer) = peer {
            span.record("peer", field::display(peer.addr));
        }
        let caller = settings
            .access
            .authenticate(request.metadata(), peer)
            .map_err(status::unauthenticated)?;
        span.record("caller", caller.name());
        // Refuse at once rather than queue: a queue hides overload until every caller times out.
        let Ok(_permit) = self.permits.try_acquire() else {
            self.shed(Shed::Concurrency);
            return Err(status::overloaded(settings.max_concurrent_requests));
        };
        let deadline = deadline::for_call(request.metadata(), started, settings.max_call_duration)
            .map_err(status::malformed_timeout)?;
        let typed = validate::stop_invocation(request.get_ref())
            .map_err(|v| status::from_violations(&v))?;
        span.record("region", typed.region_id.as_str());
        span.record("invoke_id", typed.invoke_id.as_str());
        span.record("instances", typed.instance_ids.len());
        if !settings.regions.allows(&typed.region_id) {
            return Err(status::unknown_region(&typed.region_id));
        }
        settings
            .access
            .authorize(&caller, &typed.region_id)
            .await
            .map_err(|denial| {
                if matches!(denial, Denial::Rate { .. }) {
                    self.shed(Shed::CallerRate);
                }
                status::denied(&caller, &typed.region_id, &denial)
            })?;
        let outcome = self.client.stop_invocation(&typed, Some(deadline)).await;
        if let Some(metrics) = &settings.metrics {
            let (Ok(Stopped { trail, .. }) | Err(Failed { trail, .. })) = &outcome;
            count_attempts(metrics, trail);
        }
        match outcome {
            Ok(stopped) => {
                span.record("request_id", stopped.request_id.as_str());
                span.record("attempts", stopped.trail.attempts.len());
                let mut response = Response::new(StopInvocationResponse {
                    request_id: stopped.request_id,
                });
                *response.metadata_mut() =
                    status::request_id_metadata(Some(&response.get_ref().request_id));
                Ok(response)
            }
            Err(Failed { error, trail }) => {
                span.record("attempts", trail.attempts.len());
                if let Some(id) = error.request_id() {
                    span.record("request_id", id);
                }
                if let EcsError::Api(api) = &error {
                    span.record("ecs_code", api.code.as_str());
                }
                let class = error.class();
                if status::is_gateway_fault(class) {
                    tracing::error!(?class, %error, "the gateway's own setup failed this call: check credentials, clock, endpoint and trust store");
                }
                Err(status::from_ecs_error(&error))
            }
        }
    }
}

/// Counts each upstream attempt, each retry (by the failure that caused it), a budget refusal and
/// a refusal by the fleet's quota. An attempt that was never sent (see
/// [`ErrorClass::sent_upstream`]) is not an upstream attempt, nor is it a retry.
fn count_attempts(metrics: &Metrics, trail: &Trail) {
    let sent = |failure: Option<ErrorClass>| failure.is_none_or(ErrorClass::sent_upstream);
    for (i, attempt) in trail.attempts.iter().enumerate() {
        if attempt.failure == Some(ErrorClass::FleetQuota) {
            metrics.shed(Shed::FleetRate);
        }
        if !sent(attempt.failure) {
            continue;
        }
        metrics.upstream_attempt(
            attempt.http_status,
            attempt.ecs_code.as_deref(),
            attempt.took,
        );
        let next_sent = trail.attempts.get(i + 1).is_some_and(|n| sent(n.failure));
        if let (Some(class), true) = (attempt.failure, next_sent) {
            metrics.retry(class);
        }
    }
    if trail.budget_refused {
        metrics.shed(Shed::RetryBudget);
    }
}

/// Logs the end of a call: its gRPC code and latency, at a level that matches who is at fault;
/// counts it.
fn finish(
    span: &tracing::Span,
    started: Instant,
    result: &Result<Response<StopInvocationResponse>, Status>,
    metrics: Option<&Metrics>,
) {
    let code = match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    };
    let latency: Duration = started.elapsed();
    if let Some(metrics) = metrics {
        metrics.call_handled(code, latency);
    }
    span.record("grpc_code", field::debug(code));
    span.record("latency_us", latency.as_micros() as u64);
    match result {
        Ok(_) => tracing::info!(parent: span, "call finished"),
        Err(status) if matches!(code, Code::Internal | Code::Unknown | Code::Unavailable) => {
            tracing::warn!(parent: span, error = status.message(), "call failed")
        }
        Err(status) => tracing::info!(parent: span, error = status.message(), "call refused"),
    }
}

#[tonic::async_trait]
impl CloudAssistantService for CloudAssistant {
    async fn stop_invocation(
        &self,
        request: Request<StopInvocationRequest>,
    ) -> Result<Response<StopInvocationResponse>, Status> {
        let started = Instant::now();
        let metrics = self.settings.metrics.as_ref();
        let _in_flight = metrics.map(Metrics::call_started);
        let span = tracing::info_span!(
            "StopInvocation",
            trace_id = field::Empty,
            caller = field::Empty,
            peer = field::Empty,
            region = field::Empty,
            invoke_id = field::Empty,
            instances = field::Empty,
            request_id = field::Empty,
            attempts = field::Empty,
            grpc_code = field::Empty,
            ecs_code = field::Empty,
            latency_us = field::Empty,
        );
        trace::continue_trace(&span, request.metadata());
        let result = self.handle(request).instrument(span.clone()).await;
        finish(&span, started, &result, metrics);
        result
    }
}

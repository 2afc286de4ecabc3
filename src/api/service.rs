//! The `CloudAssistantService` implementation: authenticate → validate → authorize → ECS client →
//! status, and one audit line per call (per wait, at its end).

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};
use tracing::{Instrument as _, field};

use crate::aliyun::client::{Described, EcsClient, Failed, Planned};
use crate::aliyun::error::{EcsError, TransportKind};
use crate::aliyun::regions::Regions;
use crate::aliyun::request::{DescribeInvocation, RegionId};
use crate::aliyun::retry::Trail;
use crate::api::wait::Waiting;
use crate::api::{deadline, invocation, status, validate};
use crate::auth::policy::{Denial, Permission};
use crate::auth::{Access, Caller};
use crate::observe::metrics::{Metrics, Rpc, Shed};
use crate::observe::trace;
use crate::pb::cloud_assistant_service_server::CloudAssistantService;
use crate::pb::{
    GetInvocationRequest, GetInvocationResponse, Parameter, PlannedCall,
    StopInvocationAndWaitRequest, StopInvocationAndWaitResponse, StopInvocationRequest,
    StopInvocationResponse,
};
use crate::server::busy::Busy;
use crate::server::peer::Peer;
use crate::wait::outbox::Reader;
use crate::wait::outcome::{End, Tally};
use crate::wait::{Wait, WaitSettings, Waits};

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
    /// How StopInvocationAndWait is bounded and paced.
    pub wait: WaitSettings,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 1024,
            max_call_duration: Duration::from_secs(25),
            regions: Regions::default(),
            max_request_bytes: 64 * 1024,
            reflection: true,
            wait: WaitSettings::default(),
        }
    }
}

/// The gRPC handler; clones share the ECS client, the concurrency budget and the waits.
#[derive(Clone, Debug)]
pub(crate) struct CloudAssistant {
    client: EcsClient,
    permits: Arc<Semaphore>,
    shared: Arc<Shared>,
}

/// The handler's settings with the handles it was given.
#[derive(Debug)]
struct Shared {
    settings: ServiceSettings,
    access: Access,
    metrics: Option<Metrics>,
    waits: Waits,
    busy: Busy,
}

impl CloudAssistant {
    /// A handler that admits at most `settings.max_concurrent_requests` calls at once and refuses
    /// the rest; `access` says who may call, and calls are counted in `metrics` when given.
    /// `busy` counts the calls and waits at work, so that shutdown knows when only flushing is
    /// left.
    pub(crate) fn new(
        client: EcsClient,
        settings: ServiceSettings,
        access: Access,
        metrics: Option<Metrics>,
        busy: Busy,
    ) -> Self {
        let waits = Waits::new(
            client.clone(),
            access.clone(),
            settings.wait.clone(),
            metrics.clone(),
        );
        Self {
            client,
            permits: Arc::new(Semaphore::new(settings.max_concurrent_requests)),
            shared: Arc::new(Shared {
                settings,
                access,
                metrics,
                waits,
                busy,
            }),
        }
    }

    /// Ends every wait in progress with `UNAVAILABLE` (the replica is shutting down), and any
    /// wait started later at once.
    pub(crate) fn drain(&self) {
        self.shared.waits.drain();
    }

    /// The handler's settings.
    pub(crate) fn settings(&self) -> &ServiceSettings {
        &self.shared.settings
    }

    fn shed(&self, limit: Shed) {
        if let Some(metrics) = &self.shared.metrics {
            metrics.shed(limit);
        }
    }

    /// The caller of a call, recorded in its span; refused when it has no valid identity.
    fn authenticate(&self, metadata: &MetadataMap, peer: Option<&Peer>) -> Result<Caller, Status> {
        let span = tracing::Span::current();
        if let Some(peer) = peer {
            span.record("peer", field::display(peer.addr));
        }
        let caller = self
            .shared
            .access
            .authenticate(metadata, peer)
            .map_err(status::unauthenticated)?;
        span.record("caller", caller.name());
        Ok(caller)
    }

    /// A slot among the calls handled at once, or a refusal now: a queue hides overload until
    /// every caller times out.
    fn admit(&self) -> Result<SemaphorePermit<'_>, Status> {
        self.permits.try_acquire().map_err(|_| {
            self.shed(Shed::Concurrency);
            status::overloaded(self.shared.settings.max_concurrent_requests)
        })
    }

    /// Records the target in the span and checks the region is served and `caller` may do `what`
    /// there; with `take`, one call is taken from the caller's rate.
    async fn authorize(
        &self,
        caller: &Caller,
        region: &RegionId,
        invoke_id: &str,
        what: Permission,
        take: bool,
    ) -> Result<(), Status> {
        let span = tracing::Span::current();
        span.record("region", region.as_str());
        span.record("invoke_id", invoke_id);
        let shared = &*self.shared;
        if !shared.settings.regions.allows(region) {
            return Err(status::unknown_region(region));
        }
        let outcome = if take {
            shared.access.authorize(caller, region, what).await
        } else {
            shared.access.permits(caller, region, what).map(drop)
        };
        outcome.map_err(|denial| {
            if matches!(denial, Denial::Rate { .. }) {
                self.shed(Shed::CallerRate);
            }
            status::denied(caller, region, what, &denial)
        })
    }

    /// Runs a unary call in `span` (continuing the caller's trace), counted in flight and when
    /// handled, and logs its audit line.
    async fn unary<T, U, Fut>(
        &self,
        rpc: Rpc,
        span: tracing::Span,
        request: Request<T>,
        handle: impl FnOnce(Request<T>) -> Fut,
    ) -> Result<Response<U>, Status>
    where
        Fut: Future<Output = Result<Response<U>, Status>>,
    {
        let started = Instant::now();
        let metrics = self.shared.metrics.as_ref();
        let _in_flight = metrics.map(|m| m.call_started(rpc));
        let _busy = self.shared.busy.enter();
        trace::continue_trace(&span, request.metadata());
        let result = handle(request).instrument(span.clone()).await;
        finish(&span, started, &result, metrics.map(|m| (m, rpc)));
        result
    }

    async fn handle(
        &self,
        request: Request<StopInvocationRequest>,
    ) -> Result<Response<StopInvocationResponse>, Status> {
        let started = Instant::now();
        let settings = &self.shared.settings;
        let span = tracing::Span::current();
        let caller = self.authenticate(request.metadata(), request.extensions().get::<Peer>())?;
        let _permit = self.admit()?;
        let deadline = deadline::for_call(request.metadata(), started, settings.max_call_duration)
            .map_err(status::malformed_timeout)?;
        let typed = validate::stop_invocation(request.get_ref())
            .map_err(|v| status::from_violations(&v))?;
        span.record("instances", typed.instance_ids.len());
        let validate_only = request.get_ref().validate_only;
        // validate_only changes nothing, the caller's rate included (AIP-163).
        self.authorize(
            &caller,
            &typed.region_id,
            &typed.invoke_id,
            Permission::Stop,
            !validate_only,
        )
        .await?;
        if validate_only {
            return self.plan(&typed);
        }
        match self.client.stop_invocation(&typed, Some(deadline)).await {
            Ok(stopped) => {
                span.record("request_id", stopped.request_id.as_str());
                span.record("attempts", stopped.trail.attempts.len());
                let mut response = Response::new(StopInvocationResponse {
                    request_id: stopped.request_id,
                    planned: None,
                });
                *response.metadata_mut() =
                    status::request_id_metadata(Some(&response.get_ref().request_id));
                Ok(response)
            }
            Err(Failed { error, trail }) => Err(failed(&span, &error, &trail, Permission::Stop)),
        }
    }

    /// The answer to a `validate_only` stop: what would be sent, once the gateway could send it.
    fn plan(
        &self,
        typed: &crate::aliyun::request::StopInvocation,
    ) -> Result<Response<StopInvocationResponse>, Status> {
        let planned = self.client.plan(typed).ok_or_else(|| {
            status::from_ecs_error(&EcsError::Transport {
                kind: TransportKind::Build,
                detail: "the endpoint gives this region no host".to_owned(),
            })
        })?;
        if !self.client.can_sign() {
            return Err(status::from_ecs_error(&EcsError::CredentialsUnavailable));
        }
        let Planned {
            host,
            action,
            version,
            params,
            signature,
        } = planned;
        Ok(Response::new(StopInvocationResponse {
            request_id: String::new(),
            planned: Some(PlannedCall {
                host,
                action: action.to_owned(),
                version: version.to_owned(),
                parameters: params
                    .into_iter()
                    .map(|(name, value)| Parameter { name, value })
                    .collect(),
                signature_version: signature.name().to_owned(),
            }),
        }))
    }

    async fn get(
        &self,
        request: Request<GetInvocationRequest>,
    ) -> Result<Response<GetInvocationResponse>, Status> {
        let started = Instant::now();
        let span = tracing::Span::current();
        let caller = self.authenticate(request.metadata(), request.extensions().get::<Peer>())?;
        let _permit = self.admit()?;
        let deadline = deadline::for_call(
            request.metadata(),
            started,
            self.shared.settings.max_call_duration,
        )
        .map_err(status::malformed_timeout)?;
        let typed =
            validate::get_invocation(request.get_ref()).map_err(|v| status::from_violations(&v))?;
        self.authorize(
            &caller,
            &typed.region_id,
            &typed.invoke_id,
            Permission::Read,
            true,
        )
        .await?;
        match self
            .client
            .describe_invocation(&typed, Some(deadline))
            .await
        {
            Ok(Described {
                request_id,
                invocation: Some(state),
                trail,
            }) => {
                span.record("request_id", request_id.as_str());
                span.record("attempts", trail.attempts.len());
                span.record("instances", state.instances.len());
                let mut response = Response::new(GetInvocationResponse {
                    invocation: Some(invocation::whole(&state)),
                    request_id,
                });
                *response.metadata_mut() =
                    status::request_id_metadata(Some(&response.get_ref().request_id));
                Ok(response)
            }
            Ok(Described {
                invocation: None, ..
            }) => Err(status::invocation_not_found(
                &typed.invoke_id,
                &typed.region_id,
            )),
            Err(Failed { error, trail }) => Err(failed(&span, &error, &trail, Permission::Read)),
        }
    }

    /// Checks a wait, admits it, takes its first read from the caller's rate, and starts it; the
    /// stream's side.
    async fn start_wait(
        &self,
        request: Request<StopInvocationAndWaitRequest>,
        started: Instant,
    ) -> Result<(Reader, Arc<Waiting>), Status> {
        let shared = &*self.shared;
        let waits = &shared.waits;
        let span = tracing::Span::current();
        let caller = self.authenticate(request.metadata(), request.extensions().get::<Peer>())?;
        let deadline = deadline::for_call(request.metadata(), started, waits.settings().max_wait)
            .map_err(status::malformed_timeout)?;
        let typed = validate::stop_and_wait(request.get_ref(), waits.settings().max_instances)
            .map_err(|v| status::from_violations(&v))?;
        span.record("instances", typed.instance_ids.len());
        // Each stop takes from the caller's rate as it goes; here only the permission.
        self.authorize(
            &caller,
            &typed.region_id,
            &typed.invoke_id,
            Permission::Stop,
            false,
        )
        .await?;
        if waits.draining() {
            return Err(status::wait_interrupted());
        }
        let read = DescribeInvocation {
            region_id: typed.region_id.clone(),
            invoke_id: typed.invoke_id.clone(),
            owner: typed.owner.clone(),
        };
        let admitted = waits.admit(&caller, &read).map_err(|busy| {
            self.shed(Shed::Waits);
            status::waits_busy(busy)
        })?;
        // The first read is charged like GetInvocation's, however many waits share it.
        self.authorize(
            &caller,
            &typed.region_id,
            &typed.invoke_id,
            Permission::Read,
            true,
        )
        .await?;
        let waiting = Arc::new(Waiting {
            caller: caller.clone(),
            region: typed.region_id.clone(),
            invoke_id: typed.invoke_id.clone(),
        });
        let metrics = shared.metrics.clone();
        let busy = shared.busy.enter();
        let ending = waiting.clone();
        let on_end = move |tally: &Tally, end: &End| {
            let _busy = busy;
            let span = tracing::Span::current();
            span.record("targeted", tally.targeted);
            span.record("final_instances", tally.ended);
            span.record("stops_sent", tally.stops_sent);
            span.record("stops_failed", tally.stops_failed);
            let status = ending.status(end);
            if let Some(metrics) = &metrics {
                metrics.wait_ended(
                    status.as_ref().map_or(Code::Ok, Status::code),
                    started.elapsed(),
                );
            }
            finish_wait(&span, started, status.as_ref());
        };
        let wait = Wait {
            caller,
            stop: typed,
            deadline,
        };
        Ok((waits.start(admitted, wait, on_end), waiting))
    }
}

/// Logs the failure of an ECS call made for a caller that would `what`, and gives the caller's
/// status.
fn failed(span: &tracing::Span, error: &EcsError, trail: &Trail, what: Permission) -> Status {
    span.record("attempts", trail.attempts.len());
    if let Some(id) = error.request_id() {
        span.record("request_id", id);
    }
    if let EcsError::Api(api) = error {
        span.record("ecs_code", api.code.as_str());
    }
    let class = error.class();
    if class.is_gateway_fault() {
        tracing::error!(?class, %error, "the gateway's own setup failed this call: check credentials, clock, endpoint and trust store");
    }
    match what {
        Permission::Stop => status::from_ecs_error(error),
        Permission::Read => status::from_ecs_read_error(error),
    }
}

/// Logs the end of a wait: its gRPC code, duration and counts.
fn finish_wait(span: &tracing::Span, started: Instant, error: Option<&Status>) {
    let code = error.map_or(Code::Ok, Status::code);
    span.record("grpc_code", field::debug(code));
    span.record("latency_us", started.elapsed().as_micros() as u64);
    match error {
        None => tracing::info!(parent: span, "wait finished"),
        Some(status) if matches!(code, Code::Internal | Code::Unknown) => {
            tracing::warn!(parent: span, error = status.message(), "wait failed")
        }
        Some(status) => tracing::info!(parent: span, error = status.message(), "wait ended"),
    }
}

/// Logs the end of a call: its gRPC code and latency, at a level that matches who is at fault;
/// counts it.
fn finish<T>(
    span: &tracing::Span,
    started: Instant,
    result: &Result<Response<T>, Status>,
    metrics: Option<(&Metrics, Rpc)>,
) {
    let code = match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    };
    let latency: Duration = started.elapsed();
    if let Some(metrics) = metrics {
        let (metrics, rpc) = metrics;
        metrics.call_handled(rpc, code, latency);
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

/// The span of one call: its audit line's fields, and any `$extra` ones, filled in as it goes.
macro_rules! call_span {
    ($name:literal $(, $extra:ident)*) => {
        tracing::info_span!(
            $name,
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
            $($extra = field::Empty,)*
        )
    };
}

#[tonic::async_trait]
impl CloudAssistantService for CloudAssistant {
    async fn stop_invocation(
        &self,
        request: Request<StopInvocationRequest>,
    ) -> Result<Response<StopInvocationResponse>, Status> {
        let span = call_span!("StopInvocation");
        self.unary(Rpc::StopInvocation, span, request, |r| self.handle(r))
            .await
    }

    type StopInvocationAndWaitStream =
        BoxStream<'static, Result<StopInvocationAndWaitResponse, Status>>;

    async fn stop_invocation_and_wait(
        &self,
        request: Request<StopInvocationAndWaitRequest>,
    ) -> Result<Response<Self::StopInvocationAndWaitStream>, Status> {
        let started = Instant::now();
        let span = call_span!(
            "StopInvocationAndWait",
            targeted,
            final_instances,
            stops_sent,
            stops_failed
        );
        trace::continue_trace(&span, request.metadata());
        let (reader, waiting) = match self
            .start_wait(request, started)
            .instrument(span.clone())
            .await
        {
            Ok(started) => started,
            Err(status) => {
                finish_wait(&span, started, Some(&status));
                if let Some(metrics) = &self.shared.metrics {
                    metrics.wait_ended(status.code(), started.elapsed());
                }
                return Err(status);
            }
        };
        let stream =
            futures_util::stream::unfold((reader, waiting), |(reader, waiting)| async move {
                let item = reader.next(|step| waiting.item(step)).await.flatten()?;
                Some((item, (reader, waiting)))
            });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_invocation(
        &self,
        request: Request<GetInvocationRequest>,
    ) -> Result<Response<GetInvocationResponse>, Status> {
        let span = call_span!("GetInvocation");
        self.unary(Rpc::GetInvocation, span, request, |r| self.get(r))
            .await
    }
}

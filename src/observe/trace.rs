//! W3C trace context. A `traceparent` in a call's metadata is continued: the audit line carries
//! its trace id (a new one when none came in), and with `OTEL_EXPORTER_OTLP_ENDPOINT` set the call
//! and each upstream attempt are exported as spans over OTLP; unset, nothing is exported and only
//! the id is paid for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{TraceContextExt as _, TraceId, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tonic::metadata::MetadataMap;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Set once the OTLP layer is installed.
static EXPORTING: OnceLock<()> = OnceLock::new();
/// Batches of spans the collector did not take, since start.
static EXPORT_FAILURES: AtomicU64 = AtomicU64::new(0);
/// At most one warning per this interval about failing exports.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Batches of spans that could not be exported since start (`ecs_gateway_otlp_export_failures`).
pub(crate) fn export_failures() -> u64 {
    EXPORT_FAILURES.load(Ordering::Relaxed)
}

/// An exporter that counts its failures and warns about them at most once a minute: a collector
/// that is down costs the calls nothing, but the operator hears of it.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    warned_at: Mutex<Option<Instant>>,
}

impl<E> Counted<E> {
    fn new(inner: E) -> Self {
        Self {
            inner,
            warned_at: Mutex::new(None),
        }
    }

    fn failed(&self, error: &OTelSdkError) {
        let failures = EXPORT_FAILURES.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let mut warned_at = self.warned_at.lock().unwrap_or_else(|e| e.into_inner());
        if warned_at.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
            *warned_at = Some(now);
            tracing::warn!(%error, failures, "OTLP trace export failed; those spans are dropped");
        }
    }
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        if let Err(error) = &result {
            self.failed(error);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// The standard variable that turns export on.
pub(crate) const ENDPOINT_VARIABLE: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Reads `traceparent` (and `tracestate`) from gRPC metadata.
struct Metadata<'a>(&'a MetadataMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// Continues the caller's trace in `span` (a new one when the call brought none, or a malformed
/// one) and records its id as the span's `trace_id` field.
pub(crate) fn continue_trace(span: &tracing::Span, metadata: &MetadataMap) {
    let parent = TraceContextPropagator::new().extract(&Metadata(metadata));
    let remote = parent.span().span_context().clone();
    let trace_id = if EXPORTING.get().is_some() {
        if remote.is_valid() {
            let _ = span.set_parent(parent);
        }
        span.context().span().span_context().trace_id()
    } else if remote.is_valid() {
        remote.trace_id()
    } else {
        TraceId::from_bytes(rand::random::<u128>().max(1).to_be_bytes())
    };
    span.record("trace_id", tracing::field::display(trace_id));
}

/// The OTLP pipeline, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `_TRACES_ENDPOINT`) is set:
/// `OTEL_EXPORTER_OTLP_PROTOCOL` `grpc`, else `http/protobuf` (the specification's default).
/// Needs a Tokio runtime; the provider must be shut down at exit to flush what is batched.
pub(crate) fn otlp_provider() -> Result<Option<SdkTracerProvider>, String> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty());
    if !set(ENDPOINT_VARIABLE) && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return Ok(None);
    }
    use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|_| "http/protobuf".to_owned());
    let exporter = match protocol.as_str() {
        "grpc" => SpanExporter::builder().with_tonic().build(),
        "http/protobuf" => SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build(),
        other => {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported (grpc or http/protobuf)"
            ));
        }
    }
    .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            Counted::new(exporter),
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "ecs-gateway".to_owned());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build(),
    ))
}

/// The tracing layer exporting through `provider`; marks export as on.
pub(crate) fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let _ = EXPORTING.set(());
    tracing_opentelemetry::layer().with_tracer(provider.tracer("ecs-gateway"))
}

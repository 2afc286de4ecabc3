//! What operators see without reading logs: Prometheus metrics (served on their own listener) and
//! W3C trace context, exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

pub(crate) mod log;
pub(crate) mod metrics;
pub(crate) mod process;
pub(crate) mod trace;

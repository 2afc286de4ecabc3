//! What operators see without reading logs: Prometheus metrics (served on their own listener) and
//! W3C trace context, exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

pub mod exporter;
pub mod log;
pub mod metrics;
pub mod process;
pub mod trace;

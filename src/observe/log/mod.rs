//! Tracing setup: text or JSON lines filtered by an `EnvFilter` (`RUST_LOG`, default `info`), and
//! — only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set — the gateway's spans exported over OTLP. Each
//! output has its own filter, so the per-attempt spans (debug level) cost nothing unless exported.
//! Lines reach stdout through a [`BatchedWriter`], which [`Telemetry::shutdown`] flushes.

#[cfg(test)]
mod json_lines;
pub(crate) mod writer;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, Registry};

use crate::observe::log::writer::BatchedWriter;
use crate::observe::trace;

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Holds the log writer and the trace exporter, if any; [`Telemetry::shutdown`] flushes both.
#[derive(Debug, Default)]
pub struct Telemetry {
    lines: Option<BatchedWriter>,
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is still batched, stops the exporter, then writes out the last log lines.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "trace export did not flush");
        }
        if let Some(lines) = self.lines {
            lines.flush();
        }
    }
}

/// Installs the global subscriber writing to stdout, filtered by `RUST_LOG`, with OTLP export when
/// configured; call once, from `main`, inside the Tokio runtime.
pub fn init(format: LogFormat) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let provider = trace::otlp_provider()?;
    let lines = BatchedWriter::stdout().map_err(|e| format!("cannot start the log writer: {e}"))?;
    install(format, filter, ansi, lines.handle(), provider.as_ref());
    Ok(Telemetry {
        lines: Some(lines),
        provider,
    })
}

/// Installs the global subscriber with `filter`, writing plain lines to `writer`; tests use it to
/// capture logs.
pub fn init_with<W>(format: LogFormat, filter: EnvFilter, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    install(format, filter, false, writer, None);
}

fn install<W>(
    format: LogFormat,
    filter: EnvFilter,
    ansi: bool,
    writer: W,
    provider: Option<&SdkTracerProvider>,
) where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let lines = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .with_target(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => {
            let nested = filter
                .max_level_hint()
                .is_none_or(|l| l > LevelFilter::INFO);
            json_layer(writer, nested).with_filter(filter).boxed()
        }
    };
    // The call span and the attempt spans are this crate's; nothing else is exported.
    let spans = provider.map(|provider| {
        trace::layer(provider).with_filter(
            Targets::new()
                .with_target("ecs_gateway", LevelFilter::DEBUG)
                .with_default(LevelFilter::OFF),
        )
    });
    // A second initialisation keeps the first subscriber; that is not worth a panic.
    let _ = Registry::default().with(lines).with(spans).try_init();
}

/// The JSON lines: tracing-subscriber's JSON shape, written by json-subscriber, which keeps each
/// span's fields as JSON values where tracing-subscriber re-parses the span's JSON text on every
/// record and line. `nested` adds `spans`, the list of entered spans: only a filter that admits the
/// debug attempt spans needs it, since at info the call span is the one span and the list would
/// repeat `span` on every line (a third of the audit line's bytes, bench/README, issue 26).
fn json_layer<S, W>(writer: W, nested: bool) -> json_subscriber::fmt::Layer<S, W>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    json_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(false)
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(nested)
}

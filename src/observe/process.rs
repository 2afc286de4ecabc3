//! Metrics read at scrape time: the standard `process_*` ones (from `/proc/self`, as the Go and
//! Python clients export them), when the gateway's credential expires, log lines dropped and trace
//! batches the collector did not take.
//!
//! Written here rather than taken from a crate: `prometheus-client` has no process collector, and
//! the ones that exist belong to other metrics libraries; `procfs` does the reading.

use std::time::UNIX_EPOCH;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::aliyun::credentials::refresh::CredentialSupply;

/// The process and credential collector.
#[derive(Debug)]
pub(crate) struct ProcessCollector {
    credentials: Option<CredentialSupply>,
}

impl ProcessCollector {
    /// A collector that also reports `credentials`' expiry, when given.
    pub(crate) fn new(credentials: Option<CredentialSupply>) -> Self {
        Self { credentials }
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(at) = self
            .credentials
            .as_ref()
            .and_then(CredentialSupply::expiration)
        {
            let seconds = at
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            gauge(
                &mut encoder,
                "ecs_gateway_credential_expiry_timestamp_seconds",
                "When the Alibaba Cloud credential in use expires, Unix seconds (absent for a long-lived AccessKey)",
                seconds,
            )?;
        }
        let metric = encoder.encode_descriptor(
            "ecs_gateway_log_lines_dropped",
            "Log lines dropped because the log output fell seconds behind or failed",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(crate::observe::log::writer::dropped_lines()).encode(metric)?;
        let metric = encoder.encode_descriptor(
            "ecs_gateway_otlp_export_failures",
            "Batches of trace spans the OTLP collector did not take (they are dropped)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(crate::observe::trace::export_failures()).encode(metric)?;
        // A process that cannot read its own /proc reports none of these rather than failing the scrape.
        let Ok(me) = procfs::process::Process::myself() else {
            return Ok(());
        };
        if let Ok(stat) = me.stat() {
            let ticks = procfs::ticks_per_second() as f64;
            let cpu = (stat.utime + stat.stime) as f64 / ticks;
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(cpu).encode(metric)?;
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                (stat.rss * procfs::page_size()) as f64,
            )?;
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                stat.vsize as f64,
            )?;
            if let Ok(boot) = procfs::boot_time_secs() {
                gauge(
                    &mut encoder,
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds",
                    boot as f64 + stat.starttime as f64 / ticks,
                )?;
            }
        }
        if let Ok(open) = me.fd_count() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors",
                open as f64,
            )?;
        }
        if let Ok(limits) = me.limits()
            && let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit
        {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors",
                max as f64,
            )?;
        }
        Ok(())
    }
}

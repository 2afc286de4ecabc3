//! The metric families and their names. The gRPC ones use go-grpc-prometheus' names and label
//! values, so existing dashboards work; every label value comes from a fixed set, never from a
//! caller or from the upstream's free text.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tonic::Code;

use super::process::ProcessCollector;
use crate::aliyun::client::{CallObserver, ReadKind};
use crate::aliyun::credentials::refresh::CredentialSupply;
use crate::aliyun::error::ErrorClass;
use crate::aliyun::request::ACTIONS;
use crate::aliyun::retry::{Decision, Trail, decide};

/// The gRPC service whose methods the gateway counts (health and reflection are not).
const SERVICE: &str = "ecsgateway.v1.CloudAssistantService";

/// A method of the service, as the gRPC metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    /// `StopInvocation` (unary).
    StopInvocation,
    /// `GetInvocation` (unary).
    GetInvocation,
    /// `StopInvocationAndWait` (server streaming).
    StopInvocationAndWait,
}

impl Rpc {
    const ALL: [Self; 3] = [
        Self::StopInvocation,
        Self::GetInvocation,
        Self::StopInvocationAndWait,
    ];

    fn labels(self) -> MethodLabels {
        let (grpc_type, grpc_method) = match self {
            Self::StopInvocation => ("unary", "StopInvocation"),
            Self::GetInvocation => ("unary", "GetInvocation"),
            Self::StopInvocationAndWait => ("server_stream", "StopInvocationAndWait"),
        };
        MethodLabels {
            grpc_type,
            grpc_service: SERVICE,
            grpc_method,
        }
    }
}
/// Latency buckets, seconds: go-grpc-prometheus' defaults with sub-5 ms ones added, since most
/// refusals and many upstream answers take less.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    grpc_type: &'static str,
    grpc_service: &'static str,
    grpc_method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    grpc_type: &'static str,
    grpc_service: &'static str,
    grpc_method: &'static str,
    grpc_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    action: &'static str,
    http_status: &'static str,
    ecs_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    action: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// Why a call was refused without work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The gateway's concurrency limit.
    Concurrency,
    /// The connection limit (a connection, not a call, is refused).
    Connections,
    /// The caller's rate in the policy.
    CallerRate,
    /// The retry budget refused a retry.
    RetryBudget,
    /// The fleet's rate toward ECS (`--fleet-rate`) had no slot for an attempt.
    FleetRate,
    /// The gateways' share of the account's quota for the action was spent (`--api-quota`).
    ApiQuota,
    /// ECS had throttled the action for the account, and the time it gave had not passed.
    EcsThrottled,
    /// The replica, or the caller, held its most waits (`--max-concurrent-waits`).
    Waits,
}

impl Shed {
    fn label(self) -> &'static str {
        match self {
            Shed::Concurrency => "concurrency",
            Shed::Connections => "connections",
            Shed::CallerRate => "caller_rate",
            Shed::RetryBudget => "retry_budget",
            Shed::FleetRate => "fleet_rate",
            Shed::ApiQuota => "api_quota",
            Shed::EcsThrottled => "ecs_throttled",
            Shed::Waits => "waits",
        }
    }
}

/// Why a TLS handshake failed, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeFailure {
    /// Not finished within the handshake timeout.
    Timeout,
    /// Mutual TLS, and the client sent no certificate.
    NoClientCertificate,
    /// The client's certificate did not verify (unknown issuer, expired, wrong usage…).
    BadClientCertificate,
    /// Not TLS, or TLS the server does not speak (versions, ciphers, ALPN, a bad message).
    Protocol,
    /// The connection broke during the handshake.
    Io,
}

impl HandshakeFailure {
    /// Every reason, for starting each series at zero.
    pub(crate) const ALL: [Self; 5] = [
        Self::Timeout,
        Self::NoClientCertificate,
        Self::BadClientCertificate,
        Self::Protocol,
        Self::Io,
    ];

    /// The label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::NoClientCertificate => "no_client_certificate",
            Self::BadClientCertificate => "bad_client_certificate",
            Self::Protocol => "protocol",
            Self::Io => "io",
        }
    }
}

/// Every metric the gateway keeps; clones share them.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    started: Family<MethodLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    handling: Family<MethodLabels, Histogram>,
    attempts: Family<AttemptLabels, Counter>,
    attempt_seconds: Histogram,
    retries: Family<RetryLabels, Counter>,
    shed: Family<ReasonLabels, Counter>,
    in_flight: Gauge,
    fleet_local: Counter,
    fleet_connected: Gauge,
    tls_failures: Family<ReasonLabels, Counter>,
    certificate_expiry: Gauge,
    waits: Gauge,
    wait_seconds: Family<CodeLabels, Histogram>,
    polls: Family<OutcomeLabels, Counter>,
    reads: Family<KindLabels, Counter>,
    quota_calls: Family<ActionLabels, Gauge>,
    quota_window: Family<ActionLabels, Gauge>,
    blocked_until: Family<ActionLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    grpc_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// Wait durations, seconds: from a stop that is over at once to `--max-wait`'s longest.
const WAIT_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0];

impl Metrics {
    /// The families, registered with the process collector and, when given, the credential's expiry.
    pub fn new(credentials: Option<CredentialSupply>) -> Self {
        let mut registry = Registry::default();
        let histogram = || Histogram::new(BUCKETS);
        let started = Family::<MethodLabels, Counter>::default();
        let handled = Family::<HandledLabels, Counter>::default();
        let handling =
            Family::<MethodLabels, Histogram>::new_with_constructor(histogram as fn() -> Histogram);
        let attempts = Family::<AttemptLabels, Counter>::default();
        let attempt_seconds = histogram();
        let retries = Family::<RetryLabels, Counter>::default();
        let shed = Family::<ReasonLabels, Counter>::default();
        let in_flight = Gauge::default();
        let fleet_local = Counter::default();
        let fleet_connected = Gauge::default();
        let tls_failures = Family::<ReasonLabels, Counter>::default();
        let certificate_expiry = Gauge::default();
        let waits = Gauge::default();
        let wait_seconds = Family::<CodeLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(WAIT_BUCKETS)) as fn() -> Histogram,
        );
        let polls = Family::<OutcomeLabels, Counter>::default();
        let reads = Family::<KindLabels, Counter>::default();
        let quota_calls = Family::<ActionLabels, Gauge>::default();
        let quota_window = Family::<ActionLabels, Gauge>::default();
        let blocked_until = Family::<ActionLabels, Gauge>::default();
        let build = Family::<VersionLabels, Gauge>::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "grpc_server_started",
            "RPCs started on the server",
            started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "RPCs completed on the server, whatever their code",
            handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Response latency of RPCs handled by the server, seconds",
            handling.clone(),
        );
        registry.register(
            "ecs_gateway_upstream_attempts",
            "Requests sent to ECS, by HTTP status and ECS code",
            attempts.clone(),
        );
        registry.register(
            "ecs_gateway_upstream_attempt_seconds",
            "Time of one request to ECS, seconds",
            attempt_seconds.clone(),
        );
        registry.register(
            "ecs_gateway_retries",
            "Requests to ECS repeated, by the failure that caused it",
            retries.clone(),
        );
        registry.register(
            "ecs_gateway_shed",
            "Work refused to protect the gateway or the account, by limit",
            shed.clone(),
        );
        registry.register(
            "ecs_gateway_in_flight_calls",
            "Unary calls (StopInvocation, GetInvocation) being handled",
            in_flight.clone(),
        );
        registry.register(
            "ecs_gateway_fleet_limiter_local_decisions",
            "Rate decisions this replica made alone because Redis did not answer in time",
            fleet_local.clone(),
        );
        registry.register(
            "ecs_gateway_fleet_limiter_redis_connected",
            "1 while rate decisions are made in Redis, fleet-wide; 0 otherwise (also without --redis-url)",
            fleet_connected.clone(),
        );
        registry.register(
            "ecs_gateway_tls_handshake_failures",
            "TLS handshakes on the gRPC port that failed, by reason",
            tls_failures.clone(),
        );
        registry.register(
            "ecs_gateway_tls_certificate_expiry_timestamp_seconds",
            "When the serving certificate in use expires, Unix seconds (0 without TLS)",
            certificate_expiry.clone(),
        );
        registry.register(
            "ecs_gateway_waits_in_flight",
            "StopInvocationAndWait streams waiting for instances to reach end states",
            waits.clone(),
        );
        registry.register(
            "ecs_gateway_wait_seconds",
            "How long StopInvocationAndWait streams lasted, seconds, by the code they ended with",
            wait_seconds.clone(),
        );
        registry.register(
            "ecs_gateway_invocation_polls",
            "DescribeInvocations polls made for waiting streams (one per invocation per interval, however many wait), by outcome",
            polls.clone(),
        );
        registry.register(
            "ecs_gateway_invocation_reads",
            "DescribeInvocations calls that reached ECS, by kind: caller (GetInvocation, a wait's first read), poll (one invocation, for waiting streams), listing (one page of a region's invocations in one status)",
            reads.clone(),
        );
        registry.register(
            "ecs_gateway_api_quota_calls",
            "Calls per window the gateways may make of each action, for each account and region (--api-quota x --quota-share)",
            quota_calls.clone(),
        );
        registry.register(
            "ecs_gateway_api_quota_window_seconds",
            "The window of each action's quota, seconds",
            quota_window.clone(),
        );
        registry.register(
            "ecs_gateway_ecs_blocked_until_timestamp_seconds",
            "Until when ECS last throttled each action, as this replica heard it, Unix seconds (0 when never)",
            blocked_until.clone(),
        );
        registry.register(
            "ecs_gateway_build_info",
            "The running build; always 1",
            build,
        );
        registry.register_collector(Box::new(ProcessCollector::new(credentials)));
        // Families that are known up front start at zero, so that rate() sees the first event.
        for reason in [
            Shed::Concurrency,
            Shed::Connections,
            Shed::CallerRate,
            Shed::RetryBudget,
            Shed::FleetRate,
            Shed::ApiQuota,
            Shed::EcsThrottled,
            Shed::Waits,
        ] {
            let _ = shed.get_or_create(&ReasonLabels {
                reason: reason.label(),
            });
        }
        for reason in HandshakeFailure::ALL {
            let _ = tls_failures.get_or_create(&ReasonLabels {
                reason: reason.label(),
            });
        }
        for rpc in Rpc::ALL {
            let _ = started.get_or_create(&rpc.labels());
        }
        for kind in ReadKind::ALL {
            let _ = reads.get_or_create(&KindLabels { kind: kind.label() });
        }
        for outcome in PollOutcome::ALL {
            let _ = polls.get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            });
        }
        for action in ACTIONS {
            let _ = blocked_until.get_or_create(&ActionLabels { action });
        }
        for class in ErrorClass::ALL {
            if matches!(
                decide(class),
                Decision::Backoff(_) | Decision::FreshNonceOnce(_)
            ) {
                for action in ACTIONS {
                    let _ = retries.get_or_create(&RetryLabels {
                        action,
                        reason: class.name(),
                    });
                }
            }
        }
        Self {
            inner: Arc::new(Inner {
                registry,
                started,
                handled,
                handling,
                attempts,
                attempt_seconds,
                retries,
                shed,
                in_flight,
                fleet_local,
                fleet_connected,
                tls_failures,
                certificate_expiry,
                waits,
                wait_seconds,
                polls,
                reads,
                quota_calls,
                quota_window,
                blocked_until,
            }),
        }
    }

    /// A TLS handshake on the gRPC port failed.
    pub(crate) fn tls_handshake_failed(&self, reason: HandshakeFailure) {
        self.inner
            .tls_failures
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .inc();
    }

    /// The serving certificate now in use expires at `unix_seconds`.
    pub(crate) fn serving_certificate_expires(&self, unix_seconds: i64) {
        self.inner.certificate_expiry.set(unix_seconds);
    }

    /// A unary call arrived; the guard counts it in flight until dropped.
    pub fn call_started(&self, rpc: Rpc) -> InFlight {
        self.inner.started.get_or_create(&rpc.labels()).inc();
        self.inner.in_flight.inc();
        InFlight(self.inner.clone())
    }

    /// A unary call finished with `code` after `latency`.
    pub fn call_handled(&self, rpc: Rpc, code: Code, latency: Duration) {
        let method = rpc.labels();
        let labels = HandledLabels {
            grpc_type: method.grpc_type,
            grpc_service: SERVICE,
            grpc_method: method.grpc_method,
            grpc_code: code_name(code),
        };
        self.inner.handled.get_or_create(&labels).inc();
        self.inner
            .handling
            .get_or_create(&method)
            .observe(latency.as_secs_f64());
    }

    /// One request to ECS for `action`: its HTTP status (none for a transport failure), ECS code
    /// and time.
    pub fn upstream_attempt(
        &self,
        action: &'static str,
        http_status: Option<u16>,
        ecs_code: Option<&str>,
        took: Duration,
    ) {
        let labels = AttemptLabels {
            action,
            http_status: status_label(http_status),
            ecs_code: ecs_code.map_or("none", ecs_code_label),
        };
        self.inner.attempts.get_or_create(&labels).inc();
        self.inner.attempt_seconds.observe(took.as_secs_f64());
    }

    /// A request to ECS for `action` repeated because of `class`.
    pub fn retry(&self, action: &'static str, class: ErrorClass) {
        self.inner
            .retries
            .get_or_create(&RetryLabels {
                action,
                reason: class.name(),
            })
            .inc();
    }

    /// Work refused by `limit`.
    pub fn shed(&self, limit: Shed) {
        self.inner
            .shed
            .get_or_create(&ReasonLabels {
                reason: limit.label(),
            })
            .inc();
    }

    /// The gateways' quota of one action, per account and region: `calls` per `window`.
    pub fn api_quota(&self, action: &'static str, calls: u32, window: Duration) {
        let labels = ActionLabels { action };
        let inner = &self.inner;
        inner
            .quota_calls
            .get_or_create(&labels)
            .set(i64::from(calls));
        inner
            .quota_window
            .get_or_create(&labels)
            .set(window.as_secs() as i64);
    }

    /// ECS throttled `action` until `until_ms` (Unix milliseconds).
    pub fn ecs_blocked(&self, action: &'static str, until_ms: u64) {
        let gauge = self
            .inner
            .blocked_until
            .get_or_create(&ActionLabels { action });
        let seconds = until_ms.div_ceil(1000) as i64;
        gauge.set(gauge.get().max(seconds));
    }

    /// A rate decided by this replica alone, because Redis did not answer in time.
    pub fn fleet_local_decision(&self) {
        self.inner.fleet_local.inc();
    }

    /// Whether rate decisions are being made in Redis.
    pub fn fleet_store_connected(&self, connected: bool) {
        self.inner.fleet_connected.set(i64::from(connected));
    }

    /// A stream started waiting; the guard counts it until dropped.
    pub(crate) fn wait_started(&self) -> Waiting {
        self.inner.waits.inc();
        Waiting(self.inner.clone())
    }

    /// A wait ended with `code` after `took` (refused ones included); counted as a handled RPC.
    pub(crate) fn wait_ended(&self, code: Code, took: Duration) {
        let method = Rpc::StopInvocationAndWait.labels();
        self.inner.started.get_or_create(&method).inc();
        self.inner
            .handled
            .get_or_create(&HandledLabels {
                grpc_type: method.grpc_type,
                grpc_service: SERVICE,
                grpc_method: method.grpc_method,
                grpc_code: code_name(code),
            })
            .inc();
        self.inner
            .wait_seconds
            .get_or_create(&CodeLabels {
                grpc_code: code_name(code),
            })
            .observe(took.as_secs_f64());
    }

    /// A poll of an invocation for waiting streams ended with `outcome`.
    pub(crate) fn polled(&self, outcome: PollOutcome) {
        self.inner
            .polls
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
    }

    /// The exposition in the Prometheus text format (0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.inner.registry);
        out
    }
}

/// Counts a call in flight until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Inner>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

impl CallObserver for Metrics {
    /// Counts each upstream attempt, each retry (by the failure that caused it), a budget refusal
    /// and a refusal by the fleet's quota, for every call — unary, a wait's stops and reads, polls.
    /// An attempt that was never sent (see [`ErrorClass::sent_upstream`]) is not an upstream
    /// attempt, nor is what follows it a retry.
    fn called(&self, action: &'static str, trail: &Trail) {
        let sent = |failure: Option<ErrorClass>| failure.is_none_or(ErrorClass::sent_upstream);
        for (i, attempt) in trail.attempts.iter().enumerate() {
            if !sent(attempt.failure) {
                continue;
            }
            self.upstream_attempt(
                action,
                attempt.http_status,
                attempt.ecs_code.as_deref(),
                attempt.took,
            );
            let next_sent = trail.attempts.get(i + 1).is_some_and(|n| sent(n.failure));
            if let (Some(class), true) = (attempt.failure, next_sent) {
                self.retry(action, class);
            }
        }
        if trail.budget_refused {
            self.shed(Shed::RetryBudget);
        }
    }

    fn read(&self, kind: ReadKind) {
        self.inner
            .reads
            .get_or_create(&KindLabels { kind: kind.label() })
            .inc();
    }
}

/// Counts a waiting stream until dropped.
#[derive(Debug)]
pub(crate) struct Waiting(Arc<Inner>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waits.dec();
    }
}

/// How a poll of an invocation ended, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PollOutcome {
    /// ECS answered with the invocation.
    Read,
    /// ECS answered, listing no such invocation.
    NotFound,
    /// ECS (or the fleet's quota) said to slow down.
    Throttled,
    /// Any other failure.
    Failed,
}

impl PollOutcome {
    /// Every outcome, for starting each series at zero.
    const ALL: [Self; 4] = [Self::Read, Self::NotFound, Self::Throttled, Self::Failed];

    fn label(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::NotFound => "not_found",
            Self::Throttled => "throttled",
            Self::Failed => "failed",
        }
    }
}

/// grpc-go's names for codes (`codes.Code.String()`), as go-grpc-prometheus writes them.
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// An HTTP status as a label: the standard classes' members by number, else `other`; `none` when
/// there was no answer.
fn status_label(status: Option<u16>) -> &'static str {
    const KNOWN: [(u16, &str); 16] = [
        (200, "200"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (408, "408"),
        (409, "409"),
        (413, "413"),
        (429, "429"),
        (500, "500"),
        (501, "501"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
        (302, "302"),
        (301, "301"),
    ];
    match status {
        None => "none",
        Some(s) => KNOWN
            .iter()
            .find(|(k, _)| *k == s)
            .map_or("other", |(_, label)| label),
    }
}

/// An ECS code as a label: one of the codes the error table names, else `other`.
pub(crate) fn ecs_code_label(code: &str) -> &'static str {
    crate::aliyun::error::CODES
        .iter()
        .find(|(known, _)| *known == code)
        .map_or("other", |(known, _)| known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_code_labels_are_the_error_table_s_codes_and_nothing_else() {
        for (code, _) in crate::aliyun::error::CODES {
            assert_eq!(ecs_code_label(code), code);
        }
        for unlisted in ["Throttling.Other", "", "InvalidInstance.NotFound2"] {
            assert_eq!(ecs_code_label(unlisted), "other", "{unlisted:?}");
        }
    }

    #[test]
    fn log_lines_a_failing_output_dropped_are_exported() {
        struct Broken;
        impl std::io::Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let writer = crate::observe::log::writer::BatchedWriter::new(Broken).unwrap();
        for _ in 0..3 {
            let handle = writer.handle();
            let mut line = tracing_subscriber::fmt::MakeWriter::make_writer(&handle);
            std::io::Write::write_all(&mut line, b"lost\n").unwrap();
        }
        writer.flush();
        let exposition = Metrics::new(None).encode();
        let dropped: u64 = exposition
            .lines()
            .find_map(|l| l.strip_prefix("ecs_gateway_log_lines_dropped_total "))
            .expect("the counter is exported")
            .parse()
            .unwrap();
        // Other tests in this process may drop lines too; these three at least are counted.
        assert!(dropped >= 3, "{exposition}");
    }

    #[test]
    fn free_text_never_becomes_a_label() {
        assert_eq!(ecs_code_label("Throttling.User"), "Throttling.User");
        assert_eq!(ecs_code_label("Evil\"}\ninjected 1"), "other");
        assert_eq!(status_label(Some(418)), "other");
        assert_eq!(status_label(None), "none");
    }

    #[test]
    fn the_exposition_has_go_grpc_prometheus_names() {
        let metrics = Metrics::new(None);
        let guard = metrics.call_started(Rpc::StopInvocation);
        metrics.call_handled(
            Rpc::StopInvocation,
            Code::NotFound,
            Duration::from_millis(3),
        );
        drop(guard);
        let text = metrics.encode();
        assert!(text.contains(r#"grpc_server_handled_total{grpc_type="unary",grpc_service="ecsgateway.v1.CloudAssistantService",grpc_method="StopInvocation",grpc_code="NotFound"} 1"#), "{text}");
        assert!(
            text.contains("grpc_server_handling_seconds_bucket{"),
            "{text}"
        );
        assert!(text.contains("ecs_gateway_in_flight_calls 0"), "{text}");
        assert!(
            text.contains(r#"ecs_gateway_shed_total{reason="retry_budget"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn the_credentials_expiry_is_read_at_scrape_time() {
        use crate::aliyun::credentials::credential::Credential;
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let supply =
            CredentialSupply::fixed(Credential::new("id", "s", Some("t".into())).expiring_at(at));
        let text = Metrics::new(Some(supply)).encode();
        assert!(
            text.contains("ecs_gateway_credential_expiry_timestamp_seconds 1900000000"),
            "{text}"
        );
        let long_lived = CredentialSupply::fixed(Credential::new("id", "s", None));
        let text = Metrics::new(Some(long_lived)).encode();
        assert!(!text.contains("ecs_gateway_credential_expiry"), "{text}");
        assert!(text.contains("process_open_fds "), "{text}");
    }
}

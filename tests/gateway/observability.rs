//! Observability with real parts: the gateway binary exposes metrics that a real Prometheus server
//! scrapes (Debian's `prometheus`, every second) and that `promtool check metrics` accepts; with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set, it exports the call and each upstream attempt over OTLP,
//! continuing the caller's `traceparent`, and the audit line carries the same trace id.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use crate::support::binary::Binary;
use crate::support::{request, test_credential};
use prost::Message as _;
use tokio::process::Command;
use wiremock::matchers::{method, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn ecs_body(name: &str) -> String {
    std::fs::read_to_string(format!("tests/data/ecs/{name}")).unwrap()
}

/// An ECS stand-in: `t-ok*` succeed, `t-missing*` are not found, `t-retry` fails once with 503.
async fn scripted_ecs() -> MockServer {
    let ecs = MockServer::start().await;
    Mock::given(method("POST"))
        .and(query_param("InvokeId", "t-retry"))
        .respond_with(
            ResponseTemplate::new(503).set_body_string(ecs_body("service-unavailable.json")),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&ecs)
        .await;
    for prefix in ["t-missing1", "t-missing2", "t-missing3"] {
        Mock::given(method("POST"))
            .and(query_param("InvokeId", prefix))
            .respond_with(
                ResponseTemplate::new(404)
                    .set_body_string(ecs_body("invalid-invoke-id-not-found.json")),
            )
            .with_priority(2)
            .mount(&ecs)
            .await;
    }
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string(ecs_body("success.json")))
        .with_priority(3)
        .mount(&ecs)
        .await;
    ecs
}

/// The gateway binary against `ecs`, signing with the test credential.
async fn gateway_binary(ecs: &str, extra: &[&str], env: &[(&str, &str)]) -> Binary {
    let credential = test_credential();
    let mut env = env.to_vec();
    env.push(("ALIBABA_CLOUD_ACCESS_KEY_ID", credential.access_key_id()));
    env.push((
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        credential.access_key_secret(),
    ));
    let mut args = vec!["--endpoint", ecs, "--max-retries", "2"];
    args.extend_from_slice(extra);
    Binary::start(&args, &env).await
}

/// Known traffic: 4 OK (one of them after a retry), 3 NOT_FOUND, 2 INVALID_ARGUMENT.
async fn known_traffic(gateway: &Binary) {
    let mut client = gateway.client().await;
    for id in ["t-ok1", "t-ok2", "t-ok3"] {
        client
            .stop_invocation(request("cn-hangzhou", id, &[]))
            .await
            .unwrap();
    }
    client
        .stop_invocation(request("cn-hangzhou", "t-retry", &[]))
        .await
        .unwrap();
    for id in ["t-missing1", "t-missing2", "t-missing3"] {
        let status = client
            .stop_invocation(request("cn-hangzhou", id, &[]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
    }
    for region in ["CN_HANGZHOU", ""] {
        let status = client
            .stop_invocation(request(region, "t-ok1", &[]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `sum by (label) (metric)` from Prometheus' HTTP API, as label value → value.
async fn query(
    http: &reqwest::Client,
    prometheus: &str,
    promql: &str,
    label: &str,
) -> HashMap<String, f64> {
    let url = format!(
        "http://{prometheus}/api/v1/query?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("query", promql)
            .finish()
    );
    let body = http.get(url).send().await.unwrap().text().await.unwrap();
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    answer["data"]["result"]
        .as_array()
        .map(|results| {
            results
                .iter()
                .map(|r| {
                    let key = r["metric"][label].as_str().unwrap_or("").to_owned();
                    let value = r["value"][1].as_str().unwrap().parse().unwrap();
                    (key, value)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_counts_of_known_traffic() {
    let Ok(prometheus_bin) = which("prometheus") else {
        assert!(std::env::var_os("CI").is_none(), "CI installs prometheus");
        eprintln!("SKIPPED: no prometheus on PATH (Debian: apt install prometheus)");
        return;
    };
    let ecs = scripted_ecs().await;
    let gateway = gateway_binary(
        &format!("{}/", ecs.uri()),
        &["--metrics-listen", "127.0.0.1:0"],
        &[],
    )
    .await;
    let metrics_addr = gateway.metrics.clone().unwrap();

    let dir = std::env::temp_dir().join(format!("ecs-gateway-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: ecs-gateway\n    static_configs:\n      - targets: ['{metrics_addr}']\n"),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let mut prometheus = Command::new(prometheus_bin)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    known_traffic(&gateway).await;

    let http = reqwest::Client::new();
    // Prometheus takes a while to open its port on a busy machine: wait until it says it is ready.
    let ready = format!("http://{web}/-/ready");
    let mut up = false;
    for _ in 0..120 {
        if http
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(up, "prometheus did not become ready within 60 s");
    let expected_codes = HashMap::from([
        ("OK".to_owned(), 4.0),
        ("NotFound".to_owned(), 3.0),
        ("InvalidArgument".to_owned(), 2.0),
    ]);
    let handled = r#"sum by (grpc_code) (grpc_server_handled_total{job="ecs-gateway",grpc_method="StopInvocation"})"#;
    let mut seen = HashMap::new();
    for _ in 0..60 {
        seen = query(&http, &web, handled, "grpc_code").await;
        if seen == expected_codes {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(seen, expected_codes);
    // Each query: the label it groups by, and what it must say.
    type Check<'a> = (&'a str, &'a str, &'a [(&'a str, f64)]);
    let checks: [Check; 5] = [
        (
            r#"sum by (reason) (ecs_gateway_retries_total{job="ecs-gateway"}) > 0"#,
            "reason",
            &[("transient", 1.0)],
        ),
        (
            r#"sum by (ecs_code) (ecs_gateway_upstream_attempts_total{job="ecs-gateway"})"#,
            "ecs_code",
            &[
                ("none", 4.0),
                ("InvalidInvokeId.NotFound", 3.0),
                ("ServiceUnavailable", 1.0),
            ],
        ),
        (
            r#"sum(grpc_server_handling_seconds_count{job="ecs-gateway"})"#,
            "",
            &[("", 9.0)],
        ),
        (r#"up{job="ecs-gateway"}"#, "job", &[("ecs-gateway", 1.0)]),
        (
            r#"count(process_open_fds{job="ecs-gateway"} > 0)"#,
            "",
            &[("", 1.0)],
        ),
    ];
    for (promql, label, expected) in checks {
        let expected: HashMap<String, f64> =
            expected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(
            query(&http, &web, promql, label).await,
            expected,
            "{promql}"
        );
    }

    // Every dashboard query is valid PromQL over these series, and most have data (rates need a
    // few scrapes).
    for _ in 0..40 {
        let scrapes = query(
            &http,
            &web,
            r#"count_over_time(up{job="ecs-gateway"}[1m])"#,
            "job",
        )
        .await;
        if scrapes.get("ecs-gateway").is_some_and(|n| *n >= 4.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("deploy/observability/dashboard.json").unwrap(),
    )
    .unwrap();
    let mut with_data = 0;
    let panels = dashboard["panels"].as_array().unwrap();
    for target in panels.iter().flat_map(|p| p["targets"].as_array().unwrap()) {
        let expr = target["expr"]
            .as_str()
            .unwrap()
            .replace("$__rate_interval", "1m")
            .replace("$job", ".*");
        let url = format!(
            "http://{web}/api/v1/query?{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("query", &expr)
                .finish()
        );
        let answer: serde_json::Value =
            serde_json::from_str(&http.get(url).send().await.unwrap().text().await.unwrap())
                .unwrap();
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        if !answer["data"]["result"].as_array().unwrap().is_empty() {
            with_data += 1;
        }
    }
    // The credential panels have none: this gateway signs with a long-lived key.
    assert!(
        with_data >= 12,
        "only {with_data} dashboard queries returned data"
    );

    // The exposition itself passes promtool's checks.
    let exposition = http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        !exposition.contains("t-ok1") && !exposition.contains("cn-hangzhou"),
        "no caller strings in labels"
    );

    prometheus.kill().await.unwrap();
    gateway.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn which(program: &str) -> Result<String, ()> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(|dir| format!("{dir}/{program}"))
        .find(|candidate| std::path::Path::new(candidate).is_file())
        .ok_or(())
}

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

/// An OTLP collector on loopback: HTTP (`/v1/traces`, protobuf) or gRPC.
enum Collector {
    Http(MockServer),
    Grpc {
        endpoint: String,
        received: std::sync::Arc<std::sync::Mutex<Vec<ExportTraceServiceRequest>>>,
    },
}

struct Receiver(std::sync::Arc<std::sync::Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    async fn start(protocol: &str) -> Self {
        if protocol == "grpc" {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let endpoint = format!("http://{}", listener.local_addr().unwrap());
            let received = std::sync::Arc::default();
            let service = TraceServiceServer::new(Receiver(std::sync::Arc::clone(&received)));
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
            );
            return Collector::Grpc { endpoint, received };
        }
        let collector = MockServer::start().await;
        Mock::given(method("POST"))
            .and(wiremock::matchers::path("/v1/traces"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&collector)
            .await;
        Collector::Http(collector)
    }

    fn endpoint(&self) -> String {
        match self {
            Collector::Http(server) => server.uri(),
            Collector::Grpc { endpoint, .. } => endpoint.clone(),
        }
    }

    async fn exports(&self) -> Vec<ExportTraceServiceRequest> {
        match self {
            Collector::Http(server) => server
                .received_requests()
                .await
                .unwrap()
                .iter()
                .map(|r| ExportTraceServiceRequest::decode(r.body.as_slice()).unwrap())
                .collect(),
            Collector::Grpc { received, .. } => received.lock().unwrap().clone(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_go_to_the_otlp_endpoint_continuing_the_callers_trace() {
    for protocol in ["http/protobuf", "grpc"] {
        otlp_export_over(protocol).await;
    }
}

async fn otlp_export_over(protocol: &str) {
    let ecs = scripted_ecs().await;
    let collector = Collector::start(protocol).await;
    let gateway = gateway_binary(
        &format!("{}/", ecs.uri()),
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ],
    )
    .await;
    let mut client = gateway.client().await;
    let mut call = tonic::Request::new(request("cn-hangzhou", "t-retry", &[]));
    call.metadata_mut().insert(
        "traceparent",
        format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
            .parse()
            .unwrap(),
    );
    client.stop_invocation(call).await.unwrap();
    client
        .stop_invocation(request("cn-hangzhou", "t-ok1", &[]))
        .await
        .unwrap();
    let logs = gateway.stop().await;

    // The audit lines: the caller's trace id, and a fresh one for the call that brought none.
    let finished: Vec<&serde_json::Value> = logs
        .iter()
        .filter(|l| l["message"] == "call finished")
        .collect();
    assert_eq!(finished.len(), 2, "{logs:?}");
    assert_eq!(finished[0]["span"]["trace_id"], CALLER_TRACE);
    let fresh = finished[1]["span"]["trace_id"].as_str().unwrap();
    assert!(
        fresh.len() == 32 && fresh != CALLER_TRACE && fresh != "0".repeat(32),
        "{fresh}"
    );

    let mut spans = Vec::new();
    for export in collector.exports().await {
        for resource in export.resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
    }
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let attribute = |span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
        span.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value)
            .map(|v| format!("{v:?}"))
    };
    let calls: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "StopInvocation")
        .collect();
    assert_eq!(
        calls.len(),
        2,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let continued = calls
        .iter()
        .find(|s| hex(&s.trace_id) == CALLER_TRACE)
        .expect("the caller's trace continued");
    assert_eq!(hex(&continued.parent_span_id), CALLER_SPAN);
    let other = calls
        .iter()
        .find(|s| hex(&s.trace_id) != CALLER_TRACE)
        .unwrap();
    assert_eq!(
        hex(&other.trace_id),
        fresh,
        "the log line and the exported span agree"
    );

    let mut attempts: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "upstream_attempt" && s.parent_span_id == continued.span_id)
        .collect();
    attempts.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(attempts.len(), 2, "one span per attempt");
    let has = |span, key, value: &str| attribute(span, key).is_some_and(|v| v.contains(value));
    assert!(has(attempts[0], "http_status", "503"));
    assert!(has(attempts[0], "ecs_code", "ServiceUnavailable"));
    assert_eq!(attribute(attempts[0], "retry_reason"), None);
    assert!(has(attempts[1], "retry_reason", "transient"));
    assert!(has(attempts[1], "http_status", "200"));
}

/// A value of the exposition, e.g. `ecs_gateway_shed_total{reason="concurrency"}`.
fn sample(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{exposition}"))
}

/// A gateway with metrics on whose upstream answers 503 after `delay`, taking at most
/// `max_concurrent_requests` calls at once, with a retry budget of its reserve alone.
async fn failing_gateway(
    delay: Duration,
    max_concurrent_requests: usize,
) -> (crate::support::Gateway, MockServer) {
    use ecs_gateway::testing::api::ServiceSettings;
    let ecs = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_string(ecs_body("service-unavailable.json"))
                .set_delay(delay),
        )
        .mount(&ecs)
        .await;
    let mut settings = crate::support::settings(&format!("{}/", ecs.uri()));
    settings.retry_budget = 0.0;
    let client = ecs_gateway::aliyun::EcsClient::new(test_credential(), settings).unwrap();
    let setup = crate::support::Setup {
        service: Some(ServiceSettings {
            max_concurrent_requests,
            ..ServiceSettings::default()
        }),
        metrics: true,
        ..crate::support::Setup::default()
    };
    let gateway = crate::support::Gateway::start_setup(client, setup, None).await;
    (gateway, ecs)
}

#[tokio::test]
async fn shed_work_is_counted_by_the_limit_that_refused_it() {
    // One call at a time, the upstream slow: the two calls that arrive meanwhile are shed.
    let (gateway, _ecs) = failing_gateway(Duration::from_millis(500), 1).await;
    let metrics = gateway.metrics.clone().expect("metrics are on");
    let calls = (0..3).map(|i| {
        let mut client = gateway.client.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(50 * i)).await;
            client
                .stop_invocation(request("cn-hangzhou", "t-1", &[]))
                .await
                .unwrap_err()
                .code()
        }
    });
    let mut codes = futures_util::future::join_all(calls).await;
    codes.sort_by_key(|c| *c as i32);
    assert_eq!(
        codes,
        [
            tonic::Code::ResourceExhausted,
            tonic::Code::ResourceExhausted,
            tonic::Code::Unavailable
        ]
    );
    let exposition = metrics.encode();
    assert_eq!(
        sample(
            &exposition,
            r#"ecs_gateway_shed_total{reason="concurrency"}"#
        ),
        2.0
    );
    assert_eq!(
        sample(
            &exposition,
            r#"ecs_gateway_shed_total{reason="connections"}"#
        ),
        0.0
    );
    assert_eq!(sample(&exposition, "ecs_gateway_in_flight_calls"), 0.0);

    // The budget's reserve (10 retries a second over 10 s, all there from the start) pays for
    // the first 100 retries of calls that always fail; with no share of calls to add (ratio 0),
    // the 51st call's first retry is refused.
    let (gateway, _ecs) = failing_gateway(Duration::ZERO, 8).await;
    let metrics = gateway.metrics.clone().expect("metrics are on");
    for _ in 0..51 {
        let status = gateway.refused_t1().await;
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }
    let exposition = metrics.encode();
    assert_eq!(
        sample(
            &exposition,
            r#"ecs_gateway_shed_total{reason="retry_budget"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &exposition,
            r#"ecs_gateway_upstream_attempts_total{action="StopInvocation",http_status="503",ecs_code="ServiceUnavailable"}"#
        ),
        50.0 * 3.0 + 1.0
    );
}

#[tokio::test]
async fn a_collector_that_is_down_is_counted_and_warned_about_while_calls_go_on() {
    let ecs = scripted_ecs().await;
    let gateway = gateway_binary(
        &format!("{}/", ecs.uri()),
        &["--metrics-listen", "127.0.0.1:0"],
        &[
            // Nothing listens on the discard port.
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await;
    let mut client = gateway.client().await;
    for _ in 0..3 {
        client
            .stop_invocation(request("cn-hangzhou", "t-ok1", &[]))
            .await
            .unwrap();
    }
    let failures = |exposition: &str| -> u64 {
        exposition
            .lines()
            .find_map(|l| l.strip_prefix("ecs_gateway_otlp_export_failures_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let mut counted = 0;
    for _ in 0..100 {
        counted = failures(&gateway.scrape().await);
        if counted > 0
            && !gateway
                .lines("OTLP trace export failed; those spans are dropped")
                .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(counted > 0, "no export failure counted");
    let warned = gateway.lines("OTLP trace export failed; those spans are dropped");
    assert_eq!(warned.len(), 1, "warned once, not per batch: {warned:?}");
    assert_eq!(warned[0]["level"], "WARN");
    client
        .stop_invocation(request("cn-hangzhou", "t-ok1", &[]))
        .await
        .unwrap();
    gateway.stop().await;
}

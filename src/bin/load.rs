//! `ecs-gateway-load`: a small gRPC load generator for the gateway, plus the bare baseline server.
//!
//! Written here because ghz cannot be installed on the build machines and h2load never reads
//! `grpc-status`. It reports throughput, latency percentiles and counts per gRPC status code, and,
//! given `--pid`, the server process's CPU time per call and peak RSS from `/proc`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ecs_gateway::pb::cloud_assistant_service_client::CloudAssistantServiceClient;
use ecs_gateway::pb::cloud_assistant_service_server::{
    CloudAssistantService, CloudAssistantServiceServer,
};
use ecs_gateway::pb::{StopInvocationRequest, StopInvocationResponse};
use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint};

// The same allocator as the gateway binary, so the bare baseline is measured on equal terms.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ecs-gateway-load",
    about = "Load generator and bare baseline server for ecs-gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send StopInvocation calls to a gRPC server and report latency and status counts.
    Grpc(GrpcArgs),
    /// POST to an HTTP(S) URL and report latency (to measure an upstream on its own).
    Http(HttpArgs),
    /// Send signed StopInvocation requests straight to an ECS endpoint (the simulator), as the
    /// gateway's own ECS client does: measures the upstream alone.
    Ecs(EcsArgs),
    /// Start a command and time how long until its gRPC health check answers SERVING.
    Startup {
        /// Address to poll.
        #[arg(long, default_value = "127.0.0.1:50051")]
        target: String,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
    /// Hold many StopInvocationAndWait streams open on a gateway in front of an in-process
    /// simulator whose executions stop slowly, and report what they cost the gateway while idle.
    Waits(WaitsArgs),
    /// Many StopInvocationAndWait streams, each on its own invocation, in front of an in-process
    /// simulator whose stopped executions end after `--stop-delay`: how long after an execution
    /// ended its caller knew, and the reads that cost.
    Ends(EndsArgs),
    /// One StopInvocationAndWait on an invocation of many running instances, in front of an
    /// in-process simulator, and what it cost the gateway: CPU per instance stopped, stops, polls.
    Wide(WideArgs),
    /// Serve StopInvocation with no upstream work (the baseline the gateway is compared with), or,
    /// with `--forward`, with one pooled hyper POST to that URL per call and nothing else: the
    /// floor for a gateway that must make one HTTP request per call.
    Bare {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:50061")]
        listen: SocketAddr,
        /// Upstream URL to POST to once per call (http:// is HTTP/1.1; https:// is HTTP/2, one
        /// connection, as the gateway uses an endpoint that offers h2).
        #[arg(long)]
        forward: Option<http::Uri>,
    },
}

#[derive(clap::Args, Clone)]
struct Load {
    /// Calls in flight at once.
    #[arg(long, short = 'c', default_value_t = 1)]
    concurrency: usize,
    /// Total calls (ignored when --duration is set).
    #[arg(long, short = 'n', default_value_t = 1000)]
    total: u64,
    /// Run for this long instead of a fixed total (humantime, e.g. 30s).
    #[arg(long)]
    duration: Option<humantime::Duration>,
    /// Calls per second across all workers; unlimited when unset.
    #[arg(long)]
    rate: Option<f64>,
    /// Calls sent first and not measured.
    #[arg(long, default_value_t = 200)]
    warmup: u64,
    /// Process whose CPU time and peak RSS to report (the server under test).
    #[arg(long)]
    pid: Option<u32>,
    /// A label for the report line.
    #[arg(long, default_value = "run")]
    label: String,
}

#[derive(clap::Args, Clone)]
struct GrpcArgs {
    /// Server address, host:port.
    #[arg(long, default_value = "127.0.0.1:50051")]
    target: String,
    /// HTTP/2 connections to spread calls over.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Region of the calls.
    #[arg(long, default_value = "cn-hangzhou")]
    region: String,
    /// Invocation to stop.
    #[arg(long, default_value = "t-demo0001")]
    invoke_id: String,
    /// Per-call deadline sent as grpc-timeout.
    #[arg(long, default_value = "10s")]
    timeout: humantime::Duration,
    #[command(flatten)]
    load: Load,
}

#[derive(clap::Args, Clone)]
struct WaitsArgs {
    /// The gateway, host:port (or several, comma-separated: replicas, streams spread in turn); it
    /// must sign with the demo credential and send to `--simulator`.
    #[arg(long, default_value = "127.0.0.1:50051")]
    target: String,
    /// Where the in-process simulator listens (the gateway's --endpoint).
    #[arg(long, default_value = "127.0.0.1:18090")]
    simulator: SocketAddr,
    /// Streams held open at once.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Distinct invocations the streams wait on; streams share them round-robin.
    #[arg(long, default_value_t = 1000)]
    invocations: usize,
    /// Running instances of each invocation, all targeted by every stream on it.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// HTTP/2 connections to spread the streams over (the gateway allows 256 streams each).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// How long to measure once every stream is waiting.
    #[arg(long, default_value = "20s")]
    hold: humantime::Duration,
    /// The gateway's process, for CPU and RSS.
    #[arg(long)]
    pid: u32,
    /// A label for the report line.
    #[arg(long, default_value = "waits")]
    label: String,
}

#[derive(clap::Args, Clone)]
struct EndsArgs {
    /// The gateway, host:port; it must sign with the demo credential and send to `--simulator`.
    #[arg(long, default_value = "127.0.0.1:50051")]
    target: String,
    /// Where the in-process simulator listens (the gateway's --endpoint).
    #[arg(long, default_value = "127.0.0.1:18090")]
    simulator: SocketAddr,
    /// Streams, each on an invocation of its own with one running instance.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// How long a stopped execution stays Stopping before it is Stopped.
    #[arg(long, default_value = "20s")]
    stop_delay: humantime::Duration,
    /// HTTP/2 connections to spread the streams over (the gateway allows 256 streams each).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// A label for the report line.
    #[arg(long, default_value = "ends")]
    label: String,
}

#[derive(clap::Args, Clone)]
struct WideArgs {
    /// The gateway, host:port; it must sign with the demo credential and send to `--simulator`.
    #[arg(long, default_value = "127.0.0.1:50051")]
    target: String,
    /// Where the in-process simulator listens (the gateway's --endpoint).
    #[arg(long, default_value = "127.0.0.1:18090")]
    simulator: SocketAddr,
    /// Running instances of the one invocation, all targeted (an empty instance list).
    #[arg(long, default_value_t = 1000)]
    instances: usize,
    /// How long a stopped execution stays Stopping before it is Stopped.
    #[arg(long, default_value = "2s")]
    stop_delay: humantime::Duration,
    /// The gateway's process, for CPU and RSS.
    #[arg(long)]
    pid: u32,
    /// A label for the report line.
    #[arg(long, default_value = "wide")]
    label: String,
}

#[derive(clap::Args, Clone)]
struct EcsArgs {
    /// Endpoint URL, e.g. http://127.0.0.1:18081/
    #[arg(long)]
    url: String,
    #[command(flatten)]
    load: Load,
}

#[derive(clap::Args, Clone)]
struct HttpArgs {
    /// URL to POST to.
    #[arg(long)]
    url: String,
    #[command(flatten)]
    load: Load,
}

/// CPU ticks (user + system) and peak RSS of a process, from /proc.
fn proc_sample(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kib = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()?;
    Some((ticks, hwm_kib))
}

/// CPU time of a process's live threads in nanoseconds, from each thread's schedstat: finer than
/// the 10 ms ticks of /proc/PID/stat, which a one-wait measurement of a few ms would round away.
fn task_cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let schedstat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Clock ticks per second for /proc CPU times (USER_HZ), as the kernel reports it.
fn user_hz() -> f64 {
    rustix::param::clock_ticks_per_second() as f64
}

struct Outcome {
    latencies_us: Vec<u64>,
    codes: BTreeMap<String, u64>,
    elapsed: Duration,
    /// The server's /proc samples around the measured calls (warm-up excluded).
    server_before: Option<(u64, u64)>,
    server_after: Option<(u64, u64)>,
}

async fn drive<F, Fut>(load: &Load, call: F) -> Outcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = String> + Send,
{
    let call = Arc::new(call);
    for i in 0..load.warmup {
        call(i).await;
    }
    let server_before = load.pid.and_then(proc_sample);
    let deadline = load.duration.map(|d| Instant::now() + *d);
    let total = if deadline.is_some() {
        u64::MAX
    } else {
        load.total
    };
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let results = Arc::new(Mutex::new((
        Vec::with_capacity(total.min(1 << 22) as usize),
        BTreeMap::new(),
    )));
    let interval = load
        .rate
        .map(|r| Duration::from_secs_f64(load.concurrency as f64 / r));
    let started = Instant::now();
    let workers: Vec<_> = (0..load.concurrency)
        .map(|_| {
            let (call, next, results) = (call.clone(), next.clone(), results.clone());
            tokio::spawn(async move {
                let mut local = Vec::new();
                let mut codes: BTreeMap<String, u64> = BTreeMap::new();
                let mut ticker = interval.map(tokio::time::interval);
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total || deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    // In rate mode latency counts from when the call was due, not from when a
                    // busy worker got round to it: no coordinated omission.
                    let t0 = match ticker.as_mut() {
                        Some(t) => t.tick().await.into_std(),
                        None => Instant::now(),
                    };
                    let code = call(i).await;
                    local.push(t0.elapsed().as_micros() as u64);
                    *codes.entry(code).or_default() += 1;
                }
                let mut all = results.lock().await;
                all.0.extend(local);
                for (k, v) in codes {
                    *all.1.entry(k).or_default() += v;
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let elapsed = started.elapsed();
    let server_after = load.pid.and_then(proc_sample);
    let (latencies_us, codes) = std::mem::take(&mut *results.lock().await);
    Outcome {
        latencies_us,
        codes,
        elapsed,
        server_before,
        server_after,
    }
}

fn report(load: &Load, mut outcome: Outcome) {
    outcome.latencies_us.sort_unstable();
    let n = outcome.latencies_us.len();
    let pct = |p: f64| -> u64 {
        if n == 0 {
            return 0;
        }
        outcome.latencies_us[((n as f64 * p).ceil() as usize).clamp(1, n) - 1]
    };
    let rps = n as f64 / outcome.elapsed.as_secs_f64();
    let mut line = serde_json::json!({
        "label": load.label,
        "concurrency": load.concurrency,
        "calls": n,
        "seconds": (outcome.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        "rps": rps.round(),
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "max_us": outcome.latencies_us.last().copied().unwrap_or(0),
        "codes": outcome.codes,
    });
    if let (Some((t0, _)), Some((t1, hwm))) = (outcome.server_before, outcome.server_after) {
        let cpu_s = (t1 - t0) as f64 / user_hz();
        line["server_cpu_s"] = serde_json::json!(cpu_s);
        line["server_cpu_us_per_call"] =
            serde_json::json!((cpu_s * 1e7 / n.max(1) as f64).round() / 10.0);
        line["server_peak_rss_mib"] =
            serde_json::json!((hwm as f64 / 1024.0 * 10.0).round() / 10.0);
    }
    println!("{line}");
}

type Forwarding = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Empty<bytes::Bytes>,
>;

/// The bare baseline: the same RPC with no validation, signing or upstream; with an upstream, one
/// POST per call whose answer is read and dropped.
struct Bare {
    forward: Option<(Forwarding, http::Uri)>,
}

impl Bare {
    /// A pooled hyper client as the gateway's transport builds one (rustls, system roots with
    /// `SSL_CERT_FILE`, TCP_NODELAY), without the gateway's protocol probe: https is HTTP/2 only.
    fn new(forward: Option<http::Uri>) -> anyhow::Result<Self> {
        let Some(uri) = forward else {
            return Ok(Self { forward: None });
        };
        let roots = ecs_gateway::testing::aliyun::native_roots()
            .unwrap_or_else(|_| rustls::RootCertStore::empty());
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        // hyper-rustls sets ALPN itself from the versions enabled.
        let mut tls = ecs_gateway::testing::aliyun::client_config(roots);
        tls.alpn_protocols.clear();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let h2 = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(h2)
                .pool_max_idle_per_host(256)
                .build(connector);
        Ok(Self {
            forward: Some((client, uri)),
        })
    }
}

#[tonic::async_trait]
impl CloudAssistantService for Bare {
    async fn stop_invocation(
        &self,
        _request: tonic::Request<StopInvocationRequest>,
    ) -> Result<tonic::Response<StopInvocationResponse>, tonic::Status> {
        if let Some((client, uri)) = &self.forward {
            use http_body_util::BodyExt as _;
            let request = http::Request::post(uri.clone())
                .body(http_body_util::Empty::new())
                .map_err(|e| tonic::Status::internal(e.to_string()))?;
            let answer = client
                .request(request)
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            answer
                .into_body()
                .collect()
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        }
        Ok(tonic::Response::new(StopInvocationResponse {
            request_id: "473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E".into(),
            planned: None,
        }))
    }

    type StopInvocationAndWaitStream = futures_util::stream::Empty<
        Result<ecs_gateway::pb::StopInvocationAndWaitResponse, tonic::Status>,
    >;

    async fn stop_invocation_and_wait(
        &self,
        _request: tonic::Request<ecs_gateway::pb::StopInvocationAndWaitRequest>,
    ) -> Result<tonic::Response<Self::StopInvocationAndWaitStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("the bare server only stops"))
    }

    async fn get_invocation(
        &self,
        _request: tonic::Request<ecs_gateway::pb::GetInvocationRequest>,
    ) -> Result<tonic::Response<ecs_gateway::pb::GetInvocationResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("the bare server only stops"))
    }
}

/// Current RSS of a process, KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Holds `args.streams` waits open and reports the gateway's RSS and idle CPU, and the polls the
/// simulator received, while they wait.
async fn waits(args: WaitsArgs) -> anyhow::Result<()> {
    use ecs_gateway::pb::StopInvocationAndWaitRequest;
    use ecs_gateway::simulator::{ExecutionStatus, Invocation, Simulator};
    // Nothing ends while measuring: the streams stay idle-waiting.
    let simulator = simulator(args.simulator, Duration::from_secs(24 * 3600)).await?;
    for n in 0..args.invocations {
        let instances: Vec<String> = (0..args.instances)
            .map(|i| format!("i-load{n:05}x{i:04}"))
            .collect();
        let executions: Vec<(&str, ExecutionStatus)> = instances
            .iter()
            .map(|i| (i.as_str(), ExecutionStatus::Running))
            .collect();
        simulator.world().insert(
            "cn-hangzhou",
            &format!("t-load{n:05}"),
            Invocation::new(&executions),
        );
    }
    let rss_before = rss_kib(args.pid).unwrap_or(0);
    let clients: Vec<_> = channels(&args.target, args.connections)
        .await?
        .into_iter()
        .map(CloudAssistantServiceClient::new)
        .collect();
    let (first_tx, mut first_rx) = tokio::sync::mpsc::channel::<bool>(args.streams);
    let mut held = Vec::with_capacity(args.streams);
    let started = Instant::now();
    for i in 0..args.streams {
        let mut client = clients[i % clients.len()].clone();
        let request = StopInvocationAndWaitRequest {
            region_id: "cn-hangzhou".into(),
            invoke_id: format!("t-load{:05}", i % args.invocations.max(1)),
            ..Default::default()
        };
        let first_tx = first_tx.clone();
        held.push(tokio::spawn(async move {
            match client.stop_invocation_and_wait(request).await {
                Ok(response) => {
                    let mut stream = response.into_inner();
                    let first = stream.message().await;
                    let _ = first_tx.send(matches!(first, Ok(Some(_)))).await;
                    // Held until aborted; a status here means the wait ended early.
                    while let Ok(Some(_)) = stream.message().await {}
                }
                Err(status) => {
                    eprintln!("wait refused: {status:?}");
                    let _ = first_tx.send(false).await;
                }
            }
        }));
    }
    let mut waiting = 0;
    for _ in 0..args.streams {
        if first_rx.recv().await == Some(true) {
            waiting += 1;
        }
    }
    let settled = started.elapsed();
    let reads = |sim: &Simulator| sim.reads_received();
    // Let the first polls go by, then measure a steady state.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (reads_before, cpu_before) = (reads(&simulator), proc_sample(args.pid));
    tokio::time::sleep(*args.hold).await;
    let (reads_after, cpu_after) = (reads(&simulator), proc_sample(args.pid));
    let rss = rss_kib(args.pid).unwrap_or(0);
    let hold = args.hold.as_secs_f64();
    let cpu_percent = match (cpu_before, cpu_after) {
        (Some((a, _)), Some((b, _))) => (b - a) as f64 / user_hz() / hold * 100.0,
        _ => f64::NAN,
    };
    for task in held {
        task.abort();
    }
    // What stays once every stream is gone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after_end = rss_kib(args.pid).unwrap_or(0);
    let rss_mib = rss as f64 / 1024.0;
    println!(
        "{}",
        serde_json::json!({
            "label": args.label,
            "streams": args.streams,
            "waiting": waiting,
            "invocations": args.invocations,
            "instances": args.instances,
            "seconds_to_all_waiting": (settled.as_secs_f64() * 100.0).round() / 100.0,
            "rss_mib_before": (rss_before as f64 / 1024.0 * 10.0).round() / 10.0,
            "rss_mib": (rss_mib * 10.0).round() / 10.0,
            "rss_mib_after_end": (rss_after_end as f64 / 1024.0 * 10.0).round() / 10.0,
            "rss_kib_per_stream": ((rss.saturating_sub(rss_before)) as f64 / args.streams.max(1) as f64 * 10.0).round() / 10.0,
            "idle_cpu_percent": (cpu_percent * 100.0).round() / 100.0,
            "polls_per_second": ((reads_after - reads_before) as f64 / hold * 100.0).round() / 100.0,
        })
    );
    Ok(())
}

/// The demo-credential simulator, serving on `addr` until the process ends.
async fn simulator(
    addr: SocketAddr,
    stop_delay: Duration,
) -> anyhow::Result<ecs_gateway::simulator::Simulator> {
    use ecs_gateway::simulator::{Simulator, SimulatorConfig};
    let simulator = Simulator::new(SimulatorConfig {
        stop_delay,
        ..SimulatorConfig::demo()
    });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tokio::spawn(simulator.clone().serve(listener, std::future::pending()));
    Ok(simulator)
}

/// Waits on `args.streams` invocations until each has ended, and reports the time from an
/// execution's end in the simulator to its stream's last message (the stop is taken to be sent at
/// the first message: the error is one stop call), and the DescribeInvocations calls it took.
async fn ends(args: EndsArgs) -> anyhow::Result<()> {
    use ecs_gateway::pb::StopInvocationAndWaitRequest;
    use ecs_gateway::simulator::{ExecutionStatus, Invocation};
    let stop_delay: Duration = *args.stop_delay;
    let simulator = simulator(args.simulator, stop_delay).await?;
    for n in 0..args.streams {
        let instance = format!("i-end{n:05}");
        simulator.world().insert(
            "cn-hangzhou",
            &format!("t-end{n:05}"),
            Invocation::new(&[(instance.as_str(), ExecutionStatus::Running)]),
        );
    }
    let clients: Vec<_> = channels(&args.target, args.connections)
        .await?
        .into_iter()
        .map(CloudAssistantServiceClient::new)
        .collect();
    let reads_before = simulator.reads_received();
    let started = Instant::now();
    let streams = (0..args.streams).map(|i| {
        let mut client = clients[i % clients.len()].clone();
        let request = StopInvocationAndWaitRequest {
            region_id: "cn-hangzhou".into(),
            invoke_id: format!("t-end{i:05}"),
            ..Default::default()
        };
        tokio::spawn(async move {
            let mut stream = client
                .stop_invocation_and_wait(request)
                .await
                .ok()?
                .into_inner();
            stream.message().await.ok()??;
            let first = Instant::now();
            while let Some(_message) = stream.message().await.ok()? {}
            Some(first.elapsed())
        })
    });
    let mut know_ms = Vec::with_capacity(args.streams);
    let mut failed = 0;
    for stream in futures_util::future::join_all(streams).await {
        match stream {
            Ok(Some(took)) => {
                know_ms.push(took.saturating_sub(stop_delay).as_secs_f64() * 1000.0);
            }
            _ => failed += 1,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let reads = simulator.reads_received() - reads_before;
    know_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        let n = know_ms.len();
        if n == 0 {
            return f64::NAN;
        }
        know_ms[((n as f64 * p).ceil() as usize).clamp(1, n) - 1].round()
    };
    println!(
        "{}",
        serde_json::json!({
            "label": args.label,
            "streams": args.streams,
            "ended_ok": know_ms.len(),
            "failed": failed,
            "stop_delay_s": stop_delay.as_secs_f64(),
            "seconds": (seconds * 10.0).round() / 10.0,
            "reads": reads,
            "reads_per_second": (reads as f64 / seconds * 100.0).round() / 100.0,
            "know_p50_ms": pct(0.50),
            "know_p99_ms": pct(0.99),
            "know_max_ms": pct(1.0),
        })
    );
    Ok(())
}

/// How many `action` requests the simulator has received.
fn calls_of(simulator: &ecs_gateway::simulator::Simulator, action: &str) -> usize {
    simulator
        .calls()
        .iter()
        .filter(|c| c.action == action)
        .count()
}

/// Waits once on every instance of a wide invocation and reports the gateway's CPU per instance
/// stopped, from the call until the stream ends.
async fn wide(args: WideArgs) -> anyhow::Result<()> {
    use ecs_gateway::pb::StopInvocationAndWaitRequest;
    use ecs_gateway::simulator::{ExecutionStatus, Invocation};
    let simulator = simulator(args.simulator, *args.stop_delay).await?;
    let ids: Vec<String> = (0..args.instances)
        .map(|n| format!("i-wide{n:05}"))
        .collect();
    let executions: Vec<(&str, ExecutionStatus)> = ids
        .iter()
        .map(|id| (id.as_str(), ExecutionStatus::Running))
        .collect();
    simulator
        .world()
        .insert("cn-hangzhou", "t-wide", Invocation::new(&executions));
    let mut client = CloudAssistantServiceClient::new(
        channels(&args.target, 1)
            .await?
            .pop()
            .context("no channel")?,
    );
    let (rss_before, cpu_before) = (rss_kib(args.pid).unwrap_or(0), task_cpu_ns(args.pid));
    let started = Instant::now();
    let mut stream = client
        .stop_invocation_and_wait(StopInvocationAndWaitRequest {
            region_id: "cn-hangzhou".into(),
            invoke_id: "t-wide".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let (mut messages, mut last) = (0, None);
    let end = loop {
        match stream.message().await {
            Ok(Some(message)) => {
                messages += 1;
                last = Some(message);
            }
            Ok(None) => break "OK".to_string(),
            Err(status) => break format!("{:?}", status.code()),
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let cpu_ms = match (cpu_before, task_cpu_ns(args.pid)) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e6,
        _ => f64::NAN,
    };
    let final_instances = last.map_or(0, |m| m.final_instances);
    let per_instance_us = cpu_ms * 1000.0 / args.instances.max(1) as f64;
    println!(
        "{}",
        serde_json::json!({
            "label": args.label,
            "instances": args.instances,
            "ended": end,
            "final_instances": final_instances,
            "messages": messages,
            "stop_calls": calls_of(&simulator, "StopInvocation"),
            "polls": calls_of(&simulator, "DescribeInvocations"),
            "seconds": (seconds * 100.0).round() / 100.0,
            "gateway_cpu_ms": (cpu_ms * 10.0).round() / 10.0,
            "gateway_cpu_us_per_instance": (per_instance_us * 10.0).round() / 10.0,
            "rss_mib_before": (rss_before as f64 / 1024.0 * 10.0).round() / 10.0,
            "rss_mib": (rss_kib(args.pid).unwrap_or(0) as f64 / 1024.0 * 10.0).round() / 10.0,
        })
    );
    anyhow::ensure!(end == "OK", "the wait ended {end}");
    Ok(())
}

/// `connections` channels to `target`, or spread in turn over its comma-separated targets
/// (replicas).
async fn channels(target: &str, connections: usize) -> anyhow::Result<Vec<Channel>> {
    let targets: Vec<&str> = target.split(',').map(str::trim).collect();
    let mut out = Vec::with_capacity(connections);
    for n in 0..connections.max(targets.len()) {
        let target = targets[n % targets.len()];
        out.push(
            Endpoint::from_shared(format!("http://{target}"))?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Bare { listen, forward } => {
            let bare = Bare::new(forward)?;
            let incoming =
                tonic::transport::server::TcpIncoming::bind(listen)?.with_nodelay(Some(true));
            eprintln!("bare server listening on {listen}");
            tonic::transport::Server::builder()
                .add_service(CloudAssistantServiceServer::new(bare))
                .serve_with_incoming_shutdown(incoming, ecs_gateway::shutdown_signal())
                .await?;
        }
        Command::Waits(args) => waits(args).await?,
        Command::Ends(args) => ends(args).await?,
        Command::Wide(args) => wide(args).await?,
        Command::Grpc(args) => {
            let clients: Vec<_> = channels(&args.target, args.connections)
                .await?
                .into_iter()
                .map(CloudAssistantServiceClient::new)
                .collect();
            let (region, invoke, timeout) =
                (args.region.clone(), args.invoke_id.clone(), *args.timeout);
            let outcome = drive(&args.load, move |i| {
                let mut client = clients[i as usize % clients.len()].clone();
                let mut request = tonic::Request::new(StopInvocationRequest {
                    region_id: region.clone(),
                    invoke_id: invoke.clone(),
                    ..Default::default()
                });
                request.set_timeout(timeout);
                async move {
                    match client.stop_invocation(request).await {
                        Ok(_) => "Ok".to_owned(),
                        Err(status) => format!("{:?}", status.code()),
                    }
                }
            })
            .await;
            report(&args.load, outcome);
        }
        Command::Ecs(args) => {
            use ecs_gateway::aliyun::Credential;
            use ecs_gateway::aliyun::Endpoint as EcsEndpoint;
            use ecs_gateway::aliyun::{ClientSettings, EcsClient};
            use ecs_gateway::simulator::demo_credential;
            let credential = Credential::from_env().unwrap_or_else(|_| demo_credential());
            let settings = ClientSettings {
                endpoint: EcsEndpoint::parse(&args.url)?,
                ..ClientSettings::default()
            };
            let client = EcsClient::new(credential, settings)?;
            let request = ecs_gateway::testing::api::stop_invocation(&StopInvocationRequest {
                region_id: "cn-hangzhou".into(),
                invoke_id: "t-demo0001".into(),
                ..Default::default()
            })
            .map_err(|v| anyhow::anyhow!("{v}"))?;
            let request = Arc::new(request);
            let outcome = drive(&args.load, move |_| {
                let (client, request) = (client.clone(), request.clone());
                async move {
                    match client.stop_invocation(&request, None).await {
                        Ok(_) => "200".to_owned(),
                        Err(failed) => format!("{:?}", failed.error.class()),
                    }
                }
            })
            .await;
            report(&args.load, outcome);
        }
        Command::Startup { target, command } => {
            use tonic_health::pb::health_client::HealthClient;
            let started = Instant::now();
            let mut child = std::process::Command::new(&command[0])
                .args(&command[1..])
                .stdout(std::process::Stdio::null())
                .spawn()?;
            let serving_after = loop {
                if started.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    anyhow::bail!("not SERVING after 10 s");
                }
                if let Ok(channel) = Endpoint::from_shared(format!("http://{target}"))?
                    .connect()
                    .await
                {
                    let answer = HealthClient::new(channel)
                        .check(tonic_health::pb::HealthCheckRequest {
                            service: String::new(),
                        })
                        .await;
                    if answer.is_ok_and(|a| a.get_ref().status == 1) {
                        break started.elapsed();
                    }
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            };
            println!(
                "{}",
                serde_json::json!({"start_to_serving_ms": serving_after.as_secs_f64() * 1000.0})
            );
            child.kill()?;
            let _ = child.wait();
        }
        Command::Http(args) => {
            // https:// URLs are verified against the system's CAs (SSL_CERT_FILE honoured).
            let roots = ecs_gateway::testing::aliyun::native_roots()
                .unwrap_or_else(|_| rustls::RootCertStore::empty());
            let client = reqwest::Client::builder()
                .use_preconfigured_tls(ecs_gateway::testing::aliyun::client_config(roots))
                .tcp_nodelay(true)
                .build()?;
            let url = args.url.clone();
            let outcome = drive(&args.load, move |_| {
                let request = client.post(url.clone());
                async move {
                    match request.send().await {
                        Ok(r) => {
                            let status = r.status().as_u16().to_string();
                            let _ = r.bytes().await;
                            status
                        }
                        Err(_) => "transport-error".to_owned(),
                    }
                }
            })
            .await;
            report(&args.load, outcome);
        }
    }
    Ok(())
}

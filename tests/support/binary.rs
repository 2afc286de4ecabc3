//! The gateway binary as a user runs it: JSON logs collected as they come, the gRPC (and metrics)
//! address read from them, stopped with SIGTERM.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ecs_gateway::pb::cloud_assistant_service_client::CloudAssistantServiceClient;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// A running gateway process.
pub struct Binary {
    child: Child,
    /// The gRPC address.
    pub addr: String,
    /// The metrics address, with `--metrics-listen`.
    pub metrics: Option<String>,
    /// Every log line so far.
    pub logs: Logs,
}

impl Binary {
    /// Starts `ecs-gateway --listen 127.0.0.1:0 --log-format json <args>` with only `env` for
    /// credentials (see [`super::isolate_credentials`]) and waits until it listens.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(Command::new(env!("CARGO_BIN_EXE_ecs-gateway")), args, env).await
    }

    /// [`Self::start`] under `ulimit -n fds`, as in a container with a low file limit.
    pub async fn start_with_fd_limit(fds: u32, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new("bash");
        cmd.args(["-c", &format!("ulimit -n {fds} && exec \"$0\" \"$@\"")])
            .arg(env!("CARGO_BIN_EXE_ecs-gateway"));
        Self::spawn(cmd, args, env).await
    }

    async fn spawn(mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Self {
        super::isolate_credentials(&mut cmd);
        cmd.env_remove("RUST_LOG")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .envs(env.iter().copied())
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let wants_metrics = args.contains(&"--metrics-listen");
        let (addr, metrics, logs) = follow_logs(&mut child, wants_metrics).await;
        Self {
            child,
            addr,
            metrics,
            logs,
        }
    }

    /// The Prometheus exposition from `--metrics-listen`, fetched as a scraper does.
    pub async fn scrape(&self) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let addr = self.metrics.as_deref().expect("--metrics-listen");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET /metrics HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    /// Log lines with this message.
    pub fn lines(&self, message: &str) -> Vec<serde_json::Value> {
        let logs = self.logs.lock().unwrap();
        logs.iter()
            .filter(|l| l["message"] == message)
            .cloned()
            .collect()
    }

    /// CPU time (user and system) the process has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        let per_second = rustix::param::clock_ticks_per_second();
        Duration::from_secs_f64(ticks as f64 / per_second as f64)
    }

    /// A client connected to the gateway.
    pub async fn client(&self) -> CloudAssistantServiceClient<tonic::transport::Channel> {
        CloudAssistantServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// The first log line with this message.
    pub fn line(&self, message: &str) -> Option<serde_json::Value> {
        let logs = self.logs.lock().unwrap();
        logs.iter().find(|l| l["message"] == message).cloned()
    }

    /// SIGTERM, and a clean exit (which flushes the trace exporter); every log line.
    pub async fn stop(mut self) -> Vec<serde_json::Value> {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap();
        assert!(exit.success(), "{exit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.logs.lock().unwrap().clone()
    }
}

/// Every JSON log line of a gateway process, collected as it comes.
pub type Logs = Arc<Mutex<Vec<serde_json::Value>>>;

/// Reads `child`'s JSON log lines until it listens (and, with `wants_metrics`, serves metrics);
/// returns the gRPC address, the metrics address and every line so far and from then on (lines keep
/// being collected, so the child never blocks on a full pipe).
pub async fn follow_logs(child: &mut Child, wants_metrics: bool) -> (String, Option<String>, Logs) {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (mut addr, mut metrics) = (None, None);
    tokio::time::timeout(Duration::from_secs(10), async {
        while addr.is_none() || (wants_metrics && metrics.is_none()) {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the gateway exited before listening");
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            match value["message"].as_str() {
                Some("ecs-gateway listening") => addr = value["addr"].as_str().map(str::to_owned),
                Some(m) if m.starts_with("metrics listening") => {
                    metrics = value["addr"].as_str().map(str::to_owned)
                }
                _ => {}
            }
            logs.lock().unwrap().push(value);
        }
    })
    .await
    .expect("the gateway starts");
    let collected = logs.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(value) = serde_json::from_str(&line) {
                collected.lock().unwrap().push(value);
            }
        }
    });
    (addr.unwrap(), metrics, logs)
}

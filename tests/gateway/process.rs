//! The real binary: refuses to start on settings that cannot work (one line on stderr naming the
//! setting, never a secret), warns about what `--dev` ignores, logs misconfiguration at error, and
//! drains in-flight calls on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use crate::support::binary::{Logs, follow_logs};
use crate::support::{request, start_simulator, test_credential};
use ecs_gateway::pb::cloud_assistant_service_client::CloudAssistantServiceClient;
use ecs_gateway::simulator::Faults;
use ecs_gateway::simulator::SimulatorConfig;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_ecs-gateway");

fn gateway_command() -> Command {
    let mut cmd = Command::new(BIN);
    crate::support::isolate_credentials(&mut cmd);
    cmd.env_remove("RUST_LOG")
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Reads JSON log lines until the "listening" one; returns the address.
async fn listening_addr(child: &mut Child) -> String {
    listening(child).await.0
}

/// Reads JSON log lines until the "listening" one; returns the address and every log line.
async fn listening(child: &mut Child) -> (String, Logs) {
    let (addr, _, logs) = follow_logs(child, false).await;
    (addr, logs)
}

/// Makes one StopInvocation call to the gateway at `addr` over a fresh connection.
async fn call_once(
    addr: &str,
    req: ecs_gateway::pb::StopInvocationRequest,
) -> Result<tonic::Response<ecs_gateway::pb::StopInvocationResponse>, tonic::Status> {
    let mut client = CloudAssistantServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    client.stop_invocation(req).await
}

/// Waits up to 5 s for a log line whose message is `message`.
async fn logged_within(logs: &Logs, message: &str) -> bool {
    crate::support::eventually(Duration::from_secs(5), || {
        logs.lock().unwrap().iter().any(|l| l["message"] == message)
    })
    .await
}

/// A command with a credential, listening on `addr`, and no authentication configured.
fn on_address(addr: &str) -> Command {
    let mut cmd = Command::new(BIN);
    crate::support::isolate_credentials(&mut cmd);
    cmd.env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIprocessTestKey")
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "process-test-secret")
        .env_remove("ECS_GATEWAY_ALLOW_UNAUTHENTICATED")
        .args(["--listen", addr, "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// A command with a well-formed credential in the environment.
fn with_credential() -> Command {
    let mut cmd = gateway_command();
    cmd.env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIprocessTestKey")
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "process-test-secret");
    cmd
}

/// Runs `cmd`, which must refuse to start, and returns the one line it wrote to stderr.
async fn refusal(mut cmd: Command) -> String {
    let output = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("a refusal is immediate")
        .unwrap();
    assert!(!output.status.success(), "it started: {cmd:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr}");
    lines[0].to_owned()
}

#[tokio::test]
async fn settings_that_cannot_work_are_refused_at_start_in_one_line_naming_the_setting() {
    let secret_env = |name: &'static str, value: &'static str| {
        let mut cmd = with_credential();
        cmd.env(name, value);
        cmd
    };
    let flags = |args: &[&str]| {
        let mut cmd = with_credential();
        cmd.args(args);
        cmd
    };
    let dir = crate::support::pki::TempDir::new();
    let ca = crate::support::pki::Ca::new("process test ca");
    let (leaf, other) = (ca.server("gateway"), ca.server("other"));
    let cert = dir.write("tls.crt", &leaf.cert_pem);
    let other_key = dir.write("other.key", &other.key_pem);
    let plaintext_tokens = dir.write("tokens", "billing hunter2-token\n");
    let bad_policy = dir.write(
        "policy.toml",
        "[callers.billing]\nregions = [\"cn-hangzou\"]\n",
    );
    let good_tokens = dir.write(
        "good-tokens",
        &format!("billing sha256:{}\n", "ab".repeat(32)),
    );
    let tiny_rate = dir.write(
        "tiny.toml",
        "[callers.billing]\nregions = [\"*\"]\nrate = 1e-12\n",
    );
    let tiny_rate = tiny_rate.to_str().unwrap().to_owned();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (cert, other_key, plaintext_tokens, bad_policy, good_tokens) = (
        path(&cert),
        path(&other_key),
        path(&plaintext_tokens),
        path(&bad_policy),
        path(&good_tokens),
    );
    let cases: Vec<(Command, &[&str], &[&str])> = vec![
        (
            on_address("0.0.0.0:0"),
            &[
                "refusing to serve 0.0.0.0:",
                "without authentication",
                "--auth-tokens-file",
                "--tls-client-ca",
                "--allow-unauthenticated",
            ],
            &[],
        ),
        (
            flags(&["--tls-cert", &cert]),
            &["--tls-key", "go together"],
            &[],
        ),
        (
            flags(&["--tls-client-ca", &cert]),
            &["--tls-client-ca", "needs TLS"],
            &[],
        ),
        (
            flags(&["--policy", &bad_policy]),
            &["--policy", "--auth-tokens-file"],
            &[],
        ),
        (
            flags(&["--tls-cert", &cert, "--tls-key", &other_key]),
            &["--tls-key is not the private key of the first certificate"],
            &["PRIVATE KEY"],
        ),
        (
            flags(&["--auth-tokens-file", "/nonexistent/tokens"]),
            &["--auth-tokens-file / ECS_GATEWAY_AUTH_TOKENS_FILE: cannot read /nonexistent/tokens"],
            &[],
        ),
        (
            flags(&["--auth-tokens-file", &plaintext_tokens]),
            &["--auth-tokens-file", "line 1", "never in the clear"],
            &["hunter2"],
        ),
        (
            flags(&["--auth-tokens-file", &good_tokens, "--policy", &bad_policy]),
            &[
                "--policy / ECS_GATEWAY_POLICY: callers.billing: regions: \"cn-hangzou\" is not a region",
            ],
            &[],
        ),
        (
            flags(&["--upstream-timeout", "0s"]),
            &["--upstream-timeout", "greater than zero"],
            &[],
        ),
        (
            secret_env("ECS_GATEWAY_CONNECT_TIMEOUT", "0s"),
            &["--connect-timeout"],
            &[],
        ),
        (
            secret_env("ECS_GATEWAY_SHUTDOWN_GRACE", "-1s"),
            &["--shutdown-grace"],
            &[],
        ),
        (
            flags(&["--max-call-duration", "0ms"]),
            &["--max-call-duration"],
            &[],
        ),
        (
            flags(&["--max-retries", "1000000"]),
            &["--max-retries"],
            &[],
        ),
        (
            flags(&["--max-request-bytes", "18446744073709551615"]),
            &["--max-request-bytes"],
            &[],
        ),
        (flags(&["--regions", " , "]), &["--regions"], &[]),
        (
            flags(&["--signature-version", "v2"]),
            &["--signature-version", "must be v3", "or v1"],
            &[],
        ),
        // Every number in range, named with its bound; none may panic (1e-12 once did).
        (
            flags(&[
                "--fleet-rate",
                "1e-12",
                "--redis-url",
                "redis://127.0.0.1:9/",
            ]),
            &["--fleet-rate", "from 0.001 to 1000000"],
            &[],
        ),
        (
            flags(&["--auth-tokens-file", &good_tokens, "--policy", &tiny_rate]),
            &[
                "--policy",
                "callers.billing",
                "rate",
                "from 0.001 to 1000000",
            ],
            &[],
        ),
        (
            flags(&["--reload-interval", "1ns"]),
            &["--reload-interval", "from 100ms to 1h"],
            &[],
        ),
        (
            flags(&["--max-connection-age", "500000000000y"]),
            &["--max-connection-age"],
            &[],
        ),
        (
            flags(&["--handshake-timeout", "400d"]),
            &["--handshake-timeout", "from 100ms to 5m"],
            &[],
        ),
        (
            flags(&["--drain-delay", "1y"]),
            &["--drain-delay", "at most 10m"],
            &[],
        ),
        (
            secret_env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s3cr3t-value\n"),
            &["ALIBABA_CLOUD_ACCESS_KEY_SECRET", "whitespace"],
            &["s3cr3t-value"],
        ),
        (
            secret_env("ALIBABA_CLOUD_ACCESS_KEY_ID", " LTAIpadded"),
            &["ALIBABA_CLOUD_ACCESS_KEY_ID"],
            &["LTAIpadded"],
        ),
        (
            secret_env("ALIBABA_CLOUD_SECURITY_TOKEN", "sts-token-value\r\n"),
            &["ALIBABA_CLOUD_SECURITY_TOKEN"],
            &["sts-token-value"],
        ),
        (
            flags(&[
                "--endpoint",
                "https://admin:hunter2@ecs.{region}.aliyuncs.com/",
            ]),
            &["--endpoint", "user info"],
            &["hunter2", "admin"],
        ),
        (
            flags(&["--endpoint", "https://ecs.{REGION}.aliyuncs.com/"]),
            &["--endpoint", "placeholder"],
            &[],
        ),
        (
            flags(&["--endpoint", "http://{region}:8080/"]),
            &["--endpoint", "{region}", "fixed label"],
            &[],
        ),
        (
            flags(&["--endpoint", "http://10.1.2.3/"]),
            &["--endpoint", "--allow-insecure-endpoint"],
            &[],
        ),
        (flags(&["--fleet-rate", "20"]), &["--redis-url"], &[]),
        (
            flags(&[
                "--redis-url",
                "redis://127.0.0.1:6379/",
                "--fleet-rate",
                "0",
            ]),
            &["--fleet-rate", "from 0.001"],
            &[],
        ),
        (
            flags(&["--redis-url", "rediss://:hunter2@cache.internal/"]),
            &["--redis-url", "TLS"],
            &["hunter2"],
        ),
        (
            flags(&[
                "--redis-url",
                "redis://:hunter2@127.0.0.1:9/",
                "--redis-password-file",
                "/nonexistent/redis-password",
            ]),
            &["--redis-password-file", "/nonexistent/redis-password"],
            &["hunter2"],
        ),
        (
            {
                let mut cmd = with_credential();
                cmd.env("SSL_CERT_FILE", "/nonexistent/ca.pem")
                    .env("SSL_CERT_DIR", "/nonexistent");
                cmd
            },
            &["ca-certificates", "SSL_CERT_FILE"],
            &[],
        ),
    ];
    for (cmd, wanted, never) in cases {
        let shown = format!("{cmd:?}");
        let line = refusal(cmd).await;
        for w in wanted {
            assert!(line.contains(w), "{shown}: {line:?} lacks {w:?}");
        }
        for n in never {
            assert!(!line.contains(n), "{shown}: {line:?} echoes {n:?}");
        }
    }
}

#[tokio::test]
async fn a_config_that_cannot_work_is_refused_before_the_gateway_contacts_anything() {
    // Stand-ins for the metadata service (the chain's last source) and Redis that count who
    // connects: a setting that cannot work must be found before either is asked.
    let counted = || async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = connections.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(socket);
            }
        });
        (addr, connections)
    };
    let (metadata, metadata_seen) = counted().await;
    let (redis, redis_seen) = counted().await;
    let mut cmd = gateway_command();
    cmd.env("ALIBABA_CLOUD_ECS_METADATA", "gateway-role")
        .args(["--metadata-endpoint", &format!("http://{metadata}")])
        .args(["--redis-url", &format!("redis://{redis}")])
        .args(["--fleet-rate", "5", "--tls-key", "/nonexistent/tls.key"]);
    let line = refusal(cmd).await;
    assert!(line.contains("--tls-cert / ECS_GATEWAY_TLS_CERT"), "{line}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        metadata_seen.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the metadata service was asked before the settings were checked"
    );
    assert_eq!(
        redis_seen.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "Redis was connected before the settings were checked"
    );
}

#[tokio::test]
async fn a_bind_error_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut cmd = Command::new(BIN);
    crate::support::isolate_credentials(&mut cmd);
    cmd.env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIprocessTestKey")
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "process-test-secret")
        .args(["--listen", &addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let line = refusal(cmd).await;
    assert!(line.contains(&format!("cannot listen on {addr}")), "{line}");
}

#[tokio::test]
async fn an_empty_endpoint_means_the_default_and_insecure_http_starts_when_allowed() {
    for mut cmd in [
        {
            let mut cmd = with_credential();
            cmd.env("ECS_GATEWAY_ENDPOINT", "");
            cmd
        },
        {
            let mut cmd = with_credential();
            cmd.args([
                "--endpoint",
                "http://10.1.2.3/",
                "--allow-insecure-endpoint",
            ]);
            cmd
        },
    ] {
        let mut child = cmd.spawn().unwrap();
        listening_addr(&mut child).await;
        child.kill().await.unwrap();
    }
}

#[tokio::test]
async fn beyond_loopback_the_gateway_serves_with_authentication_or_when_told_to_without() {
    let dir = crate::support::pki::TempDir::new();
    let tokens = dir.write("tokens", &format!("billing sha256:{}\n", "ab".repeat(32)));
    let mut authenticated = on_address("0.0.0.0:0");
    authenticated.arg("--auth-tokens-file").arg(&tokens);
    let mut allowed = on_address("0.0.0.0:0");
    allowed.arg("--allow-unauthenticated");
    let mut allowed_by_env = on_address("0.0.0.0:0");
    allowed_by_env.env("ECS_GATEWAY_ALLOW_UNAUTHENTICATED", "true");
    for (mut cmd, warns) in [
        (authenticated, false),
        (allowed, true),
        (allowed_by_env, true),
    ] {
        let mut child = cmd.spawn().unwrap();
        let (addr, logs) = listening(&mut child).await;
        child.kill().await.unwrap();
        assert!(addr.starts_with("0.0.0.0:"), "{addr}");
        let warned = logs.lock().unwrap().iter().any(|l| {
            l["level"] == "WARN"
                && l["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("without authentication")
        });
        assert_eq!(warned, warns, "{cmd:?}");
    }
}

#[tokio::test]
async fn the_network_comes_from_ecs_gateway_network_and_an_override_says_it_wins() {
    for (network, endpoint, expected, overridden) in [
        ("vpc", "", "Vpc", false),
        ("public", "", "Public", false),
        ("vpc", "https://ecs-vpc.{region}.aliyuncs.com/", "Vpc", true),
    ] {
        let mut cmd = with_credential();
        cmd.env("ECS_GATEWAY_NETWORK", network)
            .env("ECS_GATEWAY_ENDPOINT", endpoint);
        let mut child = cmd.spawn().unwrap();
        let (_, logs) = listening(&mut child).await;
        child.kill().await.unwrap();
        let logs = logs.lock().unwrap();
        let listening = logs
            .iter()
            .find(|l| l["message"] == "ecs-gateway listening")
            .unwrap();
        assert_eq!(listening["network"], expected, "{listening}");
        assert_eq!(listening["endpoint_override"], overridden, "{listening}");
        let warned = logs.iter().any(|l| {
            l["level"] == "WARN"
                && l["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("--network is ignored")
        });
        assert_eq!(warned, overridden, "{network} {endpoint}");
    }
}

#[tokio::test]
async fn dev_mode_says_which_settings_it_ignores() {
    let mut cmd = with_credential();
    cmd.args(["--dev", "--endpoint", "https://ecs.internal.example/"]);
    let mut child = cmd.spawn().unwrap();
    let (_, logs) = listening(&mut child).await;
    child.kill().await.unwrap();
    let logs = logs.lock().unwrap();
    let warning = logs
        .iter()
        .find(|l| l["level"] == "WARN" && l["message"].as_str().unwrap_or("").contains("--dev"))
        .expect("a warning at start");
    let ignored = warning["ignored"].as_str().unwrap();
    for name in [
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "--endpoint",
    ] {
        assert!(ignored.contains(name), "{warning}");
    }
    assert!(!ignored.contains("process-test-secret"), "{warning}");
}

#[tokio::test]
async fn an_unverifiable_certificate_is_logged_at_error_with_its_cause() {
    let upstream = crate::support::tls::SelfSignedUpstream::start().await;
    let mut cmd = with_credential();
    cmd.args(["--endpoint", &upstream.url]);
    let mut child = cmd.spawn().unwrap();
    let (addr, logs) = listening(&mut child).await;
    let status = call_once(&addr, request("cn-hangzhou", "t-1", &[]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal);
    assert_eq!(upstream.handshakes(), 1);
    let logged = crate::support::eventually(Duration::from_secs(5), || {
        logs.lock().unwrap().iter().any(|l| {
            l["level"] == "ERROR"
                && l["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("UnknownIssuer"))
        })
    })
    .await;
    child.kill().await.unwrap();
    assert!(logged, "{:?}", logs.lock().unwrap());
}

#[tokio::test]
async fn without_credentials_the_gateway_refuses_to_start_and_lists_where_it_looked() {
    let output = gateway_command().output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ALIBABA_CLOUD_ACCESS_KEY_ID"), "{stderr}");
    // One line naming every place the chain looked, in the SDKs' order.
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    let steps = [
        "1. environment",
        "2. OIDC role",
        "3. CLI profile file",
        "4. credentials file",
        "5. ECS instance RAM role",
        "6. credentials URI",
    ];
    let at: Vec<usize> = steps
        .iter()
        .map(|step| {
            stderr
                .find(step)
                .unwrap_or_else(|| panic!("{step}: {stderr}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{stderr}");

    let output = gateway_command()
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIsomething")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_bad_endpoint_is_refused_at_start() {
    let output = gateway_command()
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "id")
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")
        .args(["--endpoint", "ftp://nowhere/"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(
            "--endpoint / ECS_GATEWAY_ENDPOINT must be an absolute http:// or https:// URL"
        )
    );
}

#[tokio::test]
async fn sigterm_lets_every_call_in_flight_finish_and_exits_zero() {
    let credential = test_credential();
    let config = SimulatorConfig {
        faults: Faults {
            latency: Some((Duration::from_millis(600), Duration::from_millis(600))),
            ..Faults::default()
        },
        ..SimulatorConfig::with_credential(credential.clone())
    };
    let (url, simulator) = start_simulator(config).await;
    let mut child = gateway_command()
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", credential.access_key_id())
        .env(
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            credential.access_key_secret(),
        )
        .args(["--endpoint", &url])
        .spawn()
        .unwrap();
    let addr = listening_addr(&mut child).await;
    let client = CloudAssistantServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    let calls: Vec<_> = (0..20)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                client
                    .stop_invocation(request("cn-hangzhou", "t-demo0008", &[]))
                    .await
            })
        })
        .collect();
    assert!(
        crate::support::eventually(Duration::from_secs(5), || simulator.requests_received()
            == 20)
        .await
    );

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());

    // While the 20 calls are still draining, the listener is already closed.
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(refused, "new connections are refused once shutdown starts");
    assert!(
        calls.iter().any(|c| !c.is_finished()),
        "checked during the drain, not after it"
    );

    for call in calls {
        call.await
            .unwrap()
            .expect("every in-flight call completes OK");
    }
    let answered = std::time::Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // Right after the last answer, not at the end of the 30 s grace period.
    assert!(
        answered.elapsed() < Duration::from_secs(5),
        "{:?}",
        answered.elapsed()
    );
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "no new connections after shutdown"
    );
}

/// Sends SIGTERM to `child`.
fn sigterm(child: &Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_lets_go_of_watchers_idle_sockets_and_slowloris_at_once() {
    use tokio::io::AsyncWriteExt as _;
    let mut child = with_credential().spawn().unwrap();
    let addr = listening_addr(&mut child).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut watch = tonic_health::pb::health_client::HealthClient::new(channel)
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    watch.message().await.unwrap().unwrap();
    let _idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut slowloris = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slowloris.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();

    let signalled = std::time::Instant::now();
    sigterm(&child);
    // The default 30 s grace is not waited out: none of these is a call.
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the gateway exits without waiting for the grace period")
        .unwrap();
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(5), "{took:?}");
    eprintln!("exited {took:?} after SIGTERM with a watcher, an idle socket and a slowloris");
}

#[tokio::test]
async fn a_refused_call_with_ten_thousand_bad_ids_logs_one_short_line() {
    let mut child = with_credential()
        .args(["--max-request-bytes", "4194304"])
        .spawn()
        .unwrap();
    let (addr, logs) = listening(&mut child).await;
    let mut client = CloudAssistantServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let ids: Vec<String> = (0..10_000).map(|i| format!("bad id {i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let status = client
        .stop_invocation(request("cn-hangzhou", "t-1", &refs))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(logged_within(&logs, "call refused").await);
    child.kill().await.unwrap();
    let logs = logs.lock().unwrap();
    let refused: Vec<String> = logs
        .iter()
        .filter(|l| l["message"] == "call refused")
        .map(|l| l.to_string())
        .collect();
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0].len() <= 1024,
        "{} bytes: {}",
        refused[0].len(),
        refused[0]
    );
}

#[tokio::test]
async fn an_echoing_upstream_puts_no_credential_in_the_logs() {
    use crate::support::echo::{Echo, ID, SECRET, TOKEN};
    let ecs = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Echo {
            status: 403,
            request_id: "R-1".into(),
        })
        .mount(&ecs)
        .await;
    let mut child = gateway_command()
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
        .env("ALIBABA_CLOUD_SECURITY_TOKEN", TOKEN)
        .env("RUST_LOG", "debug")
        .args(["--endpoint", &format!("{}/", ecs.uri())])
        .spawn()
        .unwrap();
    let (addr, logs) = listening(&mut child).await;
    let status = call_once(&addr, request("cn-hangzhou", "t-1", &[]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(logged_within(&logs, "call refused").await);
    child.kill().await.unwrap();
    let text: String = logs.lock().unwrap().iter().map(|l| l.to_string()).collect();
    for leak in [ID, SECRET, TOKEN, "Signature=", "SecurityToken="] {
        assert!(!text.contains(leak), "{leak:?} reached the logs");
    }
}

/// CPU ticks (user + system) a process has used, from /proc.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn out_of_file_descriptors_the_gateway_backs_off_and_recovers() {
    // 256 descriptors, and 300 idle sockets to use them up.
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" \"$@\"")
        .arg(BIN)
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIprocessTestKey")
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "process-test-secret")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let (addr, logs) = listening(&mut child).await;
    let pid = child.id().unwrap();
    let mut sockets = Vec::new();
    for _ in 0..300 {
        sockets.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    assert!(
        logged_within(&logs, "accept failed; backing off").await,
        "the gateway ran out of descriptors"
    );
    let ticks_per_second = rustix::param::clock_ticks_per_second();
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks(pid) - before;
    assert!(
        used * 10 < 2 * ticks_per_second,
        "{used} ticks in 2 s: the accept loop spins"
    );

    drop(sockets);
    let closed = std::time::Instant::now();
    let mut served = false;
    while closed.elapsed() < Duration::from_secs(10) {
        let call = async {
            let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .ok()?
                .connect()
                .await
                .ok()?;
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
            health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .ok()
        };
        if tokio::time::timeout(Duration::from_millis(500), call)
            .await
            .ok()
            .flatten()
            .is_some()
        {
            served = true;
            break;
        }
    }
    let took = closed.elapsed();
    child.kill().await.unwrap();
    assert!(served, "serves again once the sockets are gone");
    eprintln!(
        "served again {took:?} after the idle sockets closed; {used} ticks of CPU in 2 s while out of descriptors"
    );
    let warnings = logs
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l["message"] == "accept failed; backing off")
        .count();
    assert!(warnings <= 4, "logged at most once a second: {warnings}");
}

#[tokio::test]
async fn sigterm_right_after_start_is_a_clean_shutdown_not_a_kill() {
    // The handlers are installed before anything else: a signal racing the first poll of the
    // shutdown future used to take the default action (death by SIGTERM, exit status 143).
    let credential = test_credential();
    for _ in 0..10 {
        let binary = crate::support::binary::Binary::start(
            &["--endpoint", "http://127.0.0.1:9/"],
            &[
                ("ALIBABA_CLOUD_ACCESS_KEY_ID", credential.access_key_id()),
                (
                    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                    credential.access_key_secret(),
                ),
            ],
        )
        .await;
        let logs = binary.stop().await;
        assert!(
            logs.iter().any(|l| l["message"] == "server stopped"),
            "{logs:?}"
        );
    }
}

#[tokio::test]
async fn a_plaintext_health_port_answers_probes_while_the_grpc_port_requires_mutual_tls() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let dir = crate::support::pki::TempDir::new();
    let ca = crate::support::pki::Ca::new("probe test ca");
    let leaf = ca.server("gateway");
    let path = |p: std::path::PathBuf| p.to_str().unwrap().to_owned();
    let cert = path(dir.write("tls.crt", &leaf.cert_pem));
    let key = path(dir.write("tls.key", &leaf.key_pem));
    let client_ca = path(dir.write("ca.crt", &ca.pem()));
    let credential = test_credential();
    let binary = crate::support::binary::Binary::start(
        &[
            "--endpoint",
            "http://127.0.0.1:9/",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            &client_ca,
            "--health-listen",
            "127.0.0.1:0",
            "--drain-delay",
            "3s",
        ],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", credential.access_key_id()),
            (
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                credential.access_key_secret(),
            ),
        ],
    )
    .await;
    let message = "health listening (plaintext, grpc.health.v1 only)";
    assert!(
        crate::support::eventually(Duration::from_secs(5), || binary.line(message).is_some()).await,
        "the health port is logged"
    );
    let health_addr = binary.line(message).unwrap()["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    let channel = tonic::transport::Channel::from_shared(format!("http://{health_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let check = |service: &str| {
        let mut health = HealthClient::new(channel.clone());
        let request = HealthCheckRequest {
            service: service.to_owned(),
        };
        async move { health.check(request).await.map(|r| r.into_inner().status) }
    };
    assert_eq!(check("").await.unwrap(), ServingStatus::Serving as i32);
    assert_eq!(
        check("ecsgateway.v1.CloudAssistantService").await.unwrap(),
        ServingStatus::Serving as i32
    );
    // Only health: the API is not reachable around mutual TLS through the probe port...
    let refused = CloudAssistantServiceClient::new(channel.clone())
        .stop_invocation(request("cn-hangzhou", "t-probe1", &[]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented);
    // ...and the gRPC port itself does not speak plaintext.
    let plaintext = tonic::transport::Channel::from_shared(format!("http://{}", binary.addr))
        .unwrap()
        .connect()
        .await;
    if let Ok(plaintext) = plaintext {
        let answer = HealthClient::new(plaintext)
            .check(HealthCheckRequest::default())
            .await;
        assert!(answer.is_err(), "{answer:?}");
    }
    // Draining is visible on the probe port, so the kubelet takes the pod out of its endpoints.
    sigterm_pid(binary.pid());
    let mut draining = false;
    for _ in 0..100 {
        if check("").await.ok() == Some(ServingStatus::NotServing as i32) {
            draining = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(draining, "NOT_SERVING during the drain delay");
    binary.stop().await;
}

fn sigterm_pid(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Runs the gateway with stdout to a file, as a container runtime takes it, makes `calls` calls
/// (20 at a time), sends SIGTERM right after the last answer, and returns what the file holds.
async fn log_file_of_calls_then_sigterm(format: &str, calls: usize) -> String {
    let credential = test_credential();
    let (url, _simulator) =
        start_simulator(SimulatorConfig::with_credential(credential.clone())).await;
    let path = std::env::temp_dir().join(format!(
        "ecs-gateway-audit-{}-{format}.log",
        std::process::id()
    ));
    let file = std::fs::File::create(&path).unwrap();
    let mut child = Command::new(BIN);
    crate::support::isolate_credentials(&mut child);
    let mut child = child
        .env_remove("RUST_LOG")
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", credential.access_key_id())
        .env(
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            credential.access_key_secret(),
        )
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            format,
            "--endpoint",
            &url,
        ])
        .stdout(file)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut addr = None;
    for _ in 0..500 {
        let text = std::fs::read_to_string(&path).unwrap();
        addr = text
            .lines()
            .find(|l| l.contains("listening"))
            .and_then(|l| l.split_once("127.0.0.1:"))
            .map(|(_, rest)| {
                let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                format!("127.0.0.1:{port}")
            });
        if addr.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let addr = addr.expect("a listening line in the log file");
    crate::support::calls_in_batches(&addr, calls, 20).await;
    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    text
}

#[tokio::test]
async fn every_call_s_audit_line_is_in_the_log_file_whole_when_the_process_exits() {
    const CALLS: usize = 400;
    let json = log_file_of_calls_then_sigterm("json", CALLS).await;
    assert!(json.ends_with('\n'), "the last line is complete");
    let mut finished = 0;
    for line in json.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a whole JSON object per line ({e}): {line}"));
        if value["message"] == "call finished" {
            assert_eq!(value["span"]["invoke_id"], "t-demo0001", "{line}");
            assert_eq!(value["span"]["grpc_code"], "Ok", "{line}");
            // At info the call span is the only span: no list that would repeat it.
            assert!(value.get("spans").is_none(), "{line}");
            finished += 1;
        }
    }
    assert_eq!(finished, CALLS, "one line per call, none lost at exit");
    // Logged a moment before the process exits: only a flush at exit gets it out.
    assert!(
        json.lines().last().unwrap().contains("server stopped"),
        "{json}"
    );

    let text = log_file_of_calls_then_sigterm("text", CALLS).await;
    assert!(text.ends_with('\n'), "the last line is complete");
    let finished: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("call finished"))
        .collect();
    assert_eq!(
        finished.len(),
        CALLS,
        "one line per call, none lost at exit"
    );
    for line in finished {
        // A whole line: the timestamp first, the call's fields, the message last.
        assert!(line.starts_with("20"), "{line}");
        assert!(
            line.contains("invoke_id=\"t-demo0001\"") && line.contains("grpc_code=Ok"),
            "{line}"
        );
        assert!(line.ends_with("call finished"), "{line}");
    }
}

//! Every port the gateway opens — gRPC, health, metrics — holds against idle-socket floods as the
//! gRPC port does: a connection cap, a handshake deadline, and no spinning when file descriptors
//! run out. Each test runs the real binary.

use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::support::binary::Binary;
use crate::support::request;

/// Opens `n` TCP connections to `addr` that never send a byte.
async fn idle_sockets(addr: &str, n: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        if let Ok(socket) = TcpStream::connect(addr).await {
            sockets.push(socket);
        }
    }
    sockets
}

/// How many of `sockets` the server has closed (after whatever it sent first, such as its
/// SETTINGS and a GOAWAY) within `limit` of this call.
async fn closed_by_server(sockets: &mut [TcpStream], limit: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + limit;
    let mut closed = 0;
    for socket in sockets.iter_mut() {
        let mut buf = [0u8; 256];
        let eof = async {
            loop {
                if let Ok(0) | Err(_) = socket.read(&mut buf).await {
                    return;
                }
            }
        };
        if tokio::time::timeout_at(deadline, eof).await.is_ok() {
            closed += 1;
        }
    }
    closed
}

async fn health_check(addr: &str) -> Result<i32, String> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(1))
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|r| r.into_inner().status)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn three_hundred_idle_sockets_on_the_health_port_under_256_fds_neither_spin_nor_lock_out_probes()
 {
    let binary = Binary::start_with_fd_limit(
        256,
        &[
            "--dev",
            "--health-listen",
            "127.0.0.1:0",
            "--handshake-timeout",
            "1s",
        ],
        &[],
    )
    .await;
    let message = "health listening (plaintext, grpc.health.v1 only)";
    let health = binary.line(message).expect("the health port is logged")["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        health_check(&health).await,
        Ok(1),
        "SERVING before the flood"
    );

    let mut sockets = idle_sockets(&health, 300).await;
    assert!(sockets.len() >= 250, "{} connected", sockets.len());
    let before = binary.cpu_time();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = binary.cpu_time() - before;
    // A spinning accept loop burns the whole 2 s; an idle one next to nothing.
    assert!(used < Duration::from_millis(500), "{used:?} of CPU in 2 s");

    // Every idle socket is closed: past the cap at once, the rest at the handshake deadline...
    let closed = closed_by_server(&mut sockets, Duration::from_secs(3)).await;
    assert_eq!(closed, sockets.len(), "idle sockets the server closed");
    // ...while the flood's sockets are still open on the client side, probes answer again.
    assert_eq!(
        health_check(&health).await,
        Ok(1),
        "SERVING after the flood"
    );
    // And the gRPC port was never starved of descriptors.
    let answer = binary
        .client()
        .await
        .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
        .await;
    assert!(answer.is_ok(), "{answer:?}");
    drop(sockets);
    binary.stop().await;
}

#[tokio::test]
async fn keep_alive_scrapers_cannot_take_every_descriptor_through_the_metrics_port() {
    let binary =
        Binary::start_with_fd_limit(256, &["--dev", "--metrics-listen", "127.0.0.1:0"], &[]).await;
    let metrics = binary.metrics.clone().unwrap();
    let mut sockets = idle_sockets(&metrics, 300).await;
    // Past the cap, the metrics port closes new connections at once.
    let closed = closed_by_server(&mut sockets, Duration::from_millis(500)).await;
    assert!(
        closed >= 250,
        "{closed} of {} closed at once",
        sockets.len()
    );
    // The gRPC port still has descriptors for its callers.
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut client = binary.client().await;
        let answer = client
            .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
            .await;
        assert!(answer.is_ok(), "{answer:?}");
        clients.push(client);
    }
    drop(sockets);
    binary.stop().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn no_port_accepts_a_connection_before_the_gateway_can_serve() {
    use crate::support::credential_source::{Answer, CredentialSource};
    // The credential source hangs until told otherwise: the gateway cannot serve yet.
    let source = CredentialSource::start(Answer::Hang).await;
    let ports = [free_port(), free_port(), free_port()];
    let addr = |port: u16| format!("127.0.0.1:{port}");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ecs-gateway"));
    crate::support::isolate_credentials(&mut cmd);
    cmd.env("ALIBABA_CLOUD_CREDENTIALS_URI", &source.url)
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
        .args(["--endpoint", "http://127.0.0.1:9/", "--log-format", "json"])
        .args(["--listen", &addr(ports[0])])
        .args(["--health-listen", &addr(ports[1])])
        .args(["--metrics-listen", &addr(ports[2])])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for port in ports {
        assert!(
            TcpStream::connect(addr(port)).await.is_err(),
            "port {port} accepted before the gateway had a credential"
        );
    }
    // The fetch in flight times out (10 s); the chain is tried again only at the next start, so
    // the gateway exits without ever having listened.
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("gives up within the fetch timeout")
        .unwrap();
    assert!(!exit.success());
    for port in ports {
        assert!(TcpStream::connect(addr(port)).await.is_err());
    }
}

#[tokio::test]
async fn a_client_reconnecting_in_a_loop_from_one_address_cannot_lock_probes_out_of_the_health_port()
 {
    let binary = Binary::start(&["--dev", "--health-listen", "127.0.0.1:0"], &[]).await;
    let message = "health listening (plaintext, grpc.health.v1 only)";
    let health = binary.line(message).expect("the health port is logged")["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    let target: std::net::SocketAddr = health.parse().unwrap();
    // 100 sockets from 127.0.0.2 that never speak, each reopened the moment the server closes it,
    // for a bounded time: without a cap per source they take every slot as fast as it frees.
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    let flood: Vec<_> = (0..100)
        .map(|_| {
            tokio::spawn(async move {
                while tokio::time::Instant::now() < until {
                    let socket = tokio::net::TcpSocket::new_v4().unwrap();
                    socket.bind(([127, 0, 0, 2], 0).into()).unwrap();
                    let Ok(mut stream) = socket.connect(target).await else {
                        continue;
                    };
                    let mut buf = [0u8; 256];
                    let closed =
                        async { while !matches!(stream.read(&mut buf).await, Ok(0) | Err(_)) {} };
                    let _ = tokio::time::timeout_at(until, closed).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut answered = 0;
    for _ in 0..10 {
        if health_check(&health).await == Ok(1) {
            answered += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for task in flood {
        let _ = task.await;
    }
    assert_eq!(answered, 10, "probes answered during the flood");
    binary.stop().await;
}

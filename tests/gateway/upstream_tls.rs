//! The TLS leg to ECS as the real binary runs it, against an HTTPS upstream whose CA is passed by
//! `SSL_CERT_FILE`: HTTP/2 by ALPN carries concurrent calls over one connection, from the first
//! burst on and again when the upstream retires it (one handshake, resumed, not one per call in
//! flight); an upstream that offers only HTTP/1.1 gets a reused pool whose sessions resume.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::support::pki::{Ca, TempDir};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{HandshakeKind, ServerConfig};

const BIN: &str = env!("CARGO_BIN_EXE_ecs-gateway");

/// One accepted TLS connection: the protocol agreed by ALPN and whether the session was resumed.
#[derive(Debug, Clone, PartialEq)]
struct Handshake {
    alpn: Option<Vec<u8>>,
    resumed: bool,
}

/// An HTTPS ECS stand-in answering every request with a success body.
struct TlsUpstream {
    port: u16,
    handshakes: Arc<Mutex<Vec<Handshake>>>,
    requests: Arc<AtomicU64>,
    /// Makes every open connection close gracefully (HTTP/2 GOAWAY, HTTP/1.1 `Connection: close`).
    close_connections: Arc<Notify>,
    /// Requests on connections accepted before this many never get an answer (the connection
    /// stays open and answers pings): a path that went silent without a reset.
    silent_below: Arc<AtomicU64>,
    /// Connections accepted before this many neither read nor write any more, pings included,
    /// and stay open: a peer that vanished behind a NAT that forgot the flow.
    frozen_below: Arc<AtomicU64>,
}

impl TlsUpstream {
    async fn start(ca: &Ca, alpn: &[&[u8]]) -> Self {
        let leaf = ca.server("upstream");
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = Self {
            port,
            handshakes: Arc::default(),
            requests: Arc::default(),
            close_connections: Arc::new(Notify::new()),
            silent_below: Arc::default(),
            frozen_below: Arc::default(),
        };
        let (handshakes, requests, close, silent_below, frozen_below) = (
            upstream.handshakes.clone(),
            upstream.requests.clone(),
            upstream.close_connections.clone(),
            upstream.silent_below.clone(),
            upstream.frozen_below.clone(),
        );
        tokio::spawn(async move {
            let mut accepted = 0u64;
            while let Ok((tcp, _)) = listener.accept().await {
                let index = accepted;
                accepted += 1;
                let (acceptor, handshakes, requests, close, silent_below, frozen_below) = (
                    acceptor.clone(),
                    handshakes.clone(),
                    requests.clone(),
                    close.clone(),
                    silent_below.clone(),
                    frozen_below.clone(),
                );
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let session = tls.get_ref().1;
                    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
                    handshakes.lock().unwrap().push(Handshake {
                        alpn: alpn.clone(),
                        resumed: session.handshake_kind() == Some(HandshakeKind::Resumed),
                    });
                    let silent = move || index < silent_below.load(Ordering::SeqCst);
                    let tls = Freezable {
                        inner: tls,
                        frozen: Box::new(move || index < frozen_below.load(Ordering::SeqCst)),
                    };
                    serve(tls, alpn.as_deref() == Some(b"h2"), requests, close, silent).await;
                });
            }
        });
        upstream
    }

    fn handshakes(&self) -> Vec<Handshake> {
        self.handshakes.lock().unwrap().clone()
    }
}

/// A connection that, once `frozen` says so, is never read or written again, nor closed.
struct Freezable<S> {
    inner: S,
    frozen: Box<dyn Fn() -> bool + Send + Sync>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Freezable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if (self.frozen)() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Freezable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if (self.frozen)() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if (self.frozen)() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if (self.frozen)() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves one connection until it ends or `close` is notified, then lets it close gracefully.
async fn serve(
    tls: Freezable<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
    h2: bool,
    requests: Arc<AtomicU64>,
    close: Arc<Notify>,
    silent: impl Fn() -> bool + Clone + Send + Sync + 'static,
) {
    let service = service_fn(move |_request| {
        requests.fetch_add(1, Ordering::SeqCst);
        let silent = silent();
        async move {
            if silent {
                std::future::pending::<()>().await;
            }
            let body = r#"{"RequestId":"473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E"}"#;
            Ok::<_, Infallible>(
                hyper::Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(body.as_bytes())))
                    .unwrap(),
            )
        }
    });
    let io = TokioIo::new(tls);
    if h2 {
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => return,
            () = close.notified() => conn.as_mut().graceful_shutdown(),
        }
        let _ = conn.await;
    } else {
        let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => return,
            () = close.notified() => conn.as_mut().graceful_shutdown(),
        }
        let _ = conn.await;
    }
}

/// The real gateway, forwarding to `https://localhost:<port>/` and trusting only `ca`.
async fn gateway(ca_file: &std::path::Path, port: u16) -> (tokio::process::Child, String) {
    gateway_with(ca_file, port, &[]).await
}

/// [`gateway`] with more flags.
async fn gateway_with(
    ca_file: &std::path::Path,
    port: u16,
    args: &[&str],
) -> (tokio::process::Child, String) {
    let mut cmd = Command::new(BIN);
    crate::support::isolate_credentials(&mut cmd);
    let mut child = cmd
        .env_remove("RUST_LOG")
        .env("SSL_CERT_FILE", ca_file)
        .env_remove("SSL_CERT_DIR")
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAItlsTestKey")
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "tls-test-secret")
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--endpoint", &format!("https://localhost:{port}/")])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (addr, _, _logs) = crate::support::binary::follow_logs(&mut child, false).await;
    (child, addr)
}

#[tokio::test]
async fn http2_by_alpn_carries_concurrent_calls_on_one_connection_and_resumes_tls_on_the_next() {
    let ca = Ca::new("upstream-ca");
    let dir = TempDir::new();
    let ca_file = dir.write("ca.pem", &ca.pem());
    let upstream = TlsUpstream::start(&ca, &[b"h2", b"http/1.1"]).await;
    let (_child, addr) = gateway(&ca_file, upstream.port).await;

    crate::support::calls_in_batches(&addr, 400, 40).await;
    assert_eq!(upstream.requests.load(Ordering::SeqCst), 400);
    let h2 = |resumed| Handshake {
        alpn: Some(b"h2".to_vec()),
        resumed,
    };
    // The first call finds out that the host speaks h2 (a full handshake); the HTTP/2 pool then
    // opens the one connection everything else shares, resuming that session. Without the probe,
    // hyper's pool would start one handshake per call of the first burst (40 here).
    assert_eq!(
        upstream.handshakes(),
        vec![h2(false), h2(true)],
        "400 calls, 40 at a time, over one HTTP/2 connection"
    );

    // The upstream retires the connection (as a load balancer does); the next one resumes.
    upstream.close_connections.notify_waiters();
    // Time for the GOAWAY to reach the client; a call that races it is retried by the pool.
    tokio::time::sleep(Duration::from_millis(200)).await;
    crate::support::calls_in_batches(&addr, 40, 20).await;
    assert_eq!(
        upstream.handshakes(),
        vec![h2(false), h2(true), h2(true)],
        "20 calls at once after the GOAWAY open one connection, which resumes the session"
    );
    assert_eq!(upstream.requests.load(Ordering::SeqCst), 440);
}

#[tokio::test]
async fn an_http1_upstream_gets_a_pool_that_is_reused_and_resumes_tls() {
    let ca = Ca::new("upstream-ca");
    let dir = TempDir::new();
    let ca_file = dir.write("ca.pem", &ca.pem());
    let upstream = TlsUpstream::start(&ca, &[b"http/1.1"]).await;
    let (_child, addr) = gateway(&ca_file, upstream.port).await;

    // One call first: its session is then in the client's cache for every later connection.
    crate::support::calls_in_batches(&addr, 1, 1).await;
    crate::support::calls_in_batches(&addr, 400, 10).await;
    let handshakes = upstream.handshakes();
    assert_eq!(upstream.requests.load(Ordering::SeqCst), 401);
    assert!(
        handshakes.len() <= 10,
        "at most one connection per call in flight, then reused: {} for 401 calls",
        handshakes.len()
    );
    assert!(
        handshakes
            .iter()
            .all(|h| h.alpn.as_deref() == Some(b"http/1.1")),
        "{handshakes:?}"
    );
    assert!(!handshakes[0].resumed);
    // TLS 1.3 tickets are single-use and a full handshake brings two (rustls' server default), so
    // of the connections opened at once only as many resume as there are tickets in hand.
    assert!(
        handshakes[1..].iter().any(|h| h.resumed),
        "connections after the first resume the session: {handshakes:?}"
    );
}

/// Whom an HTTP/2 test talks to: the real gateway's client, in front of an HTTP/2-only upstream.
type Client = ecs_gateway::pb::cloud_assistant_service_client::CloudAssistantServiceClient<
    tonic::transport::Channel,
>;

/// An HTTP/2-only upstream and a client of the real gateway in front of it, which sends no
/// retries and gives an attempt `attempt_timeout`; the gateway runs, and its CA file stays, as
/// long as the second value lives.
async fn h2_gateway(
    attempt_timeout: &str,
) -> (TlsUpstream, (tokio::process::Child, TempDir), Client) {
    let ca = Ca::new("upstream-ca");
    let dir = TempDir::new();
    let ca_file = dir.write("ca.pem", &ca.pem());
    let upstream = TlsUpstream::start(&ca, &[b"h2"]).await;
    let (child, addr) = gateway_with(
        &ca_file,
        upstream.port,
        &["--upstream-timeout", attempt_timeout, "--max-retries", "0"],
    )
    .await;
    let client = Client::connect(format!("http://{addr}")).await.unwrap();
    (upstream, (child, dir), client)
}

#[tokio::test]
async fn an_http2_connection_that_went_silent_is_retired_at_the_attempt_timeout_not_reused() {
    let (upstream, _gateway, mut client) = h2_gateway("500ms").await;
    let mut stop = async || {
        client
            .stop_invocation(crate::support::request("cn-hangzhou", "t-demo0001", &[]))
            .await
    };
    // The probe's connection, then the HTTP/2 pool's.
    stop().await.expect("answered");
    stop().await.expect("answered");
    let before = upstream.handshakes().len();
    assert_eq!(before, 2);
    // Every connection open now goes silent: it answers pings, never requests.
    upstream.silent_below.store(before as u64, Ordering::SeqCst);
    let silent = stop().await.unwrap_err();
    assert_eq!(silent.code(), tonic::Code::Unavailable, "{silent:?}");
    assert!(
        silent.message().contains("did not answer in time"),
        "{silent:?}"
    );
    // The next call goes over a new connection and is answered; without the retirement it
    // would be sent over the silent one and time out too.
    stop().await.expect("a new connection answers");
    assert_eq!(upstream.handshakes().len(), before + 1);
}

#[tokio::test]
async fn an_idle_http2_connection_whose_peer_vanished_is_found_by_its_pings_and_not_reused() {
    // An attempt timeout far past the test: only the pings can find the dead connection.
    let (upstream, _gateway, mut client) = h2_gateway("60s").await;
    let mut stop = async || {
        client
            .stop_invocation(crate::support::request("cn-hangzhou", "t-demo0001", &[]))
            .await
    };
    stop().await.expect("answered");
    stop().await.expect("answered");
    let before = upstream.handshakes().len();
    assert_eq!(before, 2, "the probe's connection, then the HTTP/2 pool's");
    // Every open connection vanishes: no answer, no pong, no close.
    upstream.frozen_below.store(before as u64, Ordering::SeqCst);
    // An idle connection is pinged every 10 s and dropped 5 s after a ping goes unanswered.
    tokio::time::sleep(Duration::from_secs(17)).await;
    let answered = tokio::time::timeout(Duration::from_secs(10), stop())
        .await
        .expect("the call was not sent over the vanished connection to wait out its timeout");
    answered.expect("a new connection answers");
    assert_eq!(upstream.handshakes().len(), before + 1);
}

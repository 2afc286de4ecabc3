//! One client connection, from accept to close: the HTTP/2 handshake must finish in time, idle
//! and old connections are sent GOAWAY (as grpc-go's keepalive `ServerParameters` do, so clients
//! rebalance behind an L4 balancer), and draining closes what carries no call at once.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rand::Rng as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::server::handshake::HandshakeFailures;
use crate::server::peer::Peer;

/// The client's HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE_LEN: usize = 24;
/// An HTTP/2 frame header: 3 bytes length, type, flags, 4 bytes stream ID.
const FRAME_HEADER_LEN: usize = 9;

/// Limits on one connection's life.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// Time to receive the preface and the first SETTINGS frame.
    pub handshake_timeout: Duration,
    /// A connection with no stream open this long gets GOAWAY.
    pub max_idle: Duration,
    /// A connection gets GOAWAY at this age, ±10%; calls in flight finish.
    pub max_age: Duration,
    /// How long calls in flight may take after the max-age GOAWAY before the connection is
    /// closed under them (grpc-go's `MaxConnectionAgeGrace`): a stream nobody reads ends too.
    pub max_age_grace: Duration,
    /// Streams one connection may have open at once.
    pub max_concurrent_streams: u32,
    /// Interval of HTTP/2 PINGs that detect dead peers.
    pub keepalive_interval: Duration,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            max_idle: Duration::from_secs(5 * 60),
            max_age: Duration::from_secs(30 * 60),
            max_age_grace: Duration::from_secs(10 * 60),
            max_concurrent_streams: 256,
            keepalive_interval: Duration::from_secs(30),
        }
    }
}

/// Serves `routes` on `stream` until the connection ends, first completing a TLS handshake when
/// `tls` is given (within the handshake timeout, which covers TLS and the HTTP/2 preface together).
/// `draining` turning true sends GOAWAY, and closes at once a connection that has not finished its
/// handshake.
pub(crate) async fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    tls: Option<(Arc<rustls::ServerConfig>, Arc<HandshakeFailures>)>,
    routes: tonic::service::Routes,
    settings: Arc<ConnectionSettings>,
    mut draining: watch::Receiver<bool>,
) {
    let deadline = Instant::now() + settings.handshake_timeout;
    let Some((tls, failures)) = tls else {
        let peer = Peer {
            addr,
            certificate_identity: None,
        };
        return serve_http2(stream, peer, deadline, routes, settings, draining).await;
    };
    let handshake = tokio::time::timeout_at(deadline, TlsAcceptor::from(tls).accept(stream));
    let stream = tokio::select! {
        result = handshake => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                failures.report(addr, Some(&error));
                return;
            }
            Err(_) => {
                failures.report(addr, None);
                return;
            }
        },
        _ = draining.wait_for(|d| *d) => return,
    };
    let certificate_identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(crate::server::tls::certificate_identity)
        .map(Arc::from);
    let peer = Peer {
        addr,
        certificate_identity,
    };
    serve_http2(stream, peer, deadline, routes, settings, draining).await;
}

/// Serves HTTP/2 on an established (plain or TLS) stream; every request carries `peer`.
async fn serve_http2<S>(
    stream: S,
    peer: Peer,
    deadline: Instant,
    routes: tonic::service::Routes,
    settings: Arc<ConnectionSettings>,
    mut draining: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (io, handshaken) = HandshakeDeadline::new(stream, deadline);
    let (active_tx, active_rx) = watch::channel(0usize);
    let active = Arc::new(active_tx);
    let service = tower::service_fn(move |mut request: http::Request<Incoming>| {
        request.extensions_mut().insert(peer.clone());
        let guard = StreamGuard::enter(active.clone());
        let call = routes.clone().oneshot(request);
        async move {
            let response = call.await?;
            Ok::<_, std::convert::Infallible>(response.map(|body| Tracked {
                body,
                _guard: guard,
            }))
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.max_concurrent_streams)
        .keep_alive_interval(settings.keepalive_interval)
        .keep_alive_timeout(Duration::from_secs(20));
    let connection = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(connection);

    let age = tokio::time::sleep(jittered(settings.max_age));
    tokio::pin!(age);
    let idle = idle_for(active_rx, settings.max_idle);
    tokio::pin!(idle);
    let grace = tokio::time::sleep(Duration::MAX);
    tokio::pin!(grace);
    let mut aged = false;
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = &mut age, if !aged => {
                tracing::debug!("connection reached its maximum age: GOAWAY");
                if !closing {
                    connection.as_mut().graceful_shutdown();
                }
                closing = true;
                aged = true;
                grace.as_mut().reset(Instant::now() + settings.max_age_grace);
            }
            () = &mut grace, if aged => {
                tracing::debug!("connection past its maximum age and grace: closing it under its calls");
                return;
            }
            () = &mut idle, if !closing => {
                tracing::debug!("connection idle: GOAWAY");
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = draining.wait_for(|d| *d), if !closing => {
                if !handshaken.load(Ordering::Acquire) {
                    // hyper would wait for the handshake to finish; a silent peer never does.
                    return;
                }
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// `max_age` ±10%, so that connections made together do not all reconnect together.
fn jittered(max_age: Duration) -> Duration {
    max_age.mul_f64(rand::rng().random_range(0.9..=1.1))
}

/// Resolves once no stream has been open for `limit`.
async fn idle_for(mut active: watch::Receiver<usize>, limit: Duration) {
    loop {
        if active.wait_for(|n| *n == 0).await.is_err() {
            return std::future::pending().await;
        }
        tokio::select! {
            () = tokio::time::sleep(limit) => return,
            changed = active.changed() => {
                if changed.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}

/// Counts a stream as open from its request until its response body is gone.
struct StreamGuard(Arc<watch::Sender<usize>>);

impl StreamGuard {
    fn enter(active: Arc<watch::Sender<usize>>) -> Self {
        active.send_modify(|n| *n += 1);
        Self(active)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// A response body that holds its stream's guard.
struct Tracked {
    body: tonic::body::Body,
    _guard: StreamGuard,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// How much of the client's preface and first frame (its SETTINGS) has arrived.
struct HandshakeProgress {
    /// The first bytes of the connection: preface and a frame header.
    head: [u8; PREFACE_LEN + FRAME_HEADER_LEN],
    seen: usize,
}

impl Default for HandshakeProgress {
    fn default() -> Self {
        Self {
            head: [0; PREFACE_LEN + FRAME_HEADER_LEN],
            seen: 0,
        }
    }
}

impl HandshakeProgress {
    /// Notes newly read bytes; true once the preface and the whole first frame are in.
    fn observe(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            if self.seen < self.head.len() {
                self.head[self.seen] = b;
            }
            self.seen += 1;
        }
        if self.seen < self.head.len() {
            return false;
        }
        let h = &self.head[PREFACE_LEN..];
        let frame_len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        self.seen >= self.head.len() + frame_len
    }
}

/// A stream that fails reads once `deadline` passes before the HTTP/2 handshake has arrived;
/// `handshaken` turns true when it has.
struct HandshakeDeadline<S> {
    stream: S,
    deadline: Option<Pin<Box<Sleep>>>,
    progress: HandshakeProgress,
    handshaken: Arc<AtomicBool>,
}

impl<S> HandshakeDeadline<S> {
    fn new(stream: S, deadline: Instant) -> (Self, Arc<AtomicBool>) {
        let handshaken = Arc::new(AtomicBool::new(false));
        let io = Self {
            stream,
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
            progress: HandshakeProgress::default(),
            handshaken: handshaken.clone(),
        };
        (io, handshaken)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HandshakeDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        if let Some(deadline) = me.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no HTTP/2 preface and SETTINGS within the handshake timeout",
            )));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut me.stream).poll_read(cx, buf))?;
        if me.deadline.is_some() && me.progress.observe(&buf.filled()[before..]) {
            me.deadline = None;
            me.handshaken.store(true, Ordering::Release);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HandshakeDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_counts_the_preface_and_the_whole_first_frame() {
        let mut progress = HandshakeProgress::default();
        assert!(!progress.observe(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        // A SETTINGS frame header announcing 12 bytes of payload, which arrive in two reads.
        assert!(!progress.observe(&[0, 0, 12, 4, 0, 0, 0, 0, 0]));
        assert!(!progress.observe(&[0; 11]));
        assert!(progress.observe(&[0]));
    }

    #[test]
    fn age_jitter_stays_within_ten_percent() {
        let age = Duration::from_secs(1800);
        for _ in 0..1000 {
            let j = jittered(age);
            assert!(j >= age.mul_f64(0.9) && j <= age.mul_f64(1.1), "{j:?}");
        }
    }
}

//! The accept loop every port the gateway opens runs (gRPC, health, metrics): at most
//! `max_connections` open at once, and where set at most so many from one source address (past
//! either a new connection is closed at once), and accept errors such as EMFILE back off instead
//! of spinning, logged at most once a second.

use crate::observe::metrics::{Metrics, Shed};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The first pause after an accept error; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(5);
/// The longest pause after repeated accept errors.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one log line per this interval for each kind of trouble.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// An accepted connection and its place under the connection limit, released when dropped.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// The socket, with TCP_NODELAY set.
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// The slot this connection holds.
    pub slot: Slot,
}

/// Connections open per source address.
type PerSource = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// A connection's place under the limits; freed when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    source: Option<(IpAddr, PerSource)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((ip, open)) = &self.source {
            let mut open = open.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = open.get_mut(ip) {
                *n -= 1;
                if *n == 0 {
                    open.remove(ip);
                }
            }
        }
    }
}

/// Accepts connections within a limit.
#[derive(Debug)]
pub(crate) struct Acceptor {
    listener: TcpListener,
    name: &'static str,
    slots: Arc<Semaphore>,
    max_connections: usize,
    backoff: Duration,
    errors_logged_at: Option<Instant>,
    refusals_logged_at: Option<Instant>,
    refused_since_log: u64,
    metrics: Option<Metrics>,
    per_source: Option<(usize, PerSource)>,
}

impl Acceptor {
    /// Accepts on `listener`, keeping at most `max_connections` open; `name` says which port in
    /// logs.
    pub(crate) fn new(listener: TcpListener, max_connections: usize, name: &'static str) -> Self {
        Self {
            listener,
            name,
            slots: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            backoff: MIN_BACKOFF,
            errors_logged_at: None,
            refusals_logged_at: None,
            refused_since_log: 0,
            metrics: None,
            per_source: None,
        }
    }

    /// Keeps at most `limit` connections open from any one source address, so that one client
    /// reconnecting cannot hold every slot.
    pub(crate) fn per_source(mut self, limit: usize) -> Self {
        self.per_source = Some((limit, PerSource::default()));
        self
    }

    /// A slot for a connection from `ip` within both limits, or none.
    fn slot(&self, ip: IpAddr) -> Option<Slot> {
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        let source = match &self.per_source {
            None => None,
            Some((limit, open)) => {
                let mut held = open.lock().unwrap_or_else(PoisonError::into_inner);
                let n = held.entry(ip).or_insert(0);
                // At least one is open from `ip` here (limit ≥ 1), so no zero entry stays.
                if *n >= *limit {
                    return None;
                }
                *n += 1;
                Some((ip, open.clone()))
            }
        };
        Some(Slot {
            _permit: permit,
            source,
        })
    }

    /// Where refusals are counted, when metrics are on.
    pub(crate) fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }

    /// Which port this is.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// Counts connections refused at the limit in `metrics`.
    pub(crate) fn counting_in(mut self, metrics: Option<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The next connection within the limit. Connections past the limit are closed here, and
    /// accept errors are waited out here, so the caller only ever sees usable connections.
    pub(crate) async fn accept(&mut self) -> Accepted {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    self.backoff = MIN_BACKOFF;
                    let Some(slot) = self.slot(peer.ip()) else {
                        drop(stream);
                        if let Some(metrics) = &self.metrics {
                            metrics.shed(Shed::Connections);
                        }
                        self.refused_since_log += 1;
                        if due(&mut self.refusals_logged_at) {
                            tracing::warn!(
                                listener = self.name,
                                limit = self.max_connections,
                                per_source = self.per_source.as_ref().map(|(n, _)| *n),
                                refused = self.refused_since_log,
                                "at a connection limit: closing new connections"
                            );
                            self.refused_since_log = 0;
                        }
                        continue;
                    };
                    // Small unary calls: send each frame at once.
                    let _ = stream.set_nodelay(true);
                    return Accepted { stream, peer, slot };
                }
                // The client gave up between SYN and accept: nothing wrong here.
                Err(e) if per_connection(&e) => continue,
                Err(error) => {
                    if due(&mut self.errors_logged_at) {
                        tracing::error!(listener = self.name, %error, backoff = ?self.backoff, "accept failed; backing off");
                    }
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Errors that concern one connection, not the listener (RFC-less, but what every server skips).
fn per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// True, and remembers now, if nothing was logged within the last [`LOG_EVERY`].
fn due(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    if last.is_some_and(|at| now.duration_since(at) < LOG_EVERY) {
        return false;
    }
    *last = Some(now);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_past_the_limit_are_closed_and_a_freed_slot_is_reused() {
        use tokio::io::AsyncReadExt as _;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::new(None);
        let mut acceptor = Acceptor::new(listener, 1, "test").counting_in(Some(metrics.clone()));
        let _first_client = TcpStream::connect(addr).await.unwrap();
        let first = acceptor.accept().await;

        let accepting = tokio::spawn(async move { acceptor.accept().await.peer });
        let mut second_client = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), second_client.read(&mut buf));
        assert_eq!(
            read.await.unwrap().unwrap(),
            0,
            "past the limit: closed at once"
        );

        drop(first);
        let third_client = TcpStream::connect(addr).await.unwrap();
        let third = tokio::time::timeout(Duration::from_secs(5), accepting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(third, third_client.local_addr().unwrap());
        let counted = "ecs_gateway_shed_total{reason=\"connections\"} 1\n";
        assert!(metrics.encode().contains(counted), "{}", metrics.encode());
    }

    #[tokio::test]
    async fn one_source_address_cannot_hold_every_slot() {
        use tokio::io::AsyncReadExt as _;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut acceptor = Acceptor::new(listener, 64, "test").per_source(2);
        let from = |ip: [u8; 4]| async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind((ip, 0).into()).unwrap();
            socket.connect(addr).await.unwrap()
        };
        let _a1 = from([127, 0, 0, 2]).await;
        let first = acceptor.accept().await;
        let _a2 = from([127, 0, 0, 2]).await;
        let _second = acceptor.accept().await;
        // A third from the same address is closed; one from elsewhere is served.
        let mut a3 = from([127, 0, 0, 2]).await;
        let _probe = from([127, 0, 0, 3]).await;
        let served = acceptor.accept().await;
        assert_eq!(served.peer.ip(), IpAddr::from([127, 0, 0, 3]));
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), a3.read(&mut buf));
        assert_eq!(read.await.unwrap().unwrap(), 0, "closed at once");
        // A slot given back is the source's again.
        drop(first);
        let _a4 = from([127, 0, 0, 2]).await;
        assert_eq!(
            acceptor.accept().await.peer.ip(),
            IpAddr::from([127, 0, 0, 2])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn logging_is_due_at_most_once_a_second() {
        let mut last = None;
        assert!(due(&mut last));
        assert!(!due(&mut last));
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(!due(&mut last));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(due(&mut last));
    }
}

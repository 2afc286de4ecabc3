//! Failed TLS handshakes on the gRPC port: counted by reason, and logged at WARN at most once a
//! minute per client address, so an operator sees a misconfigured client (an expired certificate,
//! the wrong CA) without a scanner being able to flood the log.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::observe::metrics::{HandshakeFailure, Metrics};

/// How long a client address stays quiet in the log after one of its failures is logged.
const QUIET: Duration = Duration::from_secs(60);
/// The most addresses remembered; past it, failures are counted but not logged until some age out.
const REMEMBERED: usize = 4096;

/// Where handshake failures are reported; one per port, shared by its connections.
#[derive(Debug, Default)]
pub(crate) struct HandshakeFailures {
    metrics: Option<Metrics>,
    logged: Mutex<HashMap<IpAddr, Instant>>,
}

impl HandshakeFailures {
    /// Counts into `metrics`, when given.
    pub(crate) fn new(metrics: Option<Metrics>) -> Self {
        Self {
            metrics,
            logged: Mutex::default(),
        }
    }

    /// A handshake from `peer` failed with `error` (`None`: it timed out).
    pub(crate) fn report(&self, peer: SocketAddr, error: Option<&io::Error>) {
        let failure = error.map_or(HandshakeFailure::Timeout, classify);
        if let Some(metrics) = &self.metrics {
            metrics.tls_handshake_failed(failure);
        }
        if self.due(peer.ip()) {
            match error {
                Some(error) => {
                    tracing::warn!(%peer, reason = failure.label(), %error, "TLS handshake failed")
                }
                None => tracing::warn!(%peer, reason = failure.label(), "TLS handshake failed"),
            }
        } else {
            tracing::debug!(%peer, reason = failure.label(), "TLS handshake failed");
        }
    }

    /// True, and remembers now, if `ip` has not been logged within [`QUIET`].
    fn due(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        if logged
            .get(&ip)
            .is_some_and(|at| now.duration_since(*at) < QUIET)
        {
            return false;
        }
        if logged.len() >= REMEMBERED {
            logged.retain(|_, at| now.duration_since(*at) < QUIET);
            if logged.len() >= REMEMBERED {
                return false;
            }
        }
        logged.insert(ip, now);
        true
    }
}

/// The reason a handshake failed, from rustls's error inside the I/O error.
pub(crate) fn classify(error: &io::Error) -> HandshakeFailure {
    let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return match error.kind() {
            io::ErrorKind::InvalidData => HandshakeFailure::Protocol,
            _ => HandshakeFailure::Io,
        };
    };
    match tls {
        rustls::Error::NoCertificatesPresented => HandshakeFailure::NoClientCertificate,
        rustls::Error::InvalidCertificate(_) => HandshakeFailure::BadClientCertificate,
        _ => HandshakeFailure::Protocol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_errors_become_bounded_reasons() {
        let wrap = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        assert_eq!(
            classify(&wrap(rustls::Error::NoCertificatesPresented)),
            HandshakeFailure::NoClientCertificate
        );
        assert_eq!(
            classify(&wrap(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Expired
            ))),
            HandshakeFailure::BadClientCertificate
        );
        assert_eq!(
            classify(&wrap(rustls::Error::DecryptError)),
            HandshakeFailure::Protocol
        );
        assert_eq!(
            classify(&io::Error::from(io::ErrorKind::ConnectionReset)),
            HandshakeFailure::Io
        );
    }

    #[tokio::test(start_paused = true)]
    async fn each_address_is_logged_at_most_once_a_minute() {
        let failures = HandshakeFailures::new(None);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(failures.due(a));
        assert!(!failures.due(a));
        assert!(failures.due(b));
        tokio::time::advance(QUIET).await;
        assert!(failures.due(a));
    }
}

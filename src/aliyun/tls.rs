//! The upstream TLS configuration: the system's trust store, loaded once and checked at start, and
//! the one place that recognizes a certificate the gateway could not verify.

use std::error::Error as StdError;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

use super::error::find_cause;

/// The system trust store holds no usable certificate, so no HTTPS endpoint can be verified.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "no CA certificates found for verifying ECS over https (install the ca-certificates package, or point SSL_CERT_FILE / SSL_CERT_DIR at a CA bundle){detail}"
)]
pub struct EmptyTrustStore {
    detail: String,
}

/// The system's CA certificates (honouring `SSL_CERT_FILE` and `SSL_CERT_DIR`).
pub fn native_roots() -> Result<RootCertStore, EmptyTrustStore> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _unparsable) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        let detail = loaded
            .errors
            .first()
            .map(|e| format!("; {e}"))
            .unwrap_or_default();
        return Err(EmptyTrustStore { detail });
    }
    Ok(roots)
}

/// A client configuration trusting `roots`, offering HTTP/2 and HTTP/1.1.
pub fn client_config(roots: RootCertStore) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// Whether `error` (or anything it wraps) is a failure to verify the peer's certificate: a
/// configuration problem that no retry can fix.
pub(crate) fn is_certificate_error(error: &(dyn StdError + 'static)) -> bool {
    matches!(
        find_cause::<rustls::Error>(error),
        Some(
            rustls::Error::InvalidCertificate(_)
                | rustls::Error::NoCertificatesPresented
                | rustls::Error::InvalidCertRevocationList(_)
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_certificate_error_is_found_and_others_are_not() {
        let bad_cert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(is_certificate_error(&bad_cert));
        let other_tls =
            std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert!(!is_certificate_error(&other_tls));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(!is_certificate_error(&reset));
    }
}

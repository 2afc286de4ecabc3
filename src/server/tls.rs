//! TLS for the gRPC listener: the rustls server configuration built from PEM files (rebuilt when
//! they are rotated), optional client-certificate verification, and the caller identity a
//! verified client certificate names.
//!
//! tonic's `ServerTlsConfig` wraps the same rustls stack but fixes the certificate when the server
//! is built, and the gateway runs its own accept loop; so the listener drives tokio-rustls itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

use crate::identity;
use crate::observe::metrics::Metrics;
use crate::reload::{self, LoadError, Reloading};

/// How the settings are named in errors and logs.
pub const SETTING: &str = "--tls-cert / --tls-key / --tls-client-ca";

/// The PEM files the listener's TLS is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates client certificates must chain to (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// Whether a client may connect without a certificate (when tokens can identify it instead).
    pub client_cert_optional: bool,
}

/// The PEM files make no usable TLS configuration; never echoes their contents.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// The certificate file holds no certificate.
    #[error("--tls-cert holds no PEM certificate")]
    NoCertificate,
    /// The key file holds no usable private key.
    #[error("--tls-key holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey,
    /// The key is not the certificate's.
    #[error("--tls-key is not the private key of the first certificate in --tls-cert")]
    KeyMismatch,
    /// The client CA file holds no usable certificate.
    #[error("--tls-client-ca holds no usable PEM CA certificate")]
    NoClientCa,
    /// rustls refused the configuration.
    #[error("cannot build the TLS configuration: {0}")]
    Rustls(String),
}

/// Loads the TLS files and keeps the configuration current as they change; each configuration put
/// in use sets the serving certificate's expiry in `metrics`.
pub async fn watch(
    files: TlsFiles,
    interval: Duration,
    metrics: Option<Metrics>,
) -> Result<Reloading<ServerConfig>, LoadError> {
    let mut paths = vec![files.cert.clone(), files.key.clone()];
    paths.extend(files.client_ca.clone());
    let optional = files.client_cert_optional;
    reload::watch(SETTING, paths, interval, move |pem, _| {
        let config = server_config(&pem[0], &pem[1], pem.get(2).map(Vec::as_slice), optional)?;
        if let (Some(metrics), Some(at)) = (&metrics, not_after(&pem[0])) {
            metrics.serving_certificate_expires(at);
        }
        Ok::<_, TlsError>(config)
    })
    .await
}

/// When the first (leaf) certificate of a PEM chain expires, Unix seconds.
fn not_after(chain: &[u8]) -> Option<i64> {
    let leaf = CertificateDer::pem_slice_iter(chain).find_map(Result::ok)?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// A server configuration offering HTTP/2 by ALPN, from PEM bytes; with `client_ca`, clients
/// must present a certificate chaining to it (unless `client_cert_optional`, and then a
/// certificate that is presented must still chain to it).
pub(crate) fn server_config(
    cert: &[u8],
    key: &[u8],
    client_ca: Option<&[u8]>,
    client_cert_optional: bool,
) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| TlsError::NoKey)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| TlsError::NoKey)?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|_| TlsError::KeyMismatch)?;

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            let cas = CertificateDer::pem_slice_iter(pem).filter_map(Result::ok);
            let (added, _) = roots.add_parsable_certificates(cas);
            if added == 0 {
                return Err(TlsError::NoClientCa);
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if client_cert_optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config =
        builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The caller a verified client certificate names, typed: its first `spiffe://` URI SAN, else
/// `dns:` its first DNS SAN, else `cn:` its subject CN. `None` when it names none of these, or
/// only with a name too long or with characters that would not survive a log line.
pub(crate) fn certificate_identity(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| san.value.general_names.clone())
        .unwrap_or_default();
    let usable = |name: &str| identity::printable(name);
    let spiffe = names.iter().find_map(|n| match n {
        GeneralName::URI(uri) if usable(uri) => identity::spiffe(uri),
        _ => None,
    });
    let dns = || {
        names.iter().find_map(|n| match n {
            GeneralName::DNSName(dns) if usable(dns) => Some(identity::dns(dns)),
            _ => None,
        })
    };
    let cn = || {
        cert.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .filter(|cn| usable(cn))
            .map(identity::cn)
    };
    spiffe.or_else(dns).or_else(cn)
}

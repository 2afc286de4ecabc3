//! Upstream name resolution with an async resolver (hickory), so that a slow or dead DNS server
//! ties up no threads, and so that "no such host" can be told apart from "resolver unavailable".

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::{ResolveError, TokioResolver};
use hyper_util::client::legacy::connect::dns::Name;

/// Where upstream host names are looked up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DnsConfig {
    /// The system's configuration (`/etc/resolv.conf`, `/etc/hosts`).
    #[default]
    System,
    /// These name servers over UDP and TCP, with no search domains (tests use a loopback server).
    Servers(Vec<SocketAddr>),
}

/// A lookup failed; the two cases a retry policy must tell apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DnsError {
    /// The name server answered that the name does not exist (NXDOMAIN) or has no address.
    #[error("DNS: no such host {0}")]
    NoSuchHost(String),
    /// No usable answer: the resolver timed out, failed, or could not be configured.
    #[error("DNS lookup of {host} failed: {detail}")]
    Unavailable {
        /// The name looked up.
        host: String,
        /// The resolver's description.
        detail: String,
    },
}

/// A resolver for hyper's connector, backed by hickory.
#[derive(Clone)]
pub(crate) struct HickoryResolver {
    resolver: Arc<TokioResolver>,
}

impl fmt::Debug for HickoryResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HickoryResolver").finish_non_exhaustive()
    }
}

impl HickoryResolver {
    /// Builds the resolver; `System` fails when the system configuration cannot be read.
    pub(crate) fn new(config: &DnsConfig) -> Result<Self, ResolveError> {
        let provider = TokioConnectionProvider::default();
        let builder = match config {
            DnsConfig::System => TokioResolver::builder(provider)?,
            DnsConfig::Servers(servers) => {
                let mut group = NameServerConfigGroup::new();
                for server in servers {
                    group.merge(NameServerConfigGroup::from_ips_clear(
                        &[server.ip()],
                        server.port(),
                        true,
                    ));
                }
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, Vec::new(), group),
                    provider,
                )
            }
        };
        Ok(Self {
            resolver: Arc::new(builder.build()),
        })
    }
}

/// Sorts a hickory failure into the two cases that matter: only an answer that says the name does
/// not exist (NXDOMAIN) or has no address (NOERROR, no records) is final. hickory reports a
/// SERVFAIL as "no records found" too, with its response code.
fn classify(host: &str, error: &ResolveError) -> DnsError {
    let final_answer = error.proto().is_some_and(|proto| {
        matches!(
            proto.kind(),
            ProtoErrorKind::NoRecordsFound {
                response_code: ResponseCode::NXDomain | ResponseCode::NoError,
                ..
            }
        )
    });
    if final_answer {
        DnsError::NoSuchHost(host.to_owned())
    } else {
        DnsError::Unavailable {
            host: host.to_owned(),
            detail: error.to_string(),
        }
    }
}

impl tower::Service<Name> for HickoryResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = DnsError;
    type Future = BoxFuture<'static, Result<Self::Response, DnsError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), DnsError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolver = self.resolver.clone();
        Box::pin(async move {
            let host = name.as_str();
            match resolver.lookup_ip(host).await {
                Ok(lookup) => Ok(lookup
                    .iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect::<Vec<_>>()
                    .into_iter()),
                Err(error) => Err(classify(host, &error)),
            }
        })
    }
}

//! The HTTP leg to ECS: hyper's pooled client over rustls, HTTP/2 when the endpoint offers it by
//! ALPN (one multiplexed connection) and HTTP/1.1 keep-alive otherwise, TLS sessions resumed from
//! rustls' in-memory cache, names resolved by hickory.
//!
//! hyper directly rather than through reqwest (which the credential sources still use): reqwest
//! 0.12 turns each request's URI back into a `Url` twice (its redirect policy and its response
//! URL), even with redirects off — a full parse of the signed URL, IDNA included, per request.
//! Here the URI is parsed once, by `http`, and nothing else is added per request.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, USER_AGENT};
use http::{Method, Request, Response, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::dns::{DnsError, HickoryResolver};
use super::error::{EcsError, TransportKind, find_cause};
use super::tls;

type Connector = ConnectWithin<HttpsConnector<HttpConnector<HickoryResolver>>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How connections to ECS are made and kept.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// TCP connect and TLS handshake, together.
    pub connect_timeout: Duration,
    /// Idle keep-alive connections kept per host (HTTP/1.1; HTTP/2 needs one).
    pub pool_max_idle_per_host: usize,
    /// How long an idle connection is kept.
    pub pool_idle_timeout: Duration,
    /// The `User-Agent` of every request.
    pub user_agent: &'static str,
}

/// A pooled HTTP client that only POSTs to ECS.
#[derive(Debug, Clone)]
pub struct Transport {
    client: Client<Connector, Empty<Bytes>>,
    user_agent: HeaderValue,
}

impl Transport {
    /// A client trusting `roots`, resolving with `resolver`.
    pub fn new(
        roots: rustls::RootCertStore,
        resolver: HickoryResolver,
        settings: &TransportSettings,
    ) -> Self {
        let mut http = HttpConnector::new_with_resolver(resolver);
        http.enforce_http(false);
        http.set_nodelay(true);
        let mut config = tls::client_config(roots);
        // The connector sets the ALPN list from the versions it enables: h2, then http/1.1.
        config.alpn_protocols.clear();
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let connector = ConnectWithin {
            inner: https,
            limit: settings.connect_timeout,
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_max_idle_per_host(settings.pool_max_idle_per_host)
            .pool_idle_timeout(settings.pool_idle_timeout)
            .build(connector);
        Self {
            client,
            user_agent: HeaderValue::from_static(settings.user_agent),
        }
    }

    /// POSTs to `url` (which carries the signed query) with no body; redirects are not followed,
    /// since a redirect would resend the signed query to another host.
    pub async fn post(&self, url: String) -> Result<Response<Incoming>, EcsError> {
        let uri = Uri::try_from(url).map_err(|error| EcsError::Transport {
            kind: TransportKind::Build,
            detail: format!("the request URL does not parse: {error}"),
        })?;
        let mut request = Request::new(Empty::new());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        request
            .headers_mut()
            .insert(USER_AGENT, self.user_agent.clone());
        self.client.request(request).await.map_err(classify)
    }
}

/// A connector that gives up after `limit`, TLS handshake included (hyper's own connect timeout
/// covers only TCP).
#[derive(Debug, Clone)]
struct ConnectWithin<S> {
    inner: S,
    limit: Duration,
}

/// Connecting (TCP and TLS) took longer than the connect timeout.
#[derive(Debug, thiserror::Error)]
#[error("connecting (TCP and TLS) took longer than {0:?}")]
struct ConnectTimedOut(Duration);

impl<S> tower::Service<Uri> for ConnectWithin<S>
where
    S: tower::Service<Uri>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let limit = self.limit;
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(connected) => connected.map_err(Into::into),
                Err(_) => Err(Box::new(ConnectTimedOut(limit)) as BoxError),
            }
        })
    }
}

/// Reads at most `max` bytes of `response`'s body; `None` for a larger body.
pub async fn read_capped(
    response: Response<Incoming>,
    max: usize,
) -> Result<Option<Vec<u8>>, EcsError> {
    let mut body = response.into_body();
    let mut bytes = Vec::with_capacity(512);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| interrupted(&error))?;
        if let Ok(chunk) = frame.into_data() {
            if bytes.len() + chunk.len() > max {
                return Ok(None);
            }
            bytes.extend_from_slice(&chunk);
        }
    }
    Ok(Some(bytes))
}

/// Classifies a failure by whether it can have reached ECS and whether it can pass (after
/// object_store's `RetryError`). Nothing here carries the URL: hyper's errors never include it.
fn classify(error: hyper_util::client::legacy::Error) -> EcsError {
    let dns = find_cause::<DnsError>(&error);
    let kind = if let Some(DnsError::NoSuchHost(_)) = dns {
        TransportKind::NoSuchHost
    } else if dns.is_some() || error.is_connect() {
        if tls::is_certificate_error(&error) {
            TransportKind::UntrustedCertificate
        } else {
            TransportKind::Connect
        }
    } else {
        TransportKind::Interrupted
    };
    EcsError::Transport {
        kind,
        detail: describe(&error),
    }
}

/// The connection broke after the request was sent (the answer was cut off).
fn interrupted(error: &(dyn std::error::Error + 'static)) -> EcsError {
    EcsError::Transport {
        kind: TransportKind::Interrupted,
        detail: describe(error),
    }
}

/// `error` and its causes, joined by ": ".
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut detail = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    detail
}

//! The HTTP leg to ECS: hyper's pooled client over rustls, HTTP/2 when the endpoint offers it by
//! ALPN (one multiplexed connection) and HTTP/1.1 keep-alive otherwise, TLS sessions resumed from
//! rustls' in-memory cache, names resolved by hickory.
//!
//! hyper's pool learns HTTP/2 only once a connection's handshake is done, so a burst of calls with
//! no connection open (the first calls, or every call in flight when ECS retires a connection)
//! starts one TLS handshake per call and keeps one of them. So the first request goes alone and
//! tells which protocol the endpoint speaks; once it is HTTP/2, requests go through a client that
//! knows it, whose pool opens one connection and lets the others wait for it. This is learned per
//! host (regions have hosts of their own).
//!
//! hyper directly rather than through reqwest (which the credential sources still use): reqwest
//! 0.12 turns each request's URI back into a `Url` twice (its redirect policy and its response
//! URL), even with redirects off — a full parse of the signed URL, IDNA included, per request.
//! Here the URI is parsed once, by `http`, and nothing else is added per request.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, USER_AGENT};
use http::{Method, Request, Response, Uri, Version};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{CaptureConnection, HttpConnector, capture_connection};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::dns::{DnsError, HickoryResolver};
use super::error::{EcsError, TransportKind, find_cause};
use super::tls;

type Connector = ConnectWithin<HttpsConnector<HttpConnector<HickoryResolver>>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How connections to ECS are made and kept.
#[derive(Debug, Clone)]
pub(crate) struct TransportSettings {
    /// TCP connect and TLS handshake, together.
    pub connect_timeout: Duration,
    /// Idle keep-alive connections kept per host (HTTP/1.1; HTTP/2 needs one).
    pub pool_max_idle_per_host: usize,
    /// How long an idle connection is kept.
    pub pool_idle_timeout: Duration,
    /// The `User-Agent` of every request.
    pub user_agent: &'static str,
}

/// What a host has been seen to speak.
const UNKNOWN: u8 = 0;
const HTTP1: u8 = 1;
const HTTP2: u8 = 2;

/// Hosts whose protocol is remembered; past this, requests to new hosts simply use `any`.
const MAX_HOSTS: usize = 128;

/// The longest a request waits for another one to find out its host's protocol before it goes
/// ahead on its own (an endpoint that does not answer must not queue calls behind one another).
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// How often an HTTP/2 connection is pinged, idle or not, and how long its answer may take before
/// the connection is closed: a peer gone silent (a NAT or load balancer that forgot the flow)
/// is found within 15 s, not at each request's deadline.
const H2_PING_EVERY: Duration = Duration::from_secs(10);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(5);

/// One exchange's connection. An exchange abandoned unanswered after `silence` (the attempt
/// timeout) retires its connection, so the pool sends no other request over it: an HTTP/2
/// connection whose peer went silent otherwise stays "ready" and takes every request until its
/// keep-alive ping fails (hyper#4186). One abandoned sooner (its caller went away) leaves the
/// connection alone.
#[derive(Debug)]
pub(crate) struct Exchange {
    captured: Option<CaptureConnection>,
    started: tokio::time::Instant,
    silence: Duration,
    answered: bool,
}

impl Exchange {
    /// An exchange whose connection is retired when it is given up after `silence` unanswered.
    /// The attempt's timer started a moment before this, so nine tenths of it count.
    pub(crate) fn new(silence: Duration) -> Self {
        Self {
            captured: None,
            started: tokio::time::Instant::now(),
            silence: silence.mul_f64(0.9),
            answered: false,
        }
    }

    /// The answer came in whole: the connection is fine.
    pub(crate) fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if self.answered || self.started.elapsed() < self.silence {
            return;
        }
        if let Some(connected) = self.captured.as_ref().map(|c| c.connection_metadata())
            && let Some(connection) = connected.as_ref()
        {
            connection.poison();
            tracing::debug!("an ECS connection gave no answer within the attempt timeout; retired");
        }
    }
}

/// One host's protocol, and the lock held by the request finding it out.
#[derive(Debug, Default)]
struct Host {
    protocol: AtomicU8,
    probing: tokio::sync::Mutex<()>,
}

/// A pooled HTTP client that only POSTs to ECS.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    /// Offers h2 and http/1.1 by ALPN; plain HTTP is HTTP/1.1.
    any: Client<Connector, Empty<Bytes>>,
    /// Offers only h2, for an endpoint known to speak it.
    h2: Client<Connector, Empty<Bytes>>,
    hosts: Arc<ArcSwap<HashMap<http::uri::Authority, Arc<Host>>>>,
    user_agent: HeaderValue,
}

impl Transport {
    /// A client trusting `roots`, resolving with `resolver`.
    pub(crate) fn new(
        roots: rustls::RootCertStore,
        resolver: HickoryResolver,
        settings: &TransportSettings,
    ) -> Self {
        let mut http = HttpConnector::new_with_resolver(resolver);
        http.enforce_http(false);
        http.set_nodelay(true);
        let mut config = tls::client_config(roots);
        // The connectors set the ALPN list from the versions they enable.
        config.alpn_protocols.clear();
        let connector = |https: HttpsConnector<_>| ConnectWithin {
            inner: https,
            limit: settings.connect_timeout,
        };
        let any = connector(
            HttpsConnectorBuilder::new()
                .with_tls_config(config.clone())
                .https_or_http()
                .enable_all_versions()
                .wrap_connector(http.clone()),
        );
        let h2 = connector(
            HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_only()
                .enable_http2()
                .wrap_connector(http),
        );
        let client = |http2_only: bool, connector| {
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_max_idle_per_host(settings.pool_max_idle_per_host)
                .pool_idle_timeout(settings.pool_idle_timeout)
                .http2_keep_alive_interval(H2_PING_EVERY)
                .http2_keep_alive_timeout(H2_PING_TIMEOUT)
                .http2_keep_alive_while_idle(true)
                .http2_only(http2_only)
                .build(connector)
        };
        Self {
            any: client(false, any),
            h2: client(true, h2),
            hosts: Arc::default(),
            user_agent: HeaderValue::from_static(settings.user_agent),
        }
    }

    /// POSTs to `url` (which carries the signed query) with `headers` (V3's signed ones) and no
    /// body, over the connection `exchange` watches; redirects are not followed, since a redirect
    /// would resend the signed request to another host.
    pub(crate) async fn post(
        &self,
        url: String,
        headers: Vec<(HeaderName, HeaderValue)>,
        exchange: &mut Exchange,
    ) -> Result<Response<Incoming>, EcsError> {
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
        for (name, value) in headers {
            request.headers_mut().insert(name, value);
        }
        exchange.captured = Some(capture_connection(&mut request));
        let Some(host) = self.host(request.uri()) else {
            return self.any.request(request).await.map_err(classify);
        };
        let _probe = match host.protocol.load(Ordering::Acquire) {
            HTTP2 => return self.send_h2(&host, request).await,
            HTTP1 => return self.any.request(request).await.map_err(classify),
            _ => tokio::time::timeout(PROBE_WAIT, host.probing.lock())
                .await
                .ok(),
        };
        match host.protocol.load(Ordering::Acquire) {
            HTTP2 => self.send_h2(&host, request).await,
            HTTP1 => self.any.request(request).await.map_err(classify),
            _ => {
                let response = self.any.request(request).await.map_err(classify)?;
                let seen = if response.version() == Version::HTTP_2 {
                    HTTP2
                } else {
                    HTTP1
                };
                host.protocol.store(seen, Ordering::Release);
                Ok(response)
            }
        }
    }

    /// The protocol state of an `https` URI's host; `None` for plain HTTP (always HTTP/1.1 here)
    /// and past `MAX_HOSTS`.
    fn host(&self, uri: &Uri) -> Option<Arc<Host>> {
        if uri.scheme() != Some(&http::uri::Scheme::HTTPS) {
            return None;
        }
        let authority = uri.authority()?;
        if let Some(host) = self.hosts.load().get(authority) {
            return Some(Arc::clone(host));
        }
        let mut found = None;
        self.hosts.rcu(|hosts| {
            let mut hosts = HashMap::clone(hosts);
            if hosts.len() < MAX_HOSTS || hosts.contains_key(authority) {
                found = Some(Arc::clone(hosts.entry(authority.clone()).or_default()));
            }
            Arc::new(hosts)
        });
        found
    }

    /// Sends over the HTTP/2-only client. Any failure (the endpoint no longer offering h2 among
    /// them) makes the next request find out the protocol again: at most one more connection.
    async fn send_h2(
        &self,
        host: &Host,
        request: Request<Empty<Bytes>>,
    ) -> Result<Response<Incoming>, EcsError> {
        self.h2.request(request).await.map_err(|error| {
            host.protocol.store(UNKNOWN, Ordering::Release);
            classify(error)
        })
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
pub(crate) async fn read_capped(
    mut body: Incoming,
    max: usize,
) -> Result<Option<Vec<u8>>, EcsError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aliyun::dns::DnsConfig;

    fn transport() -> Transport {
        Transport::new(
            rustls::RootCertStore::empty(),
            HickoryResolver::new(&DnsConfig::Servers(vec![])).unwrap(),
            &TransportSettings {
                connect_timeout: Duration::from_secs(2),
                pool_max_idle_per_host: 4,
                pool_idle_timeout: Duration::from_secs(5),
                user_agent: "test",
            },
        )
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error_that_never_shows_the_signed_url() {
        // A port nothing listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for scheme in ["http", "https"] {
            let url =
                format!("{scheme}://127.0.0.1:{port}/?AccessKeyId=LTAIkey&Signature=SecretSig%3D");
            let Err(EcsError::Transport { kind, detail }) = transport()
                .post(url, Vec::new(), &mut Exchange::new(Duration::from_secs(1)))
                .await
            else {
                panic!("nothing listens there");
            };
            assert_eq!(kind, TransportKind::Connect, "{detail}");
            assert!(
                !detail.contains("SecretSig") && !detail.contains("LTAIkey"),
                "{detail}"
            );
        }
    }

    #[tokio::test]
    async fn a_url_that_does_not_parse_is_a_build_error() {
        let Err(EcsError::Transport { kind, .. }) = transport()
            .post(
                "http://exa mple/".into(),
                Vec::new(),
                &mut Exchange::new(Duration::from_secs(1)),
            )
            .await
        else {
            panic!("refused");
        };
        assert_eq!(kind, TransportKind::Build);
    }
}

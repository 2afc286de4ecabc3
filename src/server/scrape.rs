//! The metrics listener: `GET /metrics` in the Prometheus text format, on an address of its own
//! so that scrapers need no gRPC and callers cannot reach it through the gateway's port.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::listener::Acceptor;
use crate::observe::metrics::Metrics;

/// The content type of the Prometheus text format.
pub(crate) const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// A scrape that has not sent its request by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The most scrapers connected at once: Prometheus keeps one connection per target, so a handful
/// is plenty, and keep-alive clients must not take the file descriptors the gRPC port needs.
const MAX_CONNECTIONS: usize = 32;

/// Serves `metrics` on `listener` until `shutdown` resolves, through the same accept loop as the
/// gRPC port. hyper's header timeout also closes a keep-alive connection idle between scrapes.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) {
    let mut acceptor =
        Acceptor::new(listener, MAX_CONNECTIONS, "metrics").counting_in(Some(metrics.clone()));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = acceptor.accept() => accepted,
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let metrics = metrics.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&request, &metrics)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(accepted.stream), service)
                .await;
            drop(accepted.slot);
        });
    }
}

fn answer<B>(request: &Request<B>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, metrics.encode()),
        (_, "/metrics") => (StatusCode::METHOD_NOT_ALLOWED, "use GET\n".to_owned()),
        _ => (
            StatusCode::NOT_FOUND,
            "metrics are at /metrics\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if status == StatusCode::OK {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_TEXT));
    }
    response
}

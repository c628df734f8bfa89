//! `serve --metrics-listen`: `GET /metrics` in Prometheus' text format, on an address of its
//! own (never the public port, which senders reach).
//!
//! The operator events ([`crate::events`]) count through the `metrics` facade, into the
//! Prometheus recorder [`crate::telemetry`] installs; this renders what it holds at each scrape.

use crate::backend::Backlog;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

/// The content type of the text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `listen` and answers scrapes on it, rendering `handle`, for as long as the process
/// lives. Each scrape reads the queues' depths from `backlog` first.
pub(crate) async fn serve(
    listen: SocketAddr,
    handle: PrometheusHandle,
    backlog: Arc<dyn Backlog>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handle = handle.clone();
            let backlog = Arc::clone(&backlog);
            let service = service_fn(move |request| {
                let (handle, backlog) = (handle.clone(), Arc::clone(&backlog));
                async move {
                    if is_scrape(&request) {
                        read_depths(backlog.as_ref()).await;
                    }
                    Ok::<_, Infallible>(answer(&handle, &request))
                }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    Ok(())
}

fn is_scrape(request: &Request<Incoming>) -> bool {
    request.method() == Method::GET && request.uri().path() == "/metrics"
}

/// The queues' depths, as gauges; a backlog that does not answer leaves the last ones (its
/// failure is the backend's own `backend_unavailable` line).
async fn read_depths(backlog: &dyn Backlog) {
    match backlog.depths().await {
        Ok(depths) => {
            for depth in depths {
                crate::events::QueueDepthRead {
                    queue: &depth.queue,
                    waiting: depth.waiting,
                }
                .emit();
            }
        }
        Err(error) => crate::events::BackendUnavailable {
            backend: error.backend,
            error: error.detail(),
        }
        .emit(),
    }
}

fn answer(handle: &PrometheusHandle, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            handle.run_upkeep();
            (StatusCode::OK, handle.render())
        }
        (_, "/metrics") => (StatusCode::METHOD_NOT_ALLOWED, "use GET\n".to_owned()),
        _ => (StatusCode::NOT_FOUND, "see /metrics\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if status == StatusCode::OK {
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(CONTENT_TYPE),
        );
    }
    response
}

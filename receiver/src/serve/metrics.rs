//! `serve --metrics-listen`: `GET /metrics` in Prometheus' text format, on an address of its
//! own (never the public port, which senders reach).
//!
//! The operator events ([`crate::events`]) count through the `metrics` facade; this builds the
//! Prometheus recorder behind it and renders what it holds at each scrape.

use crate::backend::Backlog;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

/// Request durations' histogram buckets, in seconds: a commit on the embedded backend takes
/// about a millisecond, a request on AWS tens; the last ones catch a backend that hangs.
const DURATION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// The content type of the text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The Prometheus recorder, with the request durations' buckets; [`crate::telemetry`] installs
/// it behind the facade.
pub(crate) fn recorder() -> Result<PrometheusRecorder, String> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(crate::events::REQUEST_SECONDS.name.to_owned()),
            &DURATION_BUCKETS,
        )
        .map_err(|e| e.to_string())?;
    Ok(builder.build_recorder())
}

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
        Err(error) => crate::telemetry::log_backend_error(&error),
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

//! `bucket-relay serve`: the handler as a plain HTTP server (axum on hyper).
//!
//! The only thing done here is reading the body, with the 6 MB limit applied while reading so a
//! huge request never sits in memory; everything else is [`Relay::handle_parts`].

use crate::handler::{too_large, Refusal, Relay};
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use relay_protocol::wire::{self, MAX_BODY_BYTES};
use relay_protocol::Reason;
use std::net::SocketAddr;
use std::sync::Arc;

/// How much of an oversized body is read and thrown away before answering 413, so that a
/// client still sending gets the answer rather than a reset connection.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

pub async fn run(relay: Arc<Relay>, listen: SocketAddr) -> std::io::Result<()> {
    let app = Router::new().fallback(move |request: Request| {
        let relay = Arc::clone(&relay);
        async move { forward(&relay, request).await }
    });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(message = "listening", address = %listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
}

async fn forward(relay: &Relay, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let response = match read_limited(body).await {
        Ok(body) => {
            relay
                .handle_parts(&parts.method, parts.uri.path(), &parts.headers, &body)
                .await
        }
        Err(error) => {
            let refusal = match error {
                BodyError::TooLarge(seen) => too_large(seen),
                BodyError::Broken => Refusal::new(
                    Reason::MalformedRequest,
                    "the request body could not be read",
                ),
            };
            tracing::warn!(
                message = "request",
                path = parts.uri.path(),
                status = wire::request_error_status(refusal.reason),
                error = refusal.reason.as_str(),
                detail = %refusal.detail,
            );
            refusal.into_response()
        }
    };
    response.map(Body::from)
}

enum BodyError {
    TooLarge(usize),
    Broken,
}

async fn read_limited(mut body: Body) -> Result<Bytes, BodyError> {
    let mut buffer = BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Broken)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen > DRAIN_LIMIT {
            break;
        }
        if seen <= MAX_BODY_BYTES {
            buffer.extend_from_slice(&data);
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(BodyError::TooLarge(seen));
    }
    Ok(buffer.freeze())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = interrupt => {},
        _ = terminate.recv() => {},
    }
    tracing::info!(message = "shutting_down");
}

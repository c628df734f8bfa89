//! `bucket-relay serve`: the handler as a plain HTTP/1.1 server (hyper).
//!
//! What is done here, and only here, is what a socket needs that Lambda's function URL does for
//! us: reading the body within its limits and deadlines, and keeping a request's processing
//! alive whatever the client does.
//!
//! - Each request head is checked before hyper parses it ([`head`]): one hyper would refuse
//!   with an empty 400 or 431 gets the receiver's JSON error instead.
//! - A request head must arrive within `--read-timeout`, and so must its body; a client that
//!   trickles or stalls is cut off (the body: 408 `request_timeout`).
//! - A body declared larger than the 6 MB limit is answered 413 at once from `Content-Length`;
//!   one that turns out larger while being read is answered as soon as it passes the limit.
//!   Either way the rest is read and thrown away in the background (bounded), so that a client
//!   still sending can read the answer instead of a reset connection.
//! - Once the body is read, the request is handled on a task of its own: a client that hangs up
//!   cannot cut a commit in half. Its answer is lost, and the sender's retry is answered from the
//!   ledger (`duplicate`).
//! - What clients that have not yet proven anything can make the server hold is bounded: an
//!   events request for an integration the store does not have is answered 404 before its body is
//!   read; at most [`Limits::connections`] connections are served at once (more wait in the
//!   listen backlog); and the bodies being read or handled share a budget of
//!   [`Limits::body_bytes`] (a body that does not fit is answered 503 `backend_unavailable` with
//!   `Retry-After`, which every sender retries).

#[cfg(test)]
mod differential;
mod head;
pub(crate) mod metrics;

use crate::events::{AcceptFailed, ConnectionClosed, Listening, ShuttingDown};
use crate::handler::{too_large, Refusal, Relay};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use relay_protocol::wire::MAX_BODY_BYTES;
use relay_protocol::Reason;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How much of an oversized body is read and thrown away after the 413, so that a client still
/// sending gets the answer rather than a reset connection.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;
/// How long open connections get to finish their requests after SIGTERM / Ctrl-C.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The body budget's unit: permits are counted in KiB.
const BUDGET_UNIT: usize = 1024;

/// What `serve` holds at most for its clients.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Connections served at once.
    pub(crate) connections: usize,
    /// Bytes of request bodies read or being handled, across every connection.
    pub(crate) body_bytes: usize,
}

pub(crate) async fn run(
    relay: Arc<Relay>,
    listen: SocketAddr,
    read_timeout: Duration,
    limits: Limits,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    Listening {
        address: listener.local_addr()?.to_string(),
        max_connections: limits.connections as u64,
        max_body_buffer_bytes: limits.body_bytes as u64,
    }
    .emit();
    let connections = GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(limits.connections));
    let budget = Arc::new(Semaphore::new(limits.body_bytes.div_ceil(BUDGET_UNIT)));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (stream, slot) = tokio::select! {
            accepted = accept(&listener, &open) => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, most likely: wait for connections to close.
                    AcceptFailed {
                        error: error.to_string(),
                    }
                    .emit();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let reporter = Arc::clone(&relay);
        let stream = head::Guarded::new(
            stream,
            Box::new(move |path, refusal| reporter.refused_before_handling(path, refusal)),
        );
        let relay = Arc::clone(&relay);
        let budget = Arc::clone(&budget);
        let service = service_fn(move |request| {
            let relay = Arc::clone(&relay);
            let budget = Arc::clone(&budget);
            async move { Ok::<_, Infallible>(forward(relay, request, read_timeout, budget).await) }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(read_timeout)
            // A refused head reads as the end of the stream: with half-close on, hyper first
            // finishes the request before it instead of dropping it.
            .half_close(true)
            .serve_connection(TokioIo::new(stream), service);
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                ConnectionClosed {
                    error: error.to_string(),
                }
                .emit();
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {}
    }
    Ok(())
}

/// The next connection, once one of the connection slots is free.
async fn accept(
    listener: &tokio::net::TcpListener,
    open: &Arc<Semaphore>,
) -> std::io::Result<(tokio::net::TcpStream, OwnedSemaphorePermit)> {
    let slot = Arc::clone(open)
        .acquire_owned()
        .await
        .map_err(std::io::Error::other)?;
    let (stream, _) = listener.accept().await?;
    Ok((stream, slot))
}

async fn forward(
    relay: Arc<Relay>,
    request: Request<Incoming>,
    read_timeout: Duration,
    budget: Arc<Semaphore>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let known = relay
        .refusal_before_body(&parts.method, parts.uri.path())
        .await;
    let refusal = match (known, declared_length(&parts.headers)) {
        (Some(refusal), declared) => {
            drain_in_background(body, declared.unwrap_or(0));
            refusal
        }
        (None, Some(declared)) if declared > MAX_BODY_BYTES => {
            drain_in_background(body, declared);
            too_large(declared)
        }
        (None, _) => match tokio::time::timeout(read_timeout, read_limited(body, &budget)).await {
            Ok(Ok((body, held))) => {
                let handled = tokio::spawn(async move {
                    let response = relay
                        .handle_parts(&parts.method, parts.uri.path(), &parts.headers, &body)
                        .await;
                    drop(held);
                    response
                });
                return match handled.await {
                    Ok(response) => response.map(Full::new),
                    // Only a panic in the handler ends here: a bug, answered as retry-later.
                    Err(_) => Refusal::new(Reason::BackendUnavailable, "internal error")
                        .into_response()
                        .map(Full::new),
                };
            }
            Ok(Err(BodyError::TooLarge { seen, rest })) => {
                drain_in_background(rest, DRAIN_LIMIT);
                too_large(seen)
            }
            Ok(Err(BodyError::Busy { rest })) => {
                drain_in_background(rest, DRAIN_LIMIT);
                Refusal::new(
                    Reason::BackendUnavailable,
                    "the receiver is reading as many bodies as it holds at once; retry later",
                )
            }
            Ok(Err(BodyError::Broken)) => Refusal::new(
                Reason::MalformedRequest,
                "the request body could not be read",
            ),
            Err(_) => Refusal::new(
                Reason::RequestTimeout,
                format!(
                    "the body did not arrive within {} s",
                    read_timeout.as_secs_f64()
                ),
            ),
        },
    };
    relay.refused_before_handling(parts.uri.path(), &refusal);
    refusal.into_response().map(Full::new)
}

/// The body's `Content-Length`, when it states one.
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

enum BodyError {
    /// Over the limit after `seen` bytes; `rest` is what is still to come.
    TooLarge {
        seen: usize,
        rest: Incoming,
    },
    /// The body budget has no room for it now.
    Busy {
        rest: Incoming,
    },
    Broken,
}

/// Reads a body within [`MAX_BODY_BYTES`], taking its size from the body budget as it arrives;
/// the budget is given back when the returned permit is dropped.
async fn read_limited(
    mut body: Incoming,
    budget: &Arc<Semaphore>,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), BodyError> {
    let mut buffer = BytesMut::new();
    let mut held: Option<OwnedSemaphorePermit> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Broken)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buffer.extend_from_slice(&data);
        if buffer.len() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge {
                seen: buffer.len(),
                rest: body,
            });
        }
        let needed = buffer.len().div_ceil(BUDGET_UNIT);
        let have = held.as_ref().map_or(0, |permit| permit.num_permits());
        if needed > have {
            let more = u32::try_from(needed - have).unwrap_or(u32::MAX);
            match Arc::clone(budget).try_acquire_many_owned(more) {
                Ok(permit) => match &mut held {
                    Some(held) => held.merge(permit),
                    None => held = Some(permit),
                },
                Err(_) => return Err(BodyError::Busy { rest: body }),
            }
        }
    }
    Ok((buffer.freeze(), held))
}

/// Reads and drops up to `limit` bytes of a refused body on a task of its own, within a deadline.
fn drain_in_background(mut body: Incoming, limit: usize) {
    if limit > DRAIN_LIMIT {
        return; // not worth reading: the connection closes after the answer
    }
    tokio::spawn(async move {
        let drain = async {
            let mut seen = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, Bytes::len);
                if seen > limit {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(30), drain).await;
    });
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = interrupt => {},
        () = terminate => {},
    }
    ShuttingDown {}.emit();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_length_is_read_only_when_it_is_a_number() {
        let mut headers = HeaderMap::new();
        assert_eq!(declared_length(&headers), None);
        headers.insert(http::header::CONTENT_LENGTH, "7340032".parse().unwrap());
        assert_eq!(declared_length(&headers), Some(7_340_032));
        headers.insert(http::header::CONTENT_LENGTH, "abc".parse().unwrap());
        assert_eq!(declared_length(&headers), None);
    }
}

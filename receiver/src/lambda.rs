//! The receiver on AWS Lambda: the handler behind a function URL (through `lambda_http`), or,
//! with `RELAY_LAMBDA_HANDLER=poll`, the poller that EventBridge Scheduler invokes.
//!
//! Chosen automatically when `AWS_LAMBDA_RUNTIME_API` is set. The function URL already limits
//! bodies to 6 MB and hands over the exact bytes, so this shell only converts types.

use crate::backend::usage_buffer::BufferedUsage;
use crate::handler::Relay;
use crate::poll::{Poller, DEFAULT_OVERLAP};
use lambda_http::{service_fn, Body, Error, LambdaEvent, Request};
use std::sync::Arc;

/// Writes the usage counts still waiting when Lambda shuts the environment down: the runtime
/// registers an internal extension, so Lambda sends the process SIGTERM first and gives it a
/// moment (an environment without an extension is stopped without one).
pub(crate) async fn flush_on_shutdown(buffer: Arc<BufferedUsage>) {
    lambda_http::lambda_runtime::spawn_graceful_shutdown_handler(move || async move {
        buffer.flush_or_log().await;
    })
    .await;
}

/// One poll tick per invocation, whatever the event (the scheduler's carries nothing we need).
/// The answer counts each integration's result; an invocation with a failed integration is an
/// error, so Lambda's `Errors` metric (and its alarm) sees it.
pub(crate) async fn run_poller(poller: Arc<Poller>) -> Result<(), Error> {
    lambda_http::lambda_runtime::run(service_fn(move |_event: LambdaEvent<serde_json::Value>| {
        let poller = Arc::clone(&poller);
        async move {
            let results = poller.tick(None, DEFAULT_OVERLAP).await?;
            let failed: Vec<String> = results
                .iter()
                .filter_map(|(id, result)| {
                    result.as_ref().err().map(|e| format!("{id}: {}", e.name()))
                })
                .collect();
            if !failed.is_empty() {
                return Err(Error::from(format!(
                    "{} of {} integrations failed their tick: {}",
                    failed.len(),
                    results.len(),
                    failed.join(", ")
                )));
            }
            let jobs: u64 = results
                .iter()
                .filter_map(|(_, result)| result.as_ref().ok())
                .map(|tally| tally.jobs)
                .sum();
            Ok::<_, Error>(serde_json::json!({"integrations": results.len(), "jobs": jobs}))
        }
    }))
    .await
}

pub(crate) async fn run(relay: Arc<Relay>) -> Result<(), Error> {
    lambda_http::run(service_fn(move |request: Request| {
        let relay = Arc::clone(&relay);
        async move {
            let (parts, body) = request.into_parts();
            let response = relay
                .handle_parts(
                    &parts.method,
                    parts.uri.path(),
                    &parts.headers,
                    body.as_ref(),
                )
                .await;
            Ok::<_, Error>(
                response.map(|bytes| match String::from_utf8(bytes.to_vec()) {
                    Ok(text) => Body::Text(text),
                    Err(raw) => Body::Binary(raw.into_bytes()),
                }),
            )
        }
    }))
    .await
}

//! The handler on AWS Lambda, behind a function URL, through `lambda_http`.
//!
//! Chosen automatically when `AWS_LAMBDA_RUNTIME_API` is set. The function URL already limits
//! bodies to 6 MB and hands over the exact bytes, so this shell only converts types.

use crate::handler::Relay;
use lambda_http::{service_fn, Body, Error, Request};
use std::sync::Arc;

pub async fn run(relay: Arc<Relay>) -> Result<(), Error> {
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

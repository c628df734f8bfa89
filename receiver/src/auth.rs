//! Step 1 of the decision: is this request from the integration's event source?
//!
//! A request carrying `webhook-signature` is a worker batch and must verify as Standard
//! Webhooks; one carrying `authorization: Bearer …` is an EventBridge API destination call.
//! Either may use the current secret generation or, during a rotation's grace, the previous one.
//! Failures are named for the log, never with the secret or the signature in them.

use chrono::{DateTime, Utc};
use http::HeaderMap;
use relay_protocol::webhook::{self, SignedHeaders, SigningKey, WebhookError};
use relay_protocol::wire::{BEARER_PREFIX, HEADER_AUTHORIZATION};
use subtle::ConstantTimeEq;

/// Who sent the request, as proven by how it authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sender {
    /// The Cloudflare worker: a Standard Webhooks–signed batch of R2 notifications.
    Worker,
    /// An EventBridge API destination: one S3 or CloudTrail event.
    EventBridge,
}

impl Sender {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Sender::Worker => "worker",
            Sender::EventBridge => "eventbridge",
        }
    }
}

/// A request with neither a signature nor an `authorization` header.
const NO_CREDENTIALS: &str = "no_credentials";
/// An `authorization` header of another scheme than Bearer.
const NOT_A_BEARER_TOKEN: &str = "not_a_bearer_token";
/// A bearer token that is none of the integration's valid secrets.
const NO_MATCHING_SECRET: &str = "no_matching_secret";

/// The causes of a bearer call's failure; a signed batch's are [`WebhookError::NAMES`].
const BEARER_CAUSES: [&str; 3] = [NO_CREDENTIALS, NOT_A_BEARER_TOKEN, NO_MATCHING_SECRET];

/// Every `cause` an `auth_failed` log line can carry, for docs and tests.
pub(crate) fn causes() -> Vec<&'static str> {
    WebhookError::NAMES
        .into_iter()
        .chain(BEARER_CAUSES)
        .collect()
}

/// Why authentication failed: a stable word for the log, and a detail safe to answer with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AuthError(pub &'static str);

pub(crate) fn authenticate(
    keys: &[SigningKey],
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Sender, AuthError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());

    if headers.contains_key(webhook::HEADER_SIGNATURE) {
        let signed = SignedHeaders {
            id: header(webhook::HEADER_ID),
            timestamp: header(webhook::HEADER_TIMESTAMP),
            signature: header(webhook::HEADER_SIGNATURE),
        };
        return webhook::verify(keys, signed, body, now.timestamp())
            .map(|()| Sender::Worker)
            .map_err(|e: WebhookError| AuthError(e.as_str()));
    }
    let Some(authorization) = header(HEADER_AUTHORIZATION) else {
        return Err(AuthError(NO_CREDENTIALS));
    };
    // RFC 9110: the scheme is case-insensitive (`bearer`, `BEARER` are Bearer too).
    let scheme = BEARER_PREFIX.trim_end();
    let presented = match authorization.split_once(' ') {
        Some((given, token)) if given.eq_ignore_ascii_case(scheme) => token,
        _ => return Err(AuthError(NOT_A_BEARER_TOKEN)),
    };
    let presented = presented.trim().as_bytes();
    let matches = keys
        .iter()
        .any(|key| bool::from(key.to_secret().as_bytes().ct_eq(presented)));
    if matches {
        Ok(Sender::EventBridge)
    } else {
        Err(AuthError(NO_MATCHING_SECRET))
    }
}

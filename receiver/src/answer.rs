//! What the receiver answers when it refuses a request: the reason, the JSON error body, the
//! status and `Retry-After`. Per-event answers are built in the handler from the same wire types.

use crate::backend::BackendError;
use crate::telemetry::log_backend_error;
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use relay_protocol::wire::{self, ErrorBody};
use relay_protocol::Reason;

/// A request refused as a whole, before or instead of per-event results.
#[derive(Debug)]
pub struct Refusal {
    pub reason: Reason,
    pub detail: String,
}

impl Refusal {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Refusal {
            reason,
            detail: detail.into(),
        }
    }

    pub fn unavailable(err: &BackendError) -> Self {
        log_backend_error(err);
        Refusal::new(
            Reason::BackendUnavailable,
            format!("the {} backend is unavailable; retry later", err.backend),
        )
    }

    /// The JSON error answer, with `Retry-After` on a 503.
    pub fn into_response(self) -> http::Response<Bytes> {
        let status = wire::request_error_status(self.reason);
        let body = ErrorBody {
            error: self.reason,
            detail: self.detail,
        };
        json_response(status, &body)
    }
}

/// The 413 answer, shared with the `serve` shell that stops reading early.
pub fn too_large(bytes: usize) -> Refusal {
    Refusal::new(
        Reason::PayloadTooLarge,
        format!(
            "the body has {bytes} bytes or more; the limit is {} bytes",
            wire::MAX_BODY_BYTES
        ),
    )
}

pub(crate) fn json_response<T: serde::Serialize>(status: u16, body: &T) -> http::Response<Bytes> {
    let bytes = serde_json::to_vec(body).expect("answers always serialize");
    let mut response = http::Response::new(Bytes::from(bytes));
    *response.status_mut() = StatusCode::from_u16(status).expect("statuses are valid");
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == 503 {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(wire::RETRY_AFTER_SECONDS),
        );
    }
    response
}

//! What crosses the wire between the worker, EventBridge and the receiver: the events path,
//! header names, request and response bodies, and which status answers what.

use crate::reason::{Disposition, Outcome, Reason};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

const EVENTS_PATH_PREFIX: &str = "/v1/integrations/";
const EVENTS_PATH_SUFFIX: &str = "/events";
pub const HEALTH_PATH: &str = "/healthz";

/// The function URL's own request limit: larger bodies are answered 413 `payload_too_large`.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
/// The most events one request may carry: a Cloudflare queue batch holds at most 100 messages,
/// and EventBridge sends one event per request. More is answered 413 `too_many_events`.
pub const MAX_EVENTS_PER_REQUEST: usize = 100;

pub const HEADER_AUTHORIZATION: &str = "authorization";
pub const BEARER_PREFIX: &str = "Bearer ";
pub const HEADER_RETRY_AFTER: &str = "retry-after";
/// What `Retry-After` says on a 503: paused integrations and backend outages.
pub const RETRY_AFTER_SECONDS: u32 = 60;

/// The worker's configuration names (wrangler.toml `[vars]` and its secret), printed by the
/// receiver's `integrations create` so the two sides agree.
pub const WORKER_VAR_RECEIVER_URL: &str = "RECEIVER_URL";
pub const WORKER_VAR_INTEGRATION_ID: &str = "INTEGRATION_ID";
pub const WORKER_SECRET_NAME: &str = "EVENT_SOURCE_SECRET";
/// The worker's optional filters, which `integrations create` fills from the integration's own.
pub const WORKER_VAR_KEY_PREFIX: &str = "KEY_PREFIX";
pub const WORKER_VAR_KEY_SUFFIXES: &str = "KEY_SUFFIXES";
/// Comma-separated R2 actions the worker forwards (default: the object-create ones).
pub const WORKER_VAR_ACTIONS: &str = "FORWARD_ACTIONS";
/// Seconds the worker waits for the receiver's answer before retrying the batch.
pub const WORKER_VAR_TIMEOUT: &str = "RECEIVER_TIMEOUT_SECONDS";
/// `"true"` lets the worker call a plain-http receiver on 127.0.0.1 / localhost (local tests).
pub const WORKER_VAR_ALLOW_INSECURE: &str = "ALLOW_INSECURE_RECEIVER";
/// The longest wait between two retries of a message, in seconds (10 to 43200; default 43200):
/// what fits every retry inside the plan's queue retention ([`CloudflarePlan`]).
pub const WORKER_VAR_MAX_RETRY_DELAY: &str = "MAX_RETRY_DELAY_SECONDS";
/// The version of the prebuilt bundle a packaged worker runs (`<crate version>+<content hash>`),
/// written by `bucket-relay worker package`; `/healthz` reports it.
pub const WORKER_VAR_BUNDLE: &str = "WORKER_BUNDLE";
/// The header a worker sends with every batch: its bundle version ([`WORKER_VAR_BUNDLE`]), or
/// `source` when built from source. The receiver records it per integration once the batch's
/// signature verifies, so `integrations show` names the bytes a customer runs.
pub const HEADER_WORKER_BUNDLE: &str = "bucket-relay-worker-bundle";
/// What a worker built from source reports instead of a bundle version.
pub const BUNDLE_FROM_SOURCE: &str = "source";

/// Whether `value` can be a bundle version as the worker reports it: `source`, or
/// `<crate version>+<hex>`, at most 64 characters of `[0-9A-Za-z.+-]`. Anything else is not
/// recorded (it reaches a terminal through `integrations show`).
#[must_use]
pub fn is_bundle_version(value: &str) -> bool {
    value == BUNDLE_FROM_SOURCE
        || (value.len() <= 64
            && value.split_once('+').is_some_and(|(version, hash)| {
                !version.is_empty()
                    && version
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                    && !hash.is_empty()
                    && hash.chars().all(|c| c.is_ascii_hexdigit())
            }))
}

/// The worker's producer binding of the dead-letter queue, for rejected events.
pub const WORKER_DLQ_BINDING: &str = "DEAD_LETTER_QUEUE";

/// The worker's name in wrangler.toml: its URL is `https://<name>.<subdomain>.workers.dev`.
pub const WORKER_NAME: &str = "bucket-relay-worker";
/// The Cloudflare queue the R2 bucket notifies, which the worker consumes (wrangler.toml).
pub const WORKER_QUEUE: &str = "r2-events";
/// Its dead-letter queue: messages still failing after `max_retries`, and rejected events.
pub const WORKER_DEAD_LETTER_QUEUE: &str = "r2-events-dlq";
/// How long both queues keep a message on the Workers Paid plan: 14 days, the most Cloudflare
/// Queues allow. The default (4 days) deletes a message before the worker's retries end, and a
/// deleted message is not dead-lettered; the worker's tests hold its retry schedule under this.
pub const WORKER_QUEUE_RETENTION_SECONDS: u32 = 14 * 24 * 60 * 60;

/// Shortest retry delay, and the longest (Cloudflare Queues' limit: 12 h), which
/// `MAX_RETRY_DELAY_SECONDS` may lower (the Free plan's 24-hour retention).
pub const MIN_RETRY_SECONDS: u32 = 10;
pub const MAX_RETRY_SECONDS: u32 = 12 * 60 * 60;
/// How many times the queue retries a message before dead-lettering it: wrangler.toml's
/// `max_retries` for the worker's queue (the workerd tests hold the template to it).
pub const WORKER_MAX_RETRIES: u32 = 20;

/// The retry delay of a message that has been in the queue for `age_seconds`: equal to its age,
/// so every retry doubles it (exponential backoff without an attempt counter), from 10 s up to
/// `max_seconds` (at most Cloudflare Queues' 12 h limit).
#[must_use]
pub fn backoff_seconds(age_seconds: f64, max_seconds: u32) -> u32 {
    let age = if age_seconds.is_finite() {
        age_seconds.max(0.0)
    } else {
        0.0
    };
    let max = u64::from(max_seconds.clamp(MIN_RETRY_SECONDS, MAX_RETRY_SECONDS));
    // A finite, non-negative age: the cast saturates, and the clamp bounds it to a u32.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let delay = (age.ceil() as u64).clamp(u64::from(MIN_RETRY_SECONDS), max) as u32;
    delay
}

/// The customer's Cloudflare plan, which bounds how long a queue keeps a message: on Free a
/// queue's retention is fixed at 24 hours (`wrangler queues create --help`: "between 60 and 86400
/// if on free tier"), on Paid it can be 14 days. The worker's retries must all fall due inside it,
/// or a message still retrying is deleted instead of dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloudflarePlan {
    Free,
    Paid,
}

impl CloudflarePlan {
    pub const ALL: [CloudflarePlan; 2] = [CloudflarePlan::Free, CloudflarePlan::Paid];

    pub const fn as_str(self) -> &'static str {
        match self {
            CloudflarePlan::Free => "free",
            CloudflarePlan::Paid => "paid",
        }
    }

    /// The queues' retention the setup creates them with: the plan's longest.
    pub const fn queue_retention_seconds(self) -> u32 {
        match self {
            CloudflarePlan::Free => 24 * 60 * 60,
            CloudflarePlan::Paid => WORKER_QUEUE_RETENTION_SECONDS,
        }
    }

    /// The worker's longest wait between retries ([`WORKER_VAR_MAX_RETRY_DELAY`]): on Free one
    /// hour, so 20 retries end within about 11.5 hours; on Paid 12 hours (Cloudflare's longest
    /// delay), so they spread over about 4 days.
    pub const fn max_retry_delay_seconds(self) -> u32 {
        match self {
            CloudflarePlan::Free => 60 * 60,
            CloudflarePlan::Paid => 12 * 60 * 60,
        }
    }

    /// How long the worker goes on retrying a message the receiver keeps answering
    /// `retry_later` before the queue dead-letters it: [`WORKER_MAX_RETRIES`] waits of
    /// [`backoff_seconds`], each from the message's age then (about 11.4 hours on Free, 3.9 days
    /// on Paid; both inside the plan's retention).
    #[must_use]
    pub fn retry_span_seconds(self) -> u64 {
        (0..WORKER_MAX_RETRIES).fold(0_u64, |age, _| {
            #[allow(clippy::cast_precision_loss)] // ages of days are exact in an f64
            let wait = backoff_seconds(age as f64, self.max_retry_delay_seconds());
            age + u64::from(wait)
        })
    }
}

impl std::str::FromStr for CloudflarePlan {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "free" => Ok(CloudflarePlan::Free),
            "paid" => Ok(CloudflarePlan::Paid),
            other => Err(format!("unknown plan {other:?} (expected free or paid)")),
        }
    }
}

/// `/v1/integrations/{id}/events`
pub fn events_path(integration_id: &str) -> String {
    format!("{EVENTS_PATH_PREFIX}{integration_id}{EVENTS_PATH_SUFFIX}")
}

/// The integration id of an events path, or `None` for any other path.
pub fn parse_events_path(path: &str) -> Option<&str> {
    let id = path
        .strip_prefix(EVENTS_PATH_PREFIX)?
        .strip_suffix(EVENTS_PATH_SUFFIX)?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// The worker's request body: one entry per queue message.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerBatch<'a> {
    #[serde(borrow)]
    pub events: Vec<BatchEvent<'a>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BatchEvent<'a> {
    /// The queue message id: results are matched back to messages by it.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// The R2 notification exactly as the queue delivered it.
    #[serde(borrow)]
    pub notification: &'a RawValue,
}

/// One event's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventResult {
    pub id: String,
    pub outcome: Outcome,
    pub reason: Option<Reason>,
    pub job_id: Option<String>,
}

/// The answer to an authenticated request: one result per event, in request order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Results {
    pub results: Vec<EventResult>,
}

/// Every error answer's body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: Reason,
    pub detail: String,
}

/// The status of a request refused as a whole.
pub const fn request_error_status(reason: Reason) -> u16 {
    match reason {
        Reason::InvalidSecret => 401,
        Reason::UnknownIntegration | Reason::NotFound => 404,
        Reason::MethodNotAllowed => 405,
        Reason::RequestTimeout => 408,
        Reason::HeadersTooLarge => 431,
        Reason::PayloadTooLarge | Reason::TooManyEvents => 413,
        // Every reason to send the events again: the whole request is retried.
        retry if matches!(retry.outcome(), Some(Outcome::RetryLater)) => 503,
        _ => 400,
    }
}

/// The status of a single EventBridge event's answer: it carries the outcome, so that
/// EventBridge retries (5xx) exactly what must be sent again and dead-letters (4xx) the rest.
pub const fn single_event_status(outcome: Outcome) -> u16 {
    match outcome.disposition() {
        Disposition::Ack => 200,
        Disposition::DeadLetter => 422,
        Disposition::Retry => 503,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_retries_a_message_for_hours_on_free_and_days_on_paid_inside_the_retention() {
        let free = CloudflarePlan::Free.retry_span_seconds();
        let paid = CloudflarePlan::Paid.retry_span_seconds();
        // 10, 10, 20, … doubling to the cap, then the cap until 20 waits are spent.
        assert_eq!(free, 10 * 2_u64.pow(9) + 10 * 3600, "about 11.4 hours");
        assert_eq!(paid, 10 * 2_u64.pow(13) + 6 * 43_200, "about 3.9 days");
        for plan in CloudflarePlan::ALL {
            assert!(plan.retry_span_seconds() < u64::from(plan.queue_retention_seconds()));
        }
    }

    #[test]
    fn events_path_round_trips_and_rejects_other_paths() {
        assert_eq!(events_path("int_a1"), "/v1/integrations/int_a1/events");
        assert_eq!(
            parse_events_path("/v1/integrations/int_a1/events"),
            Some("int_a1")
        );
        assert_eq!(parse_events_path("/v1/integrations//events"), None);
        assert_eq!(parse_events_path("/v1/integrations/a/b/events"), None);
        assert_eq!(parse_events_path("/v1/integrations/a"), None);
    }

    #[test]
    fn a_bundle_version_is_source_or_a_crate_version_and_a_hash_and_nothing_else() {
        for good in ["source", "0.1.0+3f9a1c2b7d4e", "1.2.3-rc.1+ab"] {
            assert!(is_bundle_version(good), "{good}");
        }
        let long = format!("0.1.0+{}", "a".repeat(64));
        for bad in [
            "",
            "0.1.0",
            "+abc",
            "0.1.0+",
            "0.1.0+xyz",
            "0.1 0+ab",
            "0.1.0+ab\n",
            "\u{1b}[31m+ab",
            &long,
        ] {
            assert!(!is_bundle_version(bad), "{bad:?}");
        }
    }

    #[test]
    fn results_serialize_with_null_reason_and_job_id() {
        let results = Results {
            results: vec![EventResult {
                id: "m1".into(),
                outcome: Outcome::Skipped,
                reason: Some(Reason::SuffixFiltered),
                job_id: None,
            }],
        };
        assert_eq!(
            serde_json::to_string(&results).unwrap(),
            r#"{"results":[{"id":"m1","outcome":"skipped","reason":"suffix_filtered","job_id":null}]}"#
        );
    }

    #[test]
    fn batch_keeps_each_notification_byte_for_byte() {
        let body = r#"{"events":[{"id":"m\"1","notification":{"key" : "a b"}}]}"#;
        let batch: WorkerBatch = serde_json::from_str(body).unwrap();
        assert_eq!(batch.events[0].id, "m\"1");
        assert_eq!(batch.events[0].notification.get(), r#"{"key" : "a b"}"#);
    }

    #[test]
    fn statuses_follow_design_md() {
        assert_eq!(single_event_status(Outcome::Duplicate), 200);
        assert_eq!(single_event_status(Outcome::Rejected), 422);
        assert_eq!(single_event_status(Outcome::RetryLater), 503);
        assert_eq!(request_error_status(Reason::InvalidSecret), 401);
        assert_eq!(request_error_status(Reason::UnknownIntegration), 404);
        assert_eq!(request_error_status(Reason::PayloadTooLarge), 413);
        assert_eq!(request_error_status(Reason::TooManyEvents), 413);
        assert_eq!(request_error_status(Reason::RequestTimeout), 408);
        assert_eq!(request_error_status(Reason::HeadersTooLarge), 431);
        assert_eq!(request_error_status(Reason::MalformedRequest), 400);
    }
}

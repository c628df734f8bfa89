//! Outcomes and reasons: the stable snake_case words that responses, logs, metrics and docs share.
//!
//! A reason names *why* an event or a request ended the way it did. Adding a variant is a contract
//! change: the README's reason table and the Terraform alarms are tested against [`Reason::ALL`].

use serde::{Deserialize, Serialize};
use std::fmt;

/// What happened to one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new job was put on the ingest queue.
    Accepted,
    /// The same object version was already turned into a job; nothing was enqueued.
    Duplicate,
    /// Deliberately not turned into a job (filters, deletes, loop protection…).
    Skipped,
    /// The event can never become a job as sent (wrong bucket, malformed…): dead-letter it.
    Rejected,
    /// Not decided now (paused, a backend outage): send it again later.
    RetryLater,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Accepted,
        Outcome::Duplicate,
        Outcome::Skipped,
        Outcome::Rejected,
        Outcome::RetryLater,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::Skipped => "skipped",
            Outcome::Rejected => "rejected",
            Outcome::RetryLater => "retry_later",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == text)
    }

    /// What the event's sender does next: the one classification of outcomes that the worker,
    /// the EventBridge status and the replays share.
    pub const fn disposition(self) -> Disposition {
        match self {
            Outcome::Accepted | Outcome::Duplicate | Outcome::Skipped => Disposition::Ack,
            Outcome::Rejected => Disposition::DeadLetter,
            Outcome::RetryLater => Disposition::Retry,
        }
    }

    /// Whether the sender may forget the event (ack or dead-letter it) after this outcome.
    pub const fn is_final(self) -> bool {
        !matches!(self.disposition(), Disposition::Retry)
    }
}

/// What the sender of an event does after its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Done with it, harmlessly: acked (a job exists, or none is wanted).
    Ack,
    /// Send it again later: nothing was decided.
    Retry,
    /// It can never become a job as sent: keep it where a person sees it (a dead-letter queue).
    DeadLetter,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

macro_rules! reasons {
    ($( $(#[doc = $doc:literal])* $variant:ident = $text:literal, )*) => {
        /// Why a request or an event ended the way it did.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum Reason {
            $( $(#[doc = $doc])* #[serde(rename = $text)] $variant, )*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $text,)*
                }
            }

            pub fn parse(text: &str) -> Option<Reason> {
                match text {
                    $($text => Some(Reason::$variant),)*
                    _ => None,
                }
            }

            /// When the reason applies: its doc comment, the text the README's table shows.
            pub fn description(self) -> String {
                let lines: &[&str] = match self {
                    $(Reason::$variant => &[$($doc),*],)*
                };
                lines.iter().map(|line| line.trim()).collect::<Vec<_>>().join(" ")
            }
        }
    };
}

reasons! {
    // Request-level: the whole request is refused before any event is looked at.
    /// No valid signature or bearer secret, or a timestamp more than 5 minutes off.
    InvalidSecret = "invalid_secret",
    /// No integration with the id in the path.
    UnknownIntegration = "unknown_integration",
    /// The body is not a worker batch or an EventBridge event at all, or a header is malformed.
    MalformedRequest = "malformed_request",
    /// The body is over 6 MB, the function URL's limit (answered from `Content-Length` at once
    /// when it says so).
    PayloadTooLarge = "payload_too_large",
    /// A worker batch with more than 100 events (a Cloudflare queue batch holds at most 100).
    TooManyEvents = "too_many_events",
    /// `serve` only: the request head is over 64 KiB or has more than 100 fields.
    HeadersTooLarge = "headers_too_large",
    /// `serve` only: the body did not arrive within `--read-timeout` (a head that slow is cut
    /// off).
    RequestTimeout = "request_timeout",
    /// No such route.
    NotFound = "not_found",
    /// The route exists, not for this method.
    MethodNotAllowed = "method_not_allowed",
    // Per event, in the decision order of docs/contract.md.
    /// The event cannot be parsed into an object event.
    MalformedEvent = "malformed_event",
    /// An S3 event for an R2 integration, or the reverse.
    ProviderMismatch = "provider_mismatch",
    /// The event names another account (checked when the integration has one).
    AccountMismatch = "account_mismatch",
    /// The event names another bucket.
    BucketMismatch = "bucket_mismatch",
    /// The integration is in `poll` mode: events are not turned into jobs.
    ModeMismatch = "mode_mismatch",
    /// The integration is paused; once resumed, the retries are accepted (EventBridge gets 503).
    Paused = "paused",
    /// The test event `bucket-relay integrations test` sends (a key under `.bucket-relay/test/`):
    /// authenticated and checked against the integration like any event, then answered without
    /// a job.
    TestEvent = "test_event",
    /// A delete, a lifecycle expiration or another event that creates no object.
    NotObjectCreated = "not_object_created",
    /// The key is outside the integration's `--prefix`.
    PrefixFiltered = "prefix_filtered",
    /// The key's suffix is not in the integration's `--suffix` list.
    SuffixFiltered = "suffix_filtered",
    /// The object is over `--max-object-bytes` (default 200 MiB).
    TooLarge = "too_large",
    /// The key is under `--output-prefix`, where the pipeline writes its results.
    LoopProtection = "loop_protection",
    /// A zero-byte key ending in `/`: a console "folder".
    FolderMarker = "folder_marker",
    /// An S3 event naming no version of its object (a CloudTrail event in an unversioned
    /// bucket), for an object the bucket no longer has when the receiver looks it up
    /// (`HeadObject` answers 404): it was deleted, and nothing is left to ingest.
    ObjectGone = "object_gone",
    /// A listing (backfill, reconcile, a poll tick) met an object older than the integration's
    /// ledger horizon that the ledger has no job for: it may have been one, forgotten since, so
    /// it is left alone unless the run is told `--past-horizon`.
    BeyondHorizon = "beyond_horizon",
    /// This object version already became a job.
    Duplicate = "duplicate",
    /// A concurrent request is enqueueing the same object version right now.
    InFlight = "in_flight",
    /// The integration's `--max-jobs-per-minute` is used up for this minute: the event is sent
    /// again (the worker and EventBridge retry it; a listing waits for the next minute), and
    /// nothing is lost.
    RateLimited = "rate_limited",
    /// `--overwrites ignore`: another version of this key already became a job, and the
    /// integration wants only each key's first.
    OverwriteIgnored = "overwrite_ignored",
    /// The store, ledger, queue or key did not answer: the event, or the whole request (503),
    /// is to be sent again; nothing is lost.
    BackendUnavailable = "backend_unavailable",
    /// SQS refused the job as it is (`SenderFault`): sending it again cannot help, so the event
    /// is dead-lettered to be looked at.
    QueueRefused = "queue_refused",
}

impl Reason {
    /// The one outcome of an event refused for this reason; `None` for a reason that refuses a
    /// whole request. The match is exhaustive: a new reason must say which it is.
    pub const fn outcome(self) -> Option<Outcome> {
        use Reason::*;
        match self {
            MalformedEvent | ProviderMismatch | AccountMismatch | BucketMismatch | ModeMismatch
            | QueueRefused => Some(Outcome::Rejected),
            Paused | InFlight | RateLimited | BackendUnavailable => Some(Outcome::RetryLater),
            TestEvent | NotObjectCreated | PrefixFiltered | SuffixFiltered | TooLarge
            | LoopProtection | FolderMarker | ObjectGone | BeyondHorizon | OverwriteIgnored => {
                Some(Outcome::Skipped)
            }
            Duplicate => Some(Outcome::Duplicate),
            InvalidSecret | UnknownIntegration | MalformedRequest | PayloadTooLarge
            | TooManyEvents | HeadersTooLarge | RequestTimeout | NotFound | MethodNotAllowed => {
                None
            }
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_described() {
        for reason in Reason::ALL {
            let text = reason.description();
            assert!(
                text.len() > 10 && !text.contains("  "),
                "{reason}: {text:?}"
            );
        }
        assert_eq!(
            Reason::PayloadTooLarge.description(),
            "The body is over 6 MB, the function URL's limit (answered from `Content-Length` at \
             once when it says so)."
        );
    }

    #[test]
    fn serde_and_as_str_agree_for_every_reason() {
        for reason in Reason::ALL {
            let json = serde_json::to_string(reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
            assert_eq!(Reason::parse(reason.as_str()), Some(*reason));
        }
    }

    #[test]
    fn only_request_reasons_lack_an_event_outcome_and_only_they_have_an_error_status() {
        for reason in Reason::ALL {
            let status = crate::wire::request_error_status(*reason);
            match reason.outcome() {
                None => assert_ne!(status, 503, "{reason}: a request refusal, not a retry"),
                Some(_) if *reason == Reason::BackendUnavailable => assert_eq!(status, 503),
                Some(outcome) => assert!(
                    matches!(
                        outcome,
                        Outcome::Rejected | Outcome::Skipped | Outcome::Duplicate
                    ) || status == 503,
                    "{reason}"
                ),
            }
        }
    }

    #[test]
    fn serde_and_as_str_agree_for_every_outcome() {
        for outcome in Outcome::ALL {
            let json = serde_json::to_string(&outcome).unwrap();
            assert_eq!(json, format!("\"{}\"", outcome.as_str()));
        }
        assert!(!Outcome::RetryLater.is_final());
        assert!(Outcome::Rejected.is_final());
    }

    #[test]
    fn only_retry_later_is_sent_again_and_only_rejected_is_dead_lettered() {
        let of = |d| {
            Outcome::ALL
                .into_iter()
                .filter(|o| o.disposition() == d)
                .collect::<Vec<_>>()
        };
        assert_eq!(of(Disposition::Retry), [Outcome::RetryLater]);
        assert_eq!(of(Disposition::DeadLetter), [Outcome::Rejected]);
        assert_eq!(
            of(Disposition::Ack),
            [Outcome::Accepted, Outcome::Duplicate, Outcome::Skipped]
        );
    }
}

//! One event on its way through a request: parsed from the body by its sender's format, decided
//! (the pure part, in `relay-protocol`), settled by the ledger, and logged when not accepted.

use crate::answer::Refusal;
use crate::auth::Sender;
use crate::events::{
    EventAccepted, EventDuplicate, EventRejected, EventRetryLater, EventSkipped, EventUnparsed,
};
use chrono::{DateTime, Utc};
use relay_protocol::event::{eventbridge, r2, EventError, ObjectEvent};
use relay_protocol::wire::{self, WorkerBatch};
use relay_protocol::{decide, Decision, IngestJob, Integration, Outcome, Reason};

/// One event on its way through the request.
pub(crate) struct Item {
    pub id: String,
    pub outcome: Outcome,
    pub reason: Option<Reason>,
    pub job: Option<Box<IngestJob>>,
    /// Bucket and key for the log of a refused event, when it could be parsed (an event with a
    /// job logs the job's).
    object: Option<(String, String)>,
}

impl Item {
    fn refused(id: String, outcome: Outcome, reason: Reason, event: Option<&ObjectEvent>) -> Self {
        Item {
            id,
            outcome,
            reason: Some(reason),
            job: None,
            object: event.map(|e| (e.bucket.clone(), e.key.clone())),
        }
    }

    /// An event as the decision left it: with its job, or refused with its reason.
    pub(crate) fn from_decision(id: String, decision: Decision) -> Self {
        let outcome = decision.outcome();
        match decision {
            Decision::Enqueue(job) => Item {
                id,
                outcome,
                reason: None,
                object: None,
                job: Some(job),
            },
            Decision::Refuse { reason, event } => {
                Item::refused(id, outcome, reason, event.as_deref())
            }
        }
    }

    /// An event whose object the bucket no longer has: nothing is left to make a job of.
    pub(crate) fn gone(id: String, event: &ObjectEvent) -> Self {
        Item::refused(id, Outcome::Skipped, Reason::ObjectGone, Some(event))
    }

    /// The object's key, when the event could be parsed.
    pub(crate) fn key(&self) -> Option<&str> {
        match (&self.job, &self.object) {
            (Some(job), _) => Some(&job.key),
            (None, Some((_, key))) => Some(key),
            (None, None) => None,
        }
    }

    /// Refuses an event the decision gave a job (a listing leaving an object past the horizon
    /// alone): the job is dropped, its bucket and key kept for the log.
    pub(crate) fn refuse(&mut self, reason: Reason) {
        if let Some(job) = self.job.take() {
            self.object = Some((job.bucket, job.key));
        }
        self.outcome = reason.outcome().unwrap_or(Outcome::Skipped);
        self.reason = Some(reason);
    }

    pub(crate) fn settle(&mut self, outcome: Outcome, reason: Option<Reason>) {
        self.outcome = outcome;
        self.reason = reason;
    }
}

/// The events of a request, each with the id its sender knows it by.
pub(crate) type ParsedEvents = Vec<(String, Result<ObjectEvent, EventError>)>;

pub(crate) fn parse_events(sender: Sender, body: &[u8]) -> Result<ParsedEvents, Refusal> {
    match sender {
        Sender::Worker => {
            let batch: WorkerBatch = serde_json::from_slice(body).map_err(|e| {
                Refusal::new(Reason::MalformedRequest, format!("not a worker batch: {e}"))
            })?;
            if batch.events.len() > wire::MAX_EVENTS_PER_REQUEST {
                return Err(Refusal::new(
                    Reason::TooManyEvents,
                    format!(
                        "the batch has {} events; a request may carry at most {}",
                        batch.events.len(),
                        wire::MAX_EVENTS_PER_REQUEST
                    ),
                ));
            }
            Ok(batch
                .events
                .into_iter()
                .map(|event| {
                    let parsed = r2::parse(event.notification.get(), &event.id);
                    (event.id.into_owned(), parsed)
                })
                .collect())
        }
        Sender::EventBridge => {
            let text = std::str::from_utf8(body).map_err(|_| {
                Refusal::new(Reason::MalformedRequest, "the body is not UTF-8 JSON")
            })?;
            let id = eventbridge::event_id(text).ok_or_else(|| {
                Refusal::new(
                    Reason::MalformedRequest,
                    "not an EventBridge event: expected a JSON object with an \"id\"",
                )
            })?;
            Ok(vec![(id, eventbridge::parse(text))])
        }
    }
}

pub(crate) fn decide_one(
    integration: &Integration,
    id: String,
    event: Result<ObjectEvent, EventError>,
    now: DateTime<Utc>,
) -> Item {
    if let Err(err) = &event {
        EventUnparsed {
            integration_id: &integration.id,
            id: &id,
            error: err.to_string(),
        }
        .emit();
    }
    Item::from_decision(id, decide(integration, event, now))
}

/// The operator event of one settled event: a log line when it was not accepted (an accepted
/// one's is at debug), and its count by outcome and reason.
pub(crate) fn report_event(integration_id: &str, item: &Item) {
    let (bucket, key) = match (&item.job, &item.object) {
        (Some(job), _) => (job.bucket.as_str(), job.key.as_str()),
        (None, Some((bucket, key))) => (bucket.as_str(), key.as_str()),
        (None, None) => ("", ""),
    };
    let reason = item.reason.map_or("", Reason::as_str);
    let job_id = item.job.as_ref().map_or("", |job| job.job_id.as_str());
    let id = item.id.as_str();
    match item.outcome {
        Outcome::Accepted => EventAccepted {
            integration_id,
            id,
            bucket,
            key,
            job_id,
        }
        .emit(),
        Outcome::Duplicate => EventDuplicate {
            integration_id,
            id,
            reason,
            bucket,
            key,
            job_id,
        }
        .emit(),
        Outcome::Skipped => EventSkipped {
            integration_id,
            id,
            reason,
            bucket,
            key,
        }
        .emit(),
        Outcome::Rejected => EventRejected {
            integration_id,
            id,
            reason,
            bucket,
            key,
        }
        .emit(),
        Outcome::RetryLater => EventRetryLater {
            integration_id,
            id,
            reason,
            bucket,
            key,
        }
        .emit(),
    }
}

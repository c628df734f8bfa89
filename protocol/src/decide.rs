//! The decision "what happens to this event": a pure function of (integration, event, now).
//!
//! Steps 2–5 of the contract's decision order (docs/contract.md) live here (step 3 also refuses an event from another kind of
//! storage than the integration's: `provider_mismatch`); authentication (1) is the request's, and dedupe (6)
//! and enqueue (7) need the ledger and the queue, so the receiver does them with the job this
//! returns.

use crate::event::{EventError, ObjectEvent};
use crate::integration::{Integration, Mode, Status};
use crate::job::IngestJob;
use crate::reason::{Outcome, Reason};
use chrono::{DateTime, SecondsFormat, Utc};

/// Either a job to dedupe and enqueue, or a final word on the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Enqueue(Box<IngestJob>),
    Refuse {
        /// Always an event reason: its [`Reason::outcome`] is the event's outcome.
        reason: Reason,
        /// The event, when it could be parsed: logs name its bucket and key.
        event: Option<Box<ObjectEvent>>,
    },
}

impl Decision {
    /// The event's outcome: accepted for a job (until the ledger says otherwise), else the
    /// reason's own.
    pub fn outcome(&self) -> Outcome {
        match self {
            Decision::Enqueue(_) => Outcome::Accepted,
            // Every reason `decide` refuses with is an event reason (tested below).
            Decision::Refuse { reason, .. } => reason.outcome().unwrap_or(Outcome::Rejected),
        }
    }
}

fn refuse(reason: Reason, event: ObjectEvent) -> Decision {
    Decision::Refuse {
        reason,
        event: Some(Box::new(event)),
    }
}

/// How an event reached the receiver: pushed by the bucket's event source, or found by listing
/// the bucket (a poll tick or a backfill).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Event,
    Listing,
}

/// The decision for a pushed event: refused with `mode_mismatch` in poll mode.
pub fn decide(
    integration: &Integration,
    event: Result<ObjectEvent, EventError>,
    now: DateTime<Utc>,
) -> Decision {
    decide_via(Via::Event, integration, event, now)
}

/// The decision for an event of either kind. A listed object passes the mode check (the
/// poller lists poll-mode integrations, and a backfill runs in either mode); every other step
/// is the same, so a listed object and its event meet the same filters and get the same job id.
pub fn decide_via(
    via: Via,
    integration: &Integration,
    event: Result<ObjectEvent, EventError>,
    now: DateTime<Utc>,
) -> Decision {
    // 2. parse and normalise
    let event = match event {
        Ok(event) => event,
        Err(_) => {
            return Decision::Refuse {
                reason: Reason::MalformedEvent,
                event: None,
            }
        }
    };
    // 3. the event must be about this integration's storage, account and bucket
    if event.provider != integration.provider {
        return refuse(Reason::ProviderMismatch, event);
    }
    match &integration.scope {
        None => {
            if let (Some(expected), Some(actual)) = (&integration.account, &event.account) {
                if expected != actual {
                    return refuse(Reason::AccountMismatch, event);
                }
            }
            if event.bucket != integration.bucket {
                return refuse(Reason::BucketMismatch, event);
            }
        }
        Some(scope) => {
            if !scope.admits_account(event.account.as_deref()) {
                return refuse(Reason::AccountMismatch, event);
            }
            if !scope.admits_bucket(&event.bucket) {
                return refuse(Reason::BucketMismatch, event);
            }
        }
    }
    // 4. mode and status
    if via == Via::Event && integration.mode == Mode::Poll {
        return refuse(Reason::ModeMismatch, event);
    }
    if integration.status == Status::Paused {
        return refuse(Reason::Paused, event);
    }
    // 4b. the test event: it got this far, which is all it is for
    if is_test_key(&event.key) {
        return refuse(Reason::TestEvent, event);
    }
    // 5. skips
    if let Some(reason) = skip_reason(integration, &event) {
        return refuse(reason, event);
    }
    let received_at = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    let matched = integration.route_for(&event.key);
    Decision::Enqueue(Box::new(
        IngestJob::from_event(&integration.id, event, received_at).routed(&matched),
    ))
}

/// Whether `key` is a test event's: under [`TEST_KEY_PREFIX`], which no job is ever made for.
pub fn is_test_key(key: &str) -> bool {
    key.starts_with(TEST_KEY_PREFIX)
}

/// The keys `bucket-relay integrations test` sends its test events for. Checked after the
/// integration's own checks (so a test shows a wrong bucket, poll mode or a pause) and before
/// the skips, the ledger and the queue.
pub const TEST_KEY_PREFIX: &str = ".bucket-relay/test/";

/// The key filters, as the receiver applies an integration's and the worker its copy of them:
/// `None` when `key` is under `prefix` (if any) and ends with one of `suffixes` (if any).
pub fn key_filter(prefix: Option<&str>, suffixes: &[String], key: &str) -> Option<Reason> {
    if prefix.is_some_and(|prefix| !key.starts_with(prefix)) {
        return Some(Reason::PrefixFiltered);
    }
    if !suffixes.is_empty() && !suffixes.iter().any(|suffix| key.ends_with(suffix.as_str())) {
        return Some(Reason::SuffixFiltered);
    }
    None
}

fn skip_reason(integration: &Integration, event: &ObjectEvent) -> Option<Reason> {
    let key = event.key.as_str();
    if !event.created {
        return Some(Reason::NotObjectCreated);
    }
    if let Some(reason) = key_filter(integration.prefix.as_deref(), &integration.suffixes, key) {
        return Some(reason);
    }
    if event
        .size
        .is_some_and(|size| size > integration.max_object_bytes)
    {
        return Some(Reason::TooLarge);
    }
    if let Some(output) = integration.output_prefix.as_deref() {
        if !output.is_empty() && key.starts_with(output) {
            return Some(Reason::LoopProtection);
        }
    }
    if integration.under_a_route_output(key) {
        return Some(Reason::LoopProtection);
    }
    if key.ends_with('/') && event.size == Some(0) {
        return Some(Reason::FolderMarker);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integration::tests::sample;
    use crate::integration::Provider;

    fn event(key: &str, size: u64) -> ObjectEvent {
        ObjectEvent {
            provider: Provider::R2,
            account: Some("acc".into()),
            region: None,
            bucket: "uploads".into(),
            key: key.into(),
            key_encoding: crate::event::KeyEncoding::Exact,
            size: Some(size),
            etag: Some("e".into()),
            version_id: None,
            sequencer: None,
            action: "PutObject".into(),
            created: true,
            event_time: "2024-01-01T00:00:00Z".into(),
            source_event_id: "m1".into(),
        }
    }

    fn reason_of(decision: Decision) -> Option<(Outcome, Reason)> {
        let outcome = decision.outcome();
        match decision {
            Decision::Enqueue(_) => None,
            Decision::Refuse { reason, .. } => {
                assert!(reason.outcome().is_some(), "{reason} is an event reason");
                Some((outcome, reason))
            }
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn a_job_carries_its_route_and_a_route_s_output_is_never_a_job() {
        let mut integration = sample(Provider::R2);
        let route = crate::route::Route {
            prefix: "invoices/".into(),
            params: [("tier".to_owned(), "premium".to_owned())].into(),
            output_prefix: Some("out/invoices/".into()),
            ..crate::route::Route::default()
        };
        integration.put_route(route).unwrap();
        let Decision::Enqueue(job) = decide(&integration, Ok(event("invoices/a.pdf", 10)), now())
        else {
            panic!("expected a job");
        };
        let routing = job.routing.unwrap();
        assert_eq!(routing.route.as_deref(), Some("invoices/"));
        assert_eq!(routing.params["tier"], "premium");
        assert_eq!(routing.output_prefix.as_deref(), Some("out/invoices/"));
        let result = decide(&integration, Ok(event("out/invoices/a.json", 10)), now());
        assert_eq!(
            reason_of(result),
            Some((Outcome::Skipped, Reason::LoopProtection))
        );
    }

    #[test]
    fn a_matching_created_event_becomes_a_job() {
        let integration = sample(Provider::R2);
        let Decision::Enqueue(job) = decide(&integration, Ok(event("a.pdf", 10)), now()) else {
            panic!("expected a job");
        };
        assert_eq!(job.schema, "ingest-job/v2");
        let routing = job.routing.as_ref().unwrap();
        assert_eq!(routing.route, None, "no route: the default");
        assert_eq!(job.key, "a.pdf");
        assert_eq!(job.received_at, "2023-11-14T22:13:20.000Z");
        assert_eq!(
            job.job_id,
            crate::job::job_id("int_test", "uploads", "a.pdf", "e")
        );
    }

    #[test]
    fn a_listed_object_passes_the_mode_check_and_meets_every_other_step() {
        let mut integration = sample(Provider::R2);
        integration.mode = Mode::Poll;
        let listed = |key: &str| decide_via(Via::Listing, &integration, Ok(event(key, 10)), now());
        assert!(matches!(listed("a.pdf"), Decision::Enqueue(_)));
        assert!(
            reason_of(decide(&integration, Ok(event("a.pdf", 10)), now()))
                .is_some_and(|(_, reason)| reason == Reason::ModeMismatch)
        );
        integration.suffixes = vec![".pdf".into()];
        let listed = |key: &str| decide_via(Via::Listing, &integration, Ok(event(key, 10)), now());
        assert_eq!(
            reason_of(listed("a.txt")),
            Some((Outcome::Skipped, Reason::SuffixFiltered))
        );
        integration.status = Status::Paused;
        let listed = |key: &str| decide_via(Via::Listing, &integration, Ok(event(key, 10)), now());
        assert_eq!(
            reason_of(listed("a.pdf")),
            Some((Outcome::RetryLater, Reason::Paused))
        );
    }

    #[test]
    fn every_reason_in_its_place() {
        use Outcome::*;
        use Reason::*;
        let base = sample(Provider::R2);
        let with = |edit: &dyn Fn(&mut Integration)| {
            let mut integration = base.clone();
            edit(&mut integration);
            integration
        };
        type Case = (
            Integration,
            Result<ObjectEvent, EventError>,
            (Outcome, Reason),
        );
        let cases: Vec<Case> = vec![
            (
                base.clone(),
                Err(EventError::EmptyKey),
                (Rejected, MalformedEvent),
            ),
            (
                with(&|i| i.account = Some("other".into())),
                Ok(event("a", 1)),
                (Rejected, AccountMismatch),
            ),
            (
                with(&|i| i.bucket = "other".into()),
                Ok(event("a", 1)),
                (Rejected, BucketMismatch),
            ),
            (
                with(&|i| i.mode = Mode::Poll),
                Ok(event("a", 1)),
                (Rejected, ModeMismatch),
            ),
            (
                with(&|i| i.status = Status::Paused),
                Ok(event("a", 1)),
                (RetryLater, Paused),
            ),
            (
                base.clone(),
                Ok(ObjectEvent {
                    created: false,
                    ..event("a", 1)
                }),
                (Skipped, NotObjectCreated),
            ),
            (
                with(&|i| i.prefix = Some("in/".into())),
                Ok(event("out/a", 1)),
                (Skipped, PrefixFiltered),
            ),
            (
                with(&|i| i.suffixes = vec![".pdf".into()]),
                Ok(event("a.txt", 1)),
                (Skipped, SuffixFiltered),
            ),
            (
                with(&|i| i.max_object_bytes = 10),
                Ok(event("a", 11)),
                (Skipped, TooLarge),
            ),
            (
                with(&|i| i.output_prefix = Some("results/".into())),
                Ok(event("results/a", 1)),
                (Skipped, LoopProtection),
            ),
            (
                base.clone(),
                Ok(event("folder/", 0)),
                (Skipped, FolderMarker),
            ),
        ];
        for (integration, event, expected) in cases {
            assert_eq!(
                reason_of(decide(&integration, event.clone(), now())),
                Some(expected),
                "{event:?}"
            );
        }
    }

    #[test]
    fn earlier_checks_win_over_later_ones() {
        // Wrong bucket and paused: the mismatch is permanent, so it is named first.
        let mut integration = sample(Provider::R2);
        integration.bucket = "other".into();
        integration.status = Status::Paused;
        let deleted = ObjectEvent {
            created: false,
            ..event("a", 1)
        };
        assert_eq!(
            reason_of(decide(&integration, Ok(deleted.clone()), now())),
            Some((Outcome::Rejected, Reason::BucketMismatch))
        );
        // Paused before skips: a paused integration decides nothing yet.
        integration.bucket = "uploads".into();
        assert_eq!(
            reason_of(decide(&integration, Ok(deleted), now())),
            Some((Outcome::RetryLater, Reason::Paused))
        );
    }

    #[test]
    fn an_event_without_account_passes_the_account_check_and_sizes_at_the_limit_pass() {
        let mut integration = sample(Provider::R2);
        integration.account = Some("123".into());
        integration.max_object_bytes = 10;
        let e = ObjectEvent {
            account: None,
            ..event("k", 10)
        };
        assert!(matches!(
            decide(&integration, Ok(e), now()),
            Decision::Enqueue(_)
        ));
        // Unknown size (a CloudTrail copy) cannot be judged too large here.
        let unknown = ObjectEvent {
            size: None,
            account: None,
            ..event("k", 0)
        };
        assert!(matches!(
            decide(&integration, Ok(unknown), now()),
            Decision::Enqueue(_)
        ));
    }

    #[test]
    fn a_scoped_integration_takes_each_matching_bucket_as_its_own_job() {
        use crate::integration::Scope;
        let mut integration = sample(Provider::S3);
        integration.scope = Some(Scope {
            buckets: vec!["logs-*".into()],
            accounts: vec!["111122223333".into(), "444455556666".into()],
            ..Scope::default()
        });
        let from = |account: &str, bucket: &str| ObjectEvent {
            provider: Provider::S3,
            account: Some(account.into()),
            bucket: bucket.into(),
            ..event("a.pdf", 1)
        };
        let mut ids = std::collections::HashSet::new();
        for (account, bucket) in [
            ("111122223333", "logs-eu"),
            ("111122223333", "logs-us"),
            ("444455556666", "logs-eu"),
        ] {
            let Decision::Enqueue(job) = decide(&integration, Ok(from(account, bucket)), now())
            else {
                panic!("{account} {bucket} is in scope")
            };
            assert_eq!(
                (job.account.as_deref(), job.bucket.as_str()),
                (Some(account), bucket)
            );
            ids.insert(job.job_id);
        }
        assert_eq!(
            ids.len(),
            2,
            "one job per bucket and key, whichever account sends it"
        );
        assert_eq!(
            reason_of(decide(
                &integration,
                Ok(from("111122223333", "invoices")),
                now()
            )),
            Some((Outcome::Rejected, Reason::BucketMismatch))
        );
        assert_eq!(
            reason_of(decide(
                &integration,
                Ok(from("777788889999", "logs-eu")),
                now()
            )),
            Some((Outcome::Rejected, Reason::AccountMismatch))
        );
    }

    #[test]
    fn a_test_event_passes_the_integration_checks_and_never_becomes_a_job() {
        let mut integration = sample(Provider::R2);
        integration.suffixes = vec![".pdf".into()];
        let test = || Ok(event(&format!("{TEST_KEY_PREFIX}1"), 1));
        assert_eq!(
            reason_of(decide(&integration, test(), now())),
            Some((Outcome::Skipped, Reason::TestEvent)),
            "before the filters that would skip it"
        );
        integration.status = Status::Paused;
        assert_eq!(
            reason_of(decide(&integration, test(), now())),
            Some((Outcome::RetryLater, Reason::Paused))
        );
        integration.bucket = "other".into();
        assert_eq!(
            reason_of(decide(&integration, test(), now())),
            Some((Outcome::Rejected, Reason::BucketMismatch))
        );
    }

    #[test]
    fn a_non_empty_folder_like_key_is_not_a_folder_marker() {
        let integration = sample(Provider::R2);
        assert!(matches!(
            decide(&integration, Ok(event("odd/", 5)), now()),
            Decision::Enqueue(_)
        ));
    }
}

//! Settling decided events: the one path from "these events were decided" to "each has its final
//! outcome", shared by the HTTP handler (a request's events) and the listings (a page's
//! objects), so an object seen both ways is settled the same way.
//!
//! An event the decision refused is settled already; an event with a job goes through the
//! [`Intake`] (dedupe and enqueue, exactly once), and the intake's answer becomes its outcome
//! ([`Committed::outcome`]). Two events of one call naming the same job are one job: the later
//! copies are duplicates. Jobs are committed [`MAX_JOBS_PER_COMMIT`] at a time (a listing's
//! several at once, as many as its caller asks and [`Intake::commits_at_once`] allows), and the
//! events settled before the ledger are recorded with the first commit, so their usage counts and
//! history are written once.

use crate::backend::{
    BackendError, Commit, Committed, Intake, JobRecords, LedgerTime, RateLimit, Recorded, Settled,
};
use crate::events::RateLimitWait;
use crate::item::Item;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use relay_protocol::admission::{Overwrites, Window};
use relay_protocol::wire::MAX_EVENTS_PER_REQUEST;
use relay_protocol::{IngestJob, Integration, Outcome, Reason};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

/// The most jobs one commit carries: a request's most events, so one request is one commit.
pub(crate) const MAX_JOBS_PER_COMMIT: usize = MAX_EVENTS_PER_REQUEST;

/// Settles every item: those with a job through `intake` (remembered for the integration's
/// horizon), the others as decided, one commit at a time. On `Err` the items whose commit failed
/// (and those of the commits not begun after it) are settled `retry_later` /
/// `backend_unavailable`, so nothing is acked without a word on it; the caller logs or stops.
pub(crate) async fn settle(
    intake: &dyn Intake,
    integration: &Integration,
    items: &mut [Item],
    now: DateTime<Utc>,
) -> Result<(), BackendError> {
    settle_where(intake, integration, items, now, 1, |_| true).await
}

/// Settles like [`settle`] with up to `at_once` commits in flight (a listing's page is several:
/// a paced backfill's [`crate::pace::Pace::commits_at_once`]), then waits out the
/// integration's rate: what a listing's window had no room for is settled again as each next
/// window opens, until nothing is left `rate_limited`. So a listing slows to the limit instead
/// of failing or skipping objects.
pub(crate) async fn settle_within_rate(
    intake: &dyn Intake,
    integration: &Integration,
    items: &mut [Item],
    now: DateTime<Utc>,
    at_once: usize,
) -> Result<(), BackendError> {
    settle_where(intake, integration, items, now, at_once, |_| true).await?;
    let limited = |item: &Item| item.reason == Some(Reason::RateLimited);
    loop {
        let waiting = items.iter().filter(|item| limited(item)).count();
        if waiting == 0 {
            return Ok(());
        }
        let now = Utc::now();
        let window = Window::containing(now, intake.rate_window());
        let wait = (window.end - now).to_std().unwrap_or_default();
        RateLimitWait {
            integration_id: &integration.id,
            jobs_waiting: waiting as u64,
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        }
        .emit();
        tokio::time::sleep(wait).await;
        settle_where(intake, integration, items, Utc::now(), at_once, limited).await?;
    }
}

/// [`settle`] for the items `wanted` picks, `at_once` commits in flight (as many as the intake
/// takes); the others are left as they are.
async fn settle_where(
    intake: &dyn Intake,
    integration: &Integration,
    items: &mut [Item],
    now: DateTime<Utc>,
    at_once: usize,
    wanted: impl Fn(&Item) -> bool,
) -> Result<(), BackendError> {
    let mut seen = HashSet::new();
    let mut pending = Vec::new();
    let mut settled = Vec::new();
    let window = Window::containing(now, intake.rate_window());
    let limit = integration
        .max_jobs_per_minute
        .map(|per_window| RateLimit { window, per_window });
    for (index, item) in items.iter_mut().enumerate() {
        if !wanted(item) {
            continue;
        }
        if let Some(job) = &item.job {
            if seen.insert(job.job_id.clone()) {
                pending.push(index);
                continue;
            }
            item.settle(Outcome::Duplicate, Some(Reason::Duplicate));
        }
        settled.push(Settled {
            key: item.key().map(str::to_owned),
            outcome: item.outcome,
            reason: item.reason,
            job_id: item.job.as_ref().map(|job| job.job_id.clone()),
        });
    }
    let mut groups: Vec<&[usize]> = pending.chunks(MAX_JOBS_PER_COMMIT).collect();
    if groups.is_empty() && !settled.is_empty() {
        // Nothing to enqueue, but the settled events still count.
        groups.push(&[]);
    }
    // Once a commit fails, the commits not yet begun are not begun: their events are retried.
    let failed = AtomicBool::new(false);
    let commits: Vec<_> = groups
        .iter()
        .map(|group| {
            let commit = Commit {
                integration_id: &integration.id,
                jobs: group
                    .iter()
                    .filter_map(|&index| items[index].job.as_deref())
                    .collect(),
                settled: std::mem::take(&mut settled),
                now,
                horizon: integration.horizon(),
                limit,
                first_versions_only: integration.overwrites == Overwrites::Ignore,
            };
            let failed = &failed;
            async move {
                if failed.load(Ordering::Relaxed) {
                    return Ok(Vec::new());
                }
                let committed = intake.commit(&commit).await;
                failed.fetch_or(committed.is_err(), Ordering::Relaxed);
                committed
            }
        })
        .collect();
    let answers: Vec<Result<Vec<Committed>, BackendError>> = stream::iter(commits)
        .buffered(at_once.min(intake.commits_at_once()).max(1))
        .collect()
        .await;
    let mut failure = None;
    for (group, answer) in groups.iter().zip(answers) {
        let committed = answer.unwrap_or_else(|err| {
            failure.get_or_insert(err);
            Vec::new()
        });
        // An answer missing for a job (an outage, a commit not begun after one failed, or a
        // backend answering short) is a failure: the event is retried rather than acked without
        // a word on it.
        for (position, &index) in group.iter().enumerate() {
            let result = committed
                .get(position)
                .copied()
                .unwrap_or(Committed::Failed);
            let (outcome, reason) = result.outcome();
            items[index].settle(outcome, reason);
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Leaves alone the listed objects older than the integration's horizon whose job the ledger
/// does not remember (`beyond_horizon`): each may have been a job once, forgotten since, so
/// only a run told `--past-horizon` makes them jobs. `modified` is each item's `LastModified`.
/// Answers how many were left alone; only the old objects cost a ledger read.
pub(crate) async fn hold_past_horizon(
    records: &dyn JobRecords,
    items: &mut [Item],
    modified: &[Option<DateTime<Utc>>],
    at: LedgerTime,
) -> Result<u64, BackendError> {
    let horizon_start = at.forgotten_before();
    let old: Vec<usize> = items
        .iter()
        .zip(modified)
        .enumerate()
        .filter(|(_, (item, modified))| {
            item.job.is_some() && modified.is_some_and(|modified| modified <= horizon_start)
        })
        .map(|(index, _)| index)
        .collect();
    if old.is_empty() {
        return Ok(0);
    }
    let jobs: Vec<&IngestJob> = old
        .iter()
        .filter_map(|&index| items[index].job.as_deref())
        .collect();
    let recorded = records.recorded(&jobs, at).await?;
    let mut held = 0;
    for (&index, recorded) in old.iter().zip(recorded) {
        if recorded == Recorded::Unknown {
            items[index].refuse(Reason::BeyondHorizon);
            held += 1;
        }
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::claiming::Claiming;
    use crate::backend::memory::{
        sample_job, MemoryHistory, MemoryLedger, MemoryQueue, MemoryUsage,
    };
    use crate::backend::UsageLog;
    use std::sync::Arc;

    fn intake() -> (Claiming, Arc<MemoryQueue>, Arc<MemoryUsage>) {
        let queue = Arc::new(MemoryQueue::default());
        let usage = Arc::new(MemoryUsage::default());
        let claiming = Claiming::new(
            Arc::new(MemoryLedger::default()),
            queue.clone(),
            usage.clone(),
            Arc::new(MemoryHistory::default()),
        );
        (claiming, queue, usage)
    }

    fn integration() -> Integration {
        let fields = relay_protocol::integration::NewIntegration::new(
            relay_protocol::Provider::R2,
            "uploads",
        );
        fields.build("settle", Utc::now()).unwrap()
    }

    fn item(id: &str, key: &str) -> Item {
        let job = Box::new(sample_job(&format!("j_{key}"), key));
        Item::from_decision(id.to_owned(), relay_protocol::Decision::Enqueue(job))
    }

    #[tokio::test]
    async fn every_job_is_enqueued_once_and_a_copy_in_the_same_call_is_a_duplicate() {
        let (intake, queue, _) = intake();
        let mut items: Vec<Item> = (0..250)
            .map(|i| item(&i.to_string(), &format!("k{i}")))
            .collect();
        items.push(item("copy", "k7"));
        settle(&intake, &integration(), &mut items, Utc::now())
            .await
            .unwrap();
        assert_eq!(queue.jobs().len(), 250);
        let outcomes: HashSet<Outcome> = items[..250].iter().map(|i| i.outcome).collect();
        assert_eq!(outcomes, HashSet::from([Outcome::Accepted]));
        assert_eq!(
            (items[250].outcome, items[250].reason),
            (Outcome::Duplicate, Some(Reason::Duplicate))
        );
        let mut again: Vec<Item> = vec![item("again", "k3")];
        settle(&intake, &integration(), &mut again, Utc::now())
            .await
            .unwrap();
        assert_eq!(again[0].outcome, Outcome::Duplicate);
    }

    /// An intake that takes two commits at once (asked for three), answers each after a moment,
    /// and fails at once the commit whose first job is `k200`: how many were in flight at most,
    /// and begun.
    #[derive(Default)]
    struct TwoAtOnce {
        in_flight: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
        begun: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Intake for TwoAtOnce {
        async fn commit(&self, commit: &Commit<'_>) -> Result<Vec<Committed>, BackendError> {
            self.begun.fetch_add(1, Ordering::SeqCst);
            if commit.jobs.first().is_some_and(|job| job.key == "k200") {
                return Err(BackendError::new("test", "the ledger is unavailable"));
            }
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(vec![Committed::Enqueued; commit.jobs.len()])
        }

        fn rate_window(&self) -> chrono::Duration {
            crate::backend::DEFAULT_RATE_WINDOW
        }

        fn commits_at_once(&self) -> usize {
            2
        }

        async fn probe(&self) -> Result<(), BackendError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_page_s_commits_go_at_once_and_none_begins_after_one_failed() {
        let intake = TwoAtOnce::default();
        // Five commits of 100: the first two at once, the third fails, the last two never begin.
        let mut items: Vec<Item> = (0..500)
            .map(|i| item(&i.to_string(), &format!("k{i}")))
            .collect();
        let result = settle_within_rate(&intake, &integration(), &mut items, Utc::now(), 3).await;
        assert!(result.is_err());
        assert_eq!(intake.most.load(Ordering::SeqCst), 2);
        assert_eq!(intake.begun.load(Ordering::SeqCst), 3);
        let outcomes = |range: std::ops::Range<usize>| -> HashSet<(Outcome, Option<Reason>)> {
            items[range].iter().map(|i| (i.outcome, i.reason)).collect()
        };
        assert_eq!(outcomes(0..200), HashSet::from([(Outcome::Accepted, None)]));
        assert_eq!(
            outcomes(200..500),
            HashSet::from([(Outcome::RetryLater, Some(Reason::BackendUnavailable))])
        );
    }

    #[tokio::test]
    async fn events_settled_before_the_ledger_are_counted_once() {
        let (intake, _, usage) = intake();
        let skipped = Item::from_decision(
            "s".to_owned(),
            relay_protocol::Decision::Refuse {
                reason: Reason::SuffixFiltered,
                event: None,
            },
        );
        let mut items = vec![skipped, item("1", "a.pdf")];
        let now = Utc::now();
        settle(&intake, &integration(), &mut items, now)
            .await
            .unwrap();
        let day = now.date_naive();
        let counts = usage.usage(&integration().id, day, day).await.unwrap();
        let total: u64 = counts.values().flat_map(|c| c.values()).sum();
        assert_eq!(total, 2);
    }

    /// Two intakes over one store, as two receivers are: claiming over one in-memory ledger,
    /// and two handles on one SQLite file (in `dir`, which the caller keeps for the test).
    fn receivers(
        window: chrono::Duration,
        dir: &std::path::Path,
    ) -> Vec<(&'static str, [Arc<dyn Intake>; 2])> {
        let ledger = Arc::new(MemoryLedger::default());
        let claiming = || -> Arc<dyn Intake> {
            Arc::new(
                Claiming::new(
                    ledger.clone(),
                    Arc::new(MemoryQueue::default()),
                    Arc::new(MemoryUsage::default()),
                    Arc::new(MemoryHistory::default()),
                )
                .with_rate_window(window),
            )
        };
        let mut all = vec![("claiming", [claiming(), claiming()])];
        #[cfg(feature = "embedded")]
        {
            let path = dir.join("relay.db");
            let sqlite = || -> Arc<dyn Intake> {
                Arc::new(
                    crate::backend::sqlite::Sqlite::open(&path)
                        .unwrap()
                        .with_rate_window(window),
                )
            };
            all.push(("sqlite", [sqlite(), sqlite()]));
        }
        all
    }

    fn reasons(items: &[Item]) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for item in items {
            let word = item.reason.map_or(item.outcome.as_str(), Reason::as_str);
            *counts.entry(word.to_owned()).or_default() += 1;
        }
        counts
    }

    fn limited(per_minute: u32) -> Integration {
        let mut integration = integration();
        integration
            .set_limits(Some(Some(per_minute)), None)
            .unwrap();
        integration
    }

    #[tokio::test]
    async fn a_window_admits_its_limit_across_receivers_and_the_rest_are_rate_limited() {
        let integration = limited(60);
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (backend, [first, second]) in receivers(chrono::Duration::minutes(1), dir.path()) {
            let batch = |from: usize, count: usize| -> Vec<Item> {
                (from..from + count)
                    .map(|i| item(&i.to_string(), &format!("k{i}")))
                    .collect()
            };
            let mut a = batch(0, 100);
            settle(first.as_ref(), &integration, &mut a, now)
                .await
                .unwrap();
            let expected = [("accepted".to_owned(), 60), ("rate_limited".to_owned(), 40)];
            assert_eq!(reasons(&a), expected.into(), "{backend}");
            let mut b = batch(100, 10);
            settle(second.as_ref(), &integration, &mut b, now)
                .await
                .unwrap();
            assert_eq!(
                reasons(&b),
                [("rate_limited".to_owned(), 10)].into(),
                "{backend}"
            );
            // The next window admits what was sent again, and nothing twice.
            let next = now + chrono::Duration::minutes(1);
            let mut again: Vec<Item> = batch(60, 50);
            settle(second.as_ref(), &integration, &mut again, next)
                .await
                .unwrap();
            assert_eq!(
                reasons(&again),
                [("accepted".to_owned(), 50)].into(),
                "{backend}"
            );
            let mut old = batch(0, 10);
            settle(first.as_ref(), &integration, &mut old, next)
                .await
                .unwrap();
            assert_eq!(
                reasons(&old),
                [("duplicate".to_owned(), 10)].into(),
                "{backend}"
            );
        }
    }

    #[tokio::test]
    async fn a_listing_waits_for_the_next_window_and_makes_every_job() {
        let integration = limited(20);
        let window = chrono::Duration::milliseconds(150);
        let dir = tempfile::tempdir().unwrap();
        for (backend, [intake, _]) in receivers(window, dir.path()) {
            let mut items: Vec<Item> = (0..50)
                .map(|i| item(&i.to_string(), &format!("listed/{i}")))
                .collect();
            let started = std::time::Instant::now();
            settle_within_rate(intake.as_ref(), &integration, &mut items, Utc::now(), 1)
                .await
                .unwrap();
            assert_eq!(
                reasons(&items),
                [("accepted".to_owned(), 50)].into(),
                "{backend}"
            );
            // 50 jobs at 20 a window touch at least three windows: two window boundaries.
            assert!(
                started.elapsed()
                    >= (window * 2).to_std().unwrap() - std::time::Duration::from_millis(150),
                "{backend}: a listing over the limit must wait"
            );
        }
    }

    #[tokio::test]
    async fn with_overwrites_ignored_only_a_keys_first_version_becomes_a_job() {
        let now = Utc::now();
        let version = |id: &str, job: &str| {
            let job = Box::new(sample_job(job, "scans/a.pdf"));
            Item::from_decision(id.to_owned(), relay_protocol::Decision::Enqueue(job))
        };
        let dir = tempfile::tempdir().unwrap();
        for (backend, [first, second]) in receivers(chrono::Duration::minutes(1), dir.path()) {
            let mut ignoring = integration();
            ignoring.overwrites = Overwrites::Ignore;
            let mut items = vec![version("1", "j_v1")];
            settle(first.as_ref(), &ignoring, &mut items, now)
                .await
                .unwrap();
            assert_eq!(items[0].outcome, Outcome::Accepted, "{backend}");
            let mut items = vec![version("2", "j_v2"), version("3", "j_v1")];
            settle(second.as_ref(), &ignoring, &mut items, now)
                .await
                .unwrap();
            assert_eq!(
                (items[0].outcome, items[0].reason),
                (Outcome::Skipped, Some(Reason::OverwriteIgnored)),
                "{backend}: a second version"
            );
            assert_eq!(
                items[1].outcome,
                Outcome::Duplicate,
                "{backend}: the first again"
            );
            // Told new-job, the same second version becomes its own job.
            let mut items = vec![version("4", "j_v2")];
            settle(first.as_ref(), &integration(), &mut items, now)
                .await
                .unwrap();
            assert_eq!(items[0].outcome, Outcome::Accepted, "{backend}");
        }
    }
}

//! Settling decided events: the one path from "these events were decided" to "each has its final
//! outcome", shared by the HTTP handler (a request's events) and the listings (a page's
//! objects), so an object seen both ways is settled the same way.
//!
//! An event the decision refused is settled already; an event with a job goes through the
//! [`Intake`] (dedupe and enqueue, exactly once), and the intake's answer becomes its outcome
//! ([`Committed::outcome`]). Two events of one call naming the same job are one job: the later
//! copies are duplicates. Jobs are committed [`MAX_JOBS_PER_COMMIT`] at a time, and the events
//! settled before the ledger are recorded with the first commit, so their usage counts and
//! history are written once.

use crate::backend::{
    BackendError, Commit, Committed, Intake, JobRecords, LedgerTime, Recorded, Settled,
};
use crate::item::Item;
use chrono::{DateTime, Utc};
use relay_protocol::wire::MAX_EVENTS_PER_REQUEST;
use relay_protocol::{Integration, Outcome, Reason};
use std::collections::HashSet;

/// The most jobs one commit carries: a request's most events, so one request is one commit.
pub(crate) const MAX_JOBS_PER_COMMIT: usize = MAX_EVENTS_PER_REQUEST;

/// Settles every item: those with a job through `intake` (remembered for the integration's
/// horizon), the others as decided. On `Err` the
/// items whose commit failed (and those after it) are settled `retry_later` /
/// `backend_unavailable`, so nothing is acked without a word on it; the caller logs or stops.
pub(crate) async fn settle(
    intake: &dyn Intake,
    integration: &Integration,
    items: &mut [Item],
    now: DateTime<Utc>,
) -> Result<(), BackendError> {
    let mut seen = HashSet::new();
    let mut pending = Vec::new();
    let mut settled = Vec::new();
    for (index, item) in items.iter_mut().enumerate() {
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
    let mut failure = None;
    for group in groups {
        let committed = match failure {
            Some(_) => Vec::new(),
            None => {
                let commit = Commit {
                    integration_id: &integration.id,
                    jobs: group
                        .iter()
                        .filter_map(|&index| items[index].job.as_deref())
                        .collect(),
                    settled: std::mem::take(&mut settled),
                    now,
                    horizon: integration.horizon(),
                };
                match intake.commit(&commit).await {
                    Ok(committed) => committed,
                    Err(err) => {
                        failure = Some(err);
                        Vec::new()
                    }
                }
            }
        };
        // An answer missing for a job (an outage, or a backend answering short) is a failure:
        // the event is retried rather than acked without a word on it.
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
    let ids: Vec<&str> = old
        .iter()
        .filter_map(|&index| items[index].job.as_ref().map(|job| job.job_id.as_str()))
        .collect();
    let recorded = records.recorded(&ids, at).await?;
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
}

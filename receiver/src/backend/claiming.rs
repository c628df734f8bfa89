//! The intake for a ledger and a queue that cannot share a transaction (DynamoDB and SQS):
//! claim every job, send the claimed ones, mark the sent ones done, release the rest.
//!
//! Each request claims with a token of its own, so a release never drops a claim another request
//! holds. A claim left pending by a crash between send and complete lapses after
//! [`super::CLAIM_LEASE`]; see docs/contract.md for what the pipeline sees in that case.

use super::{
    BackendError, Claim, Commit, Committed, Delivery, First, History, Intake, Ledger, LedgerTime,
    Queue, UsageLog, DEFAULT_RATE_WINDOW,
};
use crate::events::{EnqueueFailed, EnqueueRefused};
use crate::telemetry::log_backend_error as log_error;
use async_trait::async_trait;
use chrono::Duration;
use rand::distr::{Alphanumeric, SampleString};
use relay_protocol::IngestJob;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

pub struct Claiming {
    ledger: Arc<dyn Ledger>,
    queue: Arc<dyn Queue>,
    usage: Arc<dyn UsageLog>,
    history: Arc<dyn History>,
    rate_window: Duration,
    /// Integrations whose last commit in this process was mostly duplicates (a redelivered
    /// batch, a re-run backfill): their next commit reads before it claims.
    duplicate_heavy: Mutex<HashSet<String>>,
}

/// What becomes of a job before the claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Before {
    /// `--overwrites ignore`, and another version has the key.
    OtherVersion,
    /// The ledger read first says it was made.
    Made,
    /// Claimed, then sent.
    Claim,
}

/// The jobs whose step is `wanted`.
fn pick<'j>(jobs: &[&'j IngestJob], before: &[Before], wanted: Before) -> Vec<&'j IngestJob> {
    jobs.iter()
        .zip(before)
        .filter(|(_, step)| **step == wanted)
        .map(|(job, _)| *job)
        .collect()
}

impl Claiming {
    pub fn new(
        ledger: Arc<dyn Ledger>,
        queue: Arc<dyn Queue>,
        usage: Arc<dyn UsageLog>,
        history: Arc<dyn History>,
    ) -> Self {
        Claiming {
            ledger,
            queue,
            usage,
            history,
            rate_window: DEFAULT_RATE_WINDOW,
            duplicate_heavy: Mutex::default(),
        }
    }

    /// A rate window other than a minute (`RELAY_RATE_WINDOW`).
    #[must_use]
    pub fn with_rate_window(self, rate_window: Duration) -> Self {
        Claiming {
            rate_window,
            ..self
        }
    }

    /// Claim, send, complete: each job's answer, in order. Under `--overwrites ignore` a job
    /// first claims its key; a key another version holds is not claimed at all. When the
    /// integration's last commit here was mostly duplicates, the ledger is read before the
    /// claims (half a read unit a job) and the jobs it has made are answered `duplicate` with
    /// no write at all; a claim would have cost a write unit each.
    async fn claim_and_send(
        &self,
        jobs: &[&IngestJob],
        commit: &Commit<'_>,
    ) -> Result<Vec<Committed>, BackendError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let at = commit.ledger_time();
        let mut before = vec![Before::Claim; jobs.len()];
        if commit.first_versions_only {
            let firsts = self.ledger.claim_first(jobs, at).await?;
            answered_for_each(&firsts, jobs, "key claims")?;
            for (step, first) in before.iter_mut().zip(firsts) {
                if first == First::Other {
                    *step = Before::OtherVersion;
                }
            }
        }
        if self.expects_duplicates(commit.integration_id) {
            let candidates = pick(jobs, &before, Before::Claim);
            let made = self.ledger.made(&candidates, at).await?;
            answered_for_each(&made, &candidates, "reads")?;
            let mut made = made.into_iter();
            for step in before.iter_mut().filter(|step| **step == Before::Claim) {
                if made.next() == Some(true) {
                    *step = Before::Made;
                }
            }
        }
        let ours = pick(jobs, &before, Before::Claim);
        let token = Alphanumeric.sample_string(&mut rand::rng(), 16);
        let claims = if ours.is_empty() {
            Vec::new()
        } else {
            self.ledger.claim(&ours, at, &token).await?
        };
        answered_for_each(&claims, &ours, "claims")?;
        let claimed: Vec<&IngestJob> = ours
            .iter()
            .zip(&claims)
            .filter(|(_, claim)| **claim == Claim::Claimed)
            .map(|(job, _)| *job)
            .collect();
        let mut sent = self.send_claimed(&claimed, &token, at).await.into_iter();
        let mut claims = claims.iter();
        let committed: Vec<Committed> = before
            .iter()
            .map(|step| match step {
                Before::OtherVersion => Committed::OverwriteIgnored,
                Before::Made => Committed::Duplicate,
                Before::Claim => match claims.next() {
                    Some(Claim::Claimed) => sent.next().unwrap_or(Committed::Failed),
                    Some(Claim::Done) => Committed::Duplicate,
                    Some(Claim::InFlight) => Committed::InFlight,
                    None => Committed::Failed,
                },
            })
            .collect();
        let duplicates = committed
            .iter()
            .filter(|c| **c == Committed::Duplicate)
            .count();
        self.expect_duplicates(commit.integration_id, duplicates * 2 > committed.len());
        if commit.first_versions_only {
            // A key claimed for a job that was not made is let go, so the next version (or
            // this one's retry) may have it; a job another request is making keeps it.
            let unmade: Vec<&IngestJob> = jobs
                .iter()
                .zip(&committed)
                .filter(|(_, c)| matches!(c, Committed::Failed | Committed::Refused))
                .map(|(job, _)| *job)
                .collect();
            if !unmade.is_empty() {
                if let Err(err) = self.ledger.release_first(&unmade).await {
                    log_error(&err);
                }
            }
        }
        Ok(committed)
    }

    fn expects_duplicates(&self, integration_id: &str) -> bool {
        self.duplicate_heavy
            .lock()
            .is_ok_and(|heavy| heavy.contains(integration_id))
    }

    fn expect_duplicates(&self, integration_id: &str, expected: bool) {
        if let Ok(mut heavy) = self.duplicate_heavy.lock() {
            if expected {
                heavy.insert(integration_id.to_owned());
            } else {
                heavy.remove(integration_id);
            }
        }
    }

    /// Sends the claimed jobs; completes the sent ones and releases the others.
    async fn send_claimed(
        &self,
        claimed: &[&IngestJob],
        token: &str,
        at: LedgerTime,
    ) -> Vec<Committed> {
        let sent = match self.queue.send(claimed).await {
            Ok(sent) if sent.len() == claimed.len() => sent,
            Ok(sent) => {
                // Answers that cannot be paired with jobs: none of them counts as sent.
                log_error(&BackendError::new(
                    "queue",
                    format!("{} answers for {} jobs", sent.len(), claimed.len()),
                ));
                vec![Delivery::Failed("unpaired answer".into()); claimed.len()]
            }
            Err(err) => {
                log_error(&err);
                vec![Delivery::Failed(err.to_string()); claimed.len()]
            }
        };
        let mut done = Vec::new();
        let mut failed = Vec::new();
        let results = claimed
            .iter()
            .zip(&sent)
            .map(|(job, delivery)| match delivery {
                Delivery::Sent => {
                    done.push(*job);
                    Committed::Enqueued
                }
                Delivery::Failed(why) => {
                    EnqueueFailed {
                        job_id: &job.job_id,
                        error: why,
                    }
                    .emit();
                    failed.push(job.job_id.as_str());
                    Committed::Failed
                }
                Delivery::Refused(why) => {
                    EnqueueRefused {
                        job_id: &job.job_id,
                        error: why,
                    }
                    .emit();
                    failed.push(job.job_id.as_str());
                    Committed::Refused
                }
            })
            .collect();
        if !failed.is_empty() {
            if let Err(err) = self.ledger.release(&failed, token).await {
                // The claims stay pending and lapse after their lease: the retry is only delayed.
                log_error(&err);
            }
        }
        if !done.is_empty() {
            if let Err(err) = self.ledger.complete(&done, at).await {
                // The jobs are on the queue, so the events are accepted; only a redelivery after
                // the claim's lease could enqueue again, and the job id lets the pipeline see it.
                log_error(&err);
            }
        }
        results
    }
}

#[async_trait]
impl Intake for Claiming {
    async fn commit(&self, commit: &Commit<'_>) -> Result<Vec<Committed>, BackendError> {
        let wanted = u32::try_from(commit.jobs.len()).unwrap_or(u32::MAX);
        let admitted = match &commit.limit {
            Some(limit) if wanted > 0 => {
                let granted = self
                    .ledger
                    .admit(commit.integration_id, limit, wanted)
                    .await?;
                usize::try_from(granted).map_or(0, |granted| granted.min(commit.jobs.len()))
            }
            _ => commit.jobs.len(),
        };
        let (admitted_jobs, limited) = commit.jobs.split_at(admitted);
        let result = self.claim_and_send(admitted_jobs, commit).await;
        if let Some(limit) = &commit.limit {
            // Admissions taken for jobs that were not made are given back.
            let made = result.as_ref().map_or(0, |committed| {
                committed
                    .iter()
                    .filter(|c| **c == Committed::Enqueued)
                    .count()
            });
            let unused = u32::try_from(admitted - made).unwrap_or(0);
            if unused > 0 {
                if let Err(err) = self
                    .ledger
                    .readmit(commit.integration_id, limit, unused)
                    .await
                {
                    // The window admits fewer than it could until it ends: nothing is lost.
                    log_error(&err);
                }
            }
        }
        let mut committed = result?;
        committed.extend(limited.iter().map(|_| Committed::RateLimited));
        // Usage and history are for reports and diagnosis; the events themselves are settled,
        // so a failure to record them is logged, not answered.
        let settlement = commit.settlement(&committed);
        let (usage, history) = (settlement.usage(), settlement.history());
        let (usage, history) = futures::join!(
            async {
                if usage.is_empty() {
                    return Ok(());
                }
                self.usage
                    .record(commit.integration_id, commit.now, &usage)
                    .await
            },
            async {
                if history.is_empty() {
                    return Ok(());
                }
                self.history.record(commit.integration_id, &history).await
            },
        );
        for result in [usage, history] {
            if let Err(err) = result {
                log_error(&err);
            }
        }
        Ok(committed)
    }

    fn rate_window(&self) -> Duration {
        self.rate_window
    }

    async fn probe(&self) -> Result<(), BackendError> {
        self.ledger.probe().await?;
        self.queue.probe().await
    }
}

/// A ledger that answers short cannot be paired with the jobs: the commit fails whole.
fn answered_for_each<T>(
    answers: &[T],
    jobs: &[&IngestJob],
    what: &str,
) -> Result<(), BackendError> {
    if answers.len() == jobs.len() {
        Ok(())
    } else {
        Err(BackendError::new(
            "ledger",
            format!("{} {what} for {} jobs", answers.len(), jobs.len()),
        ))
    }
}

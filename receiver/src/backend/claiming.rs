//! The intake for a ledger and a queue that cannot share a transaction (DynamoDB and SQS):
//! claim every job, send the claimed ones, mark the sent ones done, release the rest.
//!
//! Each request claims with a token of its own, so a release never drops a claim another request
//! holds. A claim left pending by a crash between send and complete lapses after
//! [`super::CLAIM_LEASE`]; see docs/contract.md for what the pipeline sees in that case.

use super::{
    BackendError, Claim, ClaimToken, Commit, Committed, Delivery, First, History, Intake, Ledger,
    LedgerTime, Queue, UsageLog, DEFAULT_RATE_WINDOW,
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
    /// Commits of one call in flight at once ([`Intake::commits_at_once`]).
    commits_at_once: usize,
    /// Integrations whose last commit in this process was mostly duplicates (a redelivered
    /// batch, a re-run backfill): their next commit reads before it claims.
    duplicate_heavy: Mutex<HashSet<String>>,
}

/// What becomes of a job before the claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Before {
    /// `--overwrites ignore`, and another version has the key.
    OtherVersion,
    /// Claimed (or read first), then sent.
    Claim,
}

/// A claimed job's answer from the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// The ledger read first says it was made: no claim, no write.
    Made,
    Claimed(Claim),
}

/// How many jobs a commit claims before it decides whether to read the rest first: one wave of
/// DynamoDB's claims in flight at once, so a batch of new jobs takes no longer for it.
const FIRST_WAVE: usize = 16;

/// The most commits of a listing's page in flight at once, when the queue need not keep their
/// order: eight commits of 100 jobs, each claiming 16 at once, put 128 claims in flight, some
/// 8,000 new jobs a second at DynamoDB's few milliseconds a call. A backfill asks for as many as
/// its pace needs ([`crate::pace::Pace::commits_at_once`]).
const COMMITS_AT_ONCE: usize = 8;

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
            commits_at_once: COMMITS_AT_ONCE,
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

    /// One commit at a time, for a queue that keeps its messages' order (FIFO): a listing's
    /// jobs reach it in the listing's order.
    #[must_use]
    pub fn in_order(self) -> Self {
        Claiming {
            commits_at_once: 1,
            ..self
        }
    }

    /// Claim, send, complete: each job's answer, in order. Under `--overwrites ignore` a job
    /// first claims its key; a key another version holds is not claimed at all. Jobs the ledger
    /// already has are answered `duplicate`, most of them read rather than claimed
    /// ([`Self::claim_or_read`]).
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
        let candidates = pick(jobs, &before, Before::Claim);
        let token = Alphanumeric.sample_string(&mut rand::rng(), 16);
        let answers = self
            .claim_or_read(&candidates, commit.integration_id, at, &token)
            .await?;
        let claimed: Vec<&IngestJob> = candidates
            .iter()
            .zip(&answers)
            .filter(|(_, answer)| **answer == Answer::Claimed(Claim::Claimed))
            .map(|(job, _)| *job)
            .collect();
        let mut sent = self.send_claimed(&claimed, &token, at).await.into_iter();
        let mut answers = answers.iter();
        let committed: Vec<Committed> = before
            .iter()
            .map(|step| match step {
                Before::OtherVersion => Committed::OverwriteIgnored,
                Before::Claim => match answers.next() {
                    Some(Answer::Claimed(Claim::Claimed)) => {
                        sent.next().unwrap_or(Committed::Failed)
                    }
                    Some(Answer::Made | Answer::Claimed(Claim::Done)) => Committed::Duplicate,
                    Some(Answer::Claimed(Claim::InFlight)) => Committed::InFlight,
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

    /// Each job's claim, or `Made` where the ledger read first says so. A commit claims a first
    /// wave and, when that wave was mostly duplicates, reads the rest before claiming what it did
    /// not find (half a read unit a job, where a failed claim costs a write unit). After a
    /// mostly-duplicate commit (a redelivered batch, a re-run backfill, or S3's redeliveries one
    /// event at a time) the integration's next commit reads everything first. A read that lags
    /// a write only costs a claim, never a second job. When a claim fails, the claims already
    /// won are given back, so the retry is not told `in_flight` for a whole lease.
    async fn claim_or_read(
        &self,
        jobs: &[&IngestJob],
        integration_id: &str,
        at: LedgerTime,
        token: &ClaimToken,
    ) -> Result<Vec<Answer>, BackendError> {
        let (mut answers, rest, read_first) = if self.expects_duplicates(integration_id) {
            (Vec::new(), jobs, true)
        } else {
            let (first, rest) = jobs.split_at(jobs.len().min(FIRST_WAVE));
            let claims = self.claim(first, at, token).await?;
            let done = claims.iter().filter(|c| **c == Claim::Done).count();
            let answers = claims.into_iter().map(Answer::Claimed).collect();
            (answers, rest, done * 2 > first.len())
        };
        match self.claim_rest(rest, read_first, at, token).await {
            Ok(more) => {
                answers.extend(more);
                Ok(answers)
            }
            Err(err) => {
                let won: Vec<&str> = jobs
                    .iter()
                    .zip(&answers)
                    .filter(|(_, answer)| **answer == Answer::Claimed(Claim::Claimed))
                    .map(|(job, _)| job.job_id.as_str())
                    .collect();
                if !won.is_empty() {
                    if let Err(release) = self.ledger.release(&won, token).await {
                        log_error(&release);
                    }
                }
                Err(err)
            }
        }
    }

    /// `jobs` claimed, or first read and only the ones not found claimed.
    async fn claim_rest(
        &self,
        jobs: &[&IngestJob],
        read_first: bool,
        at: LedgerTime,
        token: &ClaimToken,
    ) -> Result<Vec<Answer>, BackendError> {
        if !read_first || jobs.is_empty() {
            let claims = self.claim(jobs, at, token).await?;
            return Ok(claims.into_iter().map(Answer::Claimed).collect());
        }
        let made = self.ledger.made(jobs, at).await?;
        answered_for_each(&made, jobs, "reads")?;
        let unmade: Vec<&IngestJob> = jobs
            .iter()
            .zip(&made)
            .filter(|(_, made)| !**made)
            .map(|(job, _)| *job)
            .collect();
        let mut claims = self.claim(&unmade, at, token).await?.into_iter();
        Ok(made
            .iter()
            .map(|made| {
                if *made {
                    Answer::Made
                } else {
                    // `claim` answered for each: a missing answer would be retried, not dropped.
                    Answer::Claimed(claims.next().unwrap_or(Claim::InFlight))
                }
            })
            .collect())
    }

    /// The ledger's claims of `jobs`, one for each (none asked for none).
    async fn claim(
        &self,
        jobs: &[&IngestJob],
        at: LedgerTime,
        token: &ClaimToken,
    ) -> Result<Vec<Claim>, BackendError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let claims = self.ledger.claim(jobs, at, token).await?;
        answered_for_each(&claims, jobs, "claims")?;
        Ok(claims)
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

    fn commits_at_once(&self) -> usize {
        self.commits_at_once
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::{
        sample_job, Asked, MemoryHistory, MemoryLedger, MemoryQueue, MemoryUsage,
    };
    use chrono::{DateTime, Utc};

    struct Receiver {
        ledger: Arc<MemoryLedger>,
        queue: Arc<MemoryQueue>,
        intake: Claiming,
    }

    fn receiver() -> Receiver {
        let ledger = Arc::new(MemoryLedger::default());
        let queue = Arc::new(MemoryQueue::default());
        let intake = Claiming::new(
            ledger.clone(),
            queue.clone(),
            Arc::new(MemoryUsage::default()),
            Arc::new(MemoryHistory::default()),
        );
        Receiver {
            ledger,
            queue,
            intake,
        }
    }

    fn jobs(keys: std::ops::Range<usize>) -> Vec<IngestJob> {
        keys.map(|i| sample_job(&format!("j_{i}"), &format!("in/{i:03}.pdf")))
            .collect()
    }

    impl Receiver {
        /// Commits `jobs` as one request and answers what each became, with the claims and reads
        /// it took.
        async fn commit(&self, jobs: &[IngestJob]) -> (Vec<Committed>, Asked) {
            let before = self.ledger.asked();
            let committed = self.try_commit(jobs).await.unwrap();
            let after = self.ledger.asked();
            let asked = Asked {
                claims: after.claims - before.claims,
                reads: after.reads - before.reads,
            };
            (committed, asked)
        }

        async fn try_commit(&self, jobs: &[IngestJob]) -> Result<Vec<Committed>, BackendError> {
            let commit = Commit {
                integration_id: "int_1",
                jobs: jobs.iter().collect(),
                settled: Vec::new(),
                now: DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap(),
                horizon: Duration::days(400),
                limit: None,
                first_versions_only: false,
            };
            self.intake.commit(&commit).await
        }
    }

    fn count(committed: &[Committed], wanted: Committed) -> usize {
        committed.iter().filter(|c| **c == wanted).count()
    }

    #[tokio::test]
    async fn a_redelivered_batch_claims_one_wave_and_reads_the_rest() {
        let receiver = receiver();
        let batch = jobs(0..100);
        let (committed, asked) = receiver.commit(&batch).await;
        assert_eq!(count(&committed, Committed::Enqueued), 100);
        assert_eq!(
            asked,
            Asked {
                claims: 100,
                reads: 0
            },
            "new jobs are claimed, never read"
        );

        // Redelivered: the first wave's claims find the jobs made, so the rest are read (half a
        // read unit each on DynamoDB) where each claim would have been a write unit.
        let (committed, asked) = receiver.commit(&batch).await;
        assert_eq!(count(&committed, Committed::Duplicate), 100);
        assert_eq!(
            asked,
            Asked {
                claims: FIRST_WAVE,
                reads: 100 - FIRST_WAVE
            }
        );

        // Once a commit was mostly duplicates, the next reads everything first.
        let (committed, asked) = receiver.commit(&batch).await;
        assert_eq!(count(&committed, Committed::Duplicate), 100);
        assert_eq!(
            asked,
            Asked {
                claims: 0,
                reads: 100
            }
        );
        assert_eq!(receiver.queue.jobs().len(), 100, "each job sent once");
    }

    #[tokio::test]
    async fn new_jobs_behind_a_wave_of_duplicates_are_each_made_once() {
        let receiver = receiver();
        receiver.commit(&jobs(0..20)).await;
        // The first 20 were made: the first wave is all duplicates, so the rest are read first;
        // the 4 made among them are answered from the read, the 80 new ones claimed and sent.
        let (committed, asked) = receiver.commit(&jobs(0..100)).await;
        assert_eq!(count(&committed, Committed::Duplicate), 20);
        assert_eq!(count(&committed, Committed::Enqueued), 80);
        assert!(committed[20..].iter().all(|c| *c == Committed::Enqueued));
        assert_eq!(
            asked,
            Asked {
                claims: FIRST_WAVE + 80,
                reads: 100 - FIRST_WAVE
            }
        );
        assert_eq!(receiver.queue.jobs().len(), 100);
        // Not mostly duplicates: the next commit claims again before it reads.
        let (committed, asked) = receiver.commit(&jobs(100..110)).await;
        assert_eq!(count(&committed, Committed::Enqueued), 10);
        assert_eq!(asked.reads, 0);
    }

    #[tokio::test]
    async fn a_claim_that_fails_after_the_first_wave_gives_the_wave_back() {
        let receiver = receiver();
        let batch = jobs(0..40);
        receiver.ledger.fail_claim_of(Some("j_30"));
        assert!(receiver.try_commit(&batch).await.is_err());
        assert!(
            receiver.queue.jobs().is_empty(),
            "nothing is sent from a failed commit"
        );
        // The retry finds no claim left pending by the failed one: every job is made now, not
        // answered in flight for a whole lease.
        receiver.ledger.fail_claim_of(None);
        let (committed, _) = receiver.commit(&batch).await;
        assert_eq!(count(&committed, Committed::Enqueued), 40);
    }
}

//! The intake for a ledger and a queue that cannot share a transaction (DynamoDB and SQS):
//! claim every job, send the claimed ones, mark the sent ones done, release the rest.
//!
//! Each request claims with a token of its own, so a release never drops a claim another request
//! holds. A claim left pending by a crash between send and complete lapses after
//! [`super::CLAIM_LEASE`]; see docs/contract.md for what the pipeline sees in that case.

use super::{
    BackendError, Claim, Commit, Committed, Delivery, History, Intake, Ledger, LedgerTime, Queue,
    UsageLog,
};
use crate::events::{EnqueueFailed, EnqueueRefused};
use crate::telemetry::log_backend_error as log_error;
use async_trait::async_trait;
use rand::distr::{Alphanumeric, SampleString};
use relay_protocol::IngestJob;
use std::sync::Arc;

pub struct Claiming {
    ledger: Arc<dyn Ledger>,
    queue: Arc<dyn Queue>,
    usage: Arc<dyn UsageLog>,
    history: Arc<dyn History>,
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
        let committed = if commit.jobs.is_empty() {
            Vec::new()
        } else {
            let token = Alphanumeric.sample_string(&mut rand::rng(), 16);
            let claims = self
                .ledger
                .claim(&commit.jobs, commit.ledger_time(), &token)
                .await?;
            if claims.len() != commit.jobs.len() {
                return Err(BackendError::new(
                    "ledger",
                    format!("{} claims for {} jobs", claims.len(), commit.jobs.len()),
                ));
            }
            let claimed: Vec<&IngestJob> = commit
                .jobs
                .iter()
                .zip(&claims)
                .filter(|(_, claim)| **claim == Claim::Claimed)
                .map(|(job, _)| *job)
                .collect();
            let mut sent = self
                .send_claimed(&claimed, &token, commit.ledger_time())
                .await
                .into_iter();
            claims
                .iter()
                .map(|claim| match claim {
                    Claim::Claimed => sent.next().unwrap_or(Committed::Failed),
                    Claim::Done => Committed::Duplicate,
                    Claim::InFlight => Committed::InFlight,
                })
                .collect()
        };
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

    async fn probe(&self) -> Result<(), BackendError> {
        self.ledger.probe().await?;
        self.queue.probe().await
    }
}

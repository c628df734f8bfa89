//! The receiver's I/O, behind three small traits with one adapter per backend.
//!
//! - [`Store`]: integrations, by id.
//! - [`Ledger`]: the processed-objects ledger that makes every object version one job, and the
//!   per-day usage counts of every integration.
//! - [`Queue`]: the ingest queue the pipeline reads.
//!
//! Adapters: [`sqlite`] (the embedded default: one local file, no services) and [`memory`]
//! (tests and benchmarks). The handler sees only the traits, so the AWS adapters plug in
//! without touching it.
//!
//! ## Why a claim has a lease
//! A job is claimed in the ledger *before* it is enqueued, then marked done. If the receiver
//! dies between the two, the claim stays `pending`; a redelivery within [`CLAIM_LEASE`] is told
//! `in_flight` (retry later) and one after it re-claims and enqueues. So a crash can delay a job
//! but never turn its retry into a `duplicate` that nobody enqueued.

pub mod dynamodb;
pub mod memory;
pub mod secretsmanager;
pub mod sqlite;
pub mod sqs;

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use relay_protocol::{IngestJob, Integration, Outcome, Reason};
use std::collections::BTreeMap;
use std::fmt;

/// How long a pending claim blocks redeliveries of the same job before it may be re-claimed.
pub const CLAIM_LEASE: Duration = Duration::minutes(5);
/// How long the ledger remembers a job: redeliveries after that become new jobs.
pub const LEDGER_RETENTION: Duration = Duration::days(30);

/// A backend did not answer or refused; the request is answered 503 and retried by its sender.
#[derive(Debug)]
pub struct BackendError {
    pub backend: &'static str,
    pub detail: String,
}

impl BackendError {
    pub fn new(backend: &'static str, detail: impl fmt::Display) -> Self {
        BackendError {
            backend,
            detail: detail.to_string(),
        }
    }
}

impl BackendError {
    /// An error with its whole source chain: an SDK's "service error" alone says nothing.
    pub fn with_sources(backend: &'static str, error: &dyn std::error::Error) -> Self {
        let mut detail = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            detail.push_str(": ");
            detail.push_str(&cause.to_string());
            source = cause.source();
        }
        BackendError { backend, detail }
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} backend: {}", self.backend, self.detail)
    }
}

impl std::error::Error for BackendError {}

#[async_trait]
pub trait Store: Send + Sync {
    async fn get(&self, id: &str) -> Result<Option<Integration>, BackendError>;
    /// Inserts or replaces the integration with this id.
    async fn put(&self, integration: &Integration) -> Result<(), BackendError>;
    /// Every integration, by id.
    async fn list(&self) -> Result<Vec<Integration>, BackendError>;
    /// Whether there was one to delete.
    async fn delete(&self, id: &str) -> Result<bool, BackendError>;
}

/// The ledger's answer to claiming one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This request owns the job: enqueue it, then complete or release the claim.
    Claimed,
    /// The job was enqueued before.
    Done,
    /// Another request holds a fresh claim on it.
    InFlight,
}

#[async_trait]
pub trait Ledger: Send + Sync {
    /// Claims each job, answering in the same order.
    async fn claim(
        &self,
        jobs: &[&IngestJob],
        now: DateTime<Utc>,
    ) -> Result<Vec<Claim>, BackendError>;
    /// Marks claimed jobs as enqueued, keeping their bucket and key for audit.
    async fn complete(&self, jobs: &[&IngestJob], now: DateTime<Utc>) -> Result<(), BackendError>;
    /// Drops claims whose jobs could not be enqueued, so their retry is not a duplicate.
    async fn release(&self, job_ids: &[&str]) -> Result<(), BackendError>;
    /// Adds one request's counts to the integration's usage of that day.
    async fn record_usage(
        &self,
        integration_id: &str,
        day: NaiveDate,
        counts: &UsageCounts,
    ) -> Result<(), BackendError>;
    /// The integration's usage per day, for the days in `since..=until` that have any.
    async fn usage(
        &self,
        integration_id: &str,
        since: NaiveDate,
        until: NaiveDate,
    ) -> Result<BTreeMap<NaiveDate, UsageCounts>, BackendError>;
}

/// Event counts by `<outcome>` or `<outcome>/<reason>` (see [`usage_key`]).
pub type UsageCounts = BTreeMap<String, u64>;

/// The name under which usage counts an outcome and its reason.
pub fn usage_key(outcome: Outcome, reason: Option<Reason>) -> String {
    match reason {
        Some(reason) => format!("{outcome}/{reason}"),
        None => outcome.to_string(),
    }
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends the jobs; one answer per job, in order: `Err` carries why that job was not sent.
    async fn send(&self, jobs: &[&IngestJob]) -> Result<Vec<Result<(), String>>, BackendError>;
}

/// The three backends the handler works with.
pub struct Backends {
    pub store: std::sync::Arc<dyn Store>,
    pub ledger: std::sync::Arc<dyn Ledger>,
    pub queue: std::sync::Arc<dyn Queue>,
}

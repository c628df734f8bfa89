//! The receiver's I/O, behind three small traits with one adapter per backend.
//!
//! - [`Store`]: integrations, by id.
//! - [`Ledger`]: the processed-objects ledger that makes every object version one job.
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

pub mod memory;
pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use relay_protocol::{IngestJob, Integration};
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
    /// Marks claimed jobs as enqueued.
    async fn complete(&self, job_ids: &[&str], now: DateTime<Utc>) -> Result<(), BackendError>;
    /// Drops claims whose jobs could not be enqueued, so their retry is not a duplicate.
    async fn release(&self, job_ids: &[&str]) -> Result<(), BackendError>;
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

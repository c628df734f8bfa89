//! The receiver's I/O, behind small traits with one adapter per backend.
//!
//! - [`Store`]: integrations, by id.
//! - [`Intake`]: turns a request's jobs into exactly one message each on the ingest queue, and
//!   counts the request's events. This is the port the handler commits through.
//! - [`UsageLog`]: the usage counts of every integration, per hour (and so per day).
//! - [`JobRecords`]: which jobs the ledger remembers, read by `reconcile`.
//! - [`Cursors`]: where listing runs keep their place (a poll watermark, a backfill's last key).
//! - [`History`]: the last word on each object key and the last event per outcome, for
//!   `events why` and `integrations show`. The intake writes it with each commit.
//! - [`bucket::BucketSource`]: listings of customers' buckets ([`bucket::Buckets`]: the S3 API,
//!   for S3 and R2).
//! - [`MasterKeySource`]: the master key, from [`keyfile`] (embedded) or [`secretsmanager`].
//! - `aws`: the AWS SDK's configuration, read once, with each purpose's deadlines and retries.
//! - [`DeadLetters`]: a dead-letter queue a replay drains ([`deadletters`]: SQS).
//! - [`Backlog`]: how many jobs wait on the ingest queue (and its dead-letter queue), for
//!   `status`.
//!
//! Two ways to be an [`Intake`]:
//! - [`sqlite`] (the embedded default) keeps the ledger, the queue and the usage counts in one
//!   file, so a request is one transaction: every new job is recorded and enqueued together, or
//!   nothing is. Exactly once holds by construction; there is no in-between state to recover.
//! - [`claiming::Claiming`] composes a [`Ledger`] and a [`Queue`] that cannot share a
//!   transaction (DynamoDB and SQS): claim → send → complete, releasing what could not be sent.
//!
//! `memory` has in-memory adapters for tests and benchmarks (`cfg(test)` or the `testing`
//! feature; never in a release build).
//!
//! ## Why a claim has a lease (the claiming intake)
//! A job is claimed in the ledger *before* it is enqueued, then marked done. If the receiver
//! dies between the two, the claim stays `pending`; a redelivery within [`CLAIM_LEASE`] is told
//! `in_flight` (retry later) and one after it re-claims and enqueues. So a crash can delay a job
//! but never turn its retry into a `duplicate` that nobody enqueued.

pub(crate) mod aws;
pub mod bucket;
pub mod claiming;
pub mod deadletters;
pub mod dynamodb;
pub mod keyfile;
pub mod kms;
pub mod lookup;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod secretsmanager;
#[cfg(feature = "embedded")]
pub mod sqlite;
pub mod sqs;
pub mod usage_buffer;
#[cfg(feature = "embedded")]
mod wal_writes;

pub use crate::keys::Keyring;
use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use relay_protocol::admission::Window;
use relay_protocol::{IngestJob, Integration, Outcome, Reason};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The longest one request may run while holding claims: the Lambda timeout the Terraform module
/// allows (`timeout` ≤ 180 s).
pub const MAX_REQUEST_TIME: Duration = Duration::minutes(3);
/// SQS drops a FIFO message whose `MessageDeduplicationId` (the job id) it saw in the last
/// five minutes.
pub const SQS_FIFO_DEDUP_WINDOW: Duration = Duration::minutes(5);
/// How long a pending claim blocks redeliveries of the same job before it may be re-claimed.
///
/// Longer than [`MAX_REQUEST_TIME`], so a live request's claim is never taken over; shorter than
/// [`SQS_FIFO_DEDUP_WINDOW`], so when a request dies between sending and completing, the job
/// re-sent after the lease falls inside the first send's deduplication window, and a FIFO queue
/// drops it. (A standard queue has no such window: there the pipeline may see the job twice,
/// with the same `job_id`.)
pub const CLAIM_LEASE: Duration = Duration::minutes(4);
/// How long the history (`events why`, the last event per outcome) keeps an event. The ledger
/// remembers each job for its integration's horizon ([`LedgerTime`]), which is far longer.
pub const HISTORY_RETENTION: Duration = Duration::days(30);
/// How long the ledger remembered a job before it had a horizon per integration: a ledger
/// written then is migrated by adding the difference to each entry.
pub const OLD_LEDGER_RETENTION: Duration = Duration::days(30);

/// The ledger's clock for one commit or read: now, and how long the integration's jobs are
/// remembered ([`Integration::horizon`]). A job made at or before [`forgotten_before`] is
/// forgotten: a listing that meets its object again makes a new job.
///
/// [`forgotten_before`]: LedgerTime::forgotten_before
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerTime {
    pub now: DateTime<Utc>,
    pub horizon: Duration,
}

impl LedgerTime {
    pub fn new(now: DateTime<Utc>, integration: &Integration) -> Self {
        LedgerTime {
            now,
            horizon: integration.horizon(),
        }
    }

    /// Jobs made at or before this time are forgotten.
    pub fn forgotten_before(self) -> DateTime<Utc> {
        self.now - self.horizon
    }

    /// A job made now is remembered until this time.
    pub fn kept_until(self) -> DateTime<Utc> {
        self.now + self.horizon
    }
}

/// A backend did not answer or refused; the request is answered 503 and retried by its sender.
///
/// An error from a backend's client (an SDK's, SQLite's) is kept whole: its causes are this
/// error's [`source`](std::error::Error::source), and [`BackendError::detail`] writes them all
/// on one line for a log.
#[derive(Debug)]
pub struct BackendError {
    pub backend: &'static str,
    message: String,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl BackendError {
    pub fn new(backend: &'static str, detail: impl fmt::Display) -> Self {
        BackendError {
            backend,
            message: detail.to_string(),
            cause: None,
        }
    }

    /// The error a backend's client answered, kept with its causes: an SDK's "service error"
    /// alone says nothing.
    pub fn caused_by(
        backend: &'static str,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BackendError {
            backend,
            message: error.to_string(),
            cause: Some(Box::new(error)),
        }
    }

    /// What failed and why, causes included, on one line.
    pub fn detail(&self) -> String {
        match &self.cause {
            Some(error) => error_chain(error.as_ref()),
            None => self.message.clone(),
        }
    }
}

/// An error and its causes on one line: an SDK's "service error" or "dispatch failure" alone
/// says nothing.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} backend: {}", self.backend, self.message)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_ref().and_then(|error| error.source())
    }
}

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

/// What became of one job the handler committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Committed {
    /// New: it is on the ingest queue now.
    Enqueued,
    /// This object version became a job before; nothing was sent.
    Duplicate,
    /// Another request is enqueueing it right now (claiming intake only): retry shortly.
    InFlight,
    /// It could not be enqueued and nothing remembers it, so its retry is accepted.
    Failed,
    /// The queue refuses the job as it is; nothing remembers it, and the event is dead-lettered.
    Refused,
    /// The integration's window has no room for another job: nothing was sent, nothing
    /// remembers it, and the event is sent again.
    RateLimited,
    /// `--overwrites ignore`: another version of the key became the key's job.
    OverwriteIgnored,
}

impl Committed {
    /// The event's outcome and reason: the one place that maps a commit to the wire.
    pub const fn outcome(self) -> (Outcome, Option<Reason>) {
        match self {
            Committed::Enqueued => (Outcome::Accepted, None),
            Committed::Duplicate => (Outcome::Duplicate, Some(Reason::Duplicate)),
            Committed::InFlight => (Outcome::RetryLater, Some(Reason::InFlight)),
            Committed::Failed => (Outcome::RetryLater, Some(Reason::BackendUnavailable)),
            Committed::Refused => (Outcome::Rejected, Some(Reason::QueueRefused)),
            Committed::RateLimited => (Outcome::RetryLater, Some(Reason::RateLimited)),
            Committed::OverwriteIgnored => (Outcome::Skipped, Some(Reason::OverwriteIgnored)),
        }
    }
}

/// An event of a commit that was settled before the ledger (skipped, rejected, a second copy
/// in one request): counted in the usage and, when its key is known, kept in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    /// `None` for an event that could not be parsed.
    pub key: Option<String>,
    pub outcome: Outcome,
    pub reason: Option<Reason>,
    /// The job a duplicate copy repeats.
    pub job_id: Option<String>,
}

/// One request's commit: its jobs (each object version once), and its other events, whose
/// usage counts and history the intake records with the jobs' own.
pub struct Commit<'a> {
    pub integration_id: &'a str,
    pub jobs: Vec<&'a IngestJob>,
    pub settled: Vec<Settled>,
    pub now: DateTime<Utc>,
    /// How long the ledger remembers these jobs: the integration's horizon.
    pub horizon: Duration,
    /// The integration's rate in this commit's window, when it has one.
    pub limit: Option<RateLimit>,
    /// `--overwrites ignore`: each job must also be the first of its key.
    pub first_versions_only: bool,
}

/// One window of an integration's rate ([`relay_protocol::admission`]): the most new jobs it
/// admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub window: Window,
    pub per_window: u32,
}

impl RateLimit {
    /// Until when the window's count is kept: an hour past its end, for `status` to read.
    pub fn kept_until(&self) -> DateTime<Utc> {
        self.window.end + Duration::hours(1)
    }
}

/// The length of a rate window unless a receiver is told otherwise: `--max-jobs-per-minute`.
pub const DEFAULT_RATE_WINDOW: Duration = Duration::minutes(1);

/// Whose a key is under `--overwrites ignore`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum First {
    /// This job is the key's job (it claimed the key now, or had claimed it before).
    Ours,
    /// Another version's job has the key.
    Other,
}

impl Commit<'_> {
    /// The ledger's clock for this commit.
    pub fn ledger_time(&self) -> LedgerTime {
        LedgerTime {
            now: self.now,
            horizon: self.horizon,
        }
    }

    /// Every event of this commit with its final word, once the intake answered for its jobs.
    pub fn settlement(&self, committed: &[Committed]) -> Settlement {
        let jobs = self
            .jobs
            .iter()
            .map(|job| (job.key.as_str(), job.job_id.as_str()));
        Settlement::new(self.settled.clone(), jobs, committed, self.now)
    }
}

/// A commit's events with their final words: what its usage counts and its history are both
/// read from, so the two cannot disagree.
#[derive(Debug)]
pub struct Settlement {
    events: Vec<Settled>,
    at: DateTime<Utc>,
}

impl Settlement {
    /// The events settled before the ledger, then each job, given as (key, job id), with the
    /// intake's answer for it.
    pub fn new<'j>(
        settled: Vec<Settled>,
        jobs: impl IntoIterator<Item = (&'j str, &'j str)>,
        committed: &[Committed],
        at: DateTime<Utc>,
    ) -> Self {
        let mut events = settled;
        events.extend(
            jobs.into_iter()
                .zip(committed)
                .map(|((key, job_id), result)| {
                    let (outcome, reason) = result.outcome();
                    Settled {
                        key: Some(key.to_owned()),
                        outcome,
                        reason,
                        job_id: Some(job_id.to_owned()),
                    }
                }),
        );
        Settlement { events, at }
    }

    /// One count per event, by outcome and reason.
    pub fn usage(&self) -> UsageCounts {
        let mut counts = UsageCounts::new();
        for event in &self.events {
            *counts
                .entry(UsageKey::new(event.outcome, event.reason))
                .or_default() += 1;
        }
        counts
    }

    /// What the history keeps: each event whose key is known.
    pub fn history(&self) -> Vec<Seen> {
        self.events
            .iter()
            .filter_map(|event| {
                Some(Seen {
                    key: event.key.clone()?,
                    outcome: event.outcome,
                    reason: event.reason,
                    job_id: event.job_id.clone(),
                    at: self.at,
                })
            })
            .collect()
    }
}

/// One event as the history keeps it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Seen {
    pub key: String,
    pub outcome: Outcome,
    pub reason: Option<Reason>,
    pub job_id: Option<String>,
    pub at: DateTime<Utc>,
}

impl Seen {
    /// Whether the event becomes its key's last word. A duplicate repeats the key's job and a
    /// `rate_limited` event comes again, so neither changes what `events why` answers, and
    /// writing them would cost a write per redelivery (on DynamoDB, as much as the claim); both
    /// still count in the usage and as the last event of their outcome.
    pub fn kept_per_key(&self) -> bool {
        self.outcome != Outcome::Duplicate && self.reason != Some(Reason::RateLimited)
    }

    /// The last event of each outcome among `events` (in commit order).
    pub fn last_per_outcome(events: &[Seen]) -> BTreeMap<Outcome, &Seen> {
        events.iter().map(|seen| (seen.outcome, seen)).collect()
    }
}

/// A job put on the ingest queue, as the history remembers it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Enqueued {
    pub job_id: String,
    pub at: DateTime<Utc>,
}

/// What the history knows of one object key: its last event, and the last job made for it
/// (which a later event, a duplicate or a skipped delete, does not erase).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ObjectHistory {
    pub last: Seen,
    pub enqueued: Option<Enqueued>,
}

/// The history of events per object key and per outcome, kept for [`HISTORY_RETENTION`].
#[async_trait]
pub trait History: Send + Sync {
    /// Records a commit's events (see [`Settlement::history`]).
    async fn record(&self, integration_id: &str, events: &[Seen]) -> Result<(), BackendError>;
    /// The history of one key, if any event for it was seen.
    async fn object(
        &self,
        integration_id: &str,
        key: &str,
    ) -> Result<Option<ObjectHistory>, BackendError>;
    /// The last event seen per outcome.
    async fn last_seen(
        &self,
        integration_id: &str,
    ) -> Result<BTreeMap<Outcome, Seen>, BackendError>;
}

#[async_trait]
pub trait Intake: Send + Sync {
    /// Puts every job not seen before on the ingest queue, exactly once, and records the
    /// request's usage counts; one answer per job, in order. `Err` means nothing was enqueued.
    async fn commit(&self, commit: &Commit<'_>) -> Result<Vec<Committed>, BackendError>;
    /// How long one window of `--max-jobs-per-minute` lasts here ([`DEFAULT_RATE_WINDOW`]).
    fn rate_window(&self) -> Duration;
    /// The most commits of one call (a listing's page) this intake takes at once. One keeps the
    /// call's jobs in order on the queue; more let a ledger that claims one job per round trip
    /// keep up with a backfill's pace.
    fn commits_at_once(&self) -> usize {
        1
    }
    /// Whether the ledger and the queue answer, with nothing written: what a test event checks.
    async fn probe(&self) -> Result<(), BackendError>;
}

#[async_trait]
pub trait UsageLog: Send + Sync {
    /// Adds one request's counts to the integration's usage of the hour `at` falls in.
    async fn record(
        &self,
        integration_id: &str,
        at: DateTime<Utc>,
        counts: &UsageCounts,
    ) -> Result<(), BackendError>;
    /// The integration's usage per day (UTC), for the days in `since..=until` that have any.
    async fn usage(
        &self,
        integration_id: &str,
        since: NaiveDate,
        until: NaiveDate,
    ) -> Result<BTreeMap<NaiveDate, UsageCounts>, BackendError>;
    /// The integration's usage in the hours from the one `since` falls in to now, together.
    async fn recent(
        &self,
        integration_id: &str,
        since: DateTime<Utc>,
    ) -> Result<UsageCounts, BackendError>;
}

/// The hour `at` falls in, as usage keys it: `2026-11-30T05` (UTC).
pub fn usage_hour(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H").to_string()
}

/// Where a listing run keeps its place between runs: a poll tick's watermark, an interrupted
/// backfill's last committed key. One small text value per integration and name.
#[async_trait]
pub trait Cursors: Send + Sync {
    async fn load(&self, integration_id: &str, name: &str) -> Result<Option<String>, BackendError>;
    /// Stores `value`, or forgets the cursor when it is `None`.
    async fn save(
        &self,
        integration_id: &str,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), BackendError>;
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

/// Identifies one request's claims, so that it releases only its own.
pub type ClaimToken = str;

/// A processed-objects ledger that cannot share a transaction with the queue.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Claims each job for `token`, answering in the same order; a job made at or before
    /// `at.forgotten_before()` is claimed anew. On `Err` no claim is held.
    async fn claim(
        &self,
        jobs: &[&IngestJob],
        at: LedgerTime,
        token: &ClaimToken,
    ) -> Result<Vec<Claim>, BackendError>;
    /// Marks claimed jobs as enqueued, remembered until `at.kept_until()`, keeping their bucket
    /// and key for audit.
    async fn complete(&self, jobs: &[&IngestJob], at: LedgerTime) -> Result<(), BackendError>;
    /// Drops `token`'s claims on jobs that could not be enqueued, so their retry is not a
    /// duplicate; another request's claim on the same job is left alone.
    async fn release(&self, job_ids: &[&str], token: &ClaimToken) -> Result<(), BackendError>;
    /// Takes up to `wanted` of the window's admissions for `integration_id`, never past its
    /// limit whatever other receivers take meanwhile; answers how many it took.
    async fn admit(
        &self,
        integration_id: &str,
        limit: &RateLimit,
        wanted: u32,
    ) -> Result<u32, BackendError>;
    /// Gives back admissions taken for jobs that were not made (duplicates, failures).
    async fn readmit(
        &self,
        integration_id: &str,
        limit: &RateLimit,
        count: u32,
    ) -> Result<(), BackendError>;
    /// `--overwrites ignore`: claims each job's key ([`IngestJob::key_id`]) for the job, unless
    /// another version's job holds it and the ledger still remembers that one.
    async fn claim_first(
        &self,
        jobs: &[&IngestJob],
        at: LedgerTime,
    ) -> Result<Vec<First>, BackendError>;
    /// Drops the key claims of jobs that were not made, so another version may have the key.
    async fn release_first(&self, jobs: &[&IngestJob]) -> Result<(), BackendError>;
    /// Which of `jobs` the ledger remembers as made, by a read that may lag a write by a moment
    /// (the cheapest): what a commit that expects duplicates reads before it claims. A job read
    /// as not made is claimed as usual, so a lagging read costs a claim, never a second job.
    async fn made(&self, jobs: &[&IngestJob], at: LedgerTime) -> Result<Vec<bool>, BackendError>;
    /// A read that shows the ledger answers.
    async fn probe(&self) -> Result<(), BackendError>;
}

/// What usage counts an event under: its outcome and reason. Stored and printed as `<outcome>`
/// or `<outcome>/<reason>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UsageKey {
    pub outcome: Outcome,
    pub reason: Option<Reason>,
}

/// Event counts by outcome and reason.
pub type UsageCounts = BTreeMap<UsageKey, u64>;

/// Adds `counts` to `total`, key by key.
pub fn add_counts(total: &mut UsageCounts, counts: &UsageCounts) {
    for (key, count) in counts {
        *total.entry(*key).or_default() += count;
    }
}

impl UsageKey {
    pub const fn new(outcome: Outcome, reason: Option<Reason>) -> Self {
        UsageKey { outcome, reason }
    }
}

impl fmt::Display for UsageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            Some(reason) => write!(f, "{}/{reason}", self.outcome),
            None => write!(f, "{}", self.outcome),
        }
    }
}

impl std::str::FromStr for UsageKey {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let unknown = || format!("unknown usage key {text:?}");
        let (outcome, reason) = match text.split_once('/') {
            Some((outcome, reason)) => (outcome, Some(Reason::parse(reason).ok_or_else(unknown)?)),
            None => (text, None),
        };
        let outcome = Outcome::parse(outcome).ok_or_else(unknown)?;
        Ok(UsageKey { outcome, reason })
    }
}

impl serde::Serialize for UsageKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What the queue said of one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// It is on the queue.
    Sent,
    /// Not sent this time (throttling, an internal error): the same job may go later.
    Failed(String),
    /// The queue refuses this job as it is (SQS `SenderFault`): sending it again cannot help.
    Refused(String),
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends the jobs; one answer per job, in order.
    async fn send(&self, jobs: &[&IngestJob]) -> Result<Vec<Delivery>, BackendError>;
    /// A read that shows the queue exists and answers.
    async fn probe(&self) -> Result<(), BackendError>;
}

/// A message received from a dead-letter queue, as a replay sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: String,
    /// This receipt of the message: what deletes it or makes it visible again.
    pub receipt: String,
    pub body: String,
    /// Its string message attributes (a job's `integration_id` and `provider`; EventBridge's
    /// `ERROR_CODE`, why it dead-lettered the event).
    pub attributes: BTreeMap<String, String>,
    /// The FIFO message group it was sent in, if any.
    pub group: Option<String>,
}

/// A dead-letter queue a replay drains: messages received hidden for a while, deleted once
/// handled, made visible again when kept, or moved to another queue.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// The queue's URL, for reports.
    fn url(&self) -> &str;
    /// The next few messages, hidden from other readers for a while; none once drained.
    async fn receive(&self) -> Result<Vec<DeadLetter>, BackendError>;
    /// How many messages wait (approximately).
    async fn waiting(&self) -> Result<u64, BackendError>;
    /// Deletes handled messages by their receipts.
    async fn delete(&self, receipts: &[String]) -> Result<(), BackendError>;
    /// Makes kept messages visible again at once, for the next run.
    async fn release(&self, receipts: &[String]) -> Result<(), BackendError>;
    /// Sends the messages to the queue at `target` (same body, attributes and group): which
    /// were sent (to delete here) and which could not be, and why.
    async fn move_to(&self, target: &str, letters: &[DeadLetter]) -> Result<Moved, BackendError>;
}

/// What a move did with each dead letter.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// The receipts of the letters now on the target queue.
    pub sent: Vec<String>,
    /// The letters left where they are: their id, and why (`not_an_ingest_job`, or the queue's
    /// error code).
    pub kept: Vec<(DeadLetter, String)>,
}

/// One version of the master key, which event source secrets, external ids and sealing keys
/// are derived from. Its bytes never reach a log line, an error or `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey(Arc<[u8]>);

impl MasterKey {
    pub fn from_bytes(bytes: &[u8]) -> Self {
        MasterKey(Arc::from(bytes))
    }

    /// A key written as hex (surrounding white space allowed), at least 16 bytes long.
    pub fn from_hex(text: &str) -> Option<MasterKey> {
        let text = text.trim();
        if text.len() % 2 != 0 || text.len() < 32 {
            return None;
        }
        let bytes = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(MasterKey::from_bytes(&bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// Where the master key's versions come from: [`keyfile`] locally, [`secretsmanager`] on AWS.
#[async_trait]
pub trait MasterKeySource: Send + Sync {
    /// The keyring, read at its first use and kept for the process's life.
    async fn keyring(&self) -> Result<Keyring, BackendError>;
    /// The keyring, read again when the kept one lacks `version` (a `keys rotate` since this
    /// process read it), at most once a second.
    async fn keyring_with(&self, version: u32) -> Result<Keyring, BackendError> {
        let _ = version;
        self.keyring().await
    }
    /// Stores `new` in place of the keyring, if the source still holds `expected` (`keys
    /// rotate`, `keys retire`): never half-written, never over a change made meanwhile.
    async fn replace(&self, expected: &Keyring, new: &Keyring) -> Result<(), BackendError>;
}

/// AWS KMS, for master key versions it holds: the key material never leaves it.
#[async_trait]
pub trait Kms: Send + Sync {
    /// `GenerateMac` with HMAC_SHA_256 on `key_id`.
    async fn generate_mac(&self, key_id: &str, message: &[u8]) -> Result<Vec<u8>, BackendError>;
    /// `Encrypt` on `key_id`, with `{"integration_id": …}` as the encryption context.
    async fn encrypt(
        &self,
        key_id: &str,
        integration_id: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, BackendError>;
    /// `Decrypt` on `key_id` with the same context; `None` when the ciphertext does not open
    /// with them (`InvalidCiphertextException`: another integration's, or damaged).
    async fn decrypt(
        &self,
        key_id: &str,
        integration_id: &str,
        ciphertext: &[u8],
    ) -> Result<Option<Vec<u8>>, BackendError>;
}

/// A keyring kept in memory. It is read again when asked for a version it lacks (a `keys
/// rotate` reaches a running receiver at its first request that needs the new version; such
/// re-reads at most once per [`KeyCache::REREAD_AFTER`]) and once it is [`KeyCache::MAX_AGE`]
/// old (a `keys retire` reaches it within that; a failed re-read then keeps the kept keyring).
#[derive(Default)]
pub struct KeyCache(tokio::sync::Mutex<KeyCacheState>);

#[derive(Default)]
pub struct KeyCacheState {
    kept: Option<(std::time::Instant, Keyring)>,
    /// When a missing version last made it read again.
    missed_at: Option<std::time::Instant>,
}

impl KeyCache {
    pub const REREAD_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
    pub const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60);

    /// The kept keyring, or `read`'s when there is none, it lacks `want` or it is old.
    pub async fn get<F, Fut>(&self, want: Option<u32>, read: F) -> Result<Keyring, BackendError>
    where
        F: FnOnce() -> Fut + Send,
        Fut: std::future::Future<Output = Result<Keyring, BackendError>> + Send,
    {
        let mut state = self.0.lock().await;
        let state = &mut *state;
        if let Some((read_at, ring)) = state.kept.as_mut() {
            let has = want.is_none_or(|v| ring.version(v).is_ok());
            if has && read_at.elapsed() < Self::MAX_AGE {
                return Ok(ring.clone());
            }
            if has {
                // Old, but whole: a failed re-read keeps it (and is tried again later).
                match read().await {
                    Ok(fresh) => *ring = fresh,
                    Err(error) => crate::events::BackendUnavailable {
                        backend: error.backend,
                        error: error.detail(),
                    }
                    .emit(),
                }
                *read_at = std::time::Instant::now();
                return Ok(ring.clone());
            }
            if state
                .missed_at
                .is_some_and(|at| at.elapsed() < Self::REREAD_AFTER)
            {
                return Ok(ring.clone());
            }
            state.missed_at = Some(std::time::Instant::now());
        }
        let ring = read().await?;
        state.kept = Some((std::time::Instant::now(), ring.clone()));
        Ok(ring)
    }

    /// Forgets the kept keyring (after this process replaced it).
    pub async fn forget(&self) {
        self.0.lock().await.kept = None;
    }
}

/// What the ledger remembers of one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// It was enqueued, and the ledger still vouches for it.
    Enqueued,
    /// A request holds a claim on it now (or died holding one, until the lease ends).
    InFlight,
    /// The ledger has no record of it (never seen, or forgotten past its horizon).
    Unknown,
}

/// Reading the ledger (which jobs it remembers, for `reconcile` and listings past the horizon),
/// and keeping its entries to their integrations' horizons.
#[async_trait]
pub trait JobRecords: Send + Sync {
    /// What the ledger remembers of each job at `at`, in order.
    async fn recorded(
        &self,
        jobs: &[&IngestJob],
        at: LedgerTime,
    ) -> Result<Vec<Recorded>, BackendError>;
    /// Makes each remembered job of these integrations expire at its making plus its
    /// integration's current horizon: after a horizon changes, and once after an upgrade from
    /// a ledger that kept every job 30 days. Idempotent; answers how many entries changed.
    /// A ledger that reads each entry's expiry from the horizon at read time has nothing to do.
    async fn restamp(&self, integrations: &[Integration]) -> Result<u64, BackendError>;
    /// The ledger's write capacity as its database reports it (DynamoDB's `DescribeTable`),
    /// which a backfill paces its writes to; `None` for a ledger without one (SQLite, memory).
    async fn write_capacity(&self) -> Result<Option<crate::pace::WriteCapacity>, BackendError> {
        Ok(None)
    }
}

/// One queue's depth, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepth {
    /// `ingest`, `ingest-dlq`, or `embedded`.
    pub queue: String,
    /// Jobs waiting (approximately, on SQS).
    pub waiting: u64,
    /// Jobs a consumer holds right now (SQS only).
    pub in_flight: Option<u64>,
}

/// How many jobs wait: the ingest queue, and its dead-letter queue when it has one.
#[async_trait]
pub trait Backlog: Send + Sync {
    async fn depths(&self) -> Result<Vec<QueueDepth>, BackendError>;
}

/// The backends the handler and the CLI work with.
pub struct Backends {
    pub store: Arc<dyn Store>,
    pub intake: Arc<dyn Intake>,
    pub usage: Arc<dyn UsageLog>,
    pub cursors: Arc<dyn Cursors>,
    pub history: Arc<dyn History>,
    pub records: Arc<dyn JobRecords>,
    pub backlog: Arc<dyn Backlog>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_keys_round_trip_through_their_stored_form_and_unknown_ones_are_named() {
        for outcome in Outcome::ALL {
            for reason in std::iter::once(None).chain(Reason::ALL.iter().copied().map(Some)) {
                let key = UsageKey::new(outcome, reason);
                assert_eq!(key.to_string().parse::<UsageKey>(), Ok(key));
            }
        }
        assert!("accepted/nonsense".parse::<UsageKey>().is_err());
        assert!("later".parse::<UsageKey>().is_err());
    }

    #[test]
    fn a_backend_error_keeps_its_causes_and_writes_them_once() {
        let io = std::io::Error::other("connection reset");
        let error = BackendError::caused_by("sqs", Wrapped(io));
        assert_eq!(error.to_string(), "sqs backend: dispatch failure");
        assert_eq!(
            std::error::Error::source(&error).map(ToString::to_string),
            Some("connection reset".to_owned())
        );
        assert_eq!(error.detail(), "dispatch failure: connection reset");
        assert_eq!(
            error_chain(&error),
            "sqs backend: dispatch failure: connection reset"
        );
    }

    /// An error whose own message hides its cause, as an SDK's does.
    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("dispatch failure")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_master_key_is_at_least_16_bytes_of_hex_and_never_shown() {
        let key = MasterKey::from_hex(" 000102030405060708090a0b0c0d0e0f\n").unwrap();
        assert_eq!(key.as_bytes(), (0u8..16).collect::<Vec<_>>());
        assert!(
            MasterKey::from_hex("000102030405060708090a0b0c0d0e").is_none(),
            "15 bytes"
        );
        assert!(MasterKey::from_hex("zz0102030405060708090a0b0c0d0e0f").is_none());
        assert!(MasterKey::from_hex("0001020304050607ü090a0b0c0d0e0f").is_none());
        assert_eq!(format!("{key:?}"), "MasterKey(<redacted>)");
    }

    #[test]
    fn the_lease_outlasts_any_request_and_ends_inside_the_fifo_dedup_window() {
        assert!(MAX_REQUEST_TIME < CLAIM_LEASE);
        assert!(CLAIM_LEASE < SQS_FIFO_DEDUP_WINDOW);
    }

    #[test]
    fn each_commit_answer_maps_to_its_outcome_and_counts_once() {
        let key = |text: &str| text.parse::<UsageKey>().unwrap();
        let skipped = Settled {
            key: Some("a.txt".into()),
            outcome: Outcome::Skipped,
            reason: Some(Reason::SuffixFiltered),
            job_id: None,
        };
        let settled = [
            skipped.clone(),
            Settled {
                key: None,
                ..skipped
            },
        ];
        let committed = [
            Committed::Enqueued,
            Committed::Duplicate,
            Committed::InFlight,
            Committed::Failed,
            Committed::Refused,
        ];
        let jobs = ["a", "b", "c", "d", "e"].map(|key| (key, key));
        let usage = Settlement::new(settled.to_vec(), jobs, &committed, Utc::now()).usage();
        assert_eq!(
            usage,
            UsageCounts::from([
                (key("accepted"), 1),
                (key("duplicate/duplicate"), 1),
                (key("rejected/queue_refused"), 1),
                (key("retry_later/backend_unavailable"), 1),
                (key("retry_later/in_flight"), 1),
                (key("skipped/suffix_filtered"), 2),
            ])
        );
    }

    #[test]
    fn the_history_of_a_commit_keeps_every_event_with_a_key_and_the_last_per_outcome() {
        let (a, b) = (
            memory::sample_job("j_a", "a.pdf"),
            memory::sample_job("j_b", "b.pdf"),
        );
        let skipped = Settled {
            key: Some("c.txt".into()),
            outcome: Outcome::Skipped,
            reason: Some(Reason::SuffixFiltered),
            job_id: None,
        };
        let unparsed = Settled {
            key: None,
            outcome: Outcome::Rejected,
            reason: Some(Reason::MalformedEvent),
            job_id: None,
        };
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let commit = Commit {
            integration_id: "int_1",
            jobs: vec![&a, &b],
            settled: vec![skipped, unparsed],
            now,
            horizon: Duration::days(400),
            limit: None,
            first_versions_only: false,
        };
        let history = commit
            .settlement(&[Committed::Enqueued, Committed::Duplicate])
            .history();
        let keys: Vec<(&str, Outcome, Option<&str>)> = history
            .iter()
            .map(|s| (s.key.as_str(), s.outcome, s.job_id.as_deref()))
            .collect();
        assert_eq!(
            keys,
            [
                ("c.txt", Outcome::Skipped, None),
                ("a.pdf", Outcome::Accepted, Some("j_a")),
                ("b.pdf", Outcome::Duplicate, Some("j_b")),
            ]
        );
        let last = Seen::last_per_outcome(&history);
        assert_eq!(last.len(), 3);
        assert_eq!(last[&Outcome::Duplicate].key, "b.pdf");
    }
}

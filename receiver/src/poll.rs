//! Poll ticks and backfills: the bucket listed page by page, each object put through the same
//! decision, ledger and queue as an event, so an object seen both ways is still one job.
//!
//! - A **poll tick** lists every active poll-mode integration's bucket under its prefix and
//!   considers each object modified since the integration's watermark, less an overlap window
//!   (S3 dates a multipart upload by its start, so an object can appear later than its
//!   `LastModified` says). The watermark is the newest `LastModified` a tick has listed, in the
//!   storage's own clock; it advances only when the whole tick succeeded. With no watermark yet,
//!   a tick considers what was modified since the integration was created.
//! - A **safety-net listing** is the same tick for an event-mode integration with a safety net
//!   (`set-mode ID event --safety-net 1h`), once per interval: its events keep making jobs, and
//!   the listing makes a job of each object no event brought, logged and counted as
//!   `missed_by_events`. Its line carries the reconcile of the window it looked at.
//! - A **backfill** considers every object under a prefix (modified since a time, if given),
//!   in any mode. It stores the last key of every page it committed, so a killed run resumes
//!   there; the ledger makes the pages it repeats cost no second job.
//!
//! Listing the next page overlaps committing the current one. Memory holds one page at a time,
//! whatever the bucket's size.

use crate::backend::bucket::{AccessError, BucketSource, Listing, Page, ReadCredentials};
use crate::backend::{
    error_chain, BackendError, Backends, Cursors, Intake, JobRecords, LedgerTime, MasterKeySource,
    Store,
};
use crate::events::{
    BackfillPaced, BackfillUnpaced, MissedByEvents, ObjectRejected, ObjectSkipped, PollFailed,
    PollTick,
};
use crate::item::Item;
use crate::pace::{Pace, PaceSource};
use crate::settle::{hold_past_horizon, settle_within_rate};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use futures::StreamExt;
use relay_protocol::event::listed::{ListedFrom, ListedObject};
use relay_protocol::{decide_via, Integration, Mode, ObjectEvent, Outcome, Reason, Status, Via};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// The cursor holding a poll-mode integration's watermark.
pub(crate) const POLL_CURSOR: &str = "poll";
/// The cursor holding an unfinished backfill's place.
pub(crate) const BACKFILL_CURSOR: &str = "backfill";
/// The cursor holding a safety net's last listing ([`SafetyNetCursor`]).
pub(crate) const SAFETY_NET_CURSOR: &str = "safety_net";

/// A safety net's last listing: when it started, and what it found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SafetyNetCursor {
    pub listed_at: DateTime<Utc>,
    /// Jobs it made: objects no event brought.
    pub missed_by_events: u64,
}
/// How far past the receiver's own clock a listing's `LastModified` may move the watermark: the
/// storage's clock may run a little ahead, but an object dated in the future (9999-12-31, a
/// skewed client) must not carry the watermark past every later upload.
pub(crate) const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);
/// How many integrations one tick lists at once.
const TICKS_AT_ONCE: usize = 4;

/// How long and how many pages one run may take before it stops by name
/// (`listing_too_long`): a storage that keeps handing over new pages must not hold a poller
/// (and every integration after it) forever. What the run committed stays; a backfill resumes
/// after its last page.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunLimits {
    pub(crate) time: std::time::Duration,
    pub(crate) pages: u64,
}

/// A tick: 15 minutes (the Lambda poller's own limit) and 10,000 pages (10 million objects).
pub(crate) const TICK_LIMITS: RunLimits = RunLimits {
    time: std::time::Duration::from_secs(15 * 60),
    pages: 10_000,
};
/// One backfill run: a day, and a billion objects; run it again to go on.
pub(crate) const BACKFILL_LIMITS: RunLimits = RunLimits {
    time: std::time::Duration::from_secs(24 * 60 * 60),
    pages: 1_000_000,
};

impl RunLimits {
    /// Whether a run that has listed `pages` pages since `started` must stop.
    pub(crate) fn check(self, pages: u64, started: Instant) -> Result<(), RunError> {
        let elapsed = started.elapsed();
        if pages > self.pages || elapsed >= self.time {
            return Err(RunError::TooLong {
                pages,
                seconds: elapsed.as_secs(),
            });
        }
        Ok(())
    }
}

/// How far before the watermark a tick looks again, by default.
pub(crate) const DEFAULT_OVERLAP: Duration = Duration::minutes(15);

/// What a run did with the objects it listed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RunTally {
    /// Objects listed (each key's latest version).
    pub listed: u64,
    /// Listed objects the run put through the decision (modified recently enough).
    pub considered: u64,
    /// New jobs on the ingest queue (with `--dry-run`: jobs the decision would make).
    pub jobs: u64,
    /// Objects that were jobs before.
    pub duplicates: u64,
    /// Skipped objects, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Jobs the queue refused as they are (`queue_refused`).
    pub rejected: u64,
    /// A safety-net listing's jobs: objects no event brought (each is also in `jobs`); absent
    /// from other runs' reports.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missed_by_events: u64,
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

impl RunTally {
    /// Adds another run's (or page's) figures to these.
    pub(crate) fn add(&mut self, other: &RunTally) {
        self.listed += other.listed;
        self.considered += other.considered;
        self.jobs += other.jobs;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
        self.missed_by_events += other.missed_by_events;
        for (reason, count) in &other.skipped {
            *self.skipped.entry(reason.clone()).or_default() += count;
        }
    }

    pub(crate) fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// `suffix_filtered=3 too_large=1`, for a log line.
    pub(crate) fn skipped_by_reason(&self) -> String {
        let parts: Vec<String> = self
            .skipped
            .iter()
            .map(|(reason, n)| format!("{reason}={n}"))
            .collect();
        parts.join(" ")
    }
}

/// Why a run stopped before its end. Nothing it did is lost: its cursor stays where the last
/// committed page left it.
#[derive(Debug)]
pub(crate) enum RunError {
    NoIntegration(String),
    /// The integration was paused (before or during the run).
    Paused(String),
    /// A poll tick of an integration in event mode.
    NotPollMode(String),
    Access(AccessError),
    Backend(BackendError),
    /// Some jobs could not be enqueued this time (the queue or ledger failed for them): the
    /// next run takes them again.
    Unsettled(u64),
    /// The listing went on past the run's limits ([`RunLimits`]).
    TooLong {
        pages: u64,
        seconds: u64,
    },
}

impl RunError {
    /// A stable name for logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            RunError::NoIntegration(_) => "unknown_integration",
            RunError::Paused(_) => "paused",
            RunError::NotPollMode(_) => "mode_mismatch",
            RunError::Access(error) => error.name(),
            RunError::Backend(_) => "backend_unavailable",
            RunError::Unsettled(_) => "jobs_unsettled",
            RunError::TooLong { .. } => "listing_too_long",
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::NoIntegration(id) => write!(f, "no integration {id}"),
            RunError::Paused(id) => {
                write!(f, "integration {id} is paused: resume it first")
            }
            RunError::NotPollMode(id) => write!(
                f,
                "integration {id} is in event mode with no safety net: poll ticks list \
                 poll-mode integrations (`set-mode {id} poll`) and safety nets (`set-mode {id} \
                 event --safety-net 1h`), and `backfill {id}` lists it once in any mode"
            ),
            RunError::Access(error) => error.fmt(f),
            RunError::Backend(error) => f.write_str(&error_chain(error)),
            RunError::Unsettled(n) => write!(
                f,
                "{n} jobs could not be enqueued this time; the next run takes them again"
            ),
            RunError::TooLong { pages, seconds } => write!(
                f,
                "the listing went on past this run's limits ({pages} pages in {seconds} s); what \
                 it took stays taken, and the next run starts again"
            ),
        }
    }
}

impl std::error::Error for RunError {}

impl From<AccessError> for RunError {
    fn from(error: AccessError) -> Self {
        RunError::Access(error)
    }
}

impl From<BackendError> for RunError {
    fn from(error: BackendError) -> Self {
        RunError::Backend(error)
    }
}

/// What a backfill lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BackfillScope {
    /// Listing prefix: the `--prefix` given, else the integration's.
    pub prefix: Option<String>,
    /// Only objects modified at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// An unfinished backfill's place, stored after every committed page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BackfillCursor {
    pub scope: BackfillScope,
    /// The last key of the last page committed: the listing resumes after it.
    pub after: Option<String>,
    pub tally: RunTally,
    pub started_at: DateTime<Utc>,
}

/// Told about a backfill's progress after every page.
pub(crate) trait Progress: Send {
    /// After each page: this run's figures, and how long it has run.
    fn page(&mut self, run: &RunTally, elapsed_s: f64);
}

/// A finished backfill.
#[derive(Debug)]
pub(crate) struct BackfillDone {
    /// What this run did.
    pub(crate) run: RunTally,
    /// What every run of this backfill did, since the first one started (the same as `run`
    /// unless it resumed an interrupted one).
    pub(crate) total: RunTally,
    /// The key an interrupted run had reached, when this run resumed after it.
    pub(crate) resumed_after: Option<String>,
    /// The rate its ledger writes were held to, and how long it waited for it.
    pub(crate) paced: Option<Paced>,
}

/// A backfill's pace, as its report shows it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct Paced {
    pub(crate) write_units_per_second: u64,
    /// `provisioned`, `warm_throughput`, `max_throughput` (half the table's figure) or `flag`.
    pub(crate) source: PaceSource,
    /// The table's own figure (provisioned, warm or maximum units a second).
    pub(crate) table_units: Option<u64>,
    /// Commits of 100 jobs in flight at once: as many as the rate needs and the queue allows.
    pub(crate) commits_at_once: usize,
    /// Seconds spent waiting for the rate.
    pub(crate) waited_s: f64,
}

/// A backfill's [`Pace`] on the clock: charges each settled part its write units, and waits
/// before the next while the run is ahead of its rate.
pub(crate) struct Pacer {
    pace: Pace,
    /// The pace's commits in flight, as many as the intake takes.
    commits_at_once: usize,
    started: Instant,
    waited: std::time::Duration,
}

impl Pacer {
    fn new(pace: Pace, intake: &dyn Intake) -> Self {
        Pacer {
            commits_at_once: pace.commits_at_once().min(intake.commits_at_once()).max(1),
            pace,
            started: Instant::now(),
            waited: std::time::Duration::ZERO,
        }
    }

    /// Waits while the run is more than a second ahead of its pace; answers when the next part
    /// begins (since the run started).
    async fn wait_turn(&mut self) -> std::time::Duration {
        let wait = self.pace.wait(self.started.elapsed());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            self.waited += wait;
        }
        self.started.elapsed()
    }

    /// Charges `items`, settled from `began` (since the run started) until now.
    fn charge(&mut self, items: &[Item], began: std::time::Duration) {
        let count = |outcome| items.iter().filter(|item| item.outcome == outcome).count() as u64;
        let units = Pace::units_of(count(Outcome::Accepted), count(Outcome::Duplicate));
        self.pace.charge(units, began);
    }

    fn report(self) -> Paced {
        Paced {
            write_units_per_second: self.pace.units_per_second(),
            source: self.pace.source(),
            table_units: self.pace.table_units(),
            commits_at_once: self.commits_at_once,
            waited_s: self.waited.as_secs_f64(),
        }
    }
}

/// Runs poll ticks and backfills against the backends.
pub(crate) struct Poller {
    store: Arc<dyn Store>,
    intake: Arc<dyn Intake>,
    cursors: Arc<dyn Cursors>,
    records: Arc<dyn JobRecords>,
    keys: Arc<dyn MasterKeySource>,
    buckets: Arc<dyn BucketSource>,
    tick_limits: RunLimits,
    backfill_limits: RunLimits,
}

/// One run: an integration, its listing's id, whether it may change anything, and whether it
/// makes jobs of objects past the horizon that the ledger does not remember.
struct Run<'a> {
    integration: &'a Integration,
    run_id: String,
    dry_run: bool,
    past_horizon: bool,
    /// A safety-net listing: each job it makes is an object no event brought.
    safety_net: bool,
}

/// How a backfill runs.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BackfillOptions {
    /// Start from the first key even if an interrupted backfill of the same scope left a place.
    pub restart: bool,
    /// Decide and count, enqueue nothing.
    pub dry_run: bool,
    /// Make jobs of objects past the horizon that the ledger does not remember.
    pub past_horizon: bool,
    /// Write units a second for the ledger (default: half its table's capacity).
    pub write_units: Option<u64>,
}

impl Poller {
    pub(crate) fn new(
        backends: &Backends,
        keys: Arc<dyn MasterKeySource>,
        buckets: Arc<dyn BucketSource>,
    ) -> Self {
        Poller {
            store: Arc::clone(&backends.store),
            intake: Arc::clone(&backends.intake),
            cursors: Arc::clone(&backends.cursors),
            records: Arc::clone(&backends.records),
            keys,
            buckets,
            tick_limits: TICK_LIMITS,
            backfill_limits: BACKFILL_LIMITS,
        }
    }

    /// The same poller with other limits (tests).
    #[cfg(test)]
    fn with_limits(mut self, tick: RunLimits, backfill: RunLimits) -> Self {
        self.tick_limits = tick;
        self.backfill_limits = backfill;
        self
    }

    /// One tick over every active poll-mode integration and every safety net that is due, or
    /// only `only` (a safety net then lists at once). Each one's result, in id order; one
    /// failing does not stop the others.
    pub(crate) async fn tick(
        &self,
        only: Option<&str>,
        overlap: Duration,
    ) -> Result<Vec<(String, Result<RunTally, RunError>)>, RunError> {
        let integrations = match only {
            Some(id) => {
                let integration = self.load(id).await?;
                if !is_listed(&integration) {
                    return Err(RunError::NotPollMode(id.to_owned()));
                }
                vec![integration]
            }
            None => self.store.list().await?,
        };
        let listed = integrations.into_iter().filter(|integration| {
            is_listed(integration) && (integration.status == Status::Active || only.is_some())
        });
        // Integrations are listed side by side, each within its limits, so one slow or
        // endless bucket cannot hold the others back.
        let results: Vec<Option<(String, Result<RunTally, RunError>)>> =
            futures::stream::iter(listed)
                .map(|integration| async move {
                    let result = if integration.status == Status::Paused {
                        Err(RunError::Paused(integration.id.clone()))
                    } else {
                        match self.due(&integration, only.is_some()).await {
                            Ok(false) => return None,
                            Ok(true) => self.tick_one(&integration, overlap).await,
                            Err(error) => Err(error),
                        }
                    };
                    Some((integration.id, result))
                })
                .buffered(TICKS_AT_ONCE)
                .collect()
                .await;
        Ok(results.into_iter().flatten().collect())
    }

    /// Whether a tick lists `integration` now: poll mode on every tick; a safety net once its
    /// interval has passed since its last listing began (or when `forced`).
    async fn due(&self, integration: &Integration, forced: bool) -> Result<bool, RunError> {
        let Some(every) = integration.safety_net() else {
            return Ok(integration.mode == Mode::Poll);
        };
        if forced {
            return Ok(true);
        }
        let last = self
            .cursors
            .load(&integration.id, SAFETY_NET_CURSOR)
            .await?
            .and_then(|text| serde_json::from_str::<SafetyNetCursor>(&text).ok());
        Ok(last.is_none_or(|last| last.listed_at + every <= Utc::now()))
    }

    /// Ticks every active poll-mode integration (and each safety net when due) every `every`, for as long as the process
    /// lives (`serve --poll-every`). Each integration is ticked on its own: one whose tick is
    /// still running when its next is due is passed over until it ends, and the others go on.
    pub(crate) async fn run_every(self: Arc<Self>, every: std::time::Duration) {
        let running: Arc<std::sync::Mutex<HashSet<String>>> = Arc::default();
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let integrations = match self.store.list().await {
                Ok(all) => all,
                Err(error) => {
                    let error = RunError::from(error);
                    PollFailed {
                        integration_id: None,
                        error: error.name(),
                        detail: error.to_string(),
                    }
                    .emit();
                    continue;
                }
            };
            let due = integrations
                .into_iter()
                .filter(|i| is_listed(i) && i.status == Status::Active);
            for integration in due {
                let started = running
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(integration.id.clone());
                if !started {
                    continue; // its last tick is still running
                }
                let (poller, running) = (Arc::clone(&self), Arc::clone(&running));
                tokio::spawn(async move {
                    // A failure is logged by the tick; the next one is due at the next interval.
                    if poller.due(&integration, false).await.unwrap_or(true) {
                        let _ = poller.tick_one(&integration, DEFAULT_OVERLAP).await;
                    }
                    running
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&integration.id);
                });
            }
        }
    }

    /// One integration's tick; a failure is logged (`poll_failed`) as well as returned.
    async fn tick_one(
        &self,
        integration: &Integration,
        overlap: Duration,
    ) -> Result<RunTally, RunError> {
        let result = self.tick_listing(integration, overlap).await;
        if let Err(error) = &result {
            PollFailed {
                integration_id: Some(&integration.id),
                error: error.name(),
                detail: error.to_string(),
            }
            .emit();
        }
        result
    }

    async fn tick_listing(
        &self,
        integration: &Integration,
        overlap: Duration,
    ) -> Result<RunTally, RunError> {
        let started = Instant::now();
        let safety_net = integration.safety_net().is_some();
        let kind = if safety_net { "safety_net" } else { "poll" };
        let watermark = match self.cursors.load(&integration.id, POLL_CURSOR).await? {
            Some(text) => parse_time(&text).unwrap_or(integration.created_at),
            None => integration.created_at,
        };
        let from = watermark - overlap;
        let prefix = integration.prefix.as_deref();
        let mut listing = self.listing_of(integration, prefix, None).await?;
        let now = Utc::now();
        let run = Run {
            integration,
            run_id: format!(
                "{kind}:{}",
                now.to_rfc3339_opts(SecondsFormat::Millis, true)
            ),
            dry_run: false,
            past_horizon: false,
            safety_net,
        };
        let mut tally = RunTally::default();
        let mut newest = watermark;
        let recent =
            |object: &ListedObject| object.last_modified.is_none_or(|modified| modified >= from);
        // The watermark follows the storage's clock, but never past ours by more than the skew.
        let latest_mark = now + MAX_CLOCK_SKEW;
        let mut pages = 0;
        let mut page = listing.next_page().await?;
        while let Some(current) = page {
            pages += 1;
            self.tick_limits.check(pages, started)?;
            for object in &current.objects {
                if let Some(modified) = object.last_modified {
                    newest = newest.max(modified.min(latest_mark));
                }
            }
            let (next, taken) = tokio::join!(
                listing.next_page(),
                self.take_page(&run, current, &recent, &mut tally, None)
            );
            taken?;
            page = next?;
        }
        let mark = newest.to_rfc3339_opts(SecondsFormat::Millis, true);
        self.cursors
            .save(&integration.id, POLL_CURSOR, Some(&mark))
            .await?;
        let mut summary = format!(
            "listed {} objects under prefix={}",
            tally.listed,
            prefix.unwrap_or("")
        );
        if safety_net {
            let net = SafetyNetCursor {
                listed_at: now,
                missed_by_events: tally.missed_by_events,
            };
            let text = serde_json::to_string(&net)
                .map_err(|e| RunError::Backend(BackendError::new("cursor", e)))?;
            self.cursors
                .save(&integration.id, SAFETY_NET_CURSOR, Some(&text))
                .await?;
            summary = format!(
                "safety net: {summary}; of the {} modified since {}, {} had a job from an \
                 event, {} missed by events (now jobs), {} skipped",
                tally.considered,
                from.to_rfc3339_opts(SecondsFormat::Secs, true),
                tally.duplicates,
                tally.missed_by_events,
                tally.skipped_total()
            );
        }
        PollTick {
            integration_id: &integration.id,
            mode: integration.mode.as_str(),
            summary,
            listed: tally.listed,
            considered: tally.considered,
            jobs: tally.jobs,
            duplicates: tally.duplicates,
            skipped: tally.skipped_total(),
            skipped_by_reason: tally.skipped_by_reason(),
            rejected: tally.rejected,
            missed_by_events: tally.missed_by_events,
            watermark: &mark,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        }
        .emit();
        Ok(tally)
    }

    /// Lists `id`'s bucket once and turns every object in `scope` into a job, resuming an
    /// interrupted backfill of the same scope unless `restart`.
    pub(crate) async fn backfill(
        &self,
        id: &str,
        scope: BackfillScope,
        options: BackfillOptions,
        progress: &mut dyn Progress,
    ) -> Result<BackfillDone, RunError> {
        let BackfillOptions {
            restart,
            dry_run,
            past_horizon,
            write_units,
        } = options;
        let integration = self.load(id).await?;
        if integration.status == Status::Paused {
            return Err(RunError::Paused(id.to_owned()));
        }
        let mut pacer = if dry_run {
            None
        } else {
            self.pace(id, write_units).await
        };
        let scope = BackfillScope {
            prefix: scope.prefix.or_else(|| integration.prefix.clone()),
            since: scope.since,
        };
        let now = Utc::now();
        let stored = if restart || dry_run {
            None
        } else {
            self.cursors.load(id, BACKFILL_CURSOR).await?
        };
        let resumed = stored
            .and_then(|text| serde_json::from_str::<BackfillCursor>(&text).ok())
            .filter(|cursor| cursor.scope == scope);
        let mut cursor = resumed.unwrap_or(BackfillCursor {
            scope: scope.clone(),
            after: None,
            tally: RunTally::default(),
            started_at: now,
        });
        let resumed_after = cursor.after.clone();
        let mut listing = self
            .listing_of(&integration, scope.prefix.as_deref(), cursor.after.clone())
            .await?;
        let run = Run {
            integration: &integration,
            run_id: format!(
                "backfill:{}",
                cursor
                    .started_at
                    .to_rfc3339_opts(SecondsFormat::Millis, true)
            ),
            dry_run,
            past_horizon,
            safety_net: false,
        };
        let since = scope.since;
        let in_scope = |object: &ListedObject| {
            since.is_none_or(|since| {
                object
                    .last_modified
                    .is_none_or(|modified| modified >= since)
            })
        };
        let started = Instant::now();
        let mut this_run = RunTally::default();
        let mut pages = 0;
        let mut page = listing.next_page().await?;
        while let Some(current) = page {
            pages += 1;
            self.backfill_limits.check(pages, started)?;
            let last_key = current.last_key.clone();
            let mut taken_here = RunTally::default();
            let (next, taken) = tokio::join!(
                listing.next_page(),
                self.take_page(&run, current, &in_scope, &mut taken_here, pacer.as_mut())
            );
            // What a failed page did is counted too: its committed jobs are on the queue.
            this_run.add(&taken_here);
            cursor.tally.add(&taken_here);
            taken?;
            if last_key.is_some() {
                cursor.after = last_key;
            }
            if !dry_run {
                let text = serde_json::to_string(&cursor)
                    .map_err(|e| RunError::Backend(BackendError::new("cursor", e)))?;
                self.cursors.save(id, BACKFILL_CURSOR, Some(&text)).await?;
            }
            progress.page(&this_run, started.elapsed().as_secs_f64());
            page = next?;
        }
        if !dry_run {
            self.cursors.save(id, BACKFILL_CURSOR, None).await?;
        }
        Ok(BackfillDone {
            run: this_run,
            total: cursor.tally,
            resumed_after,
            paced: pacer.map(Pacer::report),
        })
    }

    /// The backfill's pace: `write_units` if given, else half what the ledger's table reports.
    /// A capacity that cannot be read (the operator may not `DescribeTable`) is said, and the
    /// backfill runs unpaced.
    async fn pace(&self, id: &str, write_units: Option<u64>) -> Option<Pacer> {
        let capacity = if write_units.is_some() {
            None
        } else {
            match self.records.write_capacity().await {
                Ok(capacity) => capacity,
                Err(error) => {
                    BackfillUnpaced {
                        integration_id: id,
                        detail: error_chain(&error),
                    }
                    .emit();
                    None
                }
            }
        };
        let pacer = Pacer::new(Pace::of(capacity, write_units)?, self.intake.as_ref());
        BackfillPaced {
            integration_id: id,
            write_units_per_second: pacer.pace.units_per_second(),
            source: pacer.pace.source().as_str(),
            table_units: pacer.pace.table_units(),
            commits_at_once: pacer.commits_at_once,
        }
        .emit();
        Some(pacer)
    }

    /// Puts one page's objects that `wanted` keeps through the decision and settles them
    /// ([`settle`]: the handler's path). Skips are logged one line each.
    async fn take_page(
        &self,
        run: &Run<'_>,
        page: Page,
        wanted: &(dyn Fn(&ListedObject) -> bool + Sync),
        tally: &mut RunTally,
        mut pacer: Option<&mut Pacer>,
    ) -> Result<(), RunError> {
        let integration = run.integration;
        let from = ListedFrom {
            provider: integration.provider,
            account: integration.account.as_deref(),
            region: integration.region.as_deref(),
            bucket: &integration.bucket,
            run_id: &run.run_id,
        };
        let now = Utc::now();
        tally.listed += page.objects.len() as u64;
        let mut items = Vec::new();
        let mut modified = Vec::new();
        for object in page.objects.into_iter().filter(|object| wanted(object)) {
            tally.considered += 1;
            let id = object.key.clone();
            modified.push(object.last_modified);
            let event = ObjectEvent::listed(&from, object);
            let item =
                Item::from_decision(id, decide_via(Via::Listing, integration, Ok(event), now));
            if item.reason == Some(Reason::Paused) {
                return Err(RunError::Paused(integration.id.clone()));
            }
            items.push(item);
        }
        if !run.past_horizon {
            let at = LedgerTime::new(now, integration);
            hold_past_horizon(self.records.as_ref(), &mut items, &modified, at).await?;
        }
        for item in items.iter().filter(|item| item.job.is_none()) {
            let reason = item.reason.map_or("", Reason::as_str);
            ObjectSkipped {
                integration_id: &integration.id,
                run: &run.run_id,
                reason,
                bucket: &integration.bucket,
                key: item.key().unwrap_or(""),
            }
            .emit();
            *tally.skipped.entry(reason.to_owned()).or_default() += 1;
        }
        if run.dry_run {
            tally.jobs += items.iter().filter(|item| item.job.is_some()).count() as u64;
            return Ok(());
        }
        // Paced, a page goes in parts of about a second of the pace each, waiting between them.
        let part = pacer
            .as_ref()
            .map_or(items.len(), |pacer| pacer.pace.part_len());
        for part in items.chunks_mut(part.max(1)) {
            let began = match pacer.as_deref_mut() {
                Some(pacer) => Some(pacer.wait_turn().await),
                None => None,
            };
            let at_once = pacer.as_ref().map_or(1, |pacer| pacer.commits_at_once);
            settle_within_rate(self.intake.as_ref(), integration, part, now, at_once).await?;
            if let (Some(pacer), Some(began)) = (pacer.as_deref_mut(), began) {
                pacer.charge(part, began);
            }
        }
        let mut unsettled = 0;
        for item in items.iter().filter(|item| item.job.is_some()) {
            match item.outcome {
                Outcome::Accepted if run.safety_net => {
                    tally.jobs += 1;
                    tally.missed_by_events += 1;
                    MissedByEvents {
                        integration_id: &integration.id,
                        run: &run.run_id,
                        bucket: &integration.bucket,
                        key: item.key().unwrap_or(""),
                        job_id: item.job.as_ref().map_or("", |job| job.job_id.as_str()),
                    }
                    .emit();
                }
                Outcome::Accepted => tally.jobs += 1,
                Outcome::Duplicate => tally.duplicates += 1,
                Outcome::RetryLater => unsettled += 1,
                Outcome::Rejected => {
                    tally.rejected += 1;
                    ObjectRejected {
                        integration_id: &integration.id,
                        run: &run.run_id,
                        reason: item.reason.map_or("", Reason::as_str),
                        bucket: &integration.bucket,
                        key: item.key().unwrap_or(""),
                    }
                    .emit();
                }
                Outcome::Skipped => {}
            }
        }
        if unsettled > 0 {
            return Err(RunError::Unsettled(unsettled));
        }
        Ok(())
    }

    /// A listing of `integration`'s bucket under `prefix` (after `after`), with its read access
    /// resolved.
    pub(crate) async fn listing_of(
        &self,
        integration: &Integration,
        prefix: Option<&str>,
        after: Option<String>,
    ) -> Result<Box<dyn Listing>, RunError> {
        let version = crate::sealed::sealed_version(integration)
            .unwrap_or(integration.external_id_key_version);
        let ring = self.keys.keyring_with(version).await?;
        let credentials = ReadCredentials::resolve(integration, &ring).await?;
        Ok(self
            .buckets
            .open(integration, &credentials, prefix, after)
            .await?)
    }

    /// The intake jobs are committed through, and the ledger's records of them.
    pub(crate) fn ledger(&self) -> (&dyn Intake, &dyn JobRecords) {
        (self.intake.as_ref(), self.records.as_ref())
    }

    /// What a run of it may take: a backfill's limits (a reconcile lists as much).
    pub(crate) fn run_limits(&self) -> RunLimits {
        self.backfill_limits
    }

    pub(crate) async fn load(&self, id: &str) -> Result<Integration, RunError> {
        self.store
            .get(id)
            .await?
            .ok_or_else(|| RunError::NoIntegration(id.to_owned()))
    }
}

/// Whether a tick lists `integration`: poll mode, or event mode with a safety net.
fn is_listed(integration: &Integration) -> bool {
    integration.mode == Mode::Poll || integration.safety_net().is_some()
}

/// A listing's or a cursor's RFC 3339 time.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::{
        backends, with_test_token, MemoryBucket, MemoryCursors, MemoryQueue, StaticKey,
    };
    use crate::backend::MasterKey;
    use relay_protocol::integration::NewIntegration;
    use relay_protocol::Provider;

    const T0: &str = "2026-11-01T00:00:00Z";

    fn at(minutes: i64) -> String {
        (parse_time(T0).unwrap() + Duration::minutes(minutes))
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    struct Rig {
        poller: Poller,
        queue: Arc<MemoryQueue>,
        cursors: Arc<MemoryCursors>,
        bucket: Arc<MemoryBucket>,
        id: String,
    }

    const MASTER: &[u8] = b"0123456789abcdef";

    fn rig(mode: Mode, page_size: usize) -> Rig {
        let mut integration = NewIntegration {
            mode,
            account: Some("4f3c1e0d9b8a7c6d5e4f3a2b1c0d9e8f".into()),
            ..NewIntegration::new(Provider::R2, "uploads")
        }
        .build("test", parse_time(T0).unwrap())
        .unwrap();
        with_test_token(&mut integration, MASTER);
        let (backends, queue, cursors) = backends([integration.clone()]);
        let bucket = Arc::new(MemoryBucket::new(page_size));
        let keys = Arc::new(StaticKey::new(MasterKey::from_bytes(MASTER)));
        let poller = Poller::new(&backends, keys, Arc::new(bucket.clone()));
        Rig {
            poller,
            queue,
            cursors,
            bucket,
            id: integration.id,
        }
    }

    impl Rig {
        async fn tick(&self) -> Result<RunTally, RunError> {
            let mut results = self.poller.tick(None, DEFAULT_OVERLAP).await?;
            assert_eq!(results.len(), 1);
            results.remove(0).1
        }

        async fn backfill(&self, since: Option<&str>) -> Result<BackfillDone, RunError> {
            let scope = BackfillScope {
                prefix: None,
                since: since.and_then(parse_time),
            };
            self.poller
                .backfill(&self.id, scope, BackfillOptions::default(), &mut Silent)
                .await
        }

        async fn cursor(&self, name: &str) -> Option<String> {
            self.cursors.load(&self.id, name).await.unwrap()
        }

        /// An event for `key` as the bucket holds it (modified at `modified`), settled at `at`:
        /// the job its event would have made then.
        async fn event(&self, key: &str, modified: &str, at: DateTime<Utc>) -> Outcome {
            let integration = self.poller.load(&self.id).await.unwrap();
            let object = ListedObject {
                key: key.to_owned(),
                size: Some(1),
                etag: Some(format!("\"etag-{key}-{modified}\"")),
                version_id: None,
                last_modified: parse_time(modified),
            };
            let from = ListedFrom {
                provider: integration.provider,
                account: integration.account.as_deref(),
                region: None,
                bucket: &integration.bucket,
                run_id: "event",
            };
            let event = ObjectEvent::listed(&from, object);
            let decision = decide_via(Via::Listing, &integration, Ok(event), at);
            let mut items = [Item::from_decision(key.to_owned(), decision)];
            let intake = self.poller.intake.as_ref();
            crate::settle::settle(intake, &integration, &mut items, at)
                .await
                .unwrap();
            items[0].outcome
        }

        async fn change(&self, change: impl FnOnce(&mut Integration)) {
            let mut integration = self.poller.load(&self.id).await.unwrap();
            change(&mut integration);
            self.poller.store.put(&integration).await.unwrap();
        }

        /// The keys on the queue, each asserted to be there once.
        fn queued(&self) -> Vec<String> {
            let mut keys: Vec<String> = self.queue.jobs().into_iter().map(|job| job.key).collect();
            keys.sort();
            let count = keys.len();
            keys.dedup();
            assert_eq!(keys.len(), count, "a job enqueued twice");
            keys
        }
    }

    struct Silent;

    impl Progress for Silent {
        fn page(&mut self, _tally: &RunTally, _elapsed_s: f64) {}
    }

    #[tokio::test]
    async fn a_tick_takes_what_changed_since_the_watermark_less_the_overlap() {
        let rig = rig(Mode::Poll, 1000);
        rig.bucket.put("before-the-integration.pdf", &at(-60));
        rig.bucket.put("a.pdf", &at(1));
        let tally = rig.tick().await.unwrap();
        assert_eq!((tally.listed, tally.considered, tally.jobs), (2, 1, 1));
        assert_eq!(
            rig.cursor(POLL_CURSOR).await.as_deref(),
            Some("2026-11-01T00:01:00.000Z")
        );

        rig.bucket.put("b.pdf", &at(2));
        // Dated 10 minutes before the watermark (a long multipart upload): the overlap takes it.
        rig.bucket.put("late.pdf", &at(-9));
        rig.bucket.put("too-late.pdf", &at(-20));
        let tally = rig.tick().await.unwrap();
        assert_eq!((tally.jobs, tally.duplicates), (2, 1));
        assert_eq!(rig.queued(), ["a.pdf", "b.pdf", "late.pdf"]);
        assert_eq!(
            rig.cursor(POLL_CURSOR).await.as_deref(),
            Some("2026-11-01T00:02:00.000Z")
        );
    }

    #[tokio::test]
    async fn an_object_dated_in_the_future_is_taken_and_does_not_hold_the_watermark_there() {
        let rig = rig(Mode::Poll, 1000);
        rig.bucket.put("future.pdf", "9999-12-31T00:00:00Z");
        let tally = rig.tick().await.unwrap();
        assert_eq!(
            tally.jobs, 1,
            "an object dated in the future is still taken"
        );
        let mark = parse_time(&rig.cursor(POLL_CURSOR).await.unwrap()).unwrap();
        assert!(
            mark <= Utc::now() + MAX_CLOCK_SKEW,
            "the watermark passed the time of the listing: {mark}"
        );
        // An upload after that tick, dated by the storage's (and our) clock.
        rig.bucket.put("later.pdf", &Utc::now().to_rfc3339());
        let tally = rig.tick().await.unwrap();
        assert_eq!((tally.jobs, tally.duplicates), (1, 1));
        assert_eq!(rig.queued(), ["future.pdf", "later.pdf"]);
    }

    #[tokio::test]
    async fn the_first_tick_takes_what_changed_since_the_integration_was_created_less_the_overlap()
    {
        let rig = rig(Mode::Poll, 1000);
        rig.bucket.put("started-before-create.pdf", &at(-2));
        rig.bucket.put("long-before.pdf", &at(-60));
        let tally = rig.tick().await.unwrap();
        assert_eq!((tally.listed, tally.jobs), (2, 1));
        assert_eq!(rig.queued(), ["started-before-create.pdf"]);
    }

    /// A storage whose listing never ends: each page a little later, with new keys, forever.
    struct Endless;

    #[async_trait::async_trait]
    impl crate::backend::bucket::Listing for Endless {
        async fn next_page(&mut self) -> Result<Option<Page>, AccessError> {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let key = format!("k{:020}", rand::random::<u64>() % 1_000_000);
            Ok(Some(Page {
                objects: vec![],
                last_key: Some(key),
            }))
        }
    }

    /// The rig's bucket for every integration but one, whose listing never ends.
    struct OneEndless {
        bucket: Arc<MemoryBucket>,
        endless_id: String,
    }

    #[async_trait::async_trait]
    impl BucketSource for OneEndless {
        async fn open(
            &self,
            integration: &Integration,
            credentials: &ReadCredentials,
            prefix: Option<&str>,
            after: Option<String>,
        ) -> Result<Box<dyn crate::backend::bucket::Listing>, AccessError> {
            if integration.id == self.endless_id {
                return Ok(Box::new(Endless));
            }
            self.bucket
                .open(integration, credentials, prefix, after)
                .await
        }
    }

    /// A second integration like the rig's, `int_endless`, with its own sealed token.
    async fn endless_beside(rig: &Rig) -> Integration {
        let mut endless = rig.poller.store.get(&rig.id).await.unwrap().unwrap();
        endless.id = "int_endless".into();
        with_test_token(&mut endless, MASTER);
        rig.poller.store.put(&endless).await.unwrap();
        endless
    }

    #[tokio::test]
    async fn an_endless_listing_stops_by_name_and_holds_no_other_integration_back() {
        let rig = rig(Mode::Poll, 1000);
        rig.bucket.put("a.pdf", &at(1));
        let endless = endless_beside(&rig).await;
        let limits = RunLimits {
            time: std::time::Duration::from_secs(2),
            pages: 200,
        };
        let poller = Poller {
            buckets: Arc::new(OneEndless {
                bucket: Arc::clone(&rig.bucket),
                endless_id: endless.id.clone(),
            }),
            ..rig.poller
        }
        .with_limits(limits, limits);
        let tick = poller.tick(None, DEFAULT_OVERLAP);
        let results = tokio::time::timeout(std::time::Duration::from_secs(20), tick)
            .await
            .expect("a tick ends, whatever a listing does")
            .unwrap();
        let by_id: BTreeMap<_, _> = results.into_iter().collect();
        assert_eq!(by_id[&rig.id].as_ref().unwrap().jobs, 1);
        assert_eq!(
            by_id["int_endless"].as_ref().unwrap_err().name(),
            "listing_too_long"
        );
        let error = poller
            .backfill(
                "int_endless",
                BackfillScope::default(),
                BackfillOptions::default(),
                &mut Silent,
            )
            .await
            .unwrap_err();
        assert_eq!(error.name(), "listing_too_long");
    }

    #[tokio::test]
    async fn in_process_ticks_go_on_for_every_integration_while_one_listing_never_ends() {
        let rig = rig(Mode::Poll, 1000);
        let endless = endless_beside(&rig).await;
        let poller = Arc::new(Poller {
            buckets: Arc::new(OneEndless {
                bucket: Arc::clone(&rig.bucket),
                endless_id: endless.id.clone(),
            }),
            ..rig.poller
        });
        let schedule = tokio::spawn(poller.run_every(std::time::Duration::from_millis(20)));
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        schedule.abort();
        let healthy_ticks = rig.bucket.pages_served();
        assert!(
            healthy_ticks >= 5,
            "the healthy integration was ticked {healthy_ticks} times in 0.5 s"
        );
    }

    #[tokio::test]
    async fn a_failed_tick_keeps_its_watermark_and_the_next_one_loses_and_doubles_nothing() {
        let rig = rig(Mode::Poll, 2);
        for (i, key) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            rig.bucket.put(key, &at(i as i64 + 1));
        }
        rig.bucket.fail_at_page(2);
        let error = rig.tick().await.unwrap_err();
        assert_eq!(error.name(), "bucket_unreachable");
        assert_eq!(rig.queued(), ["a", "b"], "the first page was committed");
        assert_eq!(rig.cursor(POLL_CURSOR).await, None, "no watermark yet");

        let tally = rig.tick().await.unwrap();
        assert_eq!((tally.jobs, tally.duplicates), (3, 2));
        assert_eq!(rig.queued(), ["a", "b", "c", "d", "e"]);
    }

    #[tokio::test]
    async fn an_interrupted_backfill_resumes_after_its_last_committed_page() {
        let rig = rig(Mode::Event, 3);
        let keys: Vec<String> = (0..10).map(|i| format!("k{i:02}")).collect();
        for key in &keys {
            rig.bucket.put(key, &at(-10_000)); // long before the integration: a backfill takes all
        }
        rig.bucket.fail_at_page(3);
        assert!(rig.backfill(None).await.is_err());
        assert_eq!(rig.queued().len(), 6);
        let cursor: BackfillCursor =
            serde_json::from_str(&rig.cursor(BACKFILL_CURSOR).await.unwrap()).unwrap();
        assert_eq!(cursor.after.as_deref(), Some("k05"));

        let done = rig.backfill(None).await.unwrap();
        assert_eq!(done.resumed_after.as_deref(), Some("k05"));
        assert_eq!(
            (done.run.listed, done.run.jobs),
            (4, 4),
            "this run's own figures"
        );
        assert_eq!(
            (done.total.listed, done.total.jobs),
            (10, 10),
            "counted over both runs"
        );
        assert_eq!(rig.queued(), keys);
        assert_eq!(
            rig.cursor(BACKFILL_CURSOR).await,
            None,
            "a finished backfill forgets its place"
        );

        let again = rig.backfill(None).await.unwrap();
        let (run, total) = (&again.run, &again.total);
        assert_eq!(
            (again.resumed_after, run.jobs, run.duplicates),
            (None, 0, 10)
        );
        assert_eq!(
            run, total,
            "a run that did not resume is the whole backfill"
        );
    }

    #[tokio::test]
    async fn a_backfill_a_month_after_the_jobs_were_made_makes_no_second_job() {
        let rig = rig(Mode::Event, 1000);
        // The ledger once forgot a job after 30 days: a backfill a month on made it again.
        let month_ago = Utc::now() - Duration::days(31);
        let modified = month_ago.to_rfc3339();
        for key in ["a.pdf", "b.pdf"] {
            rig.bucket.put(key, &modified);
            assert_eq!(
                rig.event(key, &modified, month_ago).await,
                Outcome::Accepted
            );
        }
        let tally = rig.backfill(None).await.unwrap().run;
        assert_eq!((tally.jobs, tally.duplicates), (0, 2));
        assert_eq!(rig.queued(), ["a.pdf", "b.pdf"]);
    }

    #[tokio::test]
    async fn objects_past_the_horizon_the_ledger_has_no_job_for_are_left_alone_unless_asked() {
        let rig = rig(Mode::Event, 1000);
        let now = Utc::now();
        let old = (now - Duration::days(401)).to_rfc3339();
        // Its job was made when it was uploaded, 401 days ago: the ledger forgot it.
        rig.bucket.put("forgotten.pdf", &old);
        assert_eq!(
            rig.event("forgotten.pdf", &old, now - Duration::days(401))
                .await,
            Outcome::Accepted
        );
        // As old, but its job was made ten days ago: the ledger still vouches for it.
        rig.bucket.put("backfilled.pdf", &old);
        assert_eq!(
            rig.event("backfilled.pdf", &old, now - Duration::days(10))
                .await,
            Outcome::Accepted
        );
        rig.bucket.put("new.pdf", &now.to_rfc3339());

        let tally = rig.backfill(None).await.unwrap().run;
        assert_eq!((tally.jobs, tally.duplicates), (1, 1));
        assert_eq!(
            tally.skipped,
            BTreeMap::from([("beyond_horizon".to_owned(), 1)])
        );
        assert_eq!(
            rig.queue.jobs().len(),
            3,
            "nothing made of the forgotten one"
        );

        let options = BackfillOptions {
            past_horizon: true,
            ..BackfillOptions::default()
        };
        let scope = BackfillScope::default();
        let done = rig
            .poller
            .backfill(&rig.id, scope, options, &mut Silent)
            .await;
        let tally = done.unwrap().run;
        assert_eq!(
            (tally.jobs, tally.duplicates),
            (1, 2),
            "told to, it makes it"
        );

        // A longer horizon reaches it again: the job just made is remembered.
        rig.change(|i| i.set_horizon(500).unwrap()).await;
        let tally = rig.backfill(None).await.unwrap().run;
        assert_eq!(
            (tally.jobs, tally.duplicates, tally.skipped_total()),
            (0, 3, 0)
        );
    }

    #[tokio::test]
    async fn a_safety_net_makes_jobs_of_what_no_event_brought_once_per_interval() {
        let rig = rig(Mode::Event, 2);
        assert!(
            rig.poller
                .tick(None, DEFAULT_OVERLAP)
                .await
                .unwrap()
                .is_empty(),
            "event mode alone is never listed"
        );
        rig.change(|i| i.set_mode(Mode::Event, Some(3600)).unwrap())
            .await;
        let keys: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
        for (i, key) in keys.iter().enumerate() {
            rig.bucket.put(key, &at(i as i64 + 1));
        }
        // Six arrived as events; four never did.
        for (i, key) in keys.iter().enumerate().take(6) {
            let outcome = rig.event(key, &at(i as i64 + 1), Utc::now()).await;
            assert_eq!(outcome, Outcome::Accepted);
        }
        let tally = rig.tick().await.unwrap();
        assert_eq!(
            (
                tally.considered,
                tally.jobs,
                tally.duplicates,
                tally.missed_by_events
            ),
            (10, 4, 6, 4)
        );
        assert_eq!(rig.queued(), keys, "every object once");
        let net: SafetyNetCursor =
            serde_json::from_str(&rig.cursor(SAFETY_NET_CURSOR).await.unwrap()).unwrap();
        assert_eq!(net.missed_by_events, 4);

        let results = rig.poller.tick(None, DEFAULT_OVERLAP).await.unwrap();
        assert!(results.is_empty(), "not due again within the hour");
        let forced = rig.poller.tick(Some(&rig.id), DEFAULT_OVERLAP).await;
        assert_eq!(forced.unwrap()[0].1.as_ref().unwrap().jobs, 0);
        // The event of an object the net already made a job of arrives late: a duplicate.
        assert_eq!(
            rig.event("k9", &at(10), Utc::now()).await,
            Outcome::Duplicate
        );

        rig.change(|i| i.set_mode(Mode::Event, None).unwrap()).await;
        let error = rig.poller.tick(Some(&rig.id), DEFAULT_OVERLAP).await;
        assert_eq!(error.unwrap_err().name(), "mode_mismatch");
    }

    #[tokio::test]
    async fn a_backfill_since_a_time_considers_only_what_changed_after_it() {
        let rig = rig(Mode::Event, 1000);
        rig.bucket.put("old", &at(-120));
        rig.bucket.put("new", &at(-30));
        let tally = rig.backfill(Some(&at(-60))).await.unwrap().run;
        assert_eq!((tally.listed, tally.considered, tally.jobs), (2, 1, 1));
        assert_eq!(rig.queued(), ["new"]);
    }

    #[tokio::test]
    async fn a_paced_backfill_settles_a_page_in_parts_that_keep_within_its_rate() {
        let rig = rig(Mode::Event, 1000);
        for i in 0..25 {
            rig.bucket.put(&format!("k{i:02}"), &at(-30 + i));
        }
        let paced = |dry_run| BackfillOptions {
            dry_run,
            write_units: Some(30),
            ..BackfillOptions::default()
        };
        let scope = BackfillScope::default;
        let dry = (rig.poller)
            .backfill(&rig.id, scope(), paced(true), &mut Silent)
            .await
            .unwrap();
        assert_eq!(
            (dry.run.jobs, dry.paced),
            (25, None),
            "a dry run writes nothing"
        );

        let done = (rig.poller)
            .backfill(&rig.id, scope(), paced(false), &mut Silent)
            .await
            .unwrap();
        assert_eq!(done.run.jobs, 25);
        let pace = done.paced.unwrap();
        assert_eq!(
            (pace.write_units_per_second, pace.source, pace.table_units),
            (30, PaceSource::Flag, None)
        );
        // One page, settled in parts of 10, 10 and 5 new jobs (3 write units each: a second of
        // the rate for each full part). The first two are within the burst, the third waits a
        // second less what the parts took, and nothing waits after the last.
        assert!(pace.waited_s > 0.5 && pace.waited_s <= 1.0, "{pace:?}");
        assert_eq!(rig.queued().len(), 25);
    }

    #[tokio::test]
    async fn a_ledger_that_reports_no_capacity_is_not_paced() {
        let rig = rig(Mode::Event, 10);
        rig.bucket.put("k", &at(-1));
        assert_eq!(rig.backfill(None).await.unwrap().paced, None);
    }

    #[tokio::test]
    async fn ticks_skip_event_mode_and_name_why_when_asked_for_one() {
        let rig = rig(Mode::Event, 1000);
        assert!(rig
            .poller
            .tick(None, DEFAULT_OVERLAP)
            .await
            .unwrap()
            .is_empty());
        let error = rig
            .poller
            .tick(Some(&rig.id), DEFAULT_OVERLAP)
            .await
            .unwrap_err();
        assert_eq!(error.name(), "mode_mismatch");
        let error = rig
            .poller
            .tick(Some("int_nope"), DEFAULT_OVERLAP)
            .await
            .unwrap_err();
        assert_eq!(error.name(), "unknown_integration");
    }
}

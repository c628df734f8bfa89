//! The embedded default: integrations, the ledger, the job queue and the usage counts in one
//! SQLite file.
//!
//! Because the ledger and the queue share the file, a request's commit is one transaction:
//! each new job is recorded and enqueued together, with the request's usage counts, or nothing
//! is. A crash at any point leaves either the whole request or none of it, so exactly once needs
//! no claims, leases or `in_flight` answers here.
//!
//! Transactions start `IMMEDIATE` (they take the write lock at once): a deferred one that reads
//! and then upgrades can fail with "database is locked" at once, whatever the busy timeout, when
//! another process (a second `serve`, the CLI) writes to the same file. WAL mode lets readers go
//! on meanwhile. Statements are prepared once per connection and cached. Reads run on tokio's
//! blocking pool.
//!
//! Commits wait for one writer with its own connection ("group commit"), which takes every
//! commit waiting at that moment (up to [`GROUP_MAX`]) and runs them one after another in ONE
//! transaction, then answers each request. It runs on a thread of the async runtime that has
//! nothing else to do (about to park), or on its own thread when none has (`Writer`). So concurrent requests share one
//! commit's WAL writes instead of paying for one each, and no request is answered before its
//! jobs are committed. Within the group they are applied in order, so a job two of them carry is
//! new for the first and a duplicate for the second, as it would be one transaction apart. The
//! usage counts and the last event per outcome are added up across the group and written once
//! at its end (`Tallies`), ending as the requests one by one would have left them. If
//! the transaction fails, nothing of the group is written and every request in it is answered
//! with the error (the senders retry; nothing is lost).

use super::{
    usage_hour, BackendError, Commit, Committed, Cursors, Enqueued, History, Intake, JobRecords,
    LedgerTime, ObjectHistory, Recorded, Seen, Settled, Settlement, Store, UsageCounts, UsageKey,
    UsageLog, HISTORY_RETENTION, OLD_LEDGER_RETENTION,
};
use super::{RateLimit, DEFAULT_RATE_WINDOW};
use crate::events::{CheckpointFailed, GroupCommitted, UsageKeyUnknown};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use relay_protocol::admission;
use relay_protocol::job::JobSchema;
use relay_protocol::{IngestJob, Integration, Outcome, Reason};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

const BACKEND: &str = "sqlite";

/// The schema's version, in `PRAGMA user_version`. 2: the ledger holds only what exactly-once
/// needs (job id, expiry) in one B-tree; the jobs table carries everything else. 3: the
/// history (`objects`, `last_seen`). 4: the ledger keeps when each job was made, and whether
/// it is still remembered is read from its integration's horizon. (Usage counts are kept per
/// hour since; a day's rows written before stay as they are and still add up.) 5: each rate
/// window's admissions (`admitted`) and each key's one job under `--overwrites ignore`
/// (`first_versions`). 6: the ledger's entries and the history's last word on each key share
/// one B-tree ordered by object key (`objects`, see [`SCHEMA`]); an older file's entries whose
/// key cannot be found stay in `ledger_by_id`.
const SCHEMA_VERSION: i64 = 6;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS integrations (
    id   TEXT PRIMARY KEY,
    body TEXT NOT NULL            -- the Integration as JSON
);
-- What is known of each object key, its rows side by side in one B-tree, so one folder's
-- uploads share a few pages. A job's ledger entry is also its key's last word until a later
-- event that makes no job writes the key's history row (which a new job then deletes): a new
-- job costs one row here, as in a ledger alone.
CREATE TABLE IF NOT EXISTS objects (
    integration_id TEXT NOT NULL,
    key            TEXT NOT NULL,
    job_id         TEXT NOT NULL,  -- '': the key's history row; otherwise the ledger's entry
                                   -- for that job, enqueued in the same transaction into jobs
    made_at_ms     INTEGER,        -- entry: forgotten once older than its integration's horizon
    outcome        TEXT,           -- history: the key's last event
    reason         TEXT,
    event_job      TEXT,
    at_ms          INTEGER,
    enqueued_job   TEXT,           -- history: the key's last job as `History::record` wrote it
    enqueued_at_ms INTEGER,        --   (the commit leaves it to the entries)
    PRIMARY KEY (integration_id, key, job_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger_by_id (  -- before 6: entries whose key was not found
    job_id     TEXT PRIMARY KEY,           -- read, never written; empty in a new file
    made_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage (
    integration_id TEXT NOT NULL,
    day            TEXT NOT NULL, -- the hour, YYYY-MM-DDTHH, UTC (a whole day, YYYY-MM-DD, before 5)
    name           TEXT NOT NULL, -- '<outcome>' or '<outcome>/<reason>'
    count          INTEGER NOT NULL,
    PRIMARY KEY (integration_id, day, name)
);
CREATE TABLE IF NOT EXISTS cursors (
    integration_id TEXT NOT NULL,
    name           TEXT NOT NULL, -- 'poll' (the watermark) or 'backfill'
    value          TEXT NOT NULL,
    PRIMARY KEY (integration_id, name)
);
CREATE TABLE IF NOT EXISTS last_seen (  -- the history: the last event per outcome
    integration_id TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    reason         TEXT,
    key            TEXT NOT NULL,
    job_id         TEXT,
    at_ms          INTEGER NOT NULL,
    PRIMARY KEY (integration_id, outcome)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS admitted (  -- jobs made per rate window (--max-jobs-per-minute)
    integration_id TEXT NOT NULL,
    window_index   INTEGER NOT NULL,    -- the window's number since the Unix epoch
    count          INTEGER NOT NULL,
    PRIMARY KEY (integration_id, window_index)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS first_versions (  -- --overwrites ignore: the one job of each key
    key_id     TEXT PRIMARY KEY,             -- IngestJob::key_id
    job_id     TEXT NOT NULL,
    made_at_ms INTEGER NOT NULL              -- forgotten with its integration's horizon
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs (
    seq    INTEGER PRIMARY KEY,   -- rising: jobs are only ever appended
    job_id TEXT NOT NULL,
    body   TEXT NOT NULL          -- the ingest-job message, as a queue would carry it
);
";

/// Version 1's ledger, with columns nothing read, moved into version 2's.
const MIGRATE_1_TO_2: &str = "
ALTER TABLE ledger RENAME TO ledger_v1;
CREATE TABLE ledger (
    job_id        TEXT PRIMARY KEY,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO ledger (job_id, expires_at_ms) SELECT job_id, expires_at_ms FROM ledger_v1;
DROP TABLE ledger_v1;
";

/// Records a job unless the ledger remembers it (an entry made at or before the horizon's start
/// is taken over): one row changed means the job is new. ?1 integration, ?2 key, ?3 job id,
/// ?4 now, ?5 the horizon's start.
const RECORD_JOB: &str = "
INSERT INTO objects (integration_id, key, job_id, made_at_ms) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (integration_id, key, job_id) DO UPDATE SET made_at_ms = excluded.made_at_ms
WHERE objects.made_at_ms <= ?5";
const ENQUEUE_JOB: &str = "INSERT INTO jobs (job_id, body) VALUES (?1, ?2)";
/// Whether the ledger remembers a job: ?1 integration, ?2 key, ?3 job id, ?4 the horizon's start.
const REMEMBERED: &str = "
SELECT 1 FROM objects WHERE integration_id = ?1 AND key = ?2 AND job_id = ?3 AND made_at_ms > ?4";
/// Whether an entry an older file could not place by key remembers a job: ?1 job id, ?2 the
/// horizon's start.
const REMEMBERED_BY_ID: &str = "SELECT 1 FROM ledger_by_id WHERE job_id = ?1 AND made_at_ms > ?2";
/// Whether `ledger_by_id` has any entry: only a file from before version 6 can.
const HAS_LEDGER_BY_ID: &str = "SELECT EXISTS (SELECT 1 FROM ledger_by_id)";
/// ?1 integration, ?2 window.
const ADMITTED: &str = "SELECT count FROM admitted WHERE integration_id = ?1 AND window_index = ?2";
/// ?1 integration, ?2 window, ?3 jobs made.
const ADD_ADMITTED: &str = "
INSERT INTO admitted (integration_id, window_index, count) VALUES (?1, ?2, ?3)
ON CONFLICT (integration_id, window_index) DO UPDATE SET count = count + excluded.count";
/// ?1 integration, ?2 the oldest window kept.
const FORGET_WINDOWS: &str = "DELETE FROM admitted WHERE integration_id = ?1 AND window_index < ?2";
/// How many past windows `admitted` keeps (for `status`).
const WINDOWS_KEPT: i64 = 60;
/// The job a key belongs to, unless forgotten: ?1 key id, ?2 the horizon's start.
const FIRST_OWNER: &str = "SELECT job_id FROM first_versions WHERE key_id = ?1 AND made_at_ms > ?2";
/// ?1 key id, ?2 job id, ?3 now.
const CLAIM_FIRST: &str = "
INSERT INTO first_versions (key_id, job_id, made_at_ms) VALUES (?1, ?2, ?3)
ON CONFLICT (key_id) DO UPDATE SET job_id = excluded.job_id, made_at_ms = excluded.made_at_ms";
/// A key's history row: ?1 integration, ?2 key, ?3 outcome, ?4 reason, ?5 job id, ?6 at, ?7 the
/// job when enqueued.
const RECORD_OBJECT: &str = "
INSERT INTO objects (integration_id, key, job_id, outcome, reason, event_job, at_ms,
                     enqueued_job, enqueued_at_ms)
VALUES (?1, ?2, '', ?3, ?4, ?5, ?6, ?7, CASE WHEN ?7 IS NULL THEN NULL ELSE ?6 END)
ON CONFLICT (integration_id, key, job_id) DO UPDATE SET
    outcome = excluded.outcome, reason = excluded.reason, event_job = excluded.event_job,
    at_ms = excluded.at_ms,
    enqueued_job = coalesce(excluded.enqueued_job, objects.enqueued_job),
    enqueued_at_ms = coalesce(excluded.enqueued_at_ms, objects.enqueued_at_ms)";
/// A new job is its key's last word: ?1 integration, ?2 key.
const FORGET_LAST_WORD: &str =
    "DELETE FROM objects WHERE integration_id = ?1 AND key = ?2 AND job_id = ''";
/// A key's history row and its newest ledger entry, if any: ?1 integration, ?2 key.
const OBJECT: &str = "
SELECT key, outcome, reason, event_job, at_ms, enqueued_job, enqueued_at_ms FROM objects
WHERE integration_id = ?1 AND key = ?2 AND job_id = ''";
const NEWEST_ENTRY: &str = "
SELECT job_id, made_at_ms FROM objects
WHERE integration_id = ?1 AND key = ?2 AND job_id <> '' ORDER BY made_at_ms DESC LIMIT 1";
const RECORD_LAST: &str = "
INSERT INTO last_seen (integration_id, outcome, reason, key, job_id, at_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (integration_id, outcome) DO UPDATE SET
    reason = excluded.reason, key = excluded.key, job_id = excluded.job_id, at_ms = excluded.at_ms
WHERE excluded.at_ms >= last_seen.at_ms";
const ADD_USAGE: &str = "
INSERT INTO usage (integration_id, day, name, count) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (integration_id, day, name) DO UPDATE SET count = count + excluded.count";

/// The most request commits one transaction takes.
pub const GROUP_MAX: usize = 64;
/// The page cache of a connection, in KiB: SQLite's default. The file's pages stay in the
/// kernel's cache anyway, and a bigger one costs each commit: SQLite scans the cache's hash table
/// as a write transaction ends. 64 MiB made `serve` about a tenth slower on both workloads
/// (measured 2026-11-30 in paired runs; docs/performance.md).
const CACHE_KIB: i64 = 2 * 1024;
/// How often the checkpointer copies committed WAL frames into the database file. A page
/// written many times between two checkpoints is copied once: under a steady load, once a
/// second instead of five times made `serve` 13% faster on 100-event batches (scripts/bench).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The WAL size past which the checkpointer stops writers for a moment to start the WAL over.
const WAL_BOUND_BYTES: i64 = 64 * 1024 * 1024;
/// The size a WAL file is cut back to once it starts over (`journal_size_limit`): more than a
/// second's writes under full load (about 200 MB), so a busy WAL is written over in place.
/// Cut back to [`WAL_BOUND_BYTES`], the file lost its pages past that from the kernel's cache
/// every second and grew them again: about a tenth of `serve`'s time on single events.
const WAL_KEPT_BYTES: i64 = 4 * WAL_BOUND_BYTES;

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] on its own connection, for as long as the
/// connection `alive` points to exists (see [`checkpoint`]). If the thread or its connection
/// cannot start, SQLite still checkpoints when the last connection closes, and the WAL only
/// grows meanwhile.
fn spawn_checkpointer(path: &Path, alive: std::sync::Weak<Mutex<Connection>>) {
    let path = path.to_owned();
    let started = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            let Ok(conn) = open_file(&path) else {
                return;
            };
            let _ = conn.busy_timeout(BUSY_TIMEOUT);
            while alive.strong_count() > 0 {
                std::thread::sleep(CHECKPOINT_EVERY);
                if let Err(e) = checkpoint(&conn, WAL_BOUND_BYTES) {
                    CheckpointFailed {
                        backend: BACKEND,
                        error: e.to_string(),
                    }
                    .emit();
                }
            }
        });
    if let Err(e) = started {
        CheckpointFailed {
            backend: BACKEND,
            error: e.to_string(),
        }
        .emit();
    }
}

/// Copies committed WAL frames into the database file. `PASSIVE` never blocks a writer, but
/// under a steady stream of commits the WAL never drains completely, and SQLite only starts a
/// WAL over once it has: it would grow without end (1 GB in a few seconds of benchmark load).
/// So past `bound` bytes the checkpoint is `RESTART`: it waits for the writer to finish its
/// transaction, holds the next one back (within its busy timeout) while it copies the rest, and
/// makes the next commit write the WAL from its start. The file is written over, not emptied:
/// truncating it dropped its pages from the kernel's cache, and growing it again cost the
/// writer a fifth of its time (`TRUNCATE` here made `serve` 22% slower on 100-event batches).
fn checkpoint(conn: &Connection, bound: i64) -> rusqlite::Result<()> {
    let frames: i64 = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    if frames.saturating_mul(page_size) > bound {
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))?;
    }
    Ok(())
}

#[derive(Clone)]
pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
    /// The group committer.
    commits: Arc<WriterHandle>,
    /// The schema jobs are written in (`--job-schema`).
    schema: JobSchema,
    /// How long one window of `--max-jobs-per-minute` lasts.
    rate_window: chrono::Duration,
}

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError::new(BACKEND, e)
}

/// The file at `path`, through the VFS that writes each commit's WAL frames at once
/// ([`super::wal_writes`]).
fn open_file(path: &Path) -> rusqlite::Result<Connection> {
    let vfs = super::wal_writes::register().map_err(|rc| {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rc),
            Some("cannot register the WAL VFS".into()),
        )
    })?;
    Connection::open_with_flags_and_vfs(path, rusqlite::OpenFlags::default(), vfs)
}

/// A connection to the file at `path`, set up as every connection here is.
fn connect(path: &Path) -> Result<Connection, BackendError> {
    let conn = open_file(path).map_err(|e| err(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err)?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)
        .map_err(err)?;
    // Checkpoints (copying the WAL into the file, with an fsync) run on a thread of their own,
    // not inside a request's commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(err)?;
    conn.pragma_update(None, "journal_size_limit", WAL_KEPT_BYTES)
        .map_err(err)?;
    Ok(conn)
}

/// Creates the schema, or brings an older file's up to [`SCHEMA_VERSION`], in one transaction.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let migrated = (|| {
        // Another process may have migrated the file meanwhile.
        let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if version >= SCHEMA_VERSION {
            return Ok(());
        }
        let has_table = |name: &str| {
            conn.query_row(
                "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [name],
                |row| row.get::<_, bool>(0),
            )
        };
        let has_ledger = has_table("ledger")?;
        if version < 2 && has_ledger {
            conn.execute_batch(MIGRATE_1_TO_2)?;
        }
        if version < 4 && has_ledger {
            migrate_ledger_to_4(conn)?;
        }
        let ledger_by_id = version < 6 && has_ledger;
        if ledger_by_id {
            conn.execute_batch("ALTER TABLE ledger RENAME TO ledger_by_id")?;
        }
        let history_v5 = version < 6 && has_table("objects")?;
        if history_v5 {
            conn.execute_batch("ALTER TABLE objects RENAME TO objects_v5")?;
        }
        conn.execute_batch(SCHEMA)?;
        if ledger_by_id {
            conn.execute_batch(MIGRATE_LEDGER_TO_6)?;
        }
        if history_v5 {
            conn.execute_batch(MIGRATE_HISTORY_TO_6)?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
    })();
    match migrated {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Versions 2 and 3's ledger (each entry's expiry, 30 days after its job) moved into version
/// 4's (each job's making): nothing it remembered is forgotten, and each entry now lasts for
/// its integration's horizon.
fn migrate_ledger_to_4(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "ALTER TABLE ledger RENAME TO ledger_v3;
         CREATE TABLE ledger (
             job_id     TEXT PRIMARY KEY,
             made_at_ms INTEGER NOT NULL
         ) WITHOUT ROWID;",
    )?;
    conn.execute(
        "INSERT INTO ledger (job_id, made_at_ms) SELECT job_id, expires_at_ms - ?1 FROM ledger_v3",
        [OLD_LEDGER_RETENTION.num_milliseconds()],
    )?;
    conn.execute_batch("DROP TABLE ledger_v3")
}

/// Versions 2 to 5's ledger, keyed by job id alone and renamed `ledger_by_id`, moved into
/// version 6's `objects`, keyed by integration, object key and job id. Every entry was made with
/// its job, in the same transaction, and the job's message names both; an entry whose job is
/// not found stays in `ledger_by_id`, which the commit reads as long as it has any entry, so
/// nothing remembered is forgotten.
const MIGRATE_LEDGER_TO_6: &str = "
INSERT OR IGNORE INTO objects (integration_id, key, job_id, made_at_ms)
    SELECT json_extract(jobs.body, '$.integration_id'), json_extract(jobs.body, '$.key'),
           ledger_by_id.job_id, ledger_by_id.made_at_ms
    FROM jobs JOIN ledger_by_id ON ledger_by_id.job_id = jobs.job_id
    WHERE json_valid(jobs.body);
DELETE FROM ledger_by_id WHERE job_id IN (SELECT job_id FROM objects WHERE job_id <> '');
";
/// Versions 3 to 5's history of each key (renamed `objects_v5`) moved into version 6's
/// `objects`, as each key's row with no job id.
const MIGRATE_HISTORY_TO_6: &str = "
INSERT INTO objects (integration_id, key, job_id, outcome, reason, event_job, at_ms,
                     enqueued_job, enqueued_at_ms)
    SELECT integration_id, key, '', outcome, reason, job_id, at_ms, enqueued_job, enqueued_at_ms
    FROM objects_v5;
DROP TABLE objects_v5;
";

/// One request's commit, owned, on its way to the writer thread.
struct PendingCommit {
    rows: Vec<JobRow>,
    now: DateTime<Utc>,
    /// Jobs made at or before this (ms) are forgotten.
    forgotten_before_ms: i64,
    integration_id: String,
    /// The usage hour, [`usage_hour`].
    hour: String,
    settled: Vec<Settled>,
    limit: Option<RateLimit>,
    first_versions_only: bool,
    answer: tokio::sync::oneshot::Sender<Result<Vec<Committed>, BackendError>>,
}

/// The group committer: the commits waiting, and the one connection that writes them.
///
/// Whoever finds the connection free runs what waits, up to [`GROUP_MAX`] commits in one
/// transaction: a thread of the async runtime just before it parks ([`commit_before_park`]),
/// or, when none does in time, the writer's own thread ([`FALLBACK_AFTER`]). A runtime thread
/// parks when it has no task left to run, so every request it has read has joined the group
/// by then, and the commit costs no hand-off between threads. On one core the hand-offs to a
/// writer thread (waking it, then the runtime back) were a sixth of the time. The price: a
/// commit held up by a slow disk holds that runtime thread too (the others go on; the
/// checkpoints' fsyncs stay on a thread of their own).
struct Writer {
    waiting: Mutex<Waiting>,
    /// Wakes the writer's thread: a commit came while it was idle, or the last handle went.
    wake: std::sync::Condvar,
    conn: Mutex<WriterConn>,
    by_id: LedgerById,
}

/// The writer's connection, and the last event per outcome it has not written yet.
struct WriterConn {
    conn: Connection,
    last: LastEvents,
}

/// How often the writer writes an integration's last event per outcome (`last_seen`): one page
/// less in each group's transaction between two, about 5% more single events. Read in this
/// process, it is written first; another process (`integrations show` beside `serve`) may read
/// one up to this much older, and a crash may lose what it had not written. The usage counts
/// are not deferred: they are written with their jobs.
const LAST_EVENTS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The last event per integration and outcome that committed groups left, not yet written.
#[derive(Default)]
struct LastEvents {
    events: BTreeMap<(String, Outcome), Seen>,
    written: Option<std::time::Instant>,
}

impl LastEvents {
    /// Whether the next transaction should write them: none written yet, or
    /// [`LAST_EVENTS_EVERY`] since.
    fn due(&self) -> bool {
        self.written
            .is_none_or(|written| written.elapsed() >= LAST_EVENTS_EVERY)
    }

    fn add(&mut self, integration_id: &str, events: &[Seen]) {
        for (outcome, seen) in Seen::last_per_outcome(events) {
            self.events
                .insert((integration_id.to_owned(), outcome), seen.clone());
        }
    }

    fn write(&self, tx: &rusqlite::Transaction) -> rusqlite::Result<()> {
        let mut last = tx.prepare_cached(RECORD_LAST)?;
        for ((integration_id, outcome), seen) in &self.events {
            last.execute(params![
                integration_id,
                outcome.as_str(),
                seen.reason.map(Reason::as_str),
                seen.key,
                seen.job_id,
                seen.at.timestamp_millis(),
            ])?;
        }
        Ok(())
    }

    /// After a transaction that wrote them.
    fn written(&mut self) {
        self.events.clear();
        self.written = Some(std::time::Instant::now());
    }
}

impl WriterConn {
    /// Writes the last events waiting in a transaction of their own.
    fn write_last(&mut self) -> rusqlite::Result<()> {
        if self.last.events.is_empty() {
            return Ok(());
        }
        // A runtime thread's commit may have left the timeout at zero (`Busy::GiveBack`).
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        self.last.write(&tx)?;
        tx.commit()?;
        self.last.written();
        Ok(())
    }
}

#[derive(Default)]
struct Waiting {
    commits: Vec<PendingCommit>,
    /// The writer's thread waits for a commit with no timeout.
    idle: bool,
    /// Every [`Sqlite`] handle is gone: the thread commits what waits, then ends.
    closed: bool,
}

/// How long a commit waits, at most, for a runtime thread to park before the writer's thread
/// runs it (a runtime busy on every thread, or a caller outside one).
const FALLBACK_AFTER: std::time::Duration = std::time::Duration::from_millis(1);
/// How many of those intervals in a row find nothing waiting before the writer's thread waits
/// with no timeout: a second.
const IDLE_AFTER: u32 = 1000;

/// The writers in this process, for [`commit_before_park`].
static WRITERS: Mutex<Vec<std::sync::Weak<Writer>>> = Mutex::new(Vec::new());

/// Runs the commits waiting for any embedded backend in this process, if its connection is free.
/// The async runtime calls it on a thread that is about to park (`on_thread_park`); answering
/// the commits wakes their requests, so the thread runs them instead of parking.
pub fn commit_before_park() {
    let writers: Vec<Arc<Writer>> = match WRITERS.lock() {
        Ok(mut writers) => {
            writers.retain(|writer| writer.strong_count() > 0);
            writers
                .iter()
                .filter_map(std::sync::Weak::upgrade)
                .collect()
        }
        Err(_) => return,
    };
    for writer in writers {
        writer.run_waiting(Busy::GiveBack);
    }
}

impl Writer {
    /// A writer on `conn`, which [`commit_before_park`] serves, with no thread of its own yet.
    fn new(conn: Connection) -> Result<Arc<Self>, BackendError> {
        // Nothing writes `ledger_by_id` after the migration, so once read this stays true.
        let by_id = LedgerById(
            conn.query_row(HAS_LEDGER_BY_ID, [], |row| row.get(0))
                .map_err(err)?,
        );
        let writer = Arc::new(Writer {
            waiting: Mutex::default(),
            wake: std::sync::Condvar::new(),
            conn: Mutex::new(WriterConn {
                conn,
                last: LastEvents::default(),
            }),
            by_id,
        });
        if let Ok(mut writers) = WRITERS.lock() {
            writers.push(Arc::downgrade(&writer));
        }
        Ok(writer)
    }

    /// Starts the writer's thread on `conn`; it ends once the returned handle is dropped.
    fn spawn(conn: Connection) -> Result<WriterHandle, BackendError> {
        let writer = Writer::new(conn)?;
        let thread = writer.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || thread.run_thread())
            .map_err(|e| err(format!("cannot start the writer thread: {e}")))?;
        Ok(WriterHandle(writer))
    }

    /// Queues `commit`, waking the writer's thread if it sleeps.
    fn push(&self, commit: PendingCommit) -> Result<(), BackendError> {
        let mut waiting = self
            .waiting
            .lock()
            .map_err(|_| err("the writer has stopped"))?;
        waiting.commits.push(commit);
        if waiting.idle {
            waiting.idle = false;
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Commits everything waiting, group by group, unless another thread is writing (it
    /// takes what waits when it is done).
    fn run_waiting(&self, busy: Busy) {
        let Ok(mut conn) = self.conn.try_lock() else {
            return;
        };
        loop {
            let group: Vec<PendingCommit> = match self.waiting.lock() {
                Ok(mut waiting) if !waiting.commits.is_empty() => {
                    let take = waiting.commits.len().min(GROUP_MAX);
                    waiting.commits.drain(..take).collect()
                }
                _ => return,
            };
            if let Some(group) = commit_group(&mut conn, group, self.by_id, busy) {
                // Given back: first in line again, for the writer's thread, which waits.
                if let Ok(mut waiting) = self.waiting.lock() {
                    waiting.commits.splice(0..0, group);
                }
                return;
            }
        }
    }

    /// Writes the last events waiting when `when` says so: for a read in this process, when due
    /// and nothing else comes, and before the writer ends. A failure is logged; they wait for
    /// the next write.
    fn write_last(&self, when: impl FnOnce(&LastEvents) -> bool) {
        let Ok(mut conn) = self.conn.lock() else {
            return;
        };
        if when(&conn.last) {
            if let Err(e) = conn.write_last() {
                crate::telemetry::log_backend_error(&err(e));
            }
        }
    }

    /// The writer's thread: runs what waited [`FALLBACK_AFTER`] without a runtime thread
    /// taking it, and sleeps once nothing came for [`IDLE_AFTER`] intervals.
    fn run_thread(&self) {
        let mut quiet = 0;
        loop {
            let Ok(mut waiting) = self.waiting.lock() else {
                return;
            };
            if waiting.commits.is_empty() && waiting.closed {
                drop(waiting);
                self.write_last(|_| true);
                return;
            }
            if quiet >= IDLE_AFTER && waiting.commits.is_empty() {
                waiting.idle = true;
                waiting = match self.wake.wait_while(waiting, |w| w.idle && !w.closed) {
                    Ok(waiting) => waiting,
                    Err(_) => return,
                };
                quiet = 0;
            }
            let closed = waiting.closed;
            if !closed {
                waiting = match self.wake.wait_timeout(waiting, FALLBACK_AFTER) {
                    Ok((waiting, _)) => waiting,
                    Err(_) => return,
                };
            }
            let something = !waiting.commits.is_empty();
            drop(waiting);
            if something {
                quiet = 0;
                self.run_waiting(Busy::Wait);
            } else {
                self.write_last(LastEvents::due);
                quiet += 1;
            }
        }
    }
}

/// The [`Sqlite`] handles' share of the writer: when the last is dropped, the last events
/// waiting are written, and the writer's thread commits what waits and ends, closing its
/// connection.
struct WriterHandle(Arc<Writer>);

impl Drop for WriterHandle {
    fn drop(&mut self) {
        // The last events waiting are written now: a process that stops cleanly loses none.
        self.0.write_last(|_| true);
        if let Ok(mut waiting) = self.0.waiting.lock() {
            waiting.closed = true;
        }
        self.0.wake.notify_one();
    }
}

/// Whether the file has entries from before version 6 that the ledger could not place by key,
/// which every check of the ledger then reads too.
#[derive(Clone, Copy)]
struct LedgerById(bool);

impl LedgerById {
    /// Whether `ledger_by_id` remembers `job_id` (false when it is empty).
    fn remembers(self, conn: &Connection, job_id: &str, forgotten: i64) -> rusqlite::Result<bool> {
        Ok(self.0
            && conn
                .prepare_cached(REMEMBERED_BY_ID)?
                .exists(params![job_id, forgotten])?)
    }
}

/// What a group commit does when another connection holds the write lock (a checkpoint
/// starting the WAL over, another process writing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Busy {
    /// Waits for it, up to the busy timeout: the writer's own thread.
    Wait,
    /// Gives the group back at once: a runtime thread, which has requests to read meanwhile.
    GiveBack,
}

/// How long a connection waits for another's lock before its statement fails.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn is_busy(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
}

/// Commits a group in one transaction and answers each of its requests; or, with
/// [`Busy::GiveBack`] and the write lock taken, gives the group back unanswered.
fn commit_group(
    writer: &mut WriterConn,
    group: Vec<PendingCommit>,
    by_id: LedgerById,
    busy: Busy,
) -> Option<Vec<PendingCommit>> {
    let started = std::time::Instant::now();
    let write_last = writer.last.due();
    let WriterConn { conn, last } = writer;
    let timeout = match busy {
        Busy::Wait => BUSY_TIMEOUT,
        Busy::GiveBack => std::time::Duration::ZERO,
    };
    let begun = conn
        .busy_timeout(timeout)
        .and_then(|()| conn.transaction_with_behavior(TransactionBehavior::Immediate));
    let tx = match begun {
        Ok(tx) => tx,
        Err(e) if busy == Busy::GiveBack && is_busy(&e) => return Some(group),
        Err(e) => {
            for pending in group {
                let _ = pending.answer.send(Err(err(&e)));
            }
            return None;
        }
    };
    let written = (|| {
        let mut tallies = Tallies::default();
        let answers = group
            .iter()
            .map(|pending| commit_one(&tx, pending, by_id, &mut tallies))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        tallies.write(&tx)?;
        if write_last {
            // What waits and the group's own, written now (and forgotten once committed).
            let mut all = LastEvents {
                events: last.events.clone(),
                written: None,
            };
            tallies.add_last(&mut all);
            all.write(&tx)?;
        }
        tx.commit()?;
        Ok::<_, rusqlite::Error>((answers, tallies))
    })();
    match written {
        Ok((answers, tallies)) => {
            if write_last {
                last.written();
            } else {
                tallies.add_last(last);
            }
            let enqueued = answers
                .iter()
                .flatten()
                .filter(|c| **c == Committed::Enqueued)
                .count();
            GroupCommitted {
                backend: BACKEND,
                requests: group.len() as u64,
                jobs: enqueued as u64,
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            }
            .emit();
            for (pending, answer) in group.into_iter().zip(answers) {
                let _ = pending.answer.send(Ok(answer));
            }
        }
        Err(e) => {
            for pending in group {
                let _ = pending.answer.send(Err(err(&e)));
            }
        }
    }
    None
}

/// One request's jobs, usage counts and history, inside the group's transaction. The rate and
/// the key claims are read and written in the same transaction, so they hold exactly across
/// every process sharing the file.
fn commit_one(
    tx: &rusqlite::Transaction,
    pending: &PendingCommit,
    by_id: LedgerById,
    tallies: &mut Tallies,
) -> rusqlite::Result<Vec<Committed>> {
    let mut record = tx.prepare_cached(RECORD_JOB)?;
    let mut enqueue = tx.prepare_cached(ENQUEUE_JOB)?;
    let mut committed = Vec::with_capacity(pending.rows.len());
    let now_ms = pending.now.timestamp_millis();
    let forgotten = pending.forgotten_before_ms;
    let mut room = match &pending.limit {
        Some(limit) => {
            let admitted: Option<i64> = tx
                .prepare_cached(ADMITTED)?
                .query_row(params![pending.integration_id, limit.window.index], |row| {
                    row.get(0)
                })
                .optional()?;
            let admitted = u64::try_from(admitted.unwrap_or(0)).unwrap_or(0);
            Some(admission::room(limit.per_window, admitted, u64::MAX))
        }
        None => None,
    };
    let mut made = 0_i64;
    for row in &pending.rows {
        let owner: Option<String> = if pending.first_versions_only {
            let owner = tx
                .prepare_cached(FIRST_OWNER)?
                .query_row(params![row.key_id, forgotten], |row| row.get(0))
                .optional()?;
            if owner.as_ref().is_some_and(|owner| *owner != row.job_id) {
                committed.push(Committed::OverwriteIgnored);
                continue;
            }
            owner
        } else {
            None
        };
        let answer = if by_id.remembers(tx, &row.job_id, forgotten)? {
            Committed::Duplicate
        } else if room == Some(0) {
            if tx.prepare_cached(REMEMBERED)?.exists(params![
                row.integration_id,
                row.key,
                row.job_id,
                forgotten
            ])? {
                Committed::Duplicate
            } else {
                Committed::RateLimited
            }
        } else if record.execute(params![
            row.integration_id,
            row.key,
            row.job_id,
            now_ms,
            forgotten
        ])? == 1
        {
            enqueue.execute(params![row.job_id, row.body])?;
            room = room.map(|room| room - 1);
            made += 1;
            Committed::Enqueued
        } else {
            Committed::Duplicate
        };
        if pending.first_versions_only && owner.is_none() && answer != Committed::RateLimited {
            tx.prepare_cached(CLAIM_FIRST)?
                .execute(params![row.key_id, row.job_id, now_ms])?;
        }
        committed.push(answer);
    }
    if let (Some(limit), true) = (&pending.limit, made > 0) {
        tx.prepare_cached(ADD_ADMITTED)?.execute(params![
            pending.integration_id,
            limit.window.index,
            made
        ])?;
        tx.prepare_cached(FORGET_WINDOWS)?.execute(params![
            pending.integration_id,
            limit.window.index - WINDOWS_KEPT
        ])?;
    }
    let jobs = pending
        .rows
        .iter()
        .map(|row| (row.key.as_str(), row.job_id.as_str()));
    let settlement = Settlement::new(pending.settled.clone(), jobs, &committed, pending.now);
    let history = settlement.history();
    record_keys(tx, &pending.integration_id, &history, Entries::Written)?;
    tallies.add(
        &pending.integration_id,
        &pending.hour,
        &settlement.usage(),
        history,
    );
    Ok(committed)
}

/// A group's usage counts and last event per outcome, added up across its requests and written
/// once at the end of its transaction: each row is one statement per group, not per request,
/// and ends as it would have after each request's own.
#[derive(Default)]
struct Tallies {
    /// Per (integration, usage hour).
    usage: BTreeMap<(String, String), UsageCounts>,
    /// Per integration: its events in order, of which the last per outcome is kept.
    last: BTreeMap<String, Vec<Seen>>,
}

impl Tallies {
    fn add(&mut self, integration_id: &str, hour: &str, usage: &UsageCounts, events: Vec<Seen>) {
        let counts = self
            .usage
            .entry((integration_id.to_owned(), hour.to_owned()))
            .or_default();
        super::add_counts(counts, usage);
        self.last
            .entry(integration_id.to_owned())
            .or_default()
            .extend(events);
    }

    fn write(&self, tx: &rusqlite::Transaction) -> rusqlite::Result<()> {
        for ((integration_id, hour), counts) in &self.usage {
            add_usage(tx, integration_id, hour, counts)?;
        }
        Ok(())
    }

    /// The group's last event per integration and outcome, into `last`: the group's events
    /// are newer than any waiting there.
    fn add_last(&self, last: &mut LastEvents) {
        for (integration_id, events) in &self.last {
            last.add(integration_id, events);
        }
    }
}

/// Whether the accepted events' ledger entries are written in the same transaction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Entries {
    /// The commit's: each new job's entry is its key's last word.
    Written,
    /// `History::record`'s: the events alone, each written as its key's row.
    NotWritten,
}

/// Each key's last word (see [`Entries`]).
fn record_keys(
    tx: &rusqlite::Transaction,
    integration_id: &str,
    events: &[Seen],
    entries: Entries,
) -> rusqlite::Result<()> {
    let mut object = tx.prepare_cached(RECORD_OBJECT)?;
    for seen in events.iter().filter(|seen| seen.kept_per_key()) {
        let enqueued = match seen.outcome {
            Outcome::Accepted if entries == Entries::Written => {
                tx.prepare_cached(FORGET_LAST_WORD)?
                    .execute(params![integration_id, seen.key])?;
                continue;
            }
            Outcome::Accepted => seen.job_id.as_deref(),
            _ => None,
        };
        object.execute(params![
            integration_id,
            seen.key,
            seen.outcome.as_str(),
            seen.reason.map(Reason::as_str),
            seen.job_id,
            seen.at.timestamp_millis(),
            enqueued,
        ])?;
    }
    Ok(())
}

/// The last of `events` per outcome.
fn record_last(
    tx: &rusqlite::Transaction,
    integration_id: &str,
    events: &[Seen],
) -> rusqlite::Result<()> {
    let mut last = LastEvents::default();
    last.add(integration_id, events);
    last.write(tx)
}

impl Sqlite {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        let conn = connect(path)?;
        migrate(&conn).map_err(err)?;
        let commits = Arc::new(Writer::spawn(connect(path)?)?);
        let conn = Arc::new(Mutex::new(conn));
        spawn_checkpointer(path, Arc::downgrade(&conn));
        Ok(Sqlite {
            conn,
            commits,
            schema: JobSchema::default(),
            rate_window: DEFAULT_RATE_WINDOW,
        })
    }

    /// A rate window other than a minute (`RELAY_RATE_WINDOW`).
    #[must_use]
    pub fn with_rate_window(mut self, rate_window: chrono::Duration) -> Self {
        self.rate_window = rate_window;
        self
    }

    /// Writes jobs in `schema` (v2 unless told v1).
    #[must_use]
    pub fn with_job_schema(mut self, schema: JobSchema) -> Self {
        self.schema = schema;
        self
    }

    async fn run<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().map_err(|_| err("connection lock poisoned"))?;
            f(&mut conn).map_err(err)
        })
        .await
        .map_err(err)?
    }

    /// Runs `f` in one IMMEDIATE transaction, committed if it succeeds.
    async fn write<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction) -> rusqlite::Result<T> + Send + 'static,
    {
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await
    }

    /// Every job on the embedded queue, oldest first.
    pub async fn jobs(&self) -> Result<Vec<IngestJob>, BackendError> {
        self.json_rows("SELECT body FROM jobs ORDER BY seq").await
    }

    /// The JSON documents a one-column query selects, parsed.
    async fn json_rows<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static str,
    ) -> Result<Vec<T>, BackendError> {
        let bodies = self
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(sql)?;
                let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
                rows.collect::<rusqlite::Result<Vec<String>>>()
            })
            .await?;
        bodies
            .iter()
            .map(|body| serde_json::from_str(body).map_err(err))
            .collect()
    }
}

#[async_trait]
impl Store for Sqlite {
    async fn get(&self, id: &str) -> Result<Option<Integration>, BackendError> {
        let id = id.to_owned();
        let body = self
            .run(move |conn| {
                conn.prepare_cached("SELECT body FROM integrations WHERE id = ?1")?
                    .query_row([id], |row| row.get::<_, String>(0))
                    .optional()
            })
            .await?;
        body.map(|body| serde_json::from_str(&body).map_err(err))
            .transpose()
    }

    async fn put(&self, integration: &Integration) -> Result<(), BackendError> {
        let id = integration.id.clone();
        let body = serde_json::to_string(integration).map_err(err)?;
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO integrations (id, body) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                params![id, body],
            )
        })
        .await?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Integration>, BackendError> {
        self.json_rows("SELECT body FROM integrations ORDER BY id")
            .await
    }

    async fn delete(&self, id: &str) -> Result<bool, BackendError> {
        let id = id.to_owned();
        let deleted = self
            .write(move |tx| tx.execute("DELETE FROM integrations WHERE id = ?1", [id]))
            .await?;
        Ok(deleted > 0)
    }
}

#[async_trait]
impl JobRecords for Sqlite {
    async fn recorded(
        &self,
        jobs: &[&IngestJob],
        at: LedgerTime,
    ) -> Result<Vec<Recorded>, BackendError> {
        let ids: Vec<[String; 3]> = jobs
            .iter()
            .map(|job| {
                [
                    job.integration_id.clone(),
                    job.key.clone(),
                    job.job_id.clone(),
                ]
            })
            .collect();
        let forgotten = at.forgotten_before().timestamp_millis();
        self.run(move |conn| {
            let by_id = LedgerById(conn.query_row(HAS_LEDGER_BY_ID, [], |row| row.get(0))?);
            let mut known = conn.prepare_cached(REMEMBERED)?;
            ids.iter()
                .map(|[integration, key, id]| {
                    let found = known.exists(params![integration, key, id, forgotten])?
                        || by_id.remembers(conn, id, forgotten)?;
                    Ok(if found {
                        Recorded::Enqueued
                    } else {
                        Recorded::Unknown
                    })
                })
                .collect()
        })
        .await
    }

    async fn restamp(&self, _integrations: &[Integration]) -> Result<u64, BackendError> {
        Ok(0) // each entry's expiry is read from its integration's horizon at read time
    }
}

#[async_trait]
impl Cursors for Sqlite {
    async fn load(&self, integration_id: &str, name: &str) -> Result<Option<String>, BackendError> {
        let key = (integration_id.to_owned(), name.to_owned());
        self.run(move |conn| {
            conn.prepare_cached(
                "SELECT value FROM cursors WHERE integration_id = ?1 AND name = ?2",
            )?
            .query_row(params![key.0, key.1], |row| row.get::<_, String>(0))
            .optional()
        })
        .await
    }

    async fn save(
        &self,
        integration_id: &str,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), BackendError> {
        let row = (
            integration_id.to_owned(),
            name.to_owned(),
            value.map(str::to_owned),
        );
        self.write(move |tx| match row.2 {
            Some(value) => tx.execute(
                "INSERT INTO cursors (integration_id, name, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (integration_id, name) DO UPDATE SET value = excluded.value",
                params![row.0, row.1, value],
            ),
            None => tx.execute(
                "DELETE FROM cursors WHERE integration_id = ?1 AND name = ?2",
                params![row.0, row.1],
            ),
        })
        .await?;
        Ok(())
    }
}

/// One job as the commit writes it: its ledger key and its queue message.
struct JobRow {
    integration_id: String,
    job_id: String,
    body: String,
    key: String,
    /// The key's id, under `--overwrites ignore` (empty otherwise).
    key_id: String,
}

impl Sqlite {
    /// `commit` owned, for the writer thread, and where its answer will come.
    fn pending(
        &self,
        commit: &Commit<'_>,
    ) -> (
        PendingCommit,
        tokio::sync::oneshot::Receiver<Result<Vec<Committed>, BackendError>>,
    ) {
        let rows = commit
            .jobs
            .iter()
            .map(|job| JobRow {
                integration_id: job.integration_id.clone(),
                job_id: job.job_id.clone(),
                body: job.message(self.schema),
                key: job.key.clone(),
                key_id: if commit.first_versions_only {
                    job.key_id()
                } else {
                    String::new()
                },
            })
            .collect::<Vec<_>>();
        let (answer, answered) = tokio::sync::oneshot::channel();
        let pending = PendingCommit {
            rows,
            now: commit.now,
            forgotten_before_ms: commit.ledger_time().forgotten_before().timestamp_millis(),
            integration_id: commit.integration_id.to_owned(),
            hour: usage_hour(commit.now),
            settled: commit.settled.clone(),
            limit: commit.limit,
            first_versions_only: commit.first_versions_only,
            answer,
        };
        (pending, answered)
    }
}

#[async_trait]
impl Intake for Sqlite {
    async fn commit(&self, commit: &Commit<'_>) -> Result<Vec<Committed>, BackendError> {
        let (pending, answered) = self.pending(commit);
        self.commits.0.push(pending)?;
        answered.await.map_err(|_| err("the writer has stopped"))?
    }

    fn rate_window(&self) -> chrono::Duration {
        self.rate_window
    }

    async fn probe(&self) -> Result<(), BackendError> {
        self.run(|conn| {
            conn.prepare_cached("SELECT 1 FROM objects LIMIT 1")?
                .exists([])
                .map(|_| ())
        })
        .await
    }
}

/// An `objects` or `last_seen` row's event: key, outcome, reason, job id, at (ms).
fn seen_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Seen>> {
    let outcome: String = row.get(1)?;
    let reason: Option<String> = row.get(2)?;
    let at_ms: i64 = row.get(4)?;
    Ok(Outcome::parse(&outcome)
        .zip(DateTime::from_timestamp_millis(at_ms))
        .map(|(outcome, at)| Seen {
            key: row.get(0).unwrap_or_default(),
            outcome,
            reason: reason.as_deref().and_then(Reason::parse),
            job_id: row.get(3).unwrap_or_default(),
            at,
        }))
}

#[async_trait]
impl History for Sqlite {
    async fn record(&self, integration_id: &str, events: &[Seen]) -> Result<(), BackendError> {
        let (id, events) = (integration_id.to_owned(), events.to_vec());
        self.write(move |tx| {
            record_keys(tx, &id, &events, Entries::NotWritten)?;
            record_last(tx, &id, &events)
        })
        .await
    }

    async fn object(
        &self,
        integration_id: &str,
        key: &str,
    ) -> Result<Option<ObjectHistory>, BackendError> {
        let (id, owned_key) = (integration_id.to_owned(), key.to_owned());
        let (row, entry) = self
            .run(move |conn| {
                let key = owned_key;
                let row = conn
                    .prepare_cached(OBJECT)?
                    .query_row(params![id, key], |row| {
                        let enqueued: Option<(String, i64)> =
                            row.get::<_, Option<String>>(5)?.zip(row.get(6)?);
                        Ok((seen_row(row)?, enqueued))
                    })
                    .optional()?;
                let entry = conn
                    .prepare_cached(NEWEST_ENTRY)?
                    .query_row(params![id, key], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                    })
                    .optional()?;
                Ok((row, entry))
            })
            .await?;
        let cutoff = Utc::now() - HISTORY_RETENTION;
        let enqueued_of = |(job_id, at_ms): (String, i64)| {
            let at = DateTime::from_timestamp_millis(at_ms).filter(|at| *at > cutoff)?;
            Some(Enqueued { job_id, at })
        };
        let entry = entry.and_then(enqueued_of);
        // The key's row, if any, is its last word: a new job deletes it. Otherwise the newest
        // entry is, an acceptance.
        let (last, row_enqueued) = match row {
            Some((last, enqueued)) => (last, enqueued.and_then(enqueued_of)),
            None => (
                entry.as_ref().map(|job| Seen {
                    key: key.to_owned(),
                    outcome: Outcome::Accepted,
                    reason: None,
                    job_id: Some(job.job_id.clone()),
                    at: job.at,
                }),
                None,
            ),
        };
        let last = last.filter(|seen| seen.at > cutoff);
        let enqueued = [row_enqueued, entry]
            .into_iter()
            .flatten()
            .max_by_key(|job| job.at);
        Ok(last.map(|last| ObjectHistory { last, enqueued }))
    }

    async fn last_seen(
        &self,
        integration_id: &str,
    ) -> Result<BTreeMap<Outcome, Seen>, BackendError> {
        // What the writer has not written yet, first.
        let writer = self.commits.0.clone();
        tokio::task::spawn_blocking(move || writer.write_last(|_| true))
            .await
            .map_err(err)?;
        let id = integration_id.to_owned();
        let rows = self
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT key, outcome, reason, job_id, at_ms FROM last_seen
                     WHERE integration_id = ?1",
                )?;
                let rows = stmt.query_map([id], seen_row)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        Ok(rows
            .into_iter()
            .flatten()
            .map(|seen| (seen.outcome, seen))
            .collect())
    }
}

fn add_usage(
    tx: &rusqlite::Transaction,
    integration_id: &str,
    hour: &str,
    counts: &UsageCounts,
) -> rusqlite::Result<()> {
    let mut add = tx.prepare_cached(ADD_USAGE)?;
    for (name, count) in counts {
        let count = i64::try_from(*count).unwrap_or(i64::MAX);
        add.execute(params![integration_id, hour, name.to_string(), count])?;
    }
    Ok(())
}

impl Sqlite {
    /// The usage rows of `integration_id` keyed from `from` (inclusive) to `to` (exclusive):
    /// (hour or day, name, count).
    async fn usage_rows(
        &self,
        integration_id: &str,
        from: String,
        to: String,
    ) -> Result<Vec<(String, UsageKey, u64)>, BackendError> {
        let id = integration_id.to_owned();
        let rows = self
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT day, name, count FROM usage
                     WHERE integration_id = ?1 AND day >= ?2 AND day < ?3",
                )?;
                let rows = stmt.query_map(params![id, from, to], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(when, name, count)| {
                let Ok(key) = name.parse::<UsageKey>() else {
                    // Counted by a newer receiver under a reason this one does not know.
                    UsageKeyUnknown {
                        backend: BACKEND,
                        name: &name,
                    }
                    .emit();
                    return None;
                };
                Some((when, key, u64::try_from(count).unwrap_or(0)))
            })
            .collect())
    }
}

/// The embedded queue keeps every job (`jobs list` reads them all): its depth is their count.
#[async_trait]
impl super::Backlog for Sqlite {
    async fn depths(&self) -> Result<Vec<super::QueueDepth>, BackendError> {
        let count: i64 = self
            .run(|conn| conn.query_row("SELECT count(*) FROM jobs", [], |row| row.get(0)))
            .await?;
        Ok(vec![super::QueueDepth {
            queue: "embedded".to_owned(),
            waiting: u64::try_from(count).unwrap_or(0),
            in_flight: None,
        }])
    }
}

#[async_trait]
impl UsageLog for Sqlite {
    async fn record(
        &self,
        integration_id: &str,
        at: DateTime<Utc>,
        counts: &UsageCounts,
    ) -> Result<(), BackendError> {
        let (id, hour) = (integration_id.to_owned(), usage_hour(at));
        let counts = counts.clone();
        self.write(move |tx| add_usage(tx, &id, &hour, &counts))
            .await
    }

    async fn usage(
        &self,
        integration_id: &str,
        since: NaiveDate,
        until: NaiveDate,
    ) -> Result<BTreeMap<NaiveDate, UsageCounts>, BackendError> {
        let after = until.succ_opt().unwrap_or(until);
        let rows = self
            .usage_rows(integration_id, since.to_string(), after.to_string())
            .await?;
        let mut usage: BTreeMap<NaiveDate, UsageCounts> = BTreeMap::new();
        for (when, key, count) in rows {
            // An hour's row, or a whole day's from before usage was kept per hour.
            let day = when.get(..10).unwrap_or(&when).parse().map_err(err)?;
            *usage.entry(day).or_default().entry(key).or_default() += count;
        }
        Ok(usage)
    }

    async fn recent(
        &self,
        integration_id: &str,
        since: DateTime<Utc>,
    ) -> Result<UsageCounts, BackendError> {
        // Hours sort after their day's whole-day row ("2026-11-30" < "2026-11-30T05"), and
        // "~" after every digit: the range is the hours from `since`'s on.
        let rows = self
            .usage_rows(integration_id, usage_hour(since), "~".to_owned())
            .await?;
        let mut counts = UsageCounts::new();
        for (_, key, count) in rows {
            *counts.entry(key).or_default() += count;
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::sample_job;
    use chrono::{DateTime, SubsecRound, Utc};
    use relay_protocol::integration::{NewIntegration, Provider};

    fn job(id: &str) -> IngestJob {
        sample_job(id, "k")
    }

    fn key(text: &str) -> UsageKey {
        text.parse().unwrap()
    }

    async fn job_ids(db: &Sqlite) -> Vec<String> {
        let jobs = db.jobs().await.unwrap();
        jobs.into_iter().map(|job| job.job_id).collect()
    }

    const HORIZON: chrono::Duration = chrono::Duration::days(400);

    fn commit<'a>(jobs: &[&'a IngestJob], now: DateTime<Utc>) -> Commit<'a> {
        Commit {
            horizon: HORIZON,
            integration_id: "int_test", // the sample jobs' integration
            jobs: jobs.to_vec(),
            settled: vec![Settled {
                key: Some("a.txt".into()),
                outcome: Outcome::Skipped,
                reason: Some(Reason::SuffixFiltered),
                job_id: None,
            }],
            now,
            limit: None,
            first_versions_only: false,
        }
    }

    #[tokio::test]
    async fn a_commit_enqueues_each_new_job_once_and_counts_the_request() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("relay.db")).unwrap();
        let (a, b) = (job("a"), job("b"));
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();

        let first = db.commit(&commit(&[&a], t0)).await.unwrap();
        assert_eq!(first, [Committed::Enqueued]);
        let second = db.commit(&commit(&[&a, &b], t0)).await.unwrap();
        assert_eq!(second, [Committed::Duplicate, Committed::Enqueued]);
        let ids = job_ids(&db).await;
        assert_eq!(ids, ["a", "b"]);

        let day = t0.date_naive();
        let usage = db.usage("int_test", day, day).await.unwrap();
        let expected = UsageCounts::from([
            (key("accepted"), 2),
            (key("duplicate/duplicate"), 1),
            (key("skipped/suffix_filtered"), 2),
        ]);
        assert_eq!(usage, BTreeMap::from([(day, expected)]));

        // Past the old 30-day limit the ledger still remembers; past the horizon it forgets,
        // and the object becomes a job again.
        let month_later = t0 + OLD_LEDGER_RETENTION + chrono::Duration::days(1);
        assert_eq!(
            db.commit(&commit(&[&a], month_later)).await.unwrap(),
            [Committed::Duplicate]
        );
        let past_horizon = t0 + HORIZON;
        assert_eq!(
            db.commit(&commit(&[&a], past_horizon)).await.unwrap(),
            [Committed::Enqueued]
        );
    }

    #[tokio::test]
    async fn a_runtime_thread_about_to_park_commits_every_request_waiting_in_one_group() {
        // A writer with no thread of its own: only `commit_before_park` can run what waits.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let db = Sqlite::open(&path).unwrap();
        let writer = Writer::new(connect(&path).unwrap()).unwrap();
        let (a, b, c) = (job("a"), job("b"), job("c"));
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let requests = [
            commit(&[&a], now),
            commit(&[&b, &a], now),
            commit(&[&c], now),
        ];
        let mut answers = Vec::new();
        for request in &requests {
            let (pending, answer) = db.pending(request);
            assert!(writer.push(pending).is_ok());
            answers.push(answer);
        }
        assert!(
            answers.iter_mut().all(|a| a.try_recv().is_err()),
            "nothing runs it yet"
        );

        commit_before_park();
        let answered: Vec<Vec<Committed>> = answers
            .into_iter()
            .map(|mut answer| answer.try_recv().unwrap().unwrap())
            .collect();
        assert_eq!(
            answered,
            [
                vec![Committed::Enqueued],
                vec![Committed::Enqueued, Committed::Duplicate],
                vec![Committed::Enqueued]
            ]
        );
        assert_eq!(job_ids(&db).await, ["a", "b", "c"]);
        assert!(writer.waiting.lock().unwrap().commits.is_empty());
    }

    #[tokio::test]
    async fn a_runtime_thread_never_waits_for_the_write_lock_it_gives_the_group_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let db = Sqlite::open(&path).unwrap();
        let writer = Writer::new(connect(&path).unwrap()).unwrap();
        // Another connection holds the write lock, as a checkpoint starting the WAL over does.
        let mut other = connect(&path).unwrap();
        let held = other
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        let a = job("a");
        let (pending, mut answer) = db.pending(&commit(&[&a], Utc::now()));
        writer.push(pending).unwrap();

        commit_before_park();
        assert!(answer.try_recv().is_err(), "not answered, not failed");
        assert_eq!(
            writer.waiting.lock().unwrap().commits.len(),
            1,
            "given back"
        );

        drop(held);
        commit_before_park();
        assert_eq!(answer.try_recv().unwrap().unwrap(), [Committed::Enqueued]);
        assert_eq!(job_ids(&db).await, ["a"]);
    }

    #[tokio::test]
    async fn the_last_event_per_outcome_is_written_once_a_second_and_before_any_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let db = Sqlite::open(&path).unwrap();
        let in_file = |conn: &Connection| -> Option<String> {
            conn.query_row(
                "SELECT job_id FROM last_seen WHERE integration_id = 'int_test' \
                 AND outcome = 'accepted'",
                [],
                |row| row.get(0),
            )
            .optional()
            .unwrap()
        };
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let (a, b, c) = (job("a"), job("b"), job("c"));
        let mut writer = WriterConn {
            conn: connect(&path).unwrap(),
            last: LastEvents::default(),
        };
        let run = |writer: &mut WriterConn, request: &Commit<'_>| {
            let (pending, _answer) = db.pending(request);
            commit_group(writer, vec![pending], LedgerById(false), Busy::Wait);
        };
        run(&mut writer, &commit(&[&a], t0));
        assert_eq!(
            in_file(&writer.conn).as_deref(),
            Some("a"),
            "the first at once"
        );
        // However slow this machine, the next is not due yet.
        writer.last.written = Some(std::time::Instant::now() + LAST_EVENTS_EVERY);
        run(
            &mut writer,
            &commit(&[&b], t0 + chrono::Duration::seconds(1)),
        );
        assert_eq!(
            in_file(&writer.conn).as_deref(),
            Some("a"),
            "the next waits for its second"
        );
        writer.write_last().unwrap();
        assert_eq!(in_file(&writer.conn).as_deref(), Some("b"));
        // An older event written late never replaces a newer one.
        writer.last.add(
            "int_test",
            &[Seen {
                key: "old".into(),
                outcome: Outcome::Accepted,
                reason: None,
                job_id: Some("old".into()),
                at: t0,
            }],
        );
        writer.write_last().unwrap();
        assert_eq!(in_file(&writer.conn).as_deref(), Some("b"));

        // Through the backend: a read writes what waits first, whatever the second.
        db.commit(&commit(&[&c], t0 + chrono::Duration::seconds(2)))
            .await
            .unwrap();
        let last = db.last_seen("int_test").await.unwrap();
        assert_eq!(last[&Outcome::Accepted].job_id.as_deref(), Some("c"));
        assert_eq!(in_file(&writer.conn).as_deref(), Some("c"));

        // A backend dropped (the process stopping cleanly) writes what waits.
        let d = job("d");
        db.commits.0.conn.lock().unwrap().last.written =
            Some(std::time::Instant::now() + LAST_EVENTS_EVERY);
        db.commit(&commit(&[&d], t0 + chrono::Duration::seconds(3)))
            .await
            .unwrap();
        assert_eq!(in_file(&writer.conn).as_deref(), Some("c"), "not due yet");
        drop(db);
        assert_eq!(in_file(&writer.conn).as_deref(), Some("d"));
    }

    #[tokio::test]
    async fn a_group_ends_as_its_requests_would_one_by_one() {
        // Three requests in one group, against the same requests committed one at a time: the
        // answers, the usage counts (two hours) and the last event per outcome must agree.
        let (a, b) = (job("a"), job("b"));
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let next_hour = t0 + chrono::Duration::hours(1);
        let requests = [
            commit(&[&a], t0),
            commit(&[&a, &b], t0),
            commit(&[&b], next_hour),
        ];
        let (grouped_dir, alone_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let grouped = Sqlite::open(&grouped_dir.path().join("relay.db")).unwrap();
        let alone = Sqlite::open(&alone_dir.path().join("relay.db")).unwrap();

        let mut conn = WriterConn {
            conn: connect(&grouped_dir.path().join("relay.db")).unwrap(),
            last: LastEvents::default(),
        };
        let (group, answers): (Vec<_>, Vec<_>) = requests
            .iter()
            .map(|request| grouped.pending(request))
            .unzip();
        commit_group(&mut conn, group, LedgerById(false), Busy::Wait);
        let mut grouped_answers = Vec::new();
        for answer in answers {
            grouped_answers.push(answer.await.unwrap().unwrap());
        }
        let mut alone_answers = Vec::new();
        for request in &requests {
            alone_answers.push(alone.commit(request).await.unwrap());
        }
        assert_eq!(grouped_answers, alone_answers);
        assert_eq!(
            grouped_answers,
            [
                vec![Committed::Enqueued],
                vec![Committed::Duplicate, Committed::Enqueued],
                vec![Committed::Duplicate]
            ]
        );

        let usage = |db: Sqlite| async move {
            let mut hours = db
                .usage_rows("int_test", "2023".into(), "2024".into())
                .await
                .unwrap();
            hours.sort();
            (hours, db.last_seen("int_test").await.unwrap())
        };
        let (grouped, alone) = (usage(grouped).await, usage(alone).await);
        assert_eq!(grouped, alone);
        let (hours, last) = grouped;
        assert_eq!(last[&Outcome::Accepted].job_id.as_deref(), Some("b"));
        assert_eq!(
            last[&Outcome::Duplicate].at,
            next_hour,
            "the group's last duplicate"
        );
        let in_hour = |hour: DateTime<Utc>| {
            hours
                .iter()
                .filter(|(at, _, _)| *at == usage_hour(hour))
                .map(|(_, name, count)| (name.to_string(), *count))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            in_hour(t0),
            BTreeMap::from([
                ("accepted".to_owned(), 2),
                ("duplicate/duplicate".to_owned(), 1),
                ("skipped/suffix_filtered".to_owned(), 2)
            ])
        );
        assert_eq!(
            in_hour(next_hour),
            BTreeMap::from([
                ("duplicate/duplicate".to_owned(), 1),
                ("skipped/suffix_filtered".to_owned(), 1)
            ])
        );
    }

    #[tokio::test]
    async fn a_shorter_horizon_applies_to_the_jobs_made_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("relay.db")).unwrap();
        let a = job("a");
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        db.commit(&commit(&[&a], t0)).await.unwrap();
        let later = t0 + chrono::Duration::days(21);
        let at = |days| LedgerTime {
            now: later,
            horizon: chrono::Duration::days(days),
        };
        assert_eq!(
            db.recorded(&[&a], at(400)).await.unwrap(),
            [Recorded::Enqueued]
        );
        assert_eq!(
            db.recorded(&[&a], at(20)).await.unwrap(),
            [Recorded::Unknown]
        );
        let shorter = Commit {
            horizon: chrono::Duration::days(20),
            ..commit(&[&a], later)
        };
        assert_eq!(db.commit(&shorter).await.unwrap(), [Committed::Enqueued]);
    }

    #[tokio::test]
    async fn the_history_keeps_each_keys_last_event_and_its_last_job() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("relay.db")).unwrap();
        let a = sample_job("j_a", "in/a.pdf");
        let t0 = Utc::now() - chrono::Duration::minutes(5);
        let t1 = t0 + chrono::Duration::minutes(1);
        db.commit(&commit(&[&a], t0)).await.unwrap();
        db.commit(&commit(&[&a], t1)).await.unwrap();

        // The redelivery at t1 repeats the job: the key's last word stays the job.
        let history = db.object("int_test", "in/a.pdf").await.unwrap().unwrap();
        assert_eq!(
            (history.last.outcome, history.last.reason, history.last.at),
            (Outcome::Accepted, None, t0.trunc_subsecs(3))
        );
        let enqueued = history.enqueued.unwrap();
        assert_eq!(
            (enqueued.job_id.as_str(), enqueued.at),
            ("j_a", t0.trunc_subsecs(3))
        );
        let skipped = db.object("int_test", "a.txt").await.unwrap().unwrap();
        assert_eq!(skipped.last.reason, Some(Reason::SuffixFiltered));
        assert_eq!(skipped.enqueued, None);
        assert_eq!(db.object("int_test", "in/b.pdf").await.unwrap(), None);
        assert_eq!(db.object("int_other", "in/a.pdf").await.unwrap(), None);

        let last = db.last_seen("int_test").await.unwrap();
        let keys: Vec<(Outcome, &str)> =
            last.values().map(|s| (s.outcome, s.key.as_str())).collect();
        assert_eq!(
            keys,
            [
                (Outcome::Accepted, "in/a.pdf"),
                (Outcome::Duplicate, "in/a.pdf"),
                (Outcome::Skipped, "a.txt")
            ]
        );
        assert_eq!(last[&Outcome::Skipped].at, t1.trunc_subsecs(3));
    }

    #[tokio::test]
    async fn a_keys_last_word_follows_its_events_whether_they_make_a_job_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("relay.db")).unwrap();
        let c = sample_job("j_c", "in/c.pdf");
        let t0 = Utc::now().trunc_subsecs(3) - chrono::Duration::minutes(5);
        let minutes = |n| t0 + chrono::Duration::minutes(n);
        let settled = |outcome, reason| Settled {
            key: Some("in/c.pdf".into()),
            outcome,
            reason: Some(reason),
            job_id: None,
        };
        let alone = |event: Settled, now| Commit {
            jobs: vec![],
            settled: vec![event],
            ..commit(&[], now)
        };
        let last = |db: &Sqlite| {
            let db = db.clone();
            async move {
                let history = db.object("int_test", "in/c.pdf").await.unwrap().unwrap();
                let enqueued = history.enqueued.map(|job| (job.job_id, job.at));
                (history.last.outcome, history.last.at, enqueued)
            }
        };

        db.commit(&alone(
            settled(Outcome::Rejected, Reason::BucketMismatch),
            t0,
        ))
        .await
        .unwrap();
        assert_eq!(last(&db).await, (Outcome::Rejected, t0, None));

        let with_job = Commit {
            settled: vec![],
            ..commit(&[&c], minutes(1))
        };
        db.commit(&with_job).await.unwrap();
        let job = Some(("j_c".to_owned(), minutes(1)));
        assert_eq!(
            last(&db).await,
            (Outcome::Accepted, minutes(1), job.clone()),
            "the job replaces the rejection as the key's last word"
        );

        db.commit(&alone(
            settled(Outcome::Skipped, Reason::SuffixFiltered),
            minutes(2),
        ))
        .await
        .unwrap();
        assert_eq!(
            last(&db).await,
            (Outcome::Skipped, minutes(2), job),
            "a later skip is the last word, and the key's job is still named"
        );
    }

    #[tokio::test]
    async fn usage_adds_up_per_hour_per_day_and_integration_with_the_days_kept_before() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("relay.db")).unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        let at = |h: u32, m: u32| day.and_hms_opt(h, m, 0).unwrap().and_utc();
        let counts = |n| UsageCounts::from([(key("accepted"), n)]);
        for (id, when, n) in [
            ("int_1", at(9, 5), 2),
            ("int_1", at(9, 55), 3),
            ("int_1", at(10, 1), 4),
            ("int_2", at(10, 1), 7),
            ("int_1", at(0, 0) - chrono::Duration::minutes(1), 1),
        ] {
            UsageLog::record(&db, id, when, &counts(n)).await.unwrap();
        }
        // A whole day's row, as a file from before hours were kept has it.
        let whole_day = counts(10);
        db.write(move |tx| add_usage(tx, "int_1", "2026-11-22", &whole_day))
            .await
            .unwrap();
        let usage = db.usage("int_1", day, day).await.unwrap();
        assert_eq!(usage, BTreeMap::from([(day, counts(19))]));
        assert_eq!(db.recent("int_1", at(10, 30)).await.unwrap(), counts(4));
        assert_eq!(db.recent("int_1", at(9, 59)).await.unwrap(), counts(9));
    }

    #[tokio::test]
    async fn a_wal_past_its_bound_starts_over_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let db = Sqlite::open(&path).unwrap();
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let jobs: Vec<IngestJob> = (0..2000).map(|i| job(&format!("j{i}"))).collect();
        let refs: Vec<&IngestJob> = jobs.iter().collect();
        db.commit(&commit(&refs, t0)).await.unwrap();
        let wal = dir.path().join("relay.db-wal");
        let size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
        assert!(size() > 256 * 1024, "the commit went to the WAL");
        let checkpointer = connect(&path).unwrap();
        checkpoint(&checkpointer, i64::MAX).unwrap();
        assert!(
            size() > 256 * 1024,
            "within its bound the WAL file is left as it is"
        );
        let before = size();
        checkpoint(&checkpointer, 256 * 1024).unwrap();
        let more: Vec<IngestJob> = (2000..4000).map(|i| job(&format!("j{i}"))).collect();
        let refs: Vec<&IngestJob> = more.iter().collect();
        db.commit(&commit(&refs, t0)).await.unwrap();
        assert!(
            size() <= before + before / 4,
            "past its bound the WAL starts over: {} bytes after {before}",
            size()
        );
        assert_eq!(
            job_ids(&db).await.len(),
            4000,
            "and every job is still there"
        );
    }

    #[tokio::test]
    async fn a_version_1_file_keeps_its_ledger_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let expires = (t0 + OLD_LEDGER_RETENTION).timestamp_millis();
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE ledger (job_id TEXT PRIMARY KEY, integration_id TEXT NOT NULL,
                     bucket TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL,
                     claimed_at_ms INTEGER NOT NULL, expires_at_ms INTEGER NOT NULL);",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO ledger VALUES ('j1', 'int_1', 'b', 'k', 'done', 0, ?1)",
                [expires],
            )
            .unwrap();
        }
        let db = Sqlite::open(&path).unwrap();
        let committed = db.commit(&commit(&[&job("j1"), &job("j2")], t0)).await;
        assert_eq!(
            committed.unwrap(),
            [Committed::Duplicate, Committed::Enqueued],
            "the job the old ledger remembers stays a duplicate"
        );
        let again = Sqlite::open(&path).unwrap();
        let a_month_on = t0 + OLD_LEDGER_RETENTION + chrono::Duration::days(1);
        assert_eq!(
            again
                .commit(&commit(&[&job("j1")], a_month_on))
                .await
                .unwrap(),
            [Committed::Duplicate],
            "the old ledger's entries last for the horizon, not 30 days"
        );
        let version: i64 = again
            .run(|conn| conn.query_row("PRAGMA user_version", [], |row| row.get(0)))
            .await
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn a_version_3_ledger_is_migrated_in_place_to_the_horizon() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE ledger (job_id TEXT PRIMARY KEY, expires_at_ms INTEGER NOT NULL)
                     WITHOUT ROWID;
                 PRAGMA user_version = 3;",
            )
            .unwrap();
            let expires = (t0 + OLD_LEDGER_RETENTION).timestamp_millis();
            conn.execute("INSERT INTO ledger VALUES ('j1', ?1)", [expires])
                .unwrap();
        }
        let db = Sqlite::open(&path).unwrap();
        let at = |now| LedgerTime {
            now,
            horizon: HORIZON,
        };
        let day = chrono::Duration::days(1);
        let recorded = |now| {
            let db = &db;
            async move { db.recorded(&[&job("j1")], at(now)).await.unwrap() }
        };
        assert_eq!(
            recorded(t0 + OLD_LEDGER_RETENTION + day).await,
            [Recorded::Enqueued]
        );
        assert_eq!(recorded(t0 + HORIZON - day).await, [Recorded::Enqueued]);
        assert_eq!(recorded(t0 + HORIZON).await, [Recorded::Unknown]);
    }

    #[tokio::test]
    async fn a_version_5_ledger_and_history_move_into_objects_and_nothing_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let (a, b, lost) = (
            sample_job("ja", "a.pdf"),
            sample_job("jb", "b.pdf"),
            job("jl"),
        );
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE ledger (job_id TEXT PRIMARY KEY, made_at_ms INTEGER NOT NULL)
                     WITHOUT ROWID;
                 CREATE TABLE jobs (seq INTEGER PRIMARY KEY, job_id TEXT NOT NULL,
                     body TEXT NOT NULL);
                 CREATE TABLE objects (integration_id TEXT NOT NULL, key TEXT NOT NULL,
                     outcome TEXT NOT NULL, reason TEXT, job_id TEXT, at_ms INTEGER NOT NULL,
                     enqueued_job TEXT, enqueued_at_ms INTEGER,
                     PRIMARY KEY (integration_id, key)) WITHOUT ROWID;
                 PRAGMA user_version = 5;",
            )
            .unwrap();
            let seen_at = Utc::now().trunc_subsecs(3);
            conn.execute(
                "INSERT INTO objects VALUES ('int_test', 'a.pdf', 'duplicate', NULL, 'ja', ?1,
                     'ja', ?2)",
                params![seen_at.timestamp_millis() + 5, seen_at.timestamp_millis()],
            )
            .unwrap();
            for job in [&a, &b, &lost] {
                conn.execute(
                    "INSERT INTO ledger VALUES (?1, ?2)",
                    params![job.job_id, t0.timestamp_millis()],
                )
                .unwrap();
            }
            // `jl`'s job is gone from the queue table (say, deleted by hand): its key is unknown.
            for job in [&a, &b, &a] {
                conn.execute(
                    "INSERT INTO jobs (job_id, body) VALUES (?1, ?2)",
                    params![job.job_id, job.message(JobSchema::V2)],
                )
                .unwrap();
            }
        }
        let db = Sqlite::open(&path).unwrap();
        let rows = |sql: &'static str| {
            let db = &db;
            async move {
                db.run(move |conn| {
                    let mut stmt = conn.prepare(sql)?;
                    let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
                    rows.collect::<rusqlite::Result<Vec<String>>>()
                })
                .await
                .unwrap()
            }
        };
        assert_eq!(
            rows("SELECT key || ' ' || job_id FROM objects WHERE job_id <> '' ORDER BY key").await,
            ["a.pdf ja", "b.pdf jb"],
            "each entry whose job names its key is in the keyed ledger, once"
        );
        let history = db.object("int_test", "a.pdf").await.unwrap().unwrap();
        assert_eq!(
            (history.last.outcome, history.last.job_id.as_deref()),
            (Outcome::Duplicate, Some("ja"))
        );
        assert_eq!(
            history.enqueued.unwrap().at + chrono::Duration::milliseconds(5),
            history.last.at,
            "the key's history is kept"
        );
        assert_eq!(rows("SELECT job_id FROM ledger_by_id").await, ["jl"]);
        let later = t0 + chrono::Duration::days(1);
        let at = LedgerTime {
            now: later,
            horizon: HORIZON,
        };
        assert_eq!(
            db.recorded(&[&a, &lost, &job("new")], at).await.unwrap(),
            [Recorded::Enqueued, Recorded::Enqueued, Recorded::Unknown]
        );
        assert_eq!(
            db.commit(&commit(&[&a, &b, &lost, &job("new")], later))
                .await
                .unwrap(),
            [
                Committed::Duplicate,
                Committed::Duplicate,
                Committed::Duplicate,
                Committed::Enqueued
            ],
            "what the old ledger remembered stays a duplicate, by key or not"
        );
        assert_eq!(
            db.commit(&commit(&[&lost], t0 + HORIZON)).await.unwrap(),
            [Committed::Enqueued],
            "and is forgotten with its horizon"
        );
    }

    #[tokio::test]
    async fn jobs_and_integrations_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut integration = NewIntegration::new(Provider::R2, "bucket-b")
            .build("1", t0)
            .unwrap();
        {
            let db = Sqlite::open(&path).unwrap();
            db.commit(&commit(&[&job("j1"), &job("j2")], t0))
                .await
                .unwrap();
            db.put(&integration).await.unwrap();
        }
        let db = Sqlite::open(&path).unwrap();
        let ids = job_ids(&db).await;
        assert_eq!(ids, ["j1", "j2"]);
        assert_eq!(db.get("int_1").await.unwrap().as_ref(), Some(&integration));
        integration.bucket = "renamed".into();
        db.put(&integration).await.unwrap();
        assert_eq!(db.list().await.unwrap(), [integration]);
        assert!(db.delete("int_1").await.unwrap());
        assert!(!db.delete("int_1").await.unwrap());
        assert!(db.get("int_1").await.unwrap().is_none());
    }
}

//! `reconcile ID [--prefix P] [--since T] [--until T] [--repair] [--out FILE]`: whether every
//! object in the bucket became a job ([`crate::reconcile`]). The missing objects are named (the
//! first [`SHOWN`] on the terminal, all of them with `--json` or in `--out FILE`); the exit code
//! is 0 when none is missing (or every missing one was repaired), [`MISSING_EXIT_CODE`] when some
//! are, so it can run from cron or CI.

use super::args::ReconcileArgs;
use super::common::{CliResult, Printer, Report, Safe};
use super::listing::{one_bucket, poller, rate, Bar};
use crate::poll::RunError;
use crate::reconcile::{ReconcileScope, ReconcileSink, Reconciled};
use crate::wiring::Wired;
use anyhow::{anyhow, Context};
use relay_protocol::IngestJob;
use serde::Serialize;
use std::fmt;
use std::io::{IsTerminal, Write as _};

/// The exit code of a reconcile that found objects with no job.
pub(crate) const MISSING_EXIT_CODE: u8 = 3;
/// Missing objects listed on the terminal.
const SHOWN: usize = 100;

pub(crate) async fn reconcile(wired: Wired, printer: Printer, args: ReconcileArgs) -> CliResult {
    one_bucket(&wired, &args.id, args.prefix.as_deref(), "reconcile").await?;
    let out = match &args.out {
        Some(path) => Some(std::io::BufWriter::new(private_file(path)?)),
        None => None,
    };
    let mut sink = Collect {
        keep: if printer.json { usize::MAX } else { SHOWN },
        objects: Vec::new(),
        out,
        out_error: None,
        bar: std::io::stderr().is_terminal().then(Bar::new),
    };
    let poller = poller(&wired);
    let scope = ReconcileScope {
        prefix: args.prefix.clone(),
        since: args.since,
        until: args.until,
        past_horizon: args.past_horizon,
    };
    let result = poller
        .reconcile(&args.id, scope, args.repair, &mut sink)
        .await;
    drop(sink.bar.take());
    let found = result.map_err(|error| match error {
        RunError::Access(_) => anyhow!("reconcile of {}: {error}", args.id),
        error => anyhow!("reconcile of {} stopped: {error}", args.id),
    })?;
    if let Some(mut out) = sink.out.take() {
        out.flush().context("cannot write --out")?;
    }
    if let Some(error) = sink.out_error {
        return Err(anyhow!("cannot write --out: {error}"));
    }
    printer.emit(&Reconciliation {
        id: args.id,
        repair: args.repair,
        found,
        missing_objects: sink.objects,
        out: args.out.map(|path| path.display().to_string()),
    })
}

/// The `--out` file, created 0600: it names the customer's objects.
fn private_file(path: &std::path::Path) -> CliResult<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// A missing object as the report names it.
#[derive(Serialize)]
struct MissingObject {
    key: String,
    job_id: String,
    size: Option<u64>,
    etag: Option<String>,
    version_id: Option<String>,
    last_modified: String,
}

impl MissingObject {
    fn of(job: &IngestJob) -> Self {
        MissingObject {
            key: job.key.clone(),
            job_id: job.job_id.clone(),
            size: job.size,
            etag: job.etag.clone(),
            version_id: job.version_id.clone(),
            last_modified: job.event_time.clone(),
        }
    }
}

/// Keeps the missing objects the report shows, writes every one to `--out`, and shows progress.
struct Collect {
    keep: usize,
    objects: Vec<MissingObject>,
    out: Option<std::io::BufWriter<std::fs::File>>,
    out_error: Option<std::io::Error>,
    bar: Option<Bar>,
}

impl ReconcileSink for Collect {
    fn missing(&mut self, job: &IngestJob) {
        let object = MissingObject::of(job);
        if let Some(out) = &mut self.out {
            let line = serde_json::to_string(&object).unwrap_or_default();
            if let Err(error) = writeln!(out, "{line}") {
                self.out_error.get_or_insert(error);
            }
        }
        if self.objects.len() < self.keep {
            self.objects.push(object);
        }
    }

    fn page(&mut self, so_far: &Reconciled, elapsed_s: f64) {
        match &self.bar {
            Some(bar) => bar.say(format!(
                "listed {} · with a job {} · missing {} · repaired {} · {:.0} objects/s",
                so_far.listed,
                so_far.with_job,
                so_far.missing,
                so_far.repaired,
                rate(so_far.listed, elapsed_s)
            )),
            None => crate::events::ReconcileProgress {
                listed: so_far.listed,
                with_job: so_far.with_job,
                missing: so_far.missing,
                repaired: so_far.repaired,
                objects_per_s: rate(so_far.listed, elapsed_s),
            }
            .emit(),
        }
    }
}

/// What a reconcile found, and the missing objects.
#[derive(Serialize)]
struct Reconciliation {
    id: String,
    repair: bool,
    #[serde(flatten)]
    found: Reconciled,
    /// With `--json` every missing object; on the terminal the first [`SHOWN`].
    missing_objects: Vec<MissingObject>,
    /// The file every missing object was written to.
    out: Option<String>,
}

impl Report for Reconciliation {
    fn render(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        let f = &self.found;
        writeln!(
            out,
            "Reconcile of {}: listed {}, considered {}, admitted {}, with a job {}, in flight {}, \
             missing {}{}.",
            self.id,
            f.listed,
            f.considered,
            f.admitted,
            f.with_job,
            f.in_flight,
            f.missing,
            if self.repair {
                format!(", repaired {}", f.repaired)
            } else {
                String::new()
            }
        )?;
        if !f.skipped.is_empty() {
            let skipped: Vec<String> = f.skipped.iter().map(|(r, n)| format!("{r}={n}")).collect();
            writeln!(out, "Skipped by the filters: {}.", skipped.join(" "))?;
        }
        if f.beyond_horizon > 0 {
            writeln!(
                out,
                "Beyond the horizon: {} objects older than the ledger's horizon that it has no \
                 job for: each may have been a job, forgotten since. Neither vouched for nor \
                 counted missing; --past-horizon judges them (and with --repair makes them jobs).",
                f.beyond_horizon
            )?;
        }
        if !self.missing_objects.is_empty() {
            writeln!(out, "\nMissing:")?;
            for object in &self.missing_objects {
                writeln!(out, "  {}  {}", object.job_id, Safe(&object.key))?;
            }
            let more = f.missing.saturating_sub(self.missing_objects.len() as u64);
            if more > 0 {
                writeln!(
                    out,
                    "  … and {more} more (all of them with --json or --out FILE)"
                )?;
            }
        }
        if let Some(path) = &self.out {
            writeln!(out, "Every missing object is in {}.", Safe(path))?;
        }
        Ok(())
    }

    fn failure(&self) -> Option<String> {
        let left = self.found.unrepaired();
        (left > 0).then(|| {
            format!(
                "{left} objects of {} have no job{}",
                self.id,
                if self.repair {
                    ""
                } else {
                    ": make them with --repair"
                }
            )
        })
    }

    fn exit_code(&self) -> u8 {
        MISSING_EXIT_CODE
    }
}

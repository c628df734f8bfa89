//! The listing commands, `poll` (ticks) and `backfill` (every object once), on top of
//! [`crate::poll`], with their reports and a backfill's progress.

use super::args::{BackfillArgs, PollArgs};
use super::common::{load, Checked, CliResult, Printer, Report, Safe};
use crate::poll::{BackfillOptions, BackfillScope, Paced, Poller, Progress, RunError, RunTally};
use crate::wiring::Wired;
use anyhow::{anyhow, bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use relay_protocol::Reason;
use serde::{Serialize, Serializer};
use std::fmt::{self, Write};
use std::io::IsTerminal;
use std::sync::Arc;

/// A poller over the process's backends and bucket clients.
pub(crate) fn poller(wired: &Wired) -> Poller {
    let buckets = Arc::clone(&wired.buckets);
    Poller::new(&wired.backends, Arc::clone(&wired.keys), buckets)
}

/// `poll`: one tick, or one every `--every` until interrupted.
pub(crate) async fn poll(wired: Wired, printer: Printer, args: PollArgs) -> CliResult {
    let overlap = chrono::Duration::from_std(*args.overlap)
        .ok()
        .with_context(|| format!("--overlap {} is too long", args.overlap))?;
    let poller = poller(&wired);
    loop {
        // Ctrl-C ends a tick too: what it committed stays, its watermark is not moved, and the
        // next tick takes the rest.
        let results = tokio::select! {
            results = poller.tick(args.integration.as_deref(), overlap) => results?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let report = Tick(results);
        let Some(every) = args.every else {
            return printer.emit(&report);
        };
        printer.show(&report)?;
        tokio::select! {
            () = tokio::time::sleep(*every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Runs a tick every `every` for as long as the process lives: `serve --poll-every`.
pub(crate) async fn spawn_ticks(wired: &Wired, every: std::time::Duration) {
    tokio::spawn(Arc::new(poller(wired)).run_every(every));
}

/// `backfill`: every object in scope, once; resumable; progress on stderr.
pub(crate) async fn backfill(wired: Wired, printer: Printer, args: BackfillArgs) -> CliResult {
    one_bucket(&wired, &args.id, args.prefix.as_deref(), "backfill").await?;
    let poller = poller(&wired);
    let scope = BackfillScope {
        prefix: args.prefix.clone(),
        since: args.since,
    };
    let mut progress: Box<dyn Progress> = if std::io::stderr().is_terminal() {
        Box::new(Bar::new())
    } else {
        Box::new(Lines)
    };
    let result = poller
        .backfill(
            &args.id,
            scope,
            BackfillOptions {
                restart: args.restart,
                dry_run: args.dry_run,
                past_horizon: args.past_horizon,
                write_units: args.write_units,
            },
            progress.as_mut(),
        )
        .await;
    drop(progress);
    let id = &args.id;
    let done = result.map_err(|error| match error {
        RunError::Access(_) => anyhow!("backfill of {id}: {error}"),
        error => {
            anyhow!("backfill of {id} stopped: {error}; run it again to resume where it stopped")
        }
    })?;
    printer.emit(&Backfill {
        id: args.id,
        dry_run: args.dry_run,
        resumed_after: done.resumed_after,
        tally: done.run,
        total: done.total,
        paced: done.paced,
    })
}

/// Checks that `id` lists one bucket and that `prefix` lies within its own: what a command
/// that lists the whole bucket once (`backfill`, `reconcile`) needs.
pub(crate) async fn one_bucket(
    wired: &Wired,
    id: &str,
    prefix: Option<&str>,
    command: &str,
) -> CliResult {
    let integration = load(wired.backends.store.as_ref(), id).await?;
    if integration.scope.is_some() {
        bail!(
            "integration {id} covers many buckets ({}): a {command} lists one bucket, so \
             {command} through a one-bucket integration",
            integration.bucket
        );
    }
    if let (Some(narrower), Some(own)) = (prefix, &integration.prefix) {
        if !narrower.starts_with(own.as_str()) {
            bail!(
                "--prefix {narrower:?} is outside the integration's prefix {own:?}: every object \
                 under it would be skipped as prefix_filtered"
            );
        }
    }
    Ok(())
}

/// Progress as a bar on a terminal (a backfill's, a reconcile's).
pub(crate) struct Bar(ProgressBar);

impl Bar {
    pub(crate) fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Bar(bar)
    }
}

impl Progress for Bar {
    fn page(&mut self, tally: &RunTally, elapsed_s: f64) {
        self.0.set_message(format!(
            "listed {} · jobs {} · duplicates {} · skipped {} · {:.0} objects/s",
            tally.listed,
            tally.jobs,
            tally.duplicates,
            tally.skipped_total(),
            rate(tally.listed, elapsed_s)
        ));
    }
}

impl Bar {
    /// Shows `message` beside the spinner.
    pub(crate) fn say(&self, message: String) {
        self.0.set_message(message);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Progress as one JSON log line per page, when stderr is not a terminal.
struct Lines;

impl Progress for Lines {
    fn page(&mut self, tally: &RunTally, elapsed_s: f64) {
        crate::events::BackfillProgress {
            listed: tally.listed,
            considered: tally.considered,
            jobs: tally.jobs,
            duplicates: tally.duplicates,
            skipped: tally.skipped_total(),
            skipped_by_reason: tally.skipped_by_reason(),
            objects_per_s: rate(tally.listed, elapsed_s),
        }
        .emit();
    }
}

/// Objects per second.
pub(crate) fn rate(count: u64, elapsed_s: f64) -> f64 {
    if elapsed_s > 0.0 {
        count as f64 / elapsed_s
    } else {
        0.0
    }
}

/// One poll tick: each integration's tally, or why its tick failed.
struct Tick(Vec<(String, Result<RunTally, RunError>)>);

impl Serialize for Tick {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Doc<'a> {
            id: &'a str,
            #[serde(flatten)]
            checked: Checked,
            #[serde(skip_serializing_if = "Option::is_none")]
            tally: Option<&'a RunTally>,
        }
        serializer.collect_seq(self.0.iter().map(|(id, result)| Doc {
            id,
            checked: Checked::of(result, RunError::name, ToString::to_string),
            tally: result.as_ref().ok(),
        }))
    }
}

impl Report for Tick {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        if self.0.is_empty() {
            writeln!(
                out,
                "Nothing to list: no active poll-mode integration, and no safety net due."
            )?;
        }
        for (id, result) in &self.0 {
            match result {
                Ok(tally) => writeln!(
                    out,
                    "{id}: listed {}, new jobs {}{}, duplicates {}, skipped {}{}",
                    tally.listed,
                    tally.jobs,
                    if tally.missed_by_events > 0 {
                        format!(" (missed by events: {})", tally.missed_by_events)
                    } else {
                        String::new()
                    },
                    tally.duplicates,
                    tally.skipped_total(),
                    skipped_detail(tally)
                )?,
                Err(error) => writeln!(out, "{id}: failed: {}", Safe(&error.to_string()))?,
            }
        }
        Ok(())
    }

    fn failure(&self) -> Option<String> {
        let failed = self.0.iter().filter(|(_, result)| result.is_err()).count();
        (failed > 0).then(|| {
            format!(
                "{failed} of {} integrations failed their tick",
                self.0.len()
            )
        })
    }
}

fn skipped_detail(tally: &RunTally) -> String {
    if tally.skipped.is_empty() {
        String::new()
    } else {
        format!(" ({})", tally.skipped_by_reason())
    }
}

/// A finished backfill: this run's figures, and every run's since the backfill started.
#[derive(Serialize)]
struct Backfill {
    id: String,
    dry_run: bool,
    resumed_after: Option<String>,
    /// This run.
    tally: RunTally,
    /// Every run of this backfill (the same as `tally` unless it resumed).
    total: RunTally,
    /// The rate its ledger writes were held to (DynamoDB), and the time it waited for it.
    paced: Option<Paced>,
}

impl Report for Backfill {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        if let Some(key) = &self.resumed_after {
            writeln!(out, "Resumed after key {key:?}.")?;
        }
        let (dry_run, tally) = (self.dry_run, &self.tally);
        let jobs = if dry_run { "would be jobs" } else { "new jobs" };
        writeln!(
            out,
            "Backfill of {}{}: listed {}, considered {}, {jobs} {}, duplicates {}, skipped {}{}.",
            self.id,
            if dry_run { " (dry run)" } else { "" },
            tally.listed,
            tally.considered,
            tally.jobs,
            tally.duplicates,
            tally.skipped_total(),
            skipped_detail(tally)
        )?;
        let past = tally.skipped.get(Reason::BeyondHorizon.as_str()).copied();
        if let Some(past) = past.filter(|n| *n > 0) {
            writeln!(
                out,
                "{past} objects older than the ledger's horizon with no job it remembers were \
                 left alone (beyond_horizon): each may have been a job once. --past-horizon \
                 makes them jobs."
            )?;
        }
        if self.resumed_after.is_some() {
            let total = &self.total;
            writeln!(
                out,
                "With the runs before it: listed {}, {jobs} {}, duplicates {}, skipped {}.",
                total.listed,
                total.jobs,
                total.duplicates,
                total.skipped_total()
            )?;
        }
        if let Some(paced) = &self.paced {
            let of = match (paced.table_units, paced.source.table_figure()) {
                (Some(units), Some(figure)) => {
                    format!("half the ledger table's {units} {figure} write units a second")
                }
                _ => "--write-units".to_owned(),
            };
            let commits = match paced.commits_at_once {
                1 => "one commit of 100 jobs at a time".to_owned(),
                n => format!("{n} commits of 100 jobs at once"),
            };
            writeln!(
                out,
                "Ledger writes held to {} write units a second ({of}), {commits}; waited {:.1} s \
                 for it.",
                paced.write_units_per_second, paced.waited_s
            )?;
        }
        Ok(())
    }
}

//! `status [--watch 5s]`: the operator's one screen. Every integration with its mode, state and
//! last event, its events of the last hour and day by outcome, the queues' depths (the embedded
//! queue, or the SQS ingest queue and its dead-letter queue), and the integrations whose events
//! were refused or retried more than [`ERROR_SHARE_ALARM`] of the time in the last hour: the
//! threshold the alerts use (deploy/prometheus, the contract's `error_share_alarm`).

use super::args::StatusArgs;
use super::common::{time, CliResult, Printer, Report, Safe};
use crate::backend::{error_chain, QueueDepth, Seen, UsageCounts, UsageKey};
use crate::events::ERROR_SHARE_ALARM;
use crate::wiring::Wired;
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use relay_protocol::{Integration, Outcome, Reason};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::io::IsTerminal;

/// Integrations read at once.
const AT_ONCE: usize = 8;

pub(crate) async fn status(wired: Wired, printer: Printer, args: StatusArgs) -> CliResult {
    loop {
        let report = gather(&wired, Utc::now()).await?;
        let Some(every) = args.watch else {
            return printer.emit(&report);
        };
        if !printer.json && std::io::stdout().is_terminal() {
            print!("\x1b[2J\x1b[H"); // a fresh screen each time
        }
        printer.show(&report)?;
        tokio::select! {
            () = tokio::time::sleep(*every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Events by outcome.
type OutcomeCounts = BTreeMap<Outcome, u64>;

fn by_outcome(counts: &UsageCounts) -> OutcomeCounts {
    let mut outcomes = OutcomeCounts::new();
    for (key, count) in counts {
        *outcomes.entry(key.outcome).or_default() += count;
    }
    outcomes
}

/// The share of `counts` refused or to be retried; `None` without events. Events held back by
/// the integration's own rate limit (`rate_limited`) count on neither side: a limit is the
/// operator's choice, not an error (the alert in deploy/prometheus reads them the same way).
fn error_share(counts: &UsageCounts) -> Option<f64> {
    let chosen = |key: &&UsageKey| key.reason != Some(Reason::RateLimited);
    let counted = || counts.iter().filter(|(key, _)| chosen(key));
    let total: u64 = counted().map(|(_, count)| count).sum();
    let bad: u64 = counted()
        .filter(|(key, _)| matches!(key.outcome, Outcome::Rejected | Outcome::RetryLater))
        .map(|(_, count)| count)
        .sum();
    (total > 0).then(|| bad as f64 / total as f64)
}

#[derive(Serialize)]
struct IntegrationStatus {
    id: String,
    provider: String,
    bucket: String,
    mode: String,
    safety_net_secs: Option<u64>,
    status: String,
    /// The last event seen, of any outcome (from the history, 30 days).
    last_event: Option<Seen>,
    /// Events since the start of the previous hour, by outcome.
    last_hour: OutcomeCounts,
    /// Events since the start of the same hour yesterday, by outcome.
    last_day: OutcomeCounts,
    /// The share of `last_hour` refused or to be retried.
    error_share_last_hour: Option<f64>,
    /// Why some of the above could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

async fn one(wired: &Wired, integration: Integration, now: DateTime<Utc>) -> IntegrationStatus {
    let id = integration.id.clone();
    let backends = &wired.backends;
    let (last, hour, day) = futures::join!(
        backends.history.last_seen(&id),
        backends.usage.recent(&id, now - Duration::hours(1)),
        backends.usage.recent(&id, now - Duration::days(1)),
    );
    let mut errors = Vec::new();
    let last_event = keep(last, &mut errors)
        .and_then(|last| last.into_values().max_by_key(|seen: &Seen| seen.at));
    let hour = keep(hour, &mut errors).unwrap_or_default();
    let last_hour = by_outcome(&hour);
    let last_day = keep(day, &mut errors)
        .map(|c| by_outcome(&c))
        .unwrap_or_default();
    IntegrationStatus {
        error_share_last_hour: error_share(&hour),
        id,
        provider: integration.provider.to_string(),
        bucket: integration.bucket.clone(),
        mode: integration.mode.to_string(),
        safety_net_secs: integration
            .safety_net()
            .map(|_| integration.safety_net_secs.unwrap_or(0)),
        status: integration.status.to_string(),
        last_event,
        last_hour,
        last_day,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

/// The value, or `None` with the error kept for the report.
fn keep<T>(result: Result<T, crate::backend::BackendError>, errors: &mut Vec<String>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(error) => {
            errors.push(error_chain(&error));
            None
        }
    }
}

async fn gather(wired: &Wired, now: DateTime<Utc>) -> CliResult<Status> {
    let integrations = wired.backends.store.list().await?;
    let integrations: Vec<IntegrationStatus> = futures::stream::iter(integrations)
        .map(|integration| one(wired, integration, now))
        .buffered(AT_ONCE)
        .collect()
        .await;
    let (queues, queues_error) = match wired.backends.backlog.depths().await {
        Ok(depths) => (depths, None),
        Err(error) => (Vec::new(), Some(error_chain(&error))),
    };
    let above_threshold = integrations
        .iter()
        .filter(|i| {
            i.error_share_last_hour
                .is_some_and(|s| s > ERROR_SHARE_ALARM)
        })
        .map(|i| i.id.clone())
        .collect();
    Ok(Status {
        at: now,
        integrations,
        queues,
        queues_error,
        error_share_alarm: ERROR_SHARE_ALARM,
        above_threshold,
    })
}

/// `status`'s report.
#[derive(Serialize)]
struct Status {
    at: DateTime<Utc>,
    integrations: Vec<IntegrationStatus>,
    queues: Vec<QueueDepth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queues_error: Option<String>,
    error_share_alarm: f64,
    /// Integrations whose last hour's error share is above `error_share_alarm`.
    above_threshold: Vec<String>,
}

/// `12 accepted, 3 skipped, 1 rejected` (or `none`).
fn counts_text(counts: &OutcomeCounts) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(outcome, n)| format!("{n} {outcome}"))
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

impl Report for Status {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        writeln!(out, "Bucket Relay at {}\n", time(self.at))?;
        if self.integrations.is_empty() {
            writeln!(out, "No integrations.")?;
        }
        for i in &self.integrations {
            let net = i
                .safety_net_secs
                .map(|secs| {
                    let every = std::time::Duration::from_secs(secs);
                    format!(" + safety net every {}", humantime::format_duration(every))
                })
                .unwrap_or_default();
            writeln!(
                out,
                "{}  {} {}  {} mode{net}, {}",
                i.id,
                i.provider,
                Safe(&i.bucket),
                i.mode,
                i.status
            )?;
            match &i.last_event {
                Some(seen) => writeln!(
                    out,
                    "  last event  {} {}{}  {}",
                    time(seen.at),
                    seen.outcome,
                    seen.reason.map(|r| format!("/{r}")).unwrap_or_default(),
                    Safe(&seen.key)
                )?,
                None => writeln!(out, "  last event  none in 30 days")?,
            }
            let share = i
                .error_share_last_hour
                .map(|s| format!(" ({:.0}% refused or retried)", s * 100.0))
                .unwrap_or_default();
            writeln!(out, "  last hour   {}{share}", counts_text(&i.last_hour))?;
            writeln!(out, "  last day    {}", counts_text(&i.last_day))?;
            if let Some(error) = &i.error {
                writeln!(out, "  unreadable  {}", Safe(error))?;
            }
        }
        writeln!(out)?;
        for queue in &self.queues {
            let in_flight = queue
                .in_flight
                .map(|n| format!(", {n} in flight"))
                .unwrap_or_default();
            writeln!(
                out,
                "queue {}: {} waiting{in_flight}",
                queue.queue, queue.waiting
            )?;
        }
        if let Some(error) = &self.queues_error {
            writeln!(out, "queues: unreadable ({})", Safe(error))?;
        }
        if !self.above_threshold.is_empty() {
            writeln!(
                out,
                "\nRefused or retried more than {:.0}% of the time in the last hour: {}",
                self.error_share_alarm * 100.0,
                self.above_threshold.join(", ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_share_counts_refused_and_retried_events_against_all_but_the_rate_limited() {
        let key = |outcome, reason| UsageKey::new(outcome, reason);
        let mut usage = UsageCounts::from([
            (key(Outcome::Accepted, None), 3),
            (key(Outcome::Rejected, Some(Reason::BucketMismatch)), 2),
            (key(Outcome::RetryLater, Some(Reason::Paused)), 2),
            (key(Outcome::Skipped, Some(Reason::SuffixFiltered)), 1),
        ]);
        assert_eq!(error_share(&usage), Some(0.5));
        usage.insert(key(Outcome::RetryLater, Some(Reason::RateLimited)), 40);
        assert_eq!(error_share(&usage), Some(0.5), "held back by its own limit");
        assert_eq!(error_share(&UsageCounts::new()), None);
        let counts = by_outcome(&usage);
        assert_eq!(
            counts_text(&counts),
            "3 accepted, 1 skipped, 2 rejected, 42 retry_later"
        );
    }
}

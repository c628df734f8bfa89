//! `integrations set-limits`: what an integration admits, and what its rate means for a burst.
//!
//! Over the rate, events are answered `rate_limited` and their sender sends them again, for as
//! long as it retries ([`admission::retry_span_seconds`]): so the report says how big a burst the
//! limit drains before the senders give up on its tail and dead-letter it (kept, to be
//! replayed), and warns when the integration's busiest recent day made more jobs than the limit
//! admits in a day (that backlog would only grow).

use super::args::SetLimitsArgs;
use super::change::{update, Change, Updated};
use super::common::{CliResult, Report, Shown};
use crate::wiring::Wired;
use anyhow::anyhow;
use chrono::{DateTime, NaiveDate, Utc};
use relay_protocol::admission::{self, Overwrites};
use relay_protocol::{Integration, Outcome, Provider};
use serde::Serialize;
use std::fmt::{self, Write};

/// How many days of usage the busiest day is read from.
const BUSIEST_OF_DAYS: i64 = 30;

#[derive(Serialize)]
pub(crate) struct LimitsSet {
    #[serde(flatten, serialize_with = "shown")]
    integration: Integration,
    /// With a rate: what it carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<Carried>,
}

fn shown<S: serde::Serializer>(
    integration: &Integration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    Shown(integration).serialize(serializer)
}

#[derive(Serialize)]
struct Carried {
    jobs_per_day: u64,
    /// How long the sender retries a `rate_limited` event.
    retry_span_seconds: u64,
    /// The largest burst drained before the senders' retries end.
    backlog_carried: u64,
    /// The most jobs one of the last 30 days made, and which.
    #[serde(skip_serializing_if = "Option::is_none")]
    busiest_day: Option<(NaiveDate, u64)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
}

pub(crate) async fn set_limits(
    wired: &Wired,
    args: &SetLimitsArgs,
    now: DateTime<Utc>,
) -> CliResult<LimitsSet> {
    let change = SetLimits {
        jobs_per_minute: args.max_jobs_per_minute.map(|rate| rate.0),
        max_object_bytes: args.max_object_bytes,
        overwrites: args.overwrites,
    };
    let Updated(integration) = update(wired.backends.store.as_ref(), &args.id, now, change).await?;
    let rate = match integration.max_jobs_per_minute {
        Some(per_minute) => Some(carried(wired, &integration, per_minute, now).await?),
        None => None,
    };
    Ok(LimitsSet { integration, rate })
}

/// `set-limits`' change: each `None` keeps its limit as it is.
#[derive(Clone, Copy)]
struct SetLimits {
    jobs_per_minute: Option<Option<u32>>,
    max_object_bytes: Option<u64>,
    overwrites: Option<Overwrites>,
}

impl Change for SetLimits {
    fn apply(self, integration: &mut Integration) -> CliResult {
        integration
            .set_limits(self.jobs_per_minute, self.max_object_bytes)
            .map_err(|e| anyhow!("integration {}: {e}", integration.id))?;
        if let Some(overwrites) = self.overwrites {
            integration.overwrites = overwrites;
        }
        Ok(())
    }
}

async fn carried(
    wired: &Wired,
    integration: &Integration,
    per_minute: u32,
    now: DateTime<Utc>,
) -> CliResult<Carried> {
    let until = now.date_naive();
    let since = until - chrono::Duration::days(BUSIEST_OF_DAYS - 1);
    let days = wired
        .backends
        .usage
        .usage(&integration.id, since, until)
        .await?;
    let busiest_day = days
        .iter()
        .map(|(day, counts)| {
            let jobs = counts
                .iter()
                .filter(|(key, _)| key.outcome == Outcome::Accepted)
                .map(|(_, count)| *count)
                .sum::<u64>();
            (*day, jobs)
        })
        .max_by_key(|(_, jobs)| *jobs)
        .filter(|(_, jobs)| *jobs > 0);
    let jobs_per_day = u64::from(per_minute) * 24 * 60;
    let retry_span_seconds = admission::retry_span_seconds(integration);
    let warning = busiest_day
        .filter(|(_, jobs)| *jobs > jobs_per_day)
        .map(|(day, jobs)| {
            format!(
                "{day} made {jobs} jobs, more than the {jobs_per_day} a day this limit admits: \
                 on such days the backlog grows until its senders dead-letter it"
            )
        });
    Ok(Carried {
        jobs_per_day,
        retry_span_seconds,
        backlog_carried: admission::backlog_carried(per_minute, retry_span_seconds),
        busiest_day,
        warning,
    })
}

impl Report for LimitsSet {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        let i = &self.integration;
        let overwrites = match i.overwrites {
            Overwrites::NewJob => "every version of a key becomes a job",
            Overwrites::Ignore => "only a key's first version becomes a job",
        };
        writeln!(
            out,
            "Integration {}: objects up to {} bytes; {overwrites}.",
            i.id, i.max_object_bytes
        )?;
        let (Some(per_minute), Some(rate)) = (i.max_jobs_per_minute, &self.rate) else {
            return writeln!(out, "No rate limit.");
        };
        let sender = match i.provider {
            Provider::R2 => format!("the worker's retries ({} plan)", i.plan().as_str()),
            Provider::S3 => "EventBridge's retries".to_owned(),
        };
        writeln!(
            out,
            "At most {per_minute} new jobs a minute ({} a day), across every receiver. Over it, \
             events are answered rate_limited and sent again; listings wait.",
            rate.jobs_per_day
        )?;
        writeln!(
            out,
            "A burst of up to {} objects drains before {sender} end ({}); past that, its tail \
             is dead-lettered, to be replayed.",
            rate.backlog_carried,
            humantime::format_duration(std::time::Duration::from_secs(rate.retry_span_seconds))
        )?;
        if let Some(warning) = &rate.warning {
            writeln!(out, "warning: {warning}")?;
        }
        Ok(())
    }
}

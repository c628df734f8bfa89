//! What became of events: `events why` (one key's history) and `jobs list` (the embedded
//! queue).

use super::common::{load, time, CliResult, Report, Safe};
use crate::backend::{ObjectHistory, HISTORY_RETENTION};
use crate::wiring::Wired;
use relay_protocol::{IngestJob, Reason};
use serde::Serialize;
use std::fmt::{self, Write};

/// `events why`: the history of one key.
pub(crate) async fn why(wired: &Wired, integration: &str, key: &str) -> CliResult<Why> {
    load(wired.backends.store.as_ref(), integration).await?;
    let history = wired.backends.history.object(integration, key).await?;
    Ok(Why {
        integration_id: integration.to_owned(),
        key: key.to_owned(),
        seen: history.is_some(),
        history,
    })
}

/// `jobs list`: every job on the embedded queue, oldest first.
pub(crate) async fn jobs(wired: &Wired) -> CliResult<Jobs> {
    const NOT_EMBEDDED: &str = "jobs list reads the embedded queue; with --backend aws the jobs \
        are on the SQS queue (aws sqs receive-message --queue-url …)";
    #[cfg(feature = "embedded")]
    {
        let db = wired
            .embedded
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!(NOT_EMBEDDED))?;
        Ok(Jobs(db.jobs().await?))
    }
    #[cfg(not(feature = "embedded"))]
    {
        let _ = wired;
        Err(anyhow::anyhow!(NOT_EMBEDDED))
    }
}

/// A key's last job and last event, or that none was seen.
#[derive(Serialize)]
pub(crate) struct Why {
    integration_id: String,
    key: String,
    seen: bool,
    #[serde(flatten, serialize_with = "enqueued_and_last")]
    history: Option<ObjectHistory>,
}

/// `enqueued` and `last`, each `null` when the key was never seen.
fn enqueued_and_last<S: serde::Serializer>(
    history: &Option<ObjectHistory>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Doc<'a> {
        enqueued: Option<&'a crate::backend::Enqueued>,
        last: Option<&'a crate::backend::Seen>,
    }
    Doc {
        enqueued: history.as_ref().and_then(|h| h.enqueued.as_ref()),
        last: history.as_ref().map(|h| &h.last),
    }
    .serialize(serializer)
}

impl Report for Why {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        let Some(history) = &self.history else {
            return writeln!(
                out,
                "No event for {:?} reached {} in the last {} days: the event source never sent \
                 it (a notification rule's filters, the worker's filters, a queue name), or it is \
                 still retrying. See the runbook in docs/operators.md.",
                self.key,
                self.integration_id,
                HISTORY_RETENTION.num_days()
            );
        };
        match &history.enqueued {
            Some(job) => writeln!(out, "job      {} enqueued {}", job.job_id, time(job.at))?,
            None => writeln!(out, "job      none")?,
        }
        let last = &history.last;
        let reason = last.reason.map_or("-", Reason::as_str);
        writeln!(out, "last     {} {} {reason}", time(last.at), last.outcome)?;
        if let Some(reason) = last.reason {
            writeln!(out, "why      {}", reason.description())?;
        }
        Ok(())
    }
}

/// The jobs on the embedded queue.
#[derive(Serialize)]
#[serde(transparent)]
pub(crate) struct Jobs(Vec<IngestJob>);

impl Report for Jobs {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(out, "No jobs on the embedded queue.");
        }
        writeln!(
            out,
            "{:<32} {:<26} {:<20} {:>10}  KEY",
            "JOB_ID", "INTEGRATION", "BUCKET", "SIZE"
        )?;
        for job in &self.0 {
            let size = job.size.map_or_else(|| "-".to_owned(), |s| s.to_string());
            writeln!(
                out,
                "{:<32} {:<26} {:<20} {:>10}  {}",
                job.job_id,
                job.integration_id,
                Safe(&job.bucket),
                size,
                Safe(&job.key)
            )?;
        }
        Ok(())
    }
}

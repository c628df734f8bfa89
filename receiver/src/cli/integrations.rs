//! `integrations list | show | pause | resume | set-mode | set-horizon | restamp | usage |
//! delete`: reading and changing
//! integrations in the store. (`create` and `rotate-secret`, which show a secret, are in
//! [`super::secret`]; the read-access commands in [`super::source`].)

use super::args::IntegrationsCommand;
use super::change::{update, Change, Updated};
use super::common::{keyring, load, time, CliResult, Printer, Report, Safe, Shown};
use crate::backend::{add_counts, error_chain, Seen, UsageCounts, HISTORY_RETENTION};
use crate::poll::{SafetyNetCursor, SAFETY_NET_CURSOR};
use crate::wiring::Wired;
use crate::worker_bundle::{self, BundleSeen};
use anyhow::{anyhow, Context};
use chrono::{DateTime, NaiveDate, Utc};
use relay_protocol::integration::{Overwrites, ReadAccess, Scope, DEFAULT_MAX_OBJECT_BYTES};
use relay_protocol::{Integration, Mode, Outcome, Provider, Reason, Status};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::{self, Write};

/// Runs every `integrations` command.
pub(crate) async fn run(wired: Wired, printer: Printer, command: IntegrationsCommand) -> CliResult {
    let store = wired.backends.store.as_ref();
    let now = Utc::now();
    match command {
        IntegrationsCommand::Create(args) => {
            printer.emit(&super::secret::create(&wired, &args, now).await?)
        }
        IntegrationsCommand::RotateSecret(args) => {
            printer.emit(&super::secret::rotate(&wired, &args, now).await?)
        }
        IntegrationsCommand::List => printer.emit(&List(store.list().await?)),
        IntegrationsCommand::Show { id } => printer.emit(&show(&wired, &id).await?),
        IntegrationsCommand::SetSource(args) => {
            printer.emit(&super::source::set_source(&wired, args).await?)
        }
        IntegrationsCommand::Test(args) => super::source::test(&wired, printer, args).await,
        #[cfg(feature = "operator")]
        IntegrationsCommand::ConnectR2(args) => {
            printer.emit(&super::connect::connect(&wired, args, now).await?)
        }
        #[cfg(feature = "operator")]
        IntegrationsCommand::DisconnectR2(args) => {
            printer.emit(&super::connect::disconnect(&wired, args).await?)
        }
        #[cfg(not(feature = "operator"))]
        IntegrationsCommand::ConnectR2(_) | IntegrationsCommand::DisconnectR2(_) => Err(
            super::common::not_in_this_build("connect-r2 and disconnect-r2"),
        ),
        IntegrationsCommand::Pause { id } => {
            printer.emit(&update(store, &id, now, Status::Paused).await?)
        }
        IntegrationsCommand::Resume { id } => {
            printer.emit(&update(store, &id, now, Status::Active).await?)
        }
        IntegrationsCommand::SetMode {
            id,
            mode,
            safety_net,
        } => {
            let safety_net_secs = safety_net.map(|every| every.as_secs());
            let change = SetMode {
                mode,
                safety_net_secs,
            };
            printer.emit(&update(store, &id, now, change).await?)
        }
        IntegrationsCommand::Route(command) => super::routes::run(&wired, printer, command).await,
        IntegrationsCommand::SetLimits(args) => {
            printer.emit(&super::limits::set_limits(&wired, &args, now).await?)
        }
        IntegrationsCommand::SetHorizon { id, days } => {
            let updated = update(store, &id, now, SetHorizon(days)).await?;
            let restamped = restamp(&wired).await?;
            printer.emit(&HorizonSet { updated, restamped })
        }
        IntegrationsCommand::Restamp => printer.emit(&Restamped {
            restamped: restamp(&wired).await?,
        }),
        IntegrationsCommand::Usage { id, days } => {
            printer.emit(&usage(&wired, &id, days, now).await?)
        }
        IntegrationsCommand::Delete { id } => {
            if !store.delete(&id).await? {
                return Err(anyhow!("no integration {id}"));
            }
            printer.emit(&Deleted { deleted: id })
        }
    }
}

/// `show`: the integration, for S3 its external id (or why it could not be derived), and the
/// last event per outcome.
async fn show(wired: &Wired, id: &str) -> CliResult<Show> {
    let integration = load(wired.backends.store.as_ref(), id).await?;
    // Only an S3 integration's external id needs the master key, and `show` works without it:
    // the operator may be looking because the key cannot be read.
    let (external_id, external_id_error) = match integration.provider {
        Provider::S3 => match keyring(wired).await {
            Ok(ring) => match ring.external_id(&integration).await {
                Ok(id) => (Some(id), None),
                Err(missing) => (
                    None,
                    Some(format!("{missing}: `set-source` issues it again")),
                ),
            },
            Err(error) => (None, Some(format!("{error:#}"))),
        },
        Provider::R2 => (None, None),
    };
    let (last_seen, last_seen_error) = match wired.backends.history.last_seen(&integration.id).await
    {
        Ok(last) => (Some(last), None),
        Err(error) => (None, Some(error_chain(&error))),
    };
    let safety_net = match integration.safety_net() {
        Some(_) => wired
            .backends
            .cursors
            .load(&integration.id, SAFETY_NET_CURSOR)
            .await?
            .and_then(|text| serde_json::from_str(&text).ok()),
        None => None,
    };
    let worker = match integration.provider {
        Provider::R2 => Some(WorkerShown::load(wired, &integration.id).await?),
        Provider::S3 => None,
    };
    Ok(Show {
        integration,
        external_id,
        external_id_error,
        last_seen,
        last_seen_error,
        safety_net,
        worker,
    })
}

impl Change for Status {
    fn apply(self, integration: &mut Integration) -> CliResult {
        integration.status = self;
        Ok(())
    }
}

/// `set-mode`: the mode, and in event mode the safety net's interval.
#[derive(Clone, Copy)]
struct SetMode {
    mode: Mode,
    safety_net_secs: Option<u64>,
}

impl Change for SetMode {
    fn apply(self, integration: &mut Integration) -> CliResult {
        if let Some(scope) = &integration.scope {
            relay_protocol::integration::check_scope(scope, integration.provider, self.mode)
                .map_err(|e| anyhow!("integration {}: {e}", integration.id))?;
        }
        integration
            .set_mode(self.mode, self.safety_net_secs)
            .map_err(|e| anyhow!("integration {}: {e}", integration.id))?;
        Ok(())
    }
}

/// `set-horizon`: how many days the ledger remembers each job.
#[derive(Clone, Copy)]
struct SetHorizon(u32);

impl Change for SetHorizon {
    fn apply(self, integration: &mut Integration) -> CliResult {
        integration
            .set_horizon(self.0)
            .map_err(|e| anyhow!("integration {}: {e}", integration.id))?;
        Ok(())
    }
}

/// Makes every ledger entry expire at its job's making plus its integration's horizon: how
/// many entries changed.
async fn restamp(wired: &Wired) -> CliResult<u64> {
    let integrations = wired.backends.store.list().await?;
    Ok(wired.backends.records.restamp(&integrations).await?)
}

async fn usage(wired: &Wired, id: &str, days: u32, now: DateTime<Utc>) -> CliResult<Usage> {
    load(wired.backends.store.as_ref(), id).await?;
    let until = now.date_naive();
    let since = chrono::Duration::try_days(i64::from(days.max(1)) - 1)
        .and_then(|span| until.checked_sub_signed(span))
        .with_context(|| format!("--days {days} reaches before the calendar's start"))?;
    let days = wired.backends.usage.usage(id, since, until).await?;
    let mut totals = UsageCounts::new();
    for counts in days.values() {
        add_counts(&mut totals, counts);
    }
    Ok(Usage {
        integration_id: id.to_owned(),
        since,
        until,
        totals,
        days,
    })
}

/// `list`: every integration.
struct List(Vec<Integration>);

impl Serialize for List {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(Shown))
    }
}

impl Report for List {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(
                out,
                "No integrations yet: create one with `bucket-relay integrations create`."
            );
        }
        writeln!(
            out,
            "{:<26} {:<8} {:<24} {:<6} {:<7} {:>4}  FILTERS",
            "ID", "PROVIDER", "BUCKET", "MODE", "STATUS", "GEN"
        )?;
        for i in &self.0 {
            writeln!(
                out,
                "{:<26} {:<8} {:<24} {:<6} {:<7} {:>4}  {}",
                i.id,
                i.provider,
                Safe(&i.bucket),
                i.mode,
                i.status,
                i.generation,
                Safe(&filters(i))
            )?;
        }
        Ok(())
    }
}

fn filters(i: &Integration) -> String {
    let mut parts = Vec::new();
    if let Some(prefix) = &i.prefix {
        parts.push(format!("prefix={prefix}"));
    }
    if !i.suffixes.is_empty() {
        parts.push(format!("suffix={}", i.suffixes.join(",")));
    }
    if let Some(output) = &i.output_prefix {
        parts.push(format!("output={output}"));
    }
    if i.max_object_bytes != DEFAULT_MAX_OBJECT_BYTES {
        parts.push(format!("max={}", i.max_object_bytes));
    }
    if let Some(rate) = i.max_jobs_per_minute {
        parts.push(format!("rate={rate}/min"));
    }
    if i.overwrites == Overwrites::Ignore {
        parts.push(format!("overwrites={}", i.overwrites));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

/// `show`'s report.
#[derive(Serialize)]
struct Show {
    #[serde(flatten, serialize_with = "shown")]
    integration: Integration,
    /// Always present: `null` for R2, or when the master key cannot be read.
    external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen: Option<BTreeMap<Outcome, Seen>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen_error: Option<String>,
    /// A safety net's last listing, when it has run.
    #[serde(skip_serializing_if = "Option::is_none")]
    safety_net: Option<SafetyNetCursor>,
    /// R2: the bundle the customer's worker runs, the one last packaged, and whether they agree.
    #[serde(skip_serializing_if = "Option::is_none")]
    worker: Option<WorkerShown>,
}

/// `show`'s worker: the bundle its batches name, the one `worker package` last wrote, this
/// binary's version, and what does not agree among them.
#[derive(Serialize)]
struct WorkerShown {
    reported: Option<BundleSeen>,
    packaged: Option<BundleSeen>,
    receiver_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mismatch: Option<String>,
}

impl WorkerShown {
    async fn load(wired: &Wired, id: &str) -> CliResult<WorkerShown> {
        let cursors = wired.backends.cursors.as_ref();
        let reported = worker_bundle::load(cursors, id, worker_bundle::REPORTED).await?;
        let packaged = worker_bundle::load(cursors, id, worker_bundle::PACKAGED).await?;
        let receiver_version = env!("CARGO_PKG_VERSION");
        let mismatch =
            worker_bundle::compare(reported.as_ref(), packaged.as_ref(), receiver_version);
        Ok(WorkerShown {
            reported,
            packaged,
            receiver_version,
            mismatch,
        })
    }

    fn describe(&self) -> String {
        let reported = match &self.reported {
            Some(seen) => format!("runs {} (reported {})", seen.bundle, seen.at),
            None => "no batch seen yet".to_owned(),
        };
        let packaged = match &self.packaged {
            Some(seen) => format!("packaged {} on {}", seen.bundle, seen.at),
            None => "never packaged".to_owned(),
        };
        let verdict = match &self.mismatch {
            Some(why) => format!("; MISMATCH: {why}"),
            None => String::new(),
        };
        format!("{reported}; {packaged}{verdict}")
    }
}

/// `show`'s safety-net row: its interval and its last listing.
fn safety_net(integration: &Integration, last: Option<&SafetyNetCursor>) -> String {
    let Some(every) = integration
        .safety_net()
        .and_then(|every| every.to_std().ok())
    else {
        return "-".to_owned();
    };
    let every = humantime::format_duration(every);
    match last {
        Some(last) => format!(
            "every {every}; last listing {}, {} missed by events",
            time(last.listed_at),
            last.missed_by_events
        ),
        None => format!("every {every}; not listed yet (needs a poller)"),
    }
}

fn shown<S: serde::Serializer>(
    integration: &Integration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    Shown(integration).serialize(serializer)
}

impl Report for Show {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        let i = &self.integration;
        let external_id = match (&self.external_id, &self.external_id_error) {
            (Some(id), _) => id.clone(),
            (None, Some(error)) => format!("(cannot read the master key: {error})"),
            (None, None) => "-".to_owned(),
        };
        let none = || "-".to_owned();
        let list = |items: &[String]| {
            if items.is_empty() {
                none()
            } else {
                items.join(", ")
            }
        };
        let grace: Vec<String> = i
            .previous_generations
            .iter()
            .map(|g| {
                format!(
                    "{} (key v{}) until {}",
                    g.generation,
                    g.key_version,
                    g.valid_until.to_rfc3339()
                )
            })
            .collect();
        let mut keys = format!("secret v{}", i.key_version);
        if i.provider == Provider::S3 {
            let _ = write!(keys, ", external id v{}", i.external_id_key_version);
        }
        if let Some(v) = crate::sealed::sealed_version(i) {
            let _ = write!(keys, ", sealed token v{v}");
        }
        let rows = [
            ("id", i.id.clone()),
            ("provider", i.provider.to_string()),
            ("bucket", i.bucket.clone()),
            ("account", i.account.clone().unwrap_or_else(none)),
            ("scope", i.scope.as_ref().map_or_else(none, Scope::describe)),
            ("region", i.region.clone().unwrap_or_else(none)),
            ("mode", i.mode.to_string()),
            ("safety_net", safety_net(i, self.safety_net.as_ref())),
            ("horizon_days", i.horizon_days.to_string()),
            (
                "cloudflare_plan",
                match (i.provider, i.cloudflare_plan) {
                    (Provider::R2, Some(plan)) => plan.as_str().to_owned(),
                    (Provider::R2, None) => "paid (default)".to_owned(),
                    (Provider::S3, _) => none(),
                },
            ),
            ("status", i.status.to_string()),
            ("prefix", i.prefix.clone().unwrap_or_else(none)),
            ("suffixes", list(&i.suffixes)),
            ("max_object_bytes", i.max_object_bytes.to_string()),
            (
                "max_jobs_per_minute",
                i.max_jobs_per_minute
                    .map_or_else(|| "none".to_owned(), |rate| rate.to_string()),
            ),
            ("overwrites", i.overwrites.to_string()),
            (
                "output_prefix",
                i.output_prefix.clone().unwrap_or_else(none),
            ),
            (
                "routes",
                if i.routes.is_empty() {
                    none()
                } else {
                    i.routes
                        .iter()
                        .map(|r| {
                            format!(
                                "{} ({})",
                                r.prefix,
                                super::routes::describe_params(&r.params)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                },
            ),
            (
                "default_params",
                super::routes::describe_params(&i.default_params),
            ),
            ("generation", i.generation.to_string()),
            ("key_versions", keys),
            ("previous_generations", list(&grace)),
            (
                "read_access",
                i.read_access
                    .as_ref()
                    .map_or_else(none, ReadAccess::describe),
            ),
            ("external_id", external_id),
            (
                "worker",
                self.worker
                    .as_ref()
                    .map_or_else(none, WorkerShown::describe),
            ),
            ("created_at", i.created_at.to_rfc3339()),
            ("updated_at", i.updated_at.to_rfc3339()),
        ];
        for (name, value) in rows {
            writeln!(out, "{name:<21} {}", Safe(&value))?;
        }
        let last = match (&self.last_seen, &self.last_seen_error) {
            (Some(last), _) => last,
            (None, error) => {
                let error = error.as_deref().unwrap_or_default();
                return writeln!(out, "\nlast event per outcome: unavailable ({error})");
            }
        };
        writeln!(out, "\nlast event per outcome:")?;
        if last.is_empty() {
            let days = HISTORY_RETENTION.num_days();
            writeln!(out, "  none seen in the last {days} days")?;
        }
        for seen in last.values() {
            let reason = seen.reason.map_or("-", Reason::as_str);
            writeln!(
                out,
                "  {:<12} {} {reason:<20} {}",
                seen.outcome,
                time(seen.at),
                Safe(&seen.key)
            )?;
        }
        Ok(())
    }
}

/// `set-horizon`: the integration, and how many ledger entries now expire on its horizon.
#[derive(Serialize)]
struct HorizonSet {
    #[serde(flatten)]
    updated: Updated,
    restamped: u64,
}

impl Report for HorizonSet {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        let i = &self.updated.0;
        writeln!(
            out,
            "The ledger remembers each job of {} for {} days: a backfill or reconcile within \
             them makes no second job ({} ledger entries restamped).",
            i.id, i.horizon_days, self.restamped
        )
    }
}

/// `restamp`: how many ledger entries now expire on their integrations' horizons.
#[derive(Serialize)]
struct Restamped {
    restamped: u64,
}

impl Report for Restamped {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        writeln!(
            out,
            "{} ledger entries now expire at their job's making plus their integration's horizon.",
            self.restamped
        )
    }
}

#[derive(Serialize)]
struct Deleted {
    deleted: String,
}

impl Report for Deleted {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        writeln!(out, "Deleted integration {}.", self.deleted)
    }
}

/// `usage`: events per outcome and reason, in total and per day.
#[derive(Serialize)]
struct Usage {
    integration_id: String,
    since: NaiveDate,
    until: NaiveDate,
    totals: UsageCounts,
    days: BTreeMap<NaiveDate, UsageCounts>,
}

impl Report for Usage {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        let (id, since, until) = (&self.integration_id, self.since, self.until);
        writeln!(out, "Events of {id} from {since} to {until} (UTC):\n")?;
        if self.totals.is_empty() {
            return writeln!(out, "  none");
        }
        writeln!(out, "  {:<12} {:<20} {:>10}", "OUTCOME", "REASON", "EVENTS")?;
        for (key, count) in &self.totals {
            let reason = key.reason.map_or("-", Reason::as_str);
            writeln!(out, "  {:<12} {reason:<20} {count:>10}", key.outcome)?;
        }
        Ok(())
    }
}

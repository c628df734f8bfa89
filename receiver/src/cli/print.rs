//! What the commands print: text tables and sentences for people, one JSON document with
//! `--json`. The secret is printed here and nowhere else, by `create` and `rotate-secret`.

use super::replay::ReplayTally;
use crate::backend::bucket::AccessError;
use crate::backend::lookup::LookupError;
use crate::backend::{MasterKey, ObjectHistory, Seen, UsageCounts, LEDGER_RETENTION};
use crate::poll::{RunError, Tally};
use crate::setup;
use crate::test_event::{TestRequest, Verdict};
use chrono::{DateTime, NaiveDate, Utc};
use relay_protocol::integration::DEFAULT_MAX_OBJECT_BYTES;
use relay_protocol::integration::{ReadAccess, Scope};
use relay_protocol::{secret, IngestJob, Integration, Outcome, Provider, Reason};
use serde_json::json;
use std::collections::BTreeMap;

pub fn print_jobs(jobs: &[IngestJob], json: bool) {
    if json {
        println!("{}", pretty(&jobs));
        return;
    }
    if jobs.is_empty() {
        println!("No jobs on the embedded queue.");
        return;
    }
    println!(
        "{:<32} {:<26} {:<20} {:>10}  KEY",
        "JOB_ID", "INTEGRATION", "BUCKET", "SIZE"
    );
    for job in jobs {
        let size = job.size.map_or_else(|| "-".to_owned(), |s| s.to_string());
        println!(
            "{:<32} {:<26} {:<20} {:>10}  {}",
            job.job_id, job.integration_id, job.bucket, size, job.key
        );
    }
}

/// An integration as `--json` shows it: a sealed token is named, never shown (not even sealed).
fn shown(integration: &Integration) -> serde_json::Value {
    let mut value = serde_json::to_value(integration).expect("integrations serialize");
    if let Some(ReadAccess::SealedKeys { .. }) = &integration.read_access {
        value["read_access"] = json!({"kind": "sealed_keys"});
    }
    value
}

/// One changed integration: its JSON, or a sentence.
pub fn print_updated(integration: &Integration, json: bool) {
    if json {
        println!("{}", pretty(&shown(integration)));
    } else {
        println!(
            "Integration {} is now {}, mode {}.",
            integration.id, integration.status, integration.mode
        );
    }
}

pub fn print_list(all: &[Integration], json: bool) {
    if json {
        let all: Vec<serde_json::Value> = all.iter().map(shown).collect();
        println!("{}", pretty(&all));
    } else if all.is_empty() {
        println!("No integrations yet: create one with `bucket-relay integrations create`.");
    } else {
        print_table(all);
    }
}

/// `show`: the integration, and for S3 its external id, or why it could not be derived.
pub fn print_show(
    integration: &Integration,
    external_id: Option<Result<String, String>>,
    last_seen: &Result<BTreeMap<Outcome, Seen>, String>,
    json: bool,
) {
    let (id, error) = match external_id {
        Some(Ok(id)) => (Some(id), None),
        Some(Err(error)) => (None, Some(error)),
        None => (None, None),
    };
    if json {
        let mut doc = shown(integration);
        doc["external_id"] = json!(id);
        if let Some(error) = &error {
            doc["external_id_error"] = json!(error);
        }
        match last_seen {
            Ok(last) => doc["last_seen"] = json!(last),
            Err(error) => doc["last_seen_error"] = json!(error),
        }
        println!("{}", pretty(&doc));
    } else {
        let shown = match (&id, &error) {
            (Some(id), _) => id.clone(),
            (None, Some(error)) => format!("(cannot read the master key: {error})"),
            (None, None) => "-".to_owned(),
        };
        print_details(integration, &shown);
        match last_seen {
            Ok(last) => print_last_seen(last),
            Err(error) => println!("\nlast event per outcome: unavailable ({error})"),
        }
    }
}

/// After `set-source`: what was set, and the customer's side of it.
pub fn print_read_access(verb: &str, integration: &Integration, key: &MasterKey, json: bool) {
    let external_id = secret::external_id(key.as_bytes(), &integration.id);
    let setup = setup::read_access(integration, &external_id);
    if json {
        let doc = json!({
            "id": integration.id,
            "read_access": integration.read_access.as_ref().map(ReadAccess::describe),
            "external_id": (integration.provider == Provider::S3).then_some(&external_id),
            "setup": setup,
        });
        println!("{}", pretty(&doc));
        return;
    }
    let access = integration
        .read_access
        .as_ref()
        .map_or_else(|| "none".to_owned(), ReadAccess::describe);
    println!("{verb} integration {}: {access}.\n", integration.id);
    print!("{setup}");
    println!(
        "\nCheck it with: bucket-relay integrations test {}",
        integration.id
    );
}

/// `integrations test`: reachable and listable, or the named failure.
pub fn print_access_check(integration: &Integration, result: &Result<(), AccessError>, json: bool) {
    if json {
        let doc = match result {
            Ok(()) => json!({"id": integration.id, "ok": true}),
            Err(error) => json!({
                "id": integration.id,
                "ok": false,
                "error": error.name(),
                "detail": error.to_string(),
                "hint": error.hint(),
            }),
        };
        println!("{}", pretty(&doc));
    } else if result.is_ok() {
        println!(
            "OK: {} bucket {} is reachable and may be listed{}.",
            integration.provider,
            integration.bucket,
            integration
                .prefix
                .as_deref()
                .map(|p| format!(" under {p}"))
                .unwrap_or_default()
        );
    }
}

/// `integrations test` of a read role per account: a line per account, or JSON.
pub fn print_lookup_checks(
    integration: &Integration,
    bucket: Option<&str>,
    checks: &[(String, String, Result<(), LookupError>)],
    json: bool,
) {
    if json {
        let accounts: Vec<serde_json::Value> = checks
            .iter()
            .map(|(account, role_arn, result)| match result {
                Ok(()) => json!({"account": account, "role_arn": role_arn, "ok": true}),
                Err(error) => json!({
                    "account": account,
                    "role_arn": role_arn,
                    "ok": false,
                    "error": error.name(),
                    "detail": error.detail(),
                }),
            })
            .collect();
        let ok = checks.iter().all(|(_, _, result)| result.is_ok());
        let doc = json!({"id": integration.id, "ok": ok, "bucket": bucket, "accounts": accounts});
        println!("{}", pretty(&doc));
        return;
    }
    let what = bucket.map_or_else(
        || "may be assumed".to_owned(),
        |bucket| format!("may look objects up in {bucket}"),
    );
    for (account, role_arn, result) in checks {
        match result {
            Ok(()) => println!("OK: {role_arn} {what}."),
            Err(error) => println!(
                "FAILED: {role_arn} (account {account}): {}: {}",
                error.name(),
                error.detail()
            ),
        }
    }
}

/// One poll tick: a line per integration, or the JSON of each.
pub fn print_tick(results: &[(String, Result<Tally, RunError>)], json: bool) {
    if json {
        let doc: Vec<serde_json::Value> = results
            .iter()
            .map(|(id, result)| match result {
                Ok(tally) => json!({"id": id, "ok": true, "tally": tally}),
                Err(error) => json!({
                    "id": id, "ok": false, "error": error.name(), "detail": error.to_string()
                }),
            })
            .collect();
        println!("{}", pretty(&doc));
        return;
    }
    if results.is_empty() {
        println!("No active poll-mode integrations.");
    }
    for (id, result) in results {
        match result {
            Ok(tally) => println!(
                "{id}: listed {}, new jobs {}, duplicates {}, skipped {}{}",
                tally.listed,
                tally.jobs,
                tally.duplicates,
                tally.skipped_total(),
                skipped_detail(tally)
            ),
            Err(error) => println!("{id}: failed: {error}"),
        }
    }
}

fn skipped_detail(tally: &Tally) -> String {
    if tally.skipped.is_empty() {
        String::new()
    } else {
        format!(" ({})", tally.skipped_by_reason())
    }
}

pub fn print_backfill(
    id: &str,
    tally: &Tally,
    resumed_after: Option<&str>,
    dry_run: bool,
    json: bool,
) {
    if json {
        let doc = json!({
            "id": id,
            "dry_run": dry_run,
            "resumed_after": resumed_after,
            "tally": tally,
        });
        println!("{}", pretty(&doc));
        return;
    }
    if let Some(key) = resumed_after {
        println!("Resumed after key {key:?}.");
    }
    let jobs = if dry_run { "would be jobs" } else { "new jobs" };
    println!(
        "Backfill of {id}{}: listed {}, considered {}, {jobs} {}, duplicates {}, skipped {}{}.",
        if dry_run { " (dry run)" } else { "" },
        tally.listed,
        tally.considered,
        tally.jobs,
        tally.duplicates,
        tally.skipped_total(),
        skipped_detail(tally)
    );
}

pub fn print_deleted(id: &str, json: bool) {
    if json {
        println!("{}", json!({"deleted": id}));
    } else {
        println!("Deleted integration {id}.");
    }
}

pub fn print_secret(verb: &str, integration: &Integration, key: &MasterKey, url: &str, json: bool) {
    let secret =
        secret::event_source_secret(key.as_bytes(), &integration.id, integration.generation);
    let instructions = setup::instructions(integration, &secret, url);
    let external_id = secret::external_id(key.as_bytes(), &integration.id);
    let read_access = setup::read_access(integration, &external_id);
    if json {
        let doc = json!({
            "id": integration.id,
            "secret": secret,
            "events_url": setup::events_url(url, &integration.id),
            "integration": shown(integration),
            "setup": instructions,
            "wrangler_vars": (integration.provider == Provider::R2)
                .then(|| setup::wrangler_vars(integration, url)),
            "notification_rules": (integration.provider == Provider::R2)
                .then(|| setup::notification_rules(integration)),
            "terraform": match (integration.provider, &integration.scope) {
                (Provider::S3, None) => Some(setup::s3_source_module(integration, url)),
                (Provider::S3, Some(_)) => Some(setup::org_source_module(integration, url)),
                (Provider::R2, _) => None,
            },
            "external_id": (integration.provider == Provider::S3).then_some(&external_id),
            "read_access_setup": read_access,
        });
        println!("{}", pretty(&doc));
        return;
    }
    println!(
        "{verb} integration {} ({} bucket {}).\n",
        integration.id, integration.provider, integration.bucket
    );
    println!(
        "Event source secret (shown only now; store it on the customer's side):\n\n  {secret}\n"
    );
    for grace in &integration.previous_generations {
        println!(
            "The secret of generation {} keeps working until {}.",
            grace.generation,
            grace.valid_until.to_rfc3339()
        );
    }
    if !integration.previous_generations.is_empty() {
        println!();
    }
    print!("{instructions}");
    // Read access lists one bucket; for an integration covering many, a role in each account
    // names the objects CloudTrail events leave unnamed.
    if integration.scope.is_none() {
        println!("\nFor poll mode and backfill (optional in event mode):\n");
    } else {
        println!("\nWith the organization trail, or CloudTrail events of unversioned buckets:\n");
    }
    print!("{read_access}");
}

fn print_table(all: &[Integration]) {
    println!(
        "{:<26} {:<8} {:<24} {:<6} {:<7} {:>4}  FILTERS",
        "ID", "PROVIDER", "BUCKET", "MODE", "STATUS", "GEN"
    );
    for i in all {
        println!(
            "{:<26} {:<8} {:<24} {:<6} {:<7} {:>4}  {}",
            i.id,
            i.provider,
            i.bucket,
            i.mode,
            i.status,
            i.generation,
            filters(i)
        );
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
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

fn print_details(i: &Integration, external_id: &str) {
    let none = || "-".to_owned();
    let rows = [
        ("id", i.id.clone()),
        ("provider", i.provider.to_string()),
        ("bucket", i.bucket.clone()),
        ("account", i.account.clone().unwrap_or_else(none)),
        ("scope", i.scope.as_ref().map_or_else(none, Scope::describe)),
        ("region", i.region.clone().unwrap_or_else(none)),
        ("mode", i.mode.to_string()),
        ("status", i.status.to_string()),
        ("prefix", i.prefix.clone().unwrap_or_else(none)),
        (
            "suffixes",
            if i.suffixes.is_empty() {
                none()
            } else {
                i.suffixes.join(", ")
            },
        ),
        ("max_object_bytes", i.max_object_bytes.to_string()),
        (
            "output_prefix",
            i.output_prefix.clone().unwrap_or_else(none),
        ),
        ("generation", i.generation.to_string()),
        (
            "previous_generations",
            if i.previous_generations.is_empty() {
                none()
            } else {
                i.previous_generations
                    .iter()
                    .map(|g| format!("{} until {}", g.generation, g.valid_until.to_rfc3339()))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
        (
            "read_access",
            i.read_access
                .as_ref()
                .map_or_else(none, ReadAccess::describe),
        ),
        ("external_id", external_id.to_owned()),
        ("created_at", i.created_at.to_rfc3339()),
        ("updated_at", i.updated_at.to_rfc3339()),
    ];
    for (name, value) in rows {
        println!("{name:<21} {value}");
    }
}

pub fn print_usage(
    id: &str,
    since: NaiveDate,
    until: NaiveDate,
    per_day: &BTreeMap<NaiveDate, UsageCounts>,
    json: bool,
) {
    let mut totals = UsageCounts::new();
    for counts in per_day.values() {
        for (key, count) in counts {
            *totals.entry(*key).or_default() += count;
        }
    }
    if json {
        let doc = json!({
            "integration_id": id,
            "since": since.to_string(),
            "until": until.to_string(),
            "totals": totals,
            "days": per_day.iter().map(|(d, c)| (d.to_string(), c)).collect::<BTreeMap<_, _>>(),
        });
        println!("{}", pretty(&doc));
        return;
    }
    println!("Events of {id} from {since} to {until} (UTC):\n");
    if totals.is_empty() {
        println!("  none");
        return;
    }
    println!("  {:<12} {:<20} {:>10}", "OUTCOME", "REASON", "EVENTS");
    for (key, count) in &totals {
        let reason = key.reason.map_or("-", Reason::as_str);
        println!("  {:<12} {reason:<20} {count:>10}", key.outcome);
    }
}

/// `integrations test --receiver-url`: each step, then the cause and what to do.
pub fn print_event_test(
    integration: &Integration,
    receiver_url: &str,
    request: &TestRequest,
    verdict: &Verdict,
    json: bool,
) {
    if json {
        let doc = json!({
            "id": integration.id,
            "receiver_url": receiver_url,
            "sent_as": request.sender.as_str(),
            "key": request.key,
            "ok": verdict.cause.is_none(),
            "cause": verdict.cause,
            "hint": verdict.hint,
            "steps": verdict.steps,
        });
        println!("{}", pretty(&doc));
        return;
    }
    println!(
        "Test event for {} ({} bucket {}), sent as the {} sends it, to {receiver_url}:",
        integration.id,
        integration.provider,
        integration.bucket,
        request.sender.as_str()
    );
    for step in &verdict.steps {
        let word = if step.ok { "ok" } else { "FAIL" };
        println!("  {word:<5} {:<12} {}", step.step, step.detail);
    }
    match (&verdict.cause, &verdict.hint) {
        (Some(cause), Some(hint)) => println!("cause: {cause}\nhint:  {hint}"),
        _ => println!("OK: the receiver takes this integration's events (the test made no job)."),
    }
}

/// `replay …`: the counts per outcome, and what was deleted and kept.
pub fn print_replay(queue: &str, url: &str, tally: &ReplayTally, json: bool) {
    if json {
        let mut doc = json!(tally);
        doc["queue"] = json!(queue);
        doc["queue_url"] = json!(url);
        println!("{}", pretty(&doc));
        return;
    }
    let verb = if tally.dry_run {
        "Would replay"
    } else {
        "Replayed"
    };
    println!("{verb} {} messages from {url}:", tally.messages);
    for (word, count) in &tally.outcomes {
        println!("  {word:<36} {count:>8}");
    }
    if !tally.dry_run {
        println!("deleted {}, kept {}", tally.deleted, tally.kept);
    }
}

/// `events why`: the key's last job and last event, or that none was seen.
pub fn print_why(id: &str, key: &str, history: Option<&ObjectHistory>, json: bool) {
    if json {
        let doc = json!({
            "integration_id": id,
            "key": key,
            "seen": history.is_some(),
            "enqueued": history.and_then(|h| h.enqueued.as_ref()),
            "last": history.map(|h| &h.last),
        });
        println!("{}", pretty(&doc));
        return;
    }
    let Some(history) = history else {
        println!(
            "No event for {key:?} reached {id} in the last {} days: the event source never \
             sent it (a notification rule's filters, the worker's filters, a queue name), or it \
             is still retrying. See the runbook in the README.",
            LEDGER_RETENTION.num_days()
        );
        return;
    };
    match &history.enqueued {
        Some(job) => println!("job      {} enqueued {}", job.job_id, time(job.at)),
        None => println!("job      none"),
    }
    let last = &history.last;
    let reason = last.reason.map_or("-", Reason::as_str);
    println!("last     {} {} {reason}", time(last.at), last.outcome);
    if let Some(reason) = last.reason {
        println!("why      {}", reason.description());
    }
}

/// The last event per outcome, for `show`.
fn print_last_seen(last: &BTreeMap<Outcome, Seen>) {
    println!("\nlast event per outcome:");
    if last.is_empty() {
        println!(
            "  none seen in the last {} days",
            LEDGER_RETENTION.num_days()
        );
    }
    for seen in last.values() {
        let reason = seen.reason.map_or("-", Reason::as_str);
        println!(
            "  {:<12} {} {reason:<20} {}",
            seen.outcome,
            time(seen.at),
            seen.key
        );
    }
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("CLI output serializes")
}

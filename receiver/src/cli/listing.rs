//! The listing commands: `integrations set-source` / `test` (read access to the bucket),
//! `poll` (ticks) and `backfill` (every object once), on top of [`crate::poll`].

use super::args::{BackfillArgs, PollArgs, SetSourceArgs};
use super::commands::{load, CliResult};
use super::print;
use crate::backend::bucket::Buckets;
use crate::backend::lookup::HeadObjects;
use crate::poll::{BackfillScope, Poller, Progress, RunError, Tally};
use crate::sealed::{self, KeyPair};
use crate::wiring::Wired;
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use relay_protocol::integration::{is_role_name, ReadAccess};
use relay_protocol::{secret, Integration, Provider};
use std::io::IsTerminal;
use std::sync::Arc;

/// `integrations set-source`: stores the role ARN (S3) or the sealed token (R2).
pub async fn set_source(wired: &Wired, args: SetSourceArgs, json: bool) -> CliResult {
    let store = wired.backends.store.as_ref();
    let mut integration = load(store, &args.id).await?;
    let key = wired.keys.master_key().await.map_err(|e| e.to_string())?;
    let scoped = integration.scope.is_some();
    if scoped != args.role_name.is_some() {
        return Err(if scoped {
            format!(
                "integration {} covers many buckets ({}): give it the name of the read role \
                 in each account (--role-name, org-source's read_role); a role ARN or a token \
                 reads one bucket",
                integration.id, integration.bucket
            )
        } else {
            format!(
                "integration {} reads one bucket: --role-name is for an S3 integration \
                 covering many buckets (give --role-arn on S3, --r2-access-key-id on R2)",
                integration.id
            )
        });
    }
    let access = match (integration.provider, args.role_arn, args.r2_access_key_id) {
        (Provider::S3, None, None) => {
            let role_name = args.role_name.unwrap_or_default();
            if !is_role_name(&role_name) {
                return Err(format!(
                    "--role-name {role_name:?} is not an IAM role name (1 to 64 letters, digits \
                     and +=,.@_-)"
                ));
            }
            ReadAccess::AssumeRoleInEachAccount { role_name }
        }
        (Provider::S3, Some(role_arn), None) => {
            if !role_arn.starts_with("arn:aws") || !role_arn.contains(":role/") {
                return Err(format!(
                    "--role-arn {role_arn:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
                ));
            }
            ReadAccess::AssumeRole { role_arn }
        }
        (Provider::R2, None, Some(access_key_id)) => {
            if integration.account.is_none() {
                return Err(format!(
                    "integration {} has no --account: R2's endpoint is \
                     https://<account id>.r2.cloudflarestorage.com, so create it with the account id",
                    integration.id
                ));
            }
            let secret_access_key = args.r2_secret_access_key.unwrap_or_default();
            if access_key_id.is_empty() || secret_access_key.is_empty() {
                return Err(format!(
                    "an R2 token needs --r2-access-key-id and its secret \
                     (--r2-secret-access-key or {})",
                    crate::env::R2_SECRET_ACCESS_KEY
                ));
            }
            let pair = KeyPair {
                access_key_id,
                secret_access_key,
            };
            ReadAccess::SealedKeys {
                sealed: sealed::seal(key.as_bytes(), &integration.id, &pair),
            }
        }
        (Provider::S3, _, _) => {
            return Err("an S3 integration reads its bucket through a role: --role-arn".into())
        }
        (Provider::R2, _, _) => {
            return Err(
                "an R2 integration reads its bucket with an R2 API token: --r2-access-key-id"
                    .into(),
            )
        }
    };
    integration.read_access = Some(access);
    integration.updated_at = Utc::now();
    store.put(&integration).await.map_err(|e| e.to_string())?;
    print::print_read_access("Set the read access of", &integration, &key, json);
    Ok(())
}

/// `integrations test`: one listing call with the stored read access; for an integration
/// covering many buckets, the read role in each account (and a lookup in `bucket`).
pub async fn test(
    wired: &Wired,
    id: &str,
    account: Option<&str>,
    bucket: Option<String>,
    json: bool,
) -> CliResult {
    let integration = load(wired.backends.store.as_ref(), id).await?;
    let key = wired.keys.master_key().await.map_err(|e| e.to_string())?;
    if let Some(ReadAccess::AssumeRoleInEachAccount { .. }) = &integration.read_access {
        return test_lookups(&integration, key.as_bytes(), account, bucket, json).await;
    }
    if account.is_some() || bucket.is_some() {
        return Err(format!(
            "integration {id} reads one bucket: --bucket and --account go with --receiver-url \
             (or with a read role in each account)"
        ));
    }
    let buckets = Buckets::from_env().await;
    let result = buckets.check(&integration, key.as_bytes()).await;
    print::print_access_check(&integration, &result, json);
    result.map_err(|e| format!("integration {id} cannot list its bucket: {e}"))
}

fn poller(wired: &Wired, buckets: Buckets) -> Poller {
    Poller::new(&wired.backends, Arc::clone(&wired.keys), Arc::new(buckets))
}

/// `poll`: one tick, or one every `--every` until interrupted.
pub async fn poll(wired: Wired, args: PollArgs, json: bool) -> CliResult {
    let overlap = chrono::Duration::from_std(*args.overlap)
        .map_err(|_| format!("--overlap {} is too long", args.overlap))?;
    let poller = poller(&wired, Buckets::from_env().await);
    loop {
        let results = poller
            .tick(args.integration.as_deref(), overlap)
            .await
            .map_err(|e| e.to_string())?;
        print::print_tick(&results, json);
        let Some(every) = args.every else {
            let failed = results.iter().filter(|(_, result)| result.is_err()).count();
            return match failed {
                0 => Ok(()),
                n => Err(format!(
                    "{n} of {} integrations failed their tick",
                    results.len()
                )),
            };
        };
        tokio::select! {
            () = tokio::time::sleep(*every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Runs a tick every `every` for as long as the process lives: `serve --poll-every`.
pub async fn spawn_ticks(wired: &Wired, every: std::time::Duration) {
    let poller = poller(wired, Buckets::from_env().await);
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(error) = poller.tick(None, crate::poll::DEFAULT_OVERLAP).await {
                tracing::warn!(message = "poll_failed", error = error.name(), detail = %error);
            }
        }
    });
}

/// `backfill`: every object in scope, once; resumable; progress on stderr.
pub async fn backfill(wired: Wired, args: BackfillArgs, json: bool) -> CliResult {
    let poller = poller(&wired, Buckets::from_env().await);
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
            args.restart,
            args.dry_run,
            progress.as_mut(),
        )
        .await;
    drop(progress);
    match result {
        Ok((tally, resumed_after)) => {
            print::print_backfill(
                &args.id,
                &tally,
                resumed_after.as_deref(),
                args.dry_run,
                json,
            );
            Ok(())
        }
        Err(error @ RunError::Access(_)) => Err(format!("backfill of {}: {error}", args.id)),
        Err(error) => Err(format!(
            "backfill of {} stopped: {error}; run it again to resume where it stopped",
            args.id
        )),
    }
}

/// Progress as a bar on a terminal.
struct Bar(ProgressBar);

impl Bar {
    fn new() -> Self {
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
    fn page(&mut self, tally: &Tally, elapsed_s: f64) {
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

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Progress as one JSON log line per page, when stderr is not a terminal.
struct Lines;

impl Progress for Lines {
    fn page(&mut self, tally: &Tally, elapsed_s: f64) {
        tracing::info!(
            message = "backfill_progress",
            listed = tally.listed,
            considered = tally.considered,
            jobs = tally.jobs,
            duplicates = tally.duplicates,
            skipped = tally.skipped_total(),
            objects_per_s = rate(tally.listed, elapsed_s),
        );
    }
}

fn rate(count: u64, elapsed_s: f64) -> f64 {
    if elapsed_s > 0.0 {
        count as f64 / elapsed_s
    } else {
        0.0
    }
}

/// The read role of an integration covering many buckets: assumed in each account, and asked
/// for a test key when a bucket is given.
async fn test_lookups(
    integration: &Integration,
    master_key: &[u8],
    account: Option<&str>,
    bucket: Option<String>,
    json: bool,
) -> CliResult {
    let accounts: Vec<&str> = match account {
        Some(account) => vec![account],
        None => integration
            .scope
            .iter()
            .flat_map(|scope| scope.accounts.iter().map(String::as_str))
            .collect(),
    };
    if accounts.is_empty() {
        return Err(format!(
            "integration {} lists no account to check the read role in: name one with --account",
            integration.id
        ));
    }
    let external_id = secret::external_id(master_key, &integration.id);
    let region = integration.region.as_deref();
    let lookups = HeadObjects::new();
    let mut checks = Vec::new();
    for account in accounts {
        let role_arn = integration
            .read_access
            .as_ref()
            .and_then(|access| access.role_arn_for(Some(account), region))
            .ok_or_else(|| format!("{account:?} is not an AWS account id (12 digits)"))?;
        let result = lookups
            .check(&role_arn, &external_id, region, bucket.as_deref())
            .await;
        checks.push((account.to_owned(), role_arn, result));
    }
    print::print_lookup_checks(integration, bucket.as_deref(), &checks, json);
    let failed = checks.iter().filter(|(_, _, r)| r.is_err()).count();
    match failed {
        0 => Ok(()),
        n => Err(format!(
            "integration {}: the read role failed in {n} of {} accounts",
            integration.id,
            checks.len()
        )),
    }
}

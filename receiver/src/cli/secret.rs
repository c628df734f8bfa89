//! `integrations create` and `rotate-secret`: the only commands that show a secret, with the
//! customer's ready-to-paste setup ([`super::setup`]).

use super::args::{CreateArgs, RotateArgs};
use super::common::{keyring, load, CliResult, Report, Shown};
use super::setup;
use crate::backend::Keyring;
use crate::wiring::Wired;
use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString};
use relay_protocol::{Integration, Provider};
use serde::Serialize;
use std::fmt::{self, Write};

pub(crate) async fn create(
    wired: &Wired,
    args: &CreateArgs,
    now: DateTime<Utc>,
) -> CliResult<SecretReport> {
    check_url(&args.public.url)?;
    let random = Alphanumeric.sample_string(&mut rand::rng(), 20);
    let mut integration = args.fields().build(&random, now)?;
    // The bundle, when asked for, and the key first, the store's write last: a failure leaves
    // nothing behind that nobody has the secret of.
    let bundle = match &args.worker_out {
        Some(_) if integration.provider != Provider::R2 => {
            return Err(anyhow!(
                "--worker-out is for R2 integrations: a worker forwards an R2 bucket's \
                 notifications"
            ));
        }
        Some(_) => {
            let dir = std::env::var_os(crate::env::WORKER_BUNDLE_DIR)
                .map_or_else(|| "worker/build".into(), std::path::PathBuf::from);
            Some(super::package::Bundle::read(&dir)?)
        }
        None => None,
    };
    let ring = keyring(wired).await?;
    // Its secret and external id come from the current key version.
    integration.key_version = ring.current_version();
    integration.external_id_key_version = ring.current_version();
    // The folder holds no secret: written before the integration, a failure there leaves no
    // integration whose secret nobody saw.
    let package = match (&bundle, &args.worker_out) {
        (Some(bundle), Some(out)) => Some(super::package::write_package(
            &integration,
            &args.public.url,
            bundle,
            out,
        )?),
        _ => None,
    };
    wired.backends.store.put(&integration).await?;
    if let Some(package) = &package {
        package
            .remember(wired.backends.cursors.as_ref(), now)
            .await?;
    }
    let mut report = SecretReport::new("Created", integration, &ring, &args.public.url).await?;
    report.worker_package = package;
    Ok(report)
}

pub(crate) async fn rotate(
    wired: &Wired,
    args: &RotateArgs,
    now: DateTime<Utc>,
) -> CliResult<SecretReport> {
    check_url(&args.public.url)?;
    let store = wired.backends.store.as_ref();
    let mut integration = load(store, &args.id).await?;
    let grace_until = if args.now {
        None
    } else {
        let until = chrono::Duration::from_std(*args.grace)
            .ok()
            .and_then(|grace| now.checked_add_signed(grace))
            .with_context(|| format!("--grace {} is too long", args.grace))?;
        Some(until)
    };
    let ring = keyring(wired).await?;
    // The new secret is derived from the current key version; the replaced one keeps its own.
    integration
        .rotate(now, grace_until, ring.current_version())
        .map_err(|_| anyhow!("integration {} has used every secret generation", args.id))?;
    store.put(&integration).await?;
    let verb = "Rotated the secret of";
    SecretReport::new(verb, integration, &ring, &args.public.url).await
}

/// The receiver URL the customer's side will post to: printed into their setup, so it must be
/// one they can use (https, a host, no user or password).
fn check_url(url: &str) -> CliResult {
    relay_protocol::names::check_receiver_url(url)
        .map_err(|why| anyhow!("--receiver-url {url:?} cannot be given to an event source: {why}"))
}

/// The new secret and everything the customer's side needs with it.
#[derive(Serialize)]
pub(crate) struct SecretReport {
    #[serde(skip)]
    verb: &'static str,
    id: String,
    secret: String,
    events_url: String,
    #[serde(serialize_with = "shown")]
    integration: Integration,
    setup: String,
    wrangler_vars: Option<String>,
    notification_rules: Option<Vec<String>>,
    terraform: Option<String>,
    external_id: Option<String>,
    read_access_setup: String,
    /// The worker folder `--worker-out` wrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    worker_package: Option<super::package::Packaged>,
}

fn shown<S: serde::Serializer>(
    integration: &Integration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    Shown(integration).serialize(serializer)
}

impl SecretReport {
    async fn new(
        verb: &'static str,
        integration: Integration,
        ring: &Keyring,
        url: &str,
    ) -> CliResult<Self> {
        let secret = ring.current_secret(&integration).await?;
        let r2 = integration.provider == Provider::R2;
        // Only S3 has an external id (an R2 integration's version of it means nothing).
        let external_id = if r2 {
            String::new()
        } else {
            ring.external_id(&integration).await?
        };
        Ok(SecretReport {
            verb,
            id: integration.id.clone(),
            events_url: setup::events_url(url, &integration.id),
            setup: setup::instructions(&integration, &secret, url),
            wrangler_vars: r2.then(|| setup::wrangler_vars(&integration, url)),
            notification_rules: r2.then(|| setup::notification_rules(&integration)),
            terraform: match (integration.provider, &integration.scope) {
                (Provider::S3, None) => Some(setup::s3_source_module(&integration, url)),
                (Provider::S3, Some(_)) => Some(setup::org_source_module(&integration, url)),
                (Provider::R2, _) => None,
            },
            read_access_setup: setup::read_access(&integration, &external_id),
            external_id: (!r2).then_some(external_id),
            secret,
            integration,
            worker_package: None,
        })
    }
}

impl Report for SecretReport {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        let i = &self.integration;
        writeln!(
            out,
            "{} integration {} ({} bucket {}).\n",
            self.verb, i.id, i.provider, i.bucket
        )?;
        writeln!(
            out,
            "Event source secret (shown only now; store it on the customer's side):\n\n  {}\n",
            self.secret
        )?;
        for grace in &i.previous_generations {
            writeln!(
                out,
                "The secret of generation {} keeps working until {}.",
                grace.generation,
                grace.valid_until.to_rfc3339()
            )?;
        }
        if !i.previous_generations.is_empty() {
            writeln!(out)?;
        }
        write!(out, "{}", self.setup)?;
        if let Some(package) = &self.worker_package {
            writeln!(out)?;
            package.render(out)?;
        }
        // Read access lists one bucket; for an integration covering many, a role in each
        // account names the objects CloudTrail events leave unnamed.
        if i.scope.is_none() {
            writeln!(
                out,
                "\nFor poll mode and backfill (optional in event mode):\n"
            )?;
        } else {
            writeln!(
                out,
                "\nWith the organization trail, or CloudTrail events of unversioned buckets:\n"
            )?;
        }
        write!(out, "{}", self.read_access_setup)
    }
}

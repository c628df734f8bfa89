//! `worker package ID --out DIR`: a folder an R2 customer deploys with Node.js alone. It holds
//! the prebuilt worker bundle (the release build the workerd tests run), a `wrangler.toml` made
//! from this repository's own (the same queues, consumers and settings) with no `[build]` step and
//! the integration's `[vars]`, and a README with the ordered commands. No secret is written: the
//! README's `secret put` step takes the one `integrations create` showed.
//!
//! The bundle's version is the crate version and a hash of its files; it is written into the
//! `[vars]` (`WORKER_BUNDLE`), so the deployed worker's `/healthz` names the bytes it runs.

use super::args::PackageArgs;
use super::common::{load, CliResult, Report, Safe};
use super::setup::{r2_instructions, unreachable_from_the_cloud, wrangler_vars, Deployed};
use crate::backend::Cursors;
use crate::wiring::Wired;
use crate::worker_bundle;
use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use relay_protocol::wire::WORKER_VAR_BUNDLE;
use relay_protocol::{Integration, Provider};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::path::Path;

/// The repository's wrangler.toml: the queues, consumers and settings every worker runs with.
const TEMPLATE: &str = include_str!("../../../wrangler.toml");
/// The repository's wrangler.toml, parsed.
fn template() -> CliResult<toml::Table> {
    TEMPLATE.parse().context("the wrangler.toml template")
}

/// The files of a worker-build release build, as the package lays them out under `bundle/`.
const BUNDLE_FILES: [&str; 3] = ["index.js", "index_bg.wasm", "worker/shim.mjs"];
/// What the customer pastes in place of the secret.
const SECRET_PLACEHOLDER: &str = "<the whsec_… secret integrations create showed>";

pub(crate) async fn package(
    wired: &Wired,
    args: PackageArgs,
    now: DateTime<Utc>,
) -> CliResult<Packaged> {
    let integration = load(wired.backends.store.as_ref(), &args.id).await?;
    let bundle = Bundle::read(&args.bundle)?;
    let packaged = write_package(&integration, &args.public.url, &bundle, &args.out)?;
    packaged
        .remember(wired.backends.cursors.as_ref(), now)
        .await?;
    Ok(packaged)
}

/// The prebuilt worker: its files, as read from a release build's folder.
pub(crate) struct Bundle(Vec<(&'static str, Vec<u8>)>);

/// What `connect-r2` uploads: the bundle's version and files.
#[cfg(feature = "operator")]
impl Bundle {
    /// `<crate version>+<hash>` of the files.
    pub(crate) fn version(&self) -> String {
        bundle_version(&self.0)
    }

    /// One of its files, by its name in the bundle.
    pub(crate) fn file(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, bytes)| bytes.as_slice())
    }
}

impl Bundle {
    pub(crate) fn read(dir: &Path) -> CliResult<Bundle> {
        let files = BUNDLE_FILES
            .iter()
            .map(|name| {
                std::fs::read(dir.join(name))
                    .map(|bytes| (*name, bytes))
                    .with_context(|| {
                        format!(
                            "cannot read the worker bundle's {} in {}: build it with \
                             `cd worker && worker-build --profile worker-release` in a \
                             checkout, or point --bundle (RELAY_WORKER_BUNDLE) at a release's \
                             bundle folder",
                            name,
                            dir.display()
                        )
                    })
            })
            .collect::<CliResult<Vec<_>>>()?;
        Ok(Bundle(files))
    }
}

/// Writes the integration's worker folder to `out`.
pub(crate) fn write_package(
    integration: &Integration,
    public_url: &str,
    bundle: &Bundle,
    out: &Path,
) -> CliResult<Packaged> {
    if integration.provider != Provider::R2 {
        bail!(
            "integration {} is {}: a worker forwards an R2 bucket's notifications",
            integration.id,
            integration.provider
        );
    }
    let base = public_url.trim_end_matches('/');
    let version = bundle_version(&bundle.0);
    let config = wrangler_toml(integration, base, &version)?;
    let readme = readme(integration, base, &version);
    for (name, bytes) in &bundle.0 {
        write(&out.join("bundle").join(name), bytes)?;
    }
    write(&out.join("wrangler.toml"), config.as_bytes())?;
    write(&out.join("README.md"), readme.as_bytes())?;
    Ok(Packaged {
        integration_id: integration.id.clone(),
        out: out.display().to_string(),
        bundle_version: version,
        warning: unreachable_from_the_cloud(base).map(str::to_owned),
    })
}

fn write(path: &Path, bytes: &[u8]) -> CliResult {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// `<crate version>+<the first 12 hex digits of the SHA-256 of the files, name and bytes>`.
fn bundle_version(files: &[(&str, Vec<u8>)]) -> String {
    let mut hash = Sha256::new();
    for (name, bytes) in files {
        hash.update((name.len() as u64).to_be_bytes());
        hash.update(name.as_bytes());
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(bytes);
    }
    let digest = hash.finalize();
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}+{hex}", env!("CARGO_PKG_VERSION"))
}

/// The repository's wrangler.toml with the bundle as `main`, no `[build]` step, and the
/// integration's `[vars]` with the bundle's version.
fn wrangler_toml(integration: &Integration, base: &str, version: &str) -> CliResult<String> {
    let mut config: toml::Table = template()?;
    config.remove("build");
    config.insert("main".into(), toml::Value::String("bundle/index.js".into()));
    let vars = worker_vars(integration, base, version)?
        .into_iter()
        .map(|(name, value)| (name, toml::Value::String(value)))
        .collect();
    config.insert("vars".into(), toml::Value::Table(vars));
    let body = toml::to_string(&config).context("wrangler.toml")?;
    Ok(format!(
        "# The Bucket Relay worker for integration {}, written by `bucket-relay worker package`.\n\
         # Deploy it from this folder with Node.js alone; see README.md.\n\n{body}",
        integration.id
    ))
}

/// The worker's `[vars]` for the integration, with the bundle's version: what the packaged
/// wrangler.toml holds and what `connect-r2` uploads.
pub(crate) fn worker_vars(
    integration: &Integration,
    base: &str,
    version: &str,
) -> CliResult<BTreeMap<String, String>> {
    let vars: toml::Table = wrangler_vars(integration, base)
        .parse()
        .context("the integration's [vars]")?;
    let mut vars: BTreeMap<String, String> = vars
        .get("vars")
        .and_then(toml::Value::as_table)
        .ok_or_else(|| anyhow!("no [vars] for the integration"))?
        .iter()
        .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_owned())))
        .collect();
    vars.insert(WORKER_VAR_BUNDLE.into(), version.into());
    Ok(vars)
}

/// One `[[queues.consumers]]` of the repository's wrangler.toml, as the Queues API takes it.
#[cfg(feature = "operator")]
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct ConsumerSpec {
    pub queue: String,
    pub dead_letter_queue: Option<String>,
    pub settings: ConsumerSettings,
}

/// A consumer's settings in the Queues API's names (wrangler.toml's `max_batch_size` is
/// `batch_size`, its `max_batch_timeout` in seconds is `max_wait_time_ms`).
#[cfg(feature = "operator")]
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub(crate) struct ConsumerSettings {
    pub batch_size: u64,
    pub max_retries: u64,
    pub max_wait_time_ms: u64,
    pub max_concurrency: u64,
    pub retry_delay: u64,
}

/// The worker's queue consumers, from the repository's wrangler.toml: the one place their
/// settings are decided (docs/customers-r2.md says why).
#[cfg(feature = "operator")]
pub(crate) fn consumers() -> CliResult<Vec<ConsumerSpec>> {
    let config: toml::Table = template()?;
    let list = config
        .get("queues")
        .and_then(|q| q.get("consumers"))
        .and_then(toml::Value::as_array)
        .ok_or_else(|| anyhow!("wrangler.toml has no [[queues.consumers]]"))?;
    list.iter()
        .map(|consumer| {
            let number = |name: &str| {
                consumer
                    .get(name)
                    .and_then(toml::Value::as_integer)
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| anyhow!("wrangler.toml's consumer has no {name}"))
            };
            let text = |name: &str| consumer.get(name).and_then(toml::Value::as_str);
            Ok(ConsumerSpec {
                queue: text("queue")
                    .ok_or_else(|| anyhow!("a consumer without a queue"))?
                    .to_owned(),
                dead_letter_queue: text("dead_letter_queue").map(str::to_owned),
                settings: ConsumerSettings {
                    batch_size: number("max_batch_size")?,
                    max_retries: number("max_retries")?,
                    max_wait_time_ms: number("max_batch_timeout")? * 1000,
                    max_concurrency: number("max_concurrency")?,
                    retry_delay: number("retry_delay")?,
                },
            })
        })
        .collect()
}

/// The compatibility date of the repository's wrangler.toml.
#[cfg(feature = "operator")]
pub(crate) fn compatibility_date() -> CliResult<String> {
    let config: toml::Table = template()?;
    config
        .get("compatibility_date")
        .and_then(toml::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("wrangler.toml has no compatibility_date"))
}

fn readme(integration: &Integration, base: &str, version: &str) -> String {
    let steps = r2_instructions(integration, SECRET_PLACEHOLDER, base, Deployed::FromPackage);
    format!(
        "# Bucket Relay worker for {id}\n\n\
         The prebuilt worker (bundle {version}, in `bundle/`) that forwards the R2 bucket \
         `{bucket}`'s notifications to Bucket Relay. Nothing here is built: Node.js and \
         `npx wrangler` are enough. The secret is not in this folder: step 4 takes the one you \
         were given.\n\n```\n{steps}```\n",
        id = integration.id,
        bucket = integration.bucket,
    )
}

/// What `worker package` (or `create --worker-out`) wrote.
#[derive(Serialize)]
pub(crate) struct Packaged {
    integration_id: String,
    out: String,
    bundle_version: String,
    /// Why the receiver URL in it cannot be used by a customer, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
}

impl Packaged {
    /// Keeps the version as the integration's last packaged bundle, which `integrations show`
    /// compares with the one its worker reports.
    pub(crate) async fn remember(&self, cursors: &dyn Cursors, now: DateTime<Utc>) -> CliResult {
        worker_bundle::remember_packaged(cursors, &self.integration_id, &self.bundle_version, now)
            .await?;
        Ok(())
    }
}

impl Report for Packaged {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        if let Some(why) = &self.warning {
            writeln!(
                out,
                "WARNING: its receiver URL cannot be given to a customer: {why}; set \
                 RELAY_PUBLIC_URL (or --receiver-url) and package it again."
            )?;
        }
        writeln!(
            out,
            "Wrote the worker for {} (bundle {}) to {}: deploy it from there with Node.js, as its \
             README.md says.",
            self.integration_id,
            self.bundle_version,
            Safe(&self.out)
        )
    }
}

//! `bucket-relay keys …`: the master key over its whole life.
//!
//! - `status`: per version, what still depends on it (secrets, external ids, sealed tokens);
//! - `rotate [--grace D]`: a new version, current for everything new; with `--grace`, every
//!   integration's secret is rotated onto it too, the replaced one verifying for D;
//! - `reseal [--dry-run]`: every sealed R2 token sealed again under the current version, one
//!   integration at a time (idempotent, resumable);
//! - `reissue-external-ids`: each read role's external id issued again under the current version;
//! - `retire VERSION [--force]`: the version's key destroyed, refused while anything depends on
//!   it unless `--force` (a compromise), which names what each integration must do.
//!
//! Nothing here writes a key or a secret to a log; `rotate --grace` prints the new secrets, as
//! `rotate-secret` does.

use super::args::KeysCommand;
use super::common::{keyring, CliResult, Printer, Report, Safe};
use crate::events::ResealProgress;
use crate::keys::{is_kms_key_id, Keyring};
use crate::sealed;
use crate::wiring::Wired;
use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use relay_protocol::integration::ReadAccess;
use relay_protocol::{Integration, Provider};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::{self, Write};

/// How often `reseal` reports its progress, in integrations.
const PROGRESS_EVERY: u64 = 25;

pub(crate) async fn run(wired: Wired, printer: Printer, command: KeysCommand) -> CliResult {
    let now = Utc::now();
    match command {
        KeysCommand::Status => printer.emit(&status(&wired, now).await?),
        KeysCommand::Rotate {
            grace,
            kms_mac_key,
            kms_seal_key,
        } => {
            let grace = grace
                .map(|g| {
                    chrono::Duration::from_std(*g)
                        .ok()
                        .and_then(|g| now.checked_add_signed(g))
                        .with_context(|| format!("--grace {g} is too long"))
                })
                .transpose()?;
            let kms = kms_mac_key.zip(kms_seal_key);
            printer.emit(&rotate(&wired, grace, kms, now).await?)
        }
        KeysCommand::Reseal { dry_run } => printer.emit(&reseal(&wired, dry_run).await?),
        KeysCommand::ReissueExternalIds { integration } => {
            printer.emit(&reissue(&wired, integration.as_deref(), now).await?)
        }
        KeysCommand::Retire { version, force } => {
            printer.emit(&retire(&wired, version, force, now).await?)
        }
    }
}

/// What depends on each key version: `keys status`'s counts, and what `keys retire` checks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Dependents {
    /// Secrets that verify (current generations and those in their grace).
    pub secrets: u64,
    /// External ids a read role trusts.
    pub external_ids: u64,
    /// Sealed R2 tokens.
    pub sealed_tokens: u64,
    /// The integrations behind the counts.
    pub integrations: Vec<String>,
}

impl Dependents {
    pub(crate) fn total(&self) -> u64 {
        self.secrets + self.external_ids + self.sealed_tokens
    }
}

/// Per version, what of `integrations` depends on it at `now`.
pub(crate) fn dependents(
    integrations: &[Integration],
    now: DateTime<Utc>,
) -> BTreeMap<u32, Dependents> {
    let mut out: BTreeMap<u32, Dependents> = BTreeMap::new();
    for integration in integrations {
        let mut touched = Vec::new();
        for (_, version) in integration.valid_secrets(now) {
            out.entry(version).or_default().secrets += 1;
            touched.push(version);
        }
        if integration.uses_external_id() {
            let version = integration.external_id_key_version;
            out.entry(version).or_default().external_ids += 1;
            touched.push(version);
        }
        if let Some(version) = sealed::sealed_version(integration) {
            out.entry(version).or_default().sealed_tokens += 1;
            touched.push(version);
        }
        touched.sort_unstable();
        touched.dedup();
        for version in touched {
            out.entry(version)
                .or_default()
                .integrations
                .push(integration.id.clone());
        }
    }
    out
}

/// One version's row of `status`.
#[derive(Debug, Serialize)]
struct VersionStatus {
    version: u32,
    current: bool,
    /// Whether the keyring holds its key (a retired version does not).
    in_keyring: bool,
    /// Where its key is: `local` (in the keyring) or `kms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    held: Option<&'static str>,
    #[serde(flatten)]
    dependents: Dependents,
}

#[derive(Debug, Serialize)]
pub(crate) struct Status {
    current: u32,
    versions: Vec<VersionStatus>,
}

async fn status(wired: &Wired, now: DateTime<Utc>) -> CliResult<Status> {
    let ring = keyring(wired).await?;
    let integrations = wired.backends.store.list().await?;
    Ok(status_of(&ring, &integrations, now))
}

fn status_of(ring: &Keyring, integrations: &[Integration], now: DateTime<Utc>) -> Status {
    let mut counts = dependents(integrations, now);
    for version in ring.versions() {
        counts.entry(version).or_default();
    }
    Status {
        current: ring.current_version(),
        versions: counts
            .into_iter()
            .map(|(version, dependents)| VersionStatus {
                version,
                current: version == ring.current_version(),
                in_keyring: ring.version(version).is_ok(),
                held: ring.held(version),
                dependents,
            })
            .collect(),
    }
}

impl Report for Status {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        writeln!(
            out,
            "{:<8} {:<10} {:<6} {:>8} {:>13} {:>14} {:>13}",
            "version", "", "held", "secrets", "external ids", "sealed tokens", "integrations"
        )?;
        for v in &self.versions {
            let state = match (v.current, v.in_keyring) {
                (true, _) => "current",
                (false, true) => "",
                (false, false) => "MISSING",
            };
            writeln!(
                out,
                "v{:<7} {state:<10} {:<6} {:>8} {:>13} {:>14} {:>13}",
                v.version,
                v.held.unwrap_or("-"),
                v.dependents.secrets,
                v.dependents.external_ids,
                v.dependents.sealed_tokens,
                v.dependents.integrations.len()
            )?;
        }
        for v in self.versions.iter().filter(|v| !v.current) {
            if v.dependents.total() == 0 && v.in_keyring {
                writeln!(
                    out,
                    "v{}: nothing depends on it: `keys retire v{}` may destroy it.",
                    v.version, v.version
                )?;
            } else if v.dependents.total() > 0 {
                writeln!(
                    out,
                    "v{} still used by: {}",
                    v.version,
                    Safe(&v.dependents.integrations.join(", "))
                )?;
            }
        }
        Ok(())
    }
}

/// A secret `rotate --grace` issued.
#[derive(Debug, Serialize)]
struct Issued {
    id: String,
    provider: Provider,
    secret: String,
    /// Until when the replaced secret keeps verifying.
    previous_valid_until: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Rotated {
    previous: u32,
    current: u32,
    /// Where the new version's key is: `local` (in the keyring) or `kms`.
    held: &'static str,
    /// With `--grace`: every integration's new secret.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    secrets: Vec<Issued>,
}

async fn rotate(
    wired: &Wired,
    grace_until: Option<DateTime<Utc>>,
    kms: Option<(String, String)>,
    now: DateTime<Utc>,
) -> CliResult<Rotated> {
    if let Some((mac, seal)) = &kms {
        if !is_kms_key_id(mac) || !is_kms_key_id(seal) {
            bail!("--kms-mac-key and --kms-seal-key take a KMS key id, ARN or alias");
        }
    }
    let ring = keyring(wired).await?;
    let held = if kms.is_some() { "kms" } else { "local" };
    let rotated = ring.rotated(kms);
    if held == "kms" {
        probe(&rotated).await?;
    }
    wired.keys.replace(&ring, &rotated).await?;
    let mut secrets = Vec::new();
    if let Some(until) = grace_until {
        let store = wired.backends.store.as_ref();
        for listed in store.list().await? {
            // Read again just before the write: a CLI change made meanwhile is kept.
            let Some(mut integration) = store.get(&listed.id).await? else {
                continue;
            };
            integration
                .rotate(now, Some(until), rotated.current_version())
                .map_err(|_| {
                    anyhow!("integration {} has used every secret generation", listed.id)
                })?;
            store.put(&integration).await?;
            secrets.push(Issued {
                secret: rotated.current_secret(&integration).await?,
                id: integration.id,
                provider: integration.provider,
                previous_valid_until: until,
            });
        }
    }
    Ok(Rotated {
        previous: ring.current_version(),
        current: rotated.current_version(),
        held,
        secrets,
    })
}

/// Before a KMS-held version becomes current: its keys answer GenerateMac and seal and open a
/// value (a wrong key id, a key of the wrong kind or a missing permission fails here, not at
/// every request).
async fn probe(ring: &Keyring) -> CliResult {
    let version = ring.current_version();
    let mac = ring.mac(version, b"bucket-relay/kms-probe").await;
    mac.context("the KMS MAC key does not answer GenerateMac (HMAC_SHA_256)")?;
    let sealed = ring
        .seal_bytes("kms-probe", b"probe")
        .await
        .context("the KMS seal key does not answer Encrypt")?;
    let opened = ring
        .open_bytes(version, "kms-probe", &sealed)
        .await
        .context("the KMS seal key does not answer Decrypt")?;
    if opened.as_deref() != Some(&b"probe"[..]) {
        bail!("the KMS seal key does not open what it sealed");
    }
    Ok(())
}

impl Report for Rotated {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        writeln!(
            out,
            "Master key v{} ({}) is current (was v{}). New secrets, external ids and sealed \
             tokens use it; everything issued under v{} keeps working.",
            self.current, self.held, self.previous, self.previous
        )?;
        if self.secrets.is_empty() {
            writeln!(
                out,
                "Next: `keys reseal` (tokens), `integrations rotate-secret` per integration or \
                 `keys rotate --grace`, `keys reissue-external-ids`; `keys status` shows what \
                 still uses v{}.",
                self.previous
            )?;
            return Ok(());
        }
        writeln!(
            out,
            "\nEvery integration's secret was rotated onto v{} (shown only now; the replaced one \
             verifies until {}). Give each customer theirs: R2 `printf '%s' SECRET | npx \
             wrangler secret put EVENT_SOURCE_SECRET` (or run `integrations connect-r2` again), \
             S3 the module's `secret` input.\n",
            self.current,
            self.secrets[0].previous_valid_until.to_rfc3339()
        )?;
        for issued in &self.secrets {
            writeln!(
                out,
                "  {} ({})  {}",
                issued.id, issued.provider, issued.secret
            )?;
        }
        Ok(())
    }
}

/// What `reseal` did, per outcome.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Resealed {
    dry_run: bool,
    current: u32,
    /// Sealed again under the current version (with `--dry-run`: would be).
    resealed: u64,
    already_current: u64,
    /// Sealed under a version the keyring no longer holds, or damaged: `set-source` again.
    unreadable: Vec<String>,
    /// Integrations without a sealed token.
    without_token: u64,
}

async fn reseal(wired: &Wired, dry_run: bool) -> CliResult<Resealed> {
    let ring = keyring(wired).await?;
    let store = wired.backends.store.as_ref();
    let listed = store.list().await?;
    let total = listed.len() as u64;
    let mut report = Resealed {
        dry_run,
        current: ring.current_version(),
        ..Resealed::default()
    };
    for (done, listed) in (1u64..).zip(listed) {
        // One integration at a time, read just before its write: a run killed at any point
        // leaves each token sealed under its old version or the new one, both in the keyring.
        let integration = store.get(&listed.id).await?;
        match integration {
            Some(mut integration) => match &integration.read_access {
                Some(ReadAccess::SealedKeys { sealed }) => {
                    match sealed::reseal(&ring, &integration.id, sealed).await {
                        Ok(None) => report.already_current += 1,
                        Ok(Some(resealed)) => {
                            if !dry_run {
                                integration.read_access =
                                    Some(ReadAccess::SealedKeys { sealed: resealed });
                                integration.updated_at = Utc::now();
                                store.put(&integration).await?;
                            }
                            report.resealed += 1;
                        }
                        Err(sealed::Unreadable::Sealed) => report.unreadable.push(integration.id),
                        Err(sealed::Unreadable::Unavailable(error)) => return Err(error.into()),
                    }
                }
                _ => report.without_token += 1,
            },
            None => report.without_token += 1,
        }
        if done % PROGRESS_EVERY == 0 || done == total {
            ResealProgress {
                done,
                total,
                resealed: report.resealed,
                unreadable: report.unreadable.len() as u64,
            }
            .emit();
        }
    }
    Ok(report)
}

impl Report for Resealed {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        let verb = if self.dry_run {
            "would reseal"
        } else {
            "resealed"
        };
        writeln!(
            out,
            "Sealed tokens under v{}: {verb} {}, already current {}, unreadable {}; {} \
             integrations have no token.",
            self.current,
            self.resealed,
            self.already_current,
            self.unreadable.len(),
            self.without_token
        )?;
        for id in &self.unreadable {
            writeln!(
                out,
                "  {}: its token does not open (a retired version?): `integrations set-source {} \
                 --r2-access-key-id …` seals a new one",
                Safe(id),
                Safe(id)
            )?;
        }
        Ok(())
    }

    fn failure(&self) -> Option<String> {
        (!self.unreadable.is_empty())
            .then(|| format!("{} sealed tokens do not open", self.unreadable.len()))
    }
}

/// An external id issued again.
#[derive(Debug, Serialize)]
struct Reissued {
    id: String,
    external_id: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct ReissuedIds {
    current: u32,
    reissued: Vec<Reissued>,
}

async fn reissue(wired: &Wired, only: Option<&str>, now: DateTime<Utc>) -> CliResult<ReissuedIds> {
    let ring = keyring(wired).await?;
    let store = wired.backends.store.as_ref();
    let mut reissued = Vec::new();
    let listed = match only {
        Some(id) => vec![super::common::load(store, id).await?],
        None => store.list().await?,
    };
    for listed in listed {
        let Some(mut integration) = store.get(&listed.id).await? else {
            continue;
        };
        if integration.provider != Provider::S3
            || integration.external_id_key_version == ring.current_version()
        {
            continue;
        }
        integration.external_id_key_version = ring.current_version();
        integration.updated_at = now;
        store.put(&integration).await?;
        reissued.push(Reissued {
            external_id: ring.external_id(&integration).await?,
            id: integration.id,
        });
    }
    Ok(ReissuedIds {
        current: ring.current_version(),
        reissued,
    })
}

impl Report for ReissuedIds {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        writeln!(
            out,
            "{} external ids issued again under v{}. Each customer puts theirs into the read \
             role's trust policy (sts:ExternalId; the s3-source and org-source modules' \
             `external_id` input): until then, listing and lookups are refused \
             (assume_role_denied).",
            self.reissued.len(),
            self.current
        )?;
        for r in &self.reissued {
            writeln!(out, "  {}  {}", r.id, r.external_id)?;
        }
        Ok(())
    }
}

/// What `retire` destroyed, and what each integration must now do.
#[derive(Debug, Serialize)]
pub(crate) struct Retired {
    retired: u32,
    forced: bool,
    /// Per integration, the steps it needs (after `--force`).
    must_act: BTreeMap<String, Vec<String>>,
}

async fn retire(
    wired: &Wired,
    version: u32,
    force: bool,
    now: DateTime<Utc>,
) -> CliResult<Retired> {
    let ring = keyring(wired).await?;
    let without = ring.without(version).map_err(anyhow::Error::msg)?;
    let store = wired.backends.store.as_ref();
    let integrations = store.list().await?;
    let depending = dependents(&integrations, now)
        .remove(&version)
        .unwrap_or_default();
    let must_act = steps_for(&integrations, version, now);
    if depending.total() > 0 && !force {
        bail!(
            "v{version} is still used: {} secrets, {} external ids, {} sealed tokens, by {}. \
             Rotate those secrets (`integrations rotate-secret ID` or `keys rotate --grace`), \
             `keys reissue-external-ids`, `keys reseal`; `keys status` shows what is left. \
             After a compromise, --force retires it anyway.",
            depending.secrets,
            depending.external_ids,
            depending.sealed_tokens,
            depending.integrations.join(", ")
        );
    }
    wired.keys.replace(&ring, &without).await?;
    // An integration no read role trusts (R2, or S3 without a role) uses no external id: it
    // moves to the current version, so `show` and `rotate-secret` can still derive one.
    for integration in integrations
        .iter()
        .filter(|i| !i.uses_external_id() && i.external_id_key_version == version)
    {
        if let Some(mut fresh) = store.get(&integration.id).await? {
            fresh.external_id_key_version = without.current_version();
            store.put(&fresh).await?;
        }
    }
    Ok(Retired {
        retired: version,
        forced: force && depending.total() > 0,
        must_act,
    })
}

/// What each integration that depends on `version` must do once it is gone.
fn steps_for(
    integrations: &[Integration],
    version: u32,
    now: DateTime<Utc>,
) -> BTreeMap<String, Vec<String>> {
    let mut steps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in integrations {
        let mut add = |step: String| steps.entry(i.id.clone()).or_default().push(step);
        if i.key_version == version {
            add(format!(
                "its secret no longer verifies: `integrations rotate-secret {} --now` and give \
                 the customer the new one",
                i.id
            ));
        } else if i.valid_secrets(now).any(|(_, v)| v == version) {
            add("a secret in its grace no longer verifies".to_owned());
        }
        if i.uses_external_id() && i.external_id_key_version == version {
            add(format!(
                "its read role refuses us: `keys reissue-external-ids --integration {}` and the \
                 customer's trust policy updated",
                i.id
            ));
        }
        if sealed::sealed_version(i) == Some(version) {
            add(format!(
                "its R2 token no longer opens: `integrations set-source {} --r2-access-key-id …`",
                i.id
            ));
        }
    }
    steps
}

impl Report for Retired {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        writeln!(out, "Master key v{} is destroyed.", self.retired)?;
        if self.forced {
            writeln!(out, "Forced: these integrations must act now:")?;
        }
        for (id, steps) in &self.must_act {
            for step in steps {
                writeln!(out, "  {}: {}", Safe(id), Safe(step))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MasterKey;
    use relay_protocol::integration::NewIntegration;

    #[test]
    fn status_counts_every_version_in_the_ring_and_marks_a_missing_one() {
        let ring = Keyring::single(MasterKey::from_bytes(&[7; 32])).rotated(None);
        let now = Utc::now();
        let old = NewIntegration::new(Provider::R2, "uploads")
            .build("a", now)
            .unwrap();
        let status = status_of(&ring, std::slice::from_ref(&old), now);
        let rows: Vec<(u32, bool, bool, u64)> = status
            .versions
            .iter()
            .map(|v| (v.version, v.current, v.in_keyring, v.dependents.secrets))
            .collect();
        assert_eq!(rows, [(1, false, true, 1), (2, true, true, 0)]);
        let retired = ring.without(1).unwrap();
        let status = status_of(&retired, &[old], now);
        assert_eq!(
            status
                .versions
                .iter()
                .map(|v| (v.version, v.in_keyring))
                .collect::<Vec<_>>(),
            [(1, false), (2, true)]
        );
    }

    #[test]
    fn retiring_names_each_integration_s_step() {
        let now = Utc::now();
        let mut s3 = NewIntegration::new(Provider::S3, "docs")
            .build("s", now)
            .unwrap();
        s3.read_access = Some(ReadAccess::AssumeRole {
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
        });
        let steps = steps_for(&[s3.clone()], 1, now);
        let text = steps[&s3.id].join("\n");
        assert!(
            text.contains(&format!("rotate-secret {} --now", s3.id)),
            "{text}"
        );
        assert!(text.contains("reissue-external-ids"), "{text}");
        assert!(steps_for(&[s3], 2, now).is_empty());
    }

    #[tokio::test]
    async fn dependents_count_secrets_external_ids_and_tokens_per_version() {
        let ring = Keyring::single(MasterKey::from_bytes(&[7; 32])).rotated(None);
        let now = Utc::now();
        let mut s3 = NewIntegration::new(Provider::S3, "docs")
            .build("aaa", now)
            .unwrap();
        s3.read_access = Some(ReadAccess::AssumeRole {
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
        });
        let mut r2 = NewIntegration {
            account: Some("4f3c1e0d9b8a7c6d5e4f3a2b1c0d9e8f".into()),
            ..NewIntegration::new(Provider::R2, "uploads")
        }
        .build("bbb", now)
        .unwrap();
        let pair = crate::sealed::KeyPair {
            access_key_id: "a".into(),
            secret_access_key: "b".into(),
        };
        r2.read_access = Some(ReadAccess::SealedKeys {
            sealed: crate::sealed::seal(&ring, &r2.id, &pair).await.unwrap(),
        });
        r2.key_version = 2;
        let counts = dependents(&[s3.clone(), r2.clone()], now);
        assert_eq!(
            (
                counts[&1].secrets,
                counts[&1].external_ids,
                counts[&1].sealed_tokens
            ),
            (1, 1, 0)
        );
        assert_eq!(
            (
                counts[&2].secrets,
                counts[&2].external_ids,
                counts[&2].sealed_tokens
            ),
            (1, 0, 1)
        );
        assert_eq!(counts[&1].integrations, [s3.id.clone()]);
        assert_eq!(counts[&2].integrations, [r2.id.clone()]);
    }
}

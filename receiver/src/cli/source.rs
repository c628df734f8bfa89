//! The integration's read access to its bucket: `integrations set-source` stores it (a role ARN
//! for S3, a role name in each account for an S3 scope, a sealed token for R2), and
//! `integrations test` checks it (one listing call, or the read role assumed in each account),
//! or, with `--receiver-url`, sends a test event ([`super::connection`]).

use super::args::{SetSourceArgs, TestArgs};
use super::common::{keyring, load, Checked, CliResult, Printer, Report, Safe};
use super::setup;
use crate::backend::bucket::AccessError;
use crate::backend::bucket::ReadCredentials;
use crate::backend::lookup::LookupError;
use crate::backend::Keyring;
use crate::sealed::{self, KeyPair};
use crate::wiring::Wired;
use anyhow::{bail, Context};
use chrono::Utc;
use relay_protocol::integration::{is_role_name, ReadAccess};
use relay_protocol::{Integration, Provider};
use serde::{Serialize, Serializer};
use std::fmt::{self, Write};

/// `integrations set-source`: stores the read access, and shows the customer's side of it.
pub(crate) async fn set_source(wired: &Wired, args: SetSourceArgs) -> CliResult<ReadAccessSet> {
    let store = wired.backends.store.as_ref();
    let mut integration = load(store, &args.id).await?;
    let ring = keyring(wired).await?;
    let scoped = integration.scope.is_some();
    if scoped != args.role_name.is_some() {
        if scoped {
            bail!(
                "integration {} covers many buckets ({}): give it the name of the read role in \
                 each account (--role-name, org-source's read_role); a role ARN or a token reads \
                 one bucket",
                integration.id,
                integration.bucket
            );
        }
        bail!(
            "integration {} reads one bucket: --role-name is for an S3 integration covering \
             many buckets (give --role-arn on S3, --r2-access-key-id on R2)",
            integration.id
        );
    }
    let access = match (integration.provider, args.role_arn, args.r2_access_key_id) {
        (Provider::S3, None, None) => {
            let role_name = args.role_name.unwrap_or_default();
            if !is_role_name(&role_name) {
                bail!(
                    "--role-name {role_name:?} is not an IAM role name (1 to 64 letters, digits \
                     and +=,.@_-)"
                );
            }
            ReadAccess::AssumeRoleInEachAccount { role_name }
        }
        (Provider::S3, Some(role_arn), None) => {
            if !relay_protocol::names::is_role_arn(&role_arn) {
                bail!(
                    "--role-arn {role_arn:?} is not an IAM role ARN \
                     (arn:aws:iam::<account>:role/<name>)"
                );
            }
            ReadAccess::AssumeRole { role_arn }
        }
        (Provider::R2, None, Some(access_key_id)) => {
            if integration.account.is_none() {
                bail!(
                    "integration {} has no --account: R2's endpoint is \
                     https://<account id>.r2.cloudflarestorage.com, so create it with the \
                     account id",
                    integration.id
                );
            }
            let secret_access_key = args.r2_secret_access_key.unwrap_or_default();
            if access_key_id.is_empty() || secret_access_key.is_empty() {
                bail!(
                    "an R2 token needs --r2-access-key-id and its secret \
                     (--r2-secret-access-key or {})",
                    crate::env::R2_SECRET_ACCESS_KEY
                );
            }
            let pair = KeyPair {
                access_key_id,
                secret_access_key,
            };
            ReadAccess::SealedKeys {
                sealed: sealed::seal(&ring, &integration.id, &pair).await?,
            }
        }
        (Provider::S3, _, _) => {
            bail!("an S3 integration reads its bucket through a role: --role-arn")
        }
        (Provider::R2, _, _) => {
            bail!("an R2 integration reads its bucket with an R2 API token: --r2-access-key-id")
        }
    };
    integration.read_access = Some(access);
    if integration.provider == Provider::S3 {
        // The role's trust policy is (re)written from what this prints: the external id is
        // issued under the current key version.
        integration.external_id_key_version = ring.current_version();
    }
    integration.updated_at = Utc::now();
    store.put(&integration).await?;
    let external_id = ring.external_id(&integration).await?;
    Ok(ReadAccessSet {
        setup: setup::read_access(&integration, &external_id),
        external_id: (integration.provider == Provider::S3).then_some(external_id),
        read_access: integration.read_access.as_ref().map(ReadAccess::describe),
        id: integration.id,
    })
}

/// `integrations test`: with `--receiver-url` the test event; without, the read access.
pub(crate) async fn test(wired: &Wired, printer: Printer, args: TestArgs) -> CliResult {
    if let Some(url) = &args.receiver_url {
        #[cfg(feature = "operator")]
        return printer.emit(&super::connection::test_event(wired, &args, url).await?);
        #[cfg(not(feature = "operator"))]
        return Err(super::common::not_in_this_build(&format!(
            "test --receiver-url {url}"
        )));
    }
    let integration = load(wired.backends.store.as_ref(), &args.id).await?;
    let ring = keyring(wired).await?;
    if let Some(ReadAccess::AssumeRoleInEachAccount { .. }) = &integration.read_access {
        let checks = test_lookups(wired, &integration, &ring, &args).await?;
        return printer.emit(&checks);
    }
    if args.account.is_some() || args.bucket.is_some() {
        bail!(
            "integration {} reads one bucket: --bucket and --account go with --receiver-url \
             (or with a read role in each account)",
            args.id
        );
    }
    let result = match ReadCredentials::resolve(&integration, &ring).await {
        Ok(credentials) => wired.buckets.check(&integration, &credentials).await,
        Err(error) => Err(error),
    };
    printer.emit(&AccessCheck {
        integration,
        result,
    })
}

/// The read role of an integration covering many buckets: assumed in each account, and asked
/// for a test key when a bucket is given.
async fn test_lookups(
    wired: &Wired,
    integration: &Integration,
    ring: &Keyring,
    args: &TestArgs,
) -> CliResult<LookupChecks> {
    let accounts: Vec<&str> = match &args.account {
        Some(account) => vec![account.as_str()],
        None => integration
            .scope
            .iter()
            .flat_map(|scope| scope.accounts.iter().map(String::as_str))
            .collect(),
    };
    if accounts.is_empty() {
        bail!(
            "integration {} lists no account to check the read role in: name one with --account",
            integration.id
        );
    }
    let external_id = ring.external_id(integration).await?;
    let region = integration.region.as_deref();
    let mut checks = Vec::new();
    for account in accounts {
        let role_arn = integration
            .read_access
            .as_ref()
            .and_then(|access| access.role_arn_for(Some(account), region))
            .with_context(|| format!("{account:?} is not an AWS account id (12 digits)"))?;
        let result = wired
            .lookups
            .check(&role_arn, &external_id, region, args.bucket.as_deref())
            .await;
        checks.push(AccountCheck {
            account: account.to_owned(),
            role_arn,
            result,
        });
    }
    Ok(LookupChecks {
        id: integration.id.clone(),
        bucket: args.bucket.clone(),
        accounts: checks,
    })
}

/// After `set-source`: what was set, and the customer's side of it.
#[derive(Serialize)]
pub(crate) struct ReadAccessSet {
    id: String,
    read_access: Option<String>,
    external_id: Option<String>,
    setup: String,
}

impl Report for ReadAccessSet {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        let access = self.read_access.as_deref().unwrap_or("none");
        writeln!(
            out,
            "Set the read access of integration {}: {access}.\n",
            self.id
        )?;
        write!(out, "{}", self.setup)?;
        writeln!(
            out,
            "\nCheck it with: bucket-relay integrations test {}",
            self.id
        )
    }
}

/// `integrations test` of one bucket's read access: reachable and listable, or the named
/// failure.
struct AccessCheck {
    integration: Integration,
    result: Result<(), AccessError>,
}

impl Serialize for AccessCheck {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Doc<'a> {
            id: &'a str,
            #[serde(flatten)]
            checked: Checked,
            #[serde(skip_serializing_if = "Option::is_none")]
            hint: Option<&'static str>,
        }
        Doc {
            id: &self.integration.id,
            checked: Checked::of(&self.result, AccessError::name, ToString::to_string),
            hint: self.result.as_ref().err().map(AccessError::hint),
        }
        .serialize(serializer)
    }
}

impl Report for AccessCheck {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        if self.result.is_err() {
            return Ok(()); // the error says it
        }
        let i = &self.integration;
        let under = i
            .prefix
            .as_deref()
            .map(|p| format!(" under {p}"))
            .unwrap_or_default();
        writeln!(
            out,
            "OK: {} bucket {} is reachable and may be listed{}.",
            i.provider,
            Safe(&i.bucket),
            Safe(&under)
        )
    }

    fn failure(&self) -> Option<String> {
        let error = self.result.as_ref().err()?;
        let id = &self.integration.id;
        Some(format!("integration {id} cannot list its bucket: {error}"))
    }
}

/// `integrations test` of a read role per account.
struct LookupChecks {
    id: String,
    bucket: Option<String>,
    accounts: Vec<AccountCheck>,
}

/// The read role in one account.
struct AccountCheck {
    account: String,
    role_arn: String,
    result: Result<(), LookupError>,
}

impl Serialize for AccountCheck {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Doc<'a> {
            account: &'a str,
            role_arn: &'a str,
            #[serde(flatten)]
            checked: Checked,
        }
        Doc {
            account: &self.account,
            role_arn: &self.role_arn,
            checked: Checked::of(&self.result, LookupError::name, |e| e.detail().to_owned()),
        }
        .serialize(serializer)
    }
}

impl LookupChecks {
    fn failed(&self) -> usize {
        self.accounts.iter().filter(|c| c.result.is_err()).count()
    }
}

impl Serialize for LookupChecks {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Doc<'a> {
            id: &'a str,
            ok: bool,
            bucket: Option<&'a str>,
            accounts: &'a [AccountCheck],
        }
        Doc {
            id: &self.id,
            ok: self.failed() == 0,
            bucket: self.bucket.as_deref(),
            accounts: &self.accounts,
        }
        .serialize(serializer)
    }
}

impl Report for LookupChecks {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        let what = self.bucket.as_deref().map_or_else(
            || "may be assumed".to_owned(),
            |bucket| format!("may look objects up in {bucket}"),
        );
        for check in &self.accounts {
            match &check.result {
                Ok(()) => writeln!(out, "OK: {} {what}.", check.role_arn)?,
                Err(error) => writeln!(
                    out,
                    "FAILED: {} (account {}): {}: {}",
                    check.role_arn,
                    check.account,
                    error.name(),
                    Safe(error.detail())
                )?,
            }
        }
        Ok(())
    }

    fn failure(&self) -> Option<String> {
        let failed = self.failed();
        (failed > 0).then(|| {
            format!(
                "integration {}: the read role failed in {failed} of {} accounts",
                self.id,
                self.accounts.len()
            )
        })
    }
}

//! One customer bucket's configuration: the row that every event is checked against.
//!
//! Nothing secret lives here in the clear: the event source secret is derived from the master
//! key and the `generation` (see [`crate::secret`]), an S3 read role is trusted with an external
//! id derived the same way, and an R2 token's credentials are stored sealed (an AEAD keyed from
//! the master key), so the table can be read, backed up and logged freely.

pub use crate::admission::Overwrites;
use crate::admission::{check_jobs_per_minute, LimitError};
use crate::names;
pub use crate::wire::CloudflarePlan;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// 200 MiB: objects above this are skipped as `too_large` unless the integration says otherwise.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 200 * 1024 * 1024;

/// Integration ids start with this, followed by random lowercase alphanumerics.
pub const ID_PREFIX: &str = "int_";

/// How long the ledger remembers a job, unless the integration says otherwise: past a year, so
/// a yearly reconcile or a backfill of last year's objects makes no second job.
pub const DEFAULT_HORIZON_DAYS: u32 = 400;
/// The shortest horizon: longer than any sender keeps redelivering an event (a Cloudflare queue
/// keeps a message 14 days at most, EventBridge retries for 24 hours), so a redelivery is never
/// a second job.
pub const MIN_HORIZON_DAYS: u32 = 15;
/// The longest horizon: ten years.
pub const MAX_HORIZON_DAYS: u32 = 3650;

/// The shortest interval of a safety-net listing: five minutes (a listing costs a request per
/// 1,000 objects, whatever changed).
pub const MIN_SAFETY_NET_SECS: u64 = 5 * 60;
/// The longest interval of a safety-net listing: a week.
pub const MAX_SAFETY_NET_SECS: u64 = 7 * 24 * 60 * 60;

fn default_horizon_days() -> u32 {
    DEFAULT_HORIZON_DAYS
}

/// The master key's first version: what every value derived before versions existed used.
pub const FIRST_KEY_VERSION: u32 = 1;

fn first_key_version() -> u32 {
    FIRST_KEY_VERSION
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if takes a reference
fn is_first_key_version(version: &u32) -> bool {
    *version == FIRST_KEY_VERSION
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    R2,
    S3,
}

/// `event`: events become jobs. `poll`: a poller lists the bucket, so events are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Event,
    Poll,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Paused,
}

macro_rules! text_enum {
    ($ty:ty { $($variant:ident = $text:literal),* }) => {
        impl $ty {
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text,)* }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($text => Ok(Self::$variant),)*
                    other => Err(format!(
                        "unknown value {other:?} (expected one of: {})",
                        [$($text),*].join(", ")
                    )),
                }
            }
        }
    };
}

text_enum!(Provider { R2 = "r2", S3 = "s3" });
text_enum!(Mode { Event = "event", Poll = "poll" });
text_enum!(Status { Active = "active", Paused = "paused" });

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integration {
    pub id: String,
    pub provider: Provider,
    pub bucket: String,
    /// R2 account id or AWS account id; checked against the event when set.
    pub account: Option<String>,
    /// AWS region of an S3 bucket; informational for R2.
    pub region: Option<String>,
    pub mode: Mode,
    pub status: Status,
    /// Only keys starting with this become jobs (empty or absent: every key).
    pub prefix: Option<String>,
    /// Allow-list of key suffixes such as `.pdf` (empty: every suffix).
    #[serde(default)]
    pub suffixes: Vec<String>,
    pub max_object_bytes: u64,
    /// Where the pipeline writes results back into the bucket: never turned into jobs.
    pub output_prefix: Option<String>,
    /// Secret generation: bumped by rotation.
    pub generation: u32,
    /// The master key version the current generation's secret is derived from (stored only
    /// when it is not the first).
    #[serde(
        default = "first_key_version",
        skip_serializing_if = "is_first_key_version"
    )]
    pub key_version: u32,
    /// The master key version the external id (read roles' trust policies) is derived from:
    /// it stays on the version it was issued with until `set-source` issues it again.
    #[serde(
        default = "first_key_version",
        skip_serializing_if = "is_first_key_version"
    )]
    pub external_id_key_version: u32,
    /// Earlier generations whose secrets still verify until their grace ends, newest first.
    #[serde(default)]
    pub previous_generations: Vec<GraceGeneration>,
    /// How the receiver may list the bucket (poll mode and backfill); absent until set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_access: Option<ReadAccess>,
    /// An S3 integration covering many buckets (a name pattern, several accounts, an
    /// organization); absent: the integration is `bucket` (in `account`, when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// How many days the ledger remembers each job made for this integration: a listing
    /// (backfill, reconcile, a poll tick) within the horizon makes no second job. Integrations
    /// stored before there was a horizon get the default.
    #[serde(default = "default_horizon_days")]
    pub horizon_days: u32,
    /// Event mode: the bucket is also listed this often (seconds), and what no event brought
    /// becomes a job (`missed_by_events`). Absent: events only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_net_secs: Option<u64>,
    /// R2: the customer's Cloudflare plan, which bounds the queues' retention and so the
    /// worker's retries; absent: Paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudflare_plan: Option<CloudflarePlan>,
    /// Per key prefix, what the pipeline needs and where results go ([`crate::route`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<crate::route::Route>,
    /// The parameters of an object no route takes (its output prefix is `output_prefix`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub default_params: std::collections::BTreeMap<String, String>,
    /// The most new jobs a minute ([`crate::admission`]); absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_jobs_per_minute: Option<u32>,
    /// Whether a key's later versions become jobs too.
    #[serde(default, skip_serializing_if = "Overwrites::is_default")]
    pub overwrites: Overwrites,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The buckets and accounts an S3 integration takes events from, beyond one bucket: fed by an
/// account's or an organization's EventBridge events (S3 "Object Created", or CloudTrail data
/// events) through one central bus. Event mode only: a poller lists one bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Bucket name patterns: `*` matches any run of characters, anything else itself. An
    /// event's bucket must match one.
    pub buckets: Vec<String>,
    /// Bucket name patterns left out even when `buckets` matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_buckets: Vec<String>,
    /// The accounts taken; empty: every account whose events reach the integration (an
    /// organization's central bus admits only the organization's accounts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    /// Accounts left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_accounts: Vec<String>,
    /// The AWS Organization (`o-…`) whose central bus feeds the integration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
}

impl Scope {
    /// Whether an event from `bucket` is the integration's.
    pub fn admits_bucket(&self, bucket: &str) -> bool {
        self.buckets.iter().any(|p| glob_matches(p, bucket))
            && !self.exclude_buckets.iter().any(|p| glob_matches(p, bucket))
    }

    /// Whether an event from `account` is the integration's. An event that names no account
    /// passes only a scope that lists none.
    pub fn admits_account(&self, account: Option<&str>) -> bool {
        match account {
            Some(account) => {
                (self.accounts.is_empty() || self.accounts.iter().any(|a| a == account))
                    && !self.exclude_accounts.iter().any(|a| a == account)
            }
            None => self.accounts.is_empty() && self.exclude_accounts.is_empty(),
        }
    }

    /// One line for `show` and `list`.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("buckets {}", self.buckets.join(", "))];
        if !self.exclude_buckets.is_empty() {
            parts.push(format!("except {}", self.exclude_buckets.join(", ")));
        }
        if let Some(organization) = &self.organization {
            parts.push(format!("organization {organization}"));
        }
        match self.accounts.as_slice() {
            [] => parts.push("any account".to_owned()),
            accounts => parts.push(format!("accounts {}", accounts.join(", "))),
        }
        if !self.exclude_accounts.is_empty() {
            parts.push(format!("except {}", self.exclude_accounts.join(", ")));
        }
        parts.join("; ")
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (none included)
/// and every other character itself. Bucket names have no `*` of their own.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`: the whole text was the prefix
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Read access to the customer's bucket: for listing it (poll mode, backfill) and for looking
/// an object up (`HeadObject`, to name a CloudTrail event's object version).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReadAccess {
    /// S3: a role in the customer's account that trusts ours, assumed with the integration's
    /// external id ([`crate::secret::external_id`]).
    AssumeRole { role_arn: String },
    /// S3, an integration with a scope: a role of this name in every account the scope covers
    /// (the org-source module's StackSet makes it), assumed in the account each event names.
    AssumeRoleInEachAccount { role_name: String },
    /// R2: an R2 API token's S3 credentials (access key id and secret), sealed: only the master
    /// key opens them. The endpoint comes from the integration's account id.
    SealedKeys { sealed: String },
}

impl ReadAccess {
    /// What `show` and `list` print: the role, or that a sealed token is set (never the token).
    pub fn describe(&self) -> String {
        match self {
            ReadAccess::AssumeRole { role_arn } => format!("assume role {role_arn}"),
            ReadAccess::AssumeRoleInEachAccount { role_name } => {
                format!("assume role {role_name} in each account")
            }
            ReadAccess::SealedKeys { .. } => "R2 API token (sealed)".to_owned(),
        }
    }

    /// The role to assume to read an object of `account` in `region`: the one role, or the
    /// named role in that account (in the region's partition). `None` for a token, or for a
    /// role per account when the event names no account.
    pub fn role_arn_for(&self, account: Option<&str>, region: Option<&str>) -> Option<String> {
        match self {
            ReadAccess::AssumeRole { role_arn } => Some(role_arn.clone()),
            ReadAccess::AssumeRoleInEachAccount { role_name } => {
                let account =
                    account.filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))?;
                let partition = partition(region.unwrap_or_default());
                Some(format!("arn:{partition}:iam::{account}:role/{role_name}"))
            }
            ReadAccess::SealedKeys { .. } => None,
        }
    }
}

/// The AWS partition a region belongs to: its ARNs start `arn:<partition>:`.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

pub use crate::names::is_role_name;

/// A replaced secret generation that keeps working until `valid_until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraceGeneration {
    pub generation: u32,
    pub valid_until: DateTime<Utc>,
    /// The master key version its secret is derived from.
    #[serde(
        default = "first_key_version",
        skip_serializing_if = "is_first_key_version"
    )]
    pub key_version: u32,
}

/// Why an integration cannot be rotated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerationsExhausted;

/// What an operator gives to create an integration; [`NewIntegration::build`] checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewIntegration {
    pub provider: Provider,
    pub bucket: String,
    pub account: Option<String>,
    pub region: Option<String>,
    pub prefix: Option<String>,
    pub suffixes: Vec<String>,
    pub max_object_bytes: u64,
    pub output_prefix: Option<String>,
    pub mode: Mode,
    /// Many buckets (S3, event mode); `bucket` is then its first pattern.
    pub scope: Option<Scope>,
    /// R2: the customer's Cloudflare plan (absent: Paid).
    pub cloudflare_plan: Option<CloudflarePlan>,
    /// The most new jobs a minute; `None`: no limit.
    pub max_jobs_per_minute: Option<u32>,
    pub overwrites: Overwrites,
}

/// A field a new integration cannot have, named as the operator's flag is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldError {
    EmptyBucket,
    EmptySuffix,
    ZeroMaxObjectBytes,
    /// A scope (pattern, accounts, organization) on an R2 integration.
    ScopeNotS3,
    /// A scope in poll mode: a poller lists one bucket.
    ScopeInPollMode,
    /// An organization id that is not `o-` and 10 to 32 lowercase letters or digits.
    BadOrganization,
    /// An account id that is not the provider's form (12 digits on AWS, 32 hex on R2).
    BadAccount(Provider),
    /// A region that is not an AWS Region code.
    BadRegion,
    /// A bucket name (or S3 pattern) that breaks the provider's naming rules.
    BadBucket(Provider),
    /// A Cloudflare plan on an S3 integration.
    PlanNotR2,
    /// A limit out of its range.
    Limit(LimitError),
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldError::Limit(limit) => return limit.fmt(f),
            FieldError::EmptyBucket => "--bucket must not be empty",
            FieldError::EmptySuffix => "--suffix must not be empty",
            FieldError::ZeroMaxObjectBytes => "--max-object-bytes must be at least 1",
            FieldError::ScopeNotS3 => {
                "a bucket pattern, several --account, --exclude-* and --organization are for S3 \
                 integrations (an R2 worker consumes one bucket's notifications)"
            }
            FieldError::ScopeInPollMode => {
                "poll mode lists one bucket: a bucket pattern, several --account, --exclude-* and \
                 --organization need --mode event"
            }
            FieldError::BadOrganization => {
                "--organization is an AWS Organizations id: o- and 10 to 32 lowercase letters or \
                 digits"
            }
            FieldError::BadAccount(Provider::S3) => "--account is an AWS account id: 12 digits",
            FieldError::BadAccount(Provider::R2) => {
                "--account is a Cloudflare account id: 32 lowercase hexadecimal digits"
            }
            FieldError::BadRegion => "--region is an AWS Region code, such as eu-west-1",
            FieldError::PlanNotR2 => {
                "--cloudflare-plan is for R2 integrations (its queues' retention bounds the \
                 worker's retries)"
            }
            FieldError::BadBucket(Provider::S3) => {
                "--bucket and --exclude-bucket follow S3's bucket naming rules: 3 to 63 lowercase \
                 letters, digits, dots and hyphens, beginning and ending with a letter or digit \
                 (`*` in a pattern stands for any run of them)"
            }
            FieldError::BadBucket(Provider::R2) => {
                "--bucket follows R2's bucket naming rules: 3 to 63 lowercase letters, digits and \
                 hyphens, beginning and ending with a letter or digit"
            }
        })
    }
}

impl std::error::Error for FieldError {}

impl NewIntegration {
    /// An integration of `provider` for `bucket` with every default: no account, region or
    /// filters, objects up to [`DEFAULT_MAX_OBJECT_BYTES`], event mode.
    pub fn new(provider: Provider, bucket: impl Into<String>) -> Self {
        NewIntegration {
            provider,
            bucket: bucket.into(),
            account: None,
            region: None,
            prefix: None,
            suffixes: vec![],
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            output_prefix: None,
            mode: Mode::Event,
            scope: None,
            cloudflare_plan: None,
            max_jobs_per_minute: None,
            overwrites: Overwrites::NewJob,
        }
    }

    /// The integration, active at generation 1, with id [`ID_PREFIX`] + `random` (lowercased).
    /// Empty optional texts count as absent.
    pub fn build(self, random: &str, now: DateTime<Utc>) -> Result<Integration, FieldError> {
        if self.bucket.trim().is_empty() {
            return Err(FieldError::EmptyBucket);
        }
        if self.suffixes.iter().any(String::is_empty) {
            return Err(FieldError::EmptySuffix);
        }
        if self.max_object_bytes == 0 {
            return Err(FieldError::ZeroMaxObjectBytes);
        }
        if self.cloudflare_plan.is_some() && self.provider != Provider::R2 {
            return Err(FieldError::PlanNotR2);
        }
        if let Some(limit) = self.max_jobs_per_minute {
            check_jobs_per_minute(limit).map_err(FieldError::Limit)?;
        }
        if let Some(scope) = &self.scope {
            check_scope(scope, self.provider, self.mode)?;
        } else if !bucket_name_follows_rules(self.provider, &self.bucket) {
            return Err(FieldError::BadBucket(self.provider));
        }
        let given = |value: Option<String>| value.filter(|v| !v.is_empty());
        if let Some(account) = given(self.account.clone()) {
            if !account_follows_rules(self.provider, &account) {
                return Err(FieldError::BadAccount(self.provider));
            }
        }
        if given(self.region.clone()).is_some_and(|region| !names::is_aws_region(&region)) {
            return Err(FieldError::BadRegion);
        }
        Ok(Integration {
            id: format!("{ID_PREFIX}{}", random.to_lowercase()),
            provider: self.provider,
            bucket: self.bucket,
            account: given(self.account),
            region: given(self.region),
            mode: self.mode,
            status: Status::Active,
            prefix: given(self.prefix),
            suffixes: self.suffixes,
            max_object_bytes: self.max_object_bytes,
            output_prefix: given(self.output_prefix),
            generation: 1,
            key_version: FIRST_KEY_VERSION,
            external_id_key_version: FIRST_KEY_VERSION,
            previous_generations: vec![],
            read_access: None,
            scope: self.scope,
            horizon_days: DEFAULT_HORIZON_DAYS,
            safety_net_secs: None,
            cloudflare_plan: self.cloudflare_plan,
            routes: Vec::new(),
            default_params: std::collections::BTreeMap::new(),
            max_jobs_per_minute: self.max_jobs_per_minute,
            overwrites: self.overwrites,
            created_at: now,
            updated_at: now,
        })
    }
}

/// The rules of a scope: S3, event mode, no empty pattern, a well-formed organization id.
pub fn check_scope(scope: &Scope, provider: Provider, mode: Mode) -> Result<(), FieldError> {
    if provider != Provider::S3 {
        return Err(FieldError::ScopeNotS3);
    }
    if mode != Mode::Event {
        return Err(FieldError::ScopeInPollMode);
    }
    let mut patterns = scope.buckets.iter().chain(&scope.exclude_buckets);
    if scope.buckets.is_empty() || patterns.clone().any(|p| p.trim().is_empty()) {
        return Err(FieldError::EmptyBucket);
    }
    if let Some(organization) = &scope.organization {
        if !names::is_organization_id(organization) {
            return Err(FieldError::BadOrganization);
        }
    }
    if !patterns.all(|p| names::is_s3_bucket_pattern(p)) {
        return Err(FieldError::BadBucket(Provider::S3));
    }
    let mut accounts = scope.accounts.iter().chain(&scope.exclude_accounts);
    if !accounts.all(|a| names::is_aws_account_id(a)) {
        return Err(FieldError::BadAccount(Provider::S3));
    }
    Ok(())
}

/// Whether `bucket` follows the provider's bucket naming rules.
pub fn bucket_name_follows_rules(provider: Provider, bucket: &str) -> bool {
    match provider {
        Provider::S3 => names::is_s3_bucket_name(bucket),
        Provider::R2 => names::is_r2_bucket_name(bucket),
    }
}

/// Whether `account` is the provider's form of account id.
pub fn account_follows_rules(provider: Provider, account: &str) -> bool {
    match provider {
        Provider::S3 => names::is_aws_account_id(account),
        Provider::R2 => names::is_r2_account_id(account),
    }
}

/// A horizon or safety-net interval out of its bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleError {
    /// The horizon (days) is outside [`MIN_HORIZON_DAYS`]..=[`MAX_HORIZON_DAYS`].
    HorizonOutOfRange,
    /// The safety-net interval is outside [`MIN_SAFETY_NET_SECS`]..=[`MAX_SAFETY_NET_SECS`].
    SafetyNetOutOfRange,
    /// A safety net for an integration in poll mode, which is listed already.
    SafetyNetInPollMode,
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::HorizonOutOfRange => write!(
                f,
                "the horizon is {MIN_HORIZON_DAYS} to {MAX_HORIZON_DAYS} days: longer than any \
                 sender redelivers an event, at most ten years"
            ),
            ScheduleError::SafetyNetOutOfRange => write!(
                f,
                "--safety-net is {} minutes to {} days",
                MIN_SAFETY_NET_SECS / 60,
                MAX_SAFETY_NET_SECS / 86_400
            ),
            ScheduleError::SafetyNetInPollMode => f.write_str(
                "--safety-net is for event mode: a poll-mode integration is listed on every tick",
            ),
        }
    }
}

impl std::error::Error for ScheduleError {}

impl Integration {
    /// The customer's Cloudflare plan (R2; Paid unless said otherwise).
    pub fn plan(&self) -> CloudflarePlan {
        self.cloudflare_plan.unwrap_or(CloudflarePlan::Paid)
    }

    /// How long the ledger remembers a job of this integration.
    pub fn horizon(&self) -> chrono::Duration {
        chrono::Duration::days(i64::from(self.horizon_days))
    }

    /// Sets the admission limits: `jobs_per_minute` (`Some(None)` removes the limit) and the
    /// largest object; each `None` leaves its limit as it is.
    pub fn set_limits(
        &mut self,
        jobs_per_minute: Option<Option<u32>>,
        max_object_bytes: Option<u64>,
    ) -> Result<(), LimitError> {
        if max_object_bytes == Some(0) {
            return Err(LimitError::ZeroMaxObjectBytes);
        }
        if let Some(Some(limit)) = jobs_per_minute {
            check_jobs_per_minute(limit)?;
        }
        if let Some(limit) = jobs_per_minute {
            self.max_jobs_per_minute = limit;
        }
        if let Some(bytes) = max_object_bytes {
            self.max_object_bytes = bytes;
        }
        Ok(())
    }

    /// Sets the ledger horizon, in days.
    pub fn set_horizon(&mut self, days: u32) -> Result<(), ScheduleError> {
        if !(MIN_HORIZON_DAYS..=MAX_HORIZON_DAYS).contains(&days) {
            return Err(ScheduleError::HorizonOutOfRange);
        }
        self.horizon_days = days;
        Ok(())
    }

    /// Sets the mode, and with event mode the safety net's interval (`None`: events only).
    pub fn set_mode(
        &mut self,
        mode: Mode,
        safety_net_secs: Option<u64>,
    ) -> Result<(), ScheduleError> {
        if let Some(secs) = safety_net_secs {
            if mode != Mode::Event {
                return Err(ScheduleError::SafetyNetInPollMode);
            }
            if !(MIN_SAFETY_NET_SECS..=MAX_SAFETY_NET_SECS).contains(&secs) {
                return Err(ScheduleError::SafetyNetOutOfRange);
            }
        }
        self.mode = mode;
        self.safety_net_secs = safety_net_secs;
        Ok(())
    }

    /// The safety net's interval, when the integration has one (event mode only).
    pub fn safety_net(&self) -> Option<chrono::Duration> {
        let secs = self.safety_net_secs.filter(|_| self.mode == Mode::Event)?;
        Some(chrono::Duration::seconds(i64::try_from(secs).ok()?))
    }

    /// The secret generations a request may be signed with at `now`: current first.
    pub fn valid_generations(&self, now: DateTime<Utc>) -> impl Iterator<Item = u32> + '_ {
        self.valid_secrets(now).map(|(generation, _)| generation)
    }

    /// Each secret that verifies at `now`: its generation and the master key version it is
    /// derived from, the current one first.
    pub fn valid_secrets(&self, now: DateTime<Utc>) -> impl Iterator<Item = (u32, u32)> + '_ {
        let previous = self
            .previous_generations
            .iter()
            .filter(move |grace| now < grace.valid_until)
            .map(|grace| (grace.generation, grace.key_version));
        std::iter::once((self.generation, self.key_version)).chain(previous)
    }

    /// Issues a new secret generation at `now`. The current one keeps working until
    /// `grace_until`, and every earlier one keeps the grace it was promised; `None` revokes all
    /// of them at once. Generations whose grace has ended are dropped.
    ///
    /// The new generation's secret is derived from master key version `key_version` (the
    /// current one); a replaced secret keeps the version it was derived from.
    pub fn rotate(
        &mut self,
        now: DateTime<Utc>,
        grace_until: Option<DateTime<Utc>>,
        key_version: u32,
    ) -> Result<(), GenerationsExhausted> {
        let next = self.generation.checked_add(1).ok_or(GenerationsExhausted)?;
        match grace_until {
            Some(valid_until) => {
                self.previous_generations
                    .retain(|grace| now < grace.valid_until);
                self.previous_generations.insert(
                    0,
                    GraceGeneration {
                        generation: self.generation,
                        valid_until,
                        key_version: self.key_version,
                    },
                );
            }
            None => self.previous_generations.clear(),
        }
        self.generation = next;
        self.key_version = key_version;
        self.updated_at = now;
        Ok(())
    }

    /// The route `key` takes: the longest matching route prefix, else the default
    /// (`default_params` and `output_prefix`).
    pub fn route_for(&self, key: &str) -> crate::route::Matched<'_> {
        crate::route::route_for(
            &self.routes,
            &self.default_params,
            self.output_prefix.as_deref(),
            key,
        )
    }

    /// Whether `key` lies under one of the routes' output prefixes (loop protection).
    pub fn under_a_route_output(&self, key: &str) -> bool {
        crate::route::under_an_output(&self.routes, key)
    }

    /// Adds a route, or replaces the one with its prefix (see [`crate::route::put`]).
    pub fn put_route(
        &mut self,
        route: crate::route::Route,
    ) -> Result<bool, crate::route::RouteError> {
        crate::route::put(&mut self.routes, self.prefix.as_deref(), route)
    }

    /// Removes the route with `prefix`.
    pub fn remove_route(
        &mut self,
        prefix: &str,
    ) -> Result<crate::route::Route, crate::route::RouteError> {
        crate::route::remove(&mut self.routes, prefix)
    }

    /// The master key versions anything of this integration still depends on at `now`: its
    /// valid secrets, and its external id when a read role trusts it.
    pub fn key_versions(&self, now: DateTime<Utc>) -> impl Iterator<Item = u32> + '_ {
        let external = self
            .uses_external_id()
            .then_some(self.external_id_key_version);
        self.valid_secrets(now).map(|(_, v)| v).chain(external)
    }

    /// Whether a customer's read role trusts this integration's external id: an S3
    /// integration with a role to assume.
    pub fn uses_external_id(&self) -> bool {
        matches!(
            self.read_access,
            Some(ReadAccess::AssumeRole { .. } | ReadAccess::AssumeRoleInEachAccount { .. })
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample(provider: Provider) -> Integration {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        NewIntegration::new(provider, "uploads")
            .build("test", at)
            .unwrap()
    }

    fn valid(integration: &Integration, at: DateTime<Utc>) -> Vec<u32> {
        integration.valid_generations(at).collect()
    }

    #[test]
    fn a_glob_star_matches_any_run_and_everything_else_itself() {
        for (pattern, text, expected) in [
            ("logs-*", "logs-eu", true),
            ("logs-*", "logs-", true),
            ("logs-*", "xlogs-eu", false),
            ("*-prod", "invoices-prod", true),
            ("*-prod", "invoices-prod-old", false),
            ("a*b*c", "a-b-c", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "acb", false),
            ("*", "anything", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(glob_matches(pattern, text), expected, "{pattern} {text}");
        }
    }

    #[test]
    fn a_scope_takes_matching_buckets_of_its_accounts_minus_exclusions() {
        let scope = Scope {
            buckets: vec!["logs-*".into(), "invoices".into()],
            exclude_buckets: vec!["logs-tmp-*".into()],
            accounts: vec!["111122223333".into(), "444455556666".into()],
            exclude_accounts: vec!["444455556666".into()],
            organization: Some("o-abcdefghij".into()),
        };
        assert!(scope.admits_bucket("logs-eu") && scope.admits_bucket("invoices"));
        assert!(!scope.admits_bucket("logs-tmp-1") && !scope.admits_bucket("other"));
        assert!(scope.admits_account(Some("111122223333")));
        assert!(!scope.admits_account(Some("444455556666")), "excluded");
        assert!(!scope.admits_account(Some("777788889999")), "not listed");
        assert!(
            !scope.admits_account(None),
            "an event without an account cannot be checked"
        );
        let any = Scope {
            buckets: vec!["*".into()],
            ..Scope::default()
        };
        assert!(any.admits_account(Some("777788889999")) && any.admits_account(None));
    }

    #[test]
    fn a_scope_is_for_s3_in_event_mode_with_a_well_formed_organization() {
        let scoped = |provider, mode, organization: &str| NewIntegration {
            mode,
            scope: Some(Scope {
                buckets: vec!["logs-*".into()],
                organization: Some(organization.into()),
                ..Scope::default()
            }),
            ..NewIntegration::new(provider, "logs-*")
        };
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert!(scoped(Provider::S3, Mode::Event, "o-a1b2c3d4e5")
            .build("x", at)
            .is_ok());
        let error = |n: NewIntegration| n.build("x", at).unwrap_err();
        assert_eq!(
            error(scoped(Provider::R2, Mode::Event, "o-a1b2c3d4e5")),
            FieldError::ScopeNotS3
        );
        assert_eq!(
            error(scoped(Provider::S3, Mode::Poll, "o-a1b2c3d4e5")),
            FieldError::ScopeInPollMode
        );
        for bad in ["a1b2c3d4e5", "o-short", "o-UPPERCASE01"] {
            assert_eq!(
                error(scoped(Provider::S3, Mode::Event, bad)),
                FieldError::BadOrganization
            );
        }
        // Stored without a scope, an integration reads back without one: old rows stay valid.
        let single = sample(Provider::S3);
        let json = serde_json::to_value(&single).unwrap();
        assert!(json.get("scope").is_none());
        assert_eq!(serde_json::from_value::<Integration>(json).unwrap(), single);
    }

    #[test]
    fn a_rotated_generation_is_valid_only_within_its_grace() {
        let mut integration = sample(Provider::R2);
        let now = integration.created_at;
        assert_eq!(valid(&integration, now), [1]);
        let hours = chrono::Duration::hours;
        integration.rotate(now, Some(now + hours(24)), 1).unwrap();
        assert_eq!(valid(&integration, now), [2, 1]);
        assert_eq!(valid(&integration, now + hours(25)), [2]);
        assert_eq!(integration.updated_at, now);
    }

    #[test]
    fn a_second_rotation_keeps_the_grace_the_first_one_promised() {
        let mut integration = sample(Provider::R2);
        let t0 = integration.created_at;
        let hours = chrono::Duration::hours;
        integration.rotate(t0, Some(t0 + hours(24)), 1).unwrap();
        integration
            .rotate(t0 + hours(1), Some(t0 + hours(2)), 1)
            .unwrap();
        assert_eq!(valid(&integration, t0 + hours(1)), [3, 2, 1]);
        assert_eq!(
            valid(&integration, t0 + hours(3)),
            [3, 1],
            "1 keeps its 24 h"
        );
        // A rotation after a grace ended drops that generation for good.
        integration
            .rotate(t0 + hours(30), Some(t0 + hours(31)), 1)
            .unwrap();
        assert_eq!(valid(&integration, t0 + hours(30)), [4, 3]);
        // --now revokes every earlier generation at once.
        integration.rotate(t0 + hours(30), None, 1).unwrap();
        assert_eq!(valid(&integration, t0 + hours(30)), [5]);
        assert!(integration.previous_generations.is_empty());
    }

    #[test]
    fn a_rotated_secret_keeps_its_key_version_and_the_new_one_takes_the_current() {
        let mut integration = sample(Provider::S3);
        let t0 = integration.created_at;
        assert_eq!(integration.key_versions(t0).collect::<Vec<_>>(), [1]);
        integration
            .rotate(t0, Some(t0 + chrono::Duration::hours(24)), 2)
            .unwrap();
        let secrets: Vec<_> = integration.valid_secrets(t0).collect();
        assert_eq!(secrets, [(2, 2), (1, 1)]);
        assert_eq!(integration.key_versions(t0).collect::<Vec<_>>(), [2, 1]);
        let later = t0 + chrono::Duration::hours(25);
        assert_eq!(integration.key_versions(later).collect::<Vec<_>>(), [2]);
        // A role that trusts the external id depends on its version too.
        integration.read_access = Some(ReadAccess::AssumeRole {
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
        });
        assert_eq!(integration.key_versions(later).collect::<Vec<_>>(), [2, 1]);
        // Stored as before when everything is on the first version.
        let json = serde_json::to_value(sample(Provider::R2)).unwrap();
        assert!(json.get("key_version").is_none() && json.get("external_id_key_version").is_none());
        let back: Integration =
            serde_json::from_value(serde_json::to_value(&integration).unwrap()).unwrap();
        assert_eq!(back, integration);
    }

    #[test]
    fn the_last_generation_cannot_wrap_around() {
        let mut integration = sample(Provider::R2);
        integration.generation = u32::MAX;
        let now = integration.created_at;
        assert_eq!(integration.rotate(now, None, 1), Err(GenerationsExhausted));
        assert_eq!(integration.generation, u32::MAX);
    }

    fn new_r2(bucket: &str) -> NewIntegration {
        NewIntegration {
            account: Some(String::new()),
            prefix: Some("in/".into()),
            suffixes: vec![".pdf".into()],
            output_prefix: Some(String::new()),
            ..NewIntegration::new(Provider::R2, bucket)
        }
    }

    #[test]
    fn a_new_integration_starts_active_at_generation_1_with_empty_texts_absent() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let integration = new_r2("uploads").build("AbC123", now).unwrap();
        assert_eq!(integration.id, "int_abc123");
        assert_eq!(integration.status, Status::Active);
        assert_eq!((integration.generation, integration.created_at), (1, now));
        assert_eq!(
            integration.account, None,
            "an empty --account is no account"
        );
        assert_eq!(integration.output_prefix, None);
        assert_eq!(integration.prefix.as_deref(), Some("in/"));
    }

    #[test]
    fn a_new_integration_refuses_fields_that_would_match_nothing_or_everything_wrongly() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let build = |change: fn(&mut NewIntegration)| {
            let mut fields = new_r2("uploads");
            change(&mut fields);
            fields.build("x", now).map(|_| ())
        };
        assert_eq!(
            build(|f| f.bucket = " ".into()),
            Err(FieldError::EmptyBucket)
        );
        assert_eq!(
            build(|f| f.suffixes.push(String::new())),
            Err(FieldError::EmptySuffix)
        );
        assert_eq!(
            build(|f| f.max_object_bytes = 0),
            Err(FieldError::ZeroMaxObjectBytes)
        );
        assert_eq!(build(|_| ()), Ok(()));
        assert_eq!(
            FieldError::EmptySuffix.to_string(),
            "--suffix must not be empty"
        );
    }

    #[test]
    fn text_values_round_trip_and_unknown_ones_are_named() {
        assert_eq!("poll".parse::<Mode>(), Ok(Mode::Poll));
        assert_eq!(Provider::S3.to_string(), "s3");
        let err = "gcs".parse::<Provider>().unwrap_err();
        assert!(err.contains("r2, s3"), "{err}");
    }

    #[test]
    fn a_role_per_account_is_named_in_the_events_account_and_partition() {
        let each = ReadAccess::AssumeRoleInEachAccount {
            role_name: "bucket-relay-read".into(),
        };
        assert_eq!(
            each.role_arn_for(Some("111122223333"), Some("eu-west-1")),
            Some("arn:aws:iam::111122223333:role/bucket-relay-read".into())
        );
        assert_eq!(
            each.role_arn_for(Some("111122223333"), Some("cn-north-1")),
            Some("arn:aws-cn:iam::111122223333:role/bucket-relay-read".into())
        );
        assert_eq!(
            each.role_arn_for(Some("111122223333"), Some("us-gov-west-1")),
            Some("arn:aws-us-gov:iam::111122223333:role/bucket-relay-read".into())
        );
        // No account, or not an account id: no role to assume (and no ARN built from it).
        assert_eq!(each.role_arn_for(None, Some("eu-west-1")), None);
        assert_eq!(each.role_arn_for(Some("1111:role/x"), None), None);
        let one = ReadAccess::AssumeRole {
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
        };
        assert_eq!(
            one.role_arn_for(Some("999999999999"), None).as_deref(),
            Some("arn:aws:iam::123456789012:role/r")
        );
        let token = ReadAccess::SealedKeys { sealed: "x".into() };
        assert_eq!(token.role_arn_for(Some("111122223333"), None), None);
        assert_eq!(
            each.describe(),
            "assume role bucket-relay-read in each account"
        );
    }

    #[test]
    fn role_names_follow_iams_rule() {
        for good in ["bucket-relay-read", "a", "R+=,.@_-9", &"x".repeat(64)] {
            assert!(is_role_name(good), "{good}");
        }
        for bad in ["", "with space", "path/name", "ünï", &"x".repeat(65)] {
            assert!(!is_role_name(bad), "{bad}");
        }
    }
}

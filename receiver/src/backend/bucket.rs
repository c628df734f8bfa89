//! The customer's bucket, listed through the S3 API (`aws-sdk-s3`): S3 with an assumed role, R2
//! through its S3-compatible endpoint with a sealed token.
//!
//! - S3: `ListObjectVersions`, so a listed object carries the version id its event carries on a
//!   versioned bucket (and the same job id); only each key's latest version counts, and a key
//!   whose latest version is a delete marker is gone. The role is assumed with the integration's
//!   external id through STS, refreshed as the session nears its end.
//! - R2: `ListObjectsV2` at `https://<account id>.r2.cloudflarestorage.com`, region `auto` (R2
//!   has no versions: its events and listings both name an object by its ETag).
//!
//! A listing resumes after a key (`KeyMarker` / `StartAfter`): a backfill stores the last key
//! of each page it committed. Every failure is an [`AccessError`] with a stable name.

use super::aws::{AwsConfig, Purpose};
use super::error_chain;
use crate::env;
use crate::sealed::KeyPair;
use async_trait::async_trait;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::future;
use aws_sdk_s3::config::{Credentials, ProvideCredentials, Region, SharedCredentialsProvider};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use chrono::{DateTime, Utc};
use relay_protocol::event::listed::ListedObject;
use relay_protocol::{Integration, Provider};
use std::fmt;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// The session name our assumed role sessions carry in the customer's CloudTrail.
pub const SESSION_NAME: &str = "bucket-relay-lister";
/// R2's S3 API region.
pub const R2_REGION: &str = "auto";

/// Why the bucket could not be listed. `name()` is stable: logs, `integrations test` and the
/// runbook (docs/operators.md) use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// The integration has no read access set (`integrations set-source`).
    NoReadAccess,
    /// The read access does not fit the provider (a role on R2, a token on S3), or an R2
    /// integration has no account id to reach its endpoint by.
    Misconfigured(String),
    /// The sealed token does not open: the master key changed since it was set.
    SealedUnreadable,
    /// STS refused to let us assume the role (trust policy, external id, or no such role).
    AssumeRoleDenied(String),
    /// The credentials are not valid (`InvalidAccessKeyId`, `SignatureDoesNotMatch`, an
    /// expired or revoked token).
    InvalidCredentials(String),
    /// The bucket answered `AccessDenied` to a listing: the role or token may not list it
    /// (`s3:ListBucket` / `s3:ListBucketVersions`, or an R2 token scoped to other buckets).
    ListDenied(String),
    NoSuchBucket,
    /// The bucket lives in another region than the integration says.
    WrongRegion(String),
    /// No answer: DNS, connect, TLS or a timeout.
    Unreachable(String),
    /// Any other error the storage answered.
    ListFailed(String),
    /// The listing does not advance: the next page repeats a marker or a key, or goes back.
    ListingStuck(String),
    /// An answer that does not say it is complete, or says more follows without saying where
    /// (`IsTruncated` missing, a page cut short, truncated with no token or marker).
    ListingIncomplete(String),
}

impl AccessError {
    pub const fn name(&self) -> &'static str {
        match self {
            AccessError::NoReadAccess => "no_read_access",
            AccessError::Misconfigured(_) => "read_access_misconfigured",
            AccessError::SealedUnreadable => "sealed_token_unreadable",
            AccessError::AssumeRoleDenied(_) => "assume_role_denied",
            AccessError::InvalidCredentials(_) => "invalid_credentials",
            AccessError::ListDenied(_) => "list_denied",
            AccessError::NoSuchBucket => "no_such_bucket",
            AccessError::WrongRegion(_) => "wrong_region",
            AccessError::Unreachable(_) => "bucket_unreachable",
            AccessError::ListFailed(_) => "list_failed",
            AccessError::ListingStuck(_) => "listing_stuck",
            AccessError::ListingIncomplete(_) => "listing_incomplete",
        }
    }

    /// Every name, for docs and tests.
    pub const NAMES: [&'static str; 12] = [
        "no_read_access",
        "read_access_misconfigured",
        "sealed_token_unreadable",
        "assume_role_denied",
        "invalid_credentials",
        "list_denied",
        "no_such_bucket",
        "wrong_region",
        "bucket_unreachable",
        "list_failed",
        "listing_stuck",
        "listing_incomplete",
    ];

    /// What to do about it, for the operator.
    pub const fn hint(&self) -> &'static str {
        match self {
            AccessError::NoReadAccess => {
                "set it with `bucket-relay integrations set-source ID --role-arn …` (S3) or \
                 `--r2-access-key-id …` (R2)"
            }
            AccessError::Misconfigured(_) => "set the read access again with `set-source`",
            AccessError::SealedUnreadable => {
                "the master key changed since the token was set: set it again with `set-source`"
            }
            AccessError::AssumeRoleDenied(_) => {
                "the role must trust the receiver's account with the external id `show` prints \
                 (terraform/modules/s3-source, `read_role`)"
            }
            AccessError::InvalidCredentials(_) => {
                "the token or keys are wrong, expired or revoked: create a new R2 API token"
            }
            AccessError::ListDenied(_) => {
                "GetObject alone is not enough: grant s3:ListBucket and s3:ListBucketVersions on \
                 the bucket (S3), or an R2 token with Object Read on this bucket"
            }
            AccessError::NoSuchBucket => "check the integration's bucket name and account",
            AccessError::WrongRegion(_) => "set the integration's --region to the bucket's",
            AccessError::Unreachable(_) => "check the network path to the storage endpoint",
            AccessError::ListFailed(_) => "see the detail",
            AccessError::ListingStuck(_) | AccessError::ListingIncomplete(_) => {
                "the storage's answers are not a listing that ends: nothing after the last good \
                 page was taken, and the next run starts there again; report it to the storage's \
                 operator"
            }
        }
    }
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let detail = match self {
            AccessError::Misconfigured(d)
            | AccessError::AssumeRoleDenied(d)
            | AccessError::InvalidCredentials(d)
            | AccessError::ListDenied(d)
            | AccessError::WrongRegion(d)
            | AccessError::Unreachable(d)
            | AccessError::ListFailed(d)
            | AccessError::ListingStuck(d)
            | AccessError::ListingIncomplete(d) => d.as_str(),
            AccessError::NoReadAccess
            | AccessError::SealedUnreadable
            | AccessError::NoSuchBucket => "",
        };
        write!(f, "{}", self.name())?;
        if !detail.is_empty() {
            write!(f, ": {detail}")?;
        }
        write!(f, " ({})", self.hint())
    }
}

impl std::error::Error for AccessError {}

/// What reaches one integration's bucket.
#[derive(Debug)]
pub(crate) enum ReadCredentials {
    /// S3: the customer's role, assumed with the integration's external id, in the
    /// integration's region (if it names one).
    AssumeRole {
        role_arn: String,
        external_id: String,
        region: Option<String>,
    },
    /// R2: an R2 API token's keys, at the account's S3 API endpoint.
    R2Token { account: String, keys: KeyPair },
}

/// One page of a listing: each live object's latest version, in key order.
#[derive(Debug, Default)]
pub struct Page {
    pub objects: Vec<ListedObject>,
    /// The last key this page covered: a listing resumed after it misses nothing after it.
    pub last_key: Option<String>,
}

/// A listing in progress, page by page.
#[async_trait]
pub trait Listing: Send {
    /// The next page, or `None` when the listing is complete.
    async fn next_page(&mut self) -> Result<Option<Page>, AccessError>;
}

/// Where listings of integrations' buckets come from: the port the poller lists through.
#[async_trait]
pub(crate) trait BucketSource: Send + Sync {
    /// A listing of `integration`'s bucket under `prefix`, after `after` when resuming, with the
    /// integration's resolved read access.
    async fn open(
        &self,
        integration: &Integration,
        credentials: &ReadCredentials,
        prefix: Option<&str>,
        after: Option<String>,
    ) -> Result<Box<dyn Listing>, AccessError>;
}

/// The S3 API adapter. One per process: the receiver's own credentials (the role we assume
/// customers' roles with) come from the process's AWS configuration, read at the first listing.
pub struct Buckets {
    aws: Arc<AwsConfig>,
    base: OnceCell<aws_config::SdkConfig>,
}

impl Buckets {
    pub(crate) fn new(aws: Arc<AwsConfig>) -> Self {
        Buckets {
            aws,
            base: OnceCell::new(),
        }
    }

    async fn base(&self) -> &aws_config::SdkConfig {
        self.base
            .get_or_init(|| self.aws.for_purpose(Purpose::Listing))
            .await
    }

    /// Checks that the bucket can be listed: one page of at most one key.
    pub(crate) async fn check(
        &self,
        integration: &Integration,
        credentials: &ReadCredentials,
    ) -> Result<(), AccessError> {
        let prefix = integration.prefix.as_deref();
        let mut pages = self.pages(integration, credentials, prefix, None).await?;
        pages.fetch(1).await.map(drop)
    }

    async fn pages(
        &self,
        integration: &Integration,
        credentials: &ReadCredentials,
        prefix: Option<&str>,
        after: Option<String>,
    ) -> Result<Pages, AccessError> {
        let base = self.base().await;
        let mut config = aws_sdk_s3::config::Builder::from(base);
        match credentials {
            ReadCredentials::AssumeRole {
                role_arn,
                external_id,
                region,
            } => {
                let credentials = assume(base, role_arn, external_id, SESSION_NAME)
                    .await
                    .map_err(AccessError::AssumeRoleDenied)?;
                config = config
                    .credentials_provider(credentials)
                    // An emulator's endpoint (AWS_ENDPOINT_URL) answers path-style requests only.
                    .force_path_style(base.endpoint_url().is_some());
                if let Some(region) = region {
                    config = config.region(Region::new(region.clone()));
                }
            }
            ReadCredentials::R2Token { account, keys } => {
                let credentials = Credentials::new(
                    keys.access_key_id.clone(),
                    keys.secret_access_key.clone(),
                    None,
                    None,
                    "bucket-relay-r2-token",
                );
                config = config
                    .credentials_provider(credentials)
                    .endpoint_url(r2_endpoint(account))
                    .region(Region::new(R2_REGION))
                    .force_path_style(true);
            }
        }
        Ok(Pages {
            client: aws_sdk_s3::Client::from_conf(config.build()),
            bucket: integration.bucket.clone(),
            prefix: prefix.filter(|p| !p.is_empty()).map(str::to_owned),
            advance: Advance {
                // A resumed listing goes on after the key it resumes from, never before it.
                last_key: after.clone(),
                ..Advance::default()
            },
            position: Position::After(after),
            provider: integration.provider,
        })
    }
}

#[async_trait]
impl BucketSource for Buckets {
    async fn open(
        &self,
        integration: &Integration,
        credentials: &ReadCredentials,
        prefix: Option<&str>,
        after: Option<String>,
    ) -> Result<Box<dyn Listing>, AccessError> {
        let pages = self.pages(integration, credentials, prefix, after).await?;
        Ok(Box::new(pages))
    }
}

/// A customer's role, assumed with `external_id` under `session_name`, as an S3 client's
/// credentials. It is assumed once now, so a refusal is named as one (the error chain) rather than
/// buried in a later call's dispatch error; the client starts with this session, and the provider
/// renews it as it nears its end.
pub(super) async fn assume(
    base: &aws_config::SdkConfig,
    role_arn: &str,
    external_id: &str,
    session_name: &str,
) -> Result<SharedCredentialsProvider, String> {
    let provider = AssumeRoleProvider::builder(role_arn)
        .external_id(external_id)
        .session_name(session_name)
        .configure(base)
        .build()
        .await;
    let session = provider
        .provide_credentials()
        .await
        .map_err(|e| error_chain(&e))?;
    Ok(SharedCredentialsProvider::new(FirstThen::new(
        session, provider,
    )))
}

/// Credentials already fetched, handed out once, then the provider's: the session assumed to
/// check the role is the client's first, not thrown away for a second `AssumeRole`.
#[derive(Debug)]
struct FirstThen<P> {
    first: Mutex<Option<Credentials>>,
    then: P,
}

impl<P> FirstThen<P> {
    fn new(first: Credentials, then: P) -> Self {
        FirstThen {
            first: Mutex::new(Some(first)),
            then,
        }
    }
}

impl<P: ProvideCredentials> ProvideCredentials for FirstThen<P> {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let first = self
            .first
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match first {
            Some(credentials) => future::ProvideCredentials::ready(Ok(credentials)),
            None => self.then.provide_credentials(),
        }
    }
}

/// R2's S3 API endpoint for `account`, or `RELAY_R2_ENDPOINT_URL` when set (an S3-compatible
/// emulator in tests).
pub fn r2_endpoint(account: &str) -> String {
    std::env::var(env::R2_ENDPOINT_URL)
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| format!("https://{account}.r2.cloudflarestorage.com"))
}

enum Position {
    /// The first page, or the first page after this key (a resumed listing).
    After(Option<String>),
    /// Within a listing: the markers the last page handed over.
    Versions {
        key: Option<String>,
        version: Option<String>,
    },
    Token(String),
    Done,
}

struct Pages {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: Option<String>,
    position: Position,
    provider: Provider,
    advance: Advance,
}

/// Empty truncated pages accepted in a row before the listing counts as stuck.
const MAX_EMPTY_PAGES_IN_A_ROW: u32 = 100;

/// What a listing has handed over so far, to hold each next page to: a listing is untrusted
/// input, and one whose pages do not move forward would never end.
#[derive(Debug, Default)]
struct Advance {
    /// The last key listed: pages come in key order.
    last_key: Option<String>,
    /// The token or markers the last page handed over for the next.
    last_next: Option<String>,
    /// Truncated pages in a row that listed nothing.
    empty_in_a_row: u32,
}

impl Advance {
    /// Holds a page to the listing's order: its keys ascending and after every key before (or,
    /// for versions, the same key continued), and the token or markers it hands over new.
    fn page<'k>(
        &mut self,
        keys: impl IntoIterator<Item = &'k str>,
        versions: bool,
        next: Option<String>,
    ) -> Result<(), AccessError> {
        let mut listed_any = false;
        for key in keys {
            if let Some(last) = &self.last_key {
                let forward = if versions {
                    key >= last.as_str()
                } else {
                    key > last.as_str()
                };
                if !forward {
                    return Err(AccessError::ListingStuck(format!(
                        "key {key:?} came after {last:?}: the listing went back or repeated itself"
                    )));
                }
            }
            self.last_key = Some(key.to_owned());
            listed_any = true;
        }
        if let Some(next) = next {
            if self.last_next.as_deref() == Some(next.as_str()) {
                return Err(AccessError::ListingStuck(
                    "the next page's token or marker is the one just used".into(),
                ));
            }
            self.empty_in_a_row = if listed_any {
                0
            } else {
                self.empty_in_a_row + 1
            };
            if self.empty_in_a_row > MAX_EMPTY_PAGES_IN_A_ROW {
                return Err(AccessError::ListingStuck(format!(
                    "{} pages in a row listed nothing and said more follows",
                    self.empty_in_a_row
                )));
            }
            self.last_next = Some(next);
        }
        Ok(())
    }
}

#[async_trait]
impl Listing for Pages {
    async fn next_page(&mut self) -> Result<Option<Page>, AccessError> {
        if matches!(self.position, Position::Done) {
            return Ok(None);
        }
        self.fetch(1000).await.map(Some)
    }
}

impl Pages {
    async fn fetch(&mut self, max_keys: i32) -> Result<Page, AccessError> {
        match self.provider {
            Provider::S3 => self.versions(max_keys).await,
            Provider::R2 => self.objects(max_keys).await,
        }
    }

    async fn versions(&mut self, max_keys: i32) -> Result<Page, AccessError> {
        let mut request = self
            .client
            .list_object_versions()
            .bucket(&self.bucket)
            .set_prefix(self.prefix.clone())
            .max_keys(max_keys);
        request = match &self.position {
            Position::After(after) => request.set_key_marker(after.clone()),
            Position::Versions { key, version } => request
                .set_key_marker(key.clone())
                .set_version_id_marker(version.clone()),
            Position::Token(_) | Position::Done => request,
        };
        let out = request.send().await.map_err(named)?;
        let mut last_key = None;
        let mut objects = Vec::new();
        for version in out.versions() {
            last_key = version.key().map(str::to_owned);
            if version.is_latest() != Some(true) {
                continue;
            }
            let Some(key) = version.key() else { continue };
            objects.push(ListedObject {
                key: key.to_owned(),
                size: version.size().and_then(|s| u64::try_from(s).ok()),
                etag: version.e_tag().map(str::to_owned),
                version_id: version.version_id().map(str::to_owned),
                last_modified: time(version.last_modified()),
            });
        }
        if let Some(marker) = out.delete_markers().last().and_then(|m| m.key()) {
            if last_key.as_deref().is_none_or(|key| key < marker) {
                last_key = Some(marker.to_owned());
            }
        }
        let truncated = out.is_truncated().ok_or_else(|| {
            AccessError::ListingIncomplete(
                "the answer does not say whether the listing is complete (no IsTruncated)".into(),
            )
        })?;
        let next = match (truncated, out.next_key_marker()) {
            (false, _) => None,
            (true, Some(key)) => Some((key.to_owned(), out.next_version_id_marker())),
            (true, None) => {
                return Err(AccessError::ListingIncomplete(
                    "the answer says more follows but names no NextKeyMarker".into(),
                ))
            }
        };
        let keys = out
            .versions()
            .iter()
            .filter_map(|v| v.key())
            .chain(out.delete_markers().iter().filter_map(|m| m.key()));
        let mut keys: Vec<&str> = keys.collect();
        keys.sort_unstable();
        let marker = next
            .as_ref()
            .map(|(key, version)| format!("{key}\u{0}{}", version.unwrap_or_default()));
        self.advance.page(keys, true, marker)?;
        self.position = match next {
            Some((key, version)) => Position::Versions {
                key: Some(key),
                version: version.map(str::to_owned),
            },
            None => Position::Done,
        };
        Ok(Page { objects, last_key })
    }

    async fn objects(&mut self, max_keys: i32) -> Result<Page, AccessError> {
        let mut request = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_prefix(self.prefix.clone())
            .max_keys(max_keys);
        request = match &self.position {
            Position::After(after) => request.set_start_after(after.clone()),
            Position::Token(token) => request.continuation_token(token),
            Position::Versions { .. } | Position::Done => request,
        };
        let out = request.send().await.map_err(named)?;
        let objects: Vec<ListedObject> = out
            .contents()
            .iter()
            .filter_map(|object| {
                Some(ListedObject {
                    key: object.key()?.to_owned(),
                    size: object.size().and_then(|s| u64::try_from(s).ok()),
                    etag: object.e_tag().map(str::to_owned),
                    version_id: None,
                    last_modified: time(object.last_modified()),
                })
            })
            .collect();
        let truncated = out.is_truncated().ok_or_else(|| {
            AccessError::ListingIncomplete(
                "the answer does not say whether the listing is complete (no IsTruncated)".into(),
            )
        })?;
        if let Some(count) = out.key_count() {
            if usize::try_from(count).ok() != Some(out.contents().len()) {
                return Err(AccessError::ListingIncomplete(format!(
                    "the page holds {} of the {count} keys it announces (KeyCount): it was cut short",
                    out.contents().len()
                )));
            }
        }
        let next = match (truncated, out.next_continuation_token()) {
            (false, _) => None,
            (true, Some(token)) => Some(token.to_owned()),
            (true, None) => {
                return Err(AccessError::ListingIncomplete(
                    "the answer says more follows but names no NextContinuationToken".into(),
                ))
            }
        };
        let keys = objects.iter().map(|object| object.key.as_str());
        self.advance.page(keys, false, next.clone())?;
        let last_key = objects.last().map(|object| object.key.clone());
        self.position = next.map_or(Position::Done, Position::Token);
        Ok(Page { objects, last_key })
    }
}

fn time(time: Option<&aws_sdk_s3::primitives::DateTime>) -> Option<DateTime<Utc>> {
    time.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

/// An SDK error as a named [`AccessError`], by the service's error code.
fn named<E, R>(error: SdkError<E, R>) -> AccessError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    let detail = |code: &str, message: Option<&str>| match message {
        Some(message) => format!("{code}: {message}"),
        None => code.to_owned(),
    };
    match &error {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let code = err.code().unwrap_or("");
            let message = err.message();
            match code {
                "AccessDenied" | "AllAccessDisabled" => {
                    AccessError::ListDenied(detail(code, message))
                }
                "NoSuchBucket" => AccessError::NoSuchBucket,
                "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "InvalidToken"
                | "InvalidClientTokenId" => AccessError::InvalidCredentials(detail(code, message)),
                "PermanentRedirect"
                | "AuthorizationHeaderMalformed"
                | "IllegalLocationConstraintException" => {
                    AccessError::WrongRegion(detail(code, message))
                }
                "" => AccessError::ListFailed(error_chain(&error)),
                _ => AccessError::ListFailed(detail(code, message)),
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            AccessError::Unreachable(error_chain(&error))
        }
        _ => AccessError::ListFailed(error_chain(&error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_its_own_listed_name_and_a_hint() {
        let all = [
            AccessError::NoReadAccess,
            AccessError::Misconfigured(String::new()),
            AccessError::SealedUnreadable,
            AccessError::AssumeRoleDenied(String::new()),
            AccessError::InvalidCredentials(String::new()),
            AccessError::ListDenied(String::new()),
            AccessError::NoSuchBucket,
            AccessError::WrongRegion(String::new()),
            AccessError::Unreachable(String::new()),
            AccessError::ListFailed(String::new()),
            AccessError::ListingStuck(String::new()),
            AccessError::ListingIncomplete(String::new()),
        ];
        let names: Vec<&str> = all.iter().map(AccessError::name).collect();
        assert_eq!(names, AccessError::NAMES);
        for error in &all {
            assert!(error.to_string().starts_with(error.name()));
            assert!(!error.hint().is_empty());
        }
        assert!(AccessError::ListDenied("AccessDenied".into())
            .to_string()
            .contains("s3:ListBucket"));
    }

    #[test]
    fn a_listing_whose_pages_do_not_move_forward_is_stuck_by_name() {
        let token = |t: &str| Some(t.to_owned());
        let mut same_token = Advance::default();
        same_token.page(["a", "b"], false, token("t1")).unwrap();
        let error = same_token.page(["c"], false, token("t1")).unwrap_err();
        assert_eq!(error.name(), "listing_stuck");

        let mut new_tokens_same_keys = Advance::default();
        new_tokens_same_keys
            .page(["a", "b"], false, token("t1"))
            .unwrap();
        let error = new_tokens_same_keys
            .page(["a", "b"], false, token("t2"))
            .unwrap_err();
        assert_eq!(error.name(), "listing_stuck");

        let mut empty = Advance::default();
        for n in 0..MAX_EMPTY_PAGES_IN_A_ROW {
            empty.page([], false, token(&n.to_string())).unwrap();
        }
        assert!(empty.page([], false, token("last")).is_err());

        let mut versions = Advance::default();
        versions.page(["a", "b"], true, token("b\u{0}v1")).unwrap();
        versions
            .page(["b", "c"], true, None)
            .expect("a key's other versions continue on the next page");
    }

    #[tokio::test]
    async fn the_checked_session_is_used_first_and_then_the_provider_renews() {
        let key = |id: &str| Credentials::new(id, "secret", None, None, "test");
        let credentials = FirstThen::new(key("CHECKED"), key("RENEWED"));
        for expected in ["CHECKED", "RENEWED", "RENEWED"] {
            let got = credentials.provide_credentials().await.unwrap();
            assert_eq!(got.access_key_id(), expected);
        }
    }

    #[test]
    fn r2_is_reached_at_its_account_endpoint() {
        if std::env::var_os(env::R2_ENDPOINT_URL).is_none() {
            assert_eq!(
                r2_endpoint("4f3c1e0d"),
                "https://4f3c1e0d.r2.cloudflarestorage.com"
            );
        }
    }
}

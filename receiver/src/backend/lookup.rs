//! Looking an object up in the customer's S3 bucket (`HeadObject`), to name the version a
//! CloudTrail event leaves unnamed.
//!
//! In an unversioned bucket a CloudTrail `PutObject` event carries no ETag and no version id, so
//! its job id would be the event's own id, and the same upload's "Object Created" event (which
//! has the ETag) would make a second job. The handler asks the bucket instead: the ETag and
//! version id `HeadObject` answers are the ones the other event carries.
//!
//! The port ([`ObjectLookup`]) takes the role and the external id; which role (the
//! integration's, or the named one in the event's account) is the handler's pure choice
//! ([`relay_protocol::integration::ReadAccess::role_arn_for`]). The adapter ([`HeadObjects`])
//! assumes each role once, keeps one client per role and region, and answers within seconds:
//! it is on a request's path.

use super::aws::{AwsConfig, Purpose, LOOKUP_BUDGET};
use super::bucket::assume;
use super::error_chain;
use async_trait::async_trait;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::error::SdkError;
use relay_protocol::decide::TEST_KEY_PREFIX;
use relay_protocol::event::ObjectHead;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

/// The session name our lookups carry in the customer's CloudTrail.
pub const SESSION_NAME: &str = "bucket-relay-lookup";

/// How long EventBridge waits for an API destination's answer before it times the call out and
/// retries it (its documented client execution timeout).
pub const API_DESTINATION_TIMEOUT: Duration = Duration::from_secs(5);

/// One object to look up, in the bucket's region.
#[derive(Clone, Copy, Debug)]
pub struct ObjectRef<'a> {
    pub region: Option<&'a str>,
    pub bucket: &'a str,
    pub key: &'a str,
}

/// What the bucket said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Looked {
    Found(ObjectHead),
    /// 404: the object is not there (the role may list the bucket, so this is not a refusal).
    Gone,
}

/// Why the bucket said nothing useful. `name()` is stable: the `object_lookup_failed` log line
/// carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupError {
    /// STS refused the role (no such role in that account, trust policy, external id).
    AssumeRoleDenied(String),
    /// 403: the role may not read the object (`s3:GetObject`), or, without `s3:ListBucket`,
    /// the object is not there.
    Denied(String),
    /// No answer in time, or another error.
    Failed(String),
}

impl LookupError {
    /// Every name, for docs and tests.
    pub const NAMES: [&'static str; 3] = [
        "assume_role_denied",
        "head_object_denied",
        "head_object_failed",
    ];

    pub const fn name(&self) -> &'static str {
        match self {
            LookupError::AssumeRoleDenied(_) => "assume_role_denied",
            LookupError::Denied(_) => "head_object_denied",
            LookupError::Failed(_) => "head_object_failed",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            LookupError::AssumeRoleDenied(d) | LookupError::Denied(d) | LookupError::Failed(d) => d,
        }
    }
}

/// Where object lookups go: the customer's bucket, through a role of theirs.
#[async_trait]
pub trait ObjectLookup: Send + Sync {
    async fn head(
        &self,
        role_arn: &str,
        external_id: &str,
        object: ObjectRef<'_>,
    ) -> Result<Looked, LookupError>;
}

/// Clients kept at most: one per (role, external id, region) in use. Past it the cache starts
/// over, which costs one `AssumeRole` per role.
const MAX_CLIENTS: usize = 512;

/// The S3 adapter. One per process; the AWS configuration (the receiver's own credentials) is
/// read at the first lookup, so a receiver that never looks anything up never reads it.
pub struct HeadObjects {
    aws: Arc<AwsConfig>,
    base: OnceCell<aws_config::SdkConfig>,
    clients: Mutex<HashMap<(String, String, String), aws_sdk_s3::Client>>,
}

impl HeadObjects {
    pub(crate) fn new(aws: Arc<AwsConfig>) -> Self {
        HeadObjects {
            aws,
            base: OnceCell::new(),
            clients: Mutex::default(),
        }
    }

    async fn base(&self) -> &aws_config::SdkConfig {
        self.base
            .get_or_init(|| self.aws.for_purpose(Purpose::Lookup))
            .await
    }

    async fn client(
        &self,
        role_arn: &str,
        external_id: &str,
        region: &str,
    ) -> Result<aws_sdk_s3::Client, LookupError> {
        let cache_key = (
            role_arn.to_owned(),
            external_id.to_owned(),
            region.to_owned(),
        );
        if let Some(client) = self.cached().get(&cache_key) {
            return Ok(client.clone());
        }
        let base = self.base().await;
        let credentials = assume(base, role_arn, external_id, SESSION_NAME)
            .await
            .map_err(LookupError::AssumeRoleDenied)?;
        let mut config = aws_sdk_s3::config::Builder::from(base)
            .credentials_provider(credentials)
            // An emulator's endpoint (AWS_ENDPOINT_URL) answers path-style requests only.
            .force_path_style(base.endpoint_url().is_some());
        if !region.is_empty() {
            config = config.region(Region::new(region.to_owned()));
        }
        let client = aws_sdk_s3::Client::from_conf(config.build());
        let mut clients = self.cached();
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(cache_key, client.clone());
        Ok(client)
    }

    fn cached(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String, String), aws_sdk_s3::Client>> {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether lookups will work: the role can be assumed, and, given a bucket, a `HeadObject`
    /// of a test key there answers (found or 404; a 403 means the role may not read or list).
    pub async fn check(
        &self,
        role_arn: &str,
        external_id: &str,
        region: Option<&str>,
        bucket: Option<&str>,
    ) -> Result<(), LookupError> {
        let Some(bucket) = bucket else {
            let region = region.unwrap_or_default();
            return self.client(role_arn, external_id, region).await.map(drop);
        };
        let key = format!("{TEST_KEY_PREFIX}lookup-probe");
        let object = ObjectRef {
            region,
            bucket,
            key: &key,
        };
        self.head(role_arn, external_id, object).await.map(drop)
    }

    /// One `HeadObject`, without the budget [`ObjectLookup::head`] puts on it.
    async fn head_now(
        &self,
        role_arn: &str,
        external_id: &str,
        object: ObjectRef<'_>,
    ) -> Result<Looked, LookupError> {
        // Events are checked when parsed; a region or bucket that is not AWS's never reaches a
        // host, whatever supplied it.
        let region = object.region.unwrap_or_default();
        let region_ok = region.is_empty() || relay_protocol::names::is_aws_region(region);
        if !region_ok || !relay_protocol::names::is_s3_bucket_name(object.bucket) {
            return Err(LookupError::Failed(
                "the region or bucket breaks AWS's naming rules".into(),
            ));
        }
        let client = self.client(role_arn, external_id, region).await?;
        let answer = client
            .head_object()
            .bucket(object.bucket)
            .key(object.key)
            .send()
            .await;
        match answer {
            Ok(head) => Ok(Looked::Found(ObjectHead {
                etag: head.e_tag().map(str::to_owned),
                version_id: head.version_id().map(str::to_owned),
                size: head.content_length().and_then(|n| u64::try_from(n).ok()),
            })),
            Err(SdkError::ServiceError(service)) => {
                // A HEAD answer has no body: the status is all S3 says.
                match service.raw().status().as_u16() {
                    404 => Ok(Looked::Gone),
                    403 => Err(LookupError::Denied(
                        "403 Forbidden (the role needs s3:GetObject, and s3:ListBucket to tell \
                         a missing object from a refusal)"
                            .to_owned(),
                    )),
                    status => Err(LookupError::Failed(format!("HTTP {status}"))),
                }
            }
            Err(other) => Err(LookupError::Failed(error_chain(&other))),
        }
    }
}

#[async_trait]
impl ObjectLookup for HeadObjects {
    async fn head(
        &self,
        role_arn: &str,
        external_id: &str,
        object: ObjectRef<'_>,
    ) -> Result<Looked, LookupError> {
        tokio::time::timeout(LOOKUP_BUDGET, self.head_now(role_arn, external_id, object))
            .await
            .unwrap_or_else(|_| {
                Err(LookupError::Failed(format!(
                    "no answer within {} s",
                    LOOKUP_BUDGET.as_secs()
                )))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_leaves_the_request_time_to_answer_before_eventbridge_gives_up() {
        // The rest of the request (ledger, queue) has the other half of the 5 s.
        assert!(LOOKUP_BUDGET * 2 <= API_DESTINATION_TIMEOUT);
    }

    #[test]
    fn every_failure_has_its_own_name() {
        let all = [
            LookupError::AssumeRoleDenied("a".into()),
            LookupError::Denied("d".into()),
            LookupError::Failed("f".into()),
        ];
        let names: std::collections::HashSet<&str> = all.iter().map(LookupError::name).collect();
        assert_eq!(names.len(), all.len());
        assert_eq!(
            all.iter().map(LookupError::detail).collect::<String>(),
            "adf"
        );
    }
}

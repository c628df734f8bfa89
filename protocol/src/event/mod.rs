//! The normalised object event: what every source is parsed into before a decision is made.
//!
//! Each source writes keys its own way; [`key`] holds the one rule per source that reads them
//! back, so every job names the object exactly as the bucket does. ETags lose their surrounding
//! quotes and keep a multipart `-N`.

pub mod eventbridge;
pub mod key;
pub mod listed;
pub mod r2;

pub use key::KeyEncoding;

use crate::integration::Provider;
use std::borrow::Cow;
use std::fmt;

/// One object-storage event, whatever its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectEvent {
    pub provider: Provider,
    pub account: Option<String>,
    pub region: Option<String>,
    pub bucket: String,
    /// The exact object key, read by `key_encoding`'s rule.
    pub key: String,
    /// How the source wrote the key.
    pub key_encoding: KeyEncoding,
    /// Object size in bytes, when the source states it.
    pub size: Option<u64>,
    /// Unquoted ETag; a multipart ETag keeps its `-N` suffix.
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub sequencer: Option<String>,
    /// The storage operation as the source names it: `PutObject`, `CopyObject`,
    /// `CompleteMultipartUpload`, `DeleteObject`, `LifecycleDeletion`, `Object Deleted`…
    pub action: String,
    /// Whether the action created an object (and so may become a job).
    pub created: bool,
    /// When the source says the operation happened, as the source wrote it.
    pub event_time: String,
    /// The queue message id (R2) or the EventBridge event id (S3).
    pub source_event_id: String,
}

impl ObjectEvent {
    /// What tells two versions of the same key apart in the job id: the version id, else the
    /// ETag, else, for an object a listing shows with neither, its `LastModified` and size
    /// (the same in every listing until the key is written again), else (a CloudTrail event with
    /// neither) the source event id.
    pub fn version_discriminator(&self) -> Cow<'_, str> {
        if let Some(version) = self.version_id.as_deref().or(self.etag.as_deref()) {
            return Cow::Borrowed(version);
        }
        if self.action == listed::LISTED_ACTION {
            let size = self
                .size
                .map_or_else(|| "-".to_owned(), |size| size.to_string());
            return Cow::Owned(format!("listed:{}:{size}", self.event_time));
        }
        Cow::Borrowed(&self.source_event_id)
    }
}

impl ObjectEvent {
    /// Whether the job id would fall back to the event's own id: an object-created S3 event
    /// with neither version id nor ETag (a CloudTrail event in an unversioned bucket, or a copy).
    /// The same object's "Object Created" event carries its ETag, so the receiver looks this
    /// one's up ([`ObjectEvent::identify`]) to give both one job id.
    pub fn lacks_version(&self) -> bool {
        self.provider == Provider::S3
            && self.created
            && self.version_id.is_none()
            && self.etag.is_none()
    }

    /// Names the object version as the bucket does now (`HeadObject`): its ETag and version
    /// id, and its size when the event had none.
    pub fn identify(&mut self, head: ObjectHead) {
        self.etag = head.etag.as_deref().and_then(normalize_etag);
        self.version_id = version_id(head.version_id);
        self.size = self.size.or(head.size);
    }
}

/// What the bucket says of an object when asked (`HeadObject`), as it wrote it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectHead {
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub size: Option<u64>,
}

/// Why an event could not be parsed. Every variant is answered `malformed_event`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventError {
    /// Not valid JSON, or a required field is missing or of the wrong type.
    Json(String),
    /// An EventBridge event whose `source` is not `aws.s3`.
    UnsupportedSource(String),
    /// The event names no bucket.
    EmptyBucket,
    /// The event names no object key.
    EmptyKey,
    /// An account, region or bucket that breaks the provider's naming rule (it would reach a
    /// host name): the field's name.
    NotAName(&'static str),
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::Json(detail) => write!(f, "not a valid event: {detail}"),
            EventError::UnsupportedSource(source) => {
                write!(
                    f,
                    "unsupported EventBridge source {source:?} (expected \"aws.s3\")"
                )
            }
            EventError::EmptyBucket => f.write_str("the event names no bucket"),
            EventError::EmptyKey => f.write_str("the event names no object key"),
            EventError::NotAName(field) => {
                write!(f, "the event's {field} breaks its naming rule")
            }
        }
    }
}

impl std::error::Error for EventError {}

impl From<serde_json::Error> for EventError {
    fn from(err: serde_json::Error) -> Self {
        EventError::Json(err.to_string())
    }
}

/// Strips the quotes S3 puts around ETags (`"abc"` → `abc`); keeps a multipart `-N` suffix.
pub fn normalize_etag(etag: &str) -> Option<String> {
    let trimmed = etag.trim();
    let unquoted = trimmed
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(trimmed);
    (!unquoted.is_empty()).then(|| unquoted.to_owned())
}

/// Treats an empty string like an absent field: sources write `""` for "none" at times.
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|text| !text.is_empty())
}

/// An object's version id, or `None` when it has none. S3 writes the literal `null` for an
/// object stored while versioning was off or suspended (in listings, and in events of a suspended
/// bucket), and leaves the field out or empty elsewhere: all of them are "no version", so an
/// object gets one job id whichever way it was seen.
pub fn version_id(value: Option<String>) -> Option<String> {
    non_empty(value).filter(|text| text != NULL_VERSION_ID)
}

/// S3's version id of an unversioned object.
pub const NULL_VERSION_ID: &str = "null";

fn require(bucket: &str, key: &str) -> Result<(), EventError> {
    if bucket.is_empty() {
        return Err(EventError::EmptyBucket);
    }
    if key.is_empty() {
        return Err(EventError::EmptyKey);
    }
    Ok(())
}

impl ObjectEvent {
    /// Refuses an S3 event whose account, region or bucket could not be AWS's: each may reach
    /// a host name (a lookup's endpoint, a role's ARN), so none is used unchecked.
    pub(crate) fn check_aws_names(self) -> Result<ObjectEvent, EventError> {
        if !crate::names::is_s3_bucket_name(&self.bucket) {
            return Err(EventError::NotAName("bucket"));
        }
        if self
            .account
            .as_deref()
            .is_some_and(|a| !crate::names::is_aws_account_id(a))
        {
            return Err(EventError::NotAName("account"));
        }
        if self
            .region
            .as_deref()
            .is_some_and(|r| !crate::names::is_aws_region(r))
        {
            return Err(EventError::NotAName("region"));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloudtrail_put(etag: Option<&str>, version_id: Option<&str>) -> ObjectEvent {
        ObjectEvent {
            provider: Provider::S3,
            account: Some("111122223333".into()),
            region: Some("eu-west-1".into()),
            bucket: "logs-a".into(),
            key: "in/a.pdf".into(),
            key_encoding: KeyEncoding::PercentEncoded,
            size: None,
            etag: etag.map(str::to_owned),
            version_id: version_id.map(str::to_owned),
            sequencer: None,
            action: "PutObject".into(),
            created: true,
            event_time: "2026-11-22T10:00:00Z".into(),
            source_event_id: "ct-1".into(),
        }
    }

    #[test]
    fn only_an_s3_creation_naming_no_version_needs_a_lookup() {
        assert!(cloudtrail_put(None, None).lacks_version());
        assert!(!cloudtrail_put(Some("e"), None).lacks_version());
        assert!(!cloudtrail_put(None, Some("v")).lacks_version());
        let deleted = ObjectEvent {
            created: false,
            ..cloudtrail_put(None, None)
        };
        assert!(!deleted.lacks_version());
        let r2 = ObjectEvent {
            provider: Provider::R2,
            ..cloudtrail_put(None, None)
        };
        assert!(!r2.lacks_version());
    }

    #[test]
    fn a_looked_up_object_is_named_as_its_object_created_event_names_it() {
        let mut event = cloudtrail_put(None, None);
        assert_eq!(event.version_discriminator(), "ct-1");
        event.identify(ObjectHead {
            etag: Some("\"9b2cf535f27731c974343645a3985328\"".into()),
            version_id: Some(NULL_VERSION_ID.into()),
            size: Some(11),
        });
        // Unquoted, and S3's "null" version of an unversioned bucket is no version: the
        // discriminator is the ETag, as in the "Object Created" event of the same upload.
        assert_eq!(
            event.version_discriminator(),
            "9b2cf535f27731c974343645a3985328"
        );
        assert_eq!((event.version_id, event.size), (None, Some(11)));
        let mut sized = ObjectEvent {
            size: Some(5),
            ..cloudtrail_put(None, None)
        };
        sized.identify(ObjectHead {
            etag: Some("e".into()),
            version_id: Some("v9".into()),
            size: Some(7),
        });
        assert_eq!(
            (sized.version_discriminator().as_ref(), sized.size),
            ("v9", Some(5))
        );
    }

    #[test]
    fn etags_lose_quotes_and_keep_multipart_suffix() {
        assert_eq!(normalize_etag("\"abc123\"").as_deref(), Some("abc123"));
        assert_eq!(normalize_etag("abc123").as_deref(), Some("abc123"));
        assert_eq!(
            normalize_etag("\"d41d8cd9-12\"").as_deref(),
            Some("d41d8cd9-12")
        );
        assert_eq!(normalize_etag("\"\""), None);
        assert_eq!(normalize_etag(""), None);
    }

    #[test]
    fn the_null_version_and_an_empty_one_are_no_version() {
        assert_eq!(version_id(Some("null".into())), None);
        assert_eq!(version_id(Some(String::new())), None);
        assert_eq!(version_id(None), None);
        assert_eq!(version_id(Some("3HL4kq".into())).as_deref(), Some("3HL4kq"));
    }
}

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
    /// ETag, else (a CloudTrail event with neither) the source event id.
    pub fn version_discriminator(&self) -> &str {
        self.version_id
            .as_deref()
            .or(self.etag.as_deref())
            .unwrap_or(&self.source_event_id)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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

//! Cloudflare R2 event notifications, as the queue delivers them to the worker.
//!
//! ```json
//! {"account":"3f4b…","action":"PutObject","bucket":"uploads",
//!  "object":{"key":"a/b.pdf","size":65536,"eTag":"c846ff7a…"},
//!  "eventTime":"2024-05-24T19:36:44.379Z"}
//! ```
//! Deletes carry no `size` or `eTag`. R2 has no version ids or sequencers. The key is the
//! object's own, not URL-encoded ([`KeyEncoding::Exact`]).

use super::{non_empty, normalize_etag, require, EventError, KeyEncoding, ObjectEvent};
use crate::integration::Provider;
use serde::Deserialize;

/// The R2 actions that create an object; everything else is `not_object_created`.
pub const CREATE_ACTIONS: [&str; 3] = ["PutObject", "CopyObject", "CompleteMultipartUpload"];

#[derive(Deserialize)]
struct Notification {
    account: Option<String>,
    action: String,
    bucket: String,
    object: Object,
    #[serde(rename = "eventTime", default)]
    event_time: String,
}

#[derive(Deserialize)]
struct Object {
    key: String,
    size: Option<u64>,
    #[serde(rename = "eTag")]
    etag: Option<String>,
}

/// Parses one notification; `message_id` is the queue message that carried it.
pub fn parse(notification: &str, message_id: &str) -> Result<ObjectEvent, EventError> {
    let n: Notification = serde_json::from_str(notification)?;
    require(&n.bucket, &n.object.key)?;
    Ok(ObjectEvent {
        provider: Provider::R2,
        account: non_empty(n.account),
        region: None,
        created: CREATE_ACTIONS.contains(&n.action.as_str()),
        action: n.action,
        bucket: n.bucket,
        key: n.object.key,
        key_encoding: KeyEncoding::Exact,
        size: n.object.size,
        etag: n.object.etag.as_deref().and_then(normalize_etag),
        version_id: None,
        sequencer: None,
        event_time: n.event_time,
        source_event_id: message_id.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_object_becomes_a_created_event_with_the_exact_key() {
        let json = r#"{"account":"acc1","action":"PutObject","bucket":"uploads",
            "object":{"key":"reports/Q1 plan+v2 100%/résumé.pdf","size":65536,"eTag":"c846ff7a18f28c2e262116d6e8719ef0"},
            "eventTime":"2024-05-24T19:36:44.379Z"}"#;
        let event = parse(json, "msg-1").unwrap();
        assert!(event.created);
        assert_eq!(event.key, "reports/Q1 plan+v2 100%/résumé.pdf");
        assert_eq!(event.size, Some(65536));
        assert_eq!(event.account.as_deref(), Some("acc1"));
        assert_eq!(event.source_event_id, "msg-1");
        assert_eq!(
            event.version_discriminator(),
            "c846ff7a18f28c2e262116d6e8719ef0"
        );
    }

    #[test]
    fn deletes_parse_without_size_or_etag_and_are_not_created() {
        let json = r#"{"account":"acc1","action":"DeleteObject","bucket":"uploads",
            "object":{"key":"old.pdf"},"eventTime":"2024-05-24T19:36:44.379Z"}"#;
        let event = parse(json, "msg-2").unwrap();
        assert!(!event.created);
        assert_eq!((event.size, event.etag), (None, None));
    }

    #[test]
    fn missing_fields_and_empty_keys_are_named() {
        assert!(matches!(
            parse(r#"{"action":"PutObject"}"#, "m"),
            Err(EventError::Json(_))
        ));
        assert!(matches!(parse("not json", "m"), Err(EventError::Json(_))));
        let empty_key = r#"{"action":"PutObject","bucket":"b","object":{"key":""}}"#;
        assert_eq!(parse(empty_key, "m"), Err(EventError::EmptyKey));
    }
}

//! Objects found by listing a bucket (poll mode and backfill), as object events.
//!
//! A listing says less than an event: no sequencer, no event id. What it does say is enough for
//! the same job id as the object's event: S3's `ListObjectVersions` gives the version id (an
//! event on a versioned bucket carries one) and both S3 and R2 listings give the ETag (what an
//! event without a version id is told apart by). The key arrives exactly as stored.

use super::{normalize_etag, version_id, KeyEncoding, ObjectEvent};
use crate::integration::Provider;
use chrono::{DateTime, SecondsFormat, Utc};

/// The operation name a listed object's job carries as its `action`.
pub const LISTED_ACTION: &str = "ObjectListed";

/// One object (its latest version) as a listing page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: Option<u64>,
    /// As the listing writes it, quotes and all.
    pub etag: Option<String>,
    /// As the listing writes it: `null` for an object stored while versioning was off.
    pub version_id: Option<String>,
    /// The listing's `LastModified` (`None` when it gives none).
    pub last_modified: Option<DateTime<Utc>>,
}

/// Where a listing ran: the integration's storage, account, region and bucket.
#[derive(Clone, Copy, Debug)]
pub struct ListedFrom<'a> {
    pub provider: Provider,
    pub account: Option<&'a str>,
    pub region: Option<&'a str>,
    pub bucket: &'a str,
    /// Names the poll tick or backfill run, for the job's `source_event_id`.
    pub run_id: &'a str,
}

impl ObjectEvent {
    /// The event a listed object stands for: a creation, at its `LastModified`.
    pub fn listed(listing: &ListedFrom<'_>, object: ListedObject) -> ObjectEvent {
        ObjectEvent {
            provider: listing.provider,
            account: listing.account.map(str::to_owned),
            region: listing.region.map(str::to_owned),
            bucket: listing.bucket.to_owned(),
            key: object.key,
            key_encoding: KeyEncoding::Exact,
            size: object.size,
            etag: object.etag.as_deref().and_then(normalize_etag),
            version_id: version_id(object.version_id),
            sequencer: None,
            action: LISTED_ACTION.to_owned(),
            created: true,
            event_time: object
                .last_modified
                .map(|time| time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
                .unwrap_or_default(),
            source_event_id: listing.run_id.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::eventbridge;

    fn listing() -> ListedFrom<'static> {
        ListedFrom {
            provider: Provider::S3,
            account: Some("123456789012"),
            region: Some("eu-west-1"),
            bucket: "example-bucket",
            run_id: "backfill-1",
        }
    }

    fn object(version_id: &str) -> ListedObject {
        ListedObject {
            key: "dir/a b+c.pdf".into(),
            size: Some(5),
            etag: Some("\"b1946ac92492d2347c6235b4d2611184\"".into()),
            version_id: Some(version_id.into()),
            last_modified: DateTime::from_timestamp(1_795_341_600, 0),
        }
    }

    /// The same object as S3 sends it to EventBridge: key form-URL-encoded, ETag unquoted.
    fn event_of(version_id: Option<&str>) -> ObjectEvent {
        let version = version_id.map_or(String::new(), |v| format!(r#","version-id":"{v}""#));
        let body = format!(
            r#"{{"version":"0","id":"e-1","detail-type":"Object Created","source":"aws.s3",
            "account":"123456789012","time":"2026-11-22T10:00:01Z","region":"eu-west-1",
            "detail":{{"bucket":{{"name":"example-bucket"}},"object":{{"key":"dir/a+b%2Bc.pdf",
            "size":5,"etag":"b1946ac92492d2347c6235b4d2611184"{version}}},"reason":"PutObject"}}}}"#
        );
        eventbridge::parse(&body).unwrap()
    }

    #[test]
    fn a_listed_version_and_its_event_are_one_object_version() {
        let listed = ObjectEvent::listed(&listing(), object("3HL4kqtJvjVBH40Nrjfkd"));
        let event = event_of(Some("3HL4kqtJvjVBH40Nrjfkd"));
        assert_eq!(listed.key, event.key);
        assert_eq!(listed.etag, event.etag);
        assert_eq!(listed.version_discriminator(), "3HL4kqtJvjVBH40Nrjfkd");
        assert_eq!(
            listed.version_discriminator(),
            event.version_discriminator()
        );
        assert!(listed.created);
        assert_eq!(listed.action, LISTED_ACTION);
    }

    #[test]
    fn an_object_listed_without_etag_or_version_has_the_same_identity_in_every_run() {
        let bare = ListedObject {
            etag: None,
            version_id: None,
            ..object("null")
        };
        let run = |run_id| ListedFrom {
            run_id,
            ..listing()
        };
        let first = ObjectEvent::listed(&run("poll:1"), bare.clone());
        let second = ObjectEvent::listed(&run("backfill:2"), bare.clone());
        assert_eq!(
            first.version_discriminator(),
            second.version_discriminator()
        );
        let rewritten = ListedObject {
            last_modified: DateTime::from_timestamp(1_795_341_601, 0),
            ..bare
        };
        assert_ne!(
            ObjectEvent::listed(&run("poll:1"), rewritten).version_discriminator(),
            first.version_discriminator(),
            "a new upload of the key is a new version"
        );
    }

    #[test]
    fn an_unversioned_object_is_told_apart_by_its_etag_either_way() {
        // ListObjectVersions writes `null`; the event of an unversioned bucket has no version.
        let listed = ObjectEvent::listed(&listing(), object("null"));
        assert_eq!(listed.version_id, None);
        assert_eq!(
            listed.version_discriminator(),
            "b1946ac92492d2347c6235b4d2611184"
        );
        assert_eq!(
            listed.version_discriminator(),
            event_of(None).version_discriminator()
        );
        assert_eq!(
            event_of(Some("null")).version_discriminator(),
            listed.version_discriminator(),
            "a suspended bucket's event names the null version"
        );
    }
}

//! EventBridge events for S3 buckets, as an API destination delivers them to the receiver.
//!
//! Two shapes arrive:
//! - S3's own events (`detail-type` `Object Created`, `Object Deleted`, …), enabled per bucket
//!   with "Send notifications to EventBridge". The key is form-URL-encoded
//!   ([`S3_KEY_ENCODING`]).
//! - CloudTrail data events (`AWS API Call via CloudTrail`) for org-wide setups: `PutObject`,
//!   `CopyObject` and `CompleteMultipartUpload` create objects; the key is
//!   `requestParameters.key`, percent-encoded ([`CLOUDTRAIL_KEY_ENCODING`]).

use super::{non_empty, normalize_etag, require, version_id, EventError, KeyEncoding, ObjectEvent};
use crate::integration::Provider;
use serde::Deserialize;
use serde_json::value::RawValue;

pub const SOURCE_S3: &str = "aws.s3";
pub const DETAIL_OBJECT_CREATED: &str = "Object Created";
pub const DETAIL_CLOUDTRAIL: &str = "AWS API Call via CloudTrail";
/// How S3's own EventBridge events write `detail.object.key`.
pub const S3_KEY_ENCODING: KeyEncoding = KeyEncoding::FormUrlencoded;
/// How CloudTrail data events write `requestParameters.key`.
pub const CLOUDTRAIL_KEY_ENCODING: KeyEncoding = KeyEncoding::PercentEncoded;
/// CloudTrail `eventName`s that create an object.
pub const CLOUDTRAIL_CREATE_EVENTS: [&str; 3] =
    ["PutObject", "CopyObject", "CompleteMultipartUpload"];

#[derive(Deserialize)]
struct Envelope<'a> {
    id: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    account: Option<String>,
    region: Option<String>,
    #[serde(default)]
    time: String,
    #[serde(borrow)]
    detail: &'a RawValue,
}

#[derive(Deserialize)]
struct S3Detail {
    bucket: S3Bucket,
    object: S3Object,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
    size: Option<u64>,
    etag: Option<String>,
    #[serde(rename = "version-id")]
    version_id: Option<String>,
    sequencer: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloudTrailDetail {
    event_name: String,
    event_time: Option<String>,
    aws_region: Option<String>,
    recipient_account_id: Option<String>,
    request_parameters: Option<CloudTrailRequest>,
    response_elements: Option<CloudTrailResponse>,
    additional_event_data: Option<CloudTrailExtra>,
}

#[derive(Deserialize)]
struct CloudTrailRequest {
    #[serde(rename = "bucketName", default)]
    bucket_name: String,
    #[serde(default)]
    key: String,
}

#[derive(Deserialize)]
struct CloudTrailResponse {
    #[serde(rename = "x-amz-version-id")]
    version_id: Option<String>,
    #[serde(rename = "ETag")]
    etag: Option<String>,
    #[serde(rename = "CopyObjectResult")]
    copy_result: Option<CopyObjectResult>,
}

#[derive(Deserialize)]
struct CopyObjectResult {
    #[serde(rename = "ETag")]
    etag: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloudTrailExtra {
    bytes_transferred_in: Option<f64>,
}

/// The event id, read before anything else so that even a malformed event can be answered
/// with the id its sender knows it by.
pub fn event_id(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: String,
    }
    serde_json::from_str::<IdOnly>(body).ok().map(|e| e.id)
}

/// Parses one EventBridge event.
pub fn parse(body: &str) -> Result<ObjectEvent, EventError> {
    let envelope: Envelope = serde_json::from_str(body)?;
    if envelope.source != SOURCE_S3 {
        return Err(EventError::UnsupportedSource(envelope.source));
    }
    let event = if envelope.detail_type == DETAIL_CLOUDTRAIL {
        parse_cloudtrail(envelope)?
    } else {
        parse_s3(envelope)?
    };
    event.check_aws_names()
}

fn parse_s3(envelope: Envelope) -> Result<ObjectEvent, EventError> {
    let detail: S3Detail = serde_json::from_str(envelope.detail.get())?;
    require(&detail.bucket.name, &detail.object.key)?;
    let (key, key_encoding) = S3_KEY_ENCODING.read(&detail.object.key);
    let created = envelope.detail_type == DETAIL_OBJECT_CREATED;
    let action = match detail.reason {
        Some(reason) if created && !reason.is_empty() => reason,
        _ => envelope.detail_type,
    };
    Ok(ObjectEvent {
        provider: Provider::S3,
        account: non_empty(envelope.account),
        region: non_empty(envelope.region),
        bucket: detail.bucket.name,
        key,
        key_encoding,
        size: detail.object.size,
        etag: detail.object.etag.as_deref().and_then(normalize_etag),
        version_id: version_id(detail.object.version_id),
        sequencer: non_empty(detail.object.sequencer),
        action,
        created,
        event_time: envelope.time,
        source_event_id: envelope.id,
    })
}

fn parse_cloudtrail(envelope: Envelope) -> Result<ObjectEvent, EventError> {
    let detail: CloudTrailDetail = serde_json::from_str(envelope.detail.get())?;
    let request = detail
        .request_parameters
        .ok_or_else(|| EventError::Json("missing field `requestParameters`".into()))?;
    require(&request.bucket_name, &request.key)?;
    let (key, key_encoding) = CLOUDTRAIL_KEY_ENCODING.read(&request.key);
    let created = CLOUDTRAIL_CREATE_EVENTS.contains(&detail.event_name.as_str());
    let (version_id, etag) = match detail.response_elements {
        Some(response) => {
            let copied = response.copy_result.and_then(|result| result.etag);
            (response.version_id, response.etag.or(copied))
        }
        None => (None, None),
    };
    // bytesTransferredIn is the object's size only for a PutObject; for a copy or the end of a
    // multipart upload it counts the request body, so the size stays unknown there.
    let size = match (&*detail.event_name, detail.additional_event_data) {
        ("PutObject", Some(extra)) => extra.bytes_transferred_in.map(|bytes| bytes as u64),
        _ => None,
    };
    Ok(ObjectEvent {
        provider: Provider::S3,
        account: non_empty(detail.recipient_account_id).or(non_empty(envelope.account)),
        region: non_empty(detail.aws_region).or(non_empty(envelope.region)),
        bucket: request.bucket_name,
        key,
        key_encoding,
        size,
        etag: etag.as_deref().and_then(normalize_etag),
        version_id: self::version_id(version_id),
        sequencer: None,
        action: detail.event_name,
        created,
        event_time: detail.event_time.unwrap_or(envelope.time),
        source_event_id: envelope.id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJECT_CREATED: &str = r#"{
      "version":"0","id":"17793124-05d4-b198-2fde-7ededc63b103","detail-type":"Object Created",
      "source":"aws.s3","account":"123456789012","time":"2021-11-12T00:00:00Z",
      "region":"ca-central-1","resources":["arn:aws:s3:::example-bucket"],
      "detail":{"version":"0","bucket":{"name":"example-bucket"},
        "object":{"key":"in/a+b%2Bc%2520d/%C3%BC.pdf","size":5,"etag":"b1946ac92492d2347c6235b4d2611184",
          "version-id":"IYV3p45BT0ac8hjHg1houSdS1a.Mro8e","sequencer":"617f08299329d189"},
        "request-id":"N4N7GDK58NMKJ12R","requester":"123456789012","reason":"PutObject"}}"#;

    #[test]
    fn s3_object_created_keeps_the_key_exactly() {
        let event = parse(OBJECT_CREATED).unwrap();
        assert!(event.created);
        assert_eq!(event.action, "PutObject");
        assert_eq!(
            event.key, "in/a b+c%20d/ü.pdf",
            "form-decoded to the object's own key"
        );
        assert_eq!(event.key_encoding, KeyEncoding::FormUrlencoded);
        assert_eq!(event.bucket, "example-bucket");
        assert_eq!(event.account.as_deref(), Some("123456789012"));
        assert_eq!(event.region.as_deref(), Some("ca-central-1"));
        assert_eq!(
            event.version_discriminator(),
            "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"
        );
        assert_eq!(event.sequencer.as_deref(), Some("617f08299329d189"));
        assert_eq!(
            event.source_event_id,
            "17793124-05d4-b198-2fde-7ededc63b103"
        );
    }

    #[test]
    fn s3_object_deleted_is_not_created() {
        let deleted = OBJECT_CREATED
            .replace("Object Created", "Object Deleted")
            .replace("\"reason\":\"PutObject\"", "\"reason\":\"DeleteObject\"");
        let event = parse(&deleted).unwrap();
        assert!(!event.created);
        assert_eq!(event.action, "Object Deleted");
    }

    #[test]
    fn cloudtrail_put_object_carries_size_version_and_unquoted_etag() {
        let body = r#"{"version":"0","id":"ct-1","detail-type":"AWS API Call via CloudTrail",
          "source":"aws.s3","account":"111122223333","time":"2024-01-01T00:00:01Z","region":"eu-west-1",
          "detail":{"eventName":"PutObject","eventTime":"2024-01-01T00:00:00Z","awsRegion":"eu-west-1",
            "recipientAccountId":"111122223333",
            "requestParameters":{"bucketName":"docs","key":"a/report%201+v2.pdf"},
            "responseElements":{"x-amz-version-id":"v123","ETag":"\"abc-3\""},
            "additionalEventData":{"bytesTransferredIn":1234.0}}}"#;
        let event = parse(body).unwrap();
        assert!(event.created);
        assert_eq!(
            event.key, "a/report 1+v2.pdf",
            "percent-decoded; a plus stays a plus"
        );
        assert_eq!(event.key_encoding, KeyEncoding::PercentEncoded);
        assert_eq!(event.size, Some(1234));
        assert_eq!(event.etag.as_deref(), Some("abc-3"));
        assert_eq!(event.version_id.as_deref(), Some("v123"));
        assert_eq!(event.event_time, "2024-01-01T00:00:00Z");
    }

    #[test]
    fn an_account_region_or_bucket_that_could_change_a_host_is_refused_by_name() {
        let event = |region: &str, account: &str, bucket: &str| {
            format!(
                r#"{{"version":"0","id":"ct-2","detail-type":"AWS API Call via CloudTrail",
                "source":"aws.s3","account":"111122223333","time":"2024-01-01T00:00:01Z",
                "region":"eu-west-1","detail":{{"eventName":"PutObject","awsRegion":"{region}",
                "recipientAccountId":"{account}",
                "requestParameters":{{"bucketName":"{bucket}","key":"a.pdf"}}}}}}"#
            )
        };
        assert!(parse(&event("eu-west-1", "111122223333", "docs")).is_ok());
        for (region, account, bucket, field) in [
            ("evil.com#", "111122223333", "docs", "region"),
            ("x/", "111122223333", "docs", "region"),
            ("eu-west-1", "1111.evil", "docs", "account"),
            ("eu-west-1", "111122223333", "docs.evil.com/x", "bucket"),
            ("eu-west-1", "111122223333", "Docs", "bucket"),
        ] {
            assert_eq!(
                parse(&event(region, account, bucket)).unwrap_err(),
                EventError::NotAName(field),
                "{region} {account} {bucket}"
            );
        }
    }

    #[test]
    fn cloudtrail_copy_and_multipart_have_no_size_and_other_calls_are_not_created() {
        let copy = r#"{"id":"ct-2","detail-type":"AWS API Call via CloudTrail","source":"aws.s3",
          "detail":{"eventName":"CopyObject","requestParameters":{"bucketName":"docs","key":"k"},
            "responseElements":{"CopyObjectResult":{"ETag":"\"e1\""}},
            "additionalEventData":{"bytesTransferredIn":0}}}"#;
        let event = parse(copy).unwrap();
        assert!(event.created);
        assert_eq!((event.size, event.etag.as_deref()), (None, Some("e1")));

        let get = copy.replace("CopyObject\"", "DeleteObject\"");
        assert!(!parse(&get).unwrap().created);
        // A part of a multipart upload is not an object yet: only CompleteMultipartUpload is.
        let part = copy.replace("CopyObject\"", "UploadPart\"");
        assert!(!parse(&part).unwrap().created);
        let complete = copy.replace("CopyObject\"", "CompleteMultipartUpload\"");
        assert!(parse(&complete).unwrap().created);
    }

    #[test]
    fn other_sources_and_broken_events_are_named() {
        let ec2 = OBJECT_CREATED.replace("\"aws.s3\"", "\"aws.ec2\"");
        assert_eq!(
            parse(&ec2),
            Err(EventError::UnsupportedSource("aws.ec2".into()))
        );
        assert!(matches!(parse("{}"), Err(EventError::Json(_))));
        assert_eq!(
            event_id(&ec2).as_deref(),
            Some("17793124-05d4-b198-2fde-7ededc63b103")
        );
        assert_eq!(event_id("[1]"), None);
    }
}

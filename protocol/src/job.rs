//! The ingest job: what the pipeline reads off the ingest queue.
//!
//! `ingest-job/v2` (the default) is `ingest-job/v1` with the object's route: `route` (the
//! matched prefix, `null` for the integration's default), `params` and `output_prefix`. Every v1
//! field keeps its meaning. A receiver told `--job-schema v1` writes v1 messages: the same job
//! without the three fields. docs/schemas/ holds a JSON Schema for each.
//!
//! `job_id` = lowercase hex of the first 16 bytes of SHA-256 over the fields `integration_id`,
//! `bucket`, `key` and `version_id | unquoted etag`, each written as its UTF-8 byte length (4 bytes,
//! big-endian) followed by its bytes. The same object version always yields the same id, so the
//! ledger, a FIFO queue's deduplication id and the pipeline agree; and since every field carries
//! its length, no two different objects share an input (a key may contain any byte, newlines too).

use crate::event::{KeyEncoding, ObjectEvent};
use crate::integration::Provider;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The schema a job is written in ([`IngestJob::message`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JobSchema {
    V1,
    #[default]
    V2,
}

impl JobSchema {
    pub const fn as_str(self) -> &'static str {
        match self {
            JobSchema::V1 => "ingest-job/v1",
            JobSchema::V2 => "ingest-job/v2",
        }
    }
}

impl std::str::FromStr for JobSchema {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "v1" | "ingest-job/v1" => Ok(JobSchema::V1),
            "v2" | "ingest-job/v2" => Ok(JobSchema::V2),
            _ => Err(format!("{text:?} is not a job schema (v1 or v2)")),
        }
    }
}

/// The newest schema, which jobs are made in.
pub const SCHEMA: &str = JobSchema::V2.as_str();

/// SQS message attribute names carried with every job.
pub const ATTRIBUTE_INTEGRATION_ID: &str = "integration_id";
pub const ATTRIBUTE_PROVIDER: &str = "provider";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestJob {
    pub schema: String,
    pub job_id: String,
    pub integration_id: String,
    pub provider: Provider,
    pub account: Option<String>,
    pub region: Option<String>,
    pub bucket: String,
    /// The object's exact key, decoded from the event.
    pub key: String,
    /// How the source had encoded the key (`exact`, `form_urlencoded`, `percent_encoded`).
    pub key_encoding: KeyEncoding,
    pub size: Option<u64>,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub sequencer: Option<String>,
    pub action: String,
    pub event_time: String,
    pub received_at: String,
    pub source_event_id: String,
    /// v2: the route the object took, its parameters and its output prefix.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
}

/// What `ingest-job/v2` adds: the object's route ([`crate::route`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routing {
    /// The matched route's prefix; `None` (`null`): the integration's default.
    pub route: Option<String>,
    pub params: std::collections::BTreeMap<String, String>,
    pub output_prefix: Option<String>,
}

/// The deterministic id of one object version's job.
pub fn job_id(integration_id: &str, bucket: &str, key: &str, version: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [integration_id, bucket, key, version] {
        // S3 and R2 keys are at most 1,024 bytes; an event field over 4 GiB cannot reach here.
        let length = u32::try_from(part.len()).unwrap_or(u32::MAX);
        hasher.update(length.to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(32);
    for byte in &digest[..16] {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The id of a key, whatever its version: what `--overwrites ignore` lets one job claim. It
/// cannot be a [`job_id`], which is 32 hex digits.
pub fn key_id(integration_id: &str, bucket: &str, key: &str) -> String {
    format!("key-{}", job_id(integration_id, bucket, key, ""))
}

impl IngestJob {
    /// The id of this job's key, every version of it.
    pub fn key_id(&self) -> String {
        key_id(&self.integration_id, &self.bucket, &self.key)
    }
}

impl IngestJob {
    /// The job for `event` under `integration_id`; `received_at` is RFC 3339 UTC.
    pub fn from_event(integration_id: &str, event: ObjectEvent, received_at: String) -> Self {
        let job_id = job_id(
            integration_id,
            &event.bucket,
            &event.key,
            &event.version_discriminator(),
        );
        IngestJob {
            schema: SCHEMA.to_owned(),
            job_id,
            integration_id: integration_id.to_owned(),
            provider: event.provider,
            account: event.account,
            region: event.region,
            bucket: event.bucket,
            key: event.key,
            key_encoding: event.key_encoding,
            size: event.size,
            etag: event.etag,
            version_id: event.version_id,
            sequencer: event.sequencer,
            action: event.action,
            event_time: event.event_time,
            received_at,
            source_event_id: event.source_event_id,
            routing: Some(Routing::default()),
        }
    }

    /// The job with the route its object takes.
    #[must_use]
    pub fn routed(mut self, matched: &crate::route::Matched<'_>) -> Self {
        self.routing = Some(Routing {
            route: matched.route.map(str::to_owned),
            params: matched.params.clone(),
            output_prefix: matched.output_prefix.map(str::to_owned),
        });
        self
    }

    /// The message a queue carries, in `schema`: v1 leaves the route out. Written from a
    /// borrowed view of the job (no copy of its strings), field for field as the job itself
    /// serialises.
    pub fn message(&self, schema: JobSchema) -> String {
        let routing = self.routing.as_ref();
        let view = Message {
            schema: schema.as_str(),
            job_id: &self.job_id,
            integration_id: &self.integration_id,
            provider: self.provider,
            account: self.account.as_deref(),
            region: self.region.as_deref(),
            bucket: &self.bucket,
            key: &self.key,
            key_encoding: self.key_encoding,
            size: self.size,
            etag: self.etag.as_deref(),
            version_id: self.version_id.as_deref(),
            sequencer: self.sequencer.as_deref(),
            action: &self.action,
            event_time: &self.event_time,
            received_at: &self.received_at,
            source_event_id: &self.source_event_id,
            route: match schema {
                JobSchema::V2 => Some(MessageRoute {
                    route: routing.and_then(|r| r.route.as_deref()),
                    params: routing.map(|r| &r.params).unwrap_or(&NO_PARAMS),
                    output_prefix: routing.and_then(|r| r.output_prefix.as_deref()),
                }),
                JobSchema::V1 => None,
            },
        };
        serde_json::to_string(&view).expect("a job serialises")
    }
}

static NO_PARAMS: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();

/// [`IngestJob`] as a message, borrowed: the same fields in the same order.
#[derive(Serialize)]
struct Message<'a> {
    schema: &'a str,
    job_id: &'a str,
    integration_id: &'a str,
    provider: Provider,
    account: Option<&'a str>,
    region: Option<&'a str>,
    bucket: &'a str,
    key: &'a str,
    key_encoding: KeyEncoding,
    size: Option<u64>,
    etag: Option<&'a str>,
    version_id: Option<&'a str>,
    sequencer: Option<&'a str>,
    action: &'a str,
    event_time: &'a str,
    received_at: &'a str,
    source_event_id: &'a str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    route: Option<MessageRoute<'a>>,
}

/// [`Routing`], borrowed.
#[derive(Serialize)]
struct MessageRoute<'a> {
    route: Option<&'a str>,
    params: &'a std::collections::BTreeMap<String, String>,
    output_prefix: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_matches_values_computed_independently() {
        // Computed with Python's hashlib:
        // sha256(b"".join(len(f).to_bytes(4, "big") + f for f in fields)).digest()[:16].hex()
        assert_eq!(
            job_id("int_1", "b", "k", "v1"),
            "d36823190c83ac1d5c43a1233024a33e"
        );
        assert_eq!(
            job_id("int_test", "uploads", "a.pdf", "e"),
            "e4512691f5a43e4c4a686005c44513e9"
        );
    }

    fn sample() -> IngestJob {
        serde_json::from_value(serde_json::json!({
            "schema": "ingest-job/v1", "job_id": "j", "integration_id": "int_a", "provider": "r2",
            "account": null, "region": null, "bucket": "b", "key": "k", "key_encoding": "exact",
            "size": 1, "etag": "e", "version_id": null, "sequencer": null, "action": "PutObject",
            "event_time": "t", "received_at": "t", "source_event_id": "m"
        }))
        .unwrap()
    }

    #[test]
    fn a_v1_message_reads_without_a_route_and_writes_in_either_schema() {
        let v1 = sample();
        assert_eq!(v1.routing, None);
        let written: serde_json::Value = serde_json::from_str(&v1.message(JobSchema::V1)).unwrap();
        assert_eq!(written["schema"], "ingest-job/v1");
        assert!(written.get("route").is_none() && written.get("params").is_none());
        let v2: serde_json::Value = serde_json::from_str(&v1.message(JobSchema::V2)).unwrap();
        assert_eq!(v2["schema"], "ingest-job/v2");
        assert_eq!(
            (v2["route"].clone(), v2["params"].clone()),
            (serde_json::Value::Null, serde_json::json!({}))
        );
        let routed = IngestJob {
            routing: Some(Routing {
                route: Some("invoices/".into()),
                params: [("tier".to_owned(), "premium".to_owned())].into(),
                output_prefix: Some("out/".into()),
            }),
            ..v1
        };
        let text = routed.message(JobSchema::V2);
        let back: IngestJob = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back.routing, routed.routing,
            "a v2 message reads back whole"
        );
        assert_eq!("v1".parse(), Ok(JobSchema::V1));
        assert!("v3".parse::<JobSchema>().is_err());
    }

    #[test]
    fn a_message_is_the_job_itself_serialised_in_its_schema_byte_for_byte() {
        // The job serialised whole, as a consumer reading `IngestJob` would write it back: the
        // borrowed view must name the same fields, in the same order, with the same values.
        let whole = |job: &IngestJob, schema: JobSchema| {
            let written = IngestJob {
                schema: schema.as_str().to_owned(),
                routing: match schema {
                    JobSchema::V2 => Some(job.routing.clone().unwrap_or_default()),
                    JobSchema::V1 => None,
                },
                ..job.clone()
            };
            serde_json::to_string(&written).unwrap()
        };
        let full = IngestJob {
            account: Some("acct \"quoted\"".into()),
            region: Some("eu-west-1".into()),
            size: Some(7),
            etag: Some("e".into()),
            version_id: Some("v".into()),
            sequencer: Some("0a".into()),
            key: "dir/naïve\nkey".into(),
            ..sample()
        };
        let routed = IngestJob {
            routing: Some(Routing {
                route: Some("invoices/".into()),
                params: [("tier".to_owned(), "premium".to_owned())].into(),
                output_prefix: Some("out/".into()),
            }),
            ..full.clone()
        };
        for job in [sample(), full, routed] {
            for schema in [JobSchema::V1, JobSchema::V2] {
                assert_eq!(job.message(schema), whole(&job, schema), "{schema:?}");
            }
        }
    }

    #[test]
    fn fields_carry_their_length_so_no_two_objects_share_an_id() {
        // With a separator, key "x.pdf\ny.pdf" + ETag "v" and key "x.pdf" + ETag "y.pdf\nv"
        // were one input: the second object would have been answered `duplicate`, never enqueued.
        let a = job_id("int_h", "uploads", "x.pdf\ny.pdf", "v");
        let b = job_id("int_h", "uploads", "x.pdf", "y.pdf\nv");
        assert_eq!(a, "c6e8431d744037ebeabb151c053345bf");
        assert_eq!(b, "10a6359f90006d6800f61677fbbb6a9a");
        assert_ne!(job_id("i", "ab", "c", "v"), job_id("i", "a", "bc", "v"));
        assert_ne!(job_id("i", "b", "k", "v1"), job_id("i", "b", "k", "v2"));
    }
}

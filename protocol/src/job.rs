//! The `ingest-job/v1` message: what the pipeline reads off the ingest queue.
//!
//! `job_id` = lowercase hex of the first 16 bytes of SHA-256 over
//! `integration_id \n bucket \n key \n (version_id | unquoted etag)`, so the same object version
//! always yields the same id: the ledger, a FIFO queue's deduplication id and the pipeline agree.

use crate::event::ObjectEvent;
use crate::integration::Provider;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const SCHEMA: &str = "ingest-job/v1";

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
    pub key: String,
    pub size: Option<u64>,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub sequencer: Option<String>,
    pub action: String,
    pub event_time: String,
    pub received_at: String,
    pub source_event_id: String,
}

/// The deterministic id of one object version's job.
pub fn job_id(integration_id: &str, bucket: &str, key: &str, version: &str) -> String {
    let mut hasher = Sha256::new();
    for (i, part) in [integration_id, bucket, key, version].iter().enumerate() {
        if i > 0 {
            hasher.update(b"\n");
        }
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

impl IngestJob {
    /// The job for `event` under `integration_id`; `received_at` is RFC 3339 UTC.
    pub fn from_event(integration_id: &str, event: ObjectEvent, received_at: String) -> Self {
        let job_id = job_id(
            integration_id,
            &event.bucket,
            &event.key,
            event.version_discriminator(),
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
            size: event.size,
            etag: event.etag,
            version_id: event.version_id,
            sequencer: event.sequencer,
            action: event.action,
            event_time: event.event_time,
            received_at,
            source_event_id: event.source_event_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_is_the_first_16_bytes_of_sha256_in_lowercase_hex() {
        // sha256("int_1\nb\nk\nv1") computed independently (printf 'int_1\nb\nk\nv1' | sha256sum).
        let id = job_id("int_1", "b", "k", "v1");
        assert_eq!(id.len(), 32);
        let full = format!("{:x}", Sha256::digest(b"int_1\nb\nk\nv1"));
        assert_eq!(id, full[..32]);
    }

    #[test]
    fn job_id_separates_fields_so_boundaries_cannot_collide() {
        assert_ne!(job_id("i", "ab", "c", "v"), job_id("i", "a", "bc", "v"));
        assert_ne!(job_id("i", "b", "k", "v1"), job_id("i", "b", "k", "v2"));
    }
}

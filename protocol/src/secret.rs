//! The event source secret of an integration, derived from the master key.
//!
//! `secret = "whsec_" + base64(HMAC-SHA256(master_key, "event-source-secret/v1/" + id + "/" + generation))`
//!
//! Only the generation is stored; rotating bumps it. The same derivation yields the Standard
//! Webhooks signing key (the worker's side) and the bearer secret (EventBridge's side).
//!
//! Two more values come from the master key, so neither is stored:
//! - the external id a customer's read role requires of us (poll mode and backfill on S3):
//!   `"brx-" + hex(HMAC-SHA256(master_key, "read-role-external-id/v1/" + id))[..32]`;
//! - the key that seals an R2 token's credentials at rest:
//!   `HMAC-SHA256(master_key, "read-access-seal/v1")`.

use crate::webhook::SigningKey;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const DERIVATION_CONTEXT: &str = "event-source-secret/v1/";
pub const EXTERNAL_ID_CONTEXT: &str = "read-role-external-id/v1/";
pub const SEAL_CONTEXT: &str = "read-access-seal/v1";
/// What every external id starts with.
pub const EXTERNAL_ID_PREFIX: &str = "brx-";

fn hmac(master_key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(master_key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// What the master key MACs to derive the signing key of `integration_id` at `generation`
/// (the same message whether the key is in memory or in KMS: `GenerateMac`).
pub fn event_source_message(integration_id: &str, generation: u32) -> Vec<u8> {
    format!("{DERIVATION_CONTEXT}{integration_id}/{generation}").into_bytes()
}

/// What the master key MACs to derive the external id of `integration_id`.
pub fn external_id_message(integration_id: &str) -> Vec<u8> {
    format!("{EXTERNAL_ID_CONTEXT}{integration_id}").into_bytes()
}

/// The external id, from the MAC of [`external_id_message`].
pub fn external_id_from_mac(mac: &[u8]) -> String {
    let mut id = String::from(EXTERNAL_ID_PREFIX);
    for byte in mac.iter().take(16) {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

/// HMAC-SHA256 of `message` under a master key in memory.
pub fn mac(master_key: &[u8], message: &[u8]) -> [u8; 32] {
    hmac(master_key, &[message])
}

/// The signing key of `integration_id` at `generation`.
pub fn event_source_key(master_key: &[u8], integration_id: &str, generation: u32) -> SigningKey {
    let message = event_source_message(integration_id, generation);
    SigningKey::from_bytes(mac(master_key, &message).to_vec())
}

/// The external id the customer's read role trusts us with, for `integration_id`: not a
/// secret (the customer writes it into a trust policy), but only we can compute it.
pub fn external_id(master_key: &[u8], integration_id: &str) -> String {
    external_id_from_mac(&mac(master_key, &external_id_message(integration_id)))
}

/// The 256-bit key that seals stored read credentials (an AEAD key).
pub fn sealing_key(master_key: &[u8]) -> [u8; 32] {
    hmac(master_key, &[SEAL_CONTEXT.as_bytes()])
}

/// The secret as shown to the customer: `whsec_<base64>`.
pub fn event_source_secret(master_key: &[u8], integration_id: &str, generation: u32) -> String {
    event_source_key(master_key, integration_id, generation).to_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_value_computed_independently() {
        // Python: "whsec_" + base64(hmac.new(master, b"event-source-secret/v1/int_abc/3",
        // hashlib.sha256).digest())
        let master = b"0123456789abcdef0123456789abcdef";
        assert_eq!(
            event_source_secret(master, "int_abc", 3),
            "whsec_bwQmjQg/1dP8/cbmvlETZDnfaPhVhYoBfPOUU7rltoE="
        );
    }

    #[test]
    fn the_external_id_and_the_sealing_key_match_values_computed_independently() {
        // Python: "brx-" + hmac.new(master, b"read-role-external-id/v1/int_abc",
        // hashlib.sha256).hexdigest()[:32]; hmac.new(master, b"read-access-seal/v1", …)
        let master = b"0123456789abcdef0123456789abcdef";
        assert_eq!(
            external_id(master, "int_abc"),
            "brx-78fa38848e688947f410a44374dd3e96"
        );
        let key: String = sealing_key(master)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            key,
            "57a764a5cda490fedf1c92e35f4db7d8b8a7df81c2e8f95d75f5a407eb36a283"
        );
        assert_ne!(
            external_id(master, "int_abd"),
            external_id(master, "int_abc")
        );
    }

    #[test]
    fn differs_per_integration_and_generation() {
        let master = b"master";
        let a1 = event_source_secret(master, "int_a", 1);
        assert_ne!(a1, event_source_secret(master, "int_a", 2));
        assert_ne!(a1, event_source_secret(master, "int_b", 1));
        assert_ne!(a1, event_source_secret(b"other master", "int_a", 1));
        assert!(a1.starts_with("whsec_"));
    }
}

//! R2 token credentials sealed at rest, under a master key version.
//!
//! `sealed = "v2." + <key version> + "." + base64(body)`, over the JSON of the key pair, bound to
//! the integration id (a sealed value copied onto another integration does not open):
//!
//! - a version in memory: body = nonce (24 random bytes) ‖ XChaCha20-Poly1305 ciphertext ‖ tag,
//!   keyed `HMAC-SHA256(master key, "read-access-seal/v1")`, the id as associated data;
//! - a version in KMS: body = KMS `Encrypt`'s ciphertext blob, the id as encryption context.
//!
//! `v1.` + base64(…) (before versions) was sealed in memory under version 1. `keys reseal`
//! seals each value again under the current version ([`reseal`]), so that an old version can be
//! retired.

use crate::keys::{KeyError, Keyring, FIRST_KEY_VERSION};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use relay_protocol::integration::ReadAccess;
use relay_protocol::Integration;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Before versions: sealed under version 1.
const LEGACY: &str = "v1.";
/// `v2.<key version>.`
const VERSIONED: &str = "v2.";

/// An R2 API token's S3 credentials. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyPair {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPair(<redacted>)")
    }
}

/// Why a sealed value does not open.
#[derive(Debug)]
pub(crate) enum Unreadable {
    /// Another integration's, damaged, or under a version the keyring does not hold.
    Sealed,
    /// KMS did not answer: try again.
    Unavailable(KeyError),
}

impl From<KeyError> for Unreadable {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::Missing(_) => Unreadable::Sealed,
            error @ KeyError::Kms(_) => Unreadable::Unavailable(error),
        }
    }
}

/// Seals `pair` for `integration_id` under the keyring's current version.
pub(crate) async fn seal(
    ring: &Keyring,
    integration_id: &str,
    pair: &KeyPair,
) -> Result<String, KeyError> {
    let plaintext = serde_json::to_vec(pair).expect("a key pair serialises");
    let body = ring.seal_bytes(integration_id, &plaintext).await?;
    Ok(format!(
        "{VERSIONED}{}.{}",
        ring.current_version(),
        STANDARD.encode(body)
    ))
}

/// The key version a sealed value names, and its base64 body.
fn split(sealed: &str) -> Option<(u32, &str)> {
    if let Some(body) = sealed.strip_prefix(LEGACY) {
        return Some((FIRST_KEY_VERSION, body));
    }
    let (version, body) = sealed.strip_prefix(VERSIONED)?.split_once('.')?;
    let version: u32 = version.parse().ok().filter(|v| *v >= 1)?;
    Some((version, body))
}

/// The key version the integration's sealed token was sealed under, if it has one.
pub(crate) fn sealed_version(integration: &Integration) -> Option<u32> {
    match &integration.read_access {
        Some(ReadAccess::SealedKeys { sealed }) => split(sealed).map(|(version, _)| version),
        _ => None,
    }
}

/// Opens what [`seal`] sealed for the same integration, with the version it names.
pub(crate) async fn open(
    ring: &Keyring,
    integration_id: &str,
    sealed: &str,
) -> Result<KeyPair, Unreadable> {
    let (version, body) = split(sealed).ok_or(Unreadable::Sealed)?;
    let body = STANDARD.decode(body).map_err(|_| Unreadable::Sealed)?;
    let plaintext = ring
        .open_bytes(version, integration_id, &body)
        .await?
        .ok_or(Unreadable::Sealed)?;
    serde_json::from_slice(&plaintext).map_err(|_| Unreadable::Sealed)
}

/// The value sealed again under the current version, or `None` when it already is.
pub(crate) async fn reseal(
    ring: &Keyring,
    integration_id: &str,
    sealed: &str,
) -> Result<Option<String>, Unreadable> {
    let (version, _) = split(sealed).ok_or(Unreadable::Sealed)?;
    if version == ring.current_version() {
        return Ok(None);
    }
    let pair = open(ring, integration_id, sealed).await?;
    Ok(Some(seal(ring, integration_id, &pair).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MasterKey;
    use crate::keys::{local_seal_with_nonce, NONCE_BYTES};

    const MASTER: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn ring() -> Keyring {
        Keyring::single(MasterKey::from_bytes(MASTER))
    }

    fn pair() -> KeyPair {
        KeyPair {
            access_key_id: "AKIDEXAMPLE0001".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        }
    }

    fn sealed_is(result: Result<KeyPair, Unreadable>) -> bool {
        matches!(result, Err(Unreadable::Sealed))
    }

    #[tokio::test]
    async fn a_sealed_pair_opens_only_for_its_integration_and_master_key() {
        let sealed = seal(&ring(), "int_a", &pair()).await.unwrap();
        assert_eq!(open(&ring(), "int_a", &sealed).await.unwrap(), pair());
        assert!(sealed_is(open(&ring(), "int_b", &sealed).await));
        let other = Keyring::single(MasterKey::from_bytes(b"another master key"));
        assert!(sealed_is(open(&other, "int_a", &sealed).await));
        let mut damaged = sealed.clone().into_bytes();
        let last = damaged.len() - 3;
        damaged[last] = if damaged[last] == b'A' { b'B' } else { b'A' };
        let damaged = String::from_utf8(damaged).unwrap();
        assert!(sealed_is(open(&ring(), "int_a", &damaged).await));
        for bad in ["v1.", "v2.1.", "v2.0.AAAA", "v2.x.AAAA", "plain"] {
            assert!(sealed_is(open(&ring(), "int_a", bad).await), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_sealed_text_shows_neither_key_and_never_repeats() {
        let a = seal(&ring(), "int_a", &pair()).await.unwrap();
        let b = seal(&ring(), "int_a", &pair()).await.unwrap();
        assert_ne!(a, b, "a fresh nonce each time");
        for sealed in [&a, &b] {
            assert!(!sealed.contains("AKIDEXAMPLE"));
            assert!(!sealed.contains("EXAMPLEKEY"));
        }
        assert_eq!(format!("{:?}", pair()), "KeyPair(<redacted>)");
    }

    #[tokio::test]
    async fn a_value_sealed_before_versions_opens_as_version_1_and_reseals_under_the_current() {
        // What the previous release wrote: "v1." + base64(nonce ‖ ciphertext ‖ tag).
        let plaintext = serde_json::to_vec(&pair()).unwrap();
        let key = MasterKey::from_bytes(MASTER);
        let legacy = format!(
            "v1.{}",
            STANDARD.encode(local_seal_with_nonce(
                &key,
                "int_a",
                &plaintext,
                [9; NONCE_BYTES]
            ))
        );
        assert_eq!(open(&ring(), "int_a", &legacy).await.unwrap(), pair());
        assert!(
            matches!(reseal(&ring(), "int_a", &legacy).await, Ok(None)),
            "already current"
        );
        let rotated = ring().rotated(None);
        let resealed = reseal(&rotated, "int_a", &legacy).await.unwrap().unwrap();
        assert!(resealed.starts_with("v2.2."));
        assert_eq!(open(&rotated, "int_a", &resealed).await.unwrap(), pair());
        let retired = rotated.without(1).unwrap();
        assert_eq!(open(&retired, "int_a", &resealed).await.unwrap(), pair());
        assert!(sealed_is(open(&retired, "int_a", &legacy).await));
    }
}

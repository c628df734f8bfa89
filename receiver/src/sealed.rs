//! R2 token credentials sealed at rest: XChaCha20-Poly1305 keyed from a master key version.
//!
//! `sealed = "v2." + <key version> + "." + base64(nonce (24 random bytes) ‖ ciphertext ‖ tag)`,
//! over the JSON of the key pair, with the integration id as associated data: a sealed value
//! copied onto another integration does not open. `v1.` + base64(…) (before versions) was
//! sealed under version 1. `keys reseal` seals each value again under the current version
//! ([`reseal`]), so that an old version can be retired.

use crate::keys::{Keyring, FIRST_KEY_VERSION};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use relay_protocol::integration::ReadAccess;
use relay_protocol::{secret, Integration};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Before versions: sealed under version 1.
const LEGACY: &str = "v1.";
/// `v2.<key version>.`
const VERSIONED: &str = "v2.";
const NONCE_BYTES: usize = 24;

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

/// A sealed value that does not open: another master key, another integration, a retired
/// version, or damage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Unreadable;

/// Seals `pair` for `integration_id` under the keyring's current version, with a fresh random
/// nonce.
pub(crate) fn seal(ring: &Keyring, integration_id: &str, pair: &KeyPair) -> String {
    let nonce: [u8; NONCE_BYTES] = rand::random();
    let version = ring.current_version();
    seal_with_nonce(
        ring.current().as_bytes(),
        version,
        integration_id,
        pair,
        nonce,
    )
}

fn seal_with_nonce(
    master_key: &[u8],
    version: u32,
    integration_id: &str,
    pair: &KeyPair,
    nonce: [u8; NONCE_BYTES],
) -> String {
    let plaintext = serde_json::to_vec(pair).expect("a key pair serialises");
    let cipher = XChaCha20Poly1305::new(&secret::sealing_key(master_key).into());
    let payload = Payload {
        msg: &plaintext,
        aad: integration_id.as_bytes(),
    };
    let ciphertext = cipher
        .encrypt(XNonce::from_slice(&nonce), payload)
        .expect("XChaCha20-Poly1305 seals any message under 256 GiB");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ciphertext);
    format!("{VERSIONED}{version}.{}", STANDARD.encode(out))
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
pub(crate) fn open(
    ring: &Keyring,
    integration_id: &str,
    sealed: &str,
) -> Result<KeyPair, Unreadable> {
    let (version, body) = split(sealed).ok_or(Unreadable)?;
    let master_key = ring.version(version).map_err(|_| Unreadable)?;
    let bytes = STANDARD.decode(body).map_err(|_| Unreadable)?;
    if bytes.len() < NONCE_BYTES {
        return Err(Unreadable);
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
    let cipher = XChaCha20Poly1305::new(&secret::sealing_key(master_key.as_bytes()).into());
    let payload = Payload {
        msg: ciphertext,
        aad: integration_id.as_bytes(),
    };
    let plaintext = cipher
        .decrypt(XNonce::from_slice(nonce), payload)
        .map_err(|_| Unreadable)?;
    serde_json::from_slice(&plaintext).map_err(|_| Unreadable)
}

/// The value sealed again under the current version, or `None` when it already is.
pub(crate) fn reseal(
    ring: &Keyring,
    integration_id: &str,
    sealed: &str,
) -> Result<Option<String>, Unreadable> {
    let (version, _) = split(sealed).ok_or(Unreadable)?;
    if version == ring.current_version() {
        return Ok(None);
    }
    let pair = open(ring, integration_id, sealed)?;
    Ok(Some(seal(ring, integration_id, &pair)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MasterKey;

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

    #[test]
    fn a_sealed_pair_opens_only_for_its_integration_and_master_key() {
        let sealed = seal(&ring(), "int_a", &pair());
        assert_eq!(open(&ring(), "int_a", &sealed), Ok(pair()));
        assert_eq!(open(&ring(), "int_b", &sealed), Err(Unreadable));
        let other = Keyring::single(MasterKey::from_bytes(b"another master key"));
        assert_eq!(open(&other, "int_a", &sealed), Err(Unreadable));
        let mut damaged = sealed.clone().into_bytes();
        let last = damaged.len() - 3;
        damaged[last] = if damaged[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            open(&ring(), "int_a", std::str::from_utf8(&damaged).unwrap()),
            Err(Unreadable)
        );
        for bad in ["v1.", "v2.1.", "v2.0.AAAA", "v2.x.AAAA", "plain"] {
            assert_eq!(open(&ring(), "int_a", bad), Err(Unreadable), "{bad}");
        }
    }

    #[test]
    fn the_sealed_text_shows_neither_key_and_never_repeats() {
        let a = seal(&ring(), "int_a", &pair());
        let b = seal(&ring(), "int_a", &pair());
        assert_ne!(a, b, "a fresh nonce each time");
        for sealed in [&a, &b] {
            assert!(!sealed.contains("AKIDEXAMPLE"));
            assert!(!sealed.contains("EXAMPLEKEY"));
        }
        assert_eq!(format!("{:?}", pair()), "KeyPair(<redacted>)");
    }

    #[test]
    fn the_format_is_the_documented_one() {
        // "v2.<version>." then nonce ‖ ciphertext ‖ 16-byte tag, base64
        let sealed = seal_with_nonce(MASTER, 3, "int_a", &pair(), [7; NONCE_BYTES]);
        let bytes = STANDARD
            .decode(sealed.strip_prefix("v2.3.").unwrap())
            .unwrap();
        let plaintext = serde_json::to_vec(&pair()).unwrap();
        assert_eq!(bytes.len(), NONCE_BYTES + plaintext.len() + 16);
        assert_eq!(&bytes[..NONCE_BYTES], &[7; NONCE_BYTES]);
    }

    #[test]
    fn a_value_sealed_before_versions_opens_as_version_1_and_reseals_under_the_current() {
        // What the previous release wrote: "v1." + base64(nonce ‖ ciphertext ‖ tag).
        let legacy = seal_with_nonce(MASTER, 1, "int_a", &pair(), [9; NONCE_BYTES])
            .replacen("v2.1.", "v1.", 1);
        assert_eq!(open(&ring(), "int_a", &legacy), Ok(pair()));
        assert_eq!(
            reseal(&ring(), "int_a", &legacy),
            Ok(None),
            "already current"
        );
        let rotated = ring().rotated();
        let resealed = reseal(&rotated, "int_a", &legacy).unwrap().unwrap();
        assert!(resealed.starts_with("v2.2."));
        assert_eq!(open(&rotated, "int_a", &resealed), Ok(pair()));
        assert_eq!(
            open(&rotated.without(1).unwrap(), "int_a", &resealed),
            Ok(pair())
        );
        assert_eq!(
            open(&rotated.without(1).unwrap(), "int_a", &legacy),
            Err(Unreadable)
        );
    }
}

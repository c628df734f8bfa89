//! R2 token credentials sealed at rest: XChaCha20-Poly1305 keyed from the master key.
//!
//! `sealed = "v1." + base64(nonce (24 random bytes) ‖ ciphertext ‖ tag)`, over the JSON of the
//! key pair, with the integration id as associated data: a sealed value copied onto another
//! integration does not open. Rotating the master key makes every sealed value unreadable;
//! `set-source` seals the token again.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use relay_protocol::secret;
use serde::{Deserialize, Serialize};
use std::fmt;

const VERSION: &str = "v1.";
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

/// A sealed value that does not open: another master key, another integration, or damage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Unreadable;

/// Seals `pair` for `integration_id` under `master_key`, with a fresh random nonce.
pub(crate) fn seal(master_key: &[u8], integration_id: &str, pair: &KeyPair) -> String {
    let nonce: [u8; NONCE_BYTES] = rand::random();
    seal_with_nonce(master_key, integration_id, pair, nonce)
}

fn seal_with_nonce(
    master_key: &[u8],
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
    format!("{VERSION}{}", STANDARD.encode(out))
}

/// Opens what [`seal`] sealed for the same integration under the same master key.
pub(crate) fn open(
    master_key: &[u8],
    integration_id: &str,
    sealed: &str,
) -> Result<KeyPair, Unreadable> {
    let bytes = sealed
        .strip_prefix(VERSION)
        .and_then(|text| STANDARD.decode(text).ok())
        .ok_or(Unreadable)?;
    if bytes.len() < NONCE_BYTES {
        return Err(Unreadable);
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
    let cipher = XChaCha20Poly1305::new(&secret::sealing_key(master_key).into());
    let payload = Payload {
        msg: ciphertext,
        aad: integration_id.as_bytes(),
    };
    let plaintext = cipher
        .decrypt(XNonce::from_slice(nonce), payload)
        .map_err(|_| Unreadable)?;
    serde_json::from_slice(&plaintext).map_err(|_| Unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn pair() -> KeyPair {
        KeyPair {
            access_key_id: "AKIDEXAMPLE0001".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        }
    }

    #[test]
    fn a_sealed_pair_opens_only_for_its_integration_and_master_key() {
        let sealed = seal(MASTER, "int_a", &pair());
        assert_eq!(open(MASTER, "int_a", &sealed), Ok(pair()));
        assert_eq!(open(MASTER, "int_b", &sealed), Err(Unreadable));
        assert_eq!(
            open(b"another master key", "int_a", &sealed),
            Err(Unreadable)
        );
        let mut damaged = sealed.clone().into_bytes();
        let last = damaged.len() - 3;
        damaged[last] = if damaged[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            open(MASTER, "int_a", std::str::from_utf8(&damaged).unwrap()),
            Err(Unreadable)
        );
        assert_eq!(open(MASTER, "int_a", "v1."), Err(Unreadable));
        assert_eq!(open(MASTER, "int_a", "plain"), Err(Unreadable));
    }

    #[test]
    fn the_sealed_text_shows_neither_key_and_never_repeats() {
        let a = seal(MASTER, "int_a", &pair());
        let b = seal(MASTER, "int_a", &pair());
        assert_ne!(a, b, "a fresh nonce each time");
        for sealed in [&a, &b] {
            assert!(!sealed.contains("AKIDEXAMPLE"));
            assert!(!sealed.contains("EXAMPLEKEY"));
        }
        assert_eq!(format!("{:?}", pair()), "KeyPair(<redacted>)");
    }

    #[test]
    fn the_format_is_the_documented_one() {
        // nonce ‖ ciphertext ‖ 16-byte tag, base64, after "v1."
        let sealed = seal_with_nonce(MASTER, "int_a", &pair(), [7; NONCE_BYTES]);
        let bytes = STANDARD
            .decode(sealed.strip_prefix("v1.").unwrap())
            .unwrap();
        let plaintext = serde_json::to_vec(&pair()).unwrap();
        assert_eq!(bytes.len(), NONCE_BYTES + plaintext.len() + 16);
        assert_eq!(&bytes[..NONCE_BYTES], &[7; NONCE_BYTES]);
    }
}

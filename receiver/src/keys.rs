//! The master key's versions, and everything derived from them.
//!
//! A [`Keyring`] holds numbered versions of the master key (`1`, `2`, …) and which one is
//! current. Everything derived or sealed records the version it used: an integration's secret
//! (`key_version`, and each grace generation's), its external id (`external_id_key_version`),
//! a sealed R2 token (its `v2.<version>.` prefix; `v1.` is version 1). New values use the
//! current version; old ones keep working with theirs until `keys retire` removes it, which
//! `keys status` says is safe when nothing depends on it any more.
//!
//! The keyring's text is `{"current": 2, "keys": {"1": "<hex>", "2": "<hex>"}}`; a text that is
//! only hex (the key file or secret before versions) is version 1, current. Pure: reading and
//! writing it is the key source's ([`crate::backend::MasterKeySource`]).

use crate::backend::{BackendError, Kms, MasterKey};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Utc};
use rand::RngCore;
use relay_protocol::webhook::SigningKey;
use relay_protocol::{secret, Integration};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

pub(crate) use relay_protocol::integration::FIRST_KEY_VERSION;

/// The in-memory seal's nonce: XChaCha20-Poly1305's 24 bytes.
pub(crate) const NONCE_BYTES: usize = 24;

/// Bytes of a newly made key version.
pub(crate) const KEY_BYTES: usize = 32;

/// One version of the master key: its bytes in this process's memory, or two keys that never
/// leave AWS KMS (derivations by `GenerateMac` on an HMAC_SHA_256 key; seals by `Encrypt` /
/// `Decrypt` on a symmetric key, with the integration id as encryption context).
#[derive(Clone, PartialEq, Eq)]
pub enum KeyVersion {
    Local(MasterKey),
    Kms { mac_key: String, seal_key: String },
}

/// The master key's versions and the current one, with the KMS client its KMS-held versions
/// use and the MACs KMS computed (kept for the process's life: a secret is derived once per
/// integration and generation).
#[derive(Clone)]
pub struct Keyring {
    current: u32,
    /// Shared: a request clones the keyring, never its keys.
    keys: Arc<BTreeMap<u32, KeyVersion>>,
    kms: Option<Arc<dyn Kms>>,
    macs: Arc<Mutex<Macs>>,
}

/// KMS MACs already computed, by key version and message.
type Macs = HashMap<(u32, Vec<u8>), [u8; 32]>;

impl fmt::Debug for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyVersion::Local(_) => f.write_str("Local(<redacted>)"),
            KeyVersion::Kms { mac_key, seal_key } => {
                write!(f, "Kms {{ mac_key: {mac_key}, seal_key: {seal_key} }}")
            }
        }
    }
}

impl PartialEq for Keyring {
    fn eq(&self, other: &Self) -> bool {
        self.current == other.current && self.keys == other.keys
    }
}

impl Eq for Keyring {}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Keyring(current {}, versions {:?}, keys <redacted>)",
            self.current,
            self.keys.keys().collect::<Vec<_>>()
        )
    }
}

/// Why a value cannot be derived, sealed or opened.
#[derive(Debug)]
pub enum KeyError {
    /// A version the keyring does not hold (retired, or added by a `keys rotate` this process
    /// has not read yet).
    Missing(u32),
    /// KMS did not answer, or refused.
    Kms(BackendError),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Missing(version) => {
                write!(f, "master key version {version} is not in the keyring")
            }
            KeyError::Kms(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for KeyError {}

/// The keyring's stored form.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    current: u32,
    keys: BTreeMap<u32, StoredVersion>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StoredVersion {
    Hex(String),
    Kms {
        kms_mac_key: String,
        kms_seal_key: String,
    },
}

/// A KMS key id, ARN or alias as `keys rotate` takes it: what AWS accepts as a `KeyId`.
pub(crate) fn is_kms_key_id(id: &str) -> bool {
    (1..=2048).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_/:.".contains(c))
}

impl Keyring {
    /// A keyring of one key, version 1: what a key before versions is.
    pub fn single(key: MasterKey) -> Keyring {
        Keyring::of(
            FIRST_KEY_VERSION,
            BTreeMap::from([(FIRST_KEY_VERSION, KeyVersion::Local(key))]),
        )
    }

    fn of(current: u32, keys: BTreeMap<u32, KeyVersion>) -> Keyring {
        Keyring {
            current,
            keys: Arc::new(keys),
            kms: None,
            macs: Arc::default(),
        }
    }

    /// The KMS client the KMS-held versions use.
    #[must_use]
    pub fn with_kms(mut self, kms: Arc<dyn Kms>) -> Keyring {
        self.kms = Some(kms);
        self
    }

    /// Reads a keyring's text, or a bare hex key (version 1). The error never holds the text.
    pub fn parse(text: &str) -> Result<Keyring, &'static str> {
        if let Some(key) = MasterKey::from_hex(text) {
            return Ok(Keyring::single(key));
        }
        let stored: Stored = serde_json::from_str(text)
            .map_err(|_| "neither hex of at least 16 bytes nor a keyring's JSON")?;
        let keys = stored
            .keys
            .into_iter()
            .map(|(version, stored)| {
                if version == 0 {
                    return Err("a key version numbered 0");
                }
                let key = match stored {
                    StoredVersion::Hex(hex) => KeyVersion::Local(
                        MasterKey::from_hex(&hex)
                            .ok_or("a key version that is not 16+ bytes of hex")?,
                    ),
                    StoredVersion::Kms {
                        kms_mac_key,
                        kms_seal_key,
                    } => {
                        if !is_kms_key_id(&kms_mac_key) || !is_kms_key_id(&kms_seal_key) {
                            return Err("a KMS key id that is not one");
                        }
                        KeyVersion::Kms {
                            mac_key: kms_mac_key,
                            seal_key: kms_seal_key,
                        }
                    }
                };
                Ok((version, key))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        if !keys.contains_key(&stored.current) {
            return Err("its current version is not among its keys");
        }
        Ok(Keyring::of(stored.current, keys))
    }

    /// The stored form (local keys in hex): for the key file or the secret, never for a log.
    pub fn to_text(&self) -> String {
        let stored = Stored {
            current: self.current,
            keys: self
                .keys
                .iter()
                .map(|(version, key)| {
                    let stored = match key {
                        KeyVersion::Local(key) => StoredVersion::Hex(hex(key.as_bytes())),
                        KeyVersion::Kms { mac_key, seal_key } => StoredVersion::Kms {
                            kms_mac_key: mac_key.clone(),
                            kms_seal_key: seal_key.clone(),
                        },
                    };
                    (*version, stored)
                })
                .collect(),
        };
        serde_json::to_string(&stored).expect("a keyring serialises")
    }

    pub fn current_version(&self) -> u32 {
        self.current
    }

    pub fn version(&self, version: u32) -> Result<&KeyVersion, KeyError> {
        self.keys.get(&version).ok_or(KeyError::Missing(version))
    }

    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    /// Where a version's key is held: `local` or `kms`.
    pub(crate) fn held(&self, version: u32) -> Option<&'static str> {
        self.keys.get(&version).map(|key| match key {
            KeyVersion::Local(_) => "local",
            KeyVersion::Kms { .. } => "kms",
        })
    }

    /// This keyring with a new version made current: a random local key, or KMS keys.
    #[must_use]
    pub fn rotated(&self, kms: Option<(String, String)>) -> Keyring {
        let key = match kms {
            Some((mac_key, seal_key)) => KeyVersion::Kms { mac_key, seal_key },
            None => {
                let mut key = [0u8; KEY_BYTES];
                rand::rng().fill_bytes(&mut key);
                KeyVersion::Local(MasterKey::from_bytes(&key))
            }
        };
        let next = self.keys.keys().max().copied().unwrap_or(0) + 1;
        let mut keys = BTreeMap::clone(&self.keys);
        keys.insert(next, key);
        Keyring {
            current: next,
            keys: Arc::new(keys),
            kms: self.kms.clone(),
            macs: Arc::clone(&self.macs),
        }
    }

    /// This keyring without `version`'s key (it is destroyed). The current version cannot go.
    pub fn without(&self, version: u32) -> Result<Keyring, String> {
        if version == self.current {
            return Err(format!(
                "version {version} is the current one: `keys rotate` first"
            ));
        }
        self.version(version).map_err(|e| e.to_string())?;
        let mut keys = BTreeMap::clone(&self.keys);
        keys.remove(&version);
        Ok(Keyring {
            current: self.current,
            keys: Arc::new(keys),
            kms: self.kms.clone(),
            macs: Arc::clone(&self.macs),
        })
    }

    fn kms(&self) -> Result<&Arc<dyn Kms>, KeyError> {
        self.kms.as_ref().ok_or_else(|| {
            KeyError::Kms(BackendError::new(
                "kms",
                "the keyring holds a KMS key but this process has no KMS client (--backend aws)",
            ))
        })
    }

    /// HMAC-SHA256 of `message` under `version`: in memory, or by KMS `GenerateMac` (each
    /// result kept for the process's life).
    pub(crate) async fn mac(&self, version: u32, message: &[u8]) -> Result<[u8; 32], KeyError> {
        match self.version(version)? {
            KeyVersion::Local(key) => Ok(secret::mac(key.as_bytes(), message)),
            KeyVersion::Kms { mac_key, .. } => {
                // GenerateMac takes messages of at most 4,096 bytes (KMS API reference).
                if message.len() > 4096 {
                    return Err(KeyError::Kms(BackendError::new(
                        "kms",
                        "a message over GenerateMac's 4,096 bytes",
                    )));
                }
                let cache_key = (version, message.to_vec());
                if let Some(mac) = self
                    .macs
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&cache_key)
                {
                    return Ok(*mac);
                }
                let mac = self
                    .kms()?
                    .generate_mac(mac_key, message)
                    .await
                    .map_err(KeyError::Kms)?;
                let mac: [u8; 32] = mac.try_into().map_err(|_| {
                    KeyError::Kms(BackendError::new(
                        "kms",
                        "GenerateMac answered a MAC that is not 32 bytes: the key must be HMAC_256",
                    ))
                })?;
                self.macs
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(cache_key, mac);
                Ok(mac)
            }
        }
    }

    /// Seals `plaintext` for `integration_id` under the current version; answers the body
    /// [`crate::sealed`] frames.
    pub(crate) async fn seal_bytes(
        &self,
        integration_id: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        match self.version(self.current)? {
            KeyVersion::Local(key) => Ok(local_seal(key, integration_id, plaintext)),
            KeyVersion::Kms { seal_key, .. } => self
                .kms()?
                .encrypt(seal_key, integration_id, plaintext)
                .await
                .map_err(KeyError::Kms),
        }
    }

    /// Opens what [`Keyring::seal_bytes`] sealed under `version`; `None` when it does not open.
    pub(crate) async fn open_bytes(
        &self,
        version: u32,
        integration_id: &str,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, KeyError> {
        match self.version(version)? {
            KeyVersion::Local(key) => Ok(local_open(key, integration_id, body)),
            KeyVersion::Kms { seal_key, .. } => self
                .kms()?
                .decrypt(seal_key, integration_id, body)
                .await
                .map_err(KeyError::Kms),
        }
    }

    /// The signing keys of every secret of `integration` that verifies at `now`; a secret
    /// whose version the keyring lacks (retired) has none.
    pub(crate) async fn signing_keys(
        &self,
        integration: &Integration,
        now: DateTime<Utc>,
    ) -> Result<Vec<SigningKey>, KeyError> {
        let mut keys = Vec::new();
        for (generation, version) in integration.valid_secrets(now) {
            match self.signing_key(integration, generation, version).await {
                Ok(key) => keys.push(key),
                Err(KeyError::Missing(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(keys)
    }

    async fn signing_key(
        &self,
        integration: &Integration,
        generation: u32,
        version: u32,
    ) -> Result<SigningKey, KeyError> {
        let message = secret::event_source_message(&integration.id, generation);
        let mac = self.mac(version, &message).await?;
        Ok(SigningKey::from_bytes(mac.to_vec()))
    }

    /// The current secret generation's signing key.
    pub(crate) async fn current_signing_key(
        &self,
        integration: &Integration,
    ) -> Result<SigningKey, KeyError> {
        self.signing_key(integration, integration.generation, integration.key_version)
            .await
    }

    /// The current secret, as the customer is shown it.
    pub(crate) async fn current_secret(
        &self,
        integration: &Integration,
    ) -> Result<String, KeyError> {
        Ok(self.current_signing_key(integration).await?.to_secret())
    }

    /// The integration's external id, from the version it was issued with.
    pub(crate) async fn external_id(&self, integration: &Integration) -> Result<String, KeyError> {
        let message = secret::external_id_message(&integration.id);
        let mac = self
            .mac(integration.external_id_key_version, &message)
            .await?;
        Ok(secret::external_id_from_mac(&mac))
    }
}

/// The in-memory seal: nonce ‖ ciphertext ‖ tag, with a fresh random nonce.
pub(crate) fn local_seal(key: &MasterKey, integration_id: &str, plaintext: &[u8]) -> Vec<u8> {
    local_seal_with_nonce(key, integration_id, plaintext, rand::random())
}

pub(crate) fn local_seal_with_nonce(
    key: &MasterKey,
    integration_id: &str,
    plaintext: &[u8],
    nonce: [u8; NONCE_BYTES],
) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(&secret::sealing_key(key.as_bytes()).into());
    let payload = Payload {
        msg: plaintext,
        aad: integration_id.as_bytes(),
    };
    let ciphertext = cipher
        .encrypt(XNonce::from_slice(&nonce), payload)
        .expect("XChaCha20-Poly1305 seals any message under 256 GiB");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ciphertext);
    out
}

/// Opens an in-memory seal; `None` when it does not open.
pub(crate) fn local_open(key: &MasterKey, integration_id: &str, body: &[u8]) -> Option<Vec<u8>> {
    if body.len() < NONCE_BYTES {
        return None;
    }
    let (nonce, ciphertext) = body.split_at(NONCE_BYTES);
    let cipher = XChaCha20Poly1305::new(&secret::sealing_key(key.as_bytes()).into());
    let payload = Payload {
        msg: ciphertext,
        aad: integration_id.as_bytes(),
    };
    cipher.decrypt(XNonce::from_slice(nonce), payload).ok()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_protocol::integration::NewIntegration;
    use relay_protocol::Provider;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f";

    #[test]
    fn a_bare_hex_key_is_version_1_and_a_keyring_round_trips() {
        let ring = Keyring::parse(HEX).unwrap();
        assert_eq!(ring.current_version(), 1);
        assert_eq!(
            ring.version(1).unwrap(),
            &KeyVersion::Local(MasterKey::from_bytes(&(0u8..16).collect::<Vec<_>>()))
        );
        let rotated = ring.rotated(None);
        assert_eq!(rotated.current_version(), 2);
        let with_kms = rotated.rotated(Some(("alias/mac".into(), "alias/seal".into())));
        assert_eq!(with_kms.held(3), Some("kms"));
        let text = with_kms.to_text();
        assert_eq!(Keyring::parse(&text).unwrap(), with_kms);
        assert!(text.contains(r#""3":{"kms_mac_key":"alias/mac","kms_seal_key":"alias/seal"}"#));
        assert!(!format!("{with_kms:?}").contains(HEX));
    }

    #[test]
    fn a_damaged_keyring_is_named_without_its_content() {
        for bad in [
            "nothex-secretvalue",
            r#"{"current": 2, "keys": {"1": "000102030405060708090a0b0c0d0e0f"}}"#,
            r#"{"current": 1, "keys": {"1": "0011"}}"#,
            r#"{"current": 0, "keys": {"0": "000102030405060708090a0b0c0d0e0f"}}"#,
            r#"{"current": 1, "keys": {"1": {"kms_mac_key": "a b", "kms_seal_key": "x"}}}"#,
        ] {
            let error = Keyring::parse(bad).unwrap_err();
            assert!(
                !error.contains("secretvalue") && !error.contains("0011"),
                "{error}"
            );
        }
    }

    #[test]
    fn the_current_version_cannot_be_retired_and_a_retired_one_is_missing() {
        let ring = Keyring::parse(HEX).unwrap().rotated(None);
        assert!(ring.without(2).is_err());
        let retired = ring.without(1).unwrap();
        assert!(matches!(retired.version(1), Err(KeyError::Missing(1))));
        assert_eq!(retired.versions().collect::<Vec<_>>(), [2]);
    }

    #[tokio::test]
    async fn each_value_is_derived_from_the_version_it_records() {
        let ring = Keyring::parse(HEX).unwrap().rotated(None);
        let KeyVersion::Local(v1_key) = ring.version(1).unwrap().clone() else {
            panic!("local");
        };
        let now = Utc::now();
        let mut integration = NewIntegration::new(Provider::S3, "docs")
            .build("abc", now)
            .unwrap();
        let v1 = ring.current_secret(&integration).await.unwrap();
        assert_eq!(
            v1,
            secret::event_source_secret(v1_key.as_bytes(), &integration.id, 1)
        );
        assert_eq!(
            ring.external_id(&integration).await.unwrap(),
            secret::external_id(v1_key.as_bytes(), &integration.id)
        );
        integration
            .rotate(now, Some(now + chrono::Duration::hours(1)), 2)
            .unwrap();
        let v2 = ring.current_secret(&integration).await.unwrap();
        assert_ne!(v1, v2);
        let keys = ring.signing_keys(&integration, now).await.unwrap();
        let secrets: Vec<String> = keys.iter().map(SigningKey::to_secret).collect();
        assert_eq!(secrets, [v2.clone(), v1.clone()]);
        // Without version 1, the replaced secret cannot verify.
        let retired = ring.without(1).unwrap();
        let keys = retired.signing_keys(&integration, now).await.unwrap();
        assert_eq!(keys.len(), 1);
    }

    #[tokio::test]
    async fn a_kms_version_without_a_client_is_named() {
        let ring = Keyring::parse(HEX)
            .unwrap()
            .rotated(Some(("alias/mac".into(), "alias/seal".into())));
        let error = ring.mac(2, b"m").await.unwrap_err();
        assert!(error.to_string().contains("no KMS client"), "{error}");
    }

    #[test]
    fn the_in_memory_body_is_the_documented_one() {
        // nonce ‖ ciphertext ‖ 16-byte tag
        let plaintext = br#"{"access_key_id":"a"}"#.to_vec();
        let key = MasterKey::from_bytes(b"0123456789abcdef0123456789abcdef");
        let body = local_seal_with_nonce(&key, "int_a", &plaintext, [7; NONCE_BYTES]);
        assert_eq!(body.len(), NONCE_BYTES + plaintext.len() + 16);
        assert_eq!(&body[..NONCE_BYTES], &[7; NONCE_BYTES]);
        assert_eq!(local_open(&key, "int_a", &body), Some(plaintext));
    }
}

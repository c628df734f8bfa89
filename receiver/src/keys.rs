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

use crate::backend::MasterKey;
use chrono::{DateTime, Utc};
use rand::RngCore;
use relay_protocol::webhook::SigningKey;
use relay_protocol::{secret, Integration};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub(crate) use relay_protocol::integration::FIRST_KEY_VERSION;

/// Bytes of a newly made key version.
pub(crate) const KEY_BYTES: usize = 32;

/// The master key's versions and the current one.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyring {
    current: u32,
    keys: BTreeMap<u32, MasterKey>,
}

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

/// A value derived from a key version the keyring does not hold (retired, or added by a
/// `keys rotate` this process has not read yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingVersion(pub u32);

impl fmt::Display for MissingVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "master key version {} is not in the keyring", self.0)
    }
}

impl std::error::Error for MissingVersion {}

/// The keyring's stored form.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    current: u32,
    keys: BTreeMap<u32, String>,
}

impl Keyring {
    /// A keyring of one key, version 1: what a key before versions is.
    pub fn single(key: MasterKey) -> Keyring {
        Keyring {
            current: FIRST_KEY_VERSION,
            keys: BTreeMap::from([(FIRST_KEY_VERSION, key)]),
        }
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
            .map(|(version, hex)| {
                let key = MasterKey::from_hex(&hex)
                    .ok_or("a key version that is not 16+ bytes of hex")?;
                (version >= 1)
                    .then_some((version, key))
                    .ok_or("a key version numbered 0")
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        if !keys.contains_key(&stored.current) {
            return Err("its current version is not among its keys");
        }
        Ok(Keyring {
            current: stored.current,
            keys,
        })
    }

    /// The stored form (the keys in hex): for the key file or the secret, never for a log.
    pub fn to_text(&self) -> String {
        let stored = Stored {
            current: self.current,
            keys: self
                .keys
                .iter()
                .map(|(version, key)| (*version, hex(key.as_bytes())))
                .collect(),
        };
        serde_json::to_string(&stored).expect("a keyring serialises")
    }

    pub fn current_version(&self) -> u32 {
        self.current
    }

    pub fn current(&self) -> &MasterKey {
        &self.keys[&self.current]
    }

    pub fn version(&self, version: u32) -> Result<&MasterKey, MissingVersion> {
        self.keys.get(&version).ok_or(MissingVersion(version))
    }

    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    /// This keyring with a new random version, made current.
    #[must_use]
    pub fn rotated(&self) -> Keyring {
        let mut key = [0u8; KEY_BYTES];
        rand::rng().fill_bytes(&mut key);
        let next = self.keys.keys().max().copied().unwrap_or(0) + 1;
        let mut keys = self.keys.clone();
        keys.insert(next, MasterKey::from_bytes(&key));
        Keyring {
            current: next,
            keys,
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
        let mut keys = self.keys.clone();
        keys.remove(&version);
        Ok(Keyring {
            current: self.current,
            keys,
        })
    }

    /// The signing keys of every secret of `integration` that verifies at `now`, and the
    /// versions none could be derived from.
    pub(crate) fn signing_keys(
        &self,
        integration: &Integration,
        now: DateTime<Utc>,
    ) -> (Vec<SigningKey>, Vec<u32>) {
        let mut keys = Vec::new();
        let mut missing = Vec::new();
        for (generation, version) in integration.valid_secrets(now) {
            match self.version(version) {
                Ok(master) => keys.push(secret::event_source_key(
                    master.as_bytes(),
                    &integration.id,
                    generation,
                )),
                Err(MissingVersion(v)) => missing.push(v),
            }
        }
        (keys, missing)
    }

    /// The current secret generation's signing key.
    pub(crate) fn current_signing_key(
        &self,
        integration: &Integration,
    ) -> Result<SigningKey, MissingVersion> {
        let master = self.version(integration.key_version)?;
        Ok(secret::event_source_key(
            master.as_bytes(),
            &integration.id,
            integration.generation,
        ))
    }

    /// The current secret, as the customer is shown it.
    pub(crate) fn current_secret(
        &self,
        integration: &Integration,
    ) -> Result<String, MissingVersion> {
        self.current_signing_key(integration)
            .map(|key| key.to_secret())
    }

    /// The integration's external id, from the version it was issued with.
    pub(crate) fn external_id(&self, integration: &Integration) -> Result<String, MissingVersion> {
        let master = self.version(integration.external_id_key_version)?;
        Ok(secret::external_id(master.as_bytes(), &integration.id))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What depends on each key version: `keys status`'s counts, and what `keys retire` checks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Dependents {
    /// Secrets that verify (current generations and those in their grace).
    pub secrets: u64,
    /// External ids a read role trusts.
    pub external_ids: u64,
    /// Sealed R2 tokens.
    pub sealed_tokens: u64,
    /// The integrations behind the counts.
    pub integrations: Vec<String>,
}

impl Dependents {
    pub(crate) fn total(&self) -> u64 {
        self.secrets + self.external_ids + self.sealed_tokens
    }
}

/// Per version, what of `integrations` depends on it at `now`.
pub(crate) fn dependents(
    integrations: &[Integration],
    now: DateTime<Utc>,
) -> BTreeMap<u32, Dependents> {
    let mut out: BTreeMap<u32, Dependents> = BTreeMap::new();
    for integration in integrations {
        let mut touched = Vec::new();
        for (_, version) in integration.valid_secrets(now) {
            out.entry(version).or_default().secrets += 1;
            touched.push(version);
        }
        if integration.uses_external_id() {
            let version = integration.external_id_key_version;
            out.entry(version).or_default().external_ids += 1;
            touched.push(version);
        }
        if let Some(version) = crate::sealed::sealed_version(integration) {
            out.entry(version).or_default().sealed_tokens += 1;
            touched.push(version);
        }
        touched.sort_unstable();
        touched.dedup();
        for version in touched {
            out.entry(version)
                .or_default()
                .integrations
                .push(integration.id.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_protocol::integration::{NewIntegration, ReadAccess};
    use relay_protocol::Provider;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f";

    #[test]
    fn a_bare_hex_key_is_version_1_and_a_keyring_round_trips() {
        let ring = Keyring::parse(HEX).unwrap();
        assert_eq!(ring.current_version(), 1);
        assert_eq!(ring.current().as_bytes(), (0u8..16).collect::<Vec<_>>());
        let rotated = ring.rotated();
        assert_eq!(rotated.current_version(), 2);
        assert_eq!(rotated.version(1).unwrap(), ring.current());
        let text = rotated.to_text();
        assert_eq!(Keyring::parse(&text).unwrap(), rotated);
        assert!(!format!("{rotated:?}").contains(HEX));
    }

    #[test]
    fn a_damaged_keyring_is_named_without_its_content() {
        for bad in [
            "nothex-secretvalue",
            r#"{"current": 2, "keys": {"1": "000102030405060708090a0b0c0d0e0f"}}"#,
            r#"{"current": 1, "keys": {"1": "0011"}}"#,
            r#"{"current": 0, "keys": {"0": "000102030405060708090a0b0c0d0e0f"}}"#,
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
        let ring = Keyring::parse(HEX).unwrap().rotated();
        assert!(ring.without(2).is_err());
        let retired = ring.without(1).unwrap();
        assert_eq!(retired.version(1), Err(MissingVersion(1)));
        assert_eq!(retired.versions().collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn each_value_is_derived_from_the_version_it_records() {
        let ring = Keyring::parse(HEX).unwrap().rotated();
        let now = Utc::now();
        let mut integration = NewIntegration::new(Provider::S3, "docs")
            .build("abc", now)
            .unwrap();
        let v1 = ring.current_secret(&integration).unwrap();
        assert_eq!(
            v1,
            secret::event_source_secret(ring.version(1).unwrap().as_bytes(), &integration.id, 1)
        );
        integration
            .rotate(now, Some(now + chrono::Duration::hours(1)), 2)
            .unwrap();
        let v2 = ring.current_secret(&integration).unwrap();
        assert_ne!(v1, v2);
        let (keys, missing) = ring.signing_keys(&integration, now);
        let secrets: Vec<String> = keys.iter().map(SigningKey::to_secret).collect();
        assert_eq!(secrets, [v2.clone(), v1.clone()]);
        assert!(missing.is_empty());
        // Without version 1, the replaced secret cannot verify, and says which version.
        let (keys, missing) = ring.without(1).unwrap().signing_keys(&integration, now);
        assert_eq!((keys.len(), missing), (1, vec![1]));
    }

    #[test]
    fn dependents_count_secrets_external_ids_and_tokens_per_version() {
        let ring = Keyring::parse(HEX).unwrap().rotated();
        let now = Utc::now();
        let mut s3 = NewIntegration::new(Provider::S3, "docs")
            .build("aaa", now)
            .unwrap();
        s3.read_access = Some(ReadAccess::AssumeRole {
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
        });
        let mut r2 = NewIntegration {
            account: Some("4f3c1e0d9b8a7c6d5e4f3a2b1c0d9e8f".into()),
            ..NewIntegration::new(Provider::R2, "uploads")
        }
        .build("bbb", now)
        .unwrap();
        let pair = crate::sealed::KeyPair {
            access_key_id: "a".into(),
            secret_access_key: "b".into(),
        };
        r2.read_access = Some(ReadAccess::SealedKeys {
            sealed: crate::sealed::seal(&ring, &r2.id, &pair),
        });
        r2.key_version = 2;
        let counts = dependents(&[s3.clone(), r2.clone()], now);
        assert_eq!(
            (
                counts[&1].secrets,
                counts[&1].external_ids,
                counts[&1].sealed_tokens
            ),
            (1, 1, 0)
        );
        assert_eq!(
            (
                counts[&2].secrets,
                counts[&2].external_ids,
                counts[&2].sealed_tokens
            ),
            (1, 0, 1)
        );
        assert_eq!(counts[&1].integrations, [s3.id.clone()]);
        assert_eq!(counts[&2].integrations, [r2.id.clone()]);
    }
}

//! AWS KMS for master key versions it holds ([`Kms`]): `GenerateMac` (HMAC_SHA_256) derives
//! secrets and external ids, `Encrypt` / `Decrypt` seal R2 tokens with the integration id as
//! encryption context. The key material never leaves KMS; the MACs are kept by the keyring for
//! the process's life ([`crate::keys::Keyring::mac`]).
//!
//! The function's role may `kms:GenerateMac` on the MAC key and `kms:Decrypt` on the seal key;
//! only the operator's role may `kms:Encrypt` (sealing happens in `set-source` and `keys
//! reseal`). The receiver module writes those key policies.

use super::{BackendError, Kms};
use async_trait::async_trait;
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::MacAlgorithmSpec;
use aws_sdk_kms::Client;

const BACKEND: &str = "kms";
/// The encryption context's key: a sealed token opens only for its integration.
const CONTEXT_KEY: &str = "integration_id";

pub struct KmsKeys {
    client: Client,
}

impl KmsKeys {
    pub fn new(client: Client) -> Self {
        KmsKeys { client }
    }
}

#[async_trait]
impl Kms for KmsKeys {
    async fn generate_mac(&self, key_id: &str, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        let out = self
            .client
            .generate_mac()
            .key_id(key_id)
            .mac_algorithm(MacAlgorithmSpec::HmacSha256)
            .message(Blob::new(message))
            .send()
            .await
            .map_err(|e| BackendError::caused_by(BACKEND, e))?;
        out.mac
            .map(Blob::into_inner)
            .ok_or_else(|| BackendError::new(BACKEND, "GenerateMac answered no MAC"))
    }

    async fn encrypt(
        &self,
        key_id: &str,
        integration_id: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        let out = self
            .client
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(plaintext))
            .encryption_context(CONTEXT_KEY, integration_id)
            .send()
            .await
            .map_err(|e| BackendError::caused_by(BACKEND, e))?;
        out.ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| BackendError::new(BACKEND, "Encrypt answered no ciphertext"))
    }

    async fn decrypt(
        &self,
        key_id: &str,
        integration_id: &str,
        ciphertext: &[u8],
    ) -> Result<Option<Vec<u8>>, BackendError> {
        let answer = self
            .client
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(ciphertext))
            .encryption_context(CONTEXT_KEY, integration_id)
            .send()
            .await;
        match answer {
            Ok(out) => Ok(out.plaintext.map(Blob::into_inner)),
            // Another integration's (the context differs), another key's, or damaged.
            Err(error) if error.code() == Some("InvalidCiphertextException") => Ok(None),
            Err(error) => Err(BackendError::caused_by(BACKEND, error)),
        }
    }
}

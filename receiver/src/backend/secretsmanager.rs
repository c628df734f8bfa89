//! Secrets Manager: the master key's keyring on AWS, fetched once per cold start and kept in
//! memory (fetched again when a request needs a version the kept one lacks: a `keys rotate`
//! since the cold start).
//!
//! The secret holds the keyring's JSON in `SecretString` (`keys rotate` writes it), or, as
//! before versions, the key as hex (version 1; Terraform generates it) or as raw bytes in
//! `SecretBinary`. A failed fetch is not cached: the request is answered 503
//! `backend_unavailable` and the next one tries again.

use super::{BackendError, KeyCache, Keyring, Kms, MasterKey, MasterKeySource};
use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use std::sync::Arc;

const BACKEND: &str = "secretsmanager";

pub struct SecretsManagerKey {
    client: Client,
    secret_id: String,
    cache: KeyCache,
    /// For the keyring's KMS-held versions.
    kms: Option<Arc<dyn Kms>>,
}

impl SecretsManagerKey {
    pub fn new(client: Client, secret_id: impl Into<String>) -> Self {
        SecretsManagerKey {
            client,
            secret_id: secret_id.into(),
            cache: KeyCache::default(),
            kms: None,
        }
    }

    /// The KMS client the keyring's KMS-held versions use.
    #[must_use]
    pub fn with_kms(mut self, kms: Arc<dyn Kms>) -> Self {
        self.kms = Some(kms);
        self
    }

    async fn fetch(&self) -> Result<Keyring, BackendError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| BackendError::caused_by(BACKEND, e))?;
        let ring = match (out.secret_string(), out.secret_binary()) {
            (Some(text), _) => Keyring::parse(text).map_err(|why| {
                BackendError::new(
                    BACKEND,
                    format!(
                        "secret {} is not a key: {why} (its value is not shown)",
                        self.secret_id
                    ),
                )
            })?,
            (None, Some(blob)) if blob.as_ref().len() >= 16 => {
                Keyring::single(MasterKey::from_bytes(blob.as_ref()))
            }
            _ => {
                return Err(BackendError::new(
                    BACKEND,
                    format!("secret {} holds no usable key", self.secret_id),
                ))
            }
        };
        crate::events::MasterKeyLoaded {
            source: BACKEND,
            secret_id: &self.secret_id,
        }
        .emit();
        Ok(match &self.kms {
            Some(kms) => ring.with_kms(Arc::clone(kms)),
            None => ring,
        })
    }
}

#[async_trait]
impl MasterKeySource for SecretsManagerKey {
    async fn keyring(&self) -> Result<Keyring, BackendError> {
        self.cache.get(None, || self.fetch()).await
    }

    async fn keyring_with(&self, version: u32) -> Result<Keyring, BackendError> {
        self.cache.get(Some(version), || self.fetch()).await
    }

    /// A new version of the secret (`PutSecretValue`; Secrets Manager keeps the previous one
    /// as `AWSPREVIOUS`), after checking that it still holds `expected`.
    async fn replace(&self, expected: &Keyring, new: &Keyring) -> Result<(), BackendError> {
        if &self.fetch().await? != expected {
            return Err(BackendError::new(
                BACKEND,
                format!(
                    "secret {} changed while this command ran: run it again",
                    self.secret_id
                ),
            ));
        }
        self.client
            .put_secret_value()
            .secret_id(&self.secret_id)
            .secret_string(new.to_text())
            .send()
            .await
            .map_err(|e| BackendError::caused_by(BACKEND, e))?;
        self.cache.forget().await;
        Ok(())
    }
}

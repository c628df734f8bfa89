//! Secrets Manager: the master key on AWS, fetched once per cold start and kept in memory.
//!
//! The secret holds the key as hex in `SecretString` (as `master.key` does locally; Terraform
//! generates it) or as raw bytes in `SecretBinary`. A failed fetch is not cached: the request
//! is answered 503 `backend_unavailable` and the next one tries again.

use super::{BackendError, MasterKey, MasterKeySource};
use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use tokio::sync::OnceCell;

const BACKEND: &str = "secretsmanager";

pub struct SecretsManagerKey {
    client: Client,
    secret_id: String,
    key: OnceCell<MasterKey>,
}

impl SecretsManagerKey {
    pub fn new(client: Client, secret_id: impl Into<String>) -> Self {
        SecretsManagerKey {
            client,
            secret_id: secret_id.into(),
            key: OnceCell::new(),
        }
    }

    async fn fetch(&self) -> Result<MasterKey, BackendError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| BackendError::caused_by(BACKEND, e))?;
        let key = match (out.secret_string(), out.secret_binary()) {
            (Some(text), _) => MasterKey::from_hex(text).ok_or_else(|| {
                BackendError::new(
                    BACKEND,
                    format!(
                        "secret {} is not at least 16 bytes of hex (its value is not shown)",
                        self.secret_id
                    ),
                )
            })?,
            (None, Some(blob)) if blob.as_ref().len() >= 16 => MasterKey::from_bytes(blob.as_ref()),
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
        Ok(key)
    }
}

#[async_trait]
impl MasterKeySource for SecretsManagerKey {
    async fn master_key(&self) -> Result<MasterKey, BackendError> {
        self.key.get_or_try_init(|| self.fetch()).await.cloned()
    }
}

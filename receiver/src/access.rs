//! An integration's read access resolved with the master key, before an adapter sees it: the
//! role to assume with the integration's external id, or the R2 token opened. The adapters that
//! list and look up objects never hold the master key, and never derive or unseal anything.

use crate::backend::bucket::{AccessError, ReadCredentials};
use crate::keys::{KeyError, Keyring};
use crate::sealed;
use relay_protocol::integration::ReadAccess;
use relay_protocol::names;
use relay_protocol::{Integration, Provider};

impl ReadCredentials {
    /// The credentials that list `integration`'s one bucket, or why there are none.
    pub(crate) async fn resolve(
        integration: &Integration,
        ring: &Keyring,
    ) -> Result<Self, AccessError> {
        let access = integration
            .read_access
            .as_ref()
            .ok_or(AccessError::NoReadAccess)?;
        match (integration.provider, access) {
            (Provider::S3, ReadAccess::AssumeRole { role_arn }) => {
                // Checked at `create` and `set-source` too; a row written before those checks
                // must not reach a host either.
                let region_ok = integration
                    .region
                    .as_deref()
                    .is_none_or(names::is_aws_region);
                if !names::is_role_arn(role_arn) || !region_ok {
                    return Err(AccessError::Misconfigured(
                        "the role ARN or the region breaks AWS's naming rules".into(),
                    ));
                }
                Ok(ReadCredentials::AssumeRole {
                    role_arn: role_arn.clone(),
                    external_id: ring.external_id(integration).await.map_err(
                        |error| match error {
                            KeyError::Missing(_) => AccessError::Misconfigured(format!(
                            "its external id's {error}: `keys reissue-external-ids` issues it again"
                        )),
                            KeyError::Kms(error) => AccessError::Unreachable(error.detail()),
                        },
                    )?,
                    region: integration.region.clone(),
                })
            }
            (Provider::R2, ReadAccess::SealedKeys { sealed }) => {
                let account = integration.account.clone().ok_or_else(|| {
                    AccessError::Misconfigured(
                        "an R2 integration needs its --account to reach its endpoint".into(),
                    )
                })?;
                if !names::is_r2_account_id(&account) {
                    return Err(AccessError::Misconfigured(
                        "the account is not a Cloudflare account id (32 hexadecimal digits)".into(),
                    ));
                }
                let keys = sealed::open(ring, &integration.id, sealed)
                    .await
                    .map_err(|error| match error {
                        sealed::Unreadable::Sealed => AccessError::SealedUnreadable,
                        sealed::Unreadable::Unavailable(error) => {
                            AccessError::Unreachable(error.to_string())
                        }
                    })?;
                Ok(ReadCredentials::R2Token { account, keys })
            }
            (provider, access) => Err(AccessError::Misconfigured(format!(
                "a {provider} integration cannot use {}",
                access.describe()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealed::KeyPair;
    use chrono::Utc;
    use relay_protocol::integration::NewIntegration;

    const MASTER: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn ring(key: &[u8]) -> Keyring {
        Keyring::single(crate::backend::MasterKey::from_bytes(key))
    }

    fn integration(provider: Provider, access: Option<ReadAccess>) -> Integration {
        let mut integration = NewIntegration {
            account: Some(
                match provider {
                    Provider::S3 => "123456789012",
                    Provider::R2 => "4f3c1e0d9b8a7c6d5e4f3a2b1c0d9e8f",
                }
                .into(),
            ),
            ..NewIntegration::new(provider, "uploads")
        }
        .build("t", Utc::now())
        .unwrap();
        integration.read_access = access;
        integration
    }

    #[tokio::test]
    async fn a_role_gets_the_integrations_external_id_and_a_token_opens_only_with_its_key() {
        let role = ReadAccess::AssumeRole {
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
        };
        let s3 = integration(Provider::S3, Some(role));
        match ReadCredentials::resolve(&s3, &ring(MASTER)).await.unwrap() {
            ReadCredentials::AssumeRole { external_id, .. } => {
                assert_eq!(
                    external_id,
                    relay_protocol::secret::external_id(MASTER, &s3.id)
                );
            }
            other => panic!("{other:?}"),
        }
        let keys = KeyPair {
            access_key_id: "id".into(),
            secret_access_key: "secret".into(),
        };
        let mut r2 = integration(Provider::R2, None);
        r2.read_access = Some(ReadAccess::SealedKeys {
            sealed: sealed::seal(&ring(MASTER), &r2.id, &keys).await.unwrap(),
        });
        match ReadCredentials::resolve(&r2, &ring(MASTER)).await.unwrap() {
            ReadCredentials::R2Token {
                account,
                keys: opened,
            } => {
                assert_eq!(
                    (account.as_str(), opened),
                    ("4f3c1e0d9b8a7c6d5e4f3a2b1c0d9e8f", keys)
                );
            }
            other => panic!("{other:?}"),
        }
        let other_key = b"fedcba9876543210fedcba9876543210";
        let error = ReadCredentials::resolve(&r2, &ring(other_key))
            .await
            .unwrap_err();
        assert_eq!(error.name(), "sealed_token_unreadable");
        assert!(
            !format!("{:?}", ReadCredentials::resolve(&r2, &ring(MASTER)).await).contains("secret")
        );
    }

    #[tokio::test]
    async fn missing_or_mismatched_access_is_named() {
        let none = integration(Provider::S3, None);
        assert_eq!(
            ReadCredentials::resolve(&none, &ring(MASTER))
                .await
                .unwrap_err()
                .name(),
            "no_read_access"
        );
        let each = ReadAccess::AssumeRoleInEachAccount {
            role_name: "r".into(),
        };
        let scoped = integration(Provider::S3, Some(each));
        assert_eq!(
            ReadCredentials::resolve(&scoped, &ring(MASTER))
                .await
                .unwrap_err()
                .name(),
            "read_access_misconfigured"
        );
    }
}

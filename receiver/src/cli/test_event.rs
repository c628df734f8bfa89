//! The test event of `integrations test --receiver-url`: a request built exactly as the
//! integration's event source builds one (the worker's signed batch for R2, EventBridge's bearer
//! call for S3), for a key under [`TEST_KEY_PREFIX`], and the receiver's answer read back as
//! named steps ([`super::verdict`]). Pure: the CLI sends the request (`cli::connection`) and
//! reports.
//!
//! The receiver authenticates a test event and checks it against the integration like any
//! other (provider, account, bucket, mode, paused), then answers it `skipped` / `test_event`
//! once its ledger and queue answer a read; it never becomes a job.

use crate::auth::Sender;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::distr::{Alphanumeric, SampleString};
use relay_protocol::decide::TEST_KEY_PREFIX;
use relay_protocol::webhook::{self, SigningKey};
use relay_protocol::wire::{self, BEARER_PREFIX, HEADER_AUTHORIZATION};
use relay_protocol::{Integration, Provider};
use serde_json::json;

/// Who the test event claims to come from, where it differs from the integration: to see what a
/// worker or rule set up for another bucket or account gets.
#[derive(Clone, Debug, Default)]
pub(super) struct SendAs {
    pub bucket: Option<String>,
    pub account: Option<String>,
    /// Sign with this secret rather than the integration's current one (the secret the worker
    /// or the API destination actually has).
    pub secret: Option<SigningKey>,
}

/// One HTTP request, ready to send.
pub(super) struct TestRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub sender: Sender,
    pub key: String,
}

/// The test event's request to `receiver_url` for `integration`.
pub(super) fn build(
    integration: &Integration,
    current: &SigningKey,
    send_as: &SendAs,
    receiver_url: &str,
    now: DateTime<Utc>,
) -> TestRequest {
    let nonce = Alphanumeric.sample_string(&mut rand::rng(), 12);
    let key = format!("{TEST_KEY_PREFIX}{nonce}");
    // A scoped integration's test event comes from a bucket its first pattern matches, in its
    // first account.
    let in_scope = integration.bucket.replace('*', "bucket-relay-test");
    let bucket = send_as.bucket.as_deref().unwrap_or(&in_scope);
    let first_account = integration.scope.as_ref().and_then(|s| s.accounts.first());
    let account = send_as
        .account
        .as_deref()
        .or(integration.account.as_deref())
        .or(first_account.map(String::as_str));
    let signing = send_as.secret.clone().unwrap_or_else(|| current.clone());
    let url = format!(
        "{}{}",
        receiver_url.trim_end_matches('/'),
        wire::events_path(&integration.id)
    );
    let time = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    match integration.provider {
        Provider::R2 => {
            let notification = json!({
                "account": account.unwrap_or("test"),
                "action": "PutObject",
                "bucket": bucket,
                "object": {"key": key, "size": 0, "eTag": nonce},
                "eventTime": time,
            });
            let body =
                json!({"events": [{"id": format!("test-{nonce}"), "notification": notification}]})
                    .to_string();
            let msg_id = format!("test_{nonce}");
            let timestamp = now.timestamp();
            let signature = signing.sign(&msg_id, timestamp, body.as_bytes());
            TestRequest {
                url,
                headers: vec![
                    ("content-type", "application/json".into()),
                    (webhook::HEADER_ID, msg_id),
                    (webhook::HEADER_TIMESTAMP, timestamp.to_string()),
                    (webhook::HEADER_SIGNATURE, signature),
                ],
                body,
                sender: Sender::Worker,
                key,
            }
        }
        Provider::S3 => {
            let account = account.unwrap_or("000000000000");
            let body = json!({
                "version": "0",
                "id": format!("test-{nonce}"),
                "detail-type": "Object Created",
                "source": "aws.s3",
                "account": account,
                "time": now.to_rfc3339_opts(SecondsFormat::Secs, true),
                "region": integration.region.as_deref().unwrap_or("us-east-1"),
                "resources": [format!("arn:aws:s3:::{bucket}")],
                "detail": {
                    "version": "0",
                    "bucket": {"name": bucket},
                    "object": {"key": key, "size": 0, "etag": nonce},
                    "reason": "PutObject",
                },
            })
            .to_string();
            TestRequest {
                url,
                headers: vec![
                    ("content-type", "application/json".into()),
                    (
                        HEADER_AUTHORIZATION,
                        format!("{BEARER_PREFIX}{}", signing.to_secret()),
                    ),
                ],
                body,
                sender: Sender::EventBridge,
                key,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::authenticate;
    use crate::backend::{Keyring, MasterKey};

    fn ring() -> Keyring {
        Keyring::single(MasterKey::from_bytes(MASTER))
    }
    use crate::item::{decide_one, parse_events};
    use http::{HeaderMap, HeaderName, HeaderValue};
    use relay_protocol::integration::NewIntegration;
    use relay_protocol::Reason;

    const MASTER: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn headers(request: &TestRequest) -> HeaderMap {
        request
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_static(name),
                    HeaderValue::from_str(value).unwrap(),
                )
            })
            .collect()
    }

    /// What the receiver decides for the test event: authenticate, parse, decide.
    fn decided(integration: &Integration, request: &TestRequest) -> (Sender, Option<Reason>) {
        let now = Utc::now();
        let body = request.body.as_bytes();
        let keys = futures::executor::block_on(ring().signing_keys(integration, now)).unwrap();
        let sender = authenticate(&keys, &headers(request), body, now).unwrap();
        let mut events = parse_events(sender, body).unwrap();
        let (id, event) = events.remove(0);
        (sender, decide_one(integration, id, event, now).reason)
    }

    #[test]
    fn each_providers_test_event_authenticates_as_its_source_and_is_answered_test_event() {
        for (provider, expected) in [
            (Provider::R2, Sender::Worker),
            (Provider::S3, Sender::EventBridge),
        ] {
            let integration = NewIntegration {
                account: Some(
                    match provider {
                        Provider::S3 => "123456789012",
                        Provider::R2 => "4f3c1e0d9b8a7c6d5e4f3a2b1c0d9e8f",
                    }
                    .into(),
                ),
                suffixes: vec![".pdf".into()],
                ..NewIntegration::new(provider, "uploads")
            }
            .build("int_t", Utc::now())
            .unwrap();
            let request = build(
                &integration,
                &futures::executor::block_on(ring().current_signing_key(&integration)).unwrap(),
                &SendAs::default(),
                "https://r.example/",
                Utc::now(),
            );
            assert_eq!(
                request.url,
                "https://r.example/v1/integrations/int_int_t/events"
            );
            assert!(request.key.starts_with(TEST_KEY_PREFIX));
            assert_eq!(
                decided(&integration, &request),
                (expected, Some(Reason::TestEvent))
            );

            let elsewhere = SendAs {
                bucket: Some("other".into()),
                ..SendAs::default()
            };
            let request = build(
                &integration,
                &futures::executor::block_on(ring().current_signing_key(&integration)).unwrap(),
                &elsewhere,
                "https://r.example",
                Utc::now(),
            );
            assert_eq!(
                decided(&integration, &request).1,
                Some(Reason::BucketMismatch)
            );
        }
    }
}

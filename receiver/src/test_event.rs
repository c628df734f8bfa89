//! The test event of `integrations test --receiver-url`: a request built exactly as the
//! integration's event source builds one (the worker's signed batch for R2, EventBridge's bearer
//! call for S3), for a key under [`TEST_KEY_PREFIX`], and the receiver's answer read back as
//! named steps. Pure: the CLI sends the request (`cli::connection`) and reports.
//!
//! The receiver authenticates a test event and checks it against the integration like any
//! other (provider, account, bucket, mode, paused), then answers it `skipped` / `test_event`
//! once its ledger and queue answer a read; it never becomes a job.

use crate::auth::Sender;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::distr::{Alphanumeric, SampleString};
use relay_protocol::decide::TEST_KEY_PREFIX;
use relay_protocol::webhook::{self, SigningKey};
use relay_protocol::wire::{self, Results, BEARER_PREFIX, HEADER_AUTHORIZATION};
use relay_protocol::{secret, Integration, Outcome, Provider, Reason};
use serde::Serialize;
use serde_json::json;

/// Who the test event claims to come from, where it differs from the integration: to see what a
/// worker or rule set up for another bucket or account gets.
#[derive(Clone, Debug, Default)]
pub struct SendAs {
    pub bucket: Option<String>,
    pub account: Option<String>,
    /// Sign with this secret rather than the integration's current one (the secret the worker
    /// or the API destination actually has).
    pub secret: Option<SigningKey>,
}

/// One HTTP request, ready to send.
pub struct TestRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub sender: Sender,
    pub key: String,
}

/// The test event's request to `receiver_url` for `integration`.
pub fn build(
    integration: &Integration,
    master_key: &[u8],
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
    let signing = send_as.secret.clone().unwrap_or_else(|| {
        secret::event_source_key(master_key, &integration.id, integration.generation)
    });
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

/// One step of the test, in the order a request takes them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl Step {
    pub fn ok(step: &'static str, detail: impl Into<String>) -> Self {
        Step {
            step,
            ok: true,
            detail: detail.into(),
        }
    }

    pub fn failed(step: &'static str, detail: impl Into<String>) -> Self {
        Step {
            step,
            ok: false,
            detail: detail.into(),
        }
    }
}

/// The test's result: its steps, and the named cause of the first failure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub steps: Vec<Step>,
    /// `None` when the receiver took the test event all the way.
    pub cause: Option<String>,
    /// What to do about the cause.
    pub hint: Option<String>,
}

impl Verdict {
    pub fn failed(mut steps: Vec<Step>, step: Step, cause: &str) -> Self {
        steps.push(step);
        Verdict {
            steps,
            cause: Some(cause.to_owned()),
            hint: Some(hint(cause)),
        }
    }
}

/// What to do about a named cause.
pub fn hint(cause: &str) -> String {
    let reason = Reason::parse(cause);
    let action = match cause {
        "dns" => "The receiver URL's host does not resolve: check RECEIVER_URL (the worker) or the API destination's endpoint",
        "connect" => "Nothing accepts connections there: is the receiver running, and is the URL's port right?",
        "tls" => "The TLS handshake failed: the certificate is not valid for the host, or the port does not speak https",
        "timeout" => "No answer in time: the receiver is overloaded, or a firewall drops the packets",
        "invalid_secret" => "The receiver does not accept this secret: give the worker (`npx wrangler secret put EVENT_SOURCE_SECRET`) or the API destination the current one (`integrations rotate-secret` prints a new one), or the receiver uses another master key than this CLI",
        "unknown_integration" => "The receiver has no integration with this id: it reads another store (tables, data dir) than this CLI",
        "not_found" => "The URL is not a Bucket Relay receiver's base URL (a path too many, or another service)",
        "provider_mismatch" | "account_mismatch" | "bucket_mismatch" => "The event source is set up for another bucket or account than the integration: fix the notification rule, or the integration",
        "mode_mismatch" => "The integration is in poll mode, so events make no jobs: `integrations set-mode ID event`, or let the poller work",
        "paused" => "The integration is paused; events are retried until `integrations resume ID`",
        "backend_unavailable" => "The receiver cannot reach its ledger or queue: look for its backend_error log lines",
        _ => "An answer the test does not know: see the receiver's request log line",
    };
    match reason {
        Some(reason) => format!("{} {action}", reason.description()),
        None => action.to_owned(),
    }
}

/// Reads the receiver's answer to the test event; `steps` are the transport's, all passed.
pub fn judge(mut steps: Vec<Step>, status: u16, body: &str) -> Verdict {
    #[derive(serde::Deserialize)]
    struct ErrorWord {
        error: String,
    }
    if let Ok(refused) = serde_json::from_str::<ErrorWord>(body) {
        let word = refused.error;
        let step = match Reason::parse(&word) {
            Some(Reason::InvalidSecret) => "auth",
            Some(Reason::UnknownIntegration) => "integration",
            Some(Reason::BackendUnavailable) => "backends",
            _ => "http",
        };
        return Verdict::failed(steps, Step::failed(step, format!("{status} {word}")), &word);
    }
    let Ok(results) = serde_json::from_str::<Results>(body) else {
        let cause = format!("http_{status}");
        return Verdict::failed(
            steps,
            Step::failed("http", format!("{status}, not a receiver's answer")),
            &cause,
        );
    };
    steps.push(Step::ok("http", status.to_string()));
    steps.push(Step::ok("auth", "the receiver accepts the secret"));
    steps.push(Step::ok("integration", "the receiver has the integration"));
    let Some(result) = results.results.first() else {
        return Verdict::failed(
            steps,
            Step::failed("decision", "no result for the test event"),
            "unexpected_answer",
        );
    };
    let reason = result.reason.map_or("none", Reason::as_str);
    match (result.outcome, result.reason) {
        (Outcome::Skipped, Some(Reason::TestEvent)) => {
            steps.push(Step::ok(
                "decision",
                "provider, account, bucket, mode and status match",
            ));
            steps.push(Step::ok("backends", "the ledger and the queue answer"));
            Verdict {
                steps,
                cause: None,
                hint: None,
            }
        }
        (_, Some(Reason::BackendUnavailable)) => {
            steps.push(Step::ok(
                "decision",
                "provider, account, bucket, mode and status match",
            ));
            Verdict::failed(
                steps,
                Step::failed("backends", "retry_later backend_unavailable"),
                reason,
            )
        }
        (outcome, _) => Verdict::failed(
            steps,
            Step::failed("decision", format!("{outcome} {reason}")),
            reason,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::authenticate;
    use crate::backend::MasterKey;
    use crate::item::{decide_one, parse_events};
    use http::{HeaderMap, HeaderName, HeaderValue};
    use relay_protocol::integration::NewIntegration;

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
        let master = MasterKey::from_bytes(MASTER);
        let body = request.body.as_bytes();
        let sender = authenticate(integration, &master, &headers(request), body, now).unwrap();
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
                account: Some("acc_1".into()),
                suffixes: vec![".pdf".into()],
                ..NewIntegration::new(provider, "uploads")
            }
            .build("int_t", Utc::now())
            .unwrap();
            let request = build(
                &integration,
                MASTER,
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
                MASTER,
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

    #[test]
    fn the_answer_names_the_first_failed_step() {
        let ok = judge(
            vec![],
            200,
            r#"{"results":[{"id":"t","outcome":"skipped","reason":"test_event","job_id":null}]}"#,
        );
        assert_eq!(ok.cause, None);
        assert!(ok.steps.iter().all(|s| s.ok));
        for (status, body, cause, step) in [
            (
                401,
                r#"{"error":"invalid_secret","detail":"x"}"#,
                "invalid_secret",
                "auth",
            ),
            (
                404,
                r#"{"error":"unknown_integration","detail":"x"}"#,
                "unknown_integration",
                "integration",
            ),
            (
                404,
                r#"{"error":"not_found","detail":"x"}"#,
                "not_found",
                "http",
            ),
            (502, "<html>bad gateway</html>", "http_502", "http"),
            (
                200,
                r#"{"results":[{"id":"t","outcome":"rejected","reason":"bucket_mismatch","job_id":null}]}"#,
                "bucket_mismatch",
                "decision",
            ),
            (
                503,
                r#"{"results":[{"id":"t","outcome":"retry_later","reason":"paused","job_id":null}]}"#,
                "paused",
                "decision",
            ),
            (
                503,
                r#"{"results":[{"id":"t","outcome":"retry_later","reason":"backend_unavailable","job_id":null}]}"#,
                "backend_unavailable",
                "backends",
            ),
        ] {
            let verdict = judge(vec![], status, body);
            assert_eq!(verdict.cause.as_deref(), Some(cause), "{body}");
            let failed = verdict.steps.last().unwrap();
            assert_eq!((failed.step, failed.ok), (step, false), "{body}");
            assert!(verdict.hint.unwrap().len() > 20);
        }
    }
}

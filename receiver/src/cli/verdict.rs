//! The test event's verdict: the steps a request takes (name, connection, answer,
//! authentication, integration, decision, backends), and the receiver's answer read back into
//! the named cause of the first that failed, with what to do about it.

use relay_protocol::wire::Results;
use relay_protocol::{Outcome, Reason};
use serde::Serialize;

/// One step of the test, in the order a request takes them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(super) struct Step {
    pub step: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl Step {
    pub(super) fn ok(step: &'static str, detail: impl Into<String>) -> Self {
        Step {
            step,
            ok: true,
            detail: detail.into(),
        }
    }

    pub(super) fn failed(step: &'static str, detail: impl Into<String>) -> Self {
        Step {
            step,
            ok: false,
            detail: detail.into(),
        }
    }
}

/// The test's result: its steps, and the named cause of the first failure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(super) struct Verdict {
    pub steps: Vec<Step>,
    /// `None` when the receiver took the test event all the way.
    pub cause: Option<String>,
    /// What to do about the cause.
    pub hint: Option<String>,
}

impl Verdict {
    pub(super) fn failed(mut steps: Vec<Step>, step: Step, cause: &str) -> Self {
        steps.push(step);
        Verdict {
            steps,
            cause: Some(cause.to_owned()),
            hint: Some(hint(cause)),
        }
    }
}

/// What to do about a named cause.
pub(super) fn hint(cause: &str) -> String {
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
pub(super) fn judge(mut steps: Vec<Step>, status: u16, body: &str) -> Verdict {
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

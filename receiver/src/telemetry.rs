//! Logs and metrics: what the on-call engineer reads.
//!
//! Logs are JSON lines on stdout, one per request (`request`) and one per event that was not
//! accepted (`event_duplicate`, `event_skipped`, `event_rejected`, `event_retry_later`), each with
//! the same reason words as the responses. Metrics are CloudWatch embedded-metric-format
//! documents: one line per request with a count per outcome and per reason, which CloudWatch
//! turns into metrics without any agent.

use relay_protocol::{Outcome, Reason};
use serde_json::{json, Map, Value};
use tracing_subscriber::EnvFilter;

/// The CloudWatch namespace of the receiver's metrics.
pub(crate) const METRICS_NAMESPACE: &str = "BucketRelay";
/// The one dimension every metric carries, so alarms can select it.
pub(crate) const METRICS_DIMENSION: (&str, &str) = ("service", "bucket-relay");
/// Metric names: `events_<outcome>` counts events by outcome, `reason_<reason>` by reason.
pub(crate) const METRIC_OUTCOME_PREFIX: &str = "events_";
pub(crate) const METRIC_REASON_PREFIX: &str = "reason_";

/// JSON logs to stdout, filtered by `RUST_LOG`-style directives (default `info`).
///
/// On Lambda every line also carries the runtime's span of the invocation under `span`
/// (`requestId`, `xrayTraceId`), so an operator can join the receiver's lines with Lambda's own
/// `START` / `REPORT` lines; `serve` has no such span and its lines stay flat.
pub(crate) fn init_logging(filter: &str, on_lambda: bool) {
    let filter = log_filter(filter);
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(on_lambda)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}

/// JSON log lines on stderr, for the commands whose results go to stdout (`poll`,
/// `backfill`); `RELAY_LOG` filters them (default `info`).
pub(crate) fn init_cli_logging() {
    let filter = std::env::var(crate::env::LOG).unwrap_or_else(|_| "info".to_owned());
    let filter = log_filter(&filter);
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The crates whose debug and trace output holds what must never be logged: the AWS SDK's
/// (signed requests with their access key id, STS calls with the external id) and the HTTP and
/// TLS stacks under it. Whatever `RELAY_LOG` asks for, they log at `info` at most.
const QUIET_CRATES: [&str; 17] = [
    "aws_config",
    "aws_credential_types",
    "aws_runtime",
    "aws_sigv4",
    "aws_smithy_http_client",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_sdk_dynamodb",
    "aws_sdk_s3",
    "aws_sdk_secretsmanager",
    "aws_sdk_sqs",
    "aws_sdk_sts",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "reqwest",
];

/// `directives` (`RUST_LOG` syntax; `info` when they do not parse), with [`QUIET_CRATES`]
/// capped at `info`.
fn log_filter(directives: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    for name in QUIET_CRATES {
        if let Ok(directive) = format!("{name}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// The backend's own words go to the log only; senders learn just that they may retry.
pub(crate) fn log_backend_error(err: &crate::backend::BackendError) {
    crate::events::BackendUnavailable {
        backend: err.backend,
        error: err.detail(),
    }
    .emit();
}

/// Counts of one request's events.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct EventCounts {
    outcomes: Vec<(Outcome, u32)>,
    reasons: Vec<(Reason, u32)>,
}

impl EventCounts {
    pub(crate) fn add(&mut self, outcome: Outcome, reason: Option<Reason>) {
        bump(&mut self.outcomes, outcome);
        if let Some(reason) = reason {
            bump(&mut self.reasons, reason);
        }
    }

    /// A request refused as a whole (`invalid_secret`, `unknown_integration`…): its reason is
    /// counted like an event's, so one alarm per reason covers both.
    pub(crate) fn refused(&mut self, reason: Reason) {
        bump(&mut self.reasons, reason);
    }

    pub(crate) fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes
            .iter()
            .find(|(o, _)| *o == outcome)
            .map_or(0, |(_, n)| u64::from(*n))
    }

    /// The embedded-metric-format document for these counts: metrics `events_<outcome>` and
    /// `reason_<reason>`, unit Count, dimension `service`.
    pub(crate) fn emf(&self, timestamp_ms: i64) -> Value {
        let mut root = Map::new();
        let mut metrics = Vec::new();
        let named = self
            .outcomes
            .iter()
            .map(|(o, n)| (format!("{METRIC_OUTCOME_PREFIX}{o}"), *n))
            .chain(
                self.reasons
                    .iter()
                    .map(|(r, n)| (format!("{METRIC_REASON_PREFIX}{r}"), *n)),
            );
        for (name, count) in named {
            metrics.push(json!({"Name": name, "Unit": "Count"}));
            root.insert(name, json!(count));
        }
        root.insert(METRICS_DIMENSION.0.into(), json!(METRICS_DIMENSION.1));
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": METRICS_NAMESPACE,
                    "Dimensions": [[METRICS_DIMENSION.0]],
                    "Metrics": metrics,
                }],
            }),
        );
        Value::Object(root)
    }
}

fn bump<T: PartialEq>(counts: &mut Vec<(T, u32)>, key: T) {
    match counts.iter_mut().find(|(k, _)| *k == key) {
        Some((_, n)) => *n += 1,
        None => counts.push((key, 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_names_every_counted_metric_once_with_its_value() {
        let mut tally = EventCounts::default();
        tally.add(Outcome::Accepted, None);
        tally.add(Outcome::Accepted, None);
        tally.add(Outcome::Rejected, Some(Reason::BucketMismatch));
        let doc = tally.emf(1_700_000_000_000);
        assert_eq!(doc["events_accepted"], 2);
        assert_eq!(doc["events_rejected"], 1);
        assert_eq!(doc["reason_bucket_mismatch"], 1);
        assert_eq!(doc["service"], "bucket-relay");
        let declared = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], "BucketRelay");
        let names: Vec<&str> = declared["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "events_accepted",
                "events_rejected",
                "reason_bucket_mismatch"
            ]
        );
        assert_eq!(tally.count(Outcome::Accepted), 2);
        assert_eq!(tally.count(Outcome::Skipped), 0);
        let mut refused = EventCounts::default();
        refused.refused(Reason::InvalidSecret);
        assert_eq!(refused.emf(0)["reason_invalid_secret"], 1);
    }
}

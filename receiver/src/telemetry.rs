//! Where logs and metrics go: what the on-call engineer reads. (What they say is
//! [`crate::events`]: the operator events write the lines and count the metrics.)
//!
//! Logs are JSON lines, on stdout for `serve` and Lambda, on stderr for the CLI. Metrics go
//! through the `metrics` facade to the recorders [`install_metrics`] installs: CloudWatch's
//! embedded metric format ([`Emf`]: one line per request, which CloudWatch turns into metrics
//! without any agent), and Prometheus' text format for `serve --metrics-listen`.

use relay_protocol::Outcome;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
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

/// Counts of one request's events by outcome, for its `request` line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct EventCounts {
    outcomes: Vec<(Outcome, u32)>,
}

impl EventCounts {
    pub(crate) fn add(&mut self, outcome: Outcome) {
        match self.outcomes.iter_mut().find(|(o, _)| *o == outcome) {
            Some((_, n)) => *n += 1,
            None => self.outcomes.push((outcome, 1)),
        }
    }

    pub(crate) fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes
            .iter()
            .find(|(o, _)| *o == outcome)
            .map_or(0, |(_, n)| u64::from(*n))
    }
}

/// Which metrics recorders the process installs behind the `metrics` facade.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MetricsSinks {
    /// CloudWatch's embedded metric format: one line on stdout per request.
    pub(crate) emf: bool,
    /// Prometheus' text format, rendered by `serve --metrics-listen`.
    pub(crate) prometheus: bool,
}

/// What was installed: the Prometheus recorder's handle, when asked for.
pub(crate) struct Installed {
    #[cfg(feature = "server")]
    pub(crate) prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// The EMF recorder, once installed: the request events flush it ([`flush_emf`]).
static EMF: std::sync::OnceLock<Emf> = std::sync::OnceLock::new();

/// Installs the recorders `sinks` asks for as the process's one global recorder (several
/// behind a fan-out), and describes every metric to them. Called once, before serving.
pub(crate) fn install_metrics(sinks: MetricsSinks) -> Result<Installed, String> {
    let mut recorders: Vec<Box<dyn metrics::Recorder + Send + Sync>> = Vec::new();
    if sinks.emf {
        let emf = EMF.get_or_init(Emf::default).clone();
        recorders.push(Box::new(emf));
    }
    #[cfg(not(feature = "server"))]
    if sinks.prometheus {
        return Err("this build has no Prometheus endpoint (built without `server`)".to_owned());
    }
    #[cfg(feature = "server")]
    let prometheus = if sinks.prometheus {
        let recorder = prometheus_recorder()?;
        let handle = recorder.handle();
        recorders.push(Box::new(recorder));
        Some(handle)
    } else {
        None
    };
    if !recorders.is_empty() {
        let fanout = recorders
            .into_iter()
            .fold(
                metrics_util::layers::FanoutBuilder::default(),
                |fanout, r| fanout.add_recorder(r),
            )
            .build();
        metrics::set_global_recorder(fanout).map_err(|e| e.to_string())?;
        crate::events::describe_metrics();
    }
    Ok(Installed {
        #[cfg(feature = "server")]
        prometheus,
    })
}

#[cfg(feature = "server")]
/// Request durations' histogram buckets, in seconds: a commit on the embedded backend takes
/// about a millisecond, a request on AWS tens; the last ones catch a backend that hangs.
const DURATION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// The Prometheus recorder, with the request durations' buckets.
#[cfg(feature = "server")]
fn prometheus_recorder() -> Result<metrics_exporter_prometheus::PrometheusRecorder, String> {
    let builder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                crate::events::REQUEST_SECONDS.name.to_owned(),
            ),
            &DURATION_BUCKETS,
        )
        .map_err(|e| e.to_string())?;
    Ok(builder.build_recorder())
}

/// Prints the EMF line of what the operator events counted since the last one, if the EMF
/// recorder is installed and anything was counted.
pub(crate) fn flush_emf() {
    if let Some(document) = EMF
        .get()
        .and_then(|emf| emf.flush(chrono::Utc::now().timestamp_millis()))
    {
        println!("{document}");
    }
}

/// CloudWatch's embedded metric format, fed by the operator events: an event counted under
/// `bucket_relay_events_total{outcome, reason}` is `events_<outcome>` and `reason_<reason>`,
/// a request refused under `bucket_relay_requests_refused_total{reason}` is `reason_<reason>`
/// (the names the receiver module's alarms read). Other metrics are left to Prometheus.
#[derive(Clone, Debug, Default)]
pub(crate) struct Emf {
    /// EMF metric name → count since the last line.
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

struct EmfCounter {
    names: Vec<String>,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl metrics::CounterFn for EmfCounter {
    fn increment(&self, value: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        for name in &self.names {
            *counts.entry(name.clone()).or_default() += value;
        }
    }

    fn absolute(&self, _value: u64) {}
}

impl Emf {
    /// The EMF metric names a counter `key` adds to.
    fn names(key: &metrics::Key) -> Vec<String> {
        let label = |name: &str| {
            key.labels()
                .find(|label| label.key() == name)
                .map(|label| label.value().to_owned())
                .filter(|value| !value.is_empty())
        };
        let name = key.name();
        let mut names = Vec::new();
        if name == crate::events::EVENTS_TOTAL.name {
            names.extend(label("outcome").map(|o| format!("{METRIC_OUTCOME_PREFIX}{o}")));
        }
        if name == crate::events::EVENTS_TOTAL.name
            || name == crate::events::REQUESTS_REFUSED_TOTAL.name
        {
            names.extend(label("reason").map(|r| format!("{METRIC_REASON_PREFIX}{r}")));
        }
        names
    }

    /// The EMF document of the counts since the last one (`None` when nothing was counted):
    /// metrics `events_<outcome>` and `reason_<reason>`, unit Count, dimension `service`.
    pub(crate) fn flush(&self, timestamp_ms: i64) -> Option<Value> {
        let counts =
            std::mem::take(&mut *self.counts.lock().unwrap_or_else(PoisonError::into_inner));
        if counts.is_empty() {
            return None;
        }
        let mut root = Map::new();
        let mut metrics = Vec::new();
        for (name, count) in counts {
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
        Some(Value::Object(root))
    }
}

impl metrics::Recorder for Emf {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let names = Emf::names(key);
        if names.is_empty() {
            return metrics::Counter::noop();
        }
        metrics::Counter::from_arc(Arc::new(EmfCounter {
            names,
            counts: Arc::clone(&self.counts),
        }))
    }

    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }

    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_carries_the_events_counts_by_outcome_and_reason_then_starts_again() {
        let emf = Emf::default();
        let recorder: &dyn metrics::Recorder = &emf;
        let metadata = metrics::Metadata::new("test", metrics::Level::INFO, None);
        let counter = |name: &'static str, labels: &[(&'static str, &'static str)]| {
            let labels: Vec<metrics::Label> = labels
                .iter()
                .map(|(k, v)| metrics::Label::new(*k, *v))
                .collect();
            recorder.register_counter(&metrics::Key::from_parts(name, labels), &metadata)
        };
        let events = crate::events::EVENTS_TOTAL.name;
        counter(events, &[("outcome", "accepted"), ("reason", "")]).increment(2);
        counter(
            events,
            &[("outcome", "rejected"), ("reason", "bucket_mismatch")],
        )
        .increment(1);
        counter(
            crate::events::REQUESTS_REFUSED_TOTAL.name,
            &[("reason", "invalid_secret")],
        )
        .increment(1);
        counter(crate::events::POLL_TICKS_TOTAL.name, &[("mode", "poll")]).increment(1);
        let doc = emf.flush(1_700_000_000_000).unwrap();
        assert_eq!(doc["events_accepted"], 2);
        assert_eq!(doc["events_rejected"], 1);
        assert_eq!(doc["reason_bucket_mismatch"], 1);
        assert_eq!(doc["reason_invalid_secret"], 1);
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
                "reason_bucket_mismatch",
                "reason_invalid_secret"
            ],
            "only the names the alarms read"
        );
        assert_eq!(
            emf.flush(0),
            None,
            "each line carries what came since the last"
        );
    }
}

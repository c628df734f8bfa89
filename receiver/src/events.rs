//! Operator events: everything the receiver, the poller, the listings, the replays and the process
//! itself report to the people who run it, one type each.
//!
//! An event is a struct; `emit()` writes its one JSON log line (`message` is the event's name,
//! the struct's fields are the line's fields). This module is the only place that calls
//! `tracing`: a log line's name and fields cannot drift from the catalogue ([`CATALOGUE`]), which
//! the contract (`--example contract`) lists and docs/operators.md's log table is generated from.
//! (Not to be confused with `bucket-relay events why`, the command that reads the history.)
//!
//! Each event is declared once, in [`operator_events!`]: its doc comment (what it means, shown in
//! the table), its type name, its message, its level and its fields. A field's type must be one
//! `tracing` records as is: `&str`, `String`, integers, `f64`, `bool`, or an `Option` of one (an
//! absent one is left out of the line). An event that moves metrics names a hook (`=> hook`)
//! that `emit()` calls after the line.
//!
//! Metrics go through the `metrics` facade: `emit()` does not know who collects them. On Lambda
//! (and `serve --metrics emf`) an EMF recorder turns the counts into one CloudWatch line per
//! request ([`crate::telemetry`]); `serve --metrics-listen` installs a Prometheus recorder and
//! answers `/metrics`; without a recorder (the CLI) the calls do nothing. This module depends on
//! no other of the crate: everything reports through it. The facade, rather than `prometheus-client`'s
//! registry, is what keeps the events free of any one exporter: a CloudWatch recorder can take
//! the same calls. Every metric is in [`METRICS`], which the contract lists.

/// One event's entry in the catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EventSpec {
    /// The log line's `message`.
    pub message: &'static str,
    /// `DEBUG`, `INFO`, `WARN` or `ERROR`.
    pub level: &'static str,
    /// The line's fields besides `timestamp`, `level` and `message`, in order.
    pub fields: &'static [&'static str],
    /// When it is written, from the type's doc comment.
    pub description: &'static str,
}

/// Declares the operator events: for each, a struct with public fields, its `MESSAGE`, an
/// `emit()` that writes its log line, and its entry in [`CATALOGUE`].
macro_rules! operator_events {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident $(<$lt:lifetime>)? = $message:literal, $level:ident {
            $($field:ident: $ty:ty),* $(,)?
        } $(=> $hook:ident)?
    )*) => {
        $(
            $(#[doc = $doc])*
            #[derive(Debug)]
            // The Lambda package, without `serve` and the embedded backend, emits fewer events.
            #[cfg_attr(not(all(feature = "server", feature = "embedded")), allow(dead_code))]
            pub(crate) struct $name $(<$lt>)? {
                $(pub(crate) $field: $ty,)*
            }

            impl $(<$lt>)? $name $(<$lt>)? {
                /// The log line's `message`.
                #[allow(dead_code)]
                pub(crate) const MESSAGE: &'static str = $message;

                /// Writes the event's log line.
                #[cfg_attr(not(all(feature = "server", feature = "embedded")), allow(dead_code))]
                pub(crate) fn emit(&self) {
                    tracing::event!(
                        tracing::Level::$level,
                        message = $message,
                        $($field = self.$field,)*
                    );
                    $($hook(self);)?
                }
            }
        )*

        /// Every operator event, in declaration order.
        pub const CATALOGUE: &[EventSpec] = &[$(
            EventSpec {
                message: $message,
                level: stringify!($level),
                fields: &[$(stringify!($field)),*],
                description: concat!($($doc, "\n"),*),
            },
        )*];
    };
}

operator_events! {
    // --- the receiver, per request ---------------------------------------------------------
    /// A request answered: its sender (`worker` or `eventbridge`), its status, how many events it
    /// carried and how many ended in each outcome. `refused_balance` is its rejected and
    /// retried events less the others: summed over an hour it is above zero exactly when more
    /// than half of the integration's events were refused or retried (the receiver module's
    /// Contributor Insights rule sums it per integration).
    RequestHandled<'a> = "request", INFO {
        integration_id: &'a str,
        sender: &'a str,
        status: u16,
        events: u64,
        accepted: u64,
        duplicate: u64,
        skipped: u64,
        rejected: u64,
        retry_later: u64,
        refused_balance: i64,
        bytes: u64,
        duration_ms: f64,
    } => count_request
    /// A request refused as a whole (`error` is its reason: `invalid_secret`,
    /// `payload_too_large`, `unknown_integration`…), with the status it was answered.
    RequestRefused<'a> = "request", WARN {
        integration_id: &'a str,
        status: u16,
        error: &'a str,
        detail: &'a str,
        bytes: u64,
        duration_ms: f64,
    } => count_refusal
    /// An event that became a job (at debug: the `request` line counts them).
    EventAccepted<'a> = "event_accepted", DEBUG {
        integration_id: &'a str,
        id: &'a str,
        bucket: &'a str,
        key: &'a str,
        job_id: &'a str,
    } => count_accepted
    /// An event that was already a job: the job it repeats.
    EventDuplicate<'a> = "event_duplicate", INFO {
        integration_id: &'a str,
        id: &'a str,
        reason: &'a str,
        bucket: &'a str,
        key: &'a str,
        job_id: &'a str,
    } => count_duplicate
    /// An event the integration's filters (or the object's kind) keep from becoming a job.
    EventSkipped<'a> = "event_skipped", INFO {
        integration_id: &'a str,
        id: &'a str,
        reason: &'a str,
        bucket: &'a str,
        key: &'a str,
    } => count_skipped
    /// An event refused (the sender dead-letters it): another bucket, account or provider, poll
    /// mode, an event that cannot be parsed, a job the queue refuses.
    EventRejected<'a> = "event_rejected", WARN {
        integration_id: &'a str,
        id: &'a str,
        reason: &'a str,
        bucket: &'a str,
        key: &'a str,
    } => count_rejected
    /// An event to be sent again: paused, in flight, or a backend that did not answer.
    EventRetryLater<'a> = "event_retry_later", WARN {
        integration_id: &'a str,
        id: &'a str,
        reason: &'a str,
        bucket: &'a str,
        key: &'a str,
    } => count_retry_later
    /// Why an event could not be parsed (its `event_rejected` line says `malformed_event`).
    EventUnparsed<'a> = "event_unparsed", DEBUG {
        integration_id: &'a str,
        id: &'a str,
        error: String,
    }
    /// A request's signature or bearer secret did not verify: `cause` names why (never the
    /// secret).
    AuthFailed<'a> = "auth_failed", WARN {
        integration_id: &'a str,
        cause: &'a str,
    } => count_auth_failure
    /// An R2 integration's worker reported a bundle other than the one last kept for it: a
    /// customer deployed a new package (or `source`, a build from source). `integrations show`
    /// compares it with the bundle last packaged for them.
    WorkerBundleReported<'a> = "worker_bundle_reported", INFO {
        integration_id: &'a str,
        bundle: &'a str,
        previous: Option<&'a str>,
    }
    /// A CloudTrail event's object could not be looked up through the read role, so its job id
    /// is its event id and the same object's S3 event may make a second job.
    ObjectLookupFailed<'a> = "object_lookup_failed", WARN {
        integration_id: &'a str,
        id: &'a str,
        bucket: &'a str,
        key: &'a str,
        role_arn: &'a str,
        cause: &'a str,
        detail: &'a str,
    } => count_lookup_failure
    /// The store, ledger, queue or key did not answer (the events are answered `retry_later`).
    BackendUnavailable<'a> = "backend_unavailable", ERROR {
        backend: &'a str,
        error: String,
    } => count_backend_error
    /// A claimed job could not be sent to the queue this time; its claim is released.
    EnqueueFailed<'a> = "enqueue_failed", ERROR {
        job_id: &'a str,
        error: &'a str,
    }
    /// The queue refused a job as it is (`queue_refused`): the event is dead-lettered.
    EnqueueRefused<'a> = "enqueue_refused", ERROR {
        job_id: &'a str,
        error: &'a str,
    }

    // --- listings: poll ticks, safety nets, backfills, reconciles ---------------------------
    /// One integration's poll tick or safety-net listing: what it listed and made, and the
    /// watermark it moved to (a safety net's `summary` is the reconcile of its window).
    PollTick<'a> = "poll_tick", INFO {
        integration_id: &'a str,
        mode: &'a str,
        summary: String,
        listed: u64,
        considered: u64,
        jobs: u64,
        duplicates: u64,
        skipped: u64,
        skipped_by_reason: String,
        rejected: u64,
        missed_by_events: u64,
        watermark: &'a str,
        duration_ms: f64,
    } => count_poll_tick
    /// A tick that stopped (`error` is the failure's name: `list_denied`, `listing_too_long`…);
    /// without an integration, the store could not list the integrations.
    PollFailed<'a> = "poll_failed", WARN {
        integration_id: Option<&'a str>,
        error: &'a str,
        detail: String,
    } => count_poll_failure
    /// One listed object that became no job, and why (at debug: a listing's page and run
    /// lines count them by reason).
    ObjectSkipped<'a> = "object_skipped", DEBUG {
        integration_id: &'a str,
        run: &'a str,
        reason: &'a str,
        bucket: &'a str,
        key: &'a str,
    }
    /// One listed object whose job the queue refused.
    ObjectRejected<'a> = "object_rejected", WARN {
        integration_id: &'a str,
        run: &'a str,
        reason: &'a str,
        bucket: &'a str,
        key: &'a str,
    }
    /// A job a safety-net listing made: an object no event brought.
    MissedByEvents<'a> = "missed_by_events", WARN {
        integration_id: &'a str,
        run: &'a str,
        bucket: &'a str,
        key: &'a str,
        job_id: &'a str,
    } => count_missed
    /// A backfill holds its ledger writes to `write_units_per_second`: half the ledger table's
    /// `table_units` (`source`: `provisioned` capacity, on-demand `warm_throughput`, or a
    /// `max_throughput` set below it), or the operator's `--write-units` (`flag`). The live
    /// path keeps the rest of the table. `commits_at_once`: commits of 100 jobs in flight, one
    /// per 1,000 new jobs a second of the rate (one at a time to a FIFO queue).
    BackfillPaced<'a> = "backfill_paced", INFO {
        integration_id: &'a str,
        write_units_per_second: u64,
        source: &'a str,
        table_units: Option<u64>,
        commits_at_once: usize,
    }
    /// The ledger table's capacity could not be read (`DescribeTable`; `detail` says why): the
    /// backfill writes as fast as the table answers. `--write-units` sets a rate instead.
    BackfillUnpaced<'a> = "backfill_unpaced", WARN {
        integration_id: &'a str,
        detail: String,
    }
    /// A listing (poll tick, safety net, backfill, reconcile) met its integration's
    /// `--max-jobs-per-minute`: it waits for the next window, then makes the jobs left.
    RateLimitWait<'a> = "rate_limit_wait", INFO {
        integration_id: &'a str,
        jobs_waiting: u64,
        wait_ms: u64,
    } => count_rate_limit_wait
    /// A backfill's page (when stderr is not a terminal): the run's figures so far.
    BackfillProgress = "backfill_progress", INFO {
        listed: u64,
        considered: u64,
        jobs: u64,
        duplicates: u64,
        skipped: u64,
        skipped_by_reason: String,
        objects_per_s: f64,
    }
    /// A reconcile's page (when stderr is not a terminal): its figures so far.
    ReconcileProgress = "reconcile_progress", INFO {
        listed: u64,
        with_job: u64,
        missing: u64,
        repaired: u64,
        objects_per_s: f64,
    }
    /// `keys reseal` under way: integrations done of all, tokens resealed, tokens that do not
    /// open.
    ResealProgress = "reseal_progress", INFO {
        done: u64,
        total: u64,
        resealed: u64,
        unreadable: u64,
    }
    /// A finished reconcile.
    ReconcileDone<'a> = "reconcile_done", INFO {
        integration_id: &'a str,
        listed: u64,
        admitted: u64,
        with_job: u64,
        in_flight: u64,
        missing: u64,
        beyond_horizon: u64,
        repaired: u64,
        duration_ms: f64,
    }

    // --- replays ---------------------------------------------------------------------------
    /// `replay eventbridge` left a message on the dead-letter queue: its outcome this time,
    /// and why EventBridge dead-lettered it (`ERROR_CODE`).
    EventKept<'a> = "replay_kept", INFO {
        integration_id: &'a str,
        id: &'a str,
        outcome: &'a str,
        dead_lettered_for: &'a str,
        dry_run: bool,
    }
    /// `replay ingest` could not move a job back to the ingest queue (`outcome` is
    /// `kept/<why>`).
    JobKept<'a> = "replay_kept", WARN {
        id: &'a str,
        outcome: String,
        dry_run: bool,
    }

    // --- the process -----------------------------------------------------------------------
    /// `serve` starting on the embedded backend.
    Starting = "starting", INFO {
        data_dir: String,
        listen: String,
    }
    /// `serve` accepting connections, with its limits.
    Listening = "listening", INFO {
        address: String,
        max_connections: u64,
        max_body_buffer_bytes: u64,
    }
    /// A connection could not be accepted (the process goes on).
    AcceptFailed = "accept_failed", WARN {
        error: String,
    }
    /// A connection ended with an error (a client hanging up, a malformed head).
    ConnectionClosed = "connection_closed", DEBUG {
        error: String,
    }
    /// `serve` stopping: connections drain, then it exits.
    ShuttingDown = "shutting_down", INFO {}
    /// The master key was read from Secrets Manager (once per cold start; never the key).
    MasterKeyLoaded<'a> = "master_key_loaded", INFO {
        source: &'a str,
        secret_id: &'a str,
    }
    /// `--claim-lease` is outside the range that keeps exactly-once (see docs/contract.md).
    ClaimLeaseOutOfRange = "claim_lease_out_of_range", WARN {
        lease_s: i64,
        detail: &'static str,
    }
    /// The embedded backend committed a group of requests in one transaction: how many, how
    /// many new jobs, how long (at debug: counted in the metrics).
    GroupCommitted = "group_committed", DEBUG {
        backend: &'static str,
        requests: u64,
        jobs: u64,
        duration_ms: f64,
    } => count_group
    /// A queue's depth read for `/metrics` (at debug: it sets `bucket_relay_queue_jobs`).
    QueueDepthRead<'a> = "queue_depth_read", DEBUG {
        queue: &'a str,
        waiting: u64,
    } => set_queue_depth
    /// The embedded backend could not checkpoint its write-ahead log (it tries again).
    CheckpointFailed = "checkpoint_failed", WARN {
        backend: &'static str,
        error: String,
    }
    /// A usage row names an outcome or reason this binary does not know (a newer one wrote it).
    UsageKeyUnknown<'a> = "usage_key_unknown", WARN {
        backend: &'static str,
        name: &'a str,
    }
}

/// A metric the receiver publishes (through the `metrics` facade): the contract lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MetricSpec {
    pub name: &'static str,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn metric(
    name: &'static str,
    kind: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricSpec {
    MetricSpec {
        name,
        kind,
        labels,
        help,
    }
}

pub const EVENTS_TOTAL: MetricSpec = metric(
    "bucket_relay_events_total",
    "counter",
    &["integration_id", "outcome", "reason"],
    "Events settled, by integration, outcome and reason (the reason is empty for an accepted \
     event).",
);
pub const REQUESTS_TOTAL: MetricSpec = metric(
    "bucket_relay_requests_total",
    "counter",
    &["status"],
    "Requests answered, by HTTP status.",
);
pub const REQUESTS_REFUSED_TOTAL: MetricSpec = metric(
    "bucket_relay_requests_refused_total",
    "counter",
    &["reason"],
    "Requests refused as a whole, by reason.",
);
pub const REQUEST_SECONDS: MetricSpec = metric(
    "bucket_relay_request_duration_seconds",
    "histogram",
    &[],
    "How long the receiver took over a request, once its head was read.",
);
pub const AUTH_FAILURES_TOTAL: MetricSpec = metric(
    "bucket_relay_auth_failures_total",
    "counter",
    &["cause"],
    "Requests whose signature or bearer secret did not verify, by cause.",
);
pub const BACKEND_ERRORS_TOTAL: MetricSpec = metric(
    "bucket_relay_backend_errors_total",
    "counter",
    &["backend"],
    "Calls to a backend (store, ledger, queue, key) that failed.",
);
pub const LOOKUPS_FAILED_TOTAL: MetricSpec = metric(
    "bucket_relay_object_lookups_failed_total",
    "counter",
    &["cause"],
    "CloudTrail events whose object could not be looked up through the read role.",
);
pub const POLL_TICKS_TOTAL: MetricSpec = metric(
    "bucket_relay_poll_ticks_total",
    "counter",
    &["mode"],
    "Listings that ended (poll mode's ticks; event mode's safety nets).",
);
pub const POLL_FAILURES_TOTAL: MetricSpec = metric(
    "bucket_relay_poll_failures_total",
    "counter",
    &["error"],
    "Listings that stopped, by the failure's name.",
);
pub const MISSED_BY_EVENTS_TOTAL: MetricSpec = metric(
    "bucket_relay_missed_by_events_total",
    "counter",
    &["integration_id"],
    "Jobs a safety net made for objects no event brought, by integration.",
);
pub const RATE_LIMIT_WAITS: MetricSpec = metric(
    "bucket_relay_rate_limit_waits_total",
    "counter",
    &["integration_id"],
    "Times a listing waited for its integration's next rate window, by integration (events \
     over the rate are counted in bucket_relay_events_total, reason rate_limited).",
);
pub const COMMITS_TOTAL: MetricSpec = metric(
    "bucket_relay_commits_total",
    "counter",
    &[],
    "Transactions of the embedded backend, each committing a group of requests.",
);
pub const COMMIT_GROUP_SIZE: MetricSpec = metric(
    "bucket_relay_commit_group_requests",
    "histogram",
    &[],
    "Requests per transaction of the embedded backend (group commit).",
);
pub const QUEUE_JOBS: MetricSpec = metric(
    "bucket_relay_queue_jobs",
    "gauge",
    &["queue"],
    "Jobs on a queue, read at each scrape: the embedded queue's, or SQS's ingest queue and its \
     dead-letter queue.",
);
pub const BUILD_INFO: MetricSpec = metric(
    "bucket_relay_build_info",
    "gauge",
    &["version"],
    "Always 1; the version of the running binary.",
);

/// The share of an integration's events over an hour, refused or to be retried, above which
/// it is flagged: by `status`, and by the alert in deploy/prometheus.
pub const ERROR_SHARE_ALARM: f64 = 0.5;

/// Every metric, in the order the contract lists them.
pub const METRICS: &[MetricSpec] = &[
    EVENTS_TOTAL,
    REQUESTS_TOTAL,
    REQUESTS_REFUSED_TOTAL,
    REQUEST_SECONDS,
    AUTH_FAILURES_TOTAL,
    BACKEND_ERRORS_TOTAL,
    LOOKUPS_FAILED_TOTAL,
    POLL_TICKS_TOTAL,
    POLL_FAILURES_TOTAL,
    MISSED_BY_EVENTS_TOTAL,
    RATE_LIMIT_WAITS,
    COMMITS_TOTAL,
    COMMIT_GROUP_SIZE,
    QUEUE_JOBS,
    BUILD_INFO,
];

/// Describes every metric to the installed recorder and sets the build info: called once by
/// whoever installs one.
pub fn describe_metrics() {
    for spec in METRICS {
        match spec.kind {
            "counter" => metrics::describe_counter!(spec.name, spec.help),
            "gauge" => metrics::describe_gauge!(spec.name, spec.help),
            _ if spec.name.ends_with("_seconds") => {
                metrics::describe_histogram!(spec.name, metrics::Unit::Seconds, spec.help)
            }
            _ => metrics::describe_histogram!(spec.name, spec.help),
        }
    }
    metrics::gauge!(BUILD_INFO.name, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

fn count_event(integration_id: &str, outcome: &'static str, reason: &str) {
    metrics::counter!(
        EVENTS_TOTAL.name,
        "integration_id" => integration_id.to_owned(),
        "outcome" => outcome,
        "reason" => reason.to_owned()
    )
    .increment(1);
}

/// A request's counts; its events' were counted as each was settled.
fn count_request(event: &RequestHandled<'_>) {
    metrics::counter!(REQUESTS_TOTAL.name, "status" => event.status.to_string()).increment(1);
    metrics::histogram!(REQUEST_SECONDS.name).record(event.duration_ms / 1000.0);
}

fn count_refusal(event: &RequestRefused<'_>) {
    metrics::counter!(REQUESTS_TOTAL.name, "status" => event.status.to_string()).increment(1);
    metrics::counter!(REQUESTS_REFUSED_TOTAL.name, "reason" => event.error.to_owned()).increment(1);
    metrics::histogram!(REQUEST_SECONDS.name).record(event.duration_ms / 1000.0);
}

fn count_accepted(event: &EventAccepted<'_>) {
    count_event(event.integration_id, "accepted", "");
}

fn count_duplicate(event: &EventDuplicate<'_>) {
    count_event(event.integration_id, "duplicate", event.reason);
}

fn count_skipped(event: &EventSkipped<'_>) {
    count_event(event.integration_id, "skipped", event.reason);
}

fn count_rejected(event: &EventRejected<'_>) {
    count_event(event.integration_id, "rejected", event.reason);
}

fn count_retry_later(event: &EventRetryLater<'_>) {
    count_event(event.integration_id, "retry_later", event.reason);
}

fn count_auth_failure(event: &AuthFailed<'_>) {
    metrics::counter!(AUTH_FAILURES_TOTAL.name, "cause" => event.cause.to_owned()).increment(1);
}

fn count_lookup_failure(event: &ObjectLookupFailed<'_>) {
    metrics::counter!(LOOKUPS_FAILED_TOTAL.name, "cause" => event.cause.to_owned()).increment(1);
}

fn count_backend_error(event: &BackendUnavailable<'_>) {
    metrics::counter!(BACKEND_ERRORS_TOTAL.name, "backend" => event.backend.to_owned())
        .increment(1);
}

fn count_poll_tick(event: &PollTick<'_>) {
    metrics::counter!(POLL_TICKS_TOTAL.name, "mode" => event.mode.to_owned()).increment(1);
}

fn count_poll_failure(event: &PollFailed<'_>) {
    metrics::counter!(POLL_FAILURES_TOTAL.name, "error" => event.error.to_owned()).increment(1);
}

fn count_missed(event: &MissedByEvents<'_>) {
    metrics::counter!(
        MISSED_BY_EVENTS_TOTAL.name,
        "integration_id" => event.integration_id.to_owned()
    )
    .increment(1);
}

fn count_rate_limit_wait(event: &RateLimitWait<'_>) {
    metrics::counter!(
        RATE_LIMIT_WAITS.name,
        "integration_id" => event.integration_id.to_owned()
    )
    .increment(1);
}

fn count_group(event: &GroupCommitted) {
    metrics::counter!(COMMITS_TOTAL.name).increment(1);
    metrics::histogram!(COMMIT_GROUP_SIZE.name).record(event.requests as f64);
}

fn set_queue_depth(event: &QueueDepthRead<'_>) {
    metrics::gauge!(QUEUE_JOBS.name, "queue" => event.queue.to_owned()).set(event.waiting as f64);
}

/// The description of an event as one line: its doc comment's lines joined.
pub fn describe(spec: &EventSpec) -> String {
    spec.description
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// docs/operators.md's table of log lines: each message, its level, its fields and when it is
/// written.
pub fn log_table() -> String {
    let mut table = String::from("| message | level | fields | when |\n|---|---|---|---|\n");
    for spec in CATALOGUE {
        let fields: Vec<String> = spec.fields.iter().map(|f| format!("`{f}`")).collect();
        table.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            spec.message,
            spec.level,
            if fields.is_empty() {
                "-".to_owned()
            } else {
                fields.join(", ")
            },
            describe(spec).replace('|', "\\|")
        ));
    }
    table
}

/// docs/operators.md's table of metrics: each metric, its kind, its labels and what it counts.
pub fn metric_table() -> String {
    let mut table = String::from("| metric | kind | labels | what |\n|---|---|---|---|\n");
    for spec in METRICS {
        let labels: Vec<String> = spec.labels.iter().map(|l| format!("`{l}`")).collect();
        table.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            spec.name,
            spec.kind,
            if labels.is_empty() {
                "-".to_owned()
            } else {
                labels.join(", ")
            },
            spec.help
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_described_and_each_message_keeps_one_meaning() {
        for spec in CATALOGUE {
            assert!(
                describe(spec).len() > 20,
                "{} is not described",
                spec.message
            );
            assert!(
                ["DEBUG", "INFO", "WARN", "ERROR"].contains(&spec.level),
                "{}",
                spec.message
            );
            assert!(
                spec.message
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{} is not snake_case",
                spec.message
            );
        }
        // A message shared by two types (a request answered or refused, a message kept by
        // either replay) keeps the fields a query on it relies on.
        let request: Vec<&EventSpec> = CATALOGUE
            .iter()
            .filter(|s| s.message == "request")
            .collect();
        assert_eq!(request.len(), 2);
        for spec in request {
            for field in ["integration_id", "status", "bytes", "duration_ms"] {
                assert!(spec.fields.contains(&field), "request without {field}");
            }
        }
    }
}

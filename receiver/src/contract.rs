//! The contract as data: every word and name the receiver, the worker, the Terraform modules and
//! the docs must agree on, read from the one place each is defined.
//!
//! `cargo run --example contract` prints [`document`] as JSON for the tests written in other
//! languages (Terraform's, the worker's), `--reason-table` prints [`reason_table`], the
//! docs/contract.md's table of reasons, and `--log-table` docs/operators.md's table of log lines
//! ([`crate::events::log_table`]); `receiver/tests/docs.rs` holds both pages to this output.

use crate::backend::bucket::{AccessError, SESSION_NAME};
use crate::backend::dynamodb::TTL_ATTRIBUTE;
use crate::backend::{CLAIM_LEASE, MAX_REQUEST_TIME, SQS_FIFO_DEDUP_WINDOW};
use crate::env;
use crate::integrations::STALENESS;
use crate::telemetry::{
    METRICS_DIMENSION, METRICS_NAMESPACE, METRIC_OUTCOME_PREFIX, METRIC_REASON_PREFIX,
};
use relay_protocol::wire::{self, request_error_status};
use relay_protocol::{Outcome, Reason};
use serde_json::{json, Value};

/// Everything the other languages' tests read, as one JSON document.
pub fn document() -> Value {
    let reasons: Vec<Value> = Reason::ALL
        .iter()
        .map(|reason| {
            json!({
                "reason": reason.as_str(),
                "outcome": reason.outcome().map(Outcome::as_str),
                "status": reason.outcome().is_none().then(|| request_error_status(*reason)),
                "description": reason.description(),
            })
        })
        .collect();
    let metrics: Vec<String> = Outcome::ALL
        .iter()
        .map(|o| format!("{METRIC_OUTCOME_PREFIX}{o}"))
        .chain(
            Reason::ALL
                .iter()
                .map(|r| format!("{METRIC_REASON_PREFIX}{r}")),
        )
        .collect();
    json!({
        "outcomes": Outcome::ALL.iter().map(|o| o.as_str()).collect::<Vec<_>>(),
        "reasons": reasons,
        "prometheus_metrics": crate::events::METRICS,
        "error_share_alarm": crate::events::ERROR_SHARE_ALARM,
        "log_events": crate::events::CATALOGUE.iter().map(|spec| json!({
            "message": spec.message,
            "level": spec.level,
            "fields": spec.fields,
            "description": crate::events::describe(spec),
        })).collect::<Vec<_>>(),
        "receiver": {
            "auth_failed_causes": crate::auth::causes(),
            "env": env::ALL,
            "events_path": wire::events_path("{integration_id}"),
            "health_path": wire::HEALTH_PATH,
            "bearer_prefix": wire::BEARER_PREFIX,
            "max_body_bytes": wire::MAX_BODY_BYTES,
            "max_events_per_request": wire::MAX_EVENTS_PER_REQUEST,
            "max_request_seconds": MAX_REQUEST_TIME.num_seconds(),
            "claim_lease_seconds": CLAIM_LEASE.num_seconds(),
            "sqs_fifo_dedup_window_seconds": SQS_FIFO_DEDUP_WINDOW.num_seconds(),
            "integration_staleness_seconds": STALENESS.as_secs_f64(),
        },
        "metrics": {
            "namespace": METRICS_NAMESPACE,
            "dimension": {"name": METRICS_DIMENSION.0, "value": METRICS_DIMENSION.1},
            "outcome_prefix": METRIC_OUTCOME_PREFIX,
            "reason_prefix": METRIC_REASON_PREFIX,
            "names": metrics,
        },
        "ledger": {
            "key": "job_id",
            "ttl_attribute": TTL_ATTRIBUTE,
            "horizon_days": {
                "default": relay_protocol::integration::DEFAULT_HORIZON_DAYS,
                "min": relay_protocol::integration::MIN_HORIZON_DAYS,
                "max": relay_protocol::integration::MAX_HORIZON_DAYS,
            },
        },
        "listing": {
            "session_name": SESSION_NAME,
            "lookup_session_name": crate::backend::lookup::SESSION_NAME,
            "lookup_failed_message": crate::events::ObjectLookupFailed::MESSAGE,
            "missed_by_events_message": crate::events::MissedByEvents::MESSAGE,
            "external_id_prefix": relay_protocol::secret::EXTERNAL_ID_PREFIX,
            "lambda_handler_poll": crate::env::LAMBDA_HANDLER_POLL,
            "access_errors": AccessError::NAMES,
            "lookup_errors": crate::backend::lookup::LookupError::NAMES,
        },
        "worker": {
            "name": wire::WORKER_NAME,
            "secret": wire::WORKER_SECRET_NAME,
            "vars": {
                "receiver_url": wire::WORKER_VAR_RECEIVER_URL,
                "integration_id": wire::WORKER_VAR_INTEGRATION_ID,
                "key_prefix": wire::WORKER_VAR_KEY_PREFIX,
                "key_suffixes": wire::WORKER_VAR_KEY_SUFFIXES,
                "actions": wire::WORKER_VAR_ACTIONS,
                "timeout": wire::WORKER_VAR_TIMEOUT,
                "allow_insecure": wire::WORKER_VAR_ALLOW_INSECURE,
            },
            "dead_letter_binding": wire::WORKER_DLQ_BINDING,
            "queue": wire::WORKER_QUEUE,
            "dead_letter_queue": wire::WORKER_DEAD_LETTER_QUEUE,
            "queue_retention_seconds": wire::WORKER_QUEUE_RETENTION_SECONDS,
            "max_retry_delay_var": wire::WORKER_VAR_MAX_RETRY_DELAY,
            "bundle_var": wire::WORKER_VAR_BUNDLE,
            "bundle_header": wire::HEADER_WORKER_BUNDLE,
            "plans": wire::CloudflarePlan::ALL.iter().map(|plan| json!({
                "plan": plan.as_str(),
                "queue_retention_seconds": plan.queue_retention_seconds(),
                "max_retry_delay_seconds": plan.max_retry_delay_seconds(),
                "retry_span_seconds": plan.retry_span_seconds(),
            })).collect::<Vec<_>>(),
            "max_retries": wire::WORKER_MAX_RETRIES,
        },
    })
}

/// docs/contract.md's table of reasons: each reason, its outcome (or its status when it refuses a
/// whole request) and its description, in decision order.
pub fn reason_table() -> String {
    let mut table = String::from("| reason | outcome / status | when |\n|---|---|---|\n");
    for reason in Reason::ALL {
        let answer = match reason.outcome() {
            Some(outcome) => format!("`{outcome}`"),
            None => format!("{} (request)", request_error_status(*reason)),
        };
        let when = reason.description();
        table.push_str(&format!("| `{reason}` | {answer} | {when} |\n"));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_an_outcome_or_a_status_never_both() {
        for reason in document()["reasons"].as_array().unwrap() {
            assert!(
                reason["outcome"].is_null() != reason["status"].is_null(),
                "{reason}"
            );
        }
    }

    #[test]
    fn the_reason_table_has_a_row_per_reason() {
        let table = reason_table();
        assert_eq!(table.lines().count(), 2 + Reason::ALL.len());
        assert!(table.contains("| `invalid_secret` | 401 (request) | No valid signature"));
        assert!(table.contains("| `duplicate` | `duplicate` | This object version"));
    }
}

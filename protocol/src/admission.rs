//! What an integration admits: how many new jobs a minute (`--max-jobs-per-minute`) and which
//! versions of a key (`--overwrites`). The rules are pure; the backends count.
//!
//! ## The rate: a fixed window
//! Time is cut into windows of one minute (a receiver may be told a shorter "minute" with
//! `RELAY_RATE_WINDOW`, which the tests use to see an hour's limit in seconds), numbered from
//! the Unix epoch. Every receiver counts the jobs it admits in the current window in the shared
//! store, and admits no more than the limit in one window. So over any stretch of `n` whole
//! windows at most `n × limit` jobs are made, and at most `2 × limit` in one window's length
//! that straddles a boundary. A job the window has no room for is answered `rate_limited`
//! (`retry_later`): its sender sends it again, and a listing waits for the next window.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The highest `--max-jobs-per-minute`: more than an SQS queue takes from one sender.
pub const MAX_JOBS_PER_MINUTE: u32 = 1_000_000;

/// What to do with a second version of a key (a new version id, or a new ETag).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Overwrites {
    /// Every version becomes a job.
    #[default]
    #[serde(rename = "new-job")]
    NewJob,
    /// Only the first version to reach the receiver becomes a job, for as long as the ledger
    /// remembers it (the integration's horizon); later ones are skipped `overwrite_ignored`.
    #[serde(rename = "ignore")]
    Ignore,
}

impl Overwrites {
    pub const fn as_str(self) -> &'static str {
        match self {
            Overwrites::NewJob => "new-job",
            Overwrites::Ignore => "ignore",
        }
    }

    #[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if takes a reference
    pub(crate) fn is_default(&self) -> bool {
        *self == Overwrites::NewJob
    }
}

impl fmt::Display for Overwrites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for Overwrites {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "new-job" => Ok(Overwrites::NewJob),
            "ignore" => Ok(Overwrites::Ignore),
            other => Err(format!(
                "unknown value {other:?} (expected one of: new-job, ignore)"
            )),
        }
    }
}

/// A limit the operator gave that cannot be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitError {
    JobsPerMinuteOutOfRange,
    ZeroMaxObjectBytes,
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitError::JobsPerMinuteOutOfRange => write!(
                f,
                "--max-jobs-per-minute must be 1 to {MAX_JOBS_PER_MINUTE} (or `none`)"
            ),
            LimitError::ZeroMaxObjectBytes => f.write_str("--max-object-bytes must be at least 1"),
        }
    }
}

impl std::error::Error for LimitError {}

/// Checks a `--max-jobs-per-minute`.
pub fn check_jobs_per_minute(limit: u32) -> Result<u32, LimitError> {
    if (1..=MAX_JOBS_PER_MINUTE).contains(&limit) {
        Ok(limit)
    } else {
        Err(LimitError::JobsPerMinuteOutOfRange)
    }
}

/// How long EventBridge sends an S3 event again before it goes to the rule's dead-letter queue:
/// its longest maximum event age, the source modules' default.
pub const EVENTBRIDGE_RETRY_SPAN_SECONDS: u64 = 24 * 60 * 60;

/// How long the sender of an integration's events sends a `rate_limited` one again before it
/// gives up on it, keeping it in a dead-letter queue to be replayed: R2's worker for its plan
/// ([`crate::wire::CloudflarePlan::retry_span_seconds`]), S3's EventBridge for a day.
pub fn retry_span_seconds(integration: &crate::Integration) -> u64 {
    match integration.provider {
        crate::Provider::R2 => integration.plan().retry_span_seconds(),
        crate::Provider::S3 => EVENTBRIDGE_RETRY_SPAN_SECONDS,
    }
}

/// The largest burst a limit of `per_minute` drains before the first of it outlives
/// `span_seconds` of retries: past it, the rest is dead-lettered (kept, to be replayed), never
/// lost, but late.
pub fn backlog_carried(per_minute: u32, span_seconds: u64) -> u64 {
    u64::from(per_minute).saturating_mul(span_seconds) / 60
}

/// One window of the rate: its number since the epoch, and when it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub index: i64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    /// The window of `length` that `at` falls in. A length under a millisecond counts as one.
    pub fn containing(at: DateTime<Utc>, length: Duration) -> Window {
        let length_ms = length.num_milliseconds().max(1);
        let index = at.timestamp_millis().div_euclid(length_ms);
        let start = DateTime::<Utc>::from_timestamp_millis(index * length_ms).unwrap_or(at);
        Window {
            index,
            start,
            end: start + Duration::milliseconds(length_ms),
        }
    }
}

/// How many of `wanted` jobs a window that has admitted `admitted` of `limit` takes now.
pub fn room(limit: u32, admitted: u64, wanted: u64) -> u64 {
    u64::from(limit).saturating_sub(admitted).min(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    #[test]
    fn windows_are_numbered_from_the_epoch_and_cover_time_without_gaps() {
        let minute = Duration::minutes(1);
        let w = Window::containing(at(90_000), minute);
        assert_eq!((w.index, w.start, w.end), (1, at(60_000), at(120_000)));
        assert_eq!(Window::containing(at(119_999), minute).index, 1);
        assert_eq!(Window::containing(at(120_000), minute).index, 2);
        assert_eq!(Window::containing(at(-1), minute).index, -1);
        let short = Window::containing(at(2_500), Duration::milliseconds(500));
        assert_eq!((short.index, short.end), (5, at(3_000)));
        assert_eq!(Window::containing(at(7), Duration::zero()).index, 7);
    }

    #[test]
    fn a_window_admits_up_to_its_limit_and_never_more() {
        assert_eq!(room(60, 0, 100), 60);
        assert_eq!(room(60, 50, 100), 10);
        assert_eq!(room(60, 60, 1), 0);
        assert_eq!(room(60, 75, 1), 0, "an overshoot another receiver made");
        assert_eq!(room(60, 0, 5), 5);
    }

    #[test]
    fn a_limit_carries_the_burst_its_senders_retry_for() {
        use crate::integration::tests::sample;
        use crate::wire::CloudflarePlan;
        let mut r2 = sample(crate::Provider::R2);
        r2.cloudflare_plan = Some(CloudflarePlan::Free);
        assert_eq!(retry_span_seconds(&r2), 41_120);
        assert_eq!(backlog_carried(60, retry_span_seconds(&r2)), 41_120);
        let s3 = sample(crate::Provider::S3);
        assert_eq!(backlog_carried(60, retry_span_seconds(&s3)), 86_400);
        assert_eq!(backlog_carried(u32::MAX, u64::MAX), u64::MAX / 60);
    }

    #[test]
    fn limits_are_checked_by_name() {
        assert_eq!(check_jobs_per_minute(60), Ok(60));
        assert_eq!(
            check_jobs_per_minute(0),
            Err(LimitError::JobsPerMinuteOutOfRange)
        );
        assert!(check_jobs_per_minute(MAX_JOBS_PER_MINUTE + 1).is_err());
        assert!(LimitError::JobsPerMinuteOutOfRange
            .to_string()
            .contains("--max-jobs-per-minute"));
    }

    #[test]
    fn the_overwrite_policy_reads_and_writes_its_flag_words() {
        for policy in [Overwrites::NewJob, Overwrites::Ignore] {
            assert_eq!(policy.as_str().parse::<Overwrites>(), Ok(policy));
            let json = serde_json::to_string(&policy).unwrap();
            assert_eq!(json, format!("\"{policy}\""));
        }
        assert!("first".parse::<Overwrites>().is_err());
    }
}

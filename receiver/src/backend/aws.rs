//! The AWS SDK's configuration, read from the environment once per process, and the deadlines
//! and retries each purpose gets. Every AWS client the receiver makes starts from here.
//!
//! The configuration is read at its first use, so a command that never calls AWS never reads
//! it (and never waits for a credentials chain it does not need).

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use std::time::Duration;
use tokio::sync::OnceCell;

/// The most a lookup may take, `AssumeRole` included: well inside the 5 s EventBridge gives an
/// API destination (`lookup::API_DESTINATION_TIMEOUT`), so the request still answers (with the event's own id) when the
/// customer's side is slow.
pub(crate) const LOOKUP_BUDGET: Duration = Duration::from_secs(2);

/// What an AWS call is for: each purpose has its own deadline and retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The receiver's own backends (DynamoDB, SQS, Secrets Manager) and the dead-letter queues:
    /// on a request's path, so a stuck call gives up in seconds and the sender retries.
    Backends,
    /// Listing a customer's bucket (poll ticks, backfills): a page may be slow, and a tick may
    /// wait for it.
    Listing,
    /// Looking one object up on a request's path: the whole lookup, role included, within
    /// [`LOOKUP_BUDGET`].
    Lookup,
}

impl Purpose {
    fn timeouts(self) -> TimeoutConfig {
        let builder = TimeoutConfig::builder();
        match self {
            Purpose::Backends => builder
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(10)),
            Purpose::Listing => builder
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30)),
            Purpose::Lookup => builder
                .connect_timeout(Duration::from_secs(1))
                .operation_attempt_timeout(Duration::from_secs(1))
                .operation_timeout(LOOKUP_BUDGET),
        }
        .build()
    }

    fn attempts(self) -> u32 {
        match self {
            Purpose::Backends => 3,
            Purpose::Listing => 5,
            Purpose::Lookup => 2,
        }
    }
}

/// The process's AWS configuration, read once.
#[derive(Debug, Default)]
pub(crate) struct AwsConfig {
    loaded: OnceCell<SdkConfig>,
}

impl AwsConfig {
    /// The configuration for `purpose`: the environment's (region, credentials, endpoint), with
    /// that purpose's deadlines and retries.
    pub(crate) async fn for_purpose(&self, purpose: Purpose) -> SdkConfig {
        let base = self
            .loaded
            .get_or_init(|| aws_config::defaults(BehaviorVersion::latest()).load())
            .await;
        base.to_builder()
            .timeout_config(purpose.timeouts())
            .retry_config(RetryConfig::standard().with_max_attempts(purpose.attempts()))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_gives_up_within_its_budget_and_a_backend_call_within_seconds() {
        let lookup = Purpose::Lookup.timeouts();
        assert_eq!(lookup.operation_timeout(), Some(LOOKUP_BUDGET));
        let backend = Purpose::Backends.timeouts();
        assert!(backend.operation_timeout() <= Some(Duration::from_secs(10)));
        assert!(
            Purpose::Listing.timeouts().operation_attempt_timeout() > lookup.operation_timeout()
        );
    }
}

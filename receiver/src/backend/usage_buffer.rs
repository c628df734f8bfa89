//! Usage counts added up in memory and written together: on DynamoDB each request's counts were
//! one `UpdateItem` (a write unit), the fourth of a job that came alone, as S3's events do
//! through EventBridge. Here a process adds its requests' counts up and writes them at most
//! every [`USAGE_FLUSH_EVERY`]: on the request that finds the oldest count that old, when a
//! count is read, on a tick while `serve` runs, and when the process ends (`serve` on its
//! shutdown signal, a Lambda on the SIGTERM it gets before its environment is shut down).
//!
//! The price: another process's `status` sees a count up to that late, and a process that dies
//! without its shutdown (killed, out of memory) loses the counts it had not written. Counts are
//! for reports; the events they count are settled, so no job is ever lost by it. A write that
//! fails keeps its counts for the next one.

use super::{add_counts, BackendError, UsageCounts, UsageLog};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long counts wait in memory, at most, before they are written.
pub const USAGE_FLUSH_EVERY: Duration = Duration::from_secs(10);

/// Counts waiting to be written, per integration and usage hour.
#[derive(Default)]
struct Pending {
    /// When the oldest count still waiting was added.
    since: Option<Instant>,
    /// Per (integration, hour): a moment in the hour and the counts.
    counts: BTreeMap<(String, String), (DateTime<Utc>, UsageCounts)>,
}

impl Pending {
    fn add(&mut self, integration_id: &str, at: DateTime<Utc>, counts: &UsageCounts) {
        let key = (integration_id.to_owned(), super::usage_hour(at));
        let (_, total) = self
            .counts
            .entry(key)
            .or_insert_with(|| (at, UsageCounts::new()));
        add_counts(total, counts);
        self.since.get_or_insert_with(Instant::now);
    }
}

/// A [`UsageLog`] that adds counts up in memory and writes them to `inner` together.
pub struct BufferedUsage {
    inner: Arc<dyn UsageLog>,
    every: Duration,
    pending: Mutex<Pending>,
}

impl BufferedUsage {
    /// Writes at most every `every`; zero writes each request's counts at once.
    pub fn new(inner: Arc<dyn UsageLog>, every: Duration) -> Self {
        BufferedUsage {
            inner,
            every,
            pending: Mutex::new(Pending::default()),
        }
    }

    /// Writes every count waiting. What cannot be written waits for the next flush.
    pub async fn flush(&self) -> Result<(), BackendError> {
        let waiting = {
            let mut pending = self.pending.lock().await;
            pending.since = None;
            std::mem::take(&mut pending.counts)
        };
        let mut first_error = None;
        let mut failed = Vec::new();
        for ((integration_id, _), (at, counts)) in waiting {
            if let Err(err) = self.inner.record(&integration_id, at, &counts).await {
                first_error.get_or_insert(err);
                failed.push((integration_id, at, counts));
            }
        }
        if !failed.is_empty() {
            let mut pending = self.pending.lock().await;
            for (integration_id, at, counts) in failed {
                pending.add(&integration_id, at, &counts);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Flushes whenever counts have waited [`Self::new`]'s `every`, until the process ends.
    pub fn spawn_ticker(self: &Arc<Self>) {
        if self.every.is_zero() {
            return;
        }
        let buffer = Arc::downgrade(self);
        let every = self.every;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(buffer) = buffer.upgrade() else {
                    return;
                };
                if let Err(err) = buffer.flush_if_due().await {
                    crate::telemetry::log_backend_error(&err);
                }
            }
        });
    }

    /// Writes every count waiting, and logs a failure (the counts then wait for the next
    /// flush): before a read, and when the process ends.
    pub async fn flush_or_log(&self) {
        if let Err(err) = self.flush().await {
            crate::telemetry::log_backend_error(&err);
        }
    }

    /// Whether the oldest waiting count has waited its interval (always, with a zero one).
    fn is_due(&self, pending: &Pending) -> bool {
        pending
            .since
            .is_some_and(|since| since.elapsed() >= self.every)
    }

    async fn flush_if_due(&self) -> Result<(), BackendError> {
        let due = self.is_due(&*self.pending.lock().await);
        if due {
            self.flush().await
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl UsageLog for BufferedUsage {
    async fn record(
        &self,
        integration_id: &str,
        at: DateTime<Utc>,
        counts: &UsageCounts,
    ) -> Result<(), BackendError> {
        let due = {
            let mut pending = self.pending.lock().await;
            pending.add(integration_id, at, counts);
            self.is_due(&pending)
        };
        if due {
            self.flush().await
        } else {
            Ok(())
        }
    }

    /// Written first, so a process reads its own counts (a write that fails is logged, and
    /// the read goes on without them).
    async fn usage(
        &self,
        integration_id: &str,
        since: NaiveDate,
        until: NaiveDate,
    ) -> Result<BTreeMap<NaiveDate, UsageCounts>, BackendError> {
        self.flush_or_log().await;
        self.inner.usage(integration_id, since, until).await
    }

    async fn recent(
        &self,
        integration_id: &str,
        since: DateTime<Utc>,
    ) -> Result<UsageCounts, BackendError> {
        self.flush_or_log().await;
        self.inner.recent(integration_id, since).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryUsage;
    use crate::backend::UsageKey;
    use relay_protocol::Outcome;

    /// A usage log that counts its writes and can be made to fail.
    #[derive(Default)]
    struct Counting {
        inner: MemoryUsage,
        writes: std::sync::atomic::AtomicUsize,
        failing: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl UsageLog for Counting {
        async fn record(
            &self,
            integration_id: &str,
            at: DateTime<Utc>,
            counts: &UsageCounts,
        ) -> Result<(), BackendError> {
            if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(BackendError::new("test", "unavailable"));
            }
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.record(integration_id, at, counts).await
        }
        async fn usage(
            &self,
            integration_id: &str,
            since: NaiveDate,
            until: NaiveDate,
        ) -> Result<BTreeMap<NaiveDate, UsageCounts>, BackendError> {
            self.inner.usage(integration_id, since, until).await
        }
        async fn recent(
            &self,
            integration_id: &str,
            since: DateTime<Utc>,
        ) -> Result<UsageCounts, BackendError> {
            self.inner.recent(integration_id, since).await
        }
    }

    fn accepted(n: u64) -> UsageCounts {
        UsageCounts::from([(UsageKey::new(Outcome::Accepted, None), n)])
    }

    fn at(hour: u32, minute: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_460_800, 0).unwrap()
            + chrono::Duration::hours(i64::from(hour))
            + chrono::Duration::minutes(i64::from(minute))
    }

    #[tokio::test]
    async fn requests_counts_are_written_together_and_each_reader_sees_them() {
        let log = Arc::new(Counting::default());
        let buffer = BufferedUsage::new(log.clone(), Duration::from_secs(3600));
        for minute in 0..50 {
            buffer
                .record("int_1", at(1, minute), &accepted(1))
                .await
                .unwrap();
        }
        buffer
            .record("int_1", at(2, 5), &accepted(2))
            .await
            .unwrap();
        buffer
            .record("int_2", at(1, 5), &accepted(3))
            .await
            .unwrap();
        assert_eq!(log.writes.load(std::sync::atomic::Ordering::SeqCst), 0);
        // A read writes what waits first: one write per integration and hour.
        let recent = buffer.recent("int_1", at(1, 0)).await.unwrap();
        assert_eq!(recent, accepted(52));
        assert_eq!(log.writes.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(log.recent("int_2", at(1, 0)).await.unwrap(), accepted(3));
    }

    #[tokio::test]
    async fn counts_wait_at_most_their_interval_and_zero_writes_through() {
        let log = Arc::new(Counting::default());
        let buffer = BufferedUsage::new(log.clone(), Duration::from_millis(50));
        buffer
            .record("int_1", at(1, 0), &accepted(1))
            .await
            .unwrap();
        assert_eq!(log.writes.load(std::sync::atomic::Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_millis(60)).await;
        buffer
            .record("int_1", at(1, 1), &accepted(1))
            .await
            .unwrap();
        assert_eq!(log.writes.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(log.recent("int_1", at(1, 0)).await.unwrap(), accepted(2));

        let through = BufferedUsage::new(log.clone(), Duration::ZERO);
        through
            .record("int_1", at(1, 2), &accepted(1))
            .await
            .unwrap();
        assert_eq!(log.writes.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_write_keeps_its_counts_for_the_next() {
        let log = Arc::new(Counting::default());
        let buffer = BufferedUsage::new(log.clone(), Duration::from_secs(3600));
        buffer
            .record("int_1", at(1, 0), &accepted(4))
            .await
            .unwrap();
        log.failing.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(buffer.flush().await.is_err());
        buffer
            .record("int_1", at(1, 1), &accepted(1))
            .await
            .unwrap();
        assert_eq!(
            buffer.recent("int_1", at(1, 0)).await.unwrap(),
            UsageCounts::new(),
            "a read answers what is written while the write fails"
        );
        log.failing
            .store(false, std::sync::atomic::Ordering::SeqCst);
        buffer.flush().await.unwrap();
        assert_eq!(log.recent("int_1", at(1, 0)).await.unwrap(), accepted(5));
    }
}

//! The handler's answers when the ledger or the queue cannot do their part: an outage must
//! answer `retry_later` and lose nothing, and a concurrent claim must not become a duplicate.
//!
//! The embedded SQLite backend cannot be made to fail on demand, so a queue that refuses stands
//! in for an outage here; the AWS backends' tests take the real emulator down instead.

use async_trait::async_trait;
use bucket_relay::backend::claiming::Claiming;
use bucket_relay::backend::memory::{
    sample_job, MemoryCursors, MemoryHistory, MemoryLedger, MemoryQueue, MemoryStore, MemoryUsage,
    StaticKey,
};
use bucket_relay::backend::{
    BackendError, Backends, Delivery, Ledger, LedgerTime, MasterKey, Queue, Store,
};
use bucket_relay::handler::Relay;
use bytes::Bytes;
use chrono::Utc;
use relay_protocol::integration::NewIntegration;
use relay_protocol::wire::{events_path, Results};
use relay_protocol::{secret, webhook, IngestJob, Outcome, Provider, Reason};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const MASTER: &[u8] = b"handler test master key";

/// The embedded queue, switchable off like a service outage.
#[derive(Default)]
struct FlakyQueue {
    down: AtomicBool,
    inner: MemoryQueue,
}

#[async_trait]
impl Queue for FlakyQueue {
    async fn send(&self, jobs: &[&IngestJob]) -> Result<Vec<Delivery>, BackendError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BackendError::new("queue", "connection refused"));
        }
        self.inner.send(jobs).await
    }
    async fn probe(&self) -> Result<(), BackendError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BackendError::new("queue", "connection refused"));
        }
        Ok(())
    }
}

struct Fixture {
    relay: Relay,
    ledger: Arc<MemoryLedger>,
    queue: Arc<FlakyQueue>,
}

async fn fixture() -> Fixture {
    let now = Utc::now();
    let store = Arc::new(MemoryStore::default());
    store
        .put(
            &NewIntegration::new(Provider::R2, "uploads")
                .build("h", now)
                .unwrap(),
        )
        .await
        .unwrap();
    let ledger = Arc::new(MemoryLedger::default());
    let queue = Arc::new(FlakyQueue::default());
    let usage = Arc::new(MemoryUsage::default());
    let history = Arc::new(MemoryHistory::default());
    let backends = Backends {
        store,
        intake: Arc::new(Claiming::new(
            ledger.clone(),
            queue.clone(),
            usage.clone(),
            history.clone(),
        )),
        usage,
        cursors: Arc::new(MemoryCursors::default()),
        history,
        records: ledger.clone(),
        backlog: Arc::new(MemoryQueue::default()),
    };
    let keys = Arc::new(StaticKey::new(MasterKey::from_bytes(MASTER)));
    Fixture {
        relay: Relay::new(backends, keys),
        ledger,
        queue,
    }
}

fn batch(keys: &[&str]) -> http::Request<Bytes> {
    let events: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            format!(
                r#"{{"id":"m{i}","notification":{{"action":"PutObject","bucket":"uploads","object":{{"key":"{key}","size":1,"eTag":"e"}},"eventTime":"t"}}}}"#
            )
        })
        .collect();
    let body = format!(r#"{{"events":[{}]}}"#, events.join(","));
    let timestamp = Utc::now().timestamp();
    let signature =
        secret::event_source_key(MASTER, "int_h", 1).sign("b1", timestamp, body.as_bytes());
    http::Request::post(events_path("int_h"))
        .header(webhook::HEADER_ID, "b1")
        .header(webhook::HEADER_TIMESTAMP, timestamp.to_string())
        .header(webhook::HEADER_SIGNATURE, signature)
        .body(Bytes::from(body))
        .unwrap()
}

async fn outcomes(relay: &Relay, request: http::Request<Bytes>) -> Vec<(Outcome, Option<Reason>)> {
    let response = relay.handle(request).await;
    assert_eq!(response.status(), 200);
    let results: Results = serde_json::from_slice(response.body()).unwrap();
    results
        .results
        .into_iter()
        .map(|r| (r.outcome, r.reason))
        .collect()
}

#[tokio::test]
async fn a_queue_outage_answers_retry_later_and_the_retry_is_accepted_not_duplicate() {
    let f = fixture().await;
    f.queue.down.store(true, Ordering::SeqCst);
    let down = outcomes(&f.relay, batch(&["a.pdf", "b.pdf"])).await;
    assert_eq!(
        down,
        vec![(Outcome::RetryLater, Some(Reason::BackendUnavailable)); 2]
    );
    assert!(f.queue.inner.jobs().is_empty());

    f.queue.down.store(false, Ordering::SeqCst);
    let back = outcomes(&f.relay, batch(&["a.pdf", "b.pdf"])).await;
    assert_eq!(back, vec![(Outcome::Accepted, None); 2]);
    assert_eq!(f.queue.inner.jobs().len(), 2);
}

fn at_now() -> LedgerTime {
    LedgerTime {
        now: Utc::now(),
        horizon: chrono::Duration::days(400),
    }
}

#[tokio::test]
async fn an_object_claimed_by_a_concurrent_request_is_retried_not_dropped() {
    let f = fixture().await;
    // Another request has claimed a.pdf and not yet enqueued it.
    let job_id = relay_protocol::job::job_id("int_h", "uploads", "a.pdf", "e");
    f.ledger
        .claim(&[&claimed_job(&job_id)], at_now(), "another-request")
        .await
        .unwrap();

    let answer = outcomes(&f.relay, batch(&["a.pdf", "b.pdf"])).await;
    assert_eq!(
        answer,
        vec![
            (Outcome::RetryLater, Some(Reason::InFlight)),
            (Outcome::Accepted, None)
        ]
    );
    let keys: Vec<String> = f.queue.inner.jobs().into_iter().map(|j| j.key).collect();
    assert_eq!(keys, ["b.pdf"]);
}

fn claimed_job(job_id: &str) -> IngestJob {
    IngestJob {
        integration_id: "int_h".into(),
        ..sample_job(job_id, "a.pdf")
    }
}

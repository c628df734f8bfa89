//! CPU cost per event of the whole handler: a signed 100-event R2 batch from the worker goes
//! through routing, signature verification, parsing, the decision, the ledger and the queue
//! (in-memory backends, so only the receiver's own work is measured).
//!
//! `baseline` measures the least any receiver must do with the same body (verify the signature,
//! parse the batch); `scripts/bench` prints the handler's cost per event and its ratio to it.

use bucket_relay::backend::claiming::Claiming;
use bucket_relay::backend::memory::{MemoryLedger, MemoryQueue, MemoryStore, MemoryUsage};
use bucket_relay::backend::Backends;
use bucket_relay::handler::Relay;
use bucket_relay::master_key::{MasterKey, StaticKey};
use bytes::Bytes;
use chrono::Utc;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use relay_protocol::integration::DEFAULT_MAX_OBJECT_BYTES;
use relay_protocol::webhook::{self, SignedHeaders};
use relay_protocol::wire::{events_path, WorkerBatch};
use relay_protocol::{secret, Integration, Mode, Provider, Status};
use std::sync::Arc;

const EVENTS: usize = 100;
const MASTER: &[u8] = b"benchmark master key, 32 bytes!!";

fn integration() -> Integration {
    let now = Utc::now();
    Integration {
        id: "int_bench".into(),
        provider: Provider::R2,
        bucket: "uploads".into(),
        account: Some("3f4b7e3dcab231cbfdaa90a6a28bd548".into()),
        region: None,
        mode: Mode::Event,
        status: Status::Active,
        prefix: Some("incoming/".into()),
        suffixes: vec![".pdf".into(), ".png".into()],
        max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
        output_prefix: Some("results/".into()),
        generation: 1,
        previous_generations: vec![],
        created_at: now,
        updated_at: now,
    }
}

fn batch_body() -> String {
    let events: Vec<String> = (0..EVENTS)
        .map(|i| {
            format!(
                r#"{{"id":"{i:032x}","notification":{{"account":"3f4b7e3dcab231cbfdaa90a6a28bd548","action":"PutObject","bucket":"uploads","object":{{"key":"incoming/2026/11/22/scan {i:05}.pdf","size":{size},"eTag":"c846ff7a18f28c2e262116d6e87{i:05x}"}},"eventTime":"2026-11-22T10:00:00.000Z"}}}}"#,
                size = 65_536 + i
            )
        })
        .collect();
    format!(r#"{{"events":[{}]}}"#, events.join(","))
}

fn signed_request(body: &str) -> http::Request<Bytes> {
    let key = secret::event_source_key(MASTER, "int_bench", 1);
    let timestamp = Utc::now().timestamp();
    let signature = key.sign("batch-1", timestamp, body.as_bytes());
    http::Request::post(events_path("int_bench"))
        .header(webhook::HEADER_ID, "batch-1")
        .header(webhook::HEADER_TIMESTAMP, timestamp.to_string())
        .header(webhook::HEADER_SIGNATURE, signature)
        .body(Bytes::from(body.to_owned()))
        .unwrap()
}

fn fresh_relay() -> Relay {
    let usage = Arc::new(MemoryUsage::default());
    let intake = Claiming::new(
        Arc::new(MemoryLedger::default()),
        Arc::new(MemoryQueue::default()),
        usage.clone(),
    );
    let backends = Backends {
        store: Arc::new(MemoryStore::with([integration()])),
        intake: Arc::new(intake),
        usage,
    };
    Relay::new(
        backends,
        Arc::new(StaticKey(MasterKey::from_bytes(MASTER))),
        false,
    )
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let body = batch_body();
    let mut group = c.benchmark_group("worker_batch_100");
    group.throughput(Throughput::Elements(EVENTS as u64));

    group.bench_function("baseline", |b| {
        let key = secret::event_source_key(MASTER, "int_bench", 1);
        let request = signed_request(&body);
        let header = |name| request.headers().get(name).unwrap().to_str().unwrap();
        let headers = SignedHeaders {
            id: Some(header(webhook::HEADER_ID)),
            timestamp: Some(header(webhook::HEADER_TIMESTAMP)),
            signature: Some(header(webhook::HEADER_SIGNATURE)),
        };
        let now = Utc::now().timestamp();
        b.iter(|| {
            webhook::verify(std::slice::from_ref(&key), headers, body.as_bytes(), now).unwrap();
            let batch: WorkerBatch = serde_json::from_str(&body).unwrap();
            assert_eq!(batch.events.len(), EVENTS);
        });
    });

    // Every iteration gets a fresh ledger, so all 100 events are new objects and are enqueued.
    group.bench_function("handler_all_accepted", |b| {
        b.to_async(&runtime).iter_batched(
            || (fresh_relay(), signed_request(&body)),
            |(relay, request)| async move {
                let response = relay.handle(request).await;
                assert_eq!(response.status(), 200);
                relay
            },
            BatchSize::SmallInput,
        );
    });

    // A redelivered batch: every event is a duplicate.
    group.bench_function("handler_all_duplicate", |b| {
        let relay = fresh_relay();
        runtime.block_on(relay.handle(signed_request(&body)));
        b.to_async(&runtime).iter_batched(
            || signed_request(&body),
            |request| {
                let relay = &relay;
                async move {
                    let response = relay.handle(request).await;
                    assert_eq!(response.status(), 200);
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

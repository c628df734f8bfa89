//! CPU cost per event of the whole handler: a signed 100-event R2 batch from the worker goes
//! through routing, signature verification, parsing, the decision, the ledger and the queue.
//!
//! - `baseline`: the least any receiver must do with the body (verify the signature, parse).
//! - `handler_all_accepted` / `handler_all_duplicate`: in-memory backends, so only the
//!   receiver's own work is measured.
//! - `sqlite_floor`: the baseline plus the least a durable receiver must write, two rows per
//!   event (ledger and queue) in one SQLite transaction with prepared statements, as the embedded
//!   backend does: the floor for `serve`. Its ledger is laid out as the embedded backend's is,
//!   by object key and then the job id (a hash of the object's identity, the Node peer's key);
//!   not by the delivery's id, which rises and would only ever append, and which no receiver
//!   that makes one job per object can key by.
//! - `handler_sqlite_all_accepted`: the whole handler on the embedded SQLite backend, every
//!   event a new object.
//!
//! `scripts/bench` prints each per event and as a ratio to the baseline and the floor. All run
//! on the allocator the binary runs on (mimalloc, `src/main.rs`).

#[cfg(feature = "server")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bucket_relay::backend::claiming::Claiming;
use bucket_relay::backend::memory::{
    MemoryCursors, MemoryHistory, MemoryLedger, MemoryQueue, MemoryStore, MemoryUsage, StaticKey,
};
use bucket_relay::backend::sqlite::Sqlite;
use bucket_relay::backend::{Backends, MasterKey, Store};
use bucket_relay::handler::Relay;
use bytes::Bytes;
use chrono::Utc;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use relay_protocol::integration::NewIntegration;
use relay_protocol::webhook::{self, SignedHeaders, SigningKey};
use relay_protocol::wire::{events_path, WorkerBatch};
use relay_protocol::{secret, Integration, Provider};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const EVENTS: usize = 100;
const MASTER: &[u8] = b"benchmark master key, 32 bytes!!";

fn integration() -> Integration {
    let fields = NewIntegration {
        account: Some("3f4b7e3dcab231cbfdaa90a6a28bd548".into()),
        prefix: Some("incoming/".into()),
        suffixes: vec![".pdf".into(), ".png".into()],
        output_prefix: Some("results/".into()),
        ..NewIntegration::new(Provider::R2, "uploads")
    };
    fields.build("bench", Utc::now()).unwrap()
}

fn batch_body() -> String {
    numbered_batch(0)
}

/// A batch whose 100 objects no other batch number has.
fn numbered_batch(batch: u64) -> String {
    let events: Vec<String> = (0..EVENTS)
        .map(|i| {
            format!(
                r#"{{"id":"{batch:016x}{i:016x}","notification":{{"account":"3f4b7e3dcab231cbfdaa90a6a28bd548","action":"PutObject","bucket":"uploads","object":{{"key":"incoming/2026/11/22/scan {batch}-{i:05}.pdf","size":{size},"eTag":"c846ff7a18f28c2e262116d6e87{i:05x}"}},"eventTime":"2026-11-22T10:00:00.000Z"}}}}"#,
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
    let history = Arc::new(MemoryHistory::default());
    let ledger = Arc::new(MemoryLedger::default());
    let queue = Arc::new(MemoryQueue::default());
    let intake = Claiming::new(
        ledger.clone(),
        queue.clone(),
        usage.clone(),
        history.clone(),
    );
    let backends = Backends {
        store: Arc::new(MemoryStore::with([integration()])),
        intake: Arc::new(intake),
        usage,
        cursors: Arc::new(MemoryCursors::default()),
        history,
        records: ledger,
        backlog: queue,
    };
    Relay::new(
        backends,
        Arc::new(StaticKey::new(MasterKey::from_bytes(MASTER))),
    )
}

/// Times `relay` answering one request `make` builds per iteration (building it is not timed).
fn answer_each(
    b: &mut criterion::Bencher<'_>,
    runtime: &tokio::runtime::Runtime,
    relay: &Relay,
    make: impl FnMut() -> http::Request<Bytes>,
) {
    b.to_async(runtime).iter_batched(
        make,
        |request| async move {
            let response = relay.handle(request).await;
            assert_eq!(response.status(), 200);
        },
        BatchSize::SmallInput,
    );
}

fn bench(c: &mut Criterion) {
    // As `bucket-relay` builds its runtime: the embedded backend's group commits run on the
    // thread when it has nothing else to do.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .on_thread_park(bucket_relay::backend::sqlite::commit_before_park)
        .build()
        .unwrap();
    let body = batch_body();
    let mut group = c.benchmark_group("worker_batch_100");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("baseline", |b| baseline(b, &body));

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
        answer_each(b, &runtime, &relay, || signed_request(&body));
    });

    group.bench_function("handler_sqlite_all_accepted", |b| {
        handler_sqlite(b, &runtime)
    });
    group.bench_function("sqlite_floor", sqlite_floor);
    group.finish();
}

/// Verify and parse only: what any receiver pays before it stores anything.
fn baseline(b: &mut criterion::Bencher<'_>, body: &str) {
    let key = secret::event_source_key(MASTER, "int_bench", 1);
    let request = signed_request(body);
    let now = Utc::now().timestamp();
    b.iter(|| {
        let batch = verify_and_parse(&key, &request, body, now);
        assert_eq!(batch.events.len(), EVENTS);
    });
}

/// Durable: the handler on the embedded SQLite file, every event a new object.
fn handler_sqlite(b: &mut criterion::Bencher<'_>, runtime: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let db = Sqlite::open(&dir.path().join("relay.db")).unwrap();
    runtime.block_on(db.put(&integration())).unwrap();
    let db = Arc::new(db);
    let relay = Relay::new(
        Backends {
            store: db.clone(),
            intake: db.clone(),
            usage: db.clone(),
            cursors: db.clone(),
            history: db.clone(),
            records: db.clone(),
            backlog: db,
        },
        Arc::new(StaticKey::new(MasterKey::from_bytes(MASTER))),
    );
    let batches = AtomicU64::new(1);
    answer_each(b, runtime, &relay, || {
        signed_request(&numbered_batch(batches.fetch_add(1, Ordering::Relaxed)))
    });
}

/// The floor of a durable receiver: verify, parse, and two rows per event in one transaction.
fn sqlite_floor(b: &mut criterion::Bencher<'_>) {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = rusqlite::Connection::open(dir.path().join("floor.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.execute_batch(
        "CREATE TABLE ledger (key TEXT, job_id TEXT, PRIMARY KEY (key, job_id)) WITHOUT ROWID;
         CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);",
    )
    .unwrap();
    let key = secret::event_source_key(MASTER, "int_bench", 1);
    let batches = AtomicU64::new(1);
    b.iter_batched(
        || {
            let body = numbered_batch(batches.fetch_add(1, Ordering::Relaxed));
            let request = signed_request(&body);
            (body, request)
        },
        |(body, request)| {
            let batch = verify_and_parse(&key, &request, &body, Utc::now().timestamp());
            let tx = conn.transaction().unwrap();
            {
                let mut ledger = tx
                    .prepare_cached("INSERT OR IGNORE INTO ledger (key, job_id) VALUES (?1, ?2)")
                    .unwrap();
                let mut outbox = tx
                    .prepare_cached("INSERT INTO outbox (body) VALUES (?1)")
                    .unwrap();
                for event in &batch.events {
                    let object: FloorObject =
                        serde_json::from_str(event.notification.get()).unwrap();
                    let identity = format!(
                        "int_bench\n{}\n{}\n{}",
                        object.bucket, object.object.key, object.object.e_tag
                    );
                    let job_id = hex16(&Sha256::digest(identity.as_bytes()));
                    if ledger
                        .execute([object.object.key.as_str(), job_id.as_str()])
                        .unwrap()
                        == 1
                    {
                        outbox.execute([event.notification.get()]).unwrap();
                    }
                }
            }
            tx.commit().unwrap();
        },
        BatchSize::SmallInput,
    );
}

/// What the floor reads of an R2 notification: the object's identity.
#[derive(serde::Deserialize)]
struct FloorObject {
    bucket: String,
    object: FloorKey,
}

#[derive(serde::Deserialize)]
struct FloorKey {
    key: String,
    #[serde(rename = "eTag")]
    e_tag: String,
}

/// The first 16 bytes of a digest, in hex.
fn hex16(digest: &[u8]) -> String {
    use std::fmt::Write;
    let mut hex = String::with_capacity(32);
    for byte in &digest[..16] {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// What every receiver does first: check the signature, then parse the batch.
fn verify_and_parse<'a>(
    key: &SigningKey,
    request: &http::Request<Bytes>,
    body: &'a str,
    now: i64,
) -> WorkerBatch<'a> {
    webhook::verify(
        std::slice::from_ref(key),
        headers(request),
        body.as_bytes(),
        now,
    )
    .unwrap();
    serde_json::from_str(body).unwrap()
}

/// The Standard Webhooks headers of a signed request.
fn headers(request: &http::Request<Bytes>) -> SignedHeaders<'_> {
    let header = |name| request.headers().get(name).unwrap().to_str().unwrap();
    SignedHeaders {
        id: Some(header(webhook::HEADER_ID)),
        timestamp: Some(header(webhook::HEADER_TIMESTAMP)),
        signature: Some(header(webhook::HEADER_SIGNATURE)),
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

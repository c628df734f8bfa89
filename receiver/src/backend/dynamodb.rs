//! DynamoDB: the integrations table and the processed-objects ledger.
//!
//! - Integrations: one item per integration, key `id`, the fields as attributes.
//! - Ledger: one item per job, key `job_id`. A claim is a conditional `PutItem`
//!   (`attribute_not_exists(job_id)`, or a lapsed claim, or an expired entry), so of N concurrent
//!   deliveries of the same object exactly one wins; it carries the claiming request's token,
//!   and a release deletes only a pending claim with that token. Completing writes the job's final item with
//!   `BatchWriteItem` (25 per call). `expires_at` (epoch seconds) is the table's TTL attribute:
//!   a job's item expires its integration's horizon after it was enqueued (`enqueued_at_ms`),
//!   and a claim treats an item made before the current horizon as forgotten, so a shortened
//!   horizon applies at once. A lengthened one, and the upgrade from the 30-day ledger, need
//!   each item's `expires_at` moved: [`JobRecords::restamp`] (`bucket-relay ledger restamp`).
//!   Usage counts live in the same table under `job_id = usage#<integration>#<day>`, one
//!   `UpdateItem … ADD` per request.
//! - A rate window's count (`--max-jobs-per-minute`) under `admitted#<integration>#<window>`:
//!   one `UpdateItem … ADD` with the condition that the window is not full; an overshoot is
//!   given back with a second one. `--overwrites ignore` claims each key once, under
//!   [`IngestJob::key_id`], with a conditional `PutItem` naming the job that holds it.
//! - Cursors (a poll watermark, a backfill's place) live there too, under
//!   `job_id = cursor#<integration>#<name>`, with no expiry.
//! - The history, too: `object#<integration>#<key>` (the key's last accepted event and its job),
//!   `last#<integration>#<key>` (a later event that was not accepted) and
//!   `seen#<integration>#<outcome>` (the last event per outcome, written at most every
//!   [`SEEN_EVERY`] by a process), written with `BatchWriteItem` (25 per call) after each commit
//!   and kept for [`HISTORY_RETENTION`]. Plain puts by key: no index, no read before the write.
//!   (Releases before kept the key's job apart, under `enqueued#<integration>#<key>`: still read.)

use super::{add_counts, usage_hour};
use super::{
    BackendError, Claim, ClaimToken, Cursors, Enqueued, History, JobRecords, Ledger, LedgerTime,
    ObjectHistory, Recorded, Seen, Store, UsageCounts, UsageKey, UsageLog, CLAIM_LEASE,
    HISTORY_RETENTION,
};
use super::{First, RateLimit};
use crate::pace::WriteCapacity;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, BillingMode, PutRequest, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TableDescription, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::stream::{self, StreamExt};
use relay_protocol::admission;
use relay_protocol::{IngestJob, Integration, Outcome, Reason};
use std::collections::{BTreeMap, HashMap};

const BACKEND: &str = "dynamodb";
/// The ledger's TTL attribute (epoch seconds), as the Terraform table declares it.
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// Conditional puts in flight at once for one request's claims.
const CLAIM_CONCURRENCY: usize = 16;
/// `BatchWriteItem`'s limit.
const BATCH_WRITE_MAX: usize = 25;
/// `BatchWriteItem` calls in flight at once for one request.
const BATCH_WRITE_CONCURRENCY: usize = 4;
/// Rounds of retrying a batch write's unprocessed items before giving up.
const UNPROCESSED_RETRIES: u32 = 5;
/// How long usage items are kept.
const USAGE_RETENTION_DAYS: i64 = 400;

const STATE_PENDING: &str = "pending";
/// The attribute holding the claiming request's token.
const CLAIM_TOKEN: &str = "claim_token";
const STATE_DONE: &str = "done";

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError::new(BACKEND, e)
}

fn sdk_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> BackendError {
    BackendError::caused_by(BACKEND, e)
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn get(&self, id: &str) -> Result<Option<Integration>, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err)?;
        out.item
            .map(|item| serde_dynamo::from_item(item).map_err(err))
            .transpose()
    }

    async fn put(&self, integration: &Integration) -> Result<(), BackendError> {
        let item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(integration).map_err(err)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Integration>, BackendError> {
        let items: Vec<HashMap<String, AttributeValue>> = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(sdk_err)?;
        let mut all: Vec<Integration> = items
            .into_iter()
            .map(|item| serde_dynamo::from_item(item).map_err(err))
            .collect::<Result<_, _>>()?;
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    async fn delete(&self, id: &str) -> Result<bool, BackendError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", s(id))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}

pub struct DynamoLedger {
    client: Client,
    table: String,
    lease: Duration,
    /// When this process last wrote each (integration, outcome)'s `seen#` item.
    seen_written: std::sync::Mutex<HashMap<(String, Outcome), std::time::Instant>>,
}

/// How often a process writes an integration's last event of one outcome (`seen#`): the one
/// `integrations show` and `status` print is at most this much older than the last.
pub const SEEN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoLedger {
            client,
            table: table.into(),
            lease: CLAIM_LEASE,
            seen_written: std::sync::Mutex::default(),
        }
    }

    /// A claim lease other than [`CLAIM_LEASE`] (see `--claim-lease`).
    pub fn with_lease(self, lease: Duration) -> Self {
        DynamoLedger { lease, ..self }
    }

    async fn claim_one(
        &self,
        job: &IngestJob,
        at: LedgerTime,
        token: &ClaimToken,
    ) -> Result<Claim, BackendError> {
        let now = at.now;
        let now_ms = now.timestamp_millis();
        let expires = at.kept_until().timestamp();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("job_id", s(&job.job_id))
            .item("state", s(STATE_PENDING))
            .item("integration_id", s(&job.integration_id))
            .item("bucket", s(&job.bucket))
            .item("key", s(&job.key))
            .item("claimed_at_ms", n(now_ms))
            .item(CLAIM_TOKEN, s(token))
            .item(TTL_ATTRIBUTE, n(expires))
            .condition_expression(
                "attribute_not_exists(job_id) OR #ttl <= :now_s \
                 OR (#state = :done AND enqueued_at_ms <= :forgotten_ms) \
                 OR (#state = :pending AND claimed_at_ms <= :stale_ms)",
            )
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":now_s", n(now.timestamp()))
            .expression_attribute_values(":done", s(STATE_DONE))
            .expression_attribute_values(
                ":forgotten_ms",
                n(at.forgotten_before().timestamp_millis()),
            )
            .expression_attribute_values(":pending", s(STATE_PENDING))
            .expression_attribute_values(":stale_ms", n(now_ms - self.lease.num_milliseconds()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let failure = match result {
            Ok(_) => return Ok(Claim::Claimed),
            Err(e) => e.into_service_error(),
        };
        if !failure.is_conditional_check_failed_exception() {
            return Err(sdk_err(failure));
        }
        let old_state = match &failure {
            aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(
                e,
            ) => e.item().and_then(|item| item.get("state")).cloned(),
            _ => None,
        };
        let state = match old_state {
            Some(state) => state,
            None => self.current_state(&job.job_id).await?,
        };
        Ok(match state.as_s().map(String::as_str) {
            Ok(STATE_DONE) => Claim::Done,
            _ => Claim::InFlight,
        })
    }

    /// Whether `outcome`'s `seen#` item is due a write: not written by this process in the last
    /// [`SEEN_EVERY`]. The first event of each outcome is always written.
    fn seen_due(&self, integration_id: &str, outcome: Outcome, now: std::time::Instant) -> bool {
        let Ok(mut written) = self.seen_written.lock() else {
            return true;
        };
        let key = (integration_id.to_owned(), outcome);
        match written.get(&key) {
            Some(at) if now.duration_since(*at) < SEEN_EVERY => false,
            _ => {
                written.insert(key, now);
                true
            }
        }
    }

    /// `--overwrites ignore`: one conditional `PutItem` on the key's item, won when nobody holds
    /// the key, this job holds it already, or the holder is forgotten (past the horizon).
    async fn claim_first_one(
        &self,
        job: &IngestJob,
        at: LedgerTime,
    ) -> Result<First, BackendError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("job_id", s(job.key_id()))
            .item(KEY_OWNER, s(&job.job_id))
            .item("integration_id", s(&job.integration_id))
            .item("made_at_ms", n(at.now.timestamp_millis()))
            .item(TTL_ATTRIBUTE, n(at.kept_until().timestamp()))
            .condition_expression(
                "attribute_not_exists(job_id) OR #owner = :job OR made_at_ms <= :forgotten_ms \
                 OR #ttl <= :now_s",
            )
            .expression_attribute_names("#owner", KEY_OWNER)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":job", s(&job.job_id))
            .expression_attribute_values(
                ":forgotten_ms",
                n(at.forgotten_before().timestamp_millis()),
            )
            .expression_attribute_values(":now_s", n(at.now.timestamp()))
            .send()
            .await;
        match result.map_err(|e| e.into_service_error()) {
            Ok(_) => Ok(First::Ours),
            Err(e) if e.is_conditional_check_failed_exception() => Ok(First::Other),
            Err(e) => Err(sdk_err(e)),
        }
    }

    /// Sends a conditional `DeleteItem` on the ledger table; an item its condition no longer
    /// describes (changed or gone meanwhile) is left alone without an error.
    async fn delete_unless_changed(
        &self,
        delete: aws_sdk_dynamodb::operation::delete_item::builders::DeleteItemFluentBuilder,
    ) -> Result<(), BackendError> {
        match delete.table_name(&self.table).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = e.into_service_error();
                if e.is_conditional_check_failed_exception() {
                    Ok(())
                } else {
                    Err(sdk_err(e))
                }
            }
        }
    }

    /// The entry's state, for emulators that do not return the item on a failed condition.
    async fn current_state(&self, job_id: &str) -> Result<AttributeValue, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("job_id", s(job_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(out
            .item
            .and_then(|mut item| item.remove("state"))
            .unwrap_or_else(|| s(STATE_PENDING)))
    }

    /// Puts `items` (each replacing the item with its key), in `BatchWriteItem` calls of 25, a
    /// few at once, retrying what comes back unprocessed.
    async fn put_all(
        &self,
        items: Vec<HashMap<String, AttributeValue>>,
    ) -> Result<(), BackendError> {
        let requests = items
            .into_iter()
            .map(|item| {
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(err)?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, BackendError>>()?;
        let chunks: Vec<Vec<WriteRequest>> = requests
            .chunks(BATCH_WRITE_MAX)
            .map(<[_]>::to_vec)
            .collect();
        let writes: Vec<_> = chunks
            .into_iter()
            .map(|chunk| self.batch_write_chunk(chunk))
            .collect();
        let results: Vec<Result<(), BackendError>> = stream::iter(writes)
            .buffer_unordered(BATCH_WRITE_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn batch_write_chunk(&self, mut pending: Vec<WriteRequest>) -> Result<(), BackendError> {
        for attempt in 0..=UNPROCESSED_RETRIES {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending)
                .send()
                .await
                .map_err(sdk_err)?;
            pending = out
                .unprocessed_items
                .and_then(|mut left| left.remove(&self.table))
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(());
            }
            if attempt == UNPROCESSED_RETRIES {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
        }
        Err(err(format!(
            "{} writes left unprocessed after {UNPROCESSED_RETRIES} retries",
            pending.len()
        )))
    }
}

/// A rate window's item: how many jobs the integration made in it.
fn admitted_id(integration_id: &str, window: i64) -> String {
    format!("admitted#{integration_id}#{window}")
}

/// The attribute of a window's count.
const ADMITTED: &str = "admitted";
/// The attribute of the job a key belongs to under `--overwrites ignore`.
const KEY_OWNER: &str = "owner_job_id";

/// A usage item's key: an hour's (`2026-11-30T05`), or a whole day's (written before usage was
/// kept per hour).
fn usage_id(integration_id: &str, when: &str) -> String {
    format!("usage#{integration_id}#{when}")
}

#[async_trait]
impl Ledger for DynamoLedger {
    async fn claim(
        &self,
        jobs: &[&IngestJob],
        at: LedgerTime,
        token: &ClaimToken,
    ) -> Result<Vec<Claim>, BackendError> {
        let claims: Vec<_> = jobs
            .iter()
            .map(|job| self.claim_one(job, at, token))
            .collect();
        let results: Vec<Result<Claim, BackendError>> = stream::iter(claims)
            .buffered(CLAIM_CONCURRENCY)
            .collect()
            .await;
        let Some(failure) = results.iter().position(Result::is_err) else {
            return Ok(results.into_iter().map(|r| r.expect("no error")).collect());
        };
        // A failed claim fails the request: give back the claims already won, so the retry is
        // not told `in_flight` for a whole lease.
        let won: Vec<&str> = jobs
            .iter()
            .zip(&results)
            .filter(|(_, claim)| matches!(claim, Ok(Claim::Claimed)))
            .map(|(job, _)| job.job_id.as_str())
            .collect();
        if let Err(err) = self.release(&won, token).await {
            crate::telemetry::log_backend_error(&err);
        }
        let mut results = results;
        Err(results.swap_remove(failure).expect_err("found above"))
    }

    async fn complete(&self, jobs: &[&IngestJob], at: LedgerTime) -> Result<(), BackendError> {
        let (now, expires) = (at.now, at.kept_until().timestamp());
        let items = jobs
            .iter()
            .map(|job| {
                HashMap::from([
                    ("job_id".to_owned(), s(&job.job_id)),
                    ("state".to_owned(), s(STATE_DONE)),
                    ("outcome".to_owned(), s(Outcome::Accepted.as_str())),
                    ("integration_id".to_owned(), s(&job.integration_id)),
                    ("bucket".to_owned(), s(&job.bucket)),
                    ("key".to_owned(), s(&job.key)),
                    ("claimed_at_ms".to_owned(), n(now.timestamp_millis())),
                    ("enqueued_at_ms".to_owned(), n(now.timestamp_millis())),
                    (TTL_ATTRIBUTE.to_owned(), n(expires)),
                ])
            })
            .collect();
        self.put_all(items).await
    }

    async fn probe(&self) -> Result<(), BackendError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("job_id", s("probe#"))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    async fn admit(
        &self,
        integration_id: &str,
        limit: &RateLimit,
        wanted: u32,
    ) -> Result<u32, BackendError> {
        let id = admitted_id(integration_id, limit.window.index);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("job_id", s(&id))
            .update_expression("ADD #admitted :wanted SET #ttl = :exp")
            .condition_expression("attribute_not_exists(#admitted) OR #admitted < :limit")
            .expression_attribute_names("#admitted", ADMITTED)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":wanted", n(i64::from(wanted)))
            .expression_attribute_values(":limit", n(i64::from(limit.per_window)))
            .expression_attribute_values(":exp", n(limit.kept_until().timestamp()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        let total = match result {
            Ok(out) => out
                .attributes
                .as_ref()
                .and_then(|item| number(item, ADMITTED))
                .ok_or_else(|| err("the admission count came back without its value"))?,
            Err(e) => {
                let e = e.into_service_error();
                if e.is_conditional_check_failed_exception() {
                    return Ok(0); // the window is full: one write, nothing to give back
                }
                return Err(sdk_err(e));
            }
        };
        let before = u64::try_from(total - i64::from(wanted)).unwrap_or(0);
        let granted = admission::room(limit.per_window, before, u64::from(wanted));
        let granted = u32::try_from(granted).unwrap_or(wanted);
        if granted < wanted {
            // The overshoot is given back at once; meanwhile another receiver may be told less
            // room than there is, never more.
            if let Err(err) = self.readmit(integration_id, limit, wanted - granted).await {
                crate::telemetry::log_backend_error(&err);
            }
        }
        Ok(granted)
    }

    async fn readmit(
        &self,
        integration_id: &str,
        limit: &RateLimit,
        count: u32,
    ) -> Result<(), BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("job_id", s(admitted_id(integration_id, limit.window.index)))
            .update_expression("ADD #admitted :back")
            .condition_expression("attribute_exists(#admitted)")
            .expression_attribute_names("#admitted", ADMITTED)
            .expression_attribute_values(":back", n(-i64::from(count)))
            .send()
            .await;
        match result.map_err(|e| e.into_service_error()) {
            Err(e) if !e.is_conditional_check_failed_exception() => Err(sdk_err(e)),
            _ => Ok(()),
        }
    }

    async fn claim_first(
        &self,
        jobs: &[&IngestJob],
        at: LedgerTime,
    ) -> Result<Vec<First>, BackendError> {
        let claims: Vec<_> = jobs
            .iter()
            .map(|job| self.claim_first_one(job, at))
            .collect();
        stream::iter(claims)
            .buffered(CLAIM_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    async fn made(&self, jobs: &[&IngestJob], at: LedgerTime) -> Result<Vec<bool>, BackendError> {
        let ids = jobs.iter().map(|job| job.job_id.clone()).collect();
        let made: std::collections::HashSet<String> = self
            .get_all(ids, false)
            .await?
            .iter()
            .filter_map(|item| recorded_of(item, at))
            .filter(|(_, recorded)| *recorded == Recorded::Enqueued)
            .map(|(id, _)| id)
            .collect();
        Ok(jobs.iter().map(|job| made.contains(&job.job_id)).collect())
    }

    async fn release_first(&self, jobs: &[&IngestJob]) -> Result<(), BackendError> {
        for job in jobs {
            // Another version's now: not ours to let go.
            let delete = self
                .client
                .delete_item()
                .key("job_id", s(job.key_id()))
                .condition_expression("#owner = :job")
                .expression_attribute_names("#owner", KEY_OWNER)
                .expression_attribute_values(":job", s(&job.job_id));
            self.delete_unless_changed(delete).await?;
        }
        Ok(())
    }

    async fn release(&self, job_ids: &[&str], token: &ClaimToken) -> Result<(), BackendError> {
        for id in job_ids {
            // Gone, done meanwhile, or claimed by another request: not ours to release.
            let delete = self
                .client
                .delete_item()
                .key("job_id", s(*id))
                .condition_expression("#state = :pending AND #token = :token")
                .expression_attribute_names("#state", "state")
                .expression_attribute_names("#token", CLAIM_TOKEN)
                .expression_attribute_values(":pending", s(STATE_PENDING))
                .expression_attribute_values(":token", s(token));
            self.delete_unless_changed(delete).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl UsageLog for DynamoLedger {
    async fn record(
        &self,
        integration_id: &str,
        at: DateTime<Utc>,
        counts: &UsageCounts,
    ) -> Result<(), BackendError> {
        let hour = usage_hour(at);
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("job_id", s(usage_id(integration_id, &hour)))
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":iid", s(integration_id))
            .expression_attribute_values(":hour", s(hour))
            .expression_attribute_values(":exp", n(at.timestamp() + USAGE_RETENTION_DAYS * 86_400));
        let mut adds = Vec::new();
        for (i, (name, count)) in counts.iter().enumerate() {
            update = update
                .expression_attribute_names(format!("#c{i}"), format!("count:{name}"))
                .expression_attribute_values(
                    format!(":c{i}"),
                    n(i64::try_from(*count).unwrap_or(i64::MAX)),
                );
            adds.push(format!("#c{i} :c{i}"));
        }
        update
            .update_expression(format!(
                "SET integration_id = :iid, #hour = :hour, #ttl = :exp ADD {}",
                adds.join(", ")
            ))
            .expression_attribute_names("#hour", "hour")
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    /// Per day: its 24 hours' items and the whole-day item releases before hours wrote, in
    /// `BatchGetItem` calls.
    async fn usage(
        &self,
        integration_id: &str,
        since: NaiveDate,
        until: NaiveDate,
    ) -> Result<BTreeMap<NaiveDate, UsageCounts>, BackendError> {
        let days: Vec<NaiveDate> = since.iter_days().take_while(|d| *d <= until).collect();
        let mut ids = Vec::new();
        for day in &days {
            let day_text = day.to_string();
            ids.push(usage_id(integration_id, &day_text));
            ids.extend((0..24).map(|h| usage_id(integration_id, &format!("{day_text}T{h:02}"))));
        }
        let mut usage: BTreeMap<NaiveDate, UsageCounts> = BTreeMap::new();
        for item in self.get_all(ids, false).await? {
            let Some(day) = text(&item, "job_id")
                .and_then(|id| id.rsplit('#').next())
                .and_then(|when| when.get(..10)?.parse::<NaiveDate>().ok())
            else {
                continue;
            };
            add_counts(usage.entry(day).or_default(), &usage_counts(&item));
        }
        Ok(usage)
    }

    async fn recent(
        &self,
        integration_id: &str,
        since: DateTime<Utc>,
    ) -> Result<UsageCounts, BackendError> {
        let now = Utc::now();
        let mut ids = Vec::new();
        let mut hour = since;
        while usage_hour(hour) <= usage_hour(now) && ids.len() < 24 * 31 {
            ids.push(usage_id(integration_id, &usage_hour(hour)));
            hour += Duration::hours(1);
        }
        let mut total = UsageCounts::new();
        for item in self.get_all(ids, false).await? {
            add_counts(&mut total, &usage_counts(&item));
        }
        Ok(total)
    }
}

/// What a ledger item says of its job at `at`: enqueued and remembered, in flight, or forgotten
/// (its TTL passed, or it was made before the horizon). `None` for an item with no job id.
fn recorded_of(
    item: &HashMap<String, AttributeValue>,
    at: LedgerTime,
) -> Option<(String, Recorded)> {
    let id = text(item, "job_id")?.to_owned();
    let live = number(item, TTL_ATTRIBUTE).is_none_or(|t| t > at.now.timestamp())
        && number(item, "enqueued_at_ms")
            .is_none_or(|made| made > at.forgotten_before().timestamp_millis());
    let recorded = match (text(item, "state"), live) {
        (_, false) => Recorded::Unknown,
        (Some(STATE_DONE), true) => Recorded::Enqueued,
        (_, true) => Recorded::InFlight,
    };
    Some((id, recorded))
}

/// A usage item's counts; a reason a newer receiver counted and this one does not know is left
/// out.
fn usage_counts(item: &HashMap<String, AttributeValue>) -> UsageCounts {
    item.iter()
        .filter_map(|(name, value)| {
            let key = name.strip_prefix("count:")?.parse::<UsageKey>().ok()?;
            let count = value.as_n().ok()?.parse().ok()?;
            Some((key, count))
        })
        .collect()
}

fn cursor_id(integration_id: &str, name: &str) -> String {
    format!("cursor#{integration_id}#{name}")
}

#[async_trait]
impl JobRecords for DynamoLedger {
    /// `BatchGetItem` ([`DynamoLedger::get_all`]), strongly consistent.
    async fn recorded(
        &self,
        jobs: &[&IngestJob],
        at: LedgerTime,
    ) -> Result<Vec<Recorded>, BackendError> {
        let ids = jobs.iter().map(|job| job.job_id.clone()).collect();
        let known: HashMap<String, Recorded> = self
            .get_all(ids, true)
            .await?
            .iter()
            .filter_map(|item| recorded_of(item, at))
            .collect();
        Ok(jobs
            .iter()
            .map(|job| known.get(&job.job_id).copied().unwrap_or(Recorded::Unknown))
            .collect())
    }

    /// One `Scan` of the done items (projected to what the new expiry needs), and one
    /// conditional `UpdateItem` per item whose `expires_at` differs from its enqueueing plus its
    /// integration's horizon; items of other integrations are left alone.
    async fn restamp(&self, integrations: &[Integration]) -> Result<u64, BackendError> {
        let horizons: HashMap<&str, i64> = integrations
            .iter()
            .map(|i| (i.id.as_str(), i.horizon().num_seconds()))
            .collect();
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("#state = :done")
            .projection_expression("job_id, integration_id, enqueued_at_ms, #ttl")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":done", s(STATE_DONE))
            .into_paginator()
            .send();
        let mut changed = 0;
        while let Some(page) = pages.next().await {
            let page = page.map_err(sdk_err)?;
            let updates: Vec<_> = page
                .items()
                .iter()
                .filter_map(|item| {
                    let horizon = horizons.get(text(item, "integration_id")?)?;
                    let made_ms = number(item, "enqueued_at_ms")?;
                    let want = made_ms.div_euclid(1000) + horizon;
                    let job_id = text(item, "job_id")?.to_owned();
                    (number(item, TTL_ATTRIBUTE) != Some(want))
                        .then(|| self.set_expiry(job_id, made_ms, want))
                })
                .collect();
            let results: Vec<Result<bool, BackendError>> = stream::iter(updates)
                .buffer_unordered(CLAIM_CONCURRENCY)
                .collect()
                .await;
            for result in results {
                changed += u64::from(result?);
            }
        }
        Ok(changed)
    }

    /// `DescribeTable`: provisioned write capacity, or on demand the warm throughput (and the
    /// maximum, when one is set).
    async fn write_capacity(&self) -> Result<Option<WriteCapacity>, BackendError> {
        let out = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(sdk_err)?;
        let table = out
            .table
            .ok_or_else(|| err("DescribeTable answered without the table"))?;
        Ok(Some(capacity_of(&table)))
    }
}

/// A new on-demand table's warm write throughput, for a table described without one (AWS's
/// developer guide, "Understanding DynamoDB warm throughput").
const NEW_ON_DEMAND_WRITE_UNITS: u64 = 4000;

/// The write capacity a `DescribeTable` answer describes. A table without a billing mode
/// summary is provisioned (it predates on-demand); a maximum of -1 (removed) is no maximum.
fn capacity_of(table: &TableDescription) -> WriteCapacity {
    let positive = |units: Option<i64>| {
        units
            .and_then(|u| u64::try_from(u).ok())
            .filter(|u| *u >= 1)
    };
    let mode = table
        .billing_mode_summary()
        .and_then(|summary| summary.billing_mode());
    if mode == Some(&BillingMode::PayPerRequest) {
        let warm = table
            .warm_throughput()
            .and_then(|warm| positive(warm.write_units_per_second()))
            .unwrap_or(NEW_ON_DEMAND_WRITE_UNITS);
        let max = table
            .on_demand_throughput()
            .and_then(|max| positive(max.max_write_request_units()));
        return WriteCapacity::OnDemand { warm, max };
    }
    let units = table
        .provisioned_throughput()
        .and_then(|provisioned| positive(provisioned.write_capacity_units()));
    WriteCapacity::Provisioned(units.unwrap_or(1))
}

impl DynamoLedger {
    /// The items with these keys (those that exist), by `BatchGetItem`: 100 keys a call, a few
    /// calls at once, asking again for what DynamoDB hands back unprocessed.
    async fn get_all(
        &self,
        ids: Vec<String>,
        consistent: bool,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, BackendError> {
        let chunks: Vec<Vec<String>> = ids.chunks(100).map(<[_]>::to_vec).collect();
        let answers: Vec<Result<Vec<_>, BackendError>> = stream::iter(chunks)
            .map(|chunk| self.get_chunk(chunk, consistent))
            .buffered(4)
            .collect()
            .await;
        let mut found = Vec::new();
        for answer in answers {
            found.extend(answer?);
        }
        Ok(found)
    }

    /// One `BatchGetItem` of at most 100 keys, and its unprocessed keys again (ten rounds).
    async fn get_chunk(
        &self,
        ids: Vec<String>,
        consistent: bool,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, BackendError> {
        let mut keys: Vec<HashMap<String, AttributeValue>> = ids
            .into_iter()
            .map(|id| HashMap::from([("job_id".to_owned(), s(id))]))
            .collect();
        let mut found = Vec::new();
        for _ in 0..10 {
            if keys.is_empty() {
                return Ok(found);
            }
            let request = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut keys)))
                .consistent_read(consistent)
                .build()
                .map_err(err)?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(sdk_err)?;
            found.extend(
                out.responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default(),
            );
            keys = out
                .unprocessed_keys
                .and_then(|mut rest| rest.remove(&self.table))
                .map(|rest| rest.keys)
                .unwrap_or_default();
        }
        if keys.is_empty() {
            Ok(found)
        } else {
            Err(err("keys left unprocessed ten times over"))
        }
    }

    /// Sets a done item's expiry, unless it was re-made meanwhile: whether it changed.
    async fn set_expiry(
        &self,
        job_id: String,
        made_ms: i64,
        expires: i64,
    ) -> Result<bool, BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("job_id", s(job_id))
            .update_expression("SET #ttl = :expires")
            .condition_expression("#state = :done AND enqueued_at_ms = :made")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":expires", n(expires))
            .expression_attribute_values(":done", s(STATE_DONE))
            .expression_attribute_values(":made", n(made_ms))
            .send()
            .await;
        match result.map_err(|e| e.into_service_error()) {
            Ok(_) => Ok(true),
            Err(e) if e.is_conditional_check_failed_exception() => Ok(false),
            Err(e) => Err(sdk_err(e)),
        }
    }
}

#[async_trait]
impl Cursors for DynamoLedger {
    async fn load(&self, integration_id: &str, name: &str) -> Result<Option<String>, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("job_id", s(cursor_id(integration_id, name)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(out
            .item
            .and_then(|item| item.get("value")?.as_s().ok().cloned()))
    }

    async fn save(
        &self,
        integration_id: &str,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), BackendError> {
        let key = s(cursor_id(integration_id, name));
        match value {
            Some(value) => self
                .client
                .put_item()
                .table_name(&self.table)
                .item("job_id", key)
                .item("integration_id", s(integration_id))
                .item("value", s(value))
                .send()
                .await
                .map(drop)
                .map_err(sdk_err),
            None => self
                .client
                .delete_item()
                .table_name(&self.table)
                .key("job_id", key)
                .send()
                .await
                .map(drop)
                .map_err(sdk_err),
        }
    }
}

fn object_id(integration_id: &str, key: &str) -> String {
    format!("object#{integration_id}#{key}")
}

/// A key's last event when it was not accepted (its job stays on the `object#` item).
fn last_id(integration_id: &str, key: &str) -> String {
    format!("last#{integration_id}#{key}")
}

/// Where releases before kept a key's last job.
fn enqueued_id(integration_id: &str, key: &str) -> String {
    format!("enqueued#{integration_id}#{key}")
}

fn seen_id(integration_id: &str, outcome: Outcome) -> String {
    format!("seen#{integration_id}#{outcome}")
}

/// One event as a history item's attributes (`job_id` is the table's key, so the event's job
/// id is `event_job_id`).
fn seen_item(
    item_id: String,
    integration_id: &str,
    seen: &Seen,
) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        ("job_id".to_owned(), s(item_id)),
        ("integration_id".to_owned(), s(integration_id)),
        ("key".to_owned(), s(&seen.key)),
        ("outcome".to_owned(), s(seen.outcome.as_str())),
        ("at_ms".to_owned(), n(seen.at.timestamp_millis())),
        (
            TTL_ATTRIBUTE.to_owned(),
            n((seen.at + HISTORY_RETENTION).timestamp()),
        ),
    ]);
    if let Some(reason) = seen.reason {
        item.insert("reason".to_owned(), s(reason.as_str()));
    }
    if let Some(job_id) = &seen.job_id {
        item.insert("event_job_id".to_owned(), s(job_id));
    }
    item
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn at(item: &HashMap<String, AttributeValue>) -> Option<DateTime<Utc>> {
    let ms = item.get("at_ms")?.as_n().ok()?.parse().ok()?;
    DateTime::from_timestamp_millis(ms)
}

/// A history item read back; `None` for one a newer receiver wrote in a form this one does not
/// know.
fn seen_from(item: &HashMap<String, AttributeValue>) -> Option<Seen> {
    Some(Seen {
        key: text(item, "key")?.to_owned(),
        outcome: Outcome::parse(text(item, "outcome")?)?,
        reason: text(item, "reason").and_then(Reason::parse),
        job_id: text(item, "event_job_id").map(str::to_owned),
        at: at(item)?,
    })
}

impl DynamoLedger {
    async fn get(
        &self,
        id: String,
    ) -> Result<Option<HashMap<String, AttributeValue>>, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("job_id", s(id))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(out.item)
    }
}

#[async_trait]
impl History for DynamoLedger {
    async fn record(&self, integration_id: &str, events: &[Seen]) -> Result<(), BackendError> {
        // One put per item key (a batch may not name a key twice), each a plain put, so all go
        // in `BatchWriteItem`s: an accepted event's `object#` item holds it and its job; any
        // other kept event's `last#` item holds it alone, leaving the key's job where it is.
        // Duplicates and rate-limited events write nothing per key (`Seen::kept_per_key`).
        let mut items: BTreeMap<String, HashMap<String, AttributeValue>> = BTreeMap::new();
        for seen in events.iter().filter(|seen| seen.kept_per_key()) {
            let accepted = seen.outcome == Outcome::Accepted && seen.job_id.is_some();
            let id = if accepted {
                object_id(integration_id, &seen.key)
            } else {
                last_id(integration_id, &seen.key)
            };
            let mut item = seen_item(id.clone(), integration_id, seen);
            if accepted {
                item.insert("enqueued_at_ms".to_owned(), n(seen.at.timestamp_millis()));
            }
            items.insert(id, item);
        }
        let now = std::time::Instant::now();
        for (outcome, seen) in Seen::last_per_outcome(events) {
            if self.seen_due(integration_id, outcome, now) {
                let id = seen_id(integration_id, outcome);
                items.insert(id.clone(), seen_item(id, integration_id, seen));
            }
        }
        self.put_all(items.into_values().collect()).await
    }

    async fn object(
        &self,
        integration_id: &str,
        key: &str,
    ) -> Result<Option<ObjectHistory>, BackendError> {
        let (object, last, legacy) = futures::try_join!(
            self.get(object_id(integration_id, key)),
            self.get(last_id(integration_id, key)),
            self.get(enqueued_id(integration_id, key)),
        )?;
        let now = Utc::now().timestamp();
        // TTL deletion lags expiry by up to days: an expired item counts as gone.
        let live = |item: &HashMap<String, AttributeValue>| {
            item.get(TTL_ATTRIBUTE)
                .and_then(|v| v.as_n().ok()?.parse::<i64>().ok())
                .is_none_or(|expires| expires > now)
        };
        let object = object.filter(live);
        let newest = [object.as_ref(), last.as_ref().filter(|item| live(item))]
            .into_iter()
            .flatten()
            .filter_map(seen_from)
            .max_by_key(|seen| seen.at);
        let Some(last) = newest else {
            return Ok(None);
        };
        // The key's job: on its `object#` item (an item written before there was one holds the
        // last event only), or on the `enqueued#` item releases before kept apart.
        let enqueued = object
            .as_ref()
            .filter(|item| item.contains_key("enqueued_at_ms"))
            .or(legacy.as_ref().filter(|item| live(item)))
            .and_then(seen_from)
            .and_then(|seen| {
                Some(Enqueued {
                    job_id: seen.job_id?,
                    at: seen.at,
                })
            });
        Ok(Some(ObjectHistory { last, enqueued }))
    }

    async fn last_seen(
        &self,
        integration_id: &str,
    ) -> Result<BTreeMap<Outcome, Seen>, BackendError> {
        let reads = Outcome::ALL.map(|outcome| self.get(seen_id(integration_id, outcome)));
        let items = futures::future::try_join_all(reads).await?;
        Ok(items
            .iter()
            .flatten()
            .filter_map(seen_from)
            .map(|seen| (seen.outcome, seen))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::{
        BillingModeSummary, OnDemandThroughput, ProvisionedThroughputDescription,
        TableWarmThroughputDescription,
    };

    fn on_demand() -> aws_sdk_dynamodb::types::builders::TableDescriptionBuilder {
        TableDescription::builder().billing_mode_summary(
            BillingModeSummary::builder()
                .billing_mode(BillingMode::PayPerRequest)
                .build(),
        )
    }

    #[test]
    fn an_on_demand_table_s_capacity_is_its_warm_throughput_and_its_maximum() {
        let warm = TableWarmThroughputDescription::builder()
            .write_units_per_second(12_000)
            .build();
        let table = on_demand()
            .warm_throughput(warm.clone())
            .on_demand_throughput(
                OnDemandThroughput::builder()
                    .max_write_request_units(500)
                    .build(),
            )
            .build();
        assert_eq!(
            capacity_of(&table),
            WriteCapacity::OnDemand {
                warm: 12_000,
                max: Some(500)
            }
        );
        // -1 is how a maximum is removed; a table described without warm throughput is new.
        let removed = on_demand()
            .on_demand_throughput(
                OnDemandThroughput::builder()
                    .max_write_request_units(-1)
                    .build(),
            )
            .build();
        assert_eq!(
            capacity_of(&removed),
            WriteCapacity::OnDemand {
                warm: NEW_ON_DEMAND_WRITE_UNITS,
                max: None
            }
        );
    }

    #[test]
    fn a_table_without_a_billing_summary_is_provisioned() {
        let provisioned = ProvisionedThroughputDescription::builder()
            .write_capacity_units(25)
            .read_capacity_units(5)
            .build();
        let table = TableDescription::builder()
            .provisioned_throughput(provisioned)
            .build();
        assert_eq!(capacity_of(&table), WriteCapacity::Provisioned(25));
        assert_eq!(
            capacity_of(&TableDescription::builder().build()),
            WriteCapacity::Provisioned(1)
        );
    }
}

//! In-memory backends: the same semantics as the real ones, for tests and benchmarks.

use super::add_counts;
use super::bucket::ReadCredentials;
use super::bucket::{AccessError, BucketSource, Listing, Page};
use super::{
    usage_hour, BackendError, Claim, ClaimToken, Cursors, Delivery, Enqueued, History, JobRecords,
    Keyring, Ledger, LedgerTime, MasterKey, MasterKeySource, ObjectHistory, Queue, Recorded, Seen,
    Store, UsageCounts, UsageLog, CLAIM_LEASE,
};
use super::{First, RateLimit};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use relay_protocol::admission::room;
use relay_protocol::event::listed::ListedObject;
use relay_protocol::{IngestJob, Integration, Outcome};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct MemoryStore(Mutex<BTreeMap<String, Integration>>);

impl MemoryStore {
    pub fn with(integrations: impl IntoIterator<Item = Integration>) -> Self {
        let map = integrations
            .into_iter()
            .map(|i| (i.id.clone(), i))
            .collect();
        MemoryStore(Mutex::new(map))
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, id: &str) -> Result<Option<Integration>, BackendError> {
        Ok(self.0.lock().unwrap().get(id).cloned())
    }
    async fn put(&self, integration: &Integration) -> Result<(), BackendError> {
        let mut map = self.0.lock().unwrap();
        map.insert(integration.id.clone(), integration.clone());
        Ok(())
    }
    async fn list(&self) -> Result<Vec<Integration>, BackendError> {
        Ok(self.0.lock().unwrap().values().cloned().collect())
    }
    async fn delete(&self, id: &str) -> Result<bool, BackendError> {
        Ok(self.0.lock().unwrap().remove(id).is_some())
    }
}

#[derive(Default)]
pub struct MemoryCursors(Mutex<BTreeMap<(String, String), String>>);

#[async_trait]
impl Cursors for MemoryCursors {
    async fn load(&self, integration_id: &str, name: &str) -> Result<Option<String>, BackendError> {
        let key = (integration_id.to_owned(), name.to_owned());
        Ok(self.0.lock().unwrap().get(&key).cloned())
    }
    async fn save(
        &self,
        integration_id: &str,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), BackendError> {
        let key = (integration_id.to_owned(), name.to_owned());
        let mut map = self.0.lock().unwrap();
        match value {
            Some(value) => map.insert(key, value.to_owned()),
            None => map.remove(&key),
        };
        Ok(())
    }
}

#[derive(Default)]
pub struct MemoryHistory {
    objects: Mutex<BTreeMap<(String, String), ObjectHistory>>,
    last: Mutex<BTreeMap<(String, Outcome), Seen>>,
}

#[async_trait]
impl History for MemoryHistory {
    async fn record(&self, integration_id: &str, events: &[Seen]) -> Result<(), BackendError> {
        let mut objects = self.objects.lock().unwrap();
        for seen in events.iter().filter(|seen| seen.kept_per_key()) {
            let key = (integration_id.to_owned(), seen.key.clone());
            let enqueued = match (&seen.outcome, &seen.job_id) {
                (Outcome::Accepted, Some(job_id)) => Some(Enqueued {
                    job_id: job_id.clone(),
                    at: seen.at,
                }),
                _ => objects.get(&key).and_then(|old| old.enqueued.clone()),
            };
            let last = seen.clone();
            objects.insert(key, ObjectHistory { last, enqueued });
        }
        let mut last = self.last.lock().unwrap();
        for (outcome, seen) in Seen::last_per_outcome(events) {
            last.insert((integration_id.to_owned(), outcome), seen.clone());
        }
        Ok(())
    }

    async fn object(
        &self,
        integration_id: &str,
        key: &str,
    ) -> Result<Option<ObjectHistory>, BackendError> {
        let key = (integration_id.to_owned(), key.to_owned());
        Ok(self.objects.lock().unwrap().get(&key).cloned())
    }

    async fn last_seen(
        &self,
        integration_id: &str,
    ) -> Result<BTreeMap<Outcome, Seen>, BackendError> {
        let last = self.last.lock().unwrap();
        Ok(last
            .iter()
            .filter(|((id, _), _)| id == integration_id)
            .map(|((_, outcome), seen)| (*outcome, seen.clone()))
            .collect())
    }
}

enum Entry {
    Pending {
        claimed_at: DateTime<Utc>,
        token: String,
    },
    /// Enqueued at this time.
    Done(DateTime<Utc>),
}

#[derive(Default)]
pub struct MemoryLedger {
    entries: Mutex<HashMap<String, Entry>>,
    /// Each (integration, window)'s admissions.
    admitted: Mutex<HashMap<(String, i64), u64>>,
    /// Each key's job under `--overwrites ignore`, and when it was claimed.
    firsts: Mutex<HashMap<String, (String, DateTime<Utc>)>>,
    /// How many jobs were claimed and read (`made`), as DynamoDB would bill them.
    asked: Mutex<Asked>,
    /// A claim call that asks for this job fails whole, as a throttled conditional put fails
    /// DynamoDB's.
    fail_claim_of: Mutex<Option<String>>,
}

/// The jobs a [`MemoryLedger`] was asked to claim, and to read before a claim.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Asked {
    pub claims: usize,
    pub reads: usize,
}

impl MemoryLedger {
    /// The jobs claimed and read so far.
    pub fn asked(&self) -> Asked {
        *self.asked.lock().unwrap()
    }

    /// From now on, a claim call that asks for `job_id` fails and claims nothing.
    pub fn fail_claim_of(&self, job_id: Option<&str>) {
        *self.fail_claim_of.lock().unwrap() = job_id.map(str::to_owned);
    }
}

#[async_trait]
impl JobRecords for MemoryLedger {
    async fn recorded(
        &self,
        jobs: &[&IngestJob],
        at: LedgerTime,
    ) -> Result<Vec<Recorded>, BackendError> {
        let map = self.entries.lock().unwrap();
        Ok(jobs
            .iter()
            .map(|job| match map.get(&job.job_id) {
                Some(Entry::Done(made)) if *made > at.forgotten_before() => Recorded::Enqueued,
                Some(Entry::Pending { .. }) => Recorded::InFlight,
                _ => Recorded::Unknown,
            })
            .collect())
    }

    async fn restamp(&self, _integrations: &[Integration]) -> Result<u64, BackendError> {
        Ok(0) // each entry's expiry is read from the horizon at read time
    }
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn claim(
        &self,
        jobs: &[&IngestJob],
        at: LedgerTime,
        token: &ClaimToken,
    ) -> Result<Vec<Claim>, BackendError> {
        if let Some(failing) = &*self.fail_claim_of.lock().unwrap() {
            if jobs.iter().any(|job| job.job_id == *failing) {
                return Err(BackendError::new("memory", "claim refused"));
            }
        }
        self.asked.lock().unwrap().claims += jobs.len();
        let now = at.now;
        let mut map = self.entries.lock().unwrap();
        let claims = jobs
            .iter()
            .map(|job| match map.get(&job.job_id) {
                Some(Entry::Done(made)) if *made > at.forgotten_before() => Claim::Done,
                Some(Entry::Pending { claimed_at, .. }) if now - *claimed_at < CLAIM_LEASE => {
                    Claim::InFlight
                }
                _ => {
                    let entry = Entry::Pending {
                        claimed_at: now,
                        token: token.to_owned(),
                    };
                    map.insert(job.job_id.clone(), entry);
                    Claim::Claimed
                }
            })
            .collect();
        Ok(claims)
    }
    async fn complete(&self, jobs: &[&IngestJob], at: LedgerTime) -> Result<(), BackendError> {
        let mut map = self.entries.lock().unwrap();
        for job in jobs {
            map.insert(job.job_id.clone(), Entry::Done(at.now));
        }
        Ok(())
    }
    async fn release(&self, job_ids: &[&str], token: &ClaimToken) -> Result<(), BackendError> {
        let mut map = self.entries.lock().unwrap();
        for id in job_ids {
            if matches!(map.get(*id), Some(Entry::Pending { token: owner, .. }) if owner == token) {
                map.remove(*id);
            }
        }
        Ok(())
    }
    async fn admit(
        &self,
        integration_id: &str,
        limit: &RateLimit,
        wanted: u32,
    ) -> Result<u32, BackendError> {
        let mut admitted = self.admitted.lock().unwrap();
        let count = admitted
            .entry((integration_id.to_owned(), limit.window.index))
            .or_default();
        let granted = room(limit.per_window, *count, u64::from(wanted));
        *count += granted;
        Ok(u32::try_from(granted).unwrap_or(wanted))
    }
    async fn readmit(
        &self,
        integration_id: &str,
        limit: &RateLimit,
        count: u32,
    ) -> Result<(), BackendError> {
        let mut admitted = self.admitted.lock().unwrap();
        if let Some(taken) = admitted.get_mut(&(integration_id.to_owned(), limit.window.index)) {
            *taken = taken.saturating_sub(u64::from(count));
        }
        Ok(())
    }
    async fn claim_first(
        &self,
        jobs: &[&IngestJob],
        at: LedgerTime,
    ) -> Result<Vec<First>, BackendError> {
        let mut firsts = self.firsts.lock().unwrap();
        Ok(jobs
            .iter()
            .map(|job| match firsts.get(&job.key_id()) {
                Some((owner, made)) if *made > at.forgotten_before() && *owner != job.job_id => {
                    First::Other
                }
                _ => {
                    firsts.insert(job.key_id(), (job.job_id.clone(), at.now));
                    First::Ours
                }
            })
            .collect())
    }
    async fn made(&self, jobs: &[&IngestJob], at: LedgerTime) -> Result<Vec<bool>, BackendError> {
        self.asked.lock().unwrap().reads += jobs.len();
        let map = self.entries.lock().unwrap();
        Ok(jobs
            .iter()
            .map(|job| {
                matches!(map.get(&job.job_id), Some(Entry::Done(made)) if *made > at.forgotten_before())
            })
            .collect())
    }
    async fn release_first(&self, jobs: &[&IngestJob]) -> Result<(), BackendError> {
        let mut firsts = self.firsts.lock().unwrap();
        for job in jobs {
            if firsts
                .get(&job.key_id())
                .is_some_and(|(owner, _)| *owner == job.job_id)
            {
                firsts.remove(&job.key_id());
            }
        }
        Ok(())
    }
    async fn probe(&self) -> Result<(), BackendError> {
        Ok(())
    }
}

#[derive(Default)]
pub struct MemoryUsage(Mutex<BTreeMap<(String, String), UsageCounts>>);

#[async_trait]
impl UsageLog for MemoryUsage {
    async fn record(
        &self,
        integration_id: &str,
        at: DateTime<Utc>,
        counts: &UsageCounts,
    ) -> Result<(), BackendError> {
        let mut usage = self.0.lock().unwrap();
        let key = (integration_id.to_owned(), usage_hour(at));
        add_counts(usage.entry(key).or_default(), counts);
        Ok(())
    }
    async fn usage(
        &self,
        integration_id: &str,
        since: NaiveDate,
        until: NaiveDate,
    ) -> Result<BTreeMap<NaiveDate, UsageCounts>, BackendError> {
        let usage = self.0.lock().unwrap();
        let mut days: BTreeMap<NaiveDate, UsageCounts> = BTreeMap::new();
        for ((id, hour), counts) in usage.iter() {
            let Ok(day) = hour[..10].parse::<NaiveDate>() else {
                continue;
            };
            if id == integration_id && (since..=until).contains(&day) {
                add_counts(days.entry(day).or_default(), counts);
            }
        }
        Ok(days)
    }
    async fn recent(
        &self,
        integration_id: &str,
        since: DateTime<Utc>,
    ) -> Result<UsageCounts, BackendError> {
        let from = usage_hour(since);
        let usage = self.0.lock().unwrap();
        let mut total = UsageCounts::new();
        for ((id, hour), counts) in usage.iter() {
            if id == integration_id && *hour >= from {
                add_counts(&mut total, counts);
            }
        }
        Ok(total)
    }
}

#[derive(Default)]
pub struct MemoryQueue(Mutex<Vec<IngestJob>>);

impl MemoryQueue {
    pub fn jobs(&self) -> Vec<IngestJob> {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait]
impl super::Backlog for MemoryQueue {
    async fn depths(&self) -> Result<Vec<super::QueueDepth>, BackendError> {
        Ok(vec![super::QueueDepth {
            queue: "memory".to_owned(),
            waiting: self.0.lock().unwrap().len() as u64,
            in_flight: None,
        }])
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, jobs: &[&IngestJob]) -> Result<Vec<Delivery>, BackendError> {
        let mut queue = self.0.lock().unwrap();
        queue.extend(jobs.iter().map(|job| (*job).clone()));
        Ok(vec![Delivery::Sent; jobs.len()])
    }
    async fn probe(&self) -> Result<(), BackendError> {
        Ok(())
    }
}

/// A bucket in memory: its objects by key, listed `page_size` at a time. `fail_at_page` makes
/// the listing fail when asked for that page (counted from 1 across listings), as a network
/// outage would.
pub struct MemoryBucket {
    objects: Mutex<BTreeMap<String, ListedObject>>,
    page_size: usize,
    pages_served: Mutex<usize>,
    fail_at_page: Mutex<Option<usize>>,
}

impl MemoryBucket {
    pub fn new(page_size: usize) -> Self {
        MemoryBucket {
            objects: Mutex::default(),
            page_size,
            pages_served: Mutex::new(0),
            fail_at_page: Mutex::new(None),
        }
    }

    /// Puts (or replaces) the object `key`, last modified at `modified` (RFC 3339).
    pub fn put(&self, key: &str, modified: &str) {
        let object = ListedObject {
            key: key.to_owned(),
            size: Some(1),
            etag: Some(format!("\"etag-{key}-{modified}\"")),
            version_id: None,
            last_modified: DateTime::parse_from_rfc3339(modified)
                .ok()
                .map(|time| time.with_timezone(&Utc)),
        };
        self.objects.lock().unwrap().insert(key.to_owned(), object);
    }

    /// How many pages the bucket has served, across listings.
    pub fn pages_served(&self) -> usize {
        *self.pages_served.lock().unwrap()
    }

    /// The `n`th page served from now on fails.
    pub fn fail_at_page(&self, n: usize) {
        *self.fail_at_page.lock().unwrap() = Some(*self.pages_served.lock().unwrap() + n);
    }
}

struct MemoryListing {
    bucket: Arc<MemoryBucket>,
    prefix: String,
    after: Option<String>,
    done: bool,
}

#[async_trait]
impl Listing for MemoryListing {
    async fn next_page(&mut self) -> Result<Option<Page>, AccessError> {
        if self.done {
            return Ok(None);
        }
        {
            let mut served = self.bucket.pages_served.lock().unwrap();
            *served += 1;
            if Some(*served) == *self.bucket.fail_at_page.lock().unwrap() {
                return Err(AccessError::Unreachable("injected".into()));
            }
        }
        let objects: Vec<ListedObject> = self
            .bucket
            .objects
            .lock()
            .unwrap()
            .values()
            .filter(|o| o.key.starts_with(&self.prefix))
            .filter(|o| self.after.as_ref().is_none_or(|after| &o.key > after))
            .take(self.bucket.page_size)
            .cloned()
            .collect();
        self.done = objects.len() < self.bucket.page_size;
        self.after = objects.last().map(|o| o.key.clone()).or(self.after.take());
        Ok(Some(Page {
            last_key: objects.last().map(|o| o.key.clone()),
            objects,
        }))
    }
}

#[async_trait]
impl BucketSource for Arc<MemoryBucket> {
    async fn open(
        &self,
        _integration: &Integration,
        _credentials: &ReadCredentials,
        prefix: Option<&str>,
        after: Option<String>,
    ) -> Result<Box<dyn Listing>, AccessError> {
        Ok(Box::new(MemoryListing {
            bucket: Arc::clone(self),
            prefix: prefix.unwrap_or("").to_owned(),
            after,
            done: false,
        }))
    }
}

/// A keyring in memory.
pub struct StaticKey(pub std::sync::Mutex<Keyring>);

impl StaticKey {
    /// One key, version 1.
    pub fn new(key: MasterKey) -> Self {
        StaticKey(std::sync::Mutex::new(Keyring::single(key)))
    }
}

#[async_trait]
impl MasterKeySource for StaticKey {
    async fn keyring(&self) -> Result<Keyring, BackendError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone())
    }

    async fn replace(&self, expected: &Keyring, new: &Keyring) -> Result<(), BackendError> {
        let mut ring = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if &*ring != expected {
            return Err(BackendError::new("memory", "the keyring changed"));
        }
        *ring = new.clone();
        Ok(())
    }
}

/// A job for tests and benchmarks: an R2 `PutObject` of `key` in bucket `uploads` under
/// integration `int_test`, with the given `job_id` (not derived, so tests can name it).
pub fn sample_job(job_id: &str, key: &str) -> IngestJob {
    IngestJob {
        schema: relay_protocol::job::SCHEMA.to_owned(),
        job_id: job_id.into(),
        integration_id: "int_test".into(),
        provider: relay_protocol::Provider::R2,
        account: None,
        region: None,
        bucket: "uploads".into(),
        key: key.into(),
        key_encoding: relay_protocol::event::KeyEncoding::Exact,
        size: Some(1),
        etag: None,
        version_id: None,
        sequencer: None,
        action: "PutObject".into(),
        event_time: String::new(),
        received_at: String::new(),
        source_event_id: String::new(),
        routing: None,
    }
}

/// Every backend in memory over `integrations`, the intake a claiming one over a memory ledger
/// and queue, as a test of listings or the handler wants them; with the queue and the cursors.
pub fn backends(
    integrations: impl IntoIterator<Item = Integration>,
) -> (super::Backends, Arc<MemoryQueue>, Arc<MemoryCursors>) {
    let ledger = Arc::new(MemoryLedger::default());
    let queue = Arc::new(MemoryQueue::default());
    let cursors = Arc::new(MemoryCursors::default());
    let history = Arc::new(MemoryHistory::default());
    let usage = Arc::new(MemoryUsage::default());
    let backends = super::Backends {
        store: Arc::new(MemoryStore::with(integrations)),
        intake: Arc::new(super::claiming::Claiming::new(
            ledger.clone(),
            queue.clone(),
            usage.clone(),
            history.clone(),
        )),
        usage,
        cursors: cursors.clone(),
        history,
        records: ledger,
        backlog: queue.clone(),
    };
    (backends, queue, cursors)
}

/// Gives an R2 integration a sealed test token, sealed under `master_key` (version 1) for its
/// own id.
pub fn with_test_token(integration: &mut Integration, master_key: &[u8]) {
    let ring = Keyring::single(MasterKey::from_bytes(master_key));
    let token = crate::sealed::KeyPair {
        access_key_id: "test-key-id".into(),
        secret_access_key: "test-secret".into(),
    };
    let sealed = futures::executor::block_on(crate::sealed::seal(&ring, &integration.id, &token))
        .expect("a local key seals");
    integration.read_access = Some(relay_protocol::integration::ReadAccess::SealedKeys { sealed });
}

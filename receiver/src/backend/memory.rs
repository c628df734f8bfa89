//! In-memory backends: the same semantics as the real ones, for tests and benchmarks.

use super::{BackendError, Claim, Ledger, Queue, Store, CLAIM_LEASE};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use relay_protocol::{IngestJob, Integration};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

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

enum Entry {
    Pending { claimed_at: DateTime<Utc> },
    Done,
}

#[derive(Default)]
pub struct MemoryLedger(Mutex<HashMap<String, Entry>>);

#[async_trait]
impl Ledger for MemoryLedger {
    async fn claim(
        &self,
        jobs: &[&IngestJob],
        now: DateTime<Utc>,
    ) -> Result<Vec<Claim>, BackendError> {
        let mut map = self.0.lock().unwrap();
        let claims = jobs
            .iter()
            .map(|job| match map.get(&job.job_id) {
                Some(Entry::Done) => Claim::Done,
                Some(Entry::Pending { claimed_at }) if now - *claimed_at < CLAIM_LEASE => {
                    Claim::InFlight
                }
                _ => {
                    map.insert(job.job_id.clone(), Entry::Pending { claimed_at: now });
                    Claim::Claimed
                }
            })
            .collect();
        Ok(claims)
    }
    async fn complete(&self, job_ids: &[&str], _now: DateTime<Utc>) -> Result<(), BackendError> {
        let mut map = self.0.lock().unwrap();
        for id in job_ids {
            map.insert((*id).to_owned(), Entry::Done);
        }
        Ok(())
    }
    async fn release(&self, job_ids: &[&str]) -> Result<(), BackendError> {
        let mut map = self.0.lock().unwrap();
        for id in job_ids {
            map.remove(*id);
        }
        Ok(())
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
impl Queue for MemoryQueue {
    async fn send(&self, jobs: &[&IngestJob]) -> Result<Vec<Result<(), String>>, BackendError> {
        let mut queue = self.0.lock().unwrap();
        queue.extend(jobs.iter().map(|job| (*job).clone()));
        Ok(vec![Ok(()); jobs.len()])
    }
}

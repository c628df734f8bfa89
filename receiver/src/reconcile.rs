//! `reconcile`: proof that every object became a job, or the list of those that did not.
//!
//! The bucket is listed as a backfill lists it (page by page, flat memory), each object is put
//! through the same decision, and each that the decision would make a job of is looked up in
//! the ledger ([`JobRecords`]): the ledger vouches for it, a request holds it right now, or it is
//! missing. With `repair`, the missing ones are settled through the one settle path, so their
//! jobs get the same ids as their events' would have, and a second run changes nothing.

use crate::backend::bucket::Page;
use crate::backend::{Intake, JobRecords, LedgerTime, Recorded};
use crate::item::Item;
use crate::poll::{Poller, RunError};
use crate::settle::settle_within_rate;
use chrono::{DateTime, SecondsFormat, Utc};
use relay_protocol::event::listed::{ListedFrom, ListedObject};
use relay_protocol::{
    decide_via, IngestJob, Integration, ObjectEvent, Outcome, Reason, Status, Via,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// What a reconcile looks at.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReconcileScope {
    /// Listing prefix: the integration's, or one within it.
    pub(crate) prefix: Option<String>,
    /// Only objects modified at or after this time.
    pub(crate) since: Option<DateTime<Utc>>,
    /// Only objects modified before this time.
    pub(crate) until: Option<DateTime<Utc>>,
    /// Judge objects past the integration's horizon too: one the ledger has no job for is
    /// missing (otherwise it is `beyond_horizon`).
    pub(crate) past_horizon: bool,
}

impl ReconcileScope {
    fn admits(&self, object: &ListedObject) -> bool {
        let Some(modified) = object.last_modified else {
            return self.since.is_none() && self.until.is_none();
        };
        self.since.is_none_or(|since| modified >= since)
            && self.until.is_none_or(|until| modified < until)
    }
}

/// What a reconcile found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Reconciled {
    /// Objects listed (each key's latest version).
    pub(crate) listed: u64,
    /// Listed objects within `--since` / `--until`.
    pub(crate) considered: u64,
    /// Considered objects the decision would make a job of.
    pub(crate) admitted: u64,
    /// Considered objects the decision skips, by reason.
    pub(crate) skipped: BTreeMap<String, u64>,
    /// Admitted objects the ledger vouches became jobs.
    pub(crate) with_job: u64,
    /// Admitted objects a request is enqueueing right now.
    pub(crate) in_flight: u64,
    /// Admitted objects that never became a job.
    pub(crate) missing: u64,
    /// Admitted objects older than the integration's horizon that the ledger has no job for:
    /// each may have been a job once, forgotten since, so the ledger can neither vouch for it
    /// nor call it missing (`--past-horizon` counts them as missing).
    pub(crate) beyond_horizon: u64,
    /// Missing objects made jobs by this run (`--repair`).
    pub(crate) repaired: u64,
}

impl Reconciled {
    /// Missing objects that are still missing after this run.
    pub(crate) fn unrepaired(&self) -> u64 {
        self.missing - self.repaired
    }
}

/// Told about each missing object as it is found, and about the run after each page.
pub(crate) trait ReconcileSink: Send {
    fn missing(&mut self, job: &IngestJob);
    fn page(&mut self, so_far: &Reconciled, elapsed_s: f64);
}

impl Poller {
    /// Lists `id`'s bucket in `scope` and compares each object the decision admits with the
    /// ledger; with `repair`, makes the missing jobs.
    pub(crate) async fn reconcile(
        &self,
        id: &str,
        scope: ReconcileScope,
        repair: bool,
        sink: &mut dyn ReconcileSink,
    ) -> Result<Reconciled, RunError> {
        let integration = self.load(id).await?;
        if repair && integration.status == Status::Paused {
            return Err(RunError::Paused(id.to_owned()));
        }
        let prefix = scope.prefix.clone().or_else(|| integration.prefix.clone());
        let mut listing = self
            .listing_of(&integration, prefix.as_deref(), None)
            .await?;
        let (intake, records) = self.ledger();
        let run_id = format!(
            "reconcile:{}",
            Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
        );
        let from = ListedFrom {
            provider: integration.provider,
            account: integration.account.as_deref(),
            region: integration.region.as_deref(),
            bucket: &integration.bucket,
            run_id: &run_id,
        };
        // Paused or not, the decision says whether an object is one to make a job of.
        let mut decided = integration.clone();
        decided.status = Status::Active;
        let page_check = PageCheck {
            integration: &decided,
            from: &from,
            scope: &scope,
            records,
            intake: repair.then_some(intake),
        };
        let limits = self.run_limits();
        let started = Instant::now();
        let mut found = Reconciled::default();
        let mut pages = 0;
        // Reading the ledger for one page overlaps listing the next.
        let mut page = listing.next_page().await?;
        while let Some(current) = page {
            pages += 1;
            limits.check(pages, started)?;
            let (next, checked) = tokio::join!(
                listing.next_page(),
                page_check.check(current, &mut found, sink)
            );
            checked?;
            sink.page(&found, started.elapsed().as_secs_f64());
            page = next?;
        }
        crate::events::ReconcileDone {
            integration_id: &integration.id,
            listed: found.listed,
            admitted: found.admitted,
            with_job: found.with_job,
            in_flight: found.in_flight,
            missing: found.missing,
            beyond_horizon: found.beyond_horizon,
            repaired: found.repaired,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        }
        .emit();
        Ok(found)
    }
}

/// What checking one page needs: the decision's inputs, the ledger, and the intake when it
/// repairs.
struct PageCheck<'a> {
    integration: &'a Integration,
    from: &'a ListedFrom<'a>,
    scope: &'a ReconcileScope,
    records: &'a dyn JobRecords,
    intake: Option<&'a dyn Intake>,
}

impl PageCheck<'_> {
    /// Decides each object of `page`, asks the ledger about those with a job, names the missing
    /// ones to `sink`, and repairs them when asked to.
    async fn check(
        &self,
        page: Page,
        found: &mut Reconciled,
        sink: &mut dyn ReconcileSink,
    ) -> Result<(), RunError> {
        found.listed += page.objects.len() as u64;
        let now = Utc::now();
        let mut admitted = Vec::new();
        let mut modified = Vec::new();
        for object in page.objects.into_iter().filter(|o| self.scope.admits(o)) {
            found.considered += 1;
            let key = object.key.clone();
            let last_modified = object.last_modified;
            let event = ObjectEvent::listed(self.from, object);
            let decision = decide_via(Via::Listing, self.integration, Ok(event), now);
            let item = Item::from_decision(key, decision);
            match &item.job {
                Some(_) => {
                    admitted.push(item);
                    modified.push(last_modified);
                }
                None => {
                    let reason = item.reason.map_or("", Reason::as_str);
                    *found.skipped.entry(reason.to_owned()).or_default() += 1;
                }
            }
        }
        found.admitted += admitted.len() as u64;
        let at = LedgerTime::new(now, self.integration);
        let horizon_start = (!self.scope.past_horizon).then(|| at.forgotten_before());
        let mut missing =
            compare(self.records, admitted, &modified, at, horizon_start, found).await?;
        for job in missing.iter().filter_map(|item| item.job.as_deref()) {
            sink.missing(job);
        }
        let Some(intake) = self.intake.filter(|_| !missing.is_empty()) else {
            return Ok(());
        };
        settle_within_rate(intake, self.integration, &mut missing, now, 1).await?;
        for item in &missing {
            match item.outcome {
                Outcome::Accepted => found.repaired += 1,
                // Its event came in meanwhile: it has its job after all.
                Outcome::Duplicate => {
                    found.missing -= 1;
                    found.with_job += 1;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Counts what the ledger vouches for among `admitted` (each modified at `modified`), and
/// returns the missing ones; those the ledger does not know that were modified at or before
/// `horizon_start`, when given, are counted `beyond_horizon` instead.
async fn compare(
    records: &dyn JobRecords,
    admitted: Vec<Item>,
    modified: &[Option<DateTime<Utc>>],
    at: LedgerTime,
    horizon_start: Option<DateTime<Utc>>,
    found: &mut Reconciled,
) -> Result<Vec<Item>, RunError> {
    let jobs: Vec<&IngestJob> = admitted
        .iter()
        .filter_map(|item| item.job.as_deref())
        .collect();
    let recorded = records.recorded(&jobs, at).await?;
    let mut missing = Vec::new();
    for ((item, recorded), modified) in admitted.into_iter().zip(recorded).zip(modified) {
        let past = horizon_start
            .zip(*modified)
            .is_some_and(|(start, m)| m <= start);
        match recorded {
            Recorded::Enqueued => found.with_job += 1,
            Recorded::InFlight => found.in_flight += 1,
            Recorded::Unknown if past => found.beyond_horizon += 1,
            Recorded::Unknown => {
                found.missing += 1;
                missing.push(item);
            }
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::{backends, with_test_token, MemoryBucket, StaticKey};
    use crate::backend::MasterKey;
    use relay_protocol::integration::NewIntegration;
    use relay_protocol::Provider;
    use std::sync::Arc;

    const MASTER: &[u8] = b"0123456789abcdef";

    #[derive(Default)]
    struct Collect(Vec<String>);

    impl ReconcileSink for Collect {
        fn missing(&mut self, job: &IngestJob) {
            self.0.push(job.key.clone());
        }
        fn page(&mut self, _: &Reconciled, _: f64) {}
    }

    #[tokio::test]
    async fn the_objects_that_never_became_jobs_are_named_and_repaired_once() {
        let mut integration = NewIntegration {
            account: Some("4f3c1e0d9b8a7c6d5e4f3a2b1c0d9e8f".into()),
            suffixes: vec![".pdf".into()],
            ..NewIntegration::new(Provider::R2, "uploads")
        }
        .build("rec", Utc::now())
        .unwrap();
        with_test_token(&mut integration, MASTER);
        let (backends, queue, _) = backends([integration.clone()]);
        let bucket = Arc::new(MemoryBucket::new(4));
        let keys = Arc::new(StaticKey::new(MasterKey::from_bytes(MASTER)));
        let poller = Poller::new(&backends, keys, Arc::new(Arc::clone(&bucket)));
        let now = Utc::now().to_rfc3339();
        for i in 0..10 {
            bucket.put(&format!("in/{i}.pdf"), &now);
        }
        bucket.put("in/notes.txt", &now);
        // Seven of the ten arrived as events: a backfill limited to them stands in.
        let arrived: Vec<Item> = (0..7)
            .map(|i| {
                let object = ListedObject {
                    key: format!("in/{i}.pdf"),
                    size: Some(1),
                    etag: Some(format!("\"etag-in/{i}.pdf-{now}\"")),
                    version_id: None,
                    last_modified: None,
                };
                let from = ListedFrom {
                    provider: Provider::R2,
                    account: integration.account.as_deref(),
                    region: None,
                    bucket: "uploads",
                    run_id: "events",
                };
                let event = ObjectEvent::listed(&from, object);
                Item::from_decision(
                    String::new(),
                    decide_via(Via::Listing, &integration, Ok(event), Utc::now()),
                )
            })
            .collect();
        let mut arrived = arrived;
        crate::settle::settle(
            backends.intake.as_ref(),
            &integration,
            &mut arrived,
            Utc::now(),
        )
        .await
        .unwrap();
        assert_eq!(queue.jobs().len(), 7);

        let mut sink = Collect::default();
        let found = poller
            .reconcile(&integration.id, ReconcileScope::default(), false, &mut sink)
            .await
            .unwrap();
        assert_eq!(
            (
                found.listed,
                found.admitted,
                found.with_job,
                found.missing,
                found.repaired
            ),
            (11, 10, 7, 3, 0)
        );
        assert_eq!(
            found.skipped,
            BTreeMap::from([("suffix_filtered".to_owned(), 1)])
        );
        assert_eq!(sink.0, ["in/7.pdf", "in/8.pdf", "in/9.pdf"]);
        assert_eq!(queue.jobs().len(), 7, "reconcile alone changes nothing");

        let repair = || async {
            let scope = ReconcileScope::default();
            let mut sink = Collect::default();
            poller
                .reconcile(&integration.id, scope, true, &mut sink)
                .await
                .unwrap()
        };
        let repaired = repair().await;
        assert_eq!(
            (repaired.missing, repaired.repaired, repaired.unrepaired()),
            (3, 3, 0)
        );
        let again = repair().await;
        assert_eq!((again.with_job, again.missing, again.repaired), (10, 0, 0));
        let mut keys: Vec<String> = queue.jobs().into_iter().map(|job| job.key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 10, "every object once, none twice");
    }
}

//! Which worker bundle each R2 integration's customer runs, and whether it is the one the
//! operator last packaged for them.
//!
//! A worker names its bundle in a header of every batch ([`wire::HEADER_WORKER_BUNDLE`]); once
//! the batch's signature verifies, the receiver keeps it as the integration's `worker_bundle`
//! cursor. A process writes it only when it differs from what the same process wrote last, so
//! it costs one small write per integration per process start or upgrade, not one per batch.
//! `worker package` keeps the version it wrote as `worker_packaged`. `integrations show` reads
//! both and says whether they, and this binary's own version, agree ([`compare`]).

use crate::backend::{BackendError, Cursors};
use crate::events::WorkerBundleReported;
use chrono::{DateTime, SecondsFormat, Utc};
use http::HeaderMap;
use relay_protocol::wire::{self, is_bundle_version, BUNDLE_FROM_SOURCE};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The cursor naming the bundle the integration's worker last reported.
pub(crate) const REPORTED: &str = "worker_bundle";
/// The cursor naming the bundle `worker package` last wrote for the integration.
pub(crate) const PACKAGED: &str = "worker_packaged";

/// A bundle version and when it was reported (or packaged).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BundleSeen {
    pub bundle: String,
    pub at: String,
}

impl BundleSeen {
    pub(crate) fn new(bundle: &str, at: DateTime<Utc>) -> Self {
        BundleSeen {
            bundle: bundle.to_owned(),
            at: at.to_rfc3339_opts(SecondsFormat::Secs, true),
        }
    }
}

/// The bundle a request's header names, when it is one (anything else is not kept).
pub(crate) fn from_headers(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(wire::HEADER_WORKER_BUNDLE)?
        .to_str()
        .ok()
        .filter(|value| is_bundle_version(value))
}

/// Keeps the bundle each integration's worker reports, writing only on a change.
pub(crate) struct Reporter {
    cursors: Arc<dyn Cursors>,
    written: Mutex<HashMap<String, String>>,
}

impl Reporter {
    pub(crate) fn new(cursors: Arc<dyn Cursors>) -> Self {
        Reporter {
            cursors,
            written: Mutex::new(HashMap::new()),
        }
    }

    /// Records `bundle` for the integration unless this process already did. A failed write is
    /// the caller's to log; the next batch tries again.
    pub(crate) async fn note(
        &self,
        integration_id: &str,
        bundle: &str,
        now: DateTime<Utc>,
    ) -> Result<(), BackendError> {
        // The common case, every batch after the first: nothing to write, nothing allocated.
        let known = {
            let written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
            match written.get(integration_id) {
                Some(known) if known == bundle => return Ok(()),
                known => known.cloned(),
            }
        };
        let previous = match known {
            Some(known) => Some(known),
            None => load(self.cursors.as_ref(), integration_id, REPORTED)
                .await?
                .map(|seen| seen.bundle),
        };
        if previous.as_deref() != Some(bundle) {
            let value = serde_json::to_string(&BundleSeen::new(bundle, now))
                .expect("two strings serialize");
            self.cursors
                .save(integration_id, REPORTED, Some(&value))
                .await?;
            WorkerBundleReported {
                integration_id,
                bundle,
                previous: previous.as_deref(),
            }
            .emit();
        }
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(integration_id.to_owned(), bundle.to_owned());
        Ok(())
    }
}

/// Keeps `bundle` as the one last handed to the integration's customer (`worker package`,
/// `create --worker-out`, `connect-r2`).
pub(crate) async fn remember_packaged(
    cursors: &dyn Cursors,
    integration_id: &str,
    bundle: &str,
    now: DateTime<Utc>,
) -> Result<(), BackendError> {
    let value =
        serde_json::to_string(&BundleSeen::new(bundle, now)).expect("two strings serialize");
    cursors.save(integration_id, PACKAGED, Some(&value)).await
}

/// A kept bundle cursor; one that cannot be read is treated as absent.
pub(crate) async fn load(
    cursors: &dyn Cursors,
    integration_id: &str,
    name: &str,
) -> Result<Option<BundleSeen>, BackendError> {
    Ok(cursors
        .load(integration_id, name)
        .await?
        .and_then(|text| serde_json::from_str(&text).ok()))
}

/// What `integrations show` says about the bundles, when something does not agree: the
/// customer runs another bundle than the one last packaged for them (not deployed yet, or an
/// older folder), or a bundle of another version than this binary's (package it again).
pub(crate) fn compare(
    reported: Option<&BundleSeen>,
    packaged: Option<&BundleSeen>,
    binary_version: &str,
) -> Option<String> {
    let reported = reported?;
    if reported.bundle == BUNDLE_FROM_SOURCE {
        return None;
    }
    if let Some(packaged) = packaged.filter(|p| p.bundle != reported.bundle) {
        return Some(format!(
            "the worker runs bundle {}, not {} that `worker package` wrote on {}: the customer \
             has not deployed that folder",
            reported.bundle, packaged.bundle, packaged.at
        ));
    }
    let version = reported.bundle.split_once('+').map_or("", |(v, _)| v);
    (version != binary_version).then(|| {
        format!(
            "the worker runs bundle {} and this receiver is {binary_version}: run `worker \
             package` with this release's bundle and have the customer deploy it",
            reported.bundle
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryCursors;

    fn seen(bundle: &str) -> BundleSeen {
        BundleSeen {
            bundle: bundle.into(),
            at: "2026-11-30T07:00:00Z".into(),
        }
    }

    #[test]
    fn the_same_bundle_as_packaged_and_this_version_agrees() {
        let b = seen("0.1.0+3f9a1c2b7d4e");
        assert_eq!(compare(Some(&b), Some(&b), "0.1.0"), None);
        assert_eq!(compare(Some(&b), None, "0.1.0"), None);
        assert_eq!(
            compare(None, Some(&b), "0.1.0"),
            None,
            "nothing reported yet"
        );
        assert_eq!(compare(Some(&seen("source")), Some(&b), "0.2.0"), None);
    }

    #[test]
    fn another_bundle_than_packaged_or_another_version_is_named() {
        let old = seen("0.1.0+000000000000");
        let new = seen("0.1.0+3f9a1c2b7d4e");
        let why = compare(Some(&old), Some(&new), "0.1.0").unwrap();
        assert!(why.contains("runs bundle 0.1.0+000000000000, not 0.1.0+3f9a1c2b7d4e"));
        let why = compare(Some(&new), None, "0.2.0").unwrap();
        assert!(why.contains("this receiver is 0.2.0"), "{why}");
    }

    #[test]
    fn only_a_well_formed_header_is_kept() {
        let mut headers = HeaderMap::new();
        assert_eq!(from_headers(&headers), None);
        headers.insert(wire::HEADER_WORKER_BUNDLE, "0.1.0+ab12".parse().unwrap());
        assert_eq!(from_headers(&headers), Some("0.1.0+ab12"));
        headers.insert(
            wire::HEADER_WORKER_BUNDLE,
            "0.1.0+ab12; rm".parse().unwrap(),
        );
        assert_eq!(from_headers(&headers), None);
    }

    #[tokio::test]
    async fn a_process_writes_a_bundle_once_and_again_when_it_changes() {
        let memory = Arc::new(MemoryCursors::default());
        let reporter = Reporter::new(memory.clone());
        let now = Utc::now();
        reporter.note("int_a", "0.1.0+aa", now).await.unwrap();
        let first = load(memory.as_ref(), "int_a", REPORTED).await.unwrap();
        assert_eq!(first.as_ref().map(|s| s.bundle.as_str()), Some("0.1.0+aa"));
        // The same bundle later writes nothing (the kept time stays the first report's).
        let later = now + chrono::Duration::hours(1);
        reporter.note("int_a", "0.1.0+aa", later).await.unwrap();
        assert_eq!(
            load(memory.as_ref(), "int_a", REPORTED).await.unwrap(),
            first
        );
        // A new process that finds the same bundle kept writes nothing either.
        Reporter::new(memory.clone())
            .note("int_a", "0.1.0+aa", later)
            .await
            .unwrap();
        assert_eq!(
            load(memory.as_ref(), "int_a", REPORTED).await.unwrap(),
            first
        );
        reporter.note("int_a", "0.1.0+bb", later).await.unwrap();
        let changed = load(memory.as_ref(), "int_a", REPORTED)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(changed, BundleSeen::new("0.1.0+bb", later));
    }
}

//! The receiver's one handler: HTTP request in, HTTP response out.
//!
//! Data flows one way: route → size limit → integration → authenticate → parse and decide each
//! event (`item`, the decision itself pure in `relay-protocol`; an S3 event that names no
//! version of its object is looked up in the bucket first) → commit the jobs through the intake
//! (dedupe and enqueue, exactly once) → answer, log and count. The `serve` and
//! Lambda entry points are thin shells that turn their request type into `http::Request<Bytes>`
//! and call [`Relay::handle`]; nothing else differs between them.

pub use crate::answer::{too_large, Refusal};

use crate::answer::json_response;
use crate::auth::{authenticate, Sender};
use crate::backend::lookup::{Looked, ObjectLookup, ObjectRef};
use crate::backend::{Backends, Keyring, MasterKeySource};
use crate::events::{AuthFailed, ObjectLookupFailed, RequestHandled, RequestRefused};
use crate::integrations::Integrations;
use crate::item::{decide_one, parse_events, report_event, Item};
use crate::keys::KeyError;
use crate::settle::settle;
use crate::telemetry::{flush_emf, log_backend_error, EventCounts};
use crate::worker_bundle::{self, Reporter};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, Method};
use relay_protocol::event::{EventError, ObjectEvent};
use relay_protocol::webhook::SigningKey;
use relay_protocol::wire::{self, EventResult, Results};
use relay_protocol::{Integration, Outcome, Reason};
use std::sync::Arc;
use std::time::Instant;

/// Everything a request needs: the backends and the master key.
pub struct Relay {
    backends: Backends,
    integrations: Integrations,
    keys: Arc<dyn MasterKeySource>,
    /// Where an S3 event that names no object version is looked up; without it, such an
    /// event's job id is its own event id.
    lookup: Option<Arc<dyn ObjectLookup>>,
    /// Keeps the bundle each R2 integration's worker names.
    bundles: Reporter,
}

impl Relay {
    pub fn new(backends: Backends, keys: Arc<dyn MasterKeySource>) -> Self {
        Relay {
            integrations: Integrations::new(Arc::clone(&backends.store)),
            bundles: Reporter::new(Arc::clone(&backends.cursors)),
            backends,
            keys,
            lookup: None,
        }
    }

    /// Looks up the object of an S3 event that names no version of it (a CloudTrail event in
    /// an unversioned bucket) through the integration's read role, so that it gets the job id
    /// of the same object's "Object Created" event.
    #[must_use]
    pub fn with_lookup(mut self, lookup: Arc<dyn ObjectLookup>) -> Self {
        self.lookup = Some(lookup);
        self
    }

    pub async fn handle(&self, request: http::Request<Bytes>) -> http::Response<Bytes> {
        let (parts, body) = request.into_parts();
        self.handle_parts(&parts.method, parts.uri.path(), &parts.headers, &body)
            .await
    }

    pub async fn handle_parts(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> http::Response<Bytes> {
        if path == wire::HEALTH_PATH {
            return if method == Method::GET || method == Method::HEAD {
                json_response(200, &serde_json::json!({"status": "ok"}))
            } else {
                Refusal::new(Reason::MethodNotAllowed, "use GET").into_response()
            };
        }
        let Some(integration_id) = wire::parse_events_path(path) else {
            return Refusal::new(Reason::NotFound, format!("no route for {path}")).into_response();
        };
        if method != Method::POST {
            return Refusal::new(Reason::MethodNotAllowed, "use POST").into_response();
        }

        let started = Instant::now();
        let now = Utc::now();
        let outcome = self.events(integration_id, headers, body, now).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        match outcome {
            Ok((sender, items)) => {
                self.answer(integration_id, sender, items, body.len(), elapsed_ms)
                    .await
            }
            Err(refusal) => {
                self.report_refusal(integration_id, &refusal, body.len(), elapsed_ms);
                refusal.into_response()
            }
        }
    }

    /// A refusal that needs no body: an events request for an integration the store does not
    /// have (404 `unknown_integration`). The `serve` shell asks before it reads a body, so such
    /// a request costs no memory. `None` when the body is needed to answer (or the store cannot
    /// say now: the handler answers that).
    #[cfg(feature = "server")]
    pub(crate) async fn refusal_before_body(&self, method: &Method, path: &str) -> Option<Refusal> {
        let integration_id = wire::parse_events_path(path)?;
        if method != Method::POST {
            return None;
        }
        match self.integrations.get(integration_id).await {
            Ok(None) => Some(Refusal::new(
                Reason::UnknownIntegration,
                format!("no integration {integration_id}"),
            )),
            Ok(Some(_)) | Err(_) => None,
        }
    }

    /// Logs and counts a request the `serve` shell refused before the handler saw it (too
    /// large, too slow), exactly as the handler does its own refusals.
    pub fn refused_before_handling(&self, path: &str, refusal: &Refusal) {
        let integration_id = wire::parse_events_path(path).unwrap_or("");
        self.report_refusal(integration_id, refusal, 0, 0.0);
    }

    /// The operator event of a refused request: its `request` line and its counts.
    fn report_refusal(
        &self,
        integration_id: &str,
        refusal: &Refusal,
        bytes: usize,
        elapsed_ms: f64,
    ) {
        RequestRefused {
            integration_id,
            status: wire::request_error_status(refusal.reason),
            error: refusal.reason.as_str(),
            detail: &refusal.detail,
            bytes: bytes as u64,
            duration_ms: elapsed_ms,
        }
        .emit();
        flush_emf();
    }

    async fn events(
        &self,
        integration_id: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(Sender, Vec<Item>), Refusal> {
        if body.len() > wire::MAX_BODY_BYTES {
            return Err(too_large(body.len()));
        }
        let unknown = || {
            Refusal::new(
                Reason::UnknownIntegration,
                format!("no integration {integration_id}"),
            )
        };
        let lookup = self
            .integrations
            .get(integration_id)
            .await
            .map_err(|e| Refusal::unavailable(&e))?
            .ok_or_else(unknown)?;
        let mut integration = lookup.integration;
        let mut ring = self.keyring_for(&integration).await?;
        let mut keys = self.signing_keys(&ring, &integration, now).await?;
        let mut verified = authenticate(&keys, headers, body, now);
        if verified.is_err() && lookup.cached {
            // Perhaps a secret from a rotation the remembered integration predates.
            integration = self
                .integrations
                .read(integration_id)
                .await
                .map_err(|e| Refusal::unavailable(&e))?
                .ok_or_else(unknown)?
                .integration;
            ring = self.keyring_for(&integration).await?;
            keys = self.signing_keys(&ring, &integration, now).await?;
            verified = authenticate(&keys, headers, body, now);
        }
        let sender = verified.map_err(|e| {
            AuthFailed {
                integration_id,
                cause: e.0,
            }
            .emit();
            Refusal::new(
                Reason::InvalidSecret,
                "the request is not signed with this integration's secret",
            )
        })?;

        if let (Sender::Worker, Some(bundle)) = (sender, worker_bundle::from_headers(headers)) {
            if let Err(err) = self.bundles.note(integration_id, bundle, now).await {
                log_backend_error(&err);
            }
        }
        let parsed = parse_events(sender, body)?;
        let mut items = Vec::with_capacity(parsed.len());
        for (id, event) in parsed {
            items.push(self.decide(&integration, &ring, id, event, now).await);
        }
        self.commit(&integration, &mut items, now).await;
        Ok((sender, items))
    }

    /// The keyring, with the integration's current key version: one a `keys rotate` added
    /// since this process read the keyring makes it read the keyring again.
    async fn keyring_for(&self, integration: &Integration) -> Result<Keyring, Refusal> {
        self.keys
            .keyring_with(integration.key_version)
            .await
            .map_err(|e| Refusal::unavailable(&e))
    }

    /// The signing keys of the integration's valid secrets (KMS not answering is a 503: the
    /// sender retries).
    async fn signing_keys(
        &self,
        ring: &Keyring,
        integration: &Integration,
        now: DateTime<Utc>,
    ) -> Result<Vec<SigningKey>, Refusal> {
        ring.signing_keys(integration, now)
            .await
            .map_err(|error| match error {
                KeyError::Kms(error) => Refusal::unavailable(&error),
                missing @ KeyError::Missing(_) => {
                    Refusal::unavailable(&crate::backend::BackendError::new("keys", missing))
                }
            })
    }

    /// Steps 2–5, and 5b: an event that would become a job but names no version of its object
    /// is decided again with the version the bucket names now (or skipped as `object_gone`).
    /// When the lookup cannot answer, the job keeps the event's own id, and a warning says why.
    async fn decide(
        &self,
        integration: &Integration,
        ring: &Keyring,
        id: String,
        event: Result<ObjectEvent, EventError>,
        now: DateTime<Utc>,
    ) -> Item {
        let unnamed = match &event {
            Ok(event) if event.lacks_version() => Some(event.clone()),
            _ => None,
        };
        let item = decide_one(integration, id, event, now);
        let (Some(mut event), Some(_), Some(lookup)) = (unnamed, &item.job, &self.lookup) else {
            return item;
        };
        let Some(role_arn) = integration.read_access.as_ref().and_then(|access| {
            access.role_arn_for(event.account.as_deref(), event.region.as_deref())
        }) else {
            return item;
        };
        let object = ObjectRef {
            region: event.region.as_deref(),
            bucket: &event.bucket,
            key: &event.key,
        };
        // Without its key version (retired) the lookup cannot assume the role: the job keeps
        // the event's own id, as when the lookup fails.
        let Ok(external_id) = ring.external_id(integration).await else {
            return item;
        };
        match lookup.head(&role_arn, &external_id, object).await {
            Ok(Looked::Found(head)) => {
                event.identify(head);
                decide_one(integration, item.id, Ok(event), now)
            }
            Ok(Looked::Gone) => Item::gone(item.id, &event),
            Err(err) => {
                ObjectLookupFailed {
                    integration_id: &integration.id,
                    id: &item.id,
                    bucket: &event.bucket,
                    key: &event.key,
                    role_arn: &role_arn,
                    cause: err.name(),
                    detail: err.detail(),
                }
                .emit();
                item
            }
        }
    }

    /// Steps 6 and 7: the intake enqueues each new job exactly once and counts the request.
    async fn commit(&self, integration: &Integration, items: &mut [Item], now: DateTime<Utc>) {
        self.probe_for_test_events(items).await;
        let intake = self.backends.intake.as_ref();
        if let Err(err) = settle(intake, integration, items, now).await {
            log_backend_error(&err);
        }
    }

    /// A test event checks the ledger and the queue answer too (nothing is written to either):
    /// if not, it is `retry_later` / `backend_unavailable`, as a real event would be.
    async fn probe_for_test_events(&self, items: &mut [Item]) {
        let is_test = |item: &Item| item.reason == Some(Reason::TestEvent);
        if !items.iter().any(is_test) {
            return;
        }
        if let Err(err) = self.backends.intake.probe().await {
            log_backend_error(&err);
            for item in items.iter_mut().filter(|item| is_test(item)) {
                item.settle(Outcome::RetryLater, Some(Reason::BackendUnavailable));
            }
        }
    }

    async fn answer(
        &self,
        integration_id: &str,
        sender: Sender,
        items: Vec<Item>,
        bytes: usize,
        elapsed_ms: f64,
    ) -> http::Response<Bytes> {
        let mut tally = EventCounts::default();
        for item in &items {
            tally.add(item.outcome);
            report_event(integration_id, item);
        }
        let status = match (sender, items.first()) {
            (Sender::EventBridge, Some(item)) => wire::single_event_status(item.outcome),
            _ => 200,
        };
        let events = items.len() as u64;
        let refused = tally.count(Outcome::Rejected) + tally.count(Outcome::RetryLater);
        RequestHandled {
            integration_id,
            sender: sender.as_str(),
            status,
            events,
            accepted: tally.count(Outcome::Accepted),
            duplicate: tally.count(Outcome::Duplicate),
            skipped: tally.count(Outcome::Skipped),
            rejected: tally.count(Outcome::Rejected),
            retry_later: tally.count(Outcome::RetryLater),
            refused_balance: i64::try_from(2 * refused).unwrap_or(i64::MAX)
                - i64::try_from(events).unwrap_or(i64::MAX),
            bytes: bytes as u64,
            duration_ms: elapsed_ms,
        }
        .emit();
        // With EMF on, the request's counts are one line.
        flush_emf();
        let results = Results {
            results: items
                .into_iter()
                .map(|item| EventResult {
                    job_id: item.job.map(|job| job.job_id),
                    id: item.id,
                    outcome: item.outcome,
                    reason: item.reason,
                })
                .collect(),
        };
        json_response(status, &results)
    }
}

//! Bucket Relay's wire contract, shared by the worker (wasm32) and the receiver (native).
//!
//! Everything here is pure: no I/O, no clock, no randomness. The receiver and the worker both
//! depend on this crate, so the event formats, the Standard Webhooks signature, the secret
//! derivation, the `ingest-job/v1` schema and the per-event decision cannot drift apart.
//!
//! - [`admission`]: an integration's rate limit (fixed windows) and overwrite policy.
//! - [`reason`]: the outcomes and the stable reason strings used in responses, logs and metrics.
//! - [`integration`]: one customer bucket's configuration; [`names`]: the clouds' naming rules
//!   for every field that reaches a host.
//! - [`event`]: the normalised object event, and parsers for R2 notifications
//!   ([`event::r2`]) and EventBridge S3 / CloudTrail events ([`event::eventbridge`]).
//! - [`webhook`]: Standard Webhooks signing and verification.
//! - [`secret`]: the event source secret derived from the master key.
//! - [`job`]: the `ingest-job/v2` (and `/v1`) message and its deterministic `job_id`;
//!   [`route`]: per key prefix, the parameters and output prefix a job carries.
//! - [`decide`]: the pure decision "what happens to this event".
//! - [`wire`]: request and response bodies, header names and the events path.

pub mod admission;
pub mod decide;
pub mod event;
pub mod integration;
pub mod job;
pub mod names;
pub mod reason;
pub mod route;
pub mod secret;
pub mod webhook;
pub mod wire;

pub use decide::{decide, decide_via, Decision, Via};
pub use event::{EventError, ObjectEvent};
pub use integration::{Integration, Mode, Provider, Status};
pub use job::IngestJob;
pub use reason::{Disposition, Outcome, Reason};

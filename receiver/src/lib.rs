//! Bucket Relay's receiver: verifies object-storage events and enqueues exactly one ingest job
//! per object version.
//!
//! - [`handler`]: the one request handler, shared by both entry points; [`item`]: one event
//!   through it (parse, decide, settle, log); [`answer`]: the refusals it answers with.
//! - [`serve`] and [`lambda`]: the two thin shells around it (plain HTTP, AWS Lambda).
//! - [`auth`]: which secret a request proves, and who sent it.
//! - [`integrations`]: integrations read through the store, kept in memory for a second.
//! - [`backend`]: the store, ledger, queue and bucket-listing ports and their adapters.
//! - [`poll`]: poll ticks and backfills: a bucket listed page by page into jobs; [`access`]:
//!   an integration's read access resolved with the master key;
//!   [`sealed`]: R2 token credentials sealed at rest.
//! - [`wiring`]: which backends a command uses (embedded or AWS); [`worker_bundle`]: the
//!   worker bundle each R2 customer runs.
//! - [`cli`]: the `bucket-relay` command line.
//! - [`events`]: the operator events, one type each, and the only `tracing` calls;
//!   [`telemetry`]: the JSON log setup and CloudWatch metrics; [`env`]: the environment variables.
//! - [`contract`]: the contract as data, for the docs and the other languages' tests.

mod access;
mod answer;
mod auth;
pub mod backend;
pub mod cli;
pub mod contract;
pub mod env;
pub mod events;
pub mod handler;
mod integrations;
mod item;
mod keys;
mod lambda;
pub mod pace;
mod poll;
mod reconcile;
mod sealed;
#[cfg(feature = "server")]
mod serve;
mod settle;
mod telemetry;
mod wiring;
mod worker_bundle;

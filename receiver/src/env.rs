//! The environment variables the receiver reads: the one list the README and Terraform use.

/// Folder of the embedded backends (`relay.db`) and the local master key (`master.key`).
pub const DATA_DIR: &str = "RELAY_DATA_DIR";
/// Address `serve` listens on.
pub const LISTEN: &str = "RELAY_LISTEN";
/// Log filter, `RUST_LOG` syntax: `info`, `debug`, `bucket_relay=debug`…
pub const LOG: &str = "RELAY_LOG";
/// `emf` prints one CloudWatch embedded-metric-format line per request; `off` does not.
pub const METRICS: &str = "RELAY_METRICS";
/// The receiver's public base URL, printed in the customer setup by `create` / `rotate-secret`.
pub const PUBLIC_URL: &str = "RELAY_PUBLIC_URL";
/// Set by Lambda: when present, the handler runs through `lambda_http`.
pub const LAMBDA_RUNTIME_API: &str = "AWS_LAMBDA_RUNTIME_API";

/// Every variable above, for docs and tests.
pub const ALL: [&str; 5] = [DATA_DIR, LISTEN, LOG, METRICS, PUBLIC_URL];

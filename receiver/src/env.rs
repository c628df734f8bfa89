//! The environment variables the receiver reads: the one list docs/cli.md and Terraform use.

/// Folder of the embedded backends (`relay.db`) and the local master key (`master.key`).
pub const DATA_DIR: &str = "RELAY_DATA_DIR";
/// Address `serve` listens on.
pub const LISTEN: &str = "RELAY_LISTEN";
/// How long `serve` waits for a request's head, and then for its body.
pub const READ_TIMEOUT: &str = "RELAY_READ_TIMEOUT";
/// Log filter, `RUST_LOG` syntax: `info`, `debug`, `bucket_relay=debug`…
pub const LOG: &str = "RELAY_LOG";
/// `emf` prints one CloudWatch embedded-metric-format line per request; `off` does not.
pub const METRICS: &str = "RELAY_METRICS";
/// Where `serve` answers `GET /metrics` in Prometheus' text format (`127.0.0.1:9464`); unset:
/// nowhere. Never the public port.
pub const METRICS_LISTEN: &str = "RELAY_METRICS_LISTEN";
/// The receiver's public base URL, printed in the customer setup by `create` / `rotate-secret`.
pub const PUBLIC_URL: &str = "RELAY_PUBLIC_URL";
/// `embedded` (default) or `aws`.
pub const BACKEND: &str = "RELAY_BACKEND";
/// `keys rotate`: the new master key version is held in KMS, this HMAC_256 key (GenerateMac).
pub const MASTER_KEY_KMS_ID: &str = "RELAY_MASTER_KEY_KMS_ID";
/// `keys rotate`: the symmetric KMS key sealing R2 tokens for a KMS-held version.
pub const SEALING_KEY_KMS_ID: &str = "RELAY_SEALING_KEY_KMS_ID";
/// `v2` (default) or `v1`: the schema jobs are written in.
pub const JOB_SCHEMA: &str = "RELAY_JOB_SCHEMA";
/// How long the "minute" of `--max-jobs-per-minute` lasts (default `1m`; tests shorten it).
pub const RATE_WINDOW: &str = "RELAY_RATE_WINDOW";
/// How long usage counts wait in memory before they are written, with the AWS backends
/// (default `10s`; `0s` writes each request's).
pub const USAGE_FLUSH: &str = "RELAY_USAGE_FLUSH";
/// DynamoDB table of integrations, with `RELAY_BACKEND=aws`.
pub const INTEGRATIONS_TABLE: &str = "RELAY_INTEGRATIONS_TABLE";
/// DynamoDB table of the processed-objects ledger and usage counts.
pub const LEDGER_TABLE: &str = "RELAY_LEDGER_TABLE";
/// SQS ingest queue URL.
pub const QUEUE_URL: &str = "RELAY_QUEUE_URL";
/// Secrets Manager secret id or ARN of the master key.
pub const MASTER_KEY_SECRET_ID: &str = "RELAY_MASTER_KEY_SECRET_ID";
/// How long a pending claim blocks redeliveries (default 4 minutes; for tests).
pub const CLAIM_LEASE: &str = "RELAY_CLAIM_LEASE";
/// R2's S3 API endpoint for listing, instead of `https://<account>.r2.cloudflarestorage.com`
/// (an S3-compatible emulator in tests).
pub const R2_ENDPOINT_URL: &str = "RELAY_R2_ENDPOINT_URL";
/// The R2 token's secret access key `integrations set-source` seals (read once, never stored
/// in the clear).
pub const R2_SECRET_ACCESS_KEY: &str = "RELAY_R2_SECRET_ACCESS_KEY";
/// How often `serve` runs a poll tick in-process (`2m`); unset: never.
pub const POLL_EVERY: &str = "RELAY_POLL_EVERY";
/// Where `worker package` reads the prebuilt worker bundle (default `worker/build`).
pub const WORKER_BUNDLE_DIR: &str = "RELAY_WORKER_BUNDLE";
/// `integrations connect-r2` / `disconnect-r2`: the customer's Cloudflare API token (else the
/// first line of stdin); never written anywhere.
pub const CLOUDFLARE_API_TOKEN: &str = "CLOUDFLARE_API_TOKEN";
/// Cloudflare's API base URL for `connect-r2` (default `https://api.cloudflare.com/client/v4`;
/// the variable wrangler reads too).
pub const CLOUDFLARE_API_BASE_URL: &str = "CLOUDFLARE_API_BASE_URL";
/// How many connections `serve` serves at once (default 512).
pub const MAX_CONNECTIONS: &str = "RELAY_MAX_CONNECTIONS";
/// How many MiB of request bodies `serve` holds at once, across connections (default 128).
pub const MAX_BODY_BUFFER_MIB: &str = "RELAY_MAX_BODY_BUFFER_MIB";
/// `poll` on Lambda: the function runs one poll tick per invocation (the scheduler's), not
/// the HTTP handler.
pub const LAMBDA_HANDLER: &str = "RELAY_LAMBDA_HANDLER";
/// [`LAMBDA_HANDLER`]'s value for the poller function.
pub const LAMBDA_HANDLER_POLL: &str = "poll";
/// Set by Lambda: when present, the handler runs through `lambda_http`.
pub const LAMBDA_RUNTIME_API: &str = "AWS_LAMBDA_RUNTIME_API";

/// Every variable the receiver reads, for docs and tests (Terraform sets the AWS ones).
pub const ALL: [&str; 27] = [
    DATA_DIR,
    LISTEN,
    READ_TIMEOUT,
    LOG,
    METRICS,
    METRICS_LISTEN,
    PUBLIC_URL,
    BACKEND,
    INTEGRATIONS_TABLE,
    LEDGER_TABLE,
    QUEUE_URL,
    MASTER_KEY_SECRET_ID,
    CLAIM_LEASE,
    R2_ENDPOINT_URL,
    R2_SECRET_ACCESS_KEY,
    POLL_EVERY,
    WORKER_BUNDLE_DIR,
    MAX_CONNECTIONS,
    MAX_BODY_BUFFER_MIB,
    LAMBDA_HANDLER,
    CLOUDFLARE_API_TOKEN,
    CLOUDFLARE_API_BASE_URL,
    MASTER_KEY_KMS_ID,
    SEALING_KEY_KMS_ID,
    JOB_SCHEMA,
    RATE_WINDOW,
    USAGE_FLUSH,
];

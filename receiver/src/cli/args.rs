//! The command line's shape: every command, flag and environment variable, parsed by clap.

use crate::env;
use crate::wiring::BackendArgs;
use clap::{Args, Parser, Subcommand, ValueEnum};
use relay_protocol::integration::{NewIntegration, Overwrites, Scope, DEFAULT_MAX_OBJECT_BYTES};
use relay_protocol::{Mode, Provider};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "bucket-relay",
    version,
    about = "Turns object-storage events into exactly one ingest job each."
)]
pub struct Cli {
    /// Folder of the embedded store, ledger, queue and master key.
    #[arg(long, global = true, env = env::DATA_DIR, default_value = ".relay")]
    pub data_dir: PathBuf,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the receiver over HTTP (or on Lambda, when AWS_LAMBDA_RUNTIME_API is set).
    Serve(ServeArgs),
    /// Create, inspect and change integrations (one per customer bucket).
    #[command(subcommand)]
    Integrations(IntegrationsCommand),
    /// The embedded ingest queue.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// One poll tick: list each active poll-mode integration's bucket and enqueue what is new.
    Poll(PollArgs),
    /// Turn every object already in an integration's bucket into a job, once (any mode).
    Backfill(BackfillArgs),
    /// Whether every object in the bucket became a job: the missing ones named, and with
    /// --repair made. Exit code 0 when none is missing, 3 when some are.
    Reconcile(ReconcileArgs),
    /// One screen: every integration's mode, state, last event and events of the last hour and
    /// day, the queues' depths, and the integrations refused or retried more than half the time.
    Status(StatusArgs),
    /// What the receiver did with events.
    #[command(subcommand)]
    Events(EventsCommand),
    /// The R2 worker, as a customer deploys it.
    #[command(subcommand)]
    Worker(WorkerCommand),
    /// Send dead-lettered events or jobs through again.
    #[command(subcommand)]
    Replay(ReplayCommand),
    /// The master key's versions: rotate, reseal, retire, and what depends on each.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Per master key version: the secrets, external ids and sealed R2 tokens that depend on it.
    Status,
    /// Add a new master key version, current for everything new; what was issued under the
    /// old one keeps working. With --grace, also rotate every integration's secret onto it
    /// (the replaced one verifying for that long) and print the new secrets.
    Rotate {
        #[arg(long)]
        grace: Option<humantime::Duration>,
        /// On AWS: the new version is held in KMS, this HMAC_256 key (id, ARN or alias)
        /// deriving secrets and external ids by GenerateMac. With --kms-seal-key.
        #[arg(long, env = env::MASTER_KEY_KMS_ID, requires = "kms_seal_key")]
        kms_mac_key: Option<String>,
        /// On AWS: the symmetric KMS key sealing R2 tokens (Encrypt / Decrypt) for the new
        /// version. With --kms-mac-key.
        #[arg(long, env = env::SEALING_KEY_KMS_ID, requires = "kms_mac_key")]
        kms_seal_key: Option<String>,
    },
    /// Seal every stored R2 token again under the current version (idempotent, resumable).
    Reseal {
        /// Count what would be resealed; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Issue S3 integrations' external ids again under the current version (the customer
    /// updates the read role's trust policy).
    ReissueExternalIds {
        /// Only this integration.
        #[arg(long)]
        integration: Option<String>,
    },
    /// Destroy a version's key. Refused while anything depends on it (see `keys status`),
    /// unless --force (after a compromise): then each integration's step is named.
    Retire {
        /// The version: `v1` or `1`.
        #[arg(value_parser = parse_key_version)]
        version: u32,
        #[arg(long)]
        force: bool,
    },
}

/// A key version as `keys status` prints it (`v2`) or bare (`2`).
fn parse_key_version(text: &str) -> Result<u32, String> {
    text.strip_prefix('v')
        .unwrap_or(text)
        .parse::<u32>()
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| format!("{text:?} is not a key version (v1, v2, …)"))
}

#[derive(Subcommand, Debug)]
pub enum WorkerCommand {
    /// Write a folder an R2 customer deploys with Node.js alone: wrangler.toml filled in for
    /// the integration, the prebuilt worker bundle, and a README with the ordered commands. No
    /// secret is written.
    Package(PackageArgs),
}

#[derive(Args, Debug)]
pub struct PackageArgs {
    pub id: String,
    /// The folder to write (created; files in it are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// The prebuilt bundle (`index.js`, `index_bg.wasm`, `worker/shim.mjs`): the worker's
    /// release build, `worker/build` in a checkout after `scripts/test` or
    /// `cd worker && worker-build --profile worker-release`.
    #[arg(long, env = env::WORKER_BUNDLE_DIR, default_value = "worker/build")]
    pub bundle: PathBuf,
    #[command(flatten)]
    pub public: PublicUrl,
}

#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// What became of one object: its job, or the last reason it made none.
    Why {
        #[arg(long)]
        integration: String,
        #[arg(long)]
        key: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ReplayCommand {
    /// Put the events on an S3 source's EventBridge dead-letter queue through the receiver
    /// again (same decision, ledger and queue); delete each once it is accepted, a duplicate
    /// or skipped.
    Eventbridge(ReplayEventBridgeArgs),
    /// Move the jobs on the ingest dead-letter queue back to the ingest queue.
    Ingest(ReplayIngestArgs),
}

#[derive(Args, Debug)]
pub struct ReplayEventBridgeArgs {
    /// The dead-letter queue's URL (the s3-source module's `dlq_url` output).
    #[arg(long)]
    pub dlq_url: String,
    #[arg(long)]
    pub integration: String,
    /// Read and decide, print what would happen, and leave every message where it is.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct ReplayIngestArgs {
    /// The ingest dead-letter queue's URL (the receiver module's `dlq_url` output). The jobs
    /// go to the ingest queue, `--queue-url` (RELAY_QUEUE_URL).
    #[arg(long)]
    pub dlq_url: String,
    /// Count the jobs waiting, move nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct TestArgs {
    pub id: String,
    /// The running receiver's base URL to send the test event to.
    #[arg(long)]
    pub receiver_url: Option<String>,
    /// Send the event as from this bucket (default: the integration's). Without
    /// --receiver-url, for an integration covering many buckets: check lookups in this bucket.
    #[arg(long)]
    pub bucket: Option<String>,
    /// Send the event as from this account (default: the integration's). Without
    /// --receiver-url, for an integration covering many buckets: check the read role in this
    /// account only (default: each account of the scope).
    #[arg(long)]
    pub account: Option<String>,
    /// Sign with the whsec_… secret read from stdin (the one the worker or the API destination
    /// has) instead of the integration's current one.
    #[arg(long, requires = "receiver_url")]
    pub secret_stdin: bool,
}

#[derive(Args, Debug)]
pub struct PollArgs {
    /// Only this integration.
    #[arg(long)]
    pub integration: Option<String>,
    /// Tick again after this long, until interrupted (`2m`); default: one tick.
    #[arg(long)]
    pub every: Option<humantime::Duration>,
    /// How far before the watermark a tick looks again: longer than your slowest multipart
    /// upload (S3 dates an object by its upload's start).
    #[arg(long, default_value = "15m")]
    pub overlap: humantime::Duration,
}

#[derive(Args, Debug)]
pub struct BackfillArgs {
    pub id: String,
    /// List only under this prefix (within the integration's own).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Only objects modified at or after this time (`2026-01-31T00:00:00Z` or `2026-01-31`).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// List and decide, and print what would become a job, without enqueueing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Start from the first key even if an interrupted backfill of the same scope left a place.
    #[arg(long)]
    pub restart: bool,
    /// Also make jobs of objects older than the integration's horizon that the ledger has no
    /// job for (left alone as `beyond_horizon` otherwise: each may have been a job once).
    #[arg(long)]
    pub past_horizon: bool,
    /// Write units a second the backfill may use in the ledger (on DynamoDB, a new job is 3).
    /// Default: half the table's capacity as DynamoDB reports it, so live events keep the rest.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=40_000_000))]
    pub write_units: Option<u64>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Show it again this often (`5s`; 1s to 1h) until interrupted.
    #[arg(long)]
    pub watch: Option<humantime::Duration>,
}

#[derive(Args, Debug)]
pub struct ReconcileArgs {
    pub id: String,
    /// List only under this prefix (within the integration's own).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Only objects modified at or after this time (`2026-01-31T00:00:00Z` or `2026-01-31`).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only objects modified before this time.
    #[arg(long, value_parser = parse_since)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Make the missing jobs (the same job ids: running it twice changes nothing).
    #[arg(long)]
    pub repair: bool,
    /// Count objects older than the integration's horizon that the ledger has no job for as
    /// missing (and with --repair make them jobs); otherwise they are counted as
    /// `beyond_horizon`, neither vouched for nor missing.
    #[arg(long)]
    pub past_horizon: bool,
    /// Write every missing object to this file, one JSON line each (mode 0600).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn parse_since(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc())
        .ok_or_else(|| format!("{text:?} is neither an RFC 3339 time nor a YYYY-MM-DD date"))
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[arg(long, env = env::LISTEN, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// How long a client has to send a request's head, and then its body (`30s`, `2m`).
    #[arg(long, env = env::READ_TIMEOUT, default_value = "30s")]
    pub read_timeout: humantime::Duration,
    /// Log filter (`info`, `debug`, `bucket_relay=debug,warn`…).
    #[arg(long, env = env::LOG, default_value = "info")]
    pub log: String,
    /// CloudWatch embedded metrics on stdout: `emf`, or `off`. Default: `emf` on Lambda only.
    #[arg(long, env = env::METRICS)]
    pub metrics: Option<Metrics>,
    /// Answer `GET /metrics` (Prometheus' text format) on this address, apart from `--listen`
    /// (`127.0.0.1:9464`). Unset: no metrics endpoint.
    #[arg(long, env = env::METRICS_LISTEN)]
    pub metrics_listen: Option<SocketAddr>,
    /// Also run a poll tick over the poll-mode integrations this often (`2m`), in-process.
    #[arg(long, env = env::POLL_EVERY)]
    pub poll_every: Option<humantime::Duration>,
    /// Connections served at once; more wait to be accepted (1 to 65536).
    #[arg(long, env = env::MAX_CONNECTIONS, default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections: u32,
    /// MiB of request bodies held at once across connections; a body that does not fit is
    /// answered 503 with Retry-After (6, one body at the 6 MB limit, to 65536).
    #[arg(long, env = env::MAX_BODY_BUFFER_MIB, default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(6..=65_536))]
    pub max_body_buffer_mib: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Metrics {
    Emf,
    Off,
}

/// Cloudflare's API, unless `CLOUDFLARE_API_BASE_URL` says otherwise.
pub(crate) const CLOUDFLARE_API_BASE: &str = "https://api.cloudflare.com/client/v4";

#[derive(Subcommand, Debug)]
pub enum IntegrationsCommand {
    /// Create an integration and print its secret and the customer's setup.
    Create(CreateArgs),
    List,
    Show {
        id: String,
    },
    /// Events answer `paused` (retry later) until `resume`.
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    /// `event`: events become jobs; `poll`: a poller lists the bucket and events are refused.
    SetMode {
        id: String,
        mode: Mode,
        /// Event mode: also list the bucket this often (`1h`; 5m to 7d) and make jobs of what
        /// no event brought, each logged and counted as `missed_by_events`. Needs a poller
        /// (`serve --poll-every`, or the scheduled poller on AWS). Without it: events only.
        #[arg(long)]
        safety_net: Option<humantime::Duration>,
    },
    /// Per key prefix: the parameters and output prefix each job carries (`ingest-job/v2`).
    #[command(subcommand)]
    Route(RouteCommand),
    /// How many days the ledger remembers each job of this integration (15 to 3650; 400
    /// unless set): a backfill or reconcile within it makes no second job.
    SetHorizon {
        id: String,
        days: u32,
    },
    /// What the integration admits: how many new jobs a minute (over it, events are answered
    /// `rate_limited` and sent again; listings wait), the largest object, and whether a key's
    /// later versions become jobs. A flag left out keeps its value.
    SetLimits(SetLimitsArgs),
    /// Make each job the ledger remembers expire at its making plus its integration's horizon.
    /// Run it once after upgrading a DynamoDB ledger from the 30-day releases (`set-horizon`
    /// does it for its integration); the embedded ledger needs nothing.
    Restamp,
    /// Events per outcome and reason over the last days, from the ledger.
    Usage {
        id: String,
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Issue a new secret; the old one keeps working for the grace period.
    RotateSecret(RotateArgs),
    /// Give the receiver read access to the bucket, for poll mode and backfill; for an S3
    /// integration covering many buckets, a role in each account, for object lookups.
    SetSource(SetSourceArgs),
    /// With --receiver-url: send a test event to a running receiver exactly as the event
    /// source would, and report each step. Without: check the read access (poll mode,
    /// backfill; a role in each account for object lookups).
    Test(TestArgs),
    /// Set up an R2 bucket's whole forwarding in the customer's Cloudflare account with their
    /// API token (CLOUDFLARE_API_TOKEN, or the first line of stdin): the queues, the worker
    /// with its secret, its consumers and the bucket's notification rules; then a test event
    /// through all of it. A second run changes nothing; a failed one resumes.
    ConnectR2(ConnectArgs),
    /// Remove what connect-r2 set up: the rules, the consumers, the worker; the queues only
    /// with --force.
    DisconnectR2(DisconnectArgs),
    Delete {
        id: String,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[arg(long)]
    pub provider: Provider,
    /// The bucket; for S3 also a name pattern (`logs-*`: `*` matches any run of characters).
    #[arg(long)]
    pub bucket: String,
    /// R2 account id or AWS account id; events naming another are rejected. S3: repeat for an
    /// integration covering several accounts.
    #[arg(long = "account")]
    pub accounts: Vec<String>,
    /// S3: a bucket name pattern left out; repeat for several.
    #[arg(long = "exclude-bucket")]
    pub exclude_buckets: Vec<String>,
    /// S3: an account left out; repeat for several.
    #[arg(long = "exclude-account")]
    pub exclude_accounts: Vec<String>,
    /// S3: the AWS Organization (`o-…`) whose central event bus feeds the integration.
    #[arg(long)]
    pub organization: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
    /// Only keys under this prefix become jobs.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Allowed key suffix, e.g. `.pdf`; repeat for several.
    #[arg(long = "suffix")]
    pub suffixes: Vec<String>,
    #[arg(long, default_value_t = DEFAULT_MAX_OBJECT_BYTES)]
    pub max_object_bytes: u64,
    /// Where the pipeline writes results into the bucket; never turned into jobs.
    #[arg(long)]
    pub output_prefix: Option<String>,
    /// The most new jobs a minute (see `set-limits`); no limit unless set.
    #[arg(long)]
    pub max_jobs_per_minute: Option<u32>,
    /// `new-job` (default): every version of a key becomes a job; `ignore`: only the first.
    #[arg(long, default_value = "new-job")]
    pub overwrites: Overwrites,
    #[arg(long, default_value = "event")]
    pub mode: Mode,
    /// R2: the customer's Cloudflare plan, `free` or `paid` (default). On Free a queue keeps a
    /// message 24 hours at most, so the setup creates the queues with that and caps the worker's
    /// retry wait at an hour; on Paid 14 days and 12 hours.
    #[arg(long)]
    pub cloudflare_plan: Option<relay_protocol::wire::CloudflarePlan>,
    /// R2: also write the worker folder the customer deploys with Node.js alone (as `worker
    /// package` does), from the bundle in `RELAY_WORKER_BUNDLE` (default `worker/build`).
    #[arg(long)]
    pub worker_out: Option<PathBuf>,
    #[command(flatten)]
    pub public: PublicUrl,
}

#[derive(Args, Debug)]
pub struct SetLimitsArgs {
    pub id: String,
    /// The most new jobs a minute, across every receiver (1 to 1000000), or `none`.
    #[arg(long)]
    pub max_jobs_per_minute: Option<JobsPerMinute>,
    /// Larger objects are skipped (`too_large`).
    #[arg(long)]
    pub max_object_bytes: Option<u64>,
    /// `new-job`: every version of a key becomes a job; `ignore`: only the first to arrive,
    /// while the ledger remembers it (later ones are skipped, `overwrite_ignored`).
    #[arg(long)]
    pub overwrites: Option<Overwrites>,
}

/// `--max-jobs-per-minute`: a number, or `none` for no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobsPerMinute(pub Option<u32>);

impl std::str::FromStr for JobsPerMinute {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text == "none" {
            return Ok(JobsPerMinute(None));
        }
        let limit: u32 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a number of jobs (or `none`)"))?;
        relay_protocol::admission::check_jobs_per_minute(limit)
            .map(|limit| JobsPerMinute(Some(limit)))
            .map_err(|e| e.to_string())
    }
}

#[derive(Args, Debug)]
pub struct SetSourceArgs {
    pub id: String,
    /// S3: the ARN of the customer's read role, assumed with the integration's external id.
    #[arg(
        long,
        conflicts_with_all = ["r2_access_key_id", "role_name"],
        required_unless_present_any = ["r2_access_key_id", "role_name"]
    )]
    pub role_arn: Option<String>,
    /// S3, an integration covering many buckets: the name of the read role every account has
    /// (org-source's `read_role`), assumed in the account of each event that needs a lookup.
    #[arg(long, conflicts_with = "r2_access_key_id")]
    pub role_name: Option<String>,
    /// R2: the access key id of an R2 API token (Object Read on the bucket).
    #[arg(long)]
    pub r2_access_key_id: Option<String>,
    /// R2: the token's secret access key. Prefer the environment variable: a flag is visible
    /// to other users in the process list.
    #[arg(long, env = env::R2_SECRET_ACCESS_KEY, hide_env_values = true)]
    pub r2_secret_access_key: Option<String>,
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    pub id: String,
    /// How long the previous secret keeps working (`24h`, `90m`, `7d`).
    #[arg(long, default_value = "24h", conflicts_with = "now")]
    pub grace: humantime::Duration,
    /// Invalidate the previous secret at once.
    #[arg(long)]
    pub now: bool,
    #[command(flatten)]
    pub public: PublicUrl,
}

#[derive(Subcommand, Debug)]
pub enum RouteCommand {
    /// Add a route, or replace the one with the same prefix: objects under PREFIX (ending with
    /// one of the suffixes, if given) carry these parameters and output prefix. The longest
    /// matching prefix wins.
    Add {
        id: String,
        #[arg(long)]
        prefix: String,
        #[arg(long = "suffix")]
        suffixes: Vec<String>,
        /// A parameter for the pipeline, `name=value` (repeatable).
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Where the pipeline writes this route's results (never turned into jobs).
        #[arg(long)]
        output_prefix: Option<String>,
    },
    Remove {
        id: String,
        #[arg(long)]
        prefix: String,
    },
    List {
        id: String,
    },
    /// The parameters of objects no route takes (their output prefix is the integration's).
    Default {
        id: String,
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, String)>,
    },
}

/// `name=value`.
fn parse_param(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not name=value"))
}

/// The customer's Cloudflare account, as `connect-r2` and `disconnect-r2` reach it.
#[derive(Args, Debug)]
pub struct CloudflareArgs {
    /// The Cloudflare account id (32 hex digits; the dashboard's Account ID).
    #[arg(long)]
    pub cloudflare_account: String,
    /// Cloudflare's API (the same variable wrangler reads; a local server in tests).
    #[arg(long, env = env::CLOUDFLARE_API_BASE_URL, default_value = CLOUDFLARE_API_BASE)]
    pub api_base: String,
    /// Send no write: make the reads and list the writes it would send (secrets redacted).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct ConnectArgs {
    pub id: String,
    #[command(flatten)]
    pub cloudflare: CloudflareArgs,
    /// The prebuilt bundle to upload (as for `worker package`).
    #[arg(long, env = env::WORKER_BUNDLE_DIR, default_value = "worker/build")]
    pub bundle: PathBuf,
    #[command(flatten)]
    pub public: PublicUrl,
    /// How long to wait for the receiver to record the test event.
    #[arg(long, default_value = "2m")]
    pub wait: humantime::Duration,
    /// Skip the test event.
    #[arg(long)]
    pub no_test_event: bool,
    /// Local tests only: a plain-http receiver on 127.0.0.1 (the worker is told
    /// ALLOW_INSECURE_RECEIVER); Cloudflare cannot reach one.
    #[arg(long)]
    pub allow_insecure_receiver: bool,
}

#[derive(Args, Debug)]
pub struct DisconnectArgs {
    pub id: String,
    #[command(flatten)]
    pub cloudflare: CloudflareArgs,
    /// Delete the queues too, and any message still in them.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct PublicUrl {
    /// The receiver's public base URL, for the customer setup.
    #[arg(long = "receiver-url", env = env::PUBLIC_URL, default_value = "http://127.0.0.1:8787")]
    pub url: String,
}

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// Every job on the embedded queue, oldest first.
    List,
}

impl ServeArgs {
    /// `serve`'s arguments from the environment alone: how Lambda starts the binary.
    pub fn parse_from_env() -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            args: ServeArgs,
        }
        Only::parse_from(["bucket-relay"]).args
    }
}

impl CreateArgs {
    /// The fields of the new integration, as given (checked by [`NewIntegration::build`]).
    pub fn fields(&self) -> NewIntegration {
        // One bucket in at most one account is the plain integration; anything wider a scope.
        let wide = self.bucket.contains('*')
            || self.accounts.len() > 1
            || !self.exclude_buckets.is_empty()
            || !self.exclude_accounts.is_empty()
            || self.organization.is_some();
        let scope = wide.then(|| Scope {
            buckets: vec![self.bucket.clone()],
            exclude_buckets: self.exclude_buckets.clone(),
            accounts: self.accounts.clone(),
            exclude_accounts: self.exclude_accounts.clone(),
            organization: self.organization.clone(),
        });
        NewIntegration {
            provider: self.provider,
            bucket: self.bucket.clone(),
            account: if wide {
                None
            } else {
                self.accounts.first().cloned()
            },
            scope,
            region: self.region.clone(),
            prefix: self.prefix.clone(),
            suffixes: self.suffixes.clone(),
            max_object_bytes: self.max_object_bytes,
            output_prefix: self.output_prefix.clone(),
            mode: self.mode,
            cloudflare_plan: self.cloudflare_plan,
            max_jobs_per_minute: self.max_jobs_per_minute,
            overwrites: self.overwrites,
        }
    }
}

/// The range a duration flag accepts. Outside it the command stops before doing anything, with
/// an error naming the flag and the range (exit 1): a zero interval would hammer the storage or
/// panic a timer, a huge one overflow the clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DurationRange {
    flag: &'static str,
    min: Duration,
    max: Duration,
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

const fn range(flag: &'static str, min_s: u64, max_s: u64) -> DurationRange {
    DurationRange {
        flag,
        min: Duration::from_secs(min_s),
        max: Duration::from_secs(max_s),
    }
}

/// `poll --every`, `serve --poll-every`: a tick lists a whole prefix.
pub(crate) const TICK_EVERY: [DurationRange; 2] =
    [range("--every", 1, DAY), range("--poll-every", 1, DAY)];
pub(crate) const OVERLAP: DurationRange = range("--overlap", 0, 7 * DAY);
pub(crate) const READ_TIMEOUT: DurationRange = range("--read-timeout", 1, 10 * MINUTE);
pub(crate) const GRACE: DurationRange = range("--grace", 0, 90 * DAY);
pub(crate) const CLAIM_LEASE: DurationRange = range("--claim-lease", 1, HOUR);
pub(crate) const WATCH: DurationRange = range("--watch", 1, HOUR);

impl DurationRange {
    /// `value`, if it is within the range.
    pub(crate) fn check(&self, value: Duration) -> Result<Duration, String> {
        if (self.min..=self.max).contains(&value) {
            return Ok(value);
        }
        let show = |d: Duration| humantime::format_duration(d).to_string();
        Err(format!(
            "{} {} is out of range: it must be between {} and {}",
            self.flag,
            show(value),
            show(self.min),
            show(self.max)
        ))
    }
}

impl Cli {
    /// Every duration flag of the command, held to its range.
    pub(crate) fn check_durations(&self) -> Result<(), String> {
        CLAIM_LEASE.check(*self.backend.claim_lease)?;
        match &self.command {
            Some(Command::Poll(args)) => {
                OVERLAP.check(*args.overlap)?;
                if let Some(every) = args.every {
                    TICK_EVERY[0].check(*every)?;
                }
            }
            Some(Command::Serve(args)) => args.check_durations()?,
            Some(Command::Status(StatusArgs { watch: Some(every) })) => {
                WATCH.check(**every)?;
            }
            Some(Command::Integrations(IntegrationsCommand::RotateSecret(args))) if !args.now => {
                GRACE.check(*args.grace)?;
            }
            _ => {}
        }
        Ok(())
    }
}

impl ServeArgs {
    /// `serve`'s duration flags held to their ranges (also on Lambda, from the environment).
    pub(crate) fn check_durations(&self) -> Result<(), String> {
        READ_TIMEOUT.check(*self.read_timeout)?;
        if let Some(every) = self.poll_every {
            TICK_EVERY[1].check(*every)?;
        }
        Ok(())
    }
}

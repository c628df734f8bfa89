//! The command line's shape: every command, flag and environment variable, parsed by clap.

use crate::env;
use crate::wiring::BackendArgs;
use clap::{Args, Parser, Subcommand, ValueEnum};
use relay_protocol::integration::{NewIntegration, DEFAULT_MAX_OBJECT_BYTES};
use relay_protocol::{Mode, Provider};
use std::net::SocketAddr;
use std::path::PathBuf;

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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Metrics {
    Emf,
    Off,
}

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
    SetMode {
        id: String,
        mode: Mode,
    },
    /// Events per outcome and reason over the last days, from the ledger.
    Usage {
        id: String,
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Issue a new secret; the old one keeps working for the grace period.
    RotateSecret(RotateArgs),
    Delete {
        id: String,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[arg(long)]
    pub provider: Provider,
    #[arg(long)]
    pub bucket: String,
    /// R2 account id or AWS account id; events naming another are rejected.
    #[arg(long)]
    pub account: Option<String>,
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
    #[arg(long, default_value = "event")]
    pub mode: Mode,
    #[command(flatten)]
    pub public: PublicUrl,
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
        NewIntegration {
            provider: self.provider,
            bucket: self.bucket.clone(),
            account: self.account.clone(),
            region: self.region.clone(),
            prefix: self.prefix.clone(),
            suffixes: self.suffixes.clone(),
            max_object_bytes: self.max_object_bytes,
            output_prefix: self.output_prefix.clone(),
            mode: self.mode,
        }
    }
}

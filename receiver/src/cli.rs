//! The `bucket-relay` command line: `serve`, `integrations …` and `jobs list`.
//!
//! Every command takes `--data-dir` (env `RELAY_DATA_DIR`) and `--json`. Results go to stdout,
//! errors to stderr with exit code 1. `create` and `rotate-secret` are the only commands that
//! ever show a secret.

use crate::backend::{Store, UsageCounts};
use crate::handler::Relay;
use crate::master_key::MasterKey;
use crate::wiring::{wire, BackendArgs, Wired};
use crate::{env, setup, telemetry};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use rand::distr::{Alphanumeric, SampleString};
use relay_protocol::integration::{DEFAULT_MAX_OBJECT_BYTES, ID_PREFIX};
use relay_protocol::{secret, Integration, Mode, Provider, Reason, Status};
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

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

/// A command's failure, printed on stderr.
type CliResult = Result<(), String>;

pub fn run(cli: Cli) -> ExitCode {
    let lambda = std::env::var_os(env::LAMBDA_RUNTIME_API).is_some();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async {
        let (serve_args, command) = match cli.command {
            Some(Command::Serve(args)) => (Some(args), None),
            None if lambda => (Some(ServeArgs::parse_from_env()), None),
            None => return Err("no command given; see `bucket-relay --help`".into()),
            other => (None, other),
        };
        if let Some(args) = &serve_args {
            telemetry::init_logging(&args.log, lambda);
        }
        let wired = wire(&cli.data_dir, &cli.backend).await?;
        match (serve_args, command) {
            (Some(args), _) => serve(wired, &cli.data_dir, args, lambda).await,
            (None, Some(Command::Integrations(command))) => {
                integrations(wired, cli.json, command).await
            }
            (None, Some(Command::Jobs(JobsCommand::List))) => jobs_list(wired, cli.json).await,
            (None, None | Some(Command::Serve(_))) => unreachable!("serve was taken above"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(message),
    }
}

fn fail(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

impl ServeArgs {
    /// `serve`'s arguments from the environment alone: how Lambda starts the binary.
    fn parse_from_env() -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            args: ServeArgs,
        }
        Only::parse_from(["bucket-relay"]).args
    }
}

async fn serve(wired: Wired, data_dir: &Path, args: ServeArgs, lambda: bool) -> CliResult {
    let emit_metrics = args.metrics.map_or(lambda, |m| m == Metrics::Emf);
    let relay = Arc::new(Relay::new(wired.backends, wired.keys, emit_metrics));
    if lambda {
        crate::lambda::run(relay).await.map_err(|e| e.to_string())
    } else {
        tracing::info!(message = "starting", data_dir = %data_dir.display(), listen = %args.listen);
        crate::serve::run(relay, args.listen, *args.read_timeout)
            .await
            .map_err(|e| format!("cannot serve on {}: {e}", args.listen))
    }
}

async fn integrations(wired: Wired, json: bool, command: IntegrationsCommand) -> CliResult {
    let store = wired.backends.store.as_ref();
    let master_key = || async { wired.keys.master_key().await.map_err(|e| e.to_string()) };
    let now = Utc::now();
    match command {
        IntegrationsCommand::Create(args) => {
            let integration = new_integration(args_to_fields(&args)?, now);
            // The key first, the write last: a failure leaves nothing behind that nobody has
            // the secret of.
            let key = master_key().await?;
            store.put(&integration).await.map_err(|e| e.to_string())?;
            print_secret("Created", &integration, &key, &args.public.url, json);
        }
        IntegrationsCommand::List => {
            let all = store.list().await.map_err(|e| e.to_string())?;
            if json {
                println!("{}", pretty(&all));
            } else if all.is_empty() {
                println!(
                    "No integrations yet: create one with `bucket-relay integrations create`."
                );
            } else {
                print_table(&all);
            }
        }
        IntegrationsCommand::Show { id } => {
            let integration = load(store, &id).await?;
            if json {
                println!("{}", pretty(&integration));
            } else {
                print_details(&integration);
            }
        }
        IntegrationsCommand::Pause { id } => {
            update(store, &id, json, now, |i| i.status = Status::Paused).await?
        }
        IntegrationsCommand::Resume { id } => {
            update(store, &id, json, now, |i| i.status = Status::Active).await?
        }
        IntegrationsCommand::SetMode { id, mode } => {
            update(store, &id, json, now, |i| i.mode = mode).await?
        }
        IntegrationsCommand::Usage { id, days } => {
            load(store, &id).await?;
            let until = now.date_naive();
            let since = chrono::Duration::try_days(i64::from(days.max(1)) - 1)
                .and_then(|span| until.checked_sub_signed(span))
                .ok_or_else(|| format!("--days {days} reaches before the calendar's start"))?;
            let per_day = wired
                .backends
                .usage
                .usage(&id, since, until)
                .await
                .map_err(|e| e.to_string())?;
            print_usage(&id, since, until, &per_day, json);
        }
        IntegrationsCommand::RotateSecret(args) => {
            let mut integration = load(store, &args.id).await?;
            let grace_until = if args.now {
                None
            } else {
                let until = chrono::Duration::from_std(*args.grace)
                    .ok()
                    .and_then(|grace| now.checked_add_signed(grace))
                    .ok_or_else(|| format!("--grace {} is too long", args.grace))?;
                Some(until)
            };
            integration
                .rotate(now, grace_until)
                .map_err(|_| format!("integration {} has used every secret generation", args.id))?;
            let key = master_key().await?;
            store.put(&integration).await.map_err(|e| e.to_string())?;
            print_secret(
                "Rotated the secret of",
                &integration,
                &key,
                &args.public.url,
                json,
            );
        }
        IntegrationsCommand::Delete { id } => {
            if !store.delete(&id).await.map_err(|e| e.to_string())? {
                return Err(format!("no integration {id}"));
            }
            if json {
                println!("{}", json!({"deleted": id}));
            } else {
                println!("Deleted integration {id}.");
            }
        }
    }
    Ok(())
}

/// The create flags, checked: what an integration is made from.
struct Fields {
    provider: Provider,
    bucket: String,
    account: Option<String>,
    region: Option<String>,
    prefix: Option<String>,
    suffixes: Vec<String>,
    max_object_bytes: u64,
    output_prefix: Option<String>,
    mode: Mode,
}

fn args_to_fields(args: &CreateArgs) -> Result<Fields, String> {
    let non_empty = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
    if args.bucket.trim().is_empty() {
        return Err("--bucket must not be empty".into());
    }
    if args.suffixes.iter().any(|s| s.is_empty()) {
        return Err("--suffix must not be empty".into());
    }
    if args.max_object_bytes == 0 {
        return Err("--max-object-bytes must be at least 1".into());
    }
    Ok(Fields {
        provider: args.provider,
        bucket: args.bucket.clone(),
        account: non_empty(&args.account),
        region: non_empty(&args.region),
        prefix: non_empty(&args.prefix),
        suffixes: args.suffixes.clone(),
        max_object_bytes: args.max_object_bytes,
        output_prefix: non_empty(&args.output_prefix),
        mode: args.mode,
    })
}

fn new_integration(fields: Fields, now: DateTime<Utc>) -> Integration {
    let random = Alphanumeric
        .sample_string(&mut rand::rng(), 20)
        .to_lowercase();
    Integration {
        id: format!("{ID_PREFIX}{random}"),
        provider: fields.provider,
        bucket: fields.bucket,
        account: fields.account,
        region: fields.region,
        mode: fields.mode,
        status: Status::Active,
        prefix: fields.prefix,
        suffixes: fields.suffixes,
        max_object_bytes: fields.max_object_bytes,
        output_prefix: fields.output_prefix,
        generation: 1,
        previous_generations: vec![],
        created_at: now,
        updated_at: now,
    }
}

async fn load(store: &dyn Store, id: &str) -> Result<Integration, String> {
    store
        .get(id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no integration {id}"))
}

async fn update(
    store: &dyn Store,
    id: &str,
    json: bool,
    now: DateTime<Utc>,
    change: impl FnOnce(&mut Integration),
) -> CliResult {
    let mut integration = load(store, id).await?;
    change(&mut integration);
    integration.updated_at = now;
    store.put(&integration).await.map_err(|e| e.to_string())?;
    if json {
        println!("{}", pretty(&integration));
    } else {
        println!(
            "Integration {} is now {}, mode {}.",
            integration.id, integration.status, integration.mode
        );
    }
    Ok(())
}

fn print_secret(verb: &str, integration: &Integration, key: &MasterKey, url: &str, json: bool) {
    let secret =
        secret::event_source_secret(key.as_bytes(), &integration.id, integration.generation);
    let instructions = setup::instructions(integration, &secret, url);
    if json {
        let doc = json!({
            "id": integration.id,
            "secret": secret,
            "events_url": setup::events_url(url, &integration.id),
            "integration": integration,
            "setup": instructions,
            "wrangler_vars": (integration.provider == Provider::R2)
                .then(|| setup::wrangler_vars(integration, url)),
            "notification_rules": (integration.provider == Provider::R2)
                .then(|| setup::notification_rules(integration)),
            "terraform": (integration.provider == Provider::S3)
                .then(|| setup::s3_source_module(integration, url)),
        });
        println!("{}", pretty(&doc));
        return;
    }
    println!(
        "{verb} integration {} ({} bucket {}).\n",
        integration.id, integration.provider, integration.bucket
    );
    println!(
        "Event source secret (shown only now; store it on the customer's side):\n\n  {secret}\n"
    );
    for grace in &integration.previous_generations {
        println!(
            "The secret of generation {} keeps working until {}.",
            grace.generation,
            grace.valid_until.to_rfc3339()
        );
    }
    if !integration.previous_generations.is_empty() {
        println!();
    }
    print!("{instructions}");
}

fn print_table(all: &[Integration]) {
    println!(
        "{:<26} {:<8} {:<24} {:<6} {:<7} {:>4}  FILTERS",
        "ID", "PROVIDER", "BUCKET", "MODE", "STATUS", "GEN"
    );
    for i in all {
        println!(
            "{:<26} {:<8} {:<24} {:<6} {:<7} {:>4}  {}",
            i.id,
            i.provider,
            i.bucket,
            i.mode,
            i.status,
            i.generation,
            filters(i)
        );
    }
}

fn filters(i: &Integration) -> String {
    let mut parts = Vec::new();
    if let Some(prefix) = &i.prefix {
        parts.push(format!("prefix={prefix}"));
    }
    if !i.suffixes.is_empty() {
        parts.push(format!("suffix={}", i.suffixes.join(",")));
    }
    if let Some(output) = &i.output_prefix {
        parts.push(format!("output={output}"));
    }
    if i.max_object_bytes != DEFAULT_MAX_OBJECT_BYTES {
        parts.push(format!("max={}", i.max_object_bytes));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

fn print_details(i: &Integration) {
    let none = || "-".to_owned();
    let rows = [
        ("id", i.id.clone()),
        ("provider", i.provider.to_string()),
        ("bucket", i.bucket.clone()),
        ("account", i.account.clone().unwrap_or_else(none)),
        ("region", i.region.clone().unwrap_or_else(none)),
        ("mode", i.mode.to_string()),
        ("status", i.status.to_string()),
        ("prefix", i.prefix.clone().unwrap_or_else(none)),
        (
            "suffixes",
            if i.suffixes.is_empty() {
                none()
            } else {
                i.suffixes.join(", ")
            },
        ),
        ("max_object_bytes", i.max_object_bytes.to_string()),
        (
            "output_prefix",
            i.output_prefix.clone().unwrap_or_else(none),
        ),
        ("generation", i.generation.to_string()),
        (
            "previous_generations",
            if i.previous_generations.is_empty() {
                none()
            } else {
                i.previous_generations
                    .iter()
                    .map(|g| format!("{} until {}", g.generation, g.valid_until.to_rfc3339()))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
        ("created_at", i.created_at.to_rfc3339()),
        ("updated_at", i.updated_at.to_rfc3339()),
    ];
    for (name, value) in rows {
        println!("{name:<21} {value}");
    }
}

async fn jobs_list(wired: Wired, json: bool) -> CliResult {
    let Some(db) = wired.embedded else {
        return Err(
            "jobs list reads the embedded queue; with --backend aws the jobs are on the SQS \
             queue (aws sqs receive-message --queue-url …)"
                .into(),
        );
    };
    let jobs = db.jobs().await.map_err(|e| e.to_string())?;
    if json {
        println!("{}", pretty(&jobs));
        return Ok(());
    }
    if jobs.is_empty() {
        println!("No jobs on the embedded queue.");
        return Ok(());
    }
    println!(
        "{:<32} {:<26} {:<20} {:>10}  KEY",
        "JOB_ID", "INTEGRATION", "BUCKET", "SIZE"
    );
    for job in &jobs {
        let size = job.size.map_or_else(|| "-".to_owned(), |s| s.to_string());
        println!(
            "{:<32} {:<26} {:<20} {:>10}  {}",
            job.job_id, job.integration_id, job.bucket, size, job.key
        );
    }
    Ok(())
}

fn print_usage(
    id: &str,
    since: chrono::NaiveDate,
    until: chrono::NaiveDate,
    per_day: &std::collections::BTreeMap<chrono::NaiveDate, UsageCounts>,
    json: bool,
) {
    let mut totals = UsageCounts::new();
    for counts in per_day.values() {
        for (key, count) in counts {
            *totals.entry(*key).or_default() += count;
        }
    }
    if json {
        let doc = json!({
            "integration_id": id,
            "since": since.to_string(),
            "until": until.to_string(),
            "totals": totals,
            "days": per_day.iter().map(|(d, c)| (d.to_string(), c)).collect::<std::collections::BTreeMap<_, _>>(),
        });
        println!("{}", pretty(&doc));
        return;
    }
    println!("Events of {id} from {since} to {until} (UTC):\n");
    if totals.is_empty() {
        println!("  none");
        return;
    }
    println!("  {:<12} {:<20} {:>10}", "OUTCOME", "REASON", "EVENTS");
    for (key, count) in &totals {
        let reason = key.reason.map_or("-", Reason::as_str);
        println!("  {:<12} {reason:<20} {count:>10}", key.outcome);
    }
}

fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("CLI output serializes")
}

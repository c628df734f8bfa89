//! Which backends a command uses: the embedded default, or AWS.
//!
//! `--backend embedded` (the default) keeps everything in `--data-dir`: `relay.db` (SQLite) and
//! `master.key`. `--backend aws` uses DynamoDB for integrations and the ledger, SQS for jobs and
//! Secrets Manager for the master key; each name comes from a flag or its environment variable
//! (see [`crate::env`]), and the AWS SDK's own variables (`AWS_REGION`, `AWS_ENDPOINT_URL`, …)
//! are honoured, so a local emulator works the same way.

use crate::backend::aws::{AwsConfig, Purpose};
use crate::backend::bucket::Buckets;
use crate::backend::claiming::Claiming;
use crate::backend::dynamodb::{DynamoLedger, DynamoStore};
use crate::backend::kms::KmsKeys;
use crate::backend::lookup::HeadObjects;
use crate::backend::secretsmanager::SecretsManagerKey;
#[cfg(feature = "embedded")]
use crate::backend::sqlite::Sqlite;
use crate::backend::sqs::SqsQueue;
use crate::backend::usage_buffer::{BufferedUsage, USAGE_FLUSH_EVERY};
use crate::backend::{Backends, MasterKeySource, MAX_REQUEST_TIME, SQS_FIFO_DEDUP_WINDOW};
use crate::env;
use clap::{Args, ValueEnum};
use relay_protocol::job::JobSchema;
use std::path::Path;
use std::sync::Arc;

#[cfg(feature = "embedded")]
mod embedded;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// One local folder, no services.
    Embedded,
    /// DynamoDB, SQS and Secrets Manager.
    Aws,
}

#[derive(Args, Clone, Debug)]
pub struct BackendArgs {
    /// Where integrations, the ledger, jobs and the master key live.
    #[arg(long, global = true, env = env::BACKEND, default_value = "embedded")]
    pub backend: BackendKind,
    /// DynamoDB table of integrations (key `id`), with --backend aws.
    #[arg(long, global = true, env = env::INTEGRATIONS_TABLE)]
    pub integrations_table: Option<String>,
    /// DynamoDB table of the processed-objects ledger (key `job_id`, TTL `expires_at`).
    #[arg(long, global = true, env = env::LEDGER_TABLE)]
    pub ledger_table: Option<String>,
    /// SQS ingest queue URL (a `.fifo` URL gets group and deduplication ids).
    #[arg(long, global = true, env = env::QUEUE_URL)]
    pub queue_url: Option<String>,
    /// Secrets Manager secret id or ARN holding the master key (hex).
    #[arg(long, global = true, env = env::MASTER_KEY_SECRET_ID)]
    pub master_key_secret: Option<String>,
    /// How long a claim left pending by a crash blocks redeliveries (with --backend aws). Keep
    /// the default: it must outlast the Lambda timeout and end inside SQS's 5-minute FIFO
    /// deduplication window; the fault tests shorten it to see a lapsed claim re-taken.
    #[arg(long, global = true, env = env::CLAIM_LEASE, default_value = "4m")]
    pub claim_lease: humantime::Duration,
    /// The schema jobs are written in: v2 (with their route), or v1 while the pipeline
    /// upgrades.
    #[arg(long, global = true, env = env::JOB_SCHEMA, default_value = "v2")]
    pub job_schema: JobSchema,
    /// How long the "minute" of `--max-jobs-per-minute` lasts. Keep the default; the tests
    /// shorten it to see an hour of a limit in a minute, as they shorten the claim lease.
    #[arg(long, global = true, env = env::RATE_WINDOW, default_value = "1m")]
    pub rate_window: humantime::Duration,
    /// How long usage counts wait in memory before they are written, with --backend aws (0s to
    /// 60s; 0s writes each request's). One write per process per interval instead of one per
    /// request; `status` in another process sees a count up to that late.
    #[arg(long, global = true, env = env::USAGE_FLUSH,
          default_value_t = USAGE_FLUSH_EVERY.into())]
    pub usage_flush: humantime::Duration,
}

impl BackendArgs {
    fn usage_flush(&self) -> anyhow::Result<std::time::Duration> {
        let every: std::time::Duration = *self.usage_flush;
        if every > std::time::Duration::from_secs(60) {
            anyhow::bail!("{} must be 0s to 60s", env::USAGE_FLUSH);
        }
        Ok(every)
    }

    fn rate_window(&self) -> anyhow::Result<chrono::Duration> {
        let window = chrono::Duration::from_std(*self.rate_window)
            .map_err(|_| anyhow::anyhow!("{} is too long", env::RATE_WINDOW))?;
        if window < chrono::Duration::milliseconds(100) || window > chrono::Duration::hours(1) {
            anyhow::bail!("{} must be 100ms to 1h", env::RATE_WINDOW);
        }
        Ok(window)
    }
}

/// Everything one process works with, built once here: the backends, the master key, the
/// clients for customers' buckets, and the embedded database when that is what the backends are.
pub(crate) struct Wired {
    pub(crate) backends: Backends,
    pub(crate) keys: Arc<dyn MasterKeySource>,
    /// The process's AWS configuration, for the clients made per use (a dead-letter queue).
    pub(crate) aws: Arc<AwsConfig>,
    /// Listings of customers' buckets (poll, backfill, `integrations test`).
    pub(crate) buckets: Arc<Buckets>,
    /// Object lookups in customers' buckets (the handler, replays, `integrations test`).
    pub(crate) lookups: Arc<HeadObjects>,
    #[cfg(feature = "embedded")]
    pub(crate) embedded: Option<Sqlite>,
    /// The usage counts waiting to be written (with the AWS backends): flushed when the process
    /// ends.
    pub(crate) usage_buffer: Option<Arc<BufferedUsage>>,
}

/// The backends of one process, and the embedded database when that is what they are.
struct Chosen {
    backends: Backends,
    keys: Arc<dyn MasterKeySource>,
    #[cfg(feature = "embedded")]
    embedded: Option<Sqlite>,
    usage_buffer: Option<Arc<BufferedUsage>>,
}

pub(crate) async fn wire(data_dir: &Path, args: &BackendArgs) -> anyhow::Result<Wired> {
    let aws = Arc::new(AwsConfig::default());
    let chosen = choose(data_dir, args, &aws).await?;
    Ok(Wired {
        backends: chosen.backends,
        keys: chosen.keys,
        buckets: Arc::new(Buckets::new(Arc::clone(&aws))),
        lookups: Arc::new(HeadObjects::new(Arc::clone(&aws))),
        aws,
        #[cfg(feature = "embedded")]
        embedded: chosen.embedded,
        usage_buffer: chosen.usage_buffer,
    })
}

async fn choose(data_dir: &Path, args: &BackendArgs, aws: &AwsConfig) -> anyhow::Result<Chosen> {
    match args.backend {
        #[cfg(feature = "embedded")]
        BackendKind::Embedded => embedded::wire(data_dir, args.job_schema, args.rate_window()?),
        #[cfg(not(feature = "embedded"))]
        BackendKind::Embedded => Err(anyhow::anyhow!(
            "this build has no embedded backend for {} (it was built without the `embedded` \
             feature, as the Lambda package is): use --backend aws",
            data_dir.display()
        )),
        BackendKind::Aws => aws_backends(args, aws).await,
    }
}

async fn aws_backends(args: &BackendArgs, aws: &AwsConfig) -> anyhow::Result<Chosen> {
    let required = [
        (&args.integrations_table, env::INTEGRATIONS_TABLE),
        (&args.ledger_table, env::LEDGER_TABLE),
        (&args.queue_url, env::QUEUE_URL),
        (&args.master_key_secret, env::MASTER_KEY_SECRET_ID),
    ];
    let missing: Vec<&str> = required
        .iter()
        .filter(|(value, _)| value.as_deref().is_none_or(str::is_empty))
        .map(|(_, name)| *name)
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "--backend aws needs {} (or the matching flags)",
            missing.join(", ")
        );
    }
    let config = aws.for_purpose(Purpose::Backends).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let name = |value: &Option<String>| value.clone().unwrap_or_default();
    let lease = chrono::Duration::from_std(*args.claim_lease)
        .map_err(|_| anyhow::anyhow!("{} is too long", env::CLAIM_LEASE))?;
    if !(MAX_REQUEST_TIME < lease && lease < SQS_FIFO_DEDUP_WINDOW) {
        crate::events::ClaimLeaseOutOfRange {
            lease_s: lease.num_seconds(),
            detail:
                "a live request's claim may be taken over, or a re-sent job pass FIFO deduplication",
        }
        .emit();
    }
    let ledger =
        Arc::new(DynamoLedger::new(dynamodb.clone(), name(&args.ledger_table)).with_lease(lease));
    let queue = Arc::new(
        SqsQueue::new(aws_sdk_sqs::Client::new(&config), name(&args.queue_url))
            .with_job_schema(args.job_schema),
    );
    let usage = Arc::new(BufferedUsage::new(ledger.clone(), args.usage_flush()?));
    let intake = Claiming::new(ledger.clone(), queue.clone(), usage.clone(), ledger.clone())
        .with_rate_window(args.rate_window()?);
    let intake = if queue.keeps_order() {
        intake.in_order()
    } else {
        intake
    };
    Ok(Chosen {
        backends: Backends {
            store: Arc::new(DynamoStore::new(dynamodb, name(&args.integrations_table))),
            intake: Arc::new(intake),
            usage: usage.clone(),
            cursors: ledger.clone(),
            history: ledger.clone(),
            records: ledger,
            backlog: queue,
        },
        keys: Arc::new(
            SecretsManagerKey::new(
                aws_sdk_secretsmanager::Client::new(&config),
                name(&args.master_key_secret),
            )
            .with_kms(Arc::new(KmsKeys::new(aws_sdk_kms::Client::new(&config)))),
        ),
        #[cfg(feature = "embedded")]
        embedded: None,
        usage_buffer: Some(usage),
    })
}

//! Which backends a command uses: the embedded default, or AWS.
//!
//! `--backend embedded` (the default) keeps everything in `--data-dir`: `relay.db` (SQLite) and
//! `master.key`. `--backend aws` uses DynamoDB for integrations and the ledger, SQS for jobs and
//! Secrets Manager for the master key; each name comes from a flag or its environment variable
//! (see [`crate::env`]), and the AWS SDK's own variables (`AWS_REGION`, `AWS_ENDPOINT_URL`, …)
//! are honoured, so a local emulator works the same way.

use crate::backend::claiming::Claiming;
use crate::backend::dynamodb::{DynamoLedger, DynamoStore};
use crate::backend::secretsmanager::SecretsManagerKey;
#[cfg(feature = "embedded")]
use crate::backend::sqlite::Sqlite;
use crate::backend::sqs::SqsQueue;
use crate::backend::{Backends, MasterKeySource, MAX_REQUEST_TIME, SQS_FIFO_DEDUP_WINDOW};
use crate::env;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use clap::{Args, ValueEnum};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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
}

/// The backends of one process, and the embedded database when that is what they are.
pub(crate) struct Wired {
    pub backends: Backends,
    pub keys: Arc<dyn MasterKeySource>,
    #[cfg(feature = "embedded")]
    pub embedded: Option<Sqlite>,
}

pub(crate) async fn wire(data_dir: &Path, args: &BackendArgs) -> anyhow::Result<Wired> {
    match args.backend {
        #[cfg(feature = "embedded")]
        BackendKind::Embedded => embedded::wire(data_dir),
        #[cfg(not(feature = "embedded"))]
        BackendKind::Embedded => Err(anyhow::anyhow!(
            "this build has no embedded backend for {} (it was built without the `embedded` \
             feature, as the Lambda package is): use --backend aws",
            data_dir.display()
        )),
        BackendKind::Aws => aws(args).await,
    }
}

/// The AWS SDK's configuration from the environment, with the receiver's timeouts and retries.
pub(crate) async fn aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .load()
        .await
}

async fn aws(args: &BackendArgs) -> anyhow::Result<Wired> {
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
    let config = aws_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let name = |value: &Option<String>| value.clone().unwrap_or_default();
    let lease = chrono::Duration::from_std(*args.claim_lease)
        .map_err(|_| anyhow::anyhow!("{} is too long", env::CLAIM_LEASE))?;
    if !(MAX_REQUEST_TIME < lease && lease < SQS_FIFO_DEDUP_WINDOW) {
        tracing::warn!(
            message = "claim_lease_out_of_range",
            lease_s = lease.num_seconds(),
            detail = "a live request's claim may be taken over, or a re-sent job pass FIFO deduplication"
        );
    }
    let ledger =
        Arc::new(DynamoLedger::new(dynamodb.clone(), name(&args.ledger_table)).with_lease(lease));
    let queue = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(&config),
        name(&args.queue_url),
    ));
    Ok(Wired {
        backends: Backends {
            store: Arc::new(DynamoStore::new(dynamodb, name(&args.integrations_table))),
            intake: Arc::new(Claiming::new(
                ledger.clone(),
                queue,
                ledger.clone(),
                ledger.clone(),
            )),
            usage: ledger.clone(),
            cursors: ledger.clone(),
            history: ledger,
        },
        keys: Arc::new(SecretsManagerKey::new(
            aws_sdk_secretsmanager::Client::new(&config),
            name(&args.master_key_secret),
        )),
        #[cfg(feature = "embedded")]
        embedded: None,
    })
}

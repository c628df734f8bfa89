//! What each command does against the backends; printing is left to [`super::print`].

use super::args::{CreateArgs, IntegrationsCommand, Metrics, RotateArgs, ServeArgs};
use super::{connection, listing, print};
use crate::backend::lookup::HeadObjects;
use crate::backend::{MasterKey, Store};
use crate::handler::Relay;
use crate::test_event::SendAs;
use crate::wiring::Wired;
use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString};
use relay_protocol::webhook::SigningKey;
use relay_protocol::Integration;
use relay_protocol::{Mode, Provider, Status};
use std::path::Path;
use std::sync::Arc;

/// A command's failure, printed on stderr.
pub type CliResult = Result<(), String>;

/// Runs the handler: on Lambda through `lambda_http`, elsewhere as an HTTP server.
pub async fn serve(wired: Wired, data_dir: &Path, args: ServeArgs, on_lambda: bool) -> CliResult {
    let emit_metrics = args.metrics.map_or(on_lambda, |m| m == Metrics::Emf);
    if on_lambda
        && std::env::var(crate::env::LAMBDA_HANDLER).as_deref()
            == Ok(crate::poll::LAMBDA_HANDLER_POLL)
    {
        let buckets = crate::backend::bucket::Buckets::from_env().await;
        let poller = crate::poll::Poller::new(&wired.backends, wired.keys, Arc::new(buckets));
        return crate::lambda::run_poller(Arc::new(poller))
            .await
            .map_err(|e| e.to_string());
    }
    if let (Some(every), false) = (args.poll_every, on_lambda) {
        listing::spawn_ticks(&wired, *every).await;
    }
    let relay = Arc::new(
        Relay::new(wired.backends, wired.keys, emit_metrics)
            .with_lookup(Arc::new(HeadObjects::new())),
    );
    if on_lambda {
        return crate::lambda::run(relay).await.map_err(|e| e.to_string());
    }
    #[cfg(feature = "server")]
    {
        tracing::info!(message = "starting", data_dir = %data_dir.display(), listen = %args.listen);
        crate::serve::run(relay, args.listen, *args.read_timeout)
            .await
            .map_err(|e| format!("cannot serve on {}: {e}", args.listen))
    }
    #[cfg(not(feature = "server"))]
    {
        let _ = (data_dir, relay);
        Err(format!(
            "this build serves only on Lambda (it was built without the `server` feature), \
             not on {}",
            args.listen
        ))
    }
}

pub async fn integrations(wired: Wired, json: bool, command: IntegrationsCommand) -> CliResult {
    let store = wired.backends.store.as_ref();
    let now = Utc::now();
    match command {
        IntegrationsCommand::Create(args) => create(&wired, &args, json, now).await,
        IntegrationsCommand::List => {
            let all = store.list().await.map_err(|e| e.to_string())?;
            print::print_list(&all, json);
            Ok(())
        }
        IntegrationsCommand::Show { id } => {
            let integration = load(store, &id).await?;
            // Only an S3 integration's external id needs the master key, and `show` works
            // without it: the operator may be looking because the key cannot be read.
            let external_id = match integration.provider {
                Provider::S3 => Some(master_key(&wired).await.map(|key| {
                    relay_protocol::secret::external_id(key.as_bytes(), &integration.id)
                })),
                Provider::R2 => None,
            };
            let last_seen = wired
                .backends
                .history
                .last_seen(&integration.id)
                .await
                .map_err(|e| e.to_string());
            print::print_show(&integration, external_id, &last_seen, json);
            Ok(())
        }
        IntegrationsCommand::SetSource(args) => listing::set_source(&wired, args, json).await,
        IntegrationsCommand::Test(args) => match &args.receiver_url {
            Some(url) => {
                let send_as = SendAs {
                    bucket: args.bucket.clone(),
                    account: args.account.clone(),
                    secret: args.secret_stdin.then(read_secret).transpose()?,
                };
                connection::test_event(&wired, &args.id, url, send_as, json).await
            }
            None => {
                listing::test(&wired, &args.id, args.account.as_deref(), args.bucket, json).await
            }
        },
        IntegrationsCommand::Pause { id } => update(store, &id, json, now, Status::Paused).await,
        IntegrationsCommand::Resume { id } => update(store, &id, json, now, Status::Active).await,
        IntegrationsCommand::SetMode { id, mode } => update(store, &id, json, now, mode).await,
        IntegrationsCommand::Usage { id, days } => usage(&wired, &id, days, json, now).await,
        IntegrationsCommand::RotateSecret(args) => rotate(&wired, &args, json, now).await,
        IntegrationsCommand::Delete { id } => {
            if !store.delete(&id).await.map_err(|e| e.to_string())? {
                return Err(format!("no integration {id}"));
            }
            print::print_deleted(&id, json);
            Ok(())
        }
    }
}

async fn create(wired: &Wired, args: &CreateArgs, json: bool, now: DateTime<Utc>) -> CliResult {
    let random = Alphanumeric.sample_string(&mut rand::rng(), 20);
    let integration = args
        .fields()
        .build(&random, now)
        .map_err(|e| e.to_string())?;
    // The key first, the write last: a failure leaves nothing behind that nobody has the
    // secret of.
    let key = master_key(wired).await?;
    let store = wired.backends.store.as_ref();
    store.put(&integration).await.map_err(|e| e.to_string())?;
    print::print_secret("Created", &integration, &key, &args.public.url, json);
    Ok(())
}

async fn rotate(wired: &Wired, args: &RotateArgs, json: bool, now: DateTime<Utc>) -> CliResult {
    let store = wired.backends.store.as_ref();
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
    let key = master_key(wired).await?;
    store.put(&integration).await.map_err(|e| e.to_string())?;
    let verb = "Rotated the secret of";
    print::print_secret(verb, &integration, &key, &args.public.url, json);
    Ok(())
}

async fn usage(wired: &Wired, id: &str, days: u32, json: bool, now: DateTime<Utc>) -> CliResult {
    load(wired.backends.store.as_ref(), id).await?;
    let until = now.date_naive();
    let since = chrono::Duration::try_days(i64::from(days.max(1)) - 1)
        .and_then(|span| until.checked_sub_signed(span))
        .ok_or_else(|| format!("--days {days} reaches before the calendar's start"))?;
    let per_day = wired
        .backends
        .usage
        .usage(id, since, until)
        .await
        .map_err(|e| e.to_string())?;
    print::print_usage(id, since, until, &per_day, json);
    Ok(())
}

/// `events why`: the history of one key.
pub async fn events_why(wired: Wired, integration: &str, key: &str, json: bool) -> CliResult {
    load(wired.backends.store.as_ref(), integration).await?;
    let history = wired
        .backends
        .history
        .object(integration, key)
        .await
        .map_err(|e| e.to_string())?;
    print::print_why(integration, key, history.as_ref(), json);
    Ok(())
}

pub async fn jobs_list(wired: Wired, json: bool) -> CliResult {
    const NOT_EMBEDDED: &str = "jobs list reads the embedded queue; with --backend aws the jobs \
        are on the SQS queue (aws sqs receive-message --queue-url …)";
    #[cfg(feature = "embedded")]
    {
        let Some(db) = wired.embedded else {
            return Err(NOT_EMBEDDED.into());
        };
        let jobs = db.jobs().await.map_err(|e| e.to_string())?;
        print::print_jobs(&jobs, json);
        Ok(())
    }
    #[cfg(not(feature = "embedded"))]
    {
        let _ = (wired, json);
        Err(NOT_EMBEDDED.into())
    }
}

/// A `whsec_…` secret from stdin, for `integrations test --secret-stdin`; never echoed.
fn read_secret() -> Result<SigningKey, String> {
    let mut text = String::new();
    std::io::stdin()
        .read_line(&mut text)
        .map_err(|e| format!("cannot read the secret from stdin: {e}"))?;
    SigningKey::from_secret(text.trim())
        .map_err(|_| "stdin does not hold a whsec_… secret".to_owned())
}

pub async fn master_key(wired: &Wired) -> Result<MasterKey, String> {
    wired.keys.master_key().await.map_err(|e| e.to_string())
}

pub async fn load(store: &dyn Store, id: &str) -> Result<Integration, String> {
    store
        .get(id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no integration {id}"))
}

/// A status or mode change, written back with its time.
trait Change: Copy {
    /// Changes the integration, or says why it cannot.
    fn apply(self, integration: &mut Integration) -> Result<(), String>;
}

impl Change for Status {
    fn apply(self, integration: &mut Integration) -> Result<(), String> {
        integration.status = self;
        Ok(())
    }
}

impl Change for Mode {
    fn apply(self, integration: &mut Integration) -> Result<(), String> {
        if let Some(scope) = &integration.scope {
            relay_protocol::integration::check_scope(scope, integration.provider, self)
                .map_err(|e| format!("integration {}: {e}", integration.id))?;
        }
        integration.mode = self;
        Ok(())
    }
}

async fn update(
    store: &dyn Store,
    id: &str,
    json: bool,
    now: DateTime<Utc>,
    change: impl Change,
) -> CliResult {
    let mut integration = load(store, id).await?;
    change.apply(&mut integration)?;
    integration.updated_at = now;
    store.put(&integration).await.map_err(|e| e.to_string())?;
    print::print_updated(&integration, json);
    Ok(())
}

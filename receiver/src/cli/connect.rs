//! `integrations connect-r2 ID --cloudflare-account A`: the whole R2 setup done on the
//! customer's behalf through Cloudflare's API, with a token they give; and `disconnect-r2`,
//! which removes it.
//!
//! Each step reads what exists and converges on what the integration needs, so a second run
//! changes nothing (every step `unchanged`) and a run that stopped half-way resumes where it
//! stopped. The steps do what the printed setup's wrangler commands do, with the same requests
//! (tests/test_connect_r2.py holds them to the requests the real wrangler sends):
//!
//! 1. both queues, with the plan's retention (created, or their retention corrected);
//! 2. the dead-letter queue's delivery paused (the worker replays it once it is resumed);
//! 3. the worker: the prebuilt bundle as ES modules, its `[vars]`, the dead-letter producer and
//!    the secret, in one upload (so it never runs without its secret);
//! 4. its workers.dev route, so `/healthz` answers;
//! 5. both queue consumers, with wrangler.toml's settings;
//! 6. the bucket's notification rules, filtered like the integration;
//! 7. a test notification published onto the events queue (the Queues HTTP publish endpoint)
//!    under the test key prefix, and a wait until the receiver has recorded it: queue → worker
//!    → receiver proven, and the worker's bundle named.

use super::args::{ConnectArgs, DisconnectArgs};
use super::cloudflare::{check_base, Body, Cloudflare, PlannedRequest, Token};
use super::common::{keyring, load, CliResult, Report, Safe};
use super::package::{
    compatibility_date, consumers, worker_vars, Bundle, ConsumerSettings, ConsumerSpec,
};
use super::setup::{rule_filters, unreachable_from_the_cloud, RuleFilter};
use crate::wiring::Wired;
use crate::worker_bundle;
use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};
use rand::distr::{Alphanumeric, SampleString};
use relay_protocol::decide::TEST_KEY_PREFIX;
use relay_protocol::wire::{
    WORKER_DEAD_LETTER_QUEUE, WORKER_DLQ_BINDING, WORKER_NAME, WORKER_QUEUE, WORKER_SECRET_NAME,
    WORKER_VAR_ALLOW_INSECURE,
};
use relay_protocol::{Integration, Outcome, Provider, Reason};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fmt::{self, Write};
use std::io::Read;
use std::time::Duration;

/// The cursor recording what `connect-r2` last did for the integration: which account and
/// which secret generation the worker holds.
const CONNECTED: &str = "cloudflare_connection";

/// The step names, in order.
const STEP_PAUSE: &str = "pause r2-events-dlq";
const STEP_WORKER: &str = "worker bucket-relay-worker";
const STEP_ROUTE: &str = "workers.dev route";
const STEP_RULES: &str = "notification rule";
const STEP_TEST: &str = "test event";

/// The actions of a rule for `--event-type object-create`, in the order wrangler sends them.
const OBJECT_CREATE: [&str; 3] = ["PutObject", "CompleteMultipartUpload", "CopyObject"];

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Did {
    Created,
    Updated,
    Unchanged,
    Deleted,
    Kept,
    /// A dry run: the step would create or change something (its requests are listed).
    WouldChange,
}

impl Did {
    fn as_str(self) -> &'static str {
        match self {
            Did::Created => "created",
            Did::Updated => "updated",
            Did::Unchanged => "unchanged",
            Did::Deleted => "deleted",
            Did::Kept => "kept",
            Did::WouldChange => "would change",
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Step {
    pub step: String,
    pub did: Did,
    pub detail: String,
}

/// What `connect-r2` last did, kept per integration.
#[derive(Debug, Serialize, Deserialize)]
struct Connection {
    account: String,
    /// The secret generation the uploaded worker holds.
    generation: u32,
    bundle: String,
    at: String,
}

/// The API, and the steps so far (shown even when a later one fails).
struct Run<'a> {
    api: &'a Cloudflare,
    steps: Vec<Step>,
}

impl Run<'_> {
    fn done(&mut self, step: impl Into<String>, did: Did, detail: impl Into<String>) {
        let did = match did {
            Did::Created | Did::Updated | Did::Deleted if self.api.dry_run() => Did::WouldChange,
            did => did,
        };
        self.steps.push(Step {
            step: step.into(),
            did,
            detail: detail.into(),
        });
    }
}

/// The token: `CLOUDFLARE_API_TOKEN`, or the first line of stdin.
fn token() -> CliResult<Token> {
    if let Ok(text) = std::env::var(crate::env::CLOUDFLARE_API_TOKEN) {
        return Token::new(&text);
    }
    let mut text = String::new();
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut text)
        .context("cannot read the Cloudflare API token from stdin")?;
    Token::new(text.lines().next().unwrap_or_default())
}

fn api(args: &super::args::CloudflareArgs) -> CliResult<Cloudflare> {
    let base = check_base(&args.api_base)?;
    Cloudflare::new(base, &args.cloudflare_account, token()?, args.dry_run)
}

/// The integration, which must be R2 and (when it names one) in the given account.
async fn r2_integration(wired: &Wired, id: &str, account: &str) -> CliResult<Integration> {
    let integration = load(wired.backends.store.as_ref(), id).await?;
    if integration.provider != Provider::R2 {
        bail!(
            "integration {} is {}: connect-r2 sets up an R2 bucket's notifications",
            integration.id,
            integration.provider
        );
    }
    if let Some(own) = integration.account.as_deref().filter(|own| *own != account) {
        bail!(
            "integration {} is for R2 account {own}, not {account}: its events would be \
             rejected (account_mismatch)",
            integration.id
        );
    }
    Ok(integration)
}

pub(crate) async fn connect(
    wired: &Wired,
    args: ConnectArgs,
    now: DateTime<Utc>,
) -> CliResult<Connected> {
    super::cloudflare::check_account(&args.cloudflare.cloudflare_account)?;
    let integration = r2_integration(wired, &args.id, &args.cloudflare.cloudflare_account).await?;
    let base = args.public.url.trim_end_matches('/').to_owned();
    let insecure_local = args.allow_insecure_receiver
        && relay_protocol::names::check_receiver_url(&base).is_ok()
        && (base.starts_with("http://127.0.0.1") || base.starts_with("http://localhost"));
    if let Some(why) = unreachable_from_the_cloud(&base).filter(|_| !insecure_local) {
        bail!(
            "the receiver URL {base} cannot be reached from Cloudflare: {why}; set \
             RELAY_PUBLIC_URL (or --receiver-url)"
        );
    }
    let bundle = Bundle::read(&args.bundle)?;
    let secret = keyring(wired).await?.current_secret(&integration).await?;
    let api = api(&args.cloudflare)?;
    let mut run = Run {
        api: &api,
        steps: Vec::new(),
    };
    let cursors = wired.backends.cursors.as_ref();
    let previous: Option<Connection> = cursors
        .load(&integration.id, CONNECTED)
        .await?
        .and_then(|text| serde_json::from_str(&text).ok());
    let target = Target {
        integration: &integration,
        base: &base,
        bundle: &bundle,
        insecure_local,
    };
    let outcome = steps(&mut run, &target, &secret, previous).await;
    let mut connected = Connected {
        integration_id: integration.id.clone(),
        account: args.cloudflare.cloudflare_account.clone(),
        dry_run: api.dry_run(),
        bundle: Some(bundle.version()),
        steps: run.steps,
        planned: api.planned(),
        healthz: None,
        test_event: None,
        failed: None,
    };
    let healthz = match outcome {
        Ok(healthz) => healthz,
        Err(error) => {
            connected.failed = Some(format!("{error:#}"));
            return Ok(connected);
        }
    };
    connected.healthz = healthz;
    if api.dry_run() {
        return Ok(connected);
    }
    let record = Connection {
        account: args.cloudflare.cloudflare_account.clone(),
        generation: integration.generation,
        bundle: bundle.version(),
        at: now.to_rfc3339_opts(SecondsFormat::Secs, true),
    };
    cursors
        .save(
            &integration.id,
            CONNECTED,
            Some(&serde_json::to_string(&record)?),
        )
        .await?;
    // What the customer's account runs now is this bundle: `show` compares the worker's report
    // with it.
    worker_bundle::remember_packaged(cursors, &integration.id, &bundle.version(), now).await?;
    if !args.no_test_event {
        let wait = *args.wait;
        match test_event(&api, wired, &integration, wait).await {
            Ok(report) => connected.test_event = Some(report),
            Err(error) => connected.failed = Some(format!("{error:#}")),
        }
    }
    Ok(connected)
}

/// What the steps set up.
struct Target<'a> {
    integration: &'a Integration,
    base: &'a str,
    bundle: &'a Bundle,
    /// `--allow-insecure-receiver`: the worker may call a plain-http loopback receiver.
    insecure_local: bool,
}

/// Steps 1–6; answers the worker's `/healthz` URL when it is known.
async fn steps(
    run: &mut Run<'_>,
    target: &Target<'_>,
    secret: &str,
    previous: Option<Connection>,
) -> CliResult<Option<String>> {
    let integration = target.integration;
    let retention = integration.plan().queue_retention_seconds();
    let events = queue(run, WORKER_QUEUE, retention).await?;
    let dead = queue(run, WORKER_DEAD_LETTER_QUEUE, retention).await?;
    pause(run, &dead).await?;
    let secret_current = previous.as_ref().is_some_and(|p| {
        p.generation == integration.generation && p.account == run.api.account_id()
    });
    worker(run, target, secret, secret_current).await?;
    let healthz = route(run).await?;
    for spec in consumers()? {
        let queue = if spec.queue == WORKER_QUEUE {
            &events
        } else {
            &dead
        };
        consumer(run, queue, &spec).await?;
    }
    rules(run, integration, &events).await?;
    Ok(healthz)
}

/// A queue as found or made: its id (a placeholder in a dry run that would create it) and its
/// settings.
struct QueueRef {
    name: &'static str,
    id: String,
    settings: Value,
}

async fn queue(run: &mut Run<'_>, name: &'static str, retention: u32) -> CliResult<QueueRef> {
    let step = format!("queue {name}");
    let existing = find_queue(run.api, &step, name).await?;
    let want = json!({"message_retention_period": retention});
    let Some(existing) = existing else {
        let created = run
            .api
            .call(
                &step,
                Method::POST,
                "/queues",
                &[],
                Body::Json(json!({"queue_name": name, "settings": want})),
            )
            .await?;
        run.done(&step, Did::Created, format!("retention {retention} s"));
        return Ok(QueueRef {
            name,
            id: id_of(&created, "queue_id").unwrap_or_else(|| format!("<{name} id>")),
            settings: created["settings"].clone(),
        });
    };
    let id = id_of(&existing, "queue_id").ok_or_else(|| anyhow!("{step}: a queue without id"))?;
    let retention_now = existing["settings"]["message_retention_period"].as_u64();
    if retention_now == Some(u64::from(retention)) {
        run.done(&step, Did::Unchanged, format!("retention {retention} s"));
        return Ok(QueueRef {
            name,
            id,
            settings: existing["settings"].clone(),
        });
    }
    let updated = run
        .api
        .call(
            &step,
            Method::PATCH,
            &format!("/queues/{id}"),
            &[],
            Body::Json(json!({"queue_name": name, "settings": want})),
        )
        .await?;
    run.done(
        &step,
        Did::Updated,
        format!(
            "retention {} s -> {retention} s",
            retention_now.map_or_else(|| "?".to_owned(), |r| r.to_string())
        ),
    );
    Ok(QueueRef {
        name,
        id,
        settings: if updated.is_null() {
            existing["settings"].clone()
        } else {
            updated["settings"].clone()
        },
    })
}

/// The queue named `name`, if the account has it (listed by name, as wrangler looks it up).
async fn find_queue(api: &Cloudflare, step: &str, name: &str) -> CliResult<Option<Value>> {
    let found = api
        .call(
            step,
            Method::GET,
            "/queues",
            &[("name", name), ("page", "1")],
            Body::None,
        )
        .await?;
    Ok(found
        .as_array()
        .and_then(|queues| queues.iter().find(|q| q["queue_name"] == name))
        .cloned())
}

/// A resource id: 32 hex digits (what Cloudflare's ids are), so it is safe in a path.
fn id_of(value: &Value, field: &str) -> Option<String> {
    value[field]
        .as_str()
        .filter(|id| (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_owned)
}

async fn pause(run: &mut Run<'_>, dead: &QueueRef) -> CliResult {
    if dead.settings["delivery_paused"] == Value::Bool(true) {
        run.done(STEP_PAUSE, Did::Unchanged, "delivery paused");
        return Ok(());
    }
    run.api
        .call(
            STEP_PAUSE,
            Method::PATCH,
            &format!("/queues/{}", dead.id),
            &[],
            Body::Json(json!({"queue_name": dead.name, "settings": {"delivery_paused": true}})),
        )
        .await?;
    run.done(
        STEP_PAUSE,
        Did::Updated,
        "delivery paused: the worker replays it once you resume it (after fixing a cause)",
    );
    Ok(())
}

/// The worker's bindings, as the API lists them: its vars and the dead-letter producer.
fn bindings(vars: &std::collections::BTreeMap<String, String>) -> Vec<Value> {
    let mut bindings: Vec<Value> = vars
        .iter()
        .map(|(name, text)| json!({"name": name, "type": "plain_text", "text": text}))
        .collect();
    bindings.push(
        json!({"type": "queue", "name": WORKER_DLQ_BINDING, "queue_name": WORKER_DEAD_LETTER_QUEUE}),
    );
    bindings
}

/// Whether the deployed worker has exactly these bindings (besides its secrets).
fn same_bindings(settings: &Value, want: &[Value]) -> bool {
    let Some(have) = settings["bindings"].as_array() else {
        return false;
    };
    let mut have: Vec<String> = have
        .iter()
        .filter(|b| b["type"] != "secret_text")
        .map(Value::to_string)
        .collect();
    let mut want: Vec<String> = want.iter().map(Value::to_string).collect();
    have.sort();
    want.sort();
    have == want
}

async fn worker(
    run: &mut Run<'_>,
    target: &Target<'_>,
    secret: &str,
    secret_current: bool,
) -> CliResult {
    let bundle = target.bundle;
    let version = bundle.version();
    let mut vars = worker_vars(target.integration, target.base, &version)?;
    if target.insecure_local {
        vars.insert(WORKER_VAR_ALLOW_INSECURE.into(), "true".into());
    }
    let want = bindings(&vars);
    let script = format!("/workers/scripts/{WORKER_NAME}");
    let settings = match run
        .api
        .get(STEP_WORKER, &format!("{script}/settings"))
        .await
    {
        Ok(settings) => Some(settings),
        Err(error) if error.not_found() => None,
        Err(error) => return Err(error.into()),
    };
    let secret_set = match &settings {
        Some(settings) => settings["bindings"].as_array().is_some_and(|bindings| {
            bindings
                .iter()
                .any(|b| b["type"] == "secret_text" && b["name"] == WORKER_SECRET_NAME)
        }),
        None => false,
    };
    if let Some(settings) = &settings {
        if same_bindings(settings, &want) && secret_set && secret_current {
            run.done(STEP_WORKER, Did::Unchanged, format!("bundle {version}"));
            return Ok(());
        }
    }
    let mut all = want;
    all.push(json!({"name": WORKER_SECRET_NAME, "type": "secret_text", "text": secret}));
    let metadata = json!({
        "main_module": "index.js",
        "bindings": all,
        "compatibility_date": compatibility_date()?,
        "compatibility_flags": [],
        "observability": {"enabled": true},
    });
    let file = |name: &str| {
        bundle
            .file(name)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| anyhow!("the bundle has no {name}"))
    };
    let modules = vec![
        (
            "index.js".to_owned(),
            "application/javascript+module",
            file("index.js")?,
        ),
        (
            "index_bg.wasm".to_owned(),
            "application/wasm",
            file("index_bg.wasm")?,
        ),
    ];
    run.api
        .call(
            STEP_WORKER,
            Method::PUT,
            &script,
            &[("excludeScript", "true"), ("bindings_inherit", "strict")],
            Body::Script { metadata, modules },
        )
        .await?;
    let did = if settings.is_some() {
        Did::Updated
    } else {
        Did::Created
    };
    run.done(
        STEP_WORKER,
        did,
        format!("bundle {version}, its vars, the dead-letter producer and the secret"),
    );
    Ok(())
}

/// The worker's workers.dev route, so that its `/healthz` answers; answers that URL.
async fn route(run: &mut Run<'_>) -> CliResult<Option<String>> {
    let account = run.api.get(STEP_ROUTE, "/workers/subdomain").await?;
    let subdomain = account["subdomain"]
        .as_str()
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 63
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .map(str::to_owned);
    let path = format!("/workers/scripts/{WORKER_NAME}/subdomain");
    let enabled = if run.api.dry_run() {
        match run.api.get(STEP_ROUTE, &path).await {
            Ok(state) => state["enabled"] == Value::Bool(true),
            Err(error) if error.not_found() => false,
            Err(error) => return Err(error.into()),
        }
    } else {
        run.api.get(STEP_ROUTE, &path).await?["enabled"] == Value::Bool(true)
    };
    let url = subdomain.map(|s| format!("https://{WORKER_NAME}.{s}.workers.dev/healthz"));
    if enabled {
        run.done(STEP_ROUTE, Did::Unchanged, "enabled");
    } else {
        run.api
            .call(
                STEP_ROUTE,
                Method::POST,
                &path,
                &[],
                Body::Json(json!({"enabled": true})),
            )
            .await?;
        run.done(STEP_ROUTE, Did::Updated, "enabled");
    }
    Ok(url)
}

fn consumer_body(spec: &ConsumerSpec) -> Value {
    let mut body = json!({
        "type": "worker",
        "script_name": WORKER_NAME,
        "settings": spec.settings,
    });
    if let Some(dead) = &spec.dead_letter_queue {
        body["dead_letter_queue"] = json!(dead);
    }
    body
}

async fn consumer(run: &mut Run<'_>, queue: &QueueRef, spec: &ConsumerSpec) -> CliResult {
    let step = format!("consumer {}", queue.name);
    let path = format!("/queues/{}/consumers", queue.id);
    let found = if queue.id.starts_with('<') {
        Value::Array(Vec::new())
    } else {
        run.api.get(&step, &path).await?
    };
    let existing = found
        .as_array()
        .and_then(|list| list.iter().find(|c| c["type"] == "worker"))
        .cloned();
    let body = consumer_body(spec);
    let Some(existing) = existing else {
        run.api
            .call(&step, Method::POST, &path, &[], Body::Json(body))
            .await?;
        run.done(&step, Did::Created, describe(spec));
        return Ok(());
    };
    let script = existing["script"]
        .as_str()
        .or_else(|| existing["script_name"].as_str())
        .unwrap_or_default();
    if script != WORKER_NAME {
        bail!(
            "step `{step}` failed: the queue is consumed by another worker, {}: a queue has one \
             worker consumer; remove that one first",
            Safe(script)
        );
    }
    let settings: Option<ConsumerSettings> =
        serde_json::from_value(existing["settings"].clone()).ok();
    let dead = existing["dead_letter_queue"].as_str().map(str::to_owned);
    if settings.as_ref() == Some(&spec.settings) && dead == spec.dead_letter_queue {
        run.done(&step, Did::Unchanged, describe(spec));
        return Ok(());
    }
    let id = id_of(&existing, "consumer_id").ok_or_else(|| anyhow!("{step}: no consumer id"))?;
    run.api
        .call(
            &step,
            Method::PUT,
            &format!("{path}/{id}"),
            &[],
            Body::Json(body),
        )
        .await?;
    run.done(&step, Did::Updated, describe(spec));
    Ok(())
}

fn describe(spec: &ConsumerSpec) -> String {
    let s = &spec.settings;
    format!(
        "batches of {}, {} retries, {} at once, retry delay {} s",
        s.batch_size, s.max_retries, s.max_concurrency, s.retry_delay
    )
}

fn rule_body(filter: &RuleFilter) -> Value {
    let mut rule = serde_json::Map::new();
    if let Some(prefix) = &filter.prefix {
        rule.insert("prefix".into(), json!(prefix));
    }
    if let Some(suffix) = &filter.suffix {
        rule.insert("suffix".into(), json!(suffix));
    }
    rule.insert("actions".into(), json!(OBJECT_CREATE));
    Value::Object(rule)
}

fn rule_matches(rule: &Value, filter: &RuleFilter) -> bool {
    let text = |name: &str| rule[name].as_str().unwrap_or_default().to_owned();
    let actions: Vec<&str> = rule["actions"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    text("prefix") == filter.prefix.clone().unwrap_or_default()
        && text("suffix") == filter.suffix.clone().unwrap_or_default()
        && OBJECT_CREATE.iter().all(|a| actions.contains(a))
}

/// The rules the bucket has for the queue.
async fn queue_rules(
    run: &Run<'_>,
    step: &str,
    bucket: &str,
    queue_id: &str,
) -> CliResult<Vec<Value>> {
    let config = match run
        .api
        .get(
            step,
            &format!("/event_notifications/r2/{bucket}/configuration"),
        )
        .await
    {
        Ok(config) => config,
        Err(error) if error.not_found() => Value::Null,
        Err(error) => return Err(error.into()),
    };
    Ok(config["queues"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|q| q["queueId"] == queue_id)
        .flat_map(|q| q["rules"].as_array().cloned().unwrap_or_default())
        .collect())
}

async fn rules(run: &mut Run<'_>, integration: &Integration, events: &QueueRef) -> CliResult {
    let bucket = &integration.bucket;
    let existing = queue_rules(run, STEP_RULES, bucket, &events.id).await?;
    for filter in rule_filters(integration) {
        let step = format!(
            "{STEP_RULES} {bucket} prefix={} suffix={}",
            filter.prefix.as_deref().unwrap_or("*"),
            filter.suffix.as_deref().unwrap_or("*")
        );
        if existing.iter().any(|rule| rule_matches(rule, &filter)) {
            run.done(&step, Did::Unchanged, "object-create -> r2-events");
            continue;
        }
        run.api
            .call(
                &step,
                Method::PUT,
                &format!(
                    "/event_notifications/r2/{bucket}/configuration/queues/{}",
                    events.id
                ),
                &[],
                Body::Json(json!({"rules": [rule_body(&filter)]})),
            )
            .await?;
        run.done(&step, Did::Created, "object-create -> r2-events");
    }
    Ok(())
}

/// Step 7: a test notification through the queue, the worker and the receiver.
async fn test_event(
    api: &Cloudflare,
    wired: &Wired,
    integration: &Integration,
    wait: Duration,
) -> CliResult<TestEventReport> {
    let id = find_queue(api, STEP_TEST, WORKER_QUEUE)
        .await?
        .and_then(|q| id_of(&q, "queue_id"))
        .ok_or_else(|| anyhow!("step `{STEP_TEST}` failed: no queue {WORKER_QUEUE}"))?;
    let nonce = Alphanumeric.sample_string(&mut rand::rng(), 12);
    let key = format!("{TEST_KEY_PREFIX}{nonce}");
    let notification = json!({
        "account": api.account_id(),
        "action": "PutObject",
        "bucket": integration.bucket,
        "object": {"key": key, "size": 0, "eTag": "d41d8cd98f00b204e9800998ecf8427e"},
        "eventTime": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    });
    api.call(
        STEP_TEST,
        Method::POST,
        &format!("/queues/{id}/messages"),
        &[],
        Body::Json(json!({"body": notification, "content_type": "json"})),
    )
    .await?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(history) = wired.backends.history.object(&integration.id, &key).await? {
            let bundle = worker_bundle::load(
                wired.backends.cursors.as_ref(),
                &integration.id,
                worker_bundle::REPORTED,
            )
            .await?
            .map(|seen| seen.bundle);
            let last = history.last;
            let report = TestEventReport {
                key,
                outcome: last.outcome,
                reason: last.reason,
                worker_bundle: bundle,
            };
            if last.outcome != Outcome::Skipped || last.reason != Some(Reason::TestEvent) {
                bail!(
                    "step `{STEP_TEST}` failed: the receiver answered the test event {}/{}: see \
                     `integrations show {}`",
                    last.outcome,
                    last.reason.map_or("-", Reason::as_str),
                    integration.id
                );
            }
            return Ok(report);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "step `{STEP_TEST}` failed: the receiver has not recorded the test event {key} \
                 after {}: check the worker's logs (`npx wrangler tail {WORKER_NAME}`) and its \
                 /healthz",
                humantime::format_duration(wait)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `disconnect-r2`: rules first, then consumers, the worker, and the queues with `--force`.
pub(crate) async fn disconnect(wired: &Wired, args: DisconnectArgs) -> CliResult<Connected> {
    super::cloudflare::check_account(&args.cloudflare.cloudflare_account)?;
    let integration = r2_integration(wired, &args.id, &args.cloudflare.cloudflare_account).await?;
    let api = api(&args.cloudflare)?;
    let mut run = Run {
        api: &api,
        steps: Vec::new(),
    };
    let outcome = undo(&mut run, &integration, args.force).await;
    let report = Connected {
        integration_id: integration.id.clone(),
        account: args.cloudflare.cloudflare_account.clone(),
        dry_run: api.dry_run(),
        bundle: None,
        steps: run.steps,
        planned: api.planned(),
        healthz: None,
        test_event: None,
        failed: outcome.err().map(|e| format!("{e:#}")),
    };
    if report.failed.is_none() && !report.dry_run {
        wired
            .backends
            .cursors
            .save(&integration.id, CONNECTED, None)
            .await?;
    }
    Ok(report)
}

async fn undo(run: &mut Run<'_>, integration: &Integration, force: bool) -> CliResult {
    let mut queues = Vec::new();
    for name in [WORKER_QUEUE, WORKER_DEAD_LETTER_QUEUE] {
        if let Some(queue) = find_queue(run.api, &format!("queue {name}"), name).await? {
            let id = id_of(&queue, "queue_id").ok_or_else(|| anyhow!("queue {name}: no id"))?;
            queues.push((name, id));
        }
    }
    // 1. the rules that send the bucket's objects to the events queue.
    if let Some((_, events)) = queues.iter().find(|(name, _)| *name == WORKER_QUEUE) {
        let bucket = &integration.bucket;
        let rules = queue_rules(run, STEP_RULES, bucket, events).await?;
        let ids: Vec<&str> = rules.iter().filter_map(|r| r["ruleId"].as_str()).collect();
        let step = format!("{STEP_RULES}s {bucket}");
        if ids.is_empty() {
            run.done(&step, Did::Unchanged, "none");
        } else {
            run.api
                .call(
                    &step,
                    Method::DELETE,
                    &format!("/event_notifications/r2/{bucket}/configuration/queues/{events}"),
                    &[],
                    Body::Json(json!({"ruleIds": ids})),
                )
                .await?;
            run.done(&step, Did::Deleted, format!("{} rule(s)", ids.len()));
        }
    }
    // 2. the worker's consumers.
    for (name, id) in &queues {
        let step = format!("consumer {name}");
        let path = format!("/queues/{id}/consumers");
        let found = run.api.get(&step, &path).await?;
        let ours: Vec<String> = found
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["script"] == WORKER_NAME || c["script_name"] == WORKER_NAME)
            .filter_map(|c| id_of(c, "consumer_id"))
            .collect();
        if ours.is_empty() {
            run.done(&step, Did::Unchanged, "none");
        }
        for consumer in ours {
            run.api
                .call(
                    &step,
                    Method::DELETE,
                    &format!("{path}/{consumer}"),
                    &[],
                    Body::None,
                )
                .await?;
            run.done(&step, Did::Deleted, "");
        }
    }
    // 3. the worker.
    let script = format!("/workers/scripts/{WORKER_NAME}");
    match run
        .api
        .get(STEP_WORKER, &format!("{script}/settings"))
        .await
    {
        Ok(_) => {
            run.api
                .call(STEP_WORKER, Method::DELETE, &script, &[], Body::None)
                .await?;
            run.done(STEP_WORKER, Did::Deleted, "");
        }
        Err(error) if error.not_found() => run.done(STEP_WORKER, Did::Unchanged, "none"),
        Err(error) => return Err(error.into()),
    }
    // 4. the queues: only with --force, since messages in them would be lost.
    for (name, id) in &queues {
        let step = format!("queue {name}");
        if force {
            run.api
                .call(
                    &step,
                    Method::DELETE,
                    &format!("/queues/{id}"),
                    &[],
                    Body::None,
                )
                .await?;
            run.done(&step, Did::Deleted, "");
        } else {
            run.done(
                &step,
                Did::Kept,
                "messages in it would be lost: --force deletes it",
            );
        }
    }
    Ok(())
}

/// The test event's answer, as the receiver recorded it.
#[derive(Debug, Serialize)]
pub(crate) struct TestEventReport {
    key: String,
    outcome: Outcome,
    reason: Option<Reason>,
    /// The bundle the worker named when it forwarded the test event.
    worker_bundle: Option<String>,
}

/// What `connect-r2` or `disconnect-r2` did, step by step.
#[derive(Debug, Serialize)]
pub(crate) struct Connected {
    integration_id: String,
    account: String,
    dry_run: bool,
    /// The bundle `connect-r2` uploads (absent for `disconnect-r2`).
    #[serde(skip_serializing_if = "Option::is_none")]
    bundle: Option<String>,
    steps: Vec<Step>,
    /// In a dry run: the writes it would send (secrets redacted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    planned: Vec<PlannedRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthz: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    test_event: Option<TestEventReport>,
    /// The step that failed and why; a re-run resumes from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<String>,
}

impl Report for Connected {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        for step in &self.steps {
            writeln!(
                out,
                "  {:<13} {} {}",
                step.did.as_str(),
                Safe(&step.step),
                Safe(&step.detail)
            )?;
        }
        for planned in &self.planned {
            let body = planned
                .body
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_default();
            writeln!(
                out,
                "  would send {} {} {}",
                planned.method,
                Safe(&planned.path),
                Safe(&body)
            )?;
        }
        if let Some(test) = &self.test_event {
            writeln!(
                out,
                "  test event    {}: {}/{} through the queue, the worker (bundle {}) and the \
                 receiver",
                Safe(&test.key),
                test.outcome,
                test.reason.map_or("-", Reason::as_str),
                test.worker_bundle.as_deref().map_or("?", |b| b)
            )?;
        }
        if let Some(url) = &self.healthz {
            writeln!(out, "The worker's health check: curl {url}")?;
        }
        Ok(())
    }

    fn failure(&self) -> Option<String> {
        self.failed.as_ref().map(|why| {
            format!("{why}\nRun the same command again to resume: done steps stay done.")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_protocol::event::r2::CREATE_ACTIONS;

    #[test]
    fn a_rule_notifies_exactly_the_actions_the_worker_forwards() {
        let mut ours = OBJECT_CREATE.to_vec();
        let mut worker = CREATE_ACTIONS.to_vec();
        ours.sort_unstable();
        worker.sort_unstable();
        assert_eq!(ours, worker);
    }

    #[test]
    fn a_rule_matches_only_its_own_filters() {
        let filter = RuleFilter {
            prefix: Some("in/".into()),
            suffix: Some(".pdf".into()),
        };
        let rule = rule_body(&filter);
        assert!(rule_matches(&rule, &filter));
        let other = RuleFilter {
            prefix: None,
            suffix: Some(".pdf".into()),
        };
        assert!(!rule_matches(&rule, &other));
        let narrower = json!({"prefix": "in/", "suffix": ".pdf", "actions": ["PutObject"]});
        assert!(
            !rule_matches(&narrower, &filter),
            "a rule missing an action is not ours"
        );
    }
}

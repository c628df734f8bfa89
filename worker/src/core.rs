//! The worker's pure core: configuration, filters, backoff, and what to do with each message
//! once the receiver has answered. No I/O and no Workers types, so it is unit-tested natively;
//! `lib.rs` is the thin shell that reads the queue, calls the receiver and acks or retries.

use relay_protocol::decide::{is_test_key, key_filter};
use relay_protocol::event::r2::CREATE_ACTIONS;
use relay_protocol::webhook::{SigningKey, SECRET_PREFIX};
use relay_protocol::wire::{
    is_bundle_version, BUNDLE_FROM_SOURCE, WORKER_DEAD_LETTER_QUEUE, WORKER_QUEUE,
    WORKER_SECRET_NAME, WORKER_VAR_ACTIONS as VAR_ACTIONS,
    WORKER_VAR_ALLOW_INSECURE as VAR_ALLOW_INSECURE, WORKER_VAR_BUNDLE, WORKER_VAR_INTEGRATION_ID,
    WORKER_VAR_KEY_PREFIX as VAR_PREFIX, WORKER_VAR_KEY_SUFFIXES as VAR_SUFFIXES,
    WORKER_VAR_MAX_RETRY_DELAY as VAR_MAX_RETRY_DELAY, WORKER_VAR_RECEIVER_URL,
    WORKER_VAR_TIMEOUT as VAR_TIMEOUT,
};
use relay_protocol::{Disposition, Outcome, Reason};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashMap;

/// The wait when `RECEIVER_TIMEOUT_SECONDS` is not set.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 30;

/// Actions forwarded when `FORWARD_ACTIONS` is not set: the ones the receiver turns into jobs.
pub const DEFAULT_ACTIONS: [&str; 3] = CREATE_ACTIONS;
/// The retry delays and the backoff are the protocol's: the receiver reads from them how long
/// the worker carries a backlog (`integrations set-limits`).
pub use relay_protocol::wire::{backoff_seconds, MAX_RETRY_SECONDS, MIN_RETRY_SECONDS};

/// The worker's configuration, checked.
#[derive(Clone, Debug)]
pub struct Config {
    /// `RECEIVER_URL/v1/integrations/INTEGRATION_ID/events`
    pub events_url: String,
    pub receiver_host: String,
    pub integration_id: String,
    /// The event source secret's key, decoded once.
    pub key: SigningKey,
    pub actions: Vec<String>,
    pub prefix: Option<String>,
    pub suffixes: Vec<String>,
    /// How long to wait for the receiver's answer.
    pub timeout_seconds: u32,
    /// The longest wait between two retries of a message.
    pub max_retry_seconds: u32,
    /// The prebuilt bundle's version (`WORKER_BUNDLE`, written by `worker package`), or
    /// `source`: sent with every batch and reported by `/healthz`.
    pub bundle: String,
}

/// Why the worker cannot forward: each is logged, and every message is retried (never dropped)
/// until the configuration is fixed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    Missing(&'static str),
    SecretNotWhsec,
    NotHttps(String),
    InsecureNotLocal(String),
    BadUrl(String),
    BadTimeout(String),
    BadRetryDelay(String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Missing(name) => write!(f, "{name} is not set"),
            ConfigError::SecretNotWhsec => {
                write!(f, "{WORKER_SECRET_NAME} is not a whsec_… secret")
            }
            ConfigError::NotHttps(url) => write!(
                f,
                "{WORKER_VAR_RECEIVER_URL} {url} is not https (plain http only for 127.0.0.1 / localhost with {VAR_ALLOW_INSECURE}=true)"
            ),
            ConfigError::InsecureNotLocal(url) => write!(
                f,
                "{VAR_ALLOW_INSECURE}=true allows plain http only for 127.0.0.1 / localhost, not {url}"
            ),
            ConfigError::BadUrl(url) => write!(f, "{WORKER_VAR_RECEIVER_URL} {url} is not a URL"),
            ConfigError::BadTimeout(value) => write!(
                f,
                "{VAR_TIMEOUT} {value:?} is not a number of seconds from 1 to 600"
            ),
            ConfigError::BadRetryDelay(value) => write!(
                f,
                "{VAR_MAX_RETRY_DELAY} {value:?} is not a number of seconds from \
                 {MIN_RETRY_SECONDS} to {MAX_RETRY_SECONDS}"
            ),
        }
    }
}

impl ConfigError {
    /// A stable word for logs.
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::Missing(_) => "config_missing",
            ConfigError::SecretNotWhsec => "config_secret_invalid",
            ConfigError::NotHttps(_) => "config_receiver_not_https",
            ConfigError::InsecureNotLocal(_) => "config_insecure_not_local",
            ConfigError::BadUrl(_) => "config_receiver_url_invalid",
            ConfigError::BadTimeout(_) => "config_timeout_invalid",
            ConfigError::BadRetryDelay(_) => "config_retry_delay_invalid",
        }
    }
}

fn list(value: Option<String>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Reads a URL as the WHATWG URL standard does: its scheme (without the colon) and host, or
/// `None` when it is not an absolute URL with a host. The worker passes the runtime's own `URL`,
/// the parser its `fetch` uses; the native tests pass the `url` crate, which follows the same
/// standard. (`http::Uri`, before, was 3.7 KB of the bundle's gzip.)
pub type ParseUrl = fn(&str) -> Option<(String, String)>;

/// A receiver URL's problem, if any: https, or plain http to this machine when allowed.
fn check_receiver_url(url: &str, insecure: bool, parse: ParseUrl) -> Result<String, ConfigError> {
    let (scheme, host) = parse(url)
        .filter(|(_, host)| !host.is_empty())
        .ok_or_else(|| ConfigError::BadUrl(url.to_owned()))?;
    let local = matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]");
    match scheme.as_str() {
        "https" => Ok(host),
        "http" if insecure && local => Ok(host),
        "http" if insecure => Err(ConfigError::InsecureNotLocal(url.to_owned())),
        _ => Err(ConfigError::NotHttps(url.to_owned())),
    }
}

fn check_timeout(text: Option<String>) -> Result<u32, ConfigError> {
    match text {
        None => Ok(DEFAULT_TIMEOUT_SECONDS),
        Some(text) => match text.parse::<u32>() {
            Ok(seconds) if (1..=600).contains(&seconds) => Ok(seconds),
            _ => Err(ConfigError::BadTimeout(text)),
        },
    }
}

fn check_retry_delay(text: Option<String>) -> Result<u32, ConfigError> {
    match text {
        None => Ok(MAX_RETRY_SECONDS),
        Some(text) => match text.parse::<u32>() {
            Ok(seconds) if (MIN_RETRY_SECONDS..=MAX_RETRY_SECONDS).contains(&seconds) => {
                Ok(seconds)
            }
            _ => Err(ConfigError::BadRetryDelay(text)),
        },
    }
}

/// The longest retry wait to use even when the configuration is broken: the var's value when it
/// is valid, 12 h when it is absent, and when it is invalid the Free plan's one hour (a message
/// then reaches the dead-letter queue sooner, never after the shortest retention).
pub fn retry_cap(text: Option<String>) -> u32 {
    let given = text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    match given {
        None => MAX_RETRY_SECONDS,
        Some(text) => check_retry_delay(Some(text))
            .unwrap_or(relay_protocol::wire::CloudflarePlan::Free.max_retry_delay_seconds()),
    }
}

/// The bundle version the worker reports: `WORKER_BUNDLE` when it is one, else `source` (a
/// build from source, or a var edited by hand).
pub fn bundle_version(var: Option<String>) -> String {
    var.filter(|v| is_bundle_version(v))
        .unwrap_or_else(|| BUNDLE_FROM_SOURCE.to_owned())
}

impl Config {
    /// Reads and checks the configuration; `var` returns a var or secret by name, `parse_url`
    /// reads the receiver URL.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        parse_url: ParseUrl,
    ) -> Result<Config, Vec<ConfigError>> {
        let get = |name| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut errors = Vec::new();
        let mut required = |name: &'static str| {
            let value = get(name);
            if value.is_none() {
                errors.push(ConfigError::Missing(name));
            }
            value
        };
        let url = required(WORKER_VAR_RECEIVER_URL);
        let integration_id = required(WORKER_VAR_INTEGRATION_ID);
        let secret = required(WORKER_SECRET_NAME);
        let insecure = get(VAR_ALLOW_INSECURE).is_some_and(|v| v == "true");
        let key = secret.and_then(|secret| {
            let key = SigningKey::from_secret(&secret)
                .ok()
                .filter(|_| secret.starts_with(SECRET_PREFIX));
            if key.is_none() {
                errors.push(ConfigError::SecretNotWhsec);
            }
            key
        });
        let receiver_host = url.as_deref().and_then(|url| {
            check_receiver_url(url, insecure, parse_url)
                .map_err(|error| errors.push(error))
                .ok()
        });
        let timeout_seconds = check_timeout(get(VAR_TIMEOUT))
            .map_err(|error| errors.push(error))
            .ok();
        let max_retry_seconds = check_retry_delay(get(VAR_MAX_RETRY_DELAY))
            .map_err(|error| errors.push(error))
            .ok();
        let (
            Some(url),
            Some(integration_id),
            Some(key),
            Some(receiver_host),
            Some(timeout_seconds),
            Some(max_retry_seconds),
        ) = (
            url,
            integration_id,
            key,
            receiver_host,
            timeout_seconds,
            max_retry_seconds,
        )
        else {
            return Err(errors);
        };
        let actions = match list(get(VAR_ACTIONS)) {
            actions if actions.is_empty() => DEFAULT_ACTIONS.map(str::to_owned).to_vec(),
            actions => actions,
        };
        Ok(Config {
            events_url: format!(
                "{}{}",
                url.trim_end_matches('/'),
                relay_protocol::wire::events_path(&integration_id)
            ),
            receiver_host,
            integration_id,
            key,
            actions,
            prefix: get(VAR_PREFIX),
            suffixes: list(get(VAR_SUFFIXES)),
            timeout_seconds,
            max_retry_seconds,
            bundle: bundle_version(get(WORKER_VAR_BUNDLE)),
        })
    }

    /// Why a notification (its JSON text) is not forwarded, or `None` to forward it. A
    /// notification whose action or key cannot be read as text is forwarded: the receiver
    /// names it `malformed_event` and it is dead-lettered, never silently dropped.
    /// An action outside `FORWARD_ACTIONS` is named `not_object_created`, and the key filters
    /// are the receiver's own ([`key_filter`]), so a log line reads the same on both sides.
    pub fn filter(&self, notification: &str) -> Option<Reason> {
        let read: Filterable<'_> = serde_json::from_str(notification).ok()?;
        let action = read.action?;
        if !self.actions.iter().any(|a| *a == action) {
            return Some(Reason::NotObjectCreated);
        }
        let key = read.object?.key?;
        // A test event (`connect-r2`'s, under the test key prefix) reaches the receiver
        // whatever the filters, which answers it without making a job.
        if is_test_key(&key) {
            return None;
        }
        key_filter(self.prefix.as_deref(), &self.suffixes, &key)
    }
}

/// What the filters read of a notification; every other field is skipped unread.
#[derive(Deserialize)]
struct Filterable<'a> {
    #[serde(borrow, default)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    object: Option<FilterableObject<'a>>,
}

#[derive(Deserialize)]
struct FilterableObject<'a> {
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
}

/// Which queue a batch comes from: the bucket's notifications, or the dead-letter queue being
/// replayed (its delivery resumed with `npx wrangler queues resume-delivery`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Events,
    DeadLetters,
}

impl Source {
    /// The dead-letter queue is the contract's ([`WORKER_DEAD_LETTER_QUEUE`]); any other queue
    /// the worker consumes carries notifications.
    pub fn of(queue: &str) -> Source {
        if queue == WORKER_DEAD_LETTER_QUEUE {
            Source::DeadLetters
        } else {
            Source::Events
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Events => "events",
            Source::DeadLetters => "dead_letters",
        }
    }
}

/// What to do with one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Ack {
        outcome: Outcome,
    },
    Retry {
        reason: String,
    },
    DeadLetter {
        reason: String,
    },
    /// A replayed message rejected again: retried after the longest delay, so it stays on the
    /// dead-letter queue (for a person to look at) until the queue's retention ends.
    Keep {
        reason: String,
    },
}

/// The receiver's 200 answer as the worker reads it: outcomes strictly (there are five, and each
/// says what to do), reasons as plain words. A newer receiver may name a reason this worker does
/// not know; it still acts on the outcome, rather than retrying whole batches it cannot read.
#[derive(Debug, Deserialize)]
pub struct Answer {
    pub results: Vec<AnswerResult>,
}

#[derive(Debug, Deserialize)]
pub struct AnswerResult {
    pub id: String,
    pub outcome: Outcome,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The `error` word of a refused request's body, whatever reason it names.
#[derive(Debug, Deserialize)]
pub struct ErrorWord {
    pub error: String,
}

/// The action for every forwarded message, from the receiver's 200 answer. A message the
/// answer does not mention is retried: nothing is acked without a final word on it.
pub fn plan(source: Source, forwarded: &[String], answer: &Answer) -> Vec<(String, Action)> {
    let by_id: HashMap<&str, &AnswerResult> =
        answer.results.iter().map(|r| (r.id.as_str(), r)).collect();
    forwarded
        .iter()
        .map(|id| {
            let reason = |r: &AnswerResult| r.reason.clone().unwrap_or_else(|| "none".into());
            let action = match by_id.get(id.as_str()) {
                None => Action::Retry {
                    reason: "no_result".into(),
                },
                Some(r) => match r.outcome.disposition() {
                    Disposition::Ack => Action::Ack { outcome: r.outcome },
                    Disposition::Retry => Action::Retry { reason: reason(r) },
                    Disposition::DeadLetter => match source {
                        Source::Events => Action::DeadLetter { reason: reason(r) },
                        Source::DeadLetters => Action::Keep { reason: reason(r) },
                    },
                },
            };
            (id.clone(), action)
        })
        .collect()
}

/// The `webhook-id` of a batch: derived from its message ids (no randomness in wasm), so a
/// redelivered batch has the same id.
pub fn batch_id(message_ids: &[String]) -> String {
    let mut hasher = Sha256::new();
    for id in message_ids {
        hasher.update(id.as_bytes());
        hasher.update(b"\n");
    }
    let digest = hasher.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("batch_{hex}")
}

/// Every line the worker logs (`npx wrangler tail` shows them), one JSON object each: `message`
/// names the event and the other fields are its own. docs/customers-r2.md lists them; a test
/// holds that list to this type.
#[derive(Debug, Serialize)]
#[serde(tag = "message", rename_all = "snake_case")]
pub enum LogLine<'a> {
    /// One per batch, whatever became of it.
    Batch(BatchLine<'a>),
    /// The worker's filters dropped the message; it is acked.
    MessageFiltered { id: &'a str, reason: &'a str },
    /// The message is retried after `delay_seconds`.
    MessageRetry {
        id: &'a str,
        reason: &'a str,
        delay_seconds: u32,
    },
    /// A replayed dead letter the receiver rejected again: kept on the dead-letter queue.
    MessageKept {
        id: &'a str,
        reason: &'a str,
        delay_seconds: u32,
    },
    /// The receiver rejected the message: it went to the dead-letter queue and is acked.
    MessageDeadLettered { id: &'a str, reason: &'a str },
    /// Sending to the dead-letter queue failed: the message is retried instead.
    DeadLetterFailed {
        id: &'a str,
        reason: &'a str,
        error: &'a str,
    },
    /// The configuration is wrong (never the secret's value): every message is retried.
    ConfigError { error: &'a str, detail: &'a str },
    /// The receiver answered with an error status: the batch is retried.
    ReceiverRefused {
        status: u16,
        reason: &'a str,
        receiver_host: &'a str,
    },
    /// The receiver's 200 answer could not be read: the batch is retried.
    ReceiverAnswerUnreadable { error: &'a str },
    /// The request failed before an answer: the batch is retried.
    ReceiverUnreachable {
        receiver_host: &'a str,
        error: &'a str,
    },
    /// No answer within `RECEIVER_TIMEOUT_SECONDS`: the request is aborted and the batch retried.
    ReceiverTimeout {
        receiver_host: &'a str,
        timeout_seconds: u32,
    },
}

/// A batch's line: where it came from, how much was forwarded and what became of each message.
#[derive(Debug, Serialize)]
pub struct BatchLine<'a> {
    /// Absent when the configuration could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration_id: Option<&'a str>,
    pub queue: &'a str,
    pub source: &'a str,
    pub messages: usize,
    pub forwarded: usize,
    /// The receiver's status, when the batch was sent (0: no answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver_status: Option<u16>,
    /// Why nothing was sent, when that was the configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// Messages per outcome word (`accepted`, `filtered`, `retried`, `kept`…).
    pub counts: &'a Counts,
}

/// Messages per outcome word, written as a JSON object. A batch has a handful of words, so a
/// list: with this and [`ConsumedByQueue`] as `BTreeMap`s the bundle was 5 KB bigger (gzip,
/// docs/performance.md).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts(Vec<(&'static str, u32)>);

impl Counts {
    pub fn of(word: &'static str, n: u32) -> Self {
        let mut counts = Counts::default();
        counts.add(word, n);
        counts
    }

    pub fn add(&mut self, word: &'static str, n: u32) {
        match self.0.iter_mut().find(|(w, _)| *w == word) {
            Some((_, count)) => *count += n,
            None => self.0.push((word, n)),
        }
    }
}

impl Serialize for Counts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(word, n)| (word, n)))
    }
}

impl<'a> BatchLine<'a> {
    /// A batch of `messages` from `queue`, nothing forwarded yet.
    pub fn new(queue: &'a str, source: Source, messages: usize, counts: &'a Counts) -> Self {
        BatchLine {
            integration_id: None,
            queue,
            source: source.as_str(),
            messages,
            forwarded: 0,
            receiver_status: None,
            reason: None,
            counts,
        }
    }
}

/// Why a batch was retried whole when the configuration cannot be read: in the batch's line and
/// in each message's `message_retry` (each problem has its own `config_error` line).
pub const CONFIG_ERROR: &str = "config_error";

impl LogLine<'_> {
    /// The line as the worker writes it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The batches one isolate consumed from a queue, for `/healthz`.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Consumed {
    pub batches: u64,
    pub messages: u64,
    pub last_batch_at_ms: u64,
}

/// What this isolate consumed from each queue it was handed (two at most: the events queue and
/// its dead-letter queue), written as a JSON object by queue name.
#[derive(Clone, Debug, Default)]
pub struct ConsumedByQueue(Vec<(String, Consumed)>);

impl ConsumedByQueue {
    pub const fn new() -> Self {
        ConsumedByQueue(Vec::new())
    }

    /// A batch of `messages` from `queue`, consumed at `at_ms`.
    pub fn record(&mut self, queue: &str, messages: usize, at_ms: u64) {
        let index = match self.0.iter().position(|(name, _)| name == queue) {
            Some(index) => index,
            None => {
                self.0.push((queue.to_owned(), Consumed::default()));
                self.0.len() - 1
            }
        };
        let consumed = &mut self.0[index].1;
        consumed.batches += 1;
        consumed.messages += messages as u64;
        consumed.last_batch_at_ms = at_ms;
    }

    fn contains(&self, queue: &str) -> bool {
        self.0.iter().any(|(name, _)| name == queue)
    }
}

impl Serialize for ConsumedByQueue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(queue, consumed)| (queue, consumed)))
    }
}

/// What `/healthz` answers: 200 with the configuration when it is usable, 503 with its
/// problems otherwise. Never the secret, only whether it is set.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Health<'a> {
    Ok {
        bundle: String,
        max_retry_delay_seconds: u32,
        integration_id: &'a str,
        receiver_host: &'a str,
        secret_set: bool,
        actions: &'a [String],
        prefix: Option<&'a str>,
        suffixes: &'a [String],
        receiver_timeout_seconds: u32,
        queues: Queues<'a>,
    },
    Misconfigured {
        bundle: String,
        integration_id: Option<String>,
        secret_set: bool,
        problems: Vec<String>,
        queues: Queues<'a>,
    },
}

impl Health<'_> {
    pub fn status_code(&self) -> u16 {
        match self {
            Health::Ok { .. } => 200,
            Health::Misconfigured { .. } => 503,
        }
    }
}

/// What the worker can know of its queues: their contract names, and what this isolate
/// consumed. Whether the dead-letter queue's delivery is paused is the queue's setting: a batch
/// from it here means it is not.
#[derive(Debug, Serialize)]
pub struct Queues<'a> {
    events: &'static str,
    dead_letters: &'static str,
    dead_letter_replay: &'static str,
    consumed_by_this_isolate: &'a ConsumedByQueue,
}

impl<'a> Queues<'a> {
    pub fn new(consumed: &'a ConsumedByQueue) -> Self {
        Queues {
            events: WORKER_QUEUE,
            dead_letters: WORKER_DEAD_LETTER_QUEUE,
            dead_letter_replay: if consumed.contains(WORKER_DEAD_LETTER_QUEUE) {
                "delivering: this isolate consumed a batch from the dead-letter queue"
            } else {
                "no batch from the dead-letter queue in this isolate (paused, or nothing to replay)"
            },
            consumed_by_this_isolate: consumed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    /// The configuration from these vars, its URL read by a WHATWG parser as the runtime's is.
    fn config_of(pairs: &[(&str, &str)]) -> Result<Config, Vec<ConfigError>> {
        Config::from_vars(vars(pairs), |url| {
            let url = url::Url::parse(url).ok()?;
            Some((url.scheme().to_owned(), url.host_str()?.to_owned()))
        })
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("RECEIVER_URL", "https://relay.example.com/"),
            ("INTEGRATION_ID", "int_abc"),
            ("EVENT_SOURCE_SECRET", SECRET),
        ]
    }

    #[test]
    fn a_complete_configuration_builds_the_events_url() {
        let config = config_of(&good()).unwrap();
        assert_eq!(
            config.events_url,
            "https://relay.example.com/v1/integrations/int_abc/events"
        );
        assert_eq!(config.receiver_host, "relay.example.com");
        assert_eq!(config.actions, DEFAULT_ACTIONS);
        assert_eq!(config.timeout_seconds, DEFAULT_TIMEOUT_SECONDS);
    }

    #[test]
    fn a_test_event_passes_the_key_filters_and_the_receiver_answers_it() {
        use relay_protocol::decide::TEST_KEY_PREFIX;
        let mut filtered = good();
        filtered.push(("KEY_PREFIX", "in/"));
        filtered.push(("KEY_SUFFIXES", ".pdf"));
        let config = config_of(&filtered).unwrap();
        let notification =
            |key: &str| json!({"action": "PutObject", "object": {"key": key}}).to_string();
        let test_key = format!("{TEST_KEY_PREFIX}abc");
        assert_eq!(config.filter(&notification(&test_key)), None);
        assert_eq!(
            config.filter(&notification("other/a.pdf")),
            Some(Reason::PrefixFiltered)
        );
    }

    #[test]
    fn the_reported_bundle_is_the_packaged_version_or_source() {
        assert_eq!(config_of(&good()).unwrap().bundle, "source");
        let mut packaged = good();
        packaged.push(("WORKER_BUNDLE", "0.1.0+3f9a1c2b7d4e"));
        assert_eq!(config_of(&packaged).unwrap().bundle, "0.1.0+3f9a1c2b7d4e");
        let mut edited = good();
        edited.push(("WORKER_BUNDLE", "mine\r\nx-evil: 1"));
        assert_eq!(config_of(&edited).unwrap().bundle, "source");
    }

    #[test]
    fn the_receiver_timeout_is_a_number_of_seconds_from_1_to_600() {
        for (value, expected) in [
            ("5", Some(5)),
            ("600", Some(600)),
            ("0", None),
            ("1h", None),
        ] {
            let mut v = good();
            v.push(("RECEIVER_TIMEOUT_SECONDS", value));
            let config = config_of(&v);
            match expected {
                Some(seconds) => assert_eq!(config.unwrap().timeout_seconds, seconds),
                None => assert!(
                    matches!(config, Err(e) if e[0].code() == "config_timeout_invalid"),
                    "{value}"
                ),
            }
        }
    }

    #[test]
    fn every_missing_value_is_named() {
        let errors = config_of(&[]).unwrap_err();
        assert_eq!(
            errors,
            [
                ConfigError::Missing("RECEIVER_URL"),
                ConfigError::Missing("INTEGRATION_ID"),
                ConfigError::Missing("EVENT_SOURCE_SECRET")
            ]
        );
    }

    #[test]
    fn plain_http_is_refused_unless_local_and_explicitly_allowed() {
        let with = |url: &'static str, insecure: bool| {
            let mut v = good();
            v[0] = ("RECEIVER_URL", url);
            if insecure {
                v.push(("ALLOW_INSECURE_RECEIVER", "true"));
            }
            config_of(&v)
        };
        assert!(
            matches!(with("http://relay.example.com", false), Err(e) if e[0].code() == "config_receiver_not_https")
        );
        assert!(
            matches!(with("http://relay.example.com", true), Err(e) if e[0].code() == "config_insecure_not_local")
        );
        assert!(
            matches!(with("http://127.0.0.1:8787", false), Err(e) if e[0].code() == "config_receiver_not_https")
        );
        assert!(with("http://127.0.0.1:8787", true).is_ok());
        assert!(with("http://localhost:8787/", true).is_ok());
        assert!(with("http://[::1]:8787", true).is_ok());
        assert!(
            matches!(with("https://", false), Err(e) if e[0].code() == "config_receiver_url_invalid")
        );
        assert!(
            matches!(with("relay.example.com", false), Err(e) if e[0].code() == "config_receiver_url_invalid")
        );
        // Read as `fetch` reads it: scheme and host are case-blind.
        assert_eq!(
            with("HTTPS://Relay.Example.COM/", false)
                .unwrap()
                .receiver_host,
            "relay.example.com"
        );
    }

    #[test]
    fn a_secret_that_is_not_whsec_is_refused_without_showing_it() {
        let mut v = good();
        v[2] = ("EVENT_SOURCE_SECRET", "hunter2");
        let errors = config_of(&v).unwrap_err();
        assert_eq!(errors, [ConfigError::SecretNotWhsec]);
        assert!(!errors[0].to_string().contains("hunter2"));
    }

    #[test]
    fn healthz_counts_each_queue_s_batches_apart_under_its_name() {
        let mut consumed = ConsumedByQueue::new();
        consumed.record(WORKER_QUEUE, 100, 1_000);
        consumed.record(WORKER_DEAD_LETTER_QUEUE, 3, 2_000);
        consumed.record(WORKER_QUEUE, 20, 3_000);
        let queues = serde_json::to_value(Queues::new(&consumed)).unwrap();
        assert_eq!(
            queues["consumed_by_this_isolate"],
            json!({
                WORKER_QUEUE: {"batches": 2, "messages": 120, "last_batch_at_ms": 3_000},
                WORKER_DEAD_LETTER_QUEUE: {"batches": 1, "messages": 3, "last_batch_at_ms": 2_000},
            })
        );
        assert!(queues["dead_letter_replay"]
            .as_str()
            .unwrap()
            .starts_with("delivering"));
        let events_only = ConsumedByQueue::new();
        assert!(
            serde_json::to_value(Queues::new(&events_only)).unwrap()["dead_letter_replay"]
                .as_str()
                .unwrap()
                .starts_with("no batch")
        );
    }

    /// One of each line the worker logs.
    fn every_log_line(counts: &Counts) -> Vec<LogLine<'_>> {
        let lines = vec![
            LogLine::Batch(BatchLine {
                integration_id: Some("int_x"),
                queue: WORKER_QUEUE,
                source: Source::Events.as_str(),
                messages: 3,
                forwarded: 2,
                receiver_status: Some(200),
                reason: None,
                counts,
            }),
            LogLine::MessageFiltered {
                id: "m1",
                reason: "prefix_filtered",
            },
            LogLine::MessageRetry {
                id: "m2",
                reason: "transport_error",
                delay_seconds: 10,
            },
            LogLine::MessageKept {
                id: "m3",
                reason: "bucket_mismatch",
                delay_seconds: 43_200,
            },
            LogLine::MessageDeadLettered {
                id: "m4",
                reason: "bucket_mismatch",
            },
            LogLine::DeadLetterFailed {
                id: "m5",
                reason: "bucket_mismatch",
                error: "e",
            },
            LogLine::ConfigError {
                error: "missing_var",
                detail: "RECEIVER_URL is not set",
            },
            LogLine::ReceiverRefused {
                status: 401,
                reason: "invalid_secret",
                receiver_host: "h",
            },
            LogLine::ReceiverAnswerUnreadable { error: "e" },
            LogLine::ReceiverUnreachable {
                receiver_host: "h",
                error: "e",
            },
            LogLine::ReceiverTimeout {
                receiver_host: "h",
                timeout_seconds: 30,
            },
        ];
        // A new kind of line stops compiling here until it has a sample above.
        for line in &lines {
            match line {
                LogLine::Batch(_)
                | LogLine::MessageFiltered { .. }
                | LogLine::MessageRetry { .. }
                | LogLine::MessageKept { .. }
                | LogLine::MessageDeadLettered { .. }
                | LogLine::DeadLetterFailed { .. }
                | LogLine::ConfigError { .. }
                | LogLine::ReceiverRefused { .. }
                | LogLine::ReceiverAnswerUnreadable { .. }
                | LogLine::ReceiverUnreachable { .. }
                | LogLine::ReceiverTimeout { .. } => {}
            }
        }
        lines
    }

    #[test]
    fn the_customers_guide_lists_every_log_line_with_its_fields() {
        let guide = include_str!("../../docs/customers-r2.md");
        let mut counts = Counts::of("accepted", 1);
        counts.add("filtered", 1);
        counts.add("accepted", 1);
        for line in every_log_line(&counts) {
            let json: serde_json::Value = serde_json::from_str(&line.to_json()).unwrap();
            let fields = json.as_object().unwrap();
            let name = fields["message"].as_str().unwrap();
            let row = guide
                .lines()
                .find(|row| row.starts_with(&format!("| `{name}` |")))
                .unwrap_or_else(|| panic!("docs/customers-r2.md has no row for `{name}`"));
            for field in fields.keys().filter(|field| *field != "message") {
                assert!(
                    row.contains(&format!("`{field}`")),
                    "`{name}`'s row names `{field}`"
                );
            }
        }
    }

    #[test]
    fn a_batch_line_says_where_it_came_from_and_what_became_of_each_message() {
        let mut counts = Counts::of("accepted", 1);
        counts.add("filtered", 1);
        counts.add("accepted", 1);
        let line = every_log_line(&counts).remove(0).to_json();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&line).unwrap(),
            json!({"message": "batch", "integration_id": "int_x", "queue": WORKER_QUEUE,
                   "source": "events", "messages": 3, "forwarded": 2, "receiver_status": 200,
                   "counts": {"accepted": 2, "filtered": 1}})
        );
        // Unconfigured: no integration to name, the reason instead of an answer.
        let retried = Counts::of("retried", 3);
        let unconfigured = LogLine::Batch(BatchLine {
            reason: Some(CONFIG_ERROR),
            ..BatchLine::new(WORKER_QUEUE, Source::Events, 3, &retried)
        });
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&unconfigured.to_json()).unwrap(),
            json!({"message": "batch", "queue": WORKER_QUEUE, "source": "events", "messages": 3,
                   "forwarded": 0, "reason": "config_error", "counts": {"retried": 3}})
        );
    }

    #[test]
    fn filters_name_what_they_drop_and_forward_what_they_cannot_read() {
        let mut v = good();
        v.extend([("KEY_PREFIX", "in/"), ("KEY_SUFFIXES", ".pdf, .png")]);
        let config = config_of(&v).unwrap();
        let n = |action: &str, key: &str| {
            json!({"action": action, "object": {"key": key}, "size": 1.5e3}).to_string()
        };
        assert_eq!(config.filter(&n("PutObject", "in/a.pdf")), None);
        assert_eq!(
            config.filter(&n("DeleteObject", "in/a.pdf")),
            Some(Reason::NotObjectCreated)
        );
        assert_eq!(
            config.filter(&n("PutObject", "out/a.pdf")),
            Some(Reason::PrefixFiltered)
        );
        assert_eq!(
            config.filter(&n("PutObject", "in/a.txt")),
            Some(Reason::SuffixFiltered)
        );
        // A key written with escapes is read as its text.
        assert_eq!(
            config.filter(r#"{"action":"PutObject","object":{"key":"in\/a\u002epdf"}}"#),
            None
        );
        assert_eq!(
            config.filter(r#"{"action":"PutObject","object":{"key":"in\/a\u002etxt"}}"#),
            Some(Reason::SuffixFiltered)
        );
        // What cannot be read is forwarded, for the receiver to name.
        for unreadable in [
            r#"{"unexpected": true}"#,
            r#"{"action": 5, "object": {"key": "in/a.txt"}}"#,
            r#"{"action": "PutObject", "object": {"key": ["in/a.txt"]}}"#,
            r#"{"action": "PutObject", "object": "in/a.txt"}"#,
            "not json",
        ] {
            assert_eq!(config.filter(unreadable), None, "{unreadable}");
        }
    }

    #[test]
    fn backoff_doubles_with_age_from_ten_seconds_to_twelve_hours() {
        let max = MAX_RETRY_SECONDS;
        assert_eq!(backoff_seconds(0.0, max), 10);
        assert_eq!(backoff_seconds(30.2, max), 31);
        assert_eq!(backoff_seconds(600.0, max), 600);
        assert_eq!(backoff_seconds(1e9, max), 43_200);
        assert_eq!(backoff_seconds(f64::NAN, max), 10);
        assert_eq!(backoff_seconds(-5.0, max), 10);
        // MAX_RETRY_DELAY_SECONDS lowers the cap (the Free plan's), never past Cloudflare's.
        assert_eq!(backoff_seconds(1e9, 3600), 3600);
        assert_eq!(backoff_seconds(1e9, 1_000_000), 43_200);
        assert_eq!(retry_cap(None), 43_200);
        assert_eq!(retry_cap(Some("3600".into())), 3600);
        assert_eq!(
            retry_cap(Some("forever".into())),
            3600,
            "broken: the shortest plan's"
        );
    }

    #[test]
    fn the_plan_follows_each_outcome_and_retries_what_has_no_answer() {
        // Parsed from the wire, as the worker reads it; "g" names a reason this worker does not
        // know, as a newer receiver might.
        let results: Answer = serde_json::from_value(json!({"results": [
            {"id": "a", "outcome": "accepted", "reason": null, "job_id": "j"},
            {"id": "b", "outcome": "duplicate", "reason": "duplicate", "job_id": "j"},
            {"id": "c", "outcome": "skipped", "reason": "suffix_filtered", "job_id": null},
            {"id": "d", "outcome": "retry_later", "reason": "paused", "job_id": null},
            {"id": "e", "outcome": "rejected", "reason": "bucket_mismatch", "job_id": null},
            {"id": "g", "outcome": "rejected", "reason": "reason_from_the_future", "job_id": null},
        ]}))
        .unwrap();
        let ids: Vec<String> = ["a", "b", "c", "d", "e", "f", "g"]
            .map(String::from)
            .to_vec();
        let plan = plan(Source::Events, &ids, &results);
        let actions: Vec<&Action> = plan.iter().map(|(_, a)| a).collect();
        assert_eq!(
            actions,
            [
                &Action::Ack {
                    outcome: Outcome::Accepted
                },
                &Action::Ack {
                    outcome: Outcome::Duplicate
                },
                &Action::Ack {
                    outcome: Outcome::Skipped
                },
                &Action::Retry {
                    reason: "paused".into()
                },
                &Action::DeadLetter {
                    reason: "bucket_mismatch".into()
                },
                &Action::Retry {
                    reason: "no_result".into()
                },
                &Action::DeadLetter {
                    reason: "reason_from_the_future".into()
                },
            ]
        );
    }

    #[test]
    fn a_replayed_message_rejected_again_is_kept_and_the_rest_is_planned_as_usual() {
        let results: Answer = serde_json::from_value(json!({"results": [
            {"id": "a", "outcome": "accepted", "reason": null, "job_id": "j"},
            {"id": "e", "outcome": "rejected", "reason": "bucket_mismatch", "job_id": null},
            {"id": "r", "outcome": "retry_later", "reason": "paused", "job_id": null},
        ]}))
        .unwrap();
        let ids: Vec<String> = ["a", "e", "r"].map(String::from).to_vec();
        let source = Source::of(WORKER_DEAD_LETTER_QUEUE);
        assert_eq!(source, Source::DeadLetters);
        let actions: Vec<Action> = plan(source, &ids, &results)
            .into_iter()
            .map(|(_, action)| action)
            .collect();
        assert_eq!(
            actions,
            [
                Action::Ack {
                    outcome: Outcome::Accepted
                },
                Action::Keep {
                    reason: "bucket_mismatch".into()
                },
                Action::Retry {
                    reason: "paused".into()
                },
            ]
        );
        assert_eq!(Source::of("r2-events"), Source::Events);
    }

    /// The last time a message is delivered, in seconds after it was first delivered: each
    /// retry waits [`backoff_seconds`] of the message's age (capped at `max_delay`), plus up to
    /// the batch timeout.
    fn last_delivery_seconds(max_retries: u32, batch_timeout: u32, max_delay: u32) -> f64 {
        let mut age = 0.0;
        for _ in 0..max_retries {
            age += f64::from(backoff_seconds(age, max_delay)) + f64::from(batch_timeout);
        }
        age
    }

    /// On either plan, the last retry `wrangler.toml` allows falls due well inside the
    /// retention the setup creates the queues with (a quarter of it to spare), with the retry
    /// cap the setup gives that plan; a message is dead-lettered, never deleted.
    #[test]
    fn every_retry_in_wrangler_toml_falls_due_inside_the_queue_retention_on_each_plan() {
        use relay_protocol::wire::{CloudflarePlan, WORKER_DEAD_LETTER_QUEUE, WORKER_QUEUE};
        let config: toml::Table = include_str!("../../wrangler.toml").parse().unwrap();
        let consumers = config["queues"]["consumers"].as_array().unwrap();
        let [consumer, replay] = consumers.as_slice() else {
            panic!("wrangler.toml consumes two queues: the events and the dead letters")
        };
        // The dead-letter queue's consumer keeps a message rejected again by retrying it every
        // 12 hours: its retries must outlast the retention, and it has no dead-letter queue of
        // its own (a message past its retries would be deleted).
        assert_eq!(replay["queue"].as_str(), Some(WORKER_DEAD_LETTER_QUEUE));
        assert!(replay.get("dead_letter_queue").is_none());
        let replay_retries = u32::try_from(replay["max_retries"].as_integer().unwrap()).unwrap();
        assert!(replay_retries <= 100);
        let int = |name: &str| u32::try_from(consumer[name].as_integer().unwrap()).unwrap();
        assert_eq!(consumer["queue"].as_str(), Some(WORKER_QUEUE));
        assert_eq!(
            consumer["dead_letter_queue"].as_str(),
            Some(WORKER_DEAD_LETTER_QUEUE)
        );
        // Cloudflare Queues: at most 100 retries.
        assert!(int("max_retries") <= 100);
        for plan in CloudflarePlan::ALL {
            let retention = f64::from(plan.queue_retention_seconds());
            let cap = plan.max_retry_delay_seconds();
            assert!(retention <= 14.0 * 86_400.0);
            assert_eq!(retry_cap(Some(cap.to_string())), cap, "the var accepts it");
            assert!(
                f64::from(replay_retries) * f64::from(cap) >= retention,
                "{plan:?}: the replay consumer's retries outlast the retention"
            );
            let last = last_delivery_seconds(int("max_retries"), int("max_batch_timeout"), cap);
            assert!(
                last <= retention * 0.75,
                "{plan:?}: the last retry falls due after {:.1} h; the queues keep messages {:.1} h",
                last / 3600.0,
                retention / 3600.0
            );
        }
        // The rule bites: with Paid's cap, a Free queue would delete messages still retrying;
        // and Cloudflare's default retention (4 days) is too short for Paid's schedule.
        let paid = last_delivery_seconds(
            int("max_retries"),
            int("max_batch_timeout"),
            CloudflarePlan::Paid.max_retry_delay_seconds(),
        );
        assert!(paid > f64::from(CloudflarePlan::Free.queue_retention_seconds()));
        assert!(paid > 4.0 * 86_400.0 - 86_400.0);
    }

    /// The consumers' concurrency and their delay for a batch the worker crashed on (an uncaught
    /// error retries the whole batch after `retry_delay`, without the worker's own backoff).
    #[test]
    fn the_consumers_bound_their_load_and_a_crash_does_not_burn_the_retries() {
        use relay_protocol::wire::{MAX_EVENTS_PER_REQUEST, WORKER_QUEUE_RETENTION_SECONDS};
        let config: toml::Table = include_str!("../../wrangler.toml").parse().unwrap();
        let consumers = config["queues"]["consumers"].as_array().unwrap();
        let int = |consumer: &toml::Value, name: &str| {
            let value = consumer.get(name).and_then(toml::Value::as_integer);
            u64::try_from(value.unwrap_or_else(|| panic!("{name} is set"))).unwrap()
        };
        for consumer in consumers {
            // Cloudflare: at most 250 concurrent invocations; a delay of at most 12 hours.
            assert!((1..=250).contains(&int(consumer, "max_concurrency")));
            assert!(int(consumer, "retry_delay") <= 12 * 3600);
        }
        let events = &consumers[0];
        // Each invocation is one request of at most a batch: the receiver holds at most this
        // many events of one bucket at once.
        let in_flight = int(events, "max_concurrency") * int(events, "max_batch_size");
        assert!(int(events, "max_batch_size") <= MAX_EVENTS_PER_REQUEST as u64);
        assert!(in_flight <= 1000, "{in_flight} events in flight");
        // A worker crashing on every batch moves messages to the dead-letter queue only after an
        // hour or more (time to notice and redeploy), and well inside the retention.
        let crash_budget = int(events, "retry_delay") * int(events, "max_retries");
        assert!(crash_budget >= 3600, "{crash_budget} s");
        assert!(crash_budget <= u64::from(WORKER_QUEUE_RETENTION_SECONDS) - 86_400);
    }

    #[test]
    fn the_batch_id_is_stable_and_differs_between_batches() {
        let a: Vec<String> = vec!["m1".into(), "m2".into()];
        let b: Vec<String> = vec!["m1".into(), "m3".into()];
        assert_eq!(batch_id(&a), batch_id(&a.clone()));
        assert_ne!(batch_id(&a), batch_id(&b));
        assert!(batch_id(&a).starts_with("batch_"));
    }
}

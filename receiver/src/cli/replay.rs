//! `replay eventbridge` and `replay ingest`: the two dead-letter queues on SQS, sent through
//! again. (The worker replays its own, `r2-events-dlq`, by consuming it: see the README.)
//!
//! - **eventbridge**: each dead-lettered event goes through the receiver's own handler, in
//!   process, as the API destination would send it (the integration's bearer secret): the
//!   same decision, ledger, queue, logs and usage. A message is deleted only once its event is
//!   final and harmless to forget (accepted, duplicate, skipped); a rejected or retry-later one
//!   is kept and counted under its reason. Replaying twice adds no job: the ledger answers
//!   `duplicate`.
//! - **ingest**: the pipeline's failed jobs are moved back to the ingest queue: each is sent
//!   (same body and attributes; on a FIFO queue the same group, and a deduplication id made of
//!   the job id and the dead-lettered message's id, so a move retried within SQS's 5 minutes is
//!   dropped) and only then deleted from the dead-letter queue.
//!
//! Messages are received hidden for 5 minutes; what a run keeps is made visible again at its end,
//! for the next run. A kept message that comes round again within the run is not put through
//! twice, and a run ends when the queue has nothing else.

use super::args::{ReplayCommand, ReplayEventBridgeArgs, ReplayIngestArgs};
use super::commands::{load, master_key, CliResult};
use super::print;
use crate::auth::Sender;
use crate::backend::error_chain;
use crate::handler::Relay;
use crate::item::{decide_one, parse_events};
use crate::wiring::{aws_config, BackendArgs, Wired};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use chrono::Utc;
use http::{HeaderMap, HeaderValue, Method};
use relay_protocol::wire::{self, Results, BEARER_PREFIX, HEADER_AUTHORIZATION};
use relay_protocol::{secret, Outcome};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// How long a received message stays hidden from other readers: longer than a run takes to
/// decide a batch.
const VISIBILITY_SECONDS: i32 = 300;
/// `ReceiveMessage`'s long-poll wait: an empty answer after it means the queue is drained.
const WAIT_SECONDS: i32 = 2;

/// What a replay did: messages per outcome and reason, deleted and kept.
#[derive(Debug, Default, Serialize)]
pub struct ReplayTally {
    pub messages: u64,
    /// `<outcome>` or `<outcome>/<reason>` → count.
    pub outcomes: BTreeMap<String, u64>,
    pub deleted: u64,
    pub kept: u64,
    pub dry_run: bool,
}

impl ReplayTally {
    fn count(&mut self, word: String) {
        *self.outcomes.entry(word).or_default() += 1;
    }
}

pub async fn replay(
    wired: Wired,
    backend: &BackendArgs,
    command: ReplayCommand,
    json: bool,
) -> CliResult {
    match command {
        ReplayCommand::Eventbridge(args) => eventbridge(wired, args, json).await,
        ReplayCommand::Ingest(args) => ingest(backend, args, json).await,
    }
}

/// A client for the queue at `url`, in the queue's own region when the URL names one
/// (`https://sqs.<region>.amazonaws.com/…`).
async fn sqs_for(url: &str) -> Client {
    let config = aws_config().await;
    let region = url
        .strip_prefix("https://sqs.")
        .and_then(|rest| rest.split_once('.'))
        .map(|(region, _)| region.to_owned());
    let mut builder = aws_sdk_sqs::config::Builder::from(&config);
    if let Some(region) = region {
        builder = builder.region(aws_sdk_sqs::config::Region::new(region));
    }
    Client::from_conf(builder.build())
}

fn sqs_error<'a, E: std::error::Error>(
    what: &'static str,
    url: &'a str,
) -> impl FnOnce(E) -> String + 'a {
    move |e| format!("{what} {url}: {}", error_chain(&e))
}

async fn receive(client: &Client, url: &str) -> Result<Vec<Message>, String> {
    let out = client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(WAIT_SECONDS)
        .visibility_timeout(VISIBILITY_SECONDS)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(sqs_error("cannot receive from", url))?;
    Ok(out.messages.unwrap_or_default())
}

async fn delete(client: &Client, url: &str, handles: &[String]) -> Result<(), String> {
    for chunk in handles.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = client
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(sqs_error("cannot delete from", url))?;
        if let Some(failed) = out.failed.first() {
            return Err(format!("cannot delete from {url}: {}", failed.code()));
        }
    }
    Ok(())
}

/// Makes kept messages visible again at once, for the next run.
async fn release(client: &Client, url: &str, handles: &[String]) -> Result<(), String> {
    for chunk in handles.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, handle)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        client
            .change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(sqs_error("cannot release messages on", url))?;
    }
    Ok(())
}

/// What the receiver answers one dead-lettered event: its outcome word, and whether the message
/// may go.
enum Answer {
    Final(String),
    Keep(String),
}

async fn eventbridge(wired: Wired, args: ReplayEventBridgeArgs, json: bool) -> CliResult {
    let integration = load(wired.backends.store.as_ref(), &args.integration).await?;
    let key = master_key(&wired).await?;
    let bearer = secret::event_source_key(key.as_bytes(), &integration.id, integration.generation)
        .to_secret();
    let mut headers = HeaderMap::new();
    let authorization = HeaderValue::from_str(&format!("{BEARER_PREFIX}{bearer}"))
        .map_err(|_| "the secret is not a header value".to_owned())?;
    headers.insert(HEADER_AUTHORIZATION, authorization);
    let path = wire::events_path(&integration.id);
    let relay = Arc::new(
        Relay::new(wired.backends, wired.keys, false)
            .with_lookup(Arc::new(crate::backend::lookup::HeadObjects::new())),
    );
    let client = sqs_for(&args.dlq_url).await;
    let url = args.dlq_url.as_str();

    let mut tally = ReplayTally {
        dry_run: args.dry_run,
        ..ReplayTally::default()
    };
    // Kept messages by id, with their latest receipt handle: one that comes round again (its
    // visibility ran out in a long run) is not put through twice, and once only kept ones come
    // back, the queue is done.
    let mut kept: HashMap<String, String> = HashMap::new();
    loop {
        let received = receive(&client, url).await?;
        let mut messages = Vec::new();
        for message in received {
            let id = message.message_id().unwrap_or_default();
            match (kept.get_mut(id), message.receipt_handle()) {
                (Some(handle), Some(newer)) => *handle = newer.to_owned(),
                _ => messages.push(message),
            }
        }
        if messages.is_empty() {
            break;
        }
        // A batch's events go through at once, as EventBridge's concurrent calls would.
        let answers = futures::future::join_all(messages.iter().map(|message| async {
            let body = message.body().unwrap_or_default();
            if args.dry_run {
                return decide_only(&integration, body);
            }
            let response = relay
                .handle_parts(&Method::POST, &path, &headers, body.as_bytes())
                .await;
            read_answer(response.status().as_u16(), response.body())
        }))
        .await;
        let mut done = Vec::new();
        for (message, answer) in messages.iter().zip(answers) {
            let Some(handle) = message.receipt_handle() else {
                continue;
            };
            tally.messages += 1;
            match answer {
                Answer::Final(word) if !args.dry_run => {
                    tally.count(word);
                    done.push(handle.to_owned());
                }
                Answer::Final(word) => {
                    tally.count(word);
                    keep(&mut kept, message, handle);
                }
                Answer::Keep(word) => {
                    let cause = message
                        .message_attributes()
                        .and_then(|a| a.get("ERROR_CODE"))
                        .and_then(|v| v.string_value())
                        .unwrap_or("-");
                    tracing::info!(
                        message = "replay_kept",
                        integration_id = %integration.id,
                        id = message.message_id().unwrap_or_default(),
                        outcome = %word,
                        dead_lettered_for = cause,
                        dry_run = args.dry_run,
                    );
                    tally.count(word);
                    keep(&mut kept, message, handle);
                }
            }
        }
        delete(&client, url, &done).await?;
        tally.deleted += done.len() as u64;
    }
    let kept: Vec<String> = kept.into_values().collect();
    release(&client, url, &kept).await?;
    tally.kept = kept.len() as u64;
    print::print_replay("eventbridge", url, &tally, json);
    if tally.kept > 0 && !args.dry_run {
        return Err(format!(
            "{} messages kept on {url}: their events are not final yet (see the counts)",
            tally.kept
        ));
    }
    Ok(())
}

fn keep(kept: &mut HashMap<String, String>, message: &Message, handle: &str) {
    let id = message.message_id().unwrap_or(handle);
    kept.insert(id.to_owned(), handle.to_owned());
}

/// The answer a handled request gives one EventBridge event.
fn read_answer(status: u16, body: &[u8]) -> Answer {
    #[derive(serde::Deserialize)]
    struct ErrorWord {
        error: String,
    }
    if let Ok(results) = serde_json::from_slice::<Results>(body) {
        if let Some(result) = results.results.first() {
            let word = match result.reason {
                Some(reason) => format!("{}/{reason}", result.outcome),
                None => result.outcome.to_string(),
            };
            return match result.outcome {
                Outcome::Accepted | Outcome::Duplicate | Outcome::Skipped => Answer::Final(word),
                Outcome::Rejected | Outcome::RetryLater => Answer::Keep(word),
            };
        }
    }
    match serde_json::from_slice::<ErrorWord>(body) {
        Ok(refused) => Answer::Keep(format!("refused/{}", refused.error)),
        Err(_) => Answer::Keep(format!("refused/http_{status}")),
    }
}

/// `--dry-run`: the decision alone (no ledger: an event that would be accepted may turn out a
/// duplicate).
fn decide_only(integration: &relay_protocol::Integration, body: &str) -> Answer {
    let events = match parse_events(Sender::EventBridge, body.as_bytes()) {
        Ok(events) => events,
        Err(refusal) => return Answer::Keep(format!("refused/{}", refusal.reason)),
    };
    let Some((id, event)) = events.into_iter().next() else {
        return Answer::Keep("refused/malformed_request".into());
    };
    let item = decide_one(integration, id, event, Utc::now());
    let word = match item.reason {
        Some(reason) => format!("{}/{reason}", item.outcome),
        None => item.outcome.to_string(),
    };
    Answer::Final(word)
}

async fn ingest(backend: &BackendArgs, args: ReplayIngestArgs, json: bool) -> CliResult {
    let target = backend
        .queue_url
        .as_deref()
        .filter(|url| !url.is_empty())
        .ok_or_else(|| {
            format!(
                "replay ingest moves jobs to the ingest queue: set {} (or --queue-url)",
                crate::env::QUEUE_URL
            )
        })?;
    let client = sqs_for(&args.dlq_url).await;
    let source = args.dlq_url.as_str();
    let mut tally = ReplayTally {
        dry_run: args.dry_run,
        ..ReplayTally::default()
    };
    if args.dry_run {
        let out = client
            .get_queue_attributes()
            .queue_url(source)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(sqs_error("cannot read", source))?;
        let waiting = out
            .attributes()
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        tally.messages = waiting;
        tally.kept = waiting;
        print::print_replay("ingest", source, &tally, json);
        return Ok(());
    }
    let fifo = target.ends_with(".fifo");
    loop {
        let messages = receive(&client, source).await?;
        if messages.is_empty() {
            break;
        }
        tally.messages += messages.len() as u64;
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, message)| move_entry(i, message, fifo))
            .collect::<Result<Vec<_>, String>>()?;
        let out = client
            .send_message_batch()
            .queue_url(target)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(sqs_error("cannot send to", target))?;
        let sent: Vec<String> = out
            .successful()
            .iter()
            .filter_map(|ok| ok.id().parse::<usize>().ok())
            .filter_map(|i| messages.get(i)?.receipt_handle().map(str::to_owned))
            .collect();
        for failed in out.failed() {
            tracing::warn!(
                message = "replay_move_failed",
                code = failed.code(),
                detail = failed.message().unwrap_or_default()
            );
        }
        delete(&client, source, &sent).await?;
        tally.deleted += sent.len() as u64;
        tally.kept += (messages.len() - sent.len()) as u64;
    }
    tally.outcomes.insert("moved".into(), tally.deleted);
    print::print_replay("ingest", source, &tally, json);
    match tally.kept {
        0 => Ok(()),
        kept => Err(format!(
            "{kept} jobs could not be moved and stay on {source}"
        )),
    }
}

/// A dead-lettered job as it goes back to the ingest queue.
fn move_entry(
    index: usize,
    message: &Message,
    fifo: bool,
) -> Result<SendMessageBatchRequestEntry, String> {
    let mut entry = SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(message.body().unwrap_or_default())
        .set_message_attributes(message.message_attributes().cloned());
    if fifo {
        let job: relay_protocol::IngestJob =
            serde_json::from_str(message.body().unwrap_or_default())
                .map_err(|e| format!("a dead-lettered message is not an ingest job: {e}"))?;
        let group = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .cloned()
            .unwrap_or_else(|| job.integration_id.clone());
        entry = entry
            .message_group_id(group)
            .message_deduplication_id(format!(
                "{}-{}",
                job.job_id,
                message.message_id().unwrap_or_default()
            ));
    }
    entry.build().map_err(|e| e.to_string())
}

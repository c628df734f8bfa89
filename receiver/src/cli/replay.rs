//! `replay eventbridge` and `replay ingest`: the two dead-letter queues on SQS, sent through
//! again. (The worker replays its own, `r2-events-dlq`, by consuming it: see docs/operators.md.)
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
//! Messages are received hidden for 5 minutes ([`DeadLetters`]); what a run keeps is made
//! visible again at its end, for the next run. A kept message that comes round again within the run is not put through
//! twice, and a run ends when the queue has nothing else.

use super::args::{ReplayCommand, ReplayEventBridgeArgs, ReplayIngestArgs};
use super::common::{keyring, load, CliResult, Printer, Report};
use crate::auth::Sender;
use crate::backend::aws::Purpose;
use crate::backend::deadletters::SqsDeadLetters;
use crate::backend::{DeadLetter, DeadLetters};
use crate::events::{EventKept, JobKept};
use crate::handler::Relay;
use crate::item::{decide_one, parse_events};
use crate::wiring::{BackendArgs, Wired};
use anyhow::Context;
use chrono::Utc;
use http::{HeaderMap, HeaderValue, Method};
use relay_protocol::wire::{self, Results, BEARER_PREFIX, HEADER_AUTHORIZATION};
use relay_protocol::Disposition;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write};
use std::sync::Arc;

/// What a replay did: messages per outcome and reason, deleted and kept.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Replayed {
    messages: u64,
    /// `<outcome>` or `<outcome>/<reason>` → count.
    outcomes: BTreeMap<String, u64>,
    deleted: u64,
    kept: u64,
    dry_run: bool,
    /// `eventbridge` or `ingest`.
    queue: &'static str,
    queue_url: String,
}

impl Replayed {
    fn new(queue: &'static str, url: &str, dry_run: bool) -> Self {
        Replayed {
            queue,
            queue_url: url.to_owned(),
            dry_run,
            ..Replayed::default()
        }
    }

    fn count(&mut self, word: String) {
        *self.outcomes.entry(word).or_default() += 1;
    }
}

impl Report for Replayed {
    fn render(&self, out: &mut dyn Write) -> fmt::Result {
        let verb = if self.dry_run {
            "Would replay"
        } else {
            "Replayed"
        };
        writeln!(
            out,
            "{verb} {} messages from {}:",
            self.messages, self.queue_url
        )?;
        for (word, count) in &self.outcomes {
            writeln!(out, "  {word:<36} {count:>8}")?;
        }
        if !self.dry_run {
            writeln!(out, "deleted {}, kept {}", self.deleted, self.kept)?;
        }
        Ok(())
    }

    fn failure(&self) -> Option<String> {
        if self.kept == 0 || self.dry_run {
            return None;
        }
        let (kept, url) = (self.kept, &self.queue_url);
        Some(match self.queue {
            "ingest" => format!("{kept} jobs could not be moved and stay on {url}"),
            _ => format!(
                "{kept} messages kept on {url}: their events are not final yet (see the counts)"
            ),
        })
    }
}

pub(crate) async fn replay(
    wired: Wired,
    printer: Printer,
    backend: &BackendArgs,
    command: ReplayCommand,
) -> CliResult {
    let config = wired.aws.for_purpose(Purpose::Backends).await;
    let report = match command {
        ReplayCommand::Eventbridge(args) => {
            let queue = SqsDeadLetters::new(&config, &args.dlq_url);
            eventbridge(wired, &queue, args).await?
        }
        ReplayCommand::Ingest(args) => {
            let queue = SqsDeadLetters::new(&config, &args.dlq_url);
            ingest(&queue, backend, args).await?
        }
    };
    printer.emit(&report)
}

/// What the receiver answers one dead-lettered event: its outcome word, and whether the message
/// may go.
enum Answer {
    Final(String),
    Keep(String),
}

async fn eventbridge(
    wired: Wired,
    queue: &dyn DeadLetters,
    args: ReplayEventBridgeArgs,
) -> CliResult<Replayed> {
    let integration = load(wired.backends.store.as_ref(), &args.integration).await?;
    let bearer = keyring(&wired).await?.current_secret(&integration).await?;
    let mut headers = HeaderMap::new();
    let authorization = HeaderValue::from_str(&format!("{BEARER_PREFIX}{bearer}"))
        .ok()
        .context("the secret is not a header value")?;
    headers.insert(HEADER_AUTHORIZATION, authorization);
    let path = wire::events_path(&integration.id);
    let relay = Arc::new(Relay::new(wired.backends, wired.keys).with_lookup(wired.lookups));
    let mut tally = Replayed::new("eventbridge", queue.url(), args.dry_run);
    // Kept messages by id, with their latest receipt handle: one that comes round again (its
    // visibility ran out in a long run) is not put through twice, and once only kept ones come
    // back, the queue is done.
    let mut kept: HashMap<String, String> = HashMap::new();
    loop {
        let received = queue.receive().await?;
        let mut messages = Vec::new();
        for letter in received {
            match kept.get_mut(&letter.id) {
                Some(receipt) => *receipt = letter.receipt,
                None => messages.push(letter),
            }
        }
        if messages.is_empty() {
            break;
        }
        // A batch's events go through at once, as EventBridge's concurrent calls would.
        let answers = futures::future::join_all(messages.iter().map(|letter| async {
            let body = letter.body.as_str();
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
        for (letter, answer) in messages.iter().zip(answers) {
            tally.messages += 1;
            match answer {
                Answer::Final(word) if !args.dry_run => {
                    tally.count(word);
                    done.push(letter.receipt.clone());
                }
                Answer::Final(word) => {
                    tally.count(word);
                    kept.insert(letter.id.clone(), letter.receipt.clone());
                }
                Answer::Keep(word) => {
                    let cause = letter
                        .attributes
                        .get("ERROR_CODE")
                        .map_or("-", String::as_str);
                    EventKept {
                        integration_id: &integration.id,
                        id: &letter.id,
                        outcome: &word,
                        dead_lettered_for: cause,
                        dry_run: args.dry_run,
                    }
                    .emit();
                    tally.count(word);
                    kept.insert(letter.id.clone(), letter.receipt.clone());
                }
            }
        }
        queue.delete(&done).await?;
        tally.deleted += done.len() as u64;
    }
    let kept: Vec<String> = kept.into_values().collect();
    queue.release(&kept).await?;
    tally.kept = kept.len() as u64;
    Ok(tally)
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
            return match result.outcome.disposition() {
                Disposition::Ack => Answer::Final(word),
                Disposition::Retry | Disposition::DeadLetter => Answer::Keep(word),
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

async fn ingest(
    queue: &dyn DeadLetters,
    backend: &BackendArgs,
    args: ReplayIngestArgs,
) -> CliResult<Replayed> {
    let target = backend
        .queue_url
        .as_deref()
        .filter(|url| !url.is_empty())
        .with_context(|| {
            format!(
                "replay ingest moves jobs to the ingest queue: set {} (or --queue-url)",
                crate::env::QUEUE_URL
            )
        })?;
    let mut tally = Replayed::new("ingest", queue.url(), args.dry_run);
    if args.dry_run {
        let waiting = queue.waiting().await?;
        tally.messages = waiting;
        tally.kept = waiting;
        return Ok(tally);
    }
    let mut kept = Vec::new();
    loop {
        let messages: Vec<DeadLetter> = queue.receive().await?;
        if messages.is_empty() {
            break;
        }
        tally.messages += messages.len() as u64;
        let moved = queue.move_to(target, &messages).await?;
        queue.delete(&moved.sent).await?;
        tally.deleted += moved.sent.len() as u64;
        for (letter, why) in moved.kept {
            JobKept {
                id: &letter.id,
                outcome: format!("kept/{why}"),
                dry_run: false,
            }
            .emit();
            tally.count(format!("kept/{why}"));
            kept.push(letter.receipt);
        }
    }
    // What stays is visible again at once, for a person to look at or the next run.
    queue.release(&kept).await?;
    tally.kept = kept.len() as u64;
    tally.outcomes.insert("moved".into(), tally.deleted);
    Ok(tally)
}

//! SQS dead-letter queues, the adapter of the [`DeadLetters`] port: messages received hidden for
//! a while, deleted once handled, made visible again when kept, or moved to another queue.
//!
//! A message is received hidden for [`VISIBILITY_SECONDS`]; `ReceiveMessage` long-polls for
//! [`WAIT_SECONDS`], so an empty answer means the queue is drained. A move sends each message
//! (same body and attributes; on a FIFO target the same group, and a deduplication id made of
//! the job id and the dead-lettered message's id, so a move retried within SQS's 5 minutes is
//! dropped) before it is deleted.

use super::{error_chain, BackendError, DeadLetter, DeadLetters, Moved};
use async_trait::async_trait;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;

/// How long a received message stays hidden from other readers: longer than a run takes to
/// decide a batch.
const VISIBILITY_SECONDS: i32 = 300;
/// `ReceiveMessage`'s long-poll wait: an empty answer after it means the queue is drained.
const WAIT_SECONDS: i32 = 2;
const BACKEND: &str = "sqs";

/// One dead-letter queue on SQS.
pub struct SqsDeadLetters {
    client: Client,
    url: String,
}

fn failed<E: std::error::Error>(what: &'static str, url: &str) -> impl FnOnce(E) -> BackendError {
    let url = url.to_owned();
    move |e| BackendError::new(BACKEND, format!("{what} {url}: {}", error_chain(&e)))
}

impl SqsDeadLetters {
    /// The queue at `url`, through a client in the queue's own region when the URL names one
    /// (`https://sqs.<region>.amazonaws.com/…`).
    pub fn new(config: &aws_config::SdkConfig, url: &str) -> Self {
        let region = url
            .strip_prefix("https://sqs.")
            .and_then(|rest| rest.split_once('.'))
            .map(|(region, _)| region.to_owned());
        let mut builder = aws_sdk_sqs::config::Builder::from(config);
        if let Some(region) = region {
            builder = builder.region(aws_sdk_sqs::config::Region::new(region));
        }
        SqsDeadLetters {
            client: Client::from_conf(builder.build()),
            url: url.to_owned(),
        }
    }
}

#[async_trait]
impl DeadLetters for SqsDeadLetters {
    fn url(&self) -> &str {
        &self.url
    }

    async fn receive(&self) -> Result<Vec<DeadLetter>, BackendError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .wait_time_seconds(WAIT_SECONDS)
            .visibility_timeout(VISIBILITY_SECONDS)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(failed("cannot receive from", &self.url))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(letter)
            .collect())
    }

    async fn waiting(&self) -> Result<u64, BackendError> {
        let count = QueueAttributeName::ApproximateNumberOfMessages;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(count.clone())
            .send()
            .await
            .map_err(failed("cannot read", &self.url))?;
        Ok(out
            .attributes()
            .and_then(|a| a.get(&count))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }

    async fn delete(&self, handles: &[String]) -> Result<(), BackendError> {
        for chunk in handles.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| BackendError::new(BACKEND, e))?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(failed("cannot delete from", &self.url))?;
            if let Some(failed) = out.failed.first() {
                let detail = format!("cannot delete from {}: {}", self.url, failed.code());
                return Err(BackendError::new(BACKEND, detail));
            }
        }
        Ok(())
    }

    async fn release(&self, handles: &[String]) -> Result<(), BackendError> {
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
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| BackendError::new(BACKEND, e))?;
            self.client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(failed("cannot release messages on", &self.url))?;
        }
        Ok(())
    }

    /// Up to 10 letters (one `SendMessageBatch`). A letter that cannot go as it is (on a FIFO
    /// queue, one that is not an ingest job) is kept by name; the others go.
    async fn move_to(&self, target: &str, letters: &[DeadLetter]) -> Result<Moved, BackendError> {
        let fifo = target.ends_with(".fifo");
        let mut moved = Moved::default();
        let mut entries = Vec::new();
        let mut sending = Vec::new();
        for letter in letters {
            match move_entry(entries.len(), letter, fifo) {
                Ok(entry) => {
                    entries.push(entry);
                    sending.push(letter);
                }
                Err(why) => moved.kept.push((letter.clone(), why.to_owned())),
            }
        }
        if entries.is_empty() {
            return Ok(moved);
        }
        let out = self
            .client
            .send_message_batch()
            .queue_url(target)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(failed("cannot send to", target))?;
        for failure in out.failed() {
            if let Some(letter) = failure
                .id()
                .parse::<usize>()
                .ok()
                .and_then(|i| sending.get(i))
            {
                moved
                    .kept
                    .push(((*letter).clone(), failure.code().to_owned()));
            }
        }
        moved.sent = out
            .successful()
            .iter()
            .filter_map(|ok| ok.id().parse::<usize>().ok())
            .filter_map(|i| Some(sending.get(i)?.receipt.clone()))
            .collect();
        Ok(moved)
    }
}

/// A received message as a [`DeadLetter`]; one without a receipt handle cannot be handled.
fn letter(message: Message) -> Option<DeadLetter> {
    let attributes = message
        .message_attributes()
        .into_iter()
        .flatten()
        .filter_map(|(name, value)| Some((name.clone(), value.string_value()?.to_owned())))
        .collect();
    let group = message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
        .cloned();
    Some(DeadLetter {
        receipt: message.receipt_handle()?.to_owned(),
        id: message.message_id().unwrap_or_default().to_owned(),
        body: message.body().unwrap_or_default().to_owned(),
        attributes,
        group,
    })
}

/// A dead-lettered job as it goes back to the ingest queue, or why it cannot go as it is.
fn move_entry(
    index: usize,
    letter: &DeadLetter,
    fifo: bool,
) -> Result<SendMessageBatchRequestEntry, &'static str> {
    let mut entry = SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(&letter.body);
    for (name, value) in &letter.attributes {
        let value = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .map_err(|_| "bad_attribute")?;
        entry = entry.message_attributes(name, value);
    }
    if fifo {
        // A FIFO queue needs the job's id for deduplication: a message that is no ingest job
        // cannot be moved there as it is.
        let job: relay_protocol::IngestJob =
            serde_json::from_str(&letter.body).map_err(|_| "not_an_ingest_job")?;
        let group = letter
            .group
            .clone()
            .unwrap_or_else(|| job.integration_id.clone());
        entry = entry
            .message_group_id(group)
            .message_deduplication_id(format!("{}-{}", job.job_id, letter.id));
    }
    entry.build().map_err(|_| "bad_entry")
}

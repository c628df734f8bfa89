//! SQS dead-letter queues, as a replay reads them: messages received hidden for a while, deleted
//! once handled, made visible again when kept, or moved to another queue.
//!
//! A message is received hidden for [`VISIBILITY_SECONDS`]; `ReceiveMessage` long-polls for
//! [`WAIT_SECONDS`], so an empty answer means the queue is drained. A move sends each message
//! (same body and attributes; on a FIFO target the same group, and a deduplication id made of
//! the job id and the dead-lettered message's id, so a move retried within SQS's 5 minutes is
//! dropped) before it is deleted.

use super::{error_chain, BackendError};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;

/// How long a received message stays hidden from other readers: longer than a run takes to
/// decide a batch.
const VISIBILITY_SECONDS: i32 = 300;
/// `ReceiveMessage`'s long-poll wait: an empty answer after it means the queue is drained.
const WAIT_SECONDS: i32 = 2;
const BACKEND: &str = "sqs";

/// One dead-letter queue.
pub struct DeadLetterQueue {
    client: Client,
    url: String,
}

fn failed<E: std::error::Error>(what: &'static str, url: &str) -> impl FnOnce(E) -> BackendError {
    let url = url.to_owned();
    move |e| BackendError::new(BACKEND, format!("{what} {url}: {}", error_chain(&e)))
}

impl DeadLetterQueue {
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
        DeadLetterQueue {
            client: Client::from_conf(builder.build()),
            url: url.to_owned(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Up to 10 messages, hidden from other readers for a while; none when drained.
    pub async fn receive(&self) -> Result<Vec<Message>, BackendError> {
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
        Ok(out.messages.unwrap_or_default())
    }

    /// How many messages wait (SQS's approximate count).
    pub async fn waiting(&self) -> Result<u64, BackendError> {
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

    /// Deletes handled messages by their receipt handles.
    pub async fn delete(&self, handles: &[String]) -> Result<(), BackendError> {
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

    /// Makes kept messages visible again at once, for the next run.
    pub async fn release(&self, handles: &[String]) -> Result<(), BackendError> {
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

    /// Sends up to 10 received messages to the queue at `target`; the receipt handles of those
    /// sent (to delete here), in order.
    pub async fn move_to(
        &self,
        target: &str,
        messages: &[Message],
    ) -> Result<Vec<String>, BackendError> {
        let fifo = target.ends_with(".fifo");
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, message)| move_entry(i, message, fifo))
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(target)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(failed("cannot send to", target))?;
        for failed in out.failed() {
            tracing::warn!(
                message = "replay_move_failed",
                code = failed.code(),
                detail = failed.message().unwrap_or_default()
            );
        }
        Ok(out
            .successful()
            .iter()
            .filter_map(|ok| ok.id().parse::<usize>().ok())
            .filter_map(|i| messages.get(i)?.receipt_handle().map(str::to_owned))
            .collect())
    }
}

/// A dead-lettered job as it goes back to the ingest queue.
fn move_entry(
    index: usize,
    message: &Message,
    fifo: bool,
) -> Result<SendMessageBatchRequestEntry, BackendError> {
    let mut entry = SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(message.body().unwrap_or_default())
        .set_message_attributes(message.message_attributes().cloned());
    if fifo {
        let job: relay_protocol::IngestJob =
            serde_json::from_str(message.body().unwrap_or_default()).map_err(|e| {
                BackendError::new(
                    BACKEND,
                    format!("a dead-lettered message is not an ingest job: {e}"),
                )
            })?;
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
    entry.build().map_err(|e| BackendError::new(BACKEND, e))
}

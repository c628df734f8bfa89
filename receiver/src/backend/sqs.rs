//! SQS: the ingest queue on AWS.
//!
//! Jobs go out with `SendMessageBatch`, 10 per call and up to 10 calls at once (one at a time to
//! a FIFO queue), each with the message attributes `integration_id` and `provider`. Entries SQS
//! reports as failed are sent once more; what still fails is answered per job, so the handler
//! releases those claims and answers `retry_later`.
//! An entry failed with `SenderFault` is not sent again: SQS refuses it as it is, and the event is
//! answered `rejected` / `queue_refused`, to be dead-lettered and looked at.
//! A test event's probe reads the queue's ARN (`GetQueueAttributes`), which sends nothing.
//! A FIFO queue (URL ending in `.fifo`) gets `MessageGroupId = integration_id` and
//! `MessageDeduplicationId = job_id`, so even a redelivery within SQS's dedup window is dropped.

use super::{BackendError, Delivery, Queue};
use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;
use futures::stream::{self, StreamExt};
use relay_protocol::job::{JobSchema, ATTRIBUTE_INTEGRATION_ID, ATTRIBUTE_PROVIDER};
use relay_protocol::IngestJob;

const BACKEND: &str = "sqs";
/// `SendMessageBatch`'s limit.
pub const BATCH_MAX: usize = 10;
/// `SendMessageBatch` calls in flight at once for one request to a standard queue: a worker's
/// 100-event batch waits one round trip, not ten. A FIFO queue's go one after another, so a
/// request's jobs keep their order in their group.
const SEND_CONCURRENCY: usize = 10;

pub struct SqsQueue {
    client: Client,
    queue_url: String,
    fifo: bool,
    /// The schema jobs are written in (`--job-schema`).
    schema: JobSchema,
}

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError::new(BACKEND, e)
}

fn sdk_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> BackendError {
    BackendError::caused_by(BACKEND, e)
}

fn attribute(value: &str) -> Result<MessageAttributeValue, BackendError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(err)
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        let queue_url = queue_url.into();
        SqsQueue {
            fifo: queue_url.ends_with(".fifo"),
            client,
            queue_url,
            schema: JobSchema::default(),
        }
    }

    /// Whether the queue hands out messages in the order they were sent (FIFO, per group).
    pub fn keeps_order(&self) -> bool {
        self.fifo
    }

    /// Writes jobs in `schema` (v2 unless told v1).
    #[must_use]
    pub fn with_job_schema(mut self, schema: JobSchema) -> Self {
        self.schema = schema;
        self
    }

    fn entry(
        &self,
        id: usize,
        job: &IngestJob,
    ) -> Result<SendMessageBatchRequestEntry, BackendError> {
        let body = job.message(self.schema);
        let mut entry = SendMessageBatchRequestEntry::builder()
            .id(id.to_string())
            .message_body(body)
            .message_attributes(ATTRIBUTE_INTEGRATION_ID, attribute(&job.integration_id)?)
            .message_attributes(ATTRIBUTE_PROVIDER, attribute(job.provider.as_str())?);
        if self.fifo {
            entry = entry
                .message_group_id(&job.integration_id)
                .message_deduplication_id(&job.job_id);
        }
        entry.build().map_err(err)
    }

    /// [`Self::send_chunk`]; a chunk that could not be sent at all fails its jobs alone (the
    /// ones already on the queue stay accepted).
    async fn send_chunk_or_fail(&self, jobs: &[&IngestJob]) -> Vec<Delivery> {
        self.send_chunk(jobs)
            .await
            .unwrap_or_else(|e| vec![Delivery::Failed(e.to_string()); jobs.len()])
    }

    /// Sends up to 10 jobs; answers per job, retrying failed entries once.
    async fn send_chunk(&self, jobs: &[&IngestJob]) -> Result<Vec<Delivery>, BackendError> {
        let mut answers = vec![Delivery::Failed("not sent".into()); jobs.len()];
        let mut todo: Vec<usize> = (0..jobs.len()).collect();
        for _attempt in 0..2 {
            let entries = todo
                .iter()
                .map(|&i| self.entry(i, jobs[i]))
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(sdk_err)?;
            for ok in out.successful() {
                if let Ok(i) = ok.id().parse::<usize>() {
                    answers[i] = Delivery::Sent;
                }
            }
            todo.clear();
            for failed in out.failed() {
                let Ok(i) = failed.id().parse::<usize>() else {
                    continue;
                };
                let why = format!(
                    "{}: {}",
                    failed.code(),
                    failed.message().unwrap_or("no message")
                );
                // A sender fault (a malformed entry) fails the same way again.
                answers[i] = if failed.sender_fault() {
                    Delivery::Refused(why)
                } else {
                    todo.push(i);
                    Delivery::Failed(why)
                };
            }
            if todo.is_empty() {
                break;
            }
        }
        Ok(answers)
    }
}

#[async_trait]
impl Queue for SqsQueue {
    /// The chunks go out [`SEND_CONCURRENCY`] at once (one at a time to a FIFO queue); the
    /// answers come back in the jobs' order.
    async fn send(&self, jobs: &[&IngestJob]) -> Result<Vec<Delivery>, BackendError> {
        let in_flight = if self.fifo { 1 } else { SEND_CONCURRENCY };
        let chunks: Vec<_> = jobs
            .chunks(BATCH_MAX)
            .map(|chunk| self.send_chunk_or_fail(chunk))
            .collect();
        let answers: Vec<Vec<Delivery>> = stream::iter(chunks).buffered(in_flight).collect().await;
        Ok(answers.into_iter().flatten().collect())
    }

    /// `GetQueueAttributes` for the queue's ARN: it answers only for a queue that exists and
    /// that this role may read (`sqs:GetQueueAttributes`).
    async fn probe(&self) -> Result<(), BackendError> {
        self.client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }
}

/// `GetQueueAttributes` on the ingest queue, and on the dead-letter queue its redrive policy
/// names (found by name with `GetQueueUrl`): both are read-only calls the operator's role has.
#[async_trait]
impl super::Backlog for SqsQueue {
    async fn depths(&self) -> Result<Vec<super::QueueDepth>, BackendError> {
        use aws_sdk_sqs::types::QueueAttributeName as Name;
        let attributes = |url: String| async move {
            self.client
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(Name::ApproximateNumberOfMessages)
                .attribute_names(Name::ApproximateNumberOfMessagesNotVisible)
                .attribute_names(Name::RedrivePolicy)
                .send()
                .await
                .map_err(sdk_err)
                .map(|out| out.attributes.unwrap_or_default())
        };
        let number = |attributes: &std::collections::HashMap<Name, String>, name: &Name| {
            attributes.get(name).and_then(|n| n.parse::<u64>().ok())
        };
        let ingest = attributes(self.queue_url.clone()).await?;
        let mut depths = vec![super::QueueDepth {
            queue: "ingest".to_owned(),
            waiting: number(&ingest, &Name::ApproximateNumberOfMessages).unwrap_or(0),
            in_flight: number(&ingest, &Name::ApproximateNumberOfMessagesNotVisible),
        }];
        // {"deadLetterTargetArn":"arn:aws:sqs:<region>:<account>:<name>","maxReceiveCount":…}
        let dlq_name = ingest
            .get(&Name::RedrivePolicy)
            .and_then(|policy| serde_json::from_str::<serde_json::Value>(policy).ok())
            .and_then(|policy| policy["deadLetterTargetArn"].as_str().map(str::to_owned))
            .and_then(|arn| arn.rsplit(':').next().map(str::to_owned));
        if let Some(name) = dlq_name {
            let url = self
                .client
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .map_err(sdk_err)?
                .queue_url
                .unwrap_or_default();
            let dlq = attributes(url).await?;
            depths.push(super::QueueDepth {
                queue: "ingest-dlq".to_owned(),
                waiting: number(&dlq, &Name::ApproximateNumberOfMessages).unwrap_or(0),
                in_flight: number(&dlq, &Name::ApproximateNumberOfMessagesNotVisible),
            });
        }
        Ok(depths)
    }
}

//! Local stand-in for Lambda's SQS event source mapping: long-polls a queue, hands each batch to
//! a queue-triggered handler as the `SqsEvent` Lambda would deliver, and deletes exactly the
//! messages the handler did not report as failed (`ReportBatchItemFailures`). A handler error, or
//! a failure id that is not in the batch, leaves the whole batch to be retried after the visibility
//! timeout, and SQS's redrive policy moves messages to the dead-letter queue.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;

/// What a queue-triggered function's `handle` returns.
pub type BatchResult = Result<SqsBatchResponse, String>;
/// A queue-triggered handler.
pub type BatchHandler = Arc<dyn Fn(SqsEvent) -> Pin<Box<dyn Future<Output = BatchResult> + Send>> + Send + Sync>;

/// One event source mapping.
#[derive(Clone)]
pub struct QueueBinding {
    /// Queue URL.
    pub queue_url: String,
    /// Queue ARN (the `eventSourceARN` of each record).
    pub queue_arn: String,
    /// Region for the records.
    pub region: String,
    /// Largest batch (Lambda's `BatchSize`; SQS receives at most 10 at a time).
    pub batch_size: i32,
    /// The function.
    pub handler: BatchHandler,
}

/// Turns received messages into the event Lambda delivers.
pub fn sqs_event(
    messages: &[aws_sdk_sqs::types::Message],
    queue_arn: &str,
    region: &str,
) -> Result<SqsEvent, serde_json::Error> {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: Map<String, Value> = m
                .attributes()
                .map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone()))).collect())
                .unwrap_or_default();
            let message_attributes: Map<String, Value> = m
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                json!({
                                    "stringValue": v.string_value(),
                                    "stringListValues": [],
                                    "binaryListValues": [],
                                    "dataType": v.data_type(),
                                }),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records }))
}

/// Starts polling; the task runs until aborted.
pub fn spawn(sqs: aws_sdk_sqs::Client, binding: QueueBinding) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let received = sqs
                .receive_message()
                .queue_url(&binding.queue_url)
                .max_number_of_messages(binding.batch_size.clamp(1, 10))
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await;
            let messages = match received {
                Ok(out) => out.messages.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(error.message = %e, "queue poll failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if messages.is_empty() {
                continue;
            }
            deliver(&sqs, &binding, &messages).await;
        }
    })
}

async fn deliver(sqs: &aws_sdk_sqs::Client, binding: &QueueBinding, messages: &[aws_sdk_sqs::types::Message]) {
    let event = match sqs_event(messages, &binding.queue_arn, &binding.region) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error.message = %e, "could not build the SQS event");
            return;
        }
    };
    let ids: HashSet<&str> = messages.iter().filter_map(|m| m.message_id()).collect();
    let failed: HashSet<String> = match (binding.handler)(event).await {
        Ok(response) => {
            let failed: HashSet<String> = response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
            // Lambda treats an unknown or empty identifier as a failure of the whole batch.
            if failed.iter().any(|f| !ids.contains(f.as_str())) {
                tracing::warn!("batch item failure names a message outside the batch; retrying the batch");
                return;
            }
            failed
        }
        Err(e) => {
            tracing::warn!(error.message = %e, "handler failed; the whole batch will be retried");
            return;
        }
    };
    let entries: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.message_id().is_some_and(|id| !failed.contains(id)))
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .set_receipt_handle(m.receipt_handle().map(str::to_owned))
                .build()
                .ok()
        })
        .collect();
    if entries.is_empty() {
        return;
    }
    if let Err(e) = sqs.delete_message_batch().queue_url(&binding.queue_url).set_entries(Some(entries)).send().await {
        tracing::warn!(error.message = %e, "could not delete processed messages; they will be redelivered");
    }
}

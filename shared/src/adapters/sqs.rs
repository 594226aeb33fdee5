//! SQS adapter for outgoing messages.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};

use crate::messages::Message;
use crate::ports::{JobQueue, PortError};

/// Sends messages to one queue.
#[derive(Clone, Debug)]
pub struct SqsJobQueue {
    client: Client,
    queue_url: String,
}

impl SqsJobQueue {
    /// Wraps a client and a queue URL.
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }
}

#[async_trait]
impl JobQueue for SqsJobQueue {
    #[tracing::instrument(skip_all, fields(message_type = message.kind()))]
    async fn send(&self, message: &Message) -> Result<(), PortError> {
        let body = serde_json::to_string(message).map_err(|e| PortError::Corrupt(e.to_string()))?;
        let kind = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(message.kind())
            .build()
            .map_err(PortError::unavailable)?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_attributes("type", kind)
            .send()
            .await
            .map_err(|e| PortError::unavailable(e.into_service_error()))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(messages = messages.len()))]
    async fn send_all(&self, messages: &[Message]) -> Result<(), PortError> {
        // SendMessageBatch takes at most ten entries.
        for chunk in messages.chunks(10) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, message) in chunk.iter().enumerate() {
                let body = serde_json::to_string(message).map_err(|e| PortError::Corrupt(e.to_string()))?;
                let kind = MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(message.kind())
                    .build()
                    .map_err(PortError::unavailable)?;
                entries.push(
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .message_body(body)
                        .message_attributes("type", kind)
                        .build()
                        .map_err(PortError::unavailable)?,
                );
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| PortError::unavailable(e.into_service_error()))?;
            if !out.failed.is_empty() {
                return Err(PortError::Corrupt(format!("{} messages of a batch were not sent", out.failed.len())));
            }
        }
        Ok(())
    }
}

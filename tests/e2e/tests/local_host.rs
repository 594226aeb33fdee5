//! The local host's own contract: queue delivery as Lambda's SQS event source mapping does it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::support::{demo, env};

#[tokio::test]
async fn queued_messages_reach_the_handler_and_only_reported_failures_stay() {
    let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let record = seen.clone();
    let handler: local_host::queues::BatchHandler = Arc::new(move |event: SqsEvent| {
        let record = record.clone();
        Box::pin(async move {
            let mut failures = Vec::new();
            for message in event.records {
                assert_eq!(message.event_source.as_deref(), Some("aws:sqs"));
                assert!(message.event_source_arn.as_deref().is_some_and(|a| a.ends_with("-SyncQueue")));
                assert_eq!(message.message_attributes["type"].string_value.as_deref(), Some("sync_requested"));
                assert_eq!(message.attributes.get("ApproximateReceiveCount").map(String::as_str), Some("1"));
                let body: serde_json::Value =
                    serde_json::from_str(message.body.as_deref().unwrap_or("null")).expect("json body");
                // Fail the read-only integration's message; acknowledge the others.
                if body["team_id"] == "team-fail" {
                    let mut f = BatchItemFailure::default();
                    f.item_identifier = message.message_id.clone().unwrap_or_default();
                    failures.push(f);
                }
                record.lock().expect("lock").push(body);
            }
            let mut response = SqsBatchResponse::default();
            response.batch_item_failures = failures;
            Ok(response)
        })
    });
    let env = env("queue_delivery").queue_handler("SyncQueue", handler).start().await;
    env.connect("team-ok", demo::API).await;
    env.connect("team-fail", demo::READONLY).await;
    env.connect("team-ok", demo::PROJECT_BOT).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.lock().expect("lock").len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "handler saw {:?}", seen.lock().expect("lock"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give the poller time to delete the acknowledged messages.
    let sqs = aws_sdk_sqs::Client::new(&env.stack.sdk);
    let url = env.stack.queue_url("SyncQueue").expect("queue").to_owned();
    let mut counts = (u64::MAX, u64::MAX);
    for _ in 0..50 {
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("attributes")
            .attributes
            .unwrap_or_default();
        let n = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(u64::MAX);
        counts = (
            n(QueueAttributeName::ApproximateNumberOfMessages),
            n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        );
        if counts == (0, 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The failed message waits out its visibility timeout for redelivery; the rest are gone.
    assert_eq!(counts, (0, 1));
    assert_eq!(seen.lock().expect("lock").iter().filter(|b| b["type"] == "sync_requested").count(), 3);
}

//! Local stand-in for the EventBridge schedule: delivers a scheduled event to the sync
//! function at the template's rate, as the `Schedule` event source would.

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use tokio::task::JoinHandle;

/// Ticks every `every` (the first tick after one interval, as EventBridge does).
pub fn spawn(every: Duration, deps: Arc<sync::Deps>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            ticker.tick().await;
            let now = time::OffsetDateTime::now_utc();
            let event = json!({
                "version": "0",
                "id": format!("local-{}", now.unix_timestamp_nanos()),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": crate::provision::LOCAL_ACCOUNT,
                "time": now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                "region": "us-east-1",
                "resources": ["arn:aws:events:us-east-1:123456789012:rule/local-resync"],
                "detail": {}
            });
            match sync::handle(&deps, LambdaEvent::new(event, Context::default())).await {
                Ok(result) => tracing::info!(result = %result, "schedule tick delivered"),
                Err(e) => tracing::warn!(error.message = %e, "schedule tick failed"),
            }
        }
    })
}

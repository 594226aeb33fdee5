//! The sync function: queue messages sync one integration each (partial batch failures
//! reported, malformed messages left to the dead-letter queue); schedule ticks fan out one
//! `SyncRequested` per live integration.

pub mod hooks;
pub mod replay;
pub mod service;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;
use shared::adapters::dynamodb::DynamoIntegrationStore;
use shared::adapters::dynamodb_projects::DynamoProjectStore;
use shared::adapters::dynamodb_webhooks::DynamoWebhookStore;
use shared::adapters::gitlab::{GitlabSettings, ReqwestGitlab};
use shared::adapters::secrets::{SecretsManagerHookSecrets, SecretsManagerVault};
use shared::adapters::sqs::SqsJobQueue;
use shared::adapters::{DynamoClient, SecretsClient, SqsClient};
use shared::config::{ConfigError, ProcessEnv, VarSource, optional, parsed_or, required};
use shared::domain::listing::ListingSettings;
use shared::domain::url_policy::UrlPolicy;
use shared::messages::Message;
use shared::ports::{
    CheckpointStore, DeliveryStore, GitlabGateway, GitlabHooks, HookSecretVault, IntegrationDirectory,
    IntegrationStore, JobQueue, ProjectStore, SyncStateStore, TokenVault,
};
use tokio::time::Instant;

/// Settings read once at start.
#[derive(Clone, Debug)]
pub struct Config {
    /// DynamoDB table (`TABLE_NAME`).
    pub table_name: String,
    /// Sync queue, for the scheduled fan-out (`SYNC_QUEUE_URL`).
    pub sync_queue_url: String,
    /// Scan queue, for replaying webhook deliveries that could not be queued (`SCAN_QUEUE_URL`).
    pub scan_queue_url: String,
    /// The webhook function's URL, which managed hooks point at (`WEBHOOK_BASE_URL`; unset: no
    /// hooks are managed).
    pub webhook_base_url: Option<String>,
    /// How long a run holds the integration's lease (`SYNC_LEASE_SECONDS`, default 960: the
    /// 900 s function timeout plus a margin, so a crashed run's lease expires on its own).
    pub lease: Duration,
    /// Project listing limits and pacing (`SYNC_MAX_CONCURRENCY`, `SYNC_BUDGET_REQUESTS`,
    /// `SYNC_BUDGET_WINDOW_SECONDS`, `SYNC_MAX_PROJECTS`).
    pub listing: ListingSettings,
    /// Longest a single invocation lists before it checkpoints (`SYNC_MAX_RUN_SECONDS`; unset:
    /// until a minute before the function's own timeout).
    pub max_run: Option<Duration>,
    /// Pages between checkpoints of a pass (`SYNC_CHECKPOINT_PAGES`, default 50: a crashed
    /// invocation loses at most that much listing).
    pub checkpoint_every: u64,
    /// Pause between lookups of tracked projects (`SYNC_LOOKUPS_PER_MINUTE`, default 150; each
    /// is one `GET /projects/:id`, limited to 400 a minute on GitLab.com, plus its languages).
    pub lookup_spacing: Duration,
    /// How long a project GitLab no longer lists is kept (marked removed) before the table's
    /// TTL purges it (`REMOVED_PROJECT_RETENTION_DAYS`, default 30, at least 1).
    pub removed_retention: time::Duration,
    /// GitLab network settings and limits.
    pub gitlab: GitlabSettings,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&ProcessEnv)
    }

    /// Reads any variable source.
    pub fn from_vars(src: &dyn VarSource) -> Result<Self, ConfigError> {
        let defaults = ListingSettings::default();
        let listing = ListingSettings {
            max_concurrency: parsed_or(src, "SYNC_MAX_CONCURRENCY", defaults.max_concurrency)?,
            budget_requests: parsed_or(src, "SYNC_BUDGET_REQUESTS", defaults.budget_requests)?,
            budget_window: Duration::from_secs(parsed_or(
                src,
                "SYNC_BUDGET_WINDOW_SECONDS",
                defaults.budget_window.as_secs(),
            )?),
            max_items: parsed_or(src, "SYNC_MAX_PROJECTS", defaults.max_items)?,
            ..defaults
        };
        Ok(Self {
            table_name: required(src, "TABLE_NAME")?,
            sync_queue_url: required(src, "SYNC_QUEUE_URL")?,
            scan_queue_url: required(src, "SCAN_QUEUE_URL")?,
            webhook_base_url: optional(src, "WEBHOOK_BASE_URL").map(|u| u.trim_end_matches('/').to_owned()),
            lease: Duration::from_secs(parsed_or(src, "SYNC_LEASE_SECONDS", 960)?),
            max_run: match optional(src, "SYNC_MAX_RUN_SECONDS") {
                None => None,
                Some(v) => Some(Duration::from_secs(v.parse().map_err(|_| ConfigError::Invalid {
                    key: "SYNC_MAX_RUN_SECONDS",
                    reason: "expected a number of seconds".into(),
                })?)),
            },
            checkpoint_every: parsed_or(src, "SYNC_CHECKPOINT_PAGES", 50u64)?.max(1),
            lookup_spacing: Duration::from_secs(60) / parsed_or(src, "SYNC_LOOKUPS_PER_MINUTE", 150u32)?.max(1),
            listing,
            removed_retention: time::Duration::days(parsed_or(src, "REMOVED_PROJECT_RETENTION_DAYS", 30i64)?.max(1)),
            gitlab: GitlabSettings::from_vars(src)?,
        })
    }
}

/// Everything an invocation needs, built once per process.
#[derive(Clone)]
pub struct Deps {
    /// Integration records of a team.
    pub integrations: Arc<dyn IntegrationStore>,
    /// Every integration (fan-out).
    pub directory: Arc<dyn IntegrationDirectory>,
    /// Projects.
    pub projects: Arc<dyn ProjectStore>,
    /// Leases and runs.
    pub sync_state: Arc<dyn SyncStateStore>,
    /// Positions of runs that ran out of time.
    pub checkpoints: Arc<dyn CheckpointStore>,
    /// Cap on one invocation's listing time.
    pub max_run: Option<Duration>,
    /// Pages between checkpoints.
    pub checkpoint_every: u64,
    /// Pause between lookups of tracked projects.
    pub lookup_spacing: Duration,
    /// Tokens.
    pub vault: Arc<dyn TokenVault>,
    /// Sync queue.
    pub queue: Arc<dyn JobQueue>,
    /// Webhook deliveries kept unsent (replayed on each schedule tick).
    pub deliveries: Arc<dyn DeliveryStore>,
    /// Scan queue (the replay's destination).
    pub scan_queue: Arc<dyn JobQueue>,
    /// Project hooks on GitLab.
    pub hooks: Arc<dyn GitlabHooks>,
    /// Webhook secrets of managed integrations.
    pub hook_secrets: Arc<dyn HookSecretVault>,
    /// Where managed hooks deliver.
    pub webhook_base_url: Option<String>,
    /// GitLab.
    pub gitlab: Arc<dyn GitlabGateway>,
    /// URL rules (re-checked on every run: the allowlist may have changed).
    pub policy: UrlPolicy,
    /// Listing limits.
    pub listing: ListingSettings,
    /// Lease length.
    pub lease: Duration,
}

impl Deps {
    /// Builds the AWS clients and the GitLab gateway; no network call happens here.
    pub async fn build(config: &Config) -> Self {
        let sdk = shared::adapters::aws_config().await;
        let gitlab = Arc::new(ReqwestGitlab::new(config.gitlab.clone()));
        let dynamo = DynamoClient::new(&sdk);
        let integrations = Arc::new(DynamoIntegrationStore::new(dynamo.clone(), &config.table_name));
        let projects = Arc::new(
            DynamoProjectStore::new(dynamo.clone(), &config.table_name)
                .with_removed_retention(config.removed_retention),
        );
        Self {
            integrations: integrations.clone(),
            directory: integrations,
            projects: projects.clone(),
            sync_state: projects.clone(),
            checkpoints: projects,
            max_run: config.max_run,
            checkpoint_every: config.checkpoint_every,
            lookup_spacing: config.lookup_spacing,
            // Secrets are read by ARN; the prefix only matters when creating them.
            vault: Arc::new(SecretsManagerVault::new(SecretsClient::new(&sdk), "", None)),
            queue: Arc::new(SqsJobQueue::new(SqsClient::new(&sdk), &config.sync_queue_url)),
            deliveries: Arc::new(DynamoWebhookStore::new(dynamo, &config.table_name)),
            scan_queue: Arc::new(SqsJobQueue::new(SqsClient::new(&sdk), &config.scan_queue_url)),
            gitlab: gitlab.clone(),
            hooks: gitlab,
            hook_secrets: Arc::new(SecretsManagerHookSecrets::new(SecretsClient::new(&sdk), "", None)),
            webhook_base_url: config.webhook_base_url.clone(),
            policy: config.gitlab.policy.clone(),
            listing: config.listing.clone(),
            lease: config.lease,
        }
    }
}

/// Why a message was not processed.
#[derive(Debug)]
enum MessageError {
    /// Not a message this function understands; retried until it lands in the DLQ.
    Poison(String),
    /// A back end failed; SQS redelivers it.
    Transient(String),
}

/// Entry point for both triggers.
pub async fn handle(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    let left = context.deadline().duration_since(std::time::SystemTime::now()).unwrap_or_default();
    let deadline = Some(Instant::now() + listing_time(left));
    if payload.get("Records").is_some() {
        let event: SqsEvent = serde_json::from_value(payload)?;
        let response = process_batch(deps, event, deadline).await;
        return Ok(serde_json::to_value(response)?);
    }
    if payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        // Each task runs even if the other fails; the tick fails if either did.
        let (fanned, replayed) = tokio::join!(service::fan_out(deps), replay::replay_deliveries(deps));
        return Ok(serde_json::json!({ "queued": fanned?, "replayed": replayed? }));
    }
    Err("unsupported event: expected an SQS batch or a scheduled event".into())
}

/// How much of an invocation's remaining time the listing may use: all but a margin for
/// writing what was listed, checkpointing and releasing the lease (a minute, or a quarter of
/// the time left when that is short).
pub fn listing_time(left: Duration) -> Duration {
    left.saturating_sub(Duration::from_secs(60).min(left / 4))
}

/// Processes each record on its own; failures are reported per message id.
pub async fn process_batch(deps: &Deps, event: SqsEvent, deadline: Option<Instant>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("message", message_id = %id);
        let result = {
            let _enter = span.enter();
            process_message(deps, &record, deadline).await
        };
        match result {
            Ok(()) => {}
            Err(MessageError::Poison(why)) => {
                tracing::error!(message_id = %id, reason = %why, "unreadable message; left for the dead-letter queue");
                response.batch_item_failures.push(failure(&id));
            }
            Err(MessageError::Transient(why)) => {
                tracing::warn!(message_id = %id, reason = %why, "message will be retried");
                response.batch_item_failures.push(failure(&id));
            }
        }
    }
    response
}

fn failure(id: &str) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id.to_owned();
    f
}

async fn process_message(deps: &Deps, record: &SqsMessage, deadline: Option<Instant>) -> Result<(), MessageError> {
    let body = record.body.as_deref().ok_or_else(|| MessageError::Poison("no body".into()))?;
    if body.len() > 256 * 1024 {
        return Err(MessageError::Poison("body larger than an SQS message can be".into()));
    }
    let message: Message = serde_json::from_str(body).map_err(|e| MessageError::Poison(e.to_string()))?;
    match message {
        Message::SyncRequested(request) => {
            if request.version > shared::messages::MESSAGE_VERSION {
                return Err(MessageError::Poison(format!("unknown message version {}", request.version)));
            }
            service::sync(deps, &request, deadline)
                .await
                .map(|outcome| tracing::info!(outcome = ?outcome, "sync handled"))
                .map_err(|e| MessageError::Transient(e.to_string()))
        }
        Message::HooksRequested(request) => {
            if request.version > shared::messages::MESSAGE_VERSION {
                return Err(MessageError::Poison(format!("unknown message version {}", request.version)));
            }
            hooks::reconcile(deps, &request).await.map(|_| ()).map_err(|e| MessageError::Transient(e.to_string()))
        }
        other => Err(MessageError::Poison(format!("{} does not belong on the sync queue", other.kind()))),
    }
}

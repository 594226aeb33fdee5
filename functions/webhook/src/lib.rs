//! The webhook function: serves `POST /webhooks/gitlab/{integration_id}` on a Lambda function
//! URL. Checks run cheapest first (path and method, size, content type), then authentication on
//! the raw bytes, then parsing; [`service`] records and routes what passed.

mod cache;
pub mod service;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Error, Request, Response};
use shared::adapters::dynamodb::DynamoIntegrationStore;
use shared::adapters::dynamodb_webhooks::DynamoWebhookStore;
use shared::adapters::secrets::SecretsManagerSigningKeys;
use shared::adapters::sqs::SqsJobQueue;
use shared::adapters::{DynamoClient, SecretsClient};
use shared::config::{ConfigError, ProcessEnv, VarSource, parsed_or, required};
use shared::http::ApiError;
use shared::ports::{DeliveryStore, IntegrationDirectory, JobQueue, SigningKeyVault, WebhookStateStore};

pub use cache::Cache;

/// The path every delivery is posted to, followed by the integration id.
pub const WEBHOOK_PATH: &str = "/webhooks/gitlab/";

/// Settings read once at start.
#[derive(Clone, Debug)]
pub struct Config {
    /// DynamoDB table (`TABLE_NAME`).
    pub table_name: String,
    /// Scan queue (`SCAN_QUEUE_URL`).
    pub scan_queue_url: String,
    /// Largest body accepted (`WEBHOOK_MAX_BODY_BYTES`, default 2 MiB: security policy 8.6.2;
    /// a function URL itself refuses more than 6 MB).
    pub max_body_bytes: usize,
    /// How long an integration's webhook settings and a project's tracking flag stay cached
    /// (`WEBHOOK_CACHE_SECONDS`, default 30).
    pub cache_ttl: Duration,
    /// How long a delivery record keeps answering `duplicate` (`WEBHOOK_DEDUP_TTL_HOURS`,
    /// default 96: GitLab lists deliveries for manual resend for two days, and resends reuse
    /// the `Idempotency-Key`).
    pub dedup_ttl: Duration,
    /// Per-attempt timeout of every DynamoDB, SQS and Secrets Manager call
    /// (`WEBHOOK_SDK_ATTEMPT_TIMEOUT_MS`, default 1000).
    pub sdk_attempt_timeout: Duration,
    /// Per-call timeout including retries (`WEBHOOK_SDK_OPERATION_TIMEOUT_MS`, default 2500), so
    /// even a delivery that needs four calls on a cold cache answers well before GitLab's 10 s.
    pub sdk_operation_timeout: Duration,
    /// Timeout of one queue send attempt (`WEBHOOK_QUEUE_SEND_TIMEOUT_MS`, default 2000). A send
    /// that times out is never tried again by the SDK (it may have been stored, and a second
    /// attempt would queue it twice); the delivery is kept for the scheduled replay instead.
    /// The whole send, connection-error retries included, stays within the larger of this and
    /// the operation timeout.
    pub queue_send_timeout: Duration,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&ProcessEnv)
    }

    /// Reads any variable source (the local host passes the template's values).
    pub fn from_vars(src: &dyn VarSource) -> Result<Self, ConfigError> {
        let dedup_hours: u64 = parsed_or(src, "WEBHOOK_DEDUP_TTL_HOURS", 96)?;
        if dedup_hours < 72 {
            return Err(ConfigError::Invalid {
                key: "WEBHOOK_DEDUP_TTL_HOURS",
                reason: "at least 72 hours: manual resends come days later".into(),
            });
        }
        Ok(Self {
            table_name: required(src, "TABLE_NAME")?,
            scan_queue_url: required(src, "SCAN_QUEUE_URL")?,
            max_body_bytes: parsed_or(src, "WEBHOOK_MAX_BODY_BYTES", 2 * 1024 * 1024)?,
            cache_ttl: Duration::from_secs(parsed_or(src, "WEBHOOK_CACHE_SECONDS", 30)?),
            dedup_ttl: Duration::from_secs(dedup_hours * 3600),
            sdk_attempt_timeout: Duration::from_millis(parsed_or(src, "WEBHOOK_SDK_ATTEMPT_TIMEOUT_MS", 1000)?),
            sdk_operation_timeout: Duration::from_millis(parsed_or(src, "WEBHOOK_SDK_OPERATION_TIMEOUT_MS", 2500)?),
            queue_send_timeout: Duration::from_millis(parsed_or(src, "WEBHOOK_QUEUE_SEND_TIMEOUT_MS", 2000)?),
        })
    }
}

/// Everything a delivery needs, built once per process.
#[derive(Clone)]
pub struct Deps {
    /// Integrations by id.
    pub directory: Arc<dyn IntegrationDirectory>,
    /// Delivery records and the outbox.
    pub deliveries: Arc<dyn DeliveryStore>,
    /// Tracking flags, vulnerability states, token status.
    pub state: Arc<dyn WebhookStateStore>,
    /// Signing keys (never GitLab tokens: this function's role cannot read those).
    pub keys: Arc<dyn SigningKeyVault>,
    /// Scan queue.
    pub queue: Arc<dyn JobQueue>,
    /// Webhook settings and tracking flags, briefly.
    pub cache: Arc<Cache>,
    /// Body limit.
    pub max_body_bytes: usize,
    /// Delivery record lifetime.
    pub dedup_ttl: Duration,
}

impl Deps {
    /// Builds the AWS clients with the configured timeouts; no network call happens here.
    pub async fn build(config: &Config) -> Self {
        let sdk =
            shared::adapters::aws_config_with_timeouts(config.sdk_attempt_timeout, config.sdk_operation_timeout).await;
        let dynamo = DynamoClient::new(&sdk);
        let store = Arc::new(DynamoWebhookStore::new(dynamo.clone(), &config.table_name));
        Self {
            directory: Arc::new(DynamoIntegrationStore::new(dynamo, &config.table_name)),
            deliveries: store.clone(),
            state: store,
            // Keys are read by ARN; the prefix only matters when creating them.
            keys: Arc::new(SecretsManagerSigningKeys::new(SecretsClient::new(&sdk), "", None)),
            queue: Arc::new(SqsJobQueue::new(
                shared::adapters::sqs_client_sending_once(
                    &sdk,
                    config.queue_send_timeout,
                    config.queue_send_timeout.max(config.sdk_operation_timeout),
                ),
                &config.scan_queue_url,
            )),
            cache: Arc::new(Cache::new(config.cache_ttl)),
            max_body_bytes: config.max_body_bytes,
            dedup_ttl: config.dedup_ttl,
        }
    }
}

/// Whether this function serves a path (the local host dispatches on it).
pub fn serves(path: &str) -> bool {
    path.starts_with(WEBHOOK_PATH)
}

/// Lambda entry point: always answers with a response.
#[tracing::instrument(skip_all, fields(method = %req.method()))]
pub async fn handle(deps: &Deps, req: Request) -> Result<Response<Body>, Error> {
    Ok(match process(deps, &req).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    })
}

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(lambda_http::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

async fn process(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let raw_id = req.uri().path().strip_prefix(WEBHOOK_PATH).filter(|id| !id.is_empty() && !id.contains('/'));
    let Some(raw_id) = raw_id else {
        return Err(ApiError::not_found());
    };
    if req.method() != Method::POST {
        return Err(ApiError::method_not_allowed());
    }
    let body: &[u8] = req.body().as_ref();
    if body.len() > deps.max_body_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "The delivery is larger than this endpoint accepts.",
        ));
    }
    if !is_json(req) {
        return Err(ApiError::unsupported_media_type());
    }
    service::receive(deps, raw_id, req.headers(), body).await
}

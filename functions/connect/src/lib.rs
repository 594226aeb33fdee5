//! The connect function: routes the integration lifecycle requests to the use cases in
//! [`service`] and maps every outcome to the HTTP contract.

pub mod service;
#[cfg(test)]
mod tests;
mod view;

use std::sync::Arc;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Error, Request, Response};
use shared::adapters::dynamodb::DynamoIntegrationStore;
use shared::adapters::dynamodb_projects::DynamoProjectStore;
use shared::adapters::gitlab::{GitlabSettings, ReqwestGitlab};
use shared::adapters::secrets::{SecretsManagerHookSecrets, SecretsManagerVault};
use shared::adapters::sqs::SqsJobQueue;
use shared::adapters::{DynamoClient, SecretsClient, SqsClient};
use shared::config::{ConfigError, ProcessEnv, VarSource, optional, parsed_or, required};
use shared::domain::ids::IntegrationId;
use shared::domain::integration::TokenPolicy;
use shared::domain::url_policy::UrlPolicy;
use shared::http::{ApiError, empty_response, json_body, json_response, team_id};
use shared::ports::{
    GitlabGateway, GitlabHooks, HookSecretVault, IntegrationStore, JobQueue, ProjectStore, SyncStateStore, TokenVault,
};

/// Settings read once at start.
#[derive(Clone, Debug)]
pub struct Config {
    /// DynamoDB table (`TABLE_NAME`).
    pub table_name: String,
    /// Sync queue (`SYNC_QUEUE_URL`).
    pub sync_queue_url: String,
    /// Prefix of token secret names (`SECRET_PREFIX`).
    pub secret_prefix: String,
    /// KMS key for token secrets (`SECRETS_KMS_KEY_ID`, optional).
    pub kms_key_id: Option<String>,
    /// Prefix of webhook secret names of managed integrations (`WEBHOOK_SECRET_PREFIX`).
    pub webhook_secret_prefix: String,
    /// Public base URL that webhook deliveries go to (`WEBHOOK_BASE_URL`).
    pub webhook_base_url: String,
    /// JWT claim naming the team (`TEAM_CLAIM`, default `team_id`).
    pub team_claim: String,
    /// How long a replaced webhook secret keeps working (`WEBHOOK_SECRET_GRACE_HOURS`, default
    /// 24, at most 168), so GitLab can be updated without losing deliveries.
    pub webhook_secret_grace: time::Duration,
    /// Connection tests (preflight, connect, rotate) allowed per team and minute
    /// (`CONNECT_TESTS_PER_MINUTE`, default 20; 0 disables the limit).
    pub connect_tests_per_minute: u64,
    /// Most integrations one team may hold (`MAX_INTEGRATIONS_PER_TEAM`, default 20; 0: no
    /// limit).
    pub max_integrations_per_team: u64,
    /// Accept tokens whose user is an instance administrator (`ALLOW_ADMIN_TOKENS`, default
    /// false); such integrations carry an `admin_token_allowed` warning.
    pub allow_admin_tokens: bool,
    /// GitLab network settings and limits.
    pub gitlab: GitlabSettings,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&ProcessEnv)
    }

    /// Reads any variable source (the local host passes the template's values).
    pub fn from_vars(src: &dyn VarSource) -> Result<Self, ConfigError> {
        Ok(Self {
            table_name: required(src, "TABLE_NAME")?,
            sync_queue_url: required(src, "SYNC_QUEUE_URL")?,
            secret_prefix: required(src, "SECRET_PREFIX")?,
            kms_key_id: optional(src, "SECRETS_KMS_KEY_ID"),
            webhook_secret_prefix: required(src, "WEBHOOK_SECRET_PREFIX")?,
            webhook_base_url: required(src, "WEBHOOK_BASE_URL")?.trim_end_matches('/').to_owned(),
            team_claim: optional(src, "TEAM_CLAIM").unwrap_or_else(|| "team_id".to_owned()),
            connect_tests_per_minute: parsed_or(src, "CONNECT_TESTS_PER_MINUTE", 20)?,
            max_integrations_per_team: parsed_or(src, "MAX_INTEGRATIONS_PER_TEAM", 20)?,
            allow_admin_tokens: parsed_or(src, "ALLOW_ADMIN_TOKENS", false)?,
            webhook_secret_grace: {
                let hours: i64 = parsed_or(src, "WEBHOOK_SECRET_GRACE_HOURS", 24)?;
                if !(0..=168).contains(&hours) {
                    return Err(ConfigError::Invalid {
                        key: "WEBHOOK_SECRET_GRACE_HOURS",
                        reason: "0 to 168 hours".into(),
                    });
                }
                time::Duration::hours(hours)
            },
            gitlab: GitlabSettings::from_vars(src)?,
        })
    }
}

/// Everything a request needs, built once per process.
#[derive(Clone)]
pub struct Deps {
    /// Integration records.
    pub store: Arc<dyn IntegrationStore>,
    /// Token secrets.
    pub vault: Arc<dyn TokenVault>,
    /// Webhook secrets of managed integrations.
    pub hook_secrets: Arc<dyn HookSecretVault>,
    /// Project hooks on GitLab (removed on disconnect).
    pub hooks: Arc<dyn GitlabHooks>,
    /// Projects (which have hooks).
    pub projects: Arc<dyn ProjectStore>,
    /// Sync runs (the first sync shows as queued at once).
    pub sync_state: Arc<dyn SyncStateStore>,
    /// Sync queue.
    pub queue: Arc<dyn JobQueue>,
    /// GitLab access.
    pub gitlab: Arc<dyn GitlabGateway>,
    /// URL rules.
    pub policy: UrlPolicy,
    /// Team claim name.
    pub team_claim: String,
    /// Webhook base URL.
    pub webhook_base_url: String,
    /// Per-team limit of connection tests per minute (0: none).
    pub connect_tests_per_minute: u64,
    /// Most integrations per team (0: no limit).
    pub max_integrations_per_team: u64,
    /// How tokens are judged (administrator tokens allowed or not).
    pub token_policy: TokenPolicy,
    /// Grace period of a replaced webhook secret.
    pub webhook_secret_grace: time::Duration,
}

impl Deps {
    /// Builds the AWS clients (one SDK config load) and the GitLab gateway (TLS roots parsed
    /// once). No network call happens here.
    pub async fn build(config: &Config) -> Self {
        let sdk = shared::adapters::aws_config().await;
        let gitlab = Arc::new(ReqwestGitlab::new(config.gitlab.clone()));
        let projects = Arc::new(DynamoProjectStore::new(DynamoClient::new(&sdk), &config.table_name));
        Self {
            store: Arc::new(DynamoIntegrationStore::new(DynamoClient::new(&sdk), &config.table_name)),
            hook_secrets: Arc::new(SecretsManagerHookSecrets::new(
                SecretsClient::new(&sdk),
                &config.webhook_secret_prefix,
                config.kms_key_id.clone(),
            )),
            hooks: gitlab.clone(),
            projects: projects.clone(),
            sync_state: projects,
            vault: Arc::new(SecretsManagerVault::new(
                SecretsClient::new(&sdk),
                &config.secret_prefix,
                config.kms_key_id.clone(),
            )),
            queue: Arc::new(SqsJobQueue::new(SqsClient::new(&sdk), &config.sync_queue_url)),
            gitlab,
            policy: config.gitlab.policy.clone(),
            team_claim: config.team_claim.clone(),
            webhook_base_url: config.webhook_base_url.clone(),
            connect_tests_per_minute: config.connect_tests_per_minute,
            max_integrations_per_team: config.max_integrations_per_team,
            token_policy: TokenPolicy { allow_admin: config.allow_admin_tokens },
            webhook_secret_grace: config.webhook_secret_grace,
        }
    }
}

enum Route {
    Preflight,
    Collection,
    Item(IntegrationId),
    Verify(IntegrationId),
    Token(IntegrationId),
    WebhookSecret(IntegrationId),
}

fn route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/integrations/gitlab")?;
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    // Malformed ids answer exactly like unknown ones: 404.
    let id = |s: &str| IntegrationId::parse(s);
    match segments.as_slice() {
        [] => Some(Route::Collection),
        ["preflight"] => Some(Route::Preflight),
        [raw] => id(raw).map(Route::Item),
        [raw, "verify"] => id(raw).map(Route::Verify),
        [raw, "token"] => id(raw).map(Route::Token),
        [raw, "webhook", "secret"] => id(raw).map(Route::WebhookSecret),
        _ => None,
    }
}

/// Lambda entry point: always answers with a response; `Err` is reserved for the impossible.
/// The span covers the error log line written when the error becomes a response.
#[tracing::instrument(skip_all, fields(method = %req.method(), path = %req.uri().path()))]
pub async fn handle(deps: &Deps, req: Request) -> Result<Response<Body>, Error> {
    Ok(match process(deps, &req).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    })
}

async fn process(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let route = route(req.uri().path()).ok_or_else(ApiError::not_found)?;
    let team = team_id(req, &deps.team_claim)?;
    let method = req.method();
    match (route, method) {
        (Route::Preflight, &Method::POST) => {
            let view = service::preflight(deps, &team, json_body(req)?).await?;
            Ok(json_response(StatusCode::OK, &view))
        }
        (Route::Collection, &Method::POST) => {
            let c = service::connect(deps, &team, json_body(req)?).await?;
            let body = view::created(&c.integration, &deps.webhook_base_url, &c.secret, c.signing_key.as_ref());
            Ok(json_response(StatusCode::CREATED, &body))
        }
        (Route::Collection, &Method::GET) => {
            let items = deps.store.list(&team).await?;
            Ok(json_response(StatusCode::OK, &view::list(&items, &deps.webhook_base_url)))
        }
        (Route::Item(id), &Method::GET) => {
            let integration = service::load(deps, &team, &id).await?;
            Ok(json_response(StatusCode::OK, &view::integration(&integration, &deps.webhook_base_url)))
        }
        (Route::Item(id), &Method::PATCH) => {
            let integration = service::update_settings(deps, &team, &id, json_body(req)?).await?;
            Ok(json_response(StatusCode::OK, &view::integration(&integration, &deps.webhook_base_url)))
        }
        (Route::Item(id), &Method::DELETE) => {
            service::disconnect(deps, &team, &id).await?;
            Ok(empty_response(StatusCode::NO_CONTENT))
        }
        (Route::Verify(id), &Method::POST) => {
            let integration = service::verify(deps, &team, &id).await?;
            Ok(json_response(StatusCode::OK, &view::integration(&integration, &deps.webhook_base_url)))
        }
        (Route::Token(id), &Method::PUT) => {
            let integration = service::rotate(deps, &team, &id, json_body(req)?).await?;
            Ok(json_response(StatusCode::OK, &view::integration(&integration, &deps.webhook_base_url)))
        }
        (Route::WebhookSecret(id), &Method::POST) => {
            let r = service::rotate_webhook_secret(deps, &team, &id).await?;
            let body = view::rotated_secret(&r.integration, &deps.webhook_base_url, &r.secret, r.signing_key.as_ref());
            Ok(json_response(StatusCode::OK, &body))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

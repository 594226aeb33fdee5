//! Use cases of the connect function: preflight, connect, verify, rotate and disconnect.

use lambda_http::http::StatusCode;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::adapters::gitlab::tls::parse_ca_bundle;
use shared::domain::gitlab::GitlabError;
use shared::domain::ids::{IntegrationId, TeamId};
use shared::domain::integration::{
    Capabilities, GitlabUser, InstanceInfo, Integration, IntegrationStatus, TokenInfo, TokenProblem, TokenReport,
    WEBHOOK_EVENTS, Warning, WebhookMode, WebhookSettings, assess, new_webhook_secret,
};
use shared::domain::sync::QueuedSync;
use shared::domain::text::has_hidden_characters;
use shared::domain::token::{TokenFieldError, validate_token};
use shared::domain::url_policy::InstanceUrl;
use shared::domain::webhook::SigningKey;
use shared::http::ApiError;
use shared::messages::{MESSAGE_VERSION, Message, SyncReason, SyncRequested};
use shared::ports::{PortError, ResolvedInstance, StoredToken};
use time::OffsetDateTime;

use crate::Deps;

/// Longest display name.
const MAX_NAME_CHARS: usize = 100;

/// `POST /integrations/gitlab/preflight`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreflightRequest {
    /// The URL as typed.
    pub instance_url: String,
}

/// Normalised URLs.
#[derive(Debug, Serialize)]
pub struct PreflightView {
    /// Base URL.
    pub instance_url: String,
    /// API root.
    pub api_url: String,
}

/// `POST /integrations/gitlab`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    /// The URL as typed.
    pub instance_url: String,
    /// The access token (write-only).
    pub token: SecretString,
    /// Display name; defaults to the host.
    #[serde(default)]
    pub name: Option<String>,
    /// PEM bundle of a private CA.
    #[serde(default)]
    pub ca_certificate: Option<String>,
}

/// `PUT /integrations/gitlab/{id}/token`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The new token.
    pub token: SecretString,
}

fn token_field(token: &SecretString) -> Result<(), ApiError> {
    validate_token(token).map_err(|e| {
        let message = match e {
            TokenFieldError::TooShort => "The token is too short to be a GitLab token.",
            TokenFieldError::TooLong => "The token is longer than 512 characters.",
            TokenFieldError::BadCharacters => "The token contains spaces, control or non-ASCII characters.",
        };
        ApiError::invalid_request("token", message).with_hint("Paste the token exactly as GitLab showed it.")
    })
}

fn display_name(raw: Option<&str>, url: &InstanceUrl) -> Result<String, ApiError> {
    let Some(raw) = raw else {
        return Ok(url.host_for_url());
    };
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || has_hidden_characters(name) {
        return Err(ApiError::invalid_request(
            "name",
            "The name must be 1-100 characters without control, bidirectional or zero-width characters.",
        ));
    }
    Ok(name.to_owned())
}

fn problem_to_error(problem: TokenProblem) -> ApiError {
    match problem {
        TokenProblem::TooPrivileged { scopes } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "token_too_privileged",
            "The token carries administrator scopes the connector must not hold.",
        )
        .with_hint("Create a token without the sudo and admin_mode scopes.")
        .with_details(json!({ "refused_scopes": scopes })),
        TokenProblem::AdminUser => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "token_too_privileged",
            "The token's user is a GitLab instance administrator, which reaches every project on the instance.",
        )
        .with_hint(
            "Use a project, group or service-account token, or a personal token of a user who is not an administrator.",
        )
        .with_details(json!({ "reason": "instance_administrator" })),
        TokenProblem::MissingScopes { granted, missing } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "insufficient_scope",
            "The token cannot list projects or fetch their code.",
        )
        .with_hint("Recreate the token with the api scope, or with read_api and read_repository for read-only use.")
        .with_details(json!({ "granted_scopes": granted, "missing_scopes": missing })),
    }
}

/// Parses and resolves an instance URL under the current policy.
async fn resolve(deps: &Deps, raw: &str) -> Result<ResolvedInstance, ApiError> {
    let url = InstanceUrl::parse(raw, &deps.policy)?;
    Ok(deps.gitlab.resolve(&url).await?)
}

/// Counts a connection test against the team's per-minute budget. Each test makes the
/// connector resolve and contact an address of the caller's choosing; unbounded, that would
/// make it a scanner (security policy 8.3).
async fn limit_connection_tests(deps: &Deps, team: &TeamId) -> Result<(), ApiError> {
    if deps.connect_tests_per_minute == 0 {
        return Ok(());
    }
    let now = OffsetDateTime::now_utc();
    let minute = now.unix_timestamp() / 60;
    let window_end = OffsetDateTime::from_unix_timestamp((minute + 1) * 60).unwrap_or(now);
    let count =
        deps.store.count_in_window(team, &format!("connect#{minute}"), window_end + time::Duration::minutes(5)).await?;
    if count > deps.connect_tests_per_minute {
        let wait = (window_end - now).whole_seconds().max(1).unsigned_abs();
        return Err(ApiError::rate_limited(std::time::Duration::from_secs(wait)));
    }
    Ok(())
}

/// Refuses a new integration once the team holds the most the deployment allows. Checked
/// before any network call; two connects racing for the last place may both get it.
async fn limit_integrations(deps: &Deps, team: &TeamId) -> Result<(), ApiError> {
    let max = deps.max_integrations_per_team;
    if max == 0 {
        return Ok(());
    }
    if deps.store.list(team).await?.len() as u64 >= max {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "quota_exceeded",
            format!("The team already has {max} integrations, the most this deployment allows."),
        )
        .with_hint(
            "Disconnect an integration that is no longer used, or ask the operator to raise MAX_INTEGRATIONS_PER_TEAM.",
        )
        .with_details(json!({ "limit": "integrations_per_team", "max": max })));
    }
    Ok(())
}

/// URL checks plus DNS and address classification; no other network call.
pub async fn preflight(deps: &Deps, team: &TeamId, body: PreflightRequest) -> Result<PreflightView, ApiError> {
    let url = InstanceUrl::parse(&body.instance_url, &deps.policy)?;
    limit_connection_tests(deps, team).await?;
    let instance = deps.gitlab.resolve(&url).await?;
    Ok(PreflightView { instance_url: instance.url.base_url(), api_url: instance.url.api_url() })
}

fn sync_message(team: &TeamId, id: &IntegrationId, reason: SyncReason, now: OffsetDateTime, sync_id: &str) -> Message {
    Message::SyncRequested(SyncRequested {
        version: MESSAGE_VERSION,
        team_id: team.clone(),
        integration_id: id.clone(),
        reason,
        requested_at: now,
        sync_id: Some(sync_id.to_owned()),
    })
}

/// Queues a sync, shown as `queued` by the sync status at once (outside the manual cooldown); a
/// failure is logged, not fatal: the hourly schedule picks the integration up.
async fn request_sync(deps: &Deps, team: &TeamId, id: &IntegrationId, reason: SyncReason) -> bool {
    let now = OffsetDateTime::now_utc();
    let label = serde_json::to_value(reason).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let queued = QueuedSync::new(&label, now);
    if let Err(e) = deps.sync_state.queue_request(team, id, &queued, now, None).await {
        tracing::warn!(integration_id = %id, error.message = %e, "could not record the queued sync; it shows once it runs");
    }
    match deps.queue.send(&sync_message(team, id, reason, now, &queued.sync_id)).await {
        Ok(()) => true,
        Err(e) => {
            if let Err(undo) = deps.sync_state.clear_queued(team, id, &queued).await {
                tracing::warn!(integration_id = %id, error.message = %undo, "could not clear a queued sync that was not sent");
            }
            tracing::error!(integration_id = %id, error.message = %e, "could not queue a sync; the schedule will retry");
            false
        }
    }
}

/// Validates everything, stores the token and the integration, and queues the first sync.
#[tracing::instrument(skip_all, fields(team_id = %team))]
pub async fn connect(deps: &Deps, team: &TeamId, body: ConnectRequest) -> Result<Connected, ApiError> {
    token_field(&body.token)?;
    let ca = body.ca_certificate.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if let Some(pem) = ca {
        parse_ca_bundle(pem).map_err(ApiError::from)?;
    }
    let url = InstanceUrl::parse(&body.instance_url, &deps.policy)?;
    let name = display_name(body.name.as_deref(), &url)?;
    limit_integrations(deps, team).await?;
    limit_connection_tests(deps, team).await?;
    let instance = deps.gitlab.resolve(&url).await?;
    let report = deps.gitlab.inspect_token(&instance, ca, &body.token).await?;
    let now = OffsetDateTime::now_utc();
    let assessment = assess(&report, now, deps.token_policy).map_err(problem_to_error)?;

    let id = IntegrationId::generate();
    let (webhook_secret, webhook_digest) = new_webhook_secret();
    // A token that may manage hooks gets them managed: GitLab must then be given the secret,
    // so it is kept (in its own secret), not only its digest.
    let managed = assessment.capabilities.manage_webhooks;
    let stored = StoredToken { origin: url.base_url(), token: body.token };
    let secret_ref = deps.vault.create(team, &id, &stored).await?;
    // GitLab 19.0+ signs deliveries: managed hooks get a signing key, and the integration then
    // accepts signed deliveries only.
    let signing_key = (managed && signs_deliveries(report.instance_version.as_deref())).then(SigningKey::generate);
    let hook_secret_ref = if managed {
        match deps.hook_secrets.create(team, &id, &webhook_secret, signing_key.as_ref()).await {
            Ok(r) => Some(r),
            Err(e) => {
                if let Err(cleanup) = deps.vault.delete(&secret_ref).await {
                    tracing::error!(integration_id = %id, error.message = %cleanup, "could not delete the secret of a failed connect");
                }
                return Err(e.into());
            }
        }
    } else {
        None
    };
    let mut integration = Integration {
        id: id.clone(),
        team_id: team.clone(),
        name,
        instance_url: url.base_url(),
        api_url: url.api_url(),
        status: IntegrationStatus::Active,
        instance: InstanceInfo { version: None, ca_certificate: ca.map(str::to_owned) },
        token: TokenInfo { kind: None, scopes: Vec::new(), expires_at: None, last_verified_at: now },
        user: GitlabUser { id: 0, username: String::new(), bot: false, is_admin: false },
        capabilities: Capabilities::default(),
        webhook: WebhookSettings {
            // Managed: the sync creates each tracked project's hook. Manual: a person adds
            // the hook with the URL and secret from this response.
            mode: if managed { WebhookMode::Managed } else { WebhookMode::Manual },
            events: WEBHOOK_EVENTS.iter().map(|e| (*e).to_owned()).collect(),
            signing_key_ref: signing_key.as_ref().and(hook_secret_ref.clone()),
            hook_secret_ref: hook_secret_ref.clone(),
            previous_secret_sha256: None,
            previous_valid_until: None,
        },
        webhook_secret_sha256: webhook_digest,
        secret_ref: secret_ref.clone(),
        warnings: Vec::new(),
        report: Default::default(),
        created_at: now,
        updated_at: now,
    };
    integration.apply_assessment(&report, assessment, now);
    if let Err(e) = deps.store.insert(&integration).await {
        // Do not leave an orphaned token (or webhook secret) behind.
        if let Err(cleanup) = deps.vault.delete(&secret_ref).await {
            tracing::error!(integration_id = %id, error.message = %cleanup, "could not delete the secret of a failed connect");
        }
        if let Some(r) = &hook_secret_ref
            && let Err(cleanup) = deps.hook_secrets.delete(r).await
        {
            tracing::error!(integration_id = %id, error.message = %cleanup, "could not delete the webhook secret of a failed connect");
        }
        return Err(e.into());
    }
    if !request_sync(deps, team, &id, SyncReason::Connected).await {
        integration.warnings.push(Warning {
            code: "first_sync_delayed".into(),
            message: "The first repository sync could not be queued; it will start with the next scheduled sync."
                .into(),
        });
    }
    tracing::info!(integration_id = %id, status = ?integration.status, "integration connected");
    Ok(Connected { integration, secret: webhook_secret, signing_key })
}

/// A new integration with what is shown once: the webhook secret and, for signed deliveries,
/// the signing token.
pub struct Connected {
    /// The stored integration.
    pub integration: Integration,
    /// The webhook secret token.
    pub secret: SecretString,
    /// The signing key, when deliveries are signed.
    pub signing_key: Option<SigningKey>,
}

/// GitLab signs deliveries from 19.0 on (Standard Webhooks, `signing_token`).
fn signs_deliveries(version: Option<&str>) -> bool {
    version.and_then(|v| v.split('.').next()).and_then(|m| m.parse::<u32>().ok()).is_some_and(|m| m >= 19)
}

/// Loads a team's integration; a foreign or missing one is `not_found`.
pub async fn load(deps: &Deps, team: &TeamId, id: &IntegrationId) -> Result<Integration, ApiError> {
    deps.store.get(team, id).await?.ok_or_else(ApiError::not_found)
}

fn status_for_error(e: &GitlabError) -> IntegrationStatus {
    match e {
        GitlabError::TokenExpired => IntegrationStatus::TokenExpired,
        GitlabError::TokenRevoked => IntegrationStatus::TokenRevoked,
        GitlabError::Unauthorized | GitlabError::Forbidden => IntegrationStatus::TokenInvalid,
        GitlabError::InsufficientScope { .. } => IntegrationStatus::InsufficientScope,
        _ => IntegrationStatus::Unreachable,
    }
}

fn problem_status(problem: &TokenProblem) -> IntegrationStatus {
    match problem {
        TokenProblem::MissingScopes { .. } => IntegrationStatus::InsufficientScope,
        TokenProblem::TooPrivileged { .. } | TokenProblem::AdminUser => IntegrationStatus::TokenInvalid,
    }
}

/// What GitLab says about the stored token, without touching the stored integration.
async fn check_stored_token(deps: &Deps, integration: &Integration) -> Result<TokenReport, IntegrationStatus> {
    let stored = match deps.vault.read(&integration.secret_ref).await {
        Ok(stored) => stored,
        Err(PortError::NotFound) => return Err(IntegrationStatus::TokenInvalid),
        Err(e) => {
            tracing::error!(error.message = %e, "could not read the token secret");
            return Err(IntegrationStatus::Unreachable);
        }
    };
    // The token is bound to the origin it was validated against; never send it elsewhere.
    if stored.origin != integration.instance_url {
        tracing::error!(integration_id = %integration.id, "stored token origin does not match the integration");
        return Err(IntegrationStatus::TokenInvalid);
    }
    let instance = match resolve(deps, &integration.instance_url).await {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error.code = e.code(), "instance URL no longer passes the policy");
            return Err(IntegrationStatus::Unreachable);
        }
    };
    deps.gitlab
        .inspect_token(&instance, integration.instance.ca_certificate.as_deref(), &stored.token)
        .await
        .map_err(|e| status_for_error(&e))
}

/// Re-derives the status from GitLab now and stores it.
#[tracing::instrument(skip_all, fields(team_id = %team, integration_id = %id))]
pub async fn verify(deps: &Deps, team: &TeamId, id: &IntegrationId) -> Result<Integration, ApiError> {
    let mut integration = load(deps, team, id).await?;
    // A verify contacts the instance like any other connection test, so it counts like one.
    limit_connection_tests(deps, team).await?;
    let loaded_at = integration.updated_at;
    let result = check_stored_token(deps, &integration).await;
    let now = OffsetDateTime::now_utc();
    match result {
        Ok(report) => match assess(&report, now, deps.token_policy) {
            Ok(assessment) => integration.apply_assessment(&report, assessment, now),
            Err(problem) => integration.status = problem_status(&problem),
        },
        Err(status) => integration.status = status,
    }
    integration.updated_at = now.max(loaded_at + time::Duration::microseconds(1));
    deps.store.update(&integration, loaded_at).await?;
    Ok(integration)
}

/// `PATCH /integrations/gitlab/{id}`: what the connector writes into merge requests.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsRequest {
    /// Switches to change; absent ones keep their value.
    pub report: ReportSwitches,
}

/// Report switches, each optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSwitches {
    /// The summary note.
    #[serde(default)]
    pub comment: Option<bool>,
    /// Inline threads.
    #[serde(default)]
    pub inline_threads: Option<bool>,
    /// The commit status.
    #[serde(default)]
    pub commit_status: Option<bool>,
    /// Fix merge requests.
    #[serde(default)]
    pub fix_merge_requests: Option<bool>,
    /// Export into GitLab's vulnerability report.
    #[serde(default)]
    pub vulnerability_export: Option<bool>,
}

/// Changes the report settings; no call to GitLab.
#[tracing::instrument(skip_all, fields(team_id = %team, integration_id = %id))]
pub async fn update_settings(
    deps: &Deps,
    team: &TeamId,
    id: &IntegrationId,
    body: SettingsRequest,
) -> Result<Integration, ApiError> {
    let mut integration = load(deps, team, id).await?;
    let loaded_at = integration.updated_at;
    let r = &mut integration.report;
    r.comment = body.report.comment.unwrap_or(r.comment);
    r.inline_threads = body.report.inline_threads.unwrap_or(r.inline_threads);
    r.commit_status = body.report.commit_status.unwrap_or(r.commit_status);
    r.fix_merge_requests = body.report.fix_merge_requests.unwrap_or(r.fix_merge_requests);
    r.vulnerability_export = body.report.vulnerability_export.unwrap_or(r.vulnerability_export);
    integration.updated_at = OffsetDateTime::now_utc().max(loaded_at + time::Duration::microseconds(1));
    deps.store.update(&integration, loaded_at).await?;
    Ok(integration)
}

/// Validates a new token against the same instance and user, then makes it current.
#[tracing::instrument(skip_all, fields(team_id = %team, integration_id = %id))]
pub async fn rotate(
    deps: &Deps,
    team: &TeamId,
    id: &IntegrationId,
    body: TokenRequest,
) -> Result<Integration, ApiError> {
    token_field(&body.token)?;
    let mut integration = load(deps, team, id).await?;
    let loaded_at = integration.updated_at;
    limit_connection_tests(deps, team).await?;
    let instance = resolve(deps, &integration.instance_url).await?;
    let report =
        deps.gitlab.inspect_token(&instance, integration.instance.ca_certificate.as_deref(), &body.token).await?;
    let now = OffsetDateTime::now_utc();
    let assessment = assess(&report, now, deps.token_policy).map_err(problem_to_error)?;
    if integration.user.id != 0 && report.user.id != integration.user.id {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "token_user_mismatch",
            "The new token belongs to a different GitLab user than the current one.",
        )
        .with_hint("Rotate with a token of the same user, or disconnect and connect again."));
    }
    let previous = deps.vault.read(&integration.secret_ref).await?;
    let stored = StoredToken { origin: integration.instance_url.clone(), token: body.token };
    deps.vault.replace(&integration.secret_ref, &stored).await?;
    integration.apply_assessment(&report, assessment, now.max(loaded_at + time::Duration::microseconds(1)));
    if let Err(e) = deps.store.update(&integration, loaded_at).await {
        // Keep the secret and the record in step: the record still describes the old token.
        if let Err(undo) = deps.vault.replace(&integration.secret_ref, &previous).await {
            tracing::error!(error.message = %undo, "could not restore the previous token after a failed rotation");
        }
        return Err(e.into());
    }
    request_sync(deps, team, id, SyncReason::TokenRotated).await;
    tracing::info!("token rotated");
    Ok(integration)
}

/// Deletes the token secret, then the integration and everything stored under it.
#[tracing::instrument(skip_all, fields(team_id = %team, integration_id = %id))]
pub async fn disconnect(deps: &Deps, team: &TeamId, id: &IntegrationId) -> Result<(), ApiError> {
    let mut integration = load(deps, team, id).await?;
    if integration.webhook.mode == WebhookMode::Managed {
        // Stop the hook reconciliation first (it skips manual integrations and removes a hook
        // it created once it sees this), then remove the hooks.
        let loaded_at = integration.updated_at;
        integration.webhook.mode = WebhookMode::Manual;
        integration.updated_at = OffsetDateTime::now_utc().max(loaded_at + time::Duration::microseconds(1));
        deps.store.update(&integration, loaded_at).await?;
        remove_hooks(deps, &integration).await?;
    }
    if let Some(r) = &integration.webhook.hook_secret_ref {
        deps.hook_secrets.delete(r).await?;
    }
    deps.vault.delete(&integration.secret_ref).await?;
    deps.store.delete(team, id).await?;
    tracing::info!("integration disconnected");
    Ok(())
}

/// Issues a new webhook secret; the old one keeps verifying for the configured grace period.
#[tracing::instrument(skip_all, fields(team_id = %team, integration_id = %id))]
pub async fn rotate_webhook_secret(deps: &Deps, team: &TeamId, id: &IntegrationId) -> Result<Rotated, ApiError> {
    let mut integration = load(deps, team, id).await?;
    let loaded_at = integration.updated_at;
    let now = OffsetDateTime::now_utc().max(loaded_at + time::Duration::microseconds(1));
    let secret = integration.rotate_webhook_secret(deps.webhook_secret_grace, now);
    integration.updated_at = now;
    deps.store.update(&integration, loaded_at).await?;
    let mut signing_key = None;
    if let Some(r) = &integration.webhook.hook_secret_ref {
        // Managed hooks get the new secret (and signing key) from the sync; the old ones work
        // meanwhile.
        signing_key = deps.hook_secrets.rotate(r, &secret, now + deps.webhook_secret_grace).await?;
        let message = Message::HooksRequested(shared::messages::HooksRequested {
            version: MESSAGE_VERSION,
            team_id: team.clone(),
            integration_id: id.clone(),
            reason: shared::messages::HooksReason::SecretRotated,
            requested_at: now,
        });
        if let Err(e) = deps.queue.send(&message).await {
            tracing::error!(error.message = %e, "could not queue the hook update; the hourly check will do it");
        }
    }
    tracing::info!("webhook secret rotated");
    Ok(Rotated { integration, secret, signing_key })
}

/// A rotated webhook secret (and signing key), shown once.
pub struct Rotated {
    /// The stored integration.
    pub integration: Integration,
    /// The new secret token.
    pub secret: SecretString,
    /// The new signing key, where deliveries are signed.
    pub signing_key: Option<SigningKey>,
}

/// Longest disconnect spends removing hooks (API Gateway gives up after 30 s).
const HOOK_REMOVAL_BUDGET: std::time::Duration = std::time::Duration::from_secs(15);

/// Removes the hooks the connector created, where the token still allows it. Hooks left
/// behind (token rejected, instance down, out of time) are logged: they will answer 401.
async fn remove_hooks(deps: &Deps, integration: &Integration) -> Result<(), ApiError> {
    let targets = deps.projects.hook_targets(&integration.team_id, &integration.id).await?;
    let with_hooks: Vec<(u64, u64)> = targets.iter().filter_map(|t| t.hook_id.map(|h| (t.project_id, h))).collect();
    if with_hooks.is_empty() {
        return Ok(());
    }
    let token = match deps.vault.read(&integration.secret_ref).await {
        Ok(stored) if stored.origin == integration.instance_url => stored.token,
        _ => {
            tracing::warn!(hooks = with_hooks.len(), "token unusable; hooks left in GitLab");
            return Ok(());
        }
    };
    let Ok(instance) = resolve(deps, &integration.instance_url).await else {
        tracing::warn!(hooks = with_hooks.len(), "instance unreachable; hooks left in GitLab");
        return Ok(());
    };
    let ca = integration.instance.ca_certificate.as_deref();
    let started = std::time::Instant::now();
    let mut left = 0;
    for (project_id, hook_id) in with_hooks {
        if started.elapsed() > HOOK_REMOVAL_BUDGET {
            left += 1;
            continue;
        }
        if let Err(e) = deps.hooks.delete_hook(&instance, ca, &token, project_id, hook_id).await {
            tracing::warn!(error.message = %e, project_id, "hook not removed");
            left += 1;
        }
    }
    if left > 0 {
        tracing::warn!(left, "some hooks were left in GitLab");
    }
    Ok(())
}

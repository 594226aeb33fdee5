//! Managed project hooks: each tracked project of a managed integration gets the connector's
//! hook; untracked ones lose it; hooks edited in GitLab are repaired, and disabled ones get the
//! secret again and a test delivery, which re-enables them once deliveries work.

use shared::domain::gitlab::GitlabError;
use shared::domain::hooks::{GitlabHook, HookSpec};
use shared::domain::integration::{WebhookMode, webhook_url};
use shared::domain::project::HookRecord;
use shared::domain::url_policy::InstanceUrl;
use shared::messages::{HooksReason, HooksRequested};
use shared::ports::{PortError, ResolvedInstance};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Deps;

/// Hooks handled per message; the next schedule tick continues.
const MAX_PER_RUN: usize = 200;

/// What a reconciliation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HooksOutcome {
    /// Hooks created.
    pub created: u64,
    /// Hooks updated (drift, rotation, disabled).
    pub repaired: u64,
    /// Hooks removed from untracked projects.
    pub removed: u64,
    /// Hooks found disabled whose test delivery succeeded.
    pub reenabled: u64,
    /// Projects whose hook could not be created or repaired.
    pub failed: u64,
    /// Why nothing was done, when nothing was.
    pub skipped: Option<&'static str>,
}

fn record(hook: &GitlabHook, error: Option<&str>) -> HookRecord {
    HookRecord {
        hook_id: Some(hook.id),
        alert_status: hook.alert_status.clone(),
        disabled_until: hook.disabled_until.clone(),
        last_checked_at: now_text(),
        error: error.map(str::to_owned),
    }
}

fn now_text() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()
}

fn failure(hook_id: Option<u64>, e: &GitlabError) -> HookRecord {
    let error = match e {
        GitlabError::Forbidden | GitlabError::InsufficientScope { .. } => "insufficient_role",
        _ => "instance_error",
    };
    HookRecord {
        hook_id,
        alert_status: None,
        disabled_until: None,
        last_checked_at: now_text(),
        error: Some(error.into()),
    }
}

/// The token is no good: stop, the sync reports it.
fn fatal(e: &GitlabError) -> bool {
    matches!(
        e,
        GitlabError::Unauthorized
            | GitlabError::TokenExpired
            | GitlabError::TokenRevoked
            | GitlabError::RateLimited { .. }
    )
}

/// Makes the managed hooks of one integration match its tracked projects.
#[tracing::instrument(skip_all, fields(integration_id = %request.integration_id, reason = ?request.reason))]
pub async fn reconcile(deps: &Deps, request: &HooksRequested) -> Result<HooksOutcome, PortError> {
    let (team, id) = (&request.team_id, &request.integration_id);
    let skip = |why| Ok(HooksOutcome { skipped: Some(why), ..HooksOutcome::default() });
    let Some(integration) = deps.integrations.get(team, id).await? else {
        return skip("no_integration");
    };
    let (WebhookMode::Managed, Some(secret_ref), Some(base)) =
        (integration.webhook.mode, integration.webhook.hook_secret_ref.as_deref(), deps.webhook_base_url.as_deref())
    else {
        return skip("not_managed");
    };
    let stored = match deps.vault.read(&integration.secret_ref).await {
        Ok(stored) if stored.origin == integration.instance_url => stored,
        Ok(_) | Err(PortError::NotFound) => return skip("token_unusable"),
        Err(e) => return Err(e),
    };
    let secrets = match deps.hook_secrets.read(secret_ref).await {
        Ok(secrets) => secrets,
        Err(PortError::NotFound) => return skip("secret_missing"),
        Err(e) => return Err(e),
    };
    let instance: ResolvedInstance = match InstanceUrl::parse(&integration.instance_url, &deps.policy) {
        Ok(url) => match deps.gitlab.resolve(&url).await {
            Ok(instance) => instance,
            Err(_) => return skip("instance_unreachable"),
        },
        Err(_) => return skip("invalid_instance_url"),
    };
    let ca = integration.instance.ca_certificate.as_deref();
    let token = &stored.token;
    let spec = HookSpec {
        url: webhook_url(base, id),
        token: secrets.token,
        signing_token: secrets.signing_key.map(|k| secrecy::SecretString::from(k.to_whsec())),
    };
    let hooks = &deps.hooks;
    let mut out = HooksOutcome::default();
    for target in deps.projects.hook_targets(team, id).await?.into_iter().take(MAX_PER_RUN) {
        let pid = target.project_id;
        let result: Result<Option<HookRecord>, GitlabError> = match (target.wants_hook, target.hook_id) {
            (false, Some(hook_id)) => hooks.delete_hook(&instance, ca, token, pid, hook_id).await.map(|()| {
                out.removed += 1;
                None
            }),
            (false, None) => continue,
            (true, None) => hooks.create_hook(&instance, ca, token, pid, &spec).await.map(|h| {
                out.created += 1;
                Some(record(&h, None))
            }),
            (true, Some(hook_id)) => {
                check(deps, &instance, ca, token, pid, hook_id, &spec, request.reason, &mut out).await.map(Some)
            }
        };
        // A disconnect may have stopped the management meanwhile: never leave a hook behind it.
        if let Ok(Some(HookRecord { hook_id: Some(new_id), .. })) = &result
            && Some(*new_id) != target.hook_id
            && !still_managed(deps, request).await?
        {
            if let Err(e) = hooks.delete_hook(&instance, ca, token, pid, *new_id).await {
                tracing::warn!(error.message = %e, project_id = pid, "hook created during a disconnect not removed");
            }
            return skip("not_managed");
        }
        match result {
            Ok(hook) => deps.projects.set_hook(team, id, pid, hook.as_ref()).await?,
            Err(e) if fatal(&e) => {
                tracing::warn!(error.message = %e, "hook reconciliation stopped");
                break;
            }
            Err(e) => {
                tracing::warn!(error.message = %e, project_id = pid, "hook could not be managed");
                out.failed += 1;
                deps.projects.set_hook(team, id, pid, Some(&failure(target.hook_id, &e))).await?;
            }
        }
    }
    tracing::info!(outcome = ?out, "managed hooks reconciled");
    Ok(out)
}

async fn still_managed(deps: &Deps, request: &HooksRequested) -> Result<bool, PortError> {
    let current = deps.integrations.get(&request.team_id, &request.integration_id).await?;
    Ok(current.is_some_and(|i| i.webhook.mode == WebhookMode::Managed))
}

/// One existing hook: recreated when gone, updated when it drifted or the secret changed,
/// re-armed and tested when GitLab disabled it.
#[allow(clippy::too_many_arguments)]
async fn check(
    deps: &Deps,
    instance: &ResolvedInstance,
    ca: Option<&str>,
    token: &secrecy::SecretString,
    pid: u64,
    hook_id: u64,
    spec: &HookSpec,
    reason: HooksReason,
    out: &mut HooksOutcome,
) -> Result<HookRecord, GitlabError> {
    let hooks = &deps.hooks;
    let hook = match hooks.get_hook(instance, ca, token, pid, hook_id).await {
        Ok(hook) => hook,
        Err(GitlabError::NotFound) => {
            // Deleted in GitLab: put it back.
            out.created += 1;
            return hooks.create_hook(instance, ca, token, pid, spec).await.map(|h| record(&h, None));
        }
        Err(e) => return Err(e),
    };
    let drift = hook.drift(&spec.url);
    let disabled = hook.is_disabled();
    if drift.is_empty() && !disabled && reason != HooksReason::SecretRotated {
        return Ok(record(&hook, None));
    }
    // Every attribute again, the secret included: GitLab drops it when the URL changes, and a
    // disabled hook may have been failing on a wrong one.
    let updated = hooks.update_hook(instance, ca, token, pid, hook_id, spec).await?;
    out.repaired += 1;
    if !disabled {
        return Ok(record(&updated, None));
    }
    // GitLab enables a disabled hook again when a test delivery succeeds.
    if hooks.test_hook(instance, ca, token, pid, hook_id).await? {
        out.reenabled += 1;
    }
    let after = hooks.get_hook(instance, ca, token, pid, hook_id).await?;
    let error = after.is_disabled().then_some("deliveries_failing");
    Ok(record(&after, error))
}

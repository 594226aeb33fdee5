//! The sync use case: one run at a time per integration (a lease), list every project, write
//! only what changed, mark what disappeared, keep the token's health on the integration.

use std::collections::{HashMap, HashSet};

use shared::adapters::dynamodb_projects::rfc3339;
use shared::domain::gitlab::GitlabError;
use shared::domain::integration::{Integration, IntegrationStatus, status_for_expiry};
use shared::domain::listing::{ListedProject, ListingError, ListingStats};
use shared::domain::project::{ProjectSnapshot, Reconcile, StoredRef, reconcile, wants_languages};
use shared::domain::sync::{Checkpoint, RunState, SyncRun};
use shared::domain::url_policy::InstanceUrl;
use shared::messages::{MESSAGE_VERSION, Message, SyncReason, SyncRequested};
use shared::ports::{PortError, ProjectWrite};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::Deps;

/// Writes are flushed in groups of this many projects.
const FLUSH_EVERY: usize = 100;

/// What became of a sync request.
#[derive(Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    /// A run listed everything and reconciled it.
    Completed {
        /// The run record.
        run: Box<SyncRun>,
    },
    /// The run stopped with an error, recorded on the run (and the integration's status).
    Failed {
        /// The run record.
        run: Box<SyncRun>,
    },
    /// The run ran out of time: its position is checkpointed and a continuation is queued.
    Checkpointed {
        /// The run so far.
        run: Box<SyncRun>,
    },
    /// Another run holds the lease; this request is covered by it.
    Coalesced,
    /// The integration no longer exists (or belongs to another team).
    IntegrationGone,
}

/// Back-end failure that makes the message worth retrying.
#[derive(Debug, thiserror::Error)]
#[error("back end unavailable: {0}")]
pub struct SyncError(#[from] PortError);

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Runs one sync for a request.
#[tracing::instrument(skip_all, fields(team_id = %request.team_id, integration_id = %request.integration_id))]
pub async fn sync(deps: &Deps, request: &SyncRequested, deadline: Option<Instant>) -> Result<SyncOutcome, SyncError> {
    let (team, id) = (&request.team_id, &request.integration_id);
    // The message names a team; the stored integration must agree (tenant isolation 8.7).
    let Some(integration) = deps.integrations.get(team, id).await? else {
        return Ok(SyncOutcome::IntegrationGone);
    };
    let started = now();
    let lease_until = started + time::Duration::seconds(deps.lease.as_secs() as i64);
    // The holder is unique per attempt: a redelivered message must not share a running lease.
    let holder = hex::encode(rand::random::<[u8; 12]>());
    if !deps.sync_state.acquire_lease(team, id, &holder, lease_until, started).await? {
        return Ok(SyncOutcome::Coalesced);
    }
    let result = run_under_lease(deps, request, &integration, deadline, started).await;
    // Always give the lease back, even after a failure, so the next request can run.
    let released = deps.sync_state.release_lease(team, id, &holder).await;
    let run = result?;
    released?;
    if run.state == Some(RunState::Running) {
        // Queued only after the lease is free: a continuation picked up at once must not find
        // this invocation still holding it and be coalesced away.
        deps.queue
            .send(&Message::SyncRequested(SyncRequested {
                version: MESSAGE_VERSION,
                team_id: team.clone(),
                integration_id: id.clone(),
                reason: SyncReason::Continuation,
                requested_at: now(),
                sync_id: Some(run.sync_id.clone()),
            }))
            .await?;
    }
    Ok(match run.state {
        Some(RunState::Succeeded) => SyncOutcome::Completed { run: Box::new(run) },
        Some(RunState::Running) => SyncOutcome::Checkpointed { run: Box::new(run) },
        _ => SyncOutcome::Failed { run: Box::new(run) },
    })
}

async fn run_under_lease(
    deps: &Deps,
    request: &SyncRequested,
    integration: &Integration,
    deadline: Option<Instant>,
    started: OffsetDateTime,
) -> Result<SyncRun, PortError> {
    let (team, id) = (&integration.team_id, &integration.id);
    // A checkpoint means an earlier invocation of this pass ran out of time: continue it.
    let checkpoint = deps.checkpoints.load_checkpoint(team, id).await?;
    let mut run = match &checkpoint {
        Some(cp) => SyncRun { state: Some(RunState::Running), finished_at: None, ..cp.run.clone() },
        None => SyncRun {
            sync_id: request
                .sync_id
                .clone()
                .filter(|s| s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric()))
                .unwrap_or_else(|| hex::encode(rand::random::<[u8; 8]>())),
            state: Some(RunState::Running),
            reason: serde_json::to_value(request.reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            started_at: rfc3339(started),
            ..SyncRun::default()
        },
    };
    let lambda_deadline = deadline;
    let deadline = match (deadline, deps.max_run) {
        (Some(d), Some(max)) => Some(d.min(Instant::now() + max)),
        (None, Some(max)) => Some(Instant::now() + max),
        (d, None) => d,
    };
    let result = match deps.sync_state.save_run(team, id, &run).await {
        Ok(()) => run_listing(deps, integration, &mut run, deadline, lambda_deadline, checkpoint).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        run.state = Some(RunState::Failed);
        run.error = Some("service_unavailable".into());
        run.error_message = Some(format!("A back-end service failed: {e}"));
    }
    if run.state != Some(RunState::Running) {
        run.finished_at = Some(rfc3339(now()));
    }
    let saved = deps.sync_state.save_run(team, id, &run).await;
    result?;
    saved?;
    Ok(run)
}

fn fail(run: &mut SyncRun, code: &str, message: &str) {
    run.state = Some(RunState::Failed);
    run.error = Some(code.to_owned());
    run.error_message = Some(message.to_owned());
}

/// Records a new status on the integration when it changed (optimistic: a concurrent verify or
/// rotation wins, and the next run re-derives the status anyway).
async fn set_status(deps: &Deps, integration: &Integration, status: IntegrationStatus) -> Result<(), PortError> {
    if integration.status == status {
        return Ok(());
    }
    let mut updated = integration.clone();
    updated.status = status;
    updated.updated_at = now().max(integration.updated_at + time::Duration::microseconds(1));
    match deps.integrations.update(&updated, integration.updated_at).await {
        Ok(()) | Err(PortError::Conflict) | Err(PortError::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

fn token_status(e: &GitlabError) -> Option<IntegrationStatus> {
    match e {
        GitlabError::TokenExpired => Some(IntegrationStatus::TokenExpired),
        GitlabError::TokenRevoked => Some(IntegrationStatus::TokenRevoked),
        GitlabError::Unauthorized => Some(IntegrationStatus::TokenInvalid),
        GitlabError::InsufficientScope { .. } => Some(IntegrationStatus::InsufficientScope),
        _ => None,
    }
}

/// The part of a run between taking and releasing the lease. Problems with GitLab end the run
/// (recorded on it); only back-end failures are returned as errors.
async fn run_listing(
    deps: &Deps,
    integration: &Integration,
    run: &mut SyncRun,
    deadline: Option<Instant>,
    lambda_deadline: Option<Instant>,
    checkpoint: Option<Checkpoint>,
) -> Result<(), PortError> {
    let (team, id) = (&integration.team_id, &integration.id);
    // A token GitLab already called dead is not tried again until it is verified or rotated.
    if matches!(
        integration.status,
        IntegrationStatus::TokenRevoked | IntegrationStatus::TokenInvalid | IntegrationStatus::TokenExpired
    ) {
        fail(run, "token_unusable", "The token was rejected by GitLab earlier; rotate or verify it first.");
        return Ok(());
    }
    let expiry_status = status_for_expiry(integration.token.expires_at, now());
    if expiry_status == IntegrationStatus::TokenExpired {
        set_status(deps, integration, IntegrationStatus::TokenExpired).await?;
        fail(run, "token_expired", "The token has expired.");
        return Ok(());
    }
    let stored = match deps.vault.read(&integration.secret_ref).await {
        Ok(stored) if stored.origin == integration.instance_url => stored,
        Ok(_) => {
            tracing::error!("stored token origin does not match the integration; not sending it");
            fail(run, "token_invalid", "The stored token does not belong to this instance.");
            return Ok(());
        }
        Err(PortError::NotFound) => {
            set_status(deps, integration, IntegrationStatus::TokenInvalid).await?;
            fail(run, "token_invalid", "The token secret is missing.");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let instance = match InstanceUrl::parse(&integration.instance_url, &deps.policy) {
        Ok(url) => match deps.gitlab.resolve(&url).await {
            Ok(instance) => instance,
            Err(rejection) => {
                set_status(deps, integration, IntegrationStatus::Unreachable).await?;
                fail(run, "instance_unreachable", &rejection.message);
                return Ok(());
            }
        },
        Err(rejection) => {
            fail(run, "invalid_instance_url", &rejection.message);
            return Ok(());
        }
    };
    let refs = deps.projects.stored_refs(team, id).await?;
    let mut settings = deps.listing.clone();
    settings.deadline = deadline;
    let (resume, prior_seen) = match checkpoint {
        Some(cp) => (Some(cp.ranges), cp.seen.into_iter().collect::<HashSet<u64>>()),
        None => (None, HashSet::new()),
    };
    settings.resume = resume.clone();
    let ca = integration.instance.ca_certificate.as_deref();
    // The filtered listings are small and need no cap beyond the function's own deadline; the
    // per-invocation cap applies to the main pass, which can continue from a checkpoint.
    let mut flag_settings = settings.clone();
    flag_settings.deadline = lambda_deadline;
    flag_settings.resume = None;
    let (listed, progress) = match list_flags(deps, &instance, ca, &stored.token, &flag_settings).await {
        // Out of time before the main pass moved: keep the previous position.
        Err(ListingError::Deadline { .. }) => (
            Err(ListingError::Deadline { remaining: resume.clone().unwrap_or_else(|| vec![(0, None)]) }),
            Progress { seen: prior_seen.clone(), ..Progress::default() },
        ),
        Err(e) => (Err(e), Progress::default()),
        Ok((flags, flag_stats)) => {
            let (tx, rx) = mpsc::channel::<Vec<ListedProject>>(16);
            let listing = deps.gitlab.list_projects(&instance, ca, &stored.token, settings, tx);
            let consume = consume_pages(deps, integration, &run.sync_id, &refs, &flags, prior_seen.clone(), rx);
            let (listed, consumed) = tokio::join!(listing, consume);
            let listed = listed.map(|mut stats| {
                stats.requests += flag_stats.requests;
                stats.rate_limited += flag_stats.rate_limited;
                stats
            });
            (listed, consumed?)
        }
    };
    // Counts add up across the invocations of one pass.
    run.seen = progress.seen.len() as u64;
    run.added += progress.added;
    run.updated += progress.updated;
    run.unchanged += progress.unchanged;
    run.skipped += progress.skipped;
    run.write_calls += progress.write_calls;
    if !matches!(listed, Err(ListingError::Deadline { .. })) {
        deps.checkpoints.clear_checkpoint(&integration.team_id, &integration.id).await?;
    }
    match listed {
        Ok(stats) => {
            record_stats(run, &stats);
            // Only a complete pass may conclude that a project is gone.
            let gone_at = rfc3339(now());
            let removals: Vec<ProjectWrite> = refs
                .iter()
                .filter(|(pid, r)| !r.removed && !progress.seen.contains(pid))
                .map(|(pid, _)| ProjectWrite::Remove(*pid, gone_at.clone()))
                .collect();
            run.removed = removals.len() as u64;
            if !removals.is_empty() {
                run.write_calls += deps.projects.write_projects(team, id, &run.sync_id, &removals).await?;
            }
            run.write_calls +=
                fetch_languages(deps, integration, &instance, &stored.token, &progress.languages).await?;
            run.state = Some(RunState::Succeeded);
            let healthy = if expiry_status == IntegrationStatus::TokenExpiring {
                expiry_status
            } else {
                IntegrationStatus::Active
            };
            if matches!(
                integration.status,
                IntegrationStatus::Active | IntegrationStatus::TokenExpiring | IntegrationStatus::Unreachable
            ) {
                set_status(deps, integration, healthy).await?;
            }
        }
        Err(ListingError::Gitlab(e)) => {
            if let Some(status) = token_status(&e) {
                // A dead token ends the run at once; retrying would only add failed logins.
                set_status(deps, integration, status).await?;
            } else if matches!(e, GitlabError::Unreachable | GitlabError::Timeout | GitlabError::Tls) {
                set_status(deps, integration, IntegrationStatus::Unreachable).await?;
            }
            let code = match &e {
                GitlabError::TokenExpired => "token_expired",
                GitlabError::TokenRevoked => "token_revoked",
                GitlabError::Unauthorized => "token_invalid",
                GitlabError::InsufficientScope { .. } | GitlabError::Forbidden => "insufficient_scope",
                GitlabError::RateLimited { .. } => "instance_rate_limited",
                GitlabError::Timeout => "instance_timeout",
                GitlabError::Tls => "tls_error",
                GitlabError::Unreachable | GitlabError::Server { .. } => "instance_unreachable",
                _ => "not_gitlab",
            };
            fail(run, code, &format!("The project listing stopped: {e}."));
        }
        Err(ListingError::Cap(what)) => {
            fail(run, "listing_cap", &format!("The instance lists more {what} than one sync reads."))
        }
        Err(ListingError::Deadline { remaining }) => {
            let checkpoint =
                Checkpoint { run: run.clone(), ranges: remaining, seen: progress.seen.iter().copied().collect() };
            deps.checkpoints.save_checkpoint(&integration.team_id, &integration.id, &checkpoint).await?;
            tracing::info!(
                remaining_ranges = checkpoint.ranges.len(),
                seen = checkpoint.seen.len(),
                "sync checkpointed"
            );
        }
        Err(ListingError::Closed) => fail(run, "internal_error", "The listing stopped unexpectedly."),
    }
    Ok(())
}

/// Most language lookups in one run; the rest wait for the next run.
const MAX_LANGUAGE_LOOKUPS: usize = 200;

/// Fetches languages for tracked projects that changed or have none (GitLab computes them per
/// project; one call each). A failing lookup is skipped; it is tried again next run.
async fn fetch_languages(
    deps: &Deps,
    integration: &Integration,
    instance: &shared::ports::ResolvedInstance,
    token: &secrecy::SecretString,
    ids: &[u64],
) -> Result<u64, PortError> {
    let mut writes = 0;
    for pid in ids.iter().take(MAX_LANGUAGE_LOOKUPS) {
        match deps.gitlab.project_languages(instance, integration.instance.ca_certificate.as_deref(), token, *pid).await
        {
            Ok(languages) => {
                match deps.projects.set_languages(&integration.team_id, &integration.id, *pid, &languages).await {
                    Ok(()) => writes += 1,
                    Err(PortError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) if token_status(&e).is_some() => break,
            Err(e) => tracing::warn!(project_id = pid, error.message = %e, "languages not fetched"),
        }
    }
    Ok(writes)
}

fn record_stats(run: &mut SyncRun, stats: &ListingStats) {
    run.requests += stats.requests;
    run.rate_limited += stats.rate_limited;
}

/// What the simple listing does not carry (GitLab's `BasicProjectDetails` has no `archived` or
/// `visibility`): the ids of archived, public and internal projects, from filtered listings that
/// only return those few.
#[derive(Default)]
struct Flags {
    archived: HashSet<u64>,
    public: HashSet<u64>,
    internal: HashSet<u64>,
}

impl Flags {
    fn visibility(&self, id: u64) -> &'static str {
        if self.public.contains(&id) {
            "public"
        } else if self.internal.contains(&id) {
            "internal"
        } else {
            "private"
        }
    }
}

/// Lists ids matching one filter.
async fn list_ids(
    deps: &Deps,
    instance: &shared::ports::ResolvedInstance,
    ca: Option<&str>,
    token: &secrecy::SecretString,
    settings: &shared::domain::listing::ListingSettings,
    filter: &str,
) -> Result<(HashSet<u64>, ListingStats), ListingError> {
    let mut filtered = settings.clone();
    filtered.extra_query = filter.to_owned();
    let (tx, mut rx) = mpsc::channel::<Vec<ListedProject>>(16);
    let collect = async move {
        let mut ids = HashSet::new();
        while let Some(page) = rx.recv().await {
            ids.extend(page.into_iter().map(|p| p.id));
        }
        ids
    };
    let (listed, ids) = tokio::join!(deps.gitlab.list_projects(instance, ca, token, filtered, tx), collect);
    listed.map(|stats| (ids, stats))
}

async fn list_flags(
    deps: &Deps,
    instance: &shared::ports::ResolvedInstance,
    ca: Option<&str>,
    token: &secrecy::SecretString,
    settings: &shared::domain::listing::ListingSettings,
) -> Result<(Flags, ListingStats), ListingError> {
    let (archived, a) = list_ids(deps, instance, ca, token, settings, "archived=true").await?;
    let (public, p) = list_ids(deps, instance, ca, token, settings, "visibility=public").await?;
    let (internal, i) = list_ids(deps, instance, ca, token, settings, "visibility=internal").await?;
    let stats = ListingStats {
        requests: a.requests + p.requests + i.requests,
        rate_limited: a.rate_limited + p.rate_limited + i.rate_limited,
        ..ListingStats::default()
    };
    Ok((Flags { archived, public, internal }, stats))
}

#[derive(Default)]
struct Progress {
    seen: HashSet<u64>,
    /// Tracked projects whose languages should be (re)fetched.
    languages: Vec<u64>,
    added: u64,
    updated: u64,
    unchanged: u64,
    skipped: u64,
    write_calls: u64,
}

/// Reconciles pages as they arrive and writes changes in groups.
async fn consume_pages(
    deps: &Deps,
    integration: &Integration,
    sync_id: &str,
    refs: &HashMap<u64, StoredRef>,
    flags: &Flags,
    seen: HashSet<u64>,
    mut rx: mpsc::Receiver<Vec<ListedProject>>,
) -> Result<Progress, PortError> {
    let (team, id, base_url) = (&integration.team_id, &integration.id, integration.instance_url.as_str());
    let mut progress = Progress { seen, ..Progress::default() };
    let mut writes = Vec::new();
    while let Some(page) = rx.recv().await {
        for listed in page {
            let snapshot = match ProjectSnapshot::new(
                base_url,
                listed.id,
                &listed.path_with_namespace,
                listed.default_branch.as_deref(),
                listed.visibility.as_deref().or_else(|| Some(flags.visibility(listed.id))),
                listed.archived.unwrap_or_else(|| flags.archived.contains(&listed.id)),
                listed.empty_repo,
                listed.last_activity_at.as_deref(),
            ) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(project_id = listed.id, reason = %e, "listed project skipped");
                    progress.skipped += 1;
                    continue;
                }
            };
            // The same id twice in one pass (overlapping pages) counts once.
            if !progress.seen.insert(snapshot.id) {
                continue;
            }
            let decision = reconcile(refs.get(&snapshot.id), &snapshot);
            if wants_languages(refs.get(&snapshot.id), decision) {
                progress.languages.push(snapshot.id);
            }
            match decision {
                Reconcile::Add => {
                    progress.added += 1;
                    writes.push(ProjectWrite::Add(snapshot));
                }
                Reconcile::Update => {
                    progress.updated += 1;
                    writes.push(ProjectWrite::Update(snapshot));
                }
                Reconcile::Unchanged => progress.unchanged += 1,
            }
        }
        if writes.len() >= FLUSH_EVERY {
            progress.write_calls += deps.projects.write_projects(team, id, sync_id, &writes).await?;
            writes.clear();
        }
    }
    if !writes.is_empty() {
        progress.write_calls += deps.projects.write_projects(team, id, sync_id, &writes).await?;
    }
    Ok(progress)
}

/// Schedule tick: one `SyncRequested` per integration whose token may still work, sent in
/// batches. Returns how many were queued.
#[tracing::instrument(skip_all)]
pub async fn fan_out(deps: &Deps) -> Result<usize, PortError> {
    let at = now();
    let messages: Vec<Message> = deps
        .directory
        .all_integrations()
        .await?
        .into_iter()
        .filter(|(_, _, status)| {
            !matches!(
                status,
                IntegrationStatus::TokenRevoked | IntegrationStatus::TokenInvalid | IntegrationStatus::TokenExpired
            )
        })
        .map(|(team_id, integration_id, _)| {
            Message::SyncRequested(SyncRequested {
                version: MESSAGE_VERSION,
                team_id,
                integration_id,
                reason: SyncReason::Scheduled,
                requested_at: at,
                sync_id: None,
            })
        })
        .collect();
    deps.queue.send_all(&messages).await?;
    tracing::info!(queued = messages.len(), "scheduled syncs queued");
    Ok(messages.len())
}

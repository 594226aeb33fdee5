//! The sync use case: one run at a time per integration (a lease), list every project, write
//! only what changed, mark what disappeared, keep the token's health on the integration.

use std::collections::{HashMap, HashSet};

use shared::adapters::dynamodb_projects::rfc3339;
use shared::domain::gitlab::GitlabError;
use shared::domain::ids::{IntegrationId, TeamId};
use shared::domain::integration::{Integration, IntegrationStatus, status_for_expiry};
use shared::domain::listing::{IdRange, Listed, ListingError, ListingStats};
use shared::domain::project::{ProjectSnapshot, Reconcile, StoredRef, listed_empty_repo, reconcile, wants_details};
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
    // A checkpoint means an earlier invocation of this pass ran out of time or crashed:
    // continue it, unless it is unreadable or too old to trust its list of seen projects.
    let checkpoint = match deps.checkpoints.load_checkpoint(team, id).await {
        Ok(Some(cp)) if checkpoint_is_fresh(&cp, started) => Some(cp),
        Ok(None) => None,
        Ok(Some(_)) | Err(PortError::Corrupt(_)) => {
            tracing::warn!("checkpoint discarded (unreadable or older than a day); starting a new pass");
            deps.checkpoints.clear_checkpoint(team, id).await?;
            None
        }
        Err(e) => return Err(e),
    };
    let requested_id =
        request.sync_id.clone().filter(|s| s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric()));
    let mut run = match &checkpoint {
        // A pass that is picked up again by a new request (not its own continuation) carries
        // the new request's id: that is the id `POST .../sync` handed out.
        Some(cp) => SyncRun {
            state: Some(RunState::Running),
            finished_at: None,
            sync_id: match request.reason {
                SyncReason::Continuation => cp.run.sync_id.clone(),
                _ => requested_id.unwrap_or_else(|| cp.run.sync_id.clone()),
            },
            ..cp.run.clone()
        },
        None => SyncRun {
            sync_id: requested_id.unwrap_or_else(|| hex::encode(rand::random::<[u8; 8]>())),
            state: Some(RunState::Running),
            reason: serde_json::to_value(request.reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            started_at: rfc3339(started),
            requested_at: (request.reason == SyncReason::Manual).then(|| rfc3339(request.requested_at)),
            ..SyncRun::default()
        },
    };
    run.updated_at = Some(rfc3339(now()));
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
    run.updated_at = Some(rfc3339(now()));
    let saved = deps.sync_state.save_run(team, id, &run).await;
    result?;
    saved?;
    Ok(run)
}

/// Checkpoints older than this start a new pass: projects seen a day ago may be gone now.
const MAX_CHECKPOINT_AGE: time::Duration = time::Duration::hours(24);

fn checkpoint_is_fresh(cp: &Checkpoint, now: OffsetDateTime) -> bool {
    OffsetDateTime::parse(&cp.run.started_at, &time::format_description::well_known::Rfc3339)
        .is_ok_and(|started| now - started <= MAX_CHECKPOINT_AGE)
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
    let mut pass = match checkpoint {
        Some(cp) => {
            settings.resume = Some(cp.ranges.clone());
            Pass::resumed(cp)
        }
        None => Pass::default(),
    };
    let ca = integration.instance.ca_certificate.as_deref();
    // The filtered listings are small and need no cap beyond the function's own deadline; the
    // per-invocation cap applies to the main pass, which can continue from a checkpoint.
    let mut flag_settings = settings.clone();
    flag_settings.deadline = lambda_deadline;
    flag_settings.resume = None;
    let listing_started = Instant::now();
    let (flags, mut stats) = list_flags(deps, &instance, ca, &stored.token, &flag_settings).await;
    let listed = match flags {
        Err(e) => Err(e),
        Ok(flags) => {
            let (tx, rx) = mpsc::channel::<Listed>(16);
            let listing = deps.gitlab.list_projects(&instance, ca, &stored.token, settings, tx);
            let base = Progress { run: run.clone(), before: stats, started: listing_started };
            let consume = consume_pages(deps, integration, &base, &refs, &flags, &mut pass, rx);
            let (report, consumed) = tokio::join!(listing, consume);
            stats.add(&report.stats);
            consumed?;
            report.result
        }
    };
    // Counts add up across the invocations of one pass.
    pass.add_to(run);
    add_stats(run, &stats, listing_started);
    match listed {
        Ok(()) => {
            deps.checkpoints.clear_checkpoint(team, id).await?;
            // Only a complete pass may conclude that a project is gone.
            let gone_at = rfc3339(now());
            let removals: Vec<ProjectWrite> = refs
                .iter()
                .filter(|(pid, r)| !r.removed && !pass.seen.contains(pid))
                .map(|(pid, _)| ProjectWrite::Remove(*pid, gone_at.clone()))
                .collect();
            run.removed = removals.len() as u64;
            if !removals.is_empty() {
                run.write_calls += deps.projects.write_projects(team, id, &run.sync_id, &removals).await?;
            }
            run.write_calls += refresh_tracked(
                deps,
                integration,
                &instance,
                &stored.token,
                &pass.details,
                &run.sync_id,
                lambda_deadline,
            )
            .await?;
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
        Err(ListingError::Deadline) => {
            // Everything handled so far is written; record where each range stands.
            pass.checkpoint(deps, team, id, run).await?;
            tracing::info!(
                remaining_ranges = pass.positions.iter().flatten().count(),
                seen = pass.seen.len(),
                "sync checkpointed"
            );
        }
        Err(e) => {
            deps.checkpoints.clear_checkpoint(team, id).await?;
            match e {
                ListingError::Gitlab(e) => {
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
                ListingError::Cap(what) => {
                    fail(run, "listing_cap", &format!("The instance lists more {what} than one sync reads."))
                }
                ListingError::Deadline | ListingError::Closed => {
                    fail(run, "internal_error", "The listing stopped unexpectedly.")
                }
            }
        }
    }
    Ok(())
}

/// Most detail lookups in one run; the rest wait for the next run.
const MAX_DETAIL_LOOKUPS: usize = 200;

fn stops_lookups(e: &GitlabError) -> bool {
    token_status(e).is_some() || matches!(e, GitlabError::RateLimited { .. })
}

/// Looks up tracked projects whose listed state no lookup has confirmed: `GET /projects/:id` for
/// what the simple listing lacks (`empty_repo` above all), then their languages (none for an
/// empty repository). Paced to `lookup_spacing` (GitLab.com allows 400 `GET /projects/:id` a
/// minute); a dead token or a 429 ends the lookups, other failures skip one project.
#[allow(clippy::too_many_arguments)]
async fn refresh_tracked(
    deps: &Deps,
    integration: &Integration,
    instance: &shared::ports::ResolvedInstance,
    token: &secrecy::SecretString,
    candidates: &[ProjectSnapshot],
    sync_id: &str,
    deadline: Option<Instant>,
) -> Result<u64, PortError> {
    let (team, id) = (&integration.team_id, &integration.id);
    let ca = integration.instance.ca_certificate.as_deref();
    let mut writes = Vec::new();
    let mut calls = 0;
    let mut next_slot = Instant::now();
    for listed in candidates.iter().take(MAX_DETAIL_LOOKUPS) {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        tokio::time::sleep_until(next_slot).await;
        next_slot = Instant::now() + deps.lookup_spacing;
        let detail = match deps.gitlab.project_details(instance, ca, token, listed.id).await {
            Ok(detail) => detail,
            Err(e) if stops_lookups(&e) => break,
            Err(e) => {
                tracing::warn!(project_id = listed.id, error.message = %e, "project not looked up");
                continue;
            }
        };
        let snapshot = match ProjectSnapshot::new(
            &integration.instance_url,
            detail.id,
            &detail.path_with_namespace,
            detail.default_branch.as_deref(),
            detail.visibility.as_deref().or(listed.visibility.as_deref()),
            detail.archived.unwrap_or(listed.archived),
            Some(listed_empty_repo(detail.empty_repo, detail.default_branch.as_deref(), None)),
            detail.last_activity_at.as_deref(),
        ) {
            Ok(snapshot) => snapshot,
            Err(e) => {
                tracing::warn!(project_id = listed.id, reason = %e, "project details skipped");
                continue;
            }
        };
        let languages = if snapshot.empty_repo {
            Ok(std::collections::BTreeMap::new())
        } else {
            deps.gitlab.project_languages(instance, ca, token, listed.id).await
        };
        let confirmed = snapshot.fingerprint();
        if snapshot != *listed {
            writes.push(ProjectWrite::Update(snapshot));
        }
        match languages {
            Ok(languages) => match deps.projects.set_details(team, id, listed.id, &languages, &confirmed).await {
                Ok(()) => calls += 1,
                Err(PortError::NotFound) => {}
                Err(e) => return Err(e),
            },
            Err(e) if stops_lookups(&e) => break,
            Err(e) => tracing::warn!(project_id = listed.id, error.message = %e, "languages not fetched"),
        }
    }
    if !writes.is_empty() {
        calls += deps.projects.write_projects(team, id, sync_id, &writes).await?;
    }
    Ok(calls)
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
) -> (Result<HashSet<u64>, ListingError>, ListingStats) {
    let mut filtered = settings.clone();
    filtered.extra_query = filter.to_owned();
    let (tx, mut rx) = mpsc::channel::<Listed>(16);
    let collect = async move {
        let mut ids = HashSet::new();
        while let Some(event) = rx.recv().await {
            if let Listed::Page { projects, .. } = event {
                ids.extend(projects.into_iter().map(|p| p.id));
            }
        }
        ids
    };
    let (report, ids) = tokio::join!(deps.gitlab.list_projects(instance, ca, token, filtered, tx), collect);
    (report.result.map(|()| ids), report.stats)
}

async fn list_flags(
    deps: &Deps,
    instance: &shared::ports::ResolvedInstance,
    ca: Option<&str>,
    token: &secrecy::SecretString,
    settings: &shared::domain::listing::ListingSettings,
) -> (Result<Flags, ListingError>, ListingStats) {
    let mut stats = ListingStats::default();
    let mut found: [HashSet<u64>; 3] = Default::default();
    for (ids, filter) in found.iter_mut().zip(["archived=true", "visibility=public", "visibility=internal"]) {
        let (listed, s) = list_ids(deps, instance, ca, token, settings, filter).await;
        stats.add(&s);
        match listed {
            Ok(listed) => *ids = listed,
            Err(e) => return (Err(e), stats),
        }
    }
    let [archived, public, internal] = found;
    (Ok(Flags { archived, public, internal }), stats)
}

/// One pass over an integration's projects, possibly spread over several invocations: what it
/// has seen, where each range stands after the pages handled, and what it wrote.
struct Pass {
    seen: HashSet<u64>,
    /// Ids seen since the last checkpoint (the earlier ones are stored already).
    unsaved: Vec<u64>,
    /// Per slot of the current plan: where the range continues (`None`: done).
    positions: Vec<Option<IdRange>>,
    /// Checkpoint parts already stored.
    parts: u32,
    /// Pages handled since the last checkpoint.
    pages_since_checkpoint: u64,
    /// Tracked projects to look up (no lookup confirmed their listed state), as listed.
    details: Vec<ProjectSnapshot>,
    added: u64,
    updated: u64,
    unchanged: u64,
    skipped: u64,
    write_calls: u64,
}

impl Default for Pass {
    fn default() -> Self {
        Self::at(vec![(0, None)], HashSet::new(), 0)
    }
}

impl Pass {
    fn at(ranges: Vec<IdRange>, seen: HashSet<u64>, parts: u32) -> Self {
        Self {
            seen,
            unsaved: Vec::new(),
            positions: ranges.into_iter().map(Some).collect(),
            parts,
            pages_since_checkpoint: 0,
            details: Vec::new(),
            added: 0,
            updated: 0,
            unchanged: 0,
            skipped: 0,
            write_calls: 0,
        }
    }

    fn resumed(cp: Checkpoint) -> Self {
        Self::at(cp.ranges, cp.seen.into_iter().collect(), cp.parts)
    }

    /// Adds this invocation's counts to the run record.
    fn add_to(&self, run: &mut SyncRun) {
        run.seen = self.seen.len() as u64;
        run.added += self.added;
        run.updated += self.updated;
        run.unchanged += self.unchanged;
        run.skipped += self.skipped;
        run.write_calls += self.write_calls;
    }

    /// Stores the position (call only once every page handled is written): the ids seen since
    /// the last checkpoint go into a new part, the ranges and the run onto the `SYNC` item.
    async fn checkpoint(
        &mut self,
        deps: &Deps,
        team: &TeamId,
        id: &IntegrationId,
        run: &SyncRun,
    ) -> Result<(), PortError> {
        let checkpoint = Checkpoint {
            run: SyncRun { state: Some(RunState::Running), finished_at: None, ..run.clone() },
            ranges: self.positions.iter().flatten().copied().collect(),
            parts: self.parts,
            seen: std::mem::take(&mut self.unsaved),
        };
        self.parts = deps.checkpoints.save_checkpoint(team, id, &checkpoint).await?;
        self.pages_since_checkpoint = 0;
        Ok(())
    }
}

/// Reconciles pages as they arrive, writes changes in groups, and checkpoints the pass every
/// `checkpoint_every` pages so a crashed invocation is resumed from there, not from the start.
/// The run as it was when this invocation started listing, and the listing counters spent
/// before the main listing (the filtered listings): what progress adds to.
struct Progress {
    run: SyncRun,
    before: ListingStats,
    started: Instant,
}

/// Adds this invocation's listing counters and time to the run (they add up over a pass).
fn add_stats(run: &mut SyncRun, stats: &ListingStats, started: Instant) {
    run.requests += stats.requests;
    run.rate_limited += stats.rate_limited;
    run.pages += stats.pages;
    run.listing_ms += started.elapsed().as_millis() as u64;
    if stats.estimated_items > 0 {
        run.estimated_projects = Some(stats.estimated_items);
    }
}

/// Pages between saves of the run's progress (a checkpoint saves it too).
const PROGRESS_EVERY: u64 = 10;

async fn consume_pages(
    deps: &Deps,
    integration: &Integration,
    base: &Progress,
    refs: &HashMap<u64, StoredRef>,
    flags: &Flags,
    pass: &mut Pass,
    mut rx: mpsc::Receiver<Listed>,
) -> Result<(), PortError> {
    let (team, id, base_url) = (&integration.team_id, &integration.id, integration.instance_url.as_str());
    let mut writes = Vec::new();
    let mut pages = 0u64;
    while let Some(event) = rx.recv().await {
        let (slot, page, next, page_stats) = match event {
            Listed::Plan(ranges) => {
                pass.positions = ranges.into_iter().map(Some).collect();
                continue;
            }
            Listed::Page { slot, projects, next, stats } => (slot, projects, next, stats),
        };
        pages += 1;
        for listed in page {
            let stored = refs.get(&listed.id);
            let snapshot = match ProjectSnapshot::new(
                base_url,
                listed.id,
                &listed.path_with_namespace,
                listed.default_branch.as_deref(),
                listed.visibility.as_deref().or_else(|| Some(flags.visibility(listed.id))),
                listed.archived.unwrap_or_else(|| flags.archived.contains(&listed.id)),
                Some(listed_empty_repo(listed.empty_repo, listed.default_branch.as_deref(), stored)),
                listed.last_activity_at.as_deref(),
            ) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(project_id = listed.id, reason = %e, "listed project skipped");
                    pass.skipped += 1;
                    continue;
                }
            };
            // The same id twice in one pass (overlapping pages) counts once.
            if !pass.seen.insert(snapshot.id) {
                continue;
            }
            pass.unsaved.push(snapshot.id);
            let decision = reconcile(stored, &snapshot);
            if wants_details(stored, &snapshot) && pass.details.len() < MAX_DETAIL_LOOKUPS {
                pass.details.push(snapshot.clone());
            }
            match decision {
                Reconcile::Add => {
                    pass.added += 1;
                    writes.push(ProjectWrite::Add(snapshot));
                }
                Reconcile::Update => {
                    pass.updated += 1;
                    writes.push(ProjectWrite::Update(snapshot));
                }
                Reconcile::Unchanged => pass.unchanged += 1,
            }
        }
        if let Some(position) = pass.positions.get_mut(slot) {
            *position = next;
        }
        pass.pages_since_checkpoint += 1;
        let checkpoint_due = pass.pages_since_checkpoint >= deps.checkpoint_every;
        if writes.len() >= FLUSH_EVERY || (checkpoint_due && !writes.is_empty()) {
            pass.write_calls += deps.projects.write_projects(team, id, &base.run.sync_id, &writes).await?;
            writes.clear();
        }
        if checkpoint_due || pages.is_multiple_of(PROGRESS_EVERY) {
            // Progress while running: what was listed and written so far, and a heartbeat.
            let mut run = base.run.clone();
            pass.add_to(&mut run);
            let mut stats = base.before;
            stats.add(&page_stats);
            add_stats(&mut run, &stats, base.started);
            run.updated_at = Some(rfc3339(now()));
            if checkpoint_due {
                pass.checkpoint(deps, team, id, &run).await?;
            }
            deps.sync_state.save_run(team, id, &run).await?;
        }
    }
    if !writes.is_empty() {
        pass.write_calls += deps.projects.write_projects(team, id, &base.run.sync_id, &writes).await?;
    }
    Ok(())
}

/// Schedule tick: one `SyncRequested` and one `HooksRequested` per integration whose token may
/// still work, sent in batches. Returns how many integrations were queued.
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
        .flat_map(|(team_id, integration_id, _)| {
            // The hook check is its own message: it exits at once for manual integrations, and
            // a long sync does not hold it up.
            [
                Message::SyncRequested(SyncRequested {
                    version: MESSAGE_VERSION,
                    team_id: team_id.clone(),
                    integration_id: integration_id.clone(),
                    reason: SyncReason::Scheduled,
                    requested_at: at,
                    sync_id: None,
                }),
                Message::HooksRequested(shared::messages::HooksRequested {
                    version: MESSAGE_VERSION,
                    team_id,
                    integration_id,
                    reason: shared::messages::HooksReason::Scheduled,
                    requested_at: at,
                }),
            ]
        })
        .collect();
    deps.queue.send_all(&messages).await?;
    // Two messages per integration: its sync and its hook check.
    let integrations = messages.len() / 2;
    tracing::info!(integrations, "scheduled syncs and hook checks queued");
    Ok(integrations)
}

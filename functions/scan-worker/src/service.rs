//! One scan request from start to stored results: checks, claim, supersession, fetch, scanners,
//! classification against the target's previous scans, storage. The job directory is removed
//! however the job ends.

use std::time::Instant;

use shared::adapters::dynamodb_projects::rfc3339;
use shared::domain::checkout::Recorded;
use shared::domain::findings::{
    Counts, Finding, FindingState, MAX_FINDINGS_PER_SCAN, ScanError, ScanRecord, ScanState, ScanStats, SkippedEntry,
    bound, classify, new_scan_id,
};
use shared::domain::integration::IntegrationStatus;
use shared::domain::scan::ScanTarget;
use shared::messages::{ScanCancelled, ScanRequested};
use shared::ports::{PortError, TargetCheck};
use time::OffsetDateTime;

use crate::Deps;
use crate::scanners::{run_builtin, run_external};
use crate::source::{SourceError, Want};

/// A running scan whose worker has not written for this long is taken over by a redelivery
/// (Lambda's 15-minute maximum plus a margin).
const STALE_RUNNING: time::Duration = time::Duration::minutes(20);
/// Entries kept out of the checkout listed on the scan.
const MAX_SKIPPED_LISTED: usize = 100;

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Results stored.
    Scanned {
        /// The scan.
        scan_id: String,
        /// Findings stored (fixed included).
        findings: usize,
    },
    /// Another scan holds the same (project, target, commit), or this one already finished.
    Duplicate(String),
    /// A newer commit of the target was asked for.
    Superseded(String),
    /// The merge request was merged or closed.
    Cancelled(String),
    /// The scan could not be done; recorded as failed.
    Failed(String, String),
    /// The integration or project is gone or not the requester's; nothing to do.
    Dropped(&'static str),
}

/// Failures worth a retry (the message goes back to the queue).
#[derive(Debug, thiserror::Error)]
pub enum Retry {
    /// Storage failed.
    #[error("storage unavailable: {0}")]
    Store(#[from] PortError),
    /// GitLab or the network failed in a way that may pass.
    #[error("{0}")]
    Source(String),
}

fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn record_for(request: &ScanRequested, scan_id: &str) -> ScanRecord {
    let mut record =
        ScanRecord::queued(scan_id, request.project_id, request.target.clone(), request.trigger, request.requested_at);
    record.sha = request.head_sha.clone();
    record.delivery_id = request.delivery_id.clone();
    record
}

/// Records a scan that a newer request or a cancellation overtook; `None` when it is current.
async fn overtaken(
    deps: &Deps,
    request: &ScanRequested,
    scan: &ScanRecord,
    check: TargetCheck,
) -> Result<Option<Outcome>, Retry> {
    let (state, outcome) = match check {
        TargetCheck::Current => return Ok(None),
        TargetCheck::Superseded => (ScanState::Superseded, Outcome::Superseded(scan.scan_id.clone())),
        TargetCheck::Cancelled => (ScanState::Cancelled, Outcome::Cancelled(scan.scan_id.clone())),
    };
    finish(deps, request, scan.clone(), state).await?;
    Ok(Some(outcome))
}

async fn finish(deps: &Deps, request: &ScanRequested, mut scan: ScanRecord, state: ScanState) -> Result<(), Retry> {
    scan.state = state;
    scan.finished_at = Some(rfc3339(now()));
    deps.scans.save_scan(&request.team_id, &request.integration_id, &scan).await?;
    Ok(())
}

async fn fail(
    deps: &Deps,
    request: &ScanRequested,
    mut scan: ScanRecord,
    code: &str,
    message: &str,
) -> Result<Outcome, Retry> {
    tracing::warn!(scan_id = %scan.scan_id, code, "scan failed");
    scan.error = Some(ScanError { code: code.to_owned(), message: message.to_owned() });
    let id = scan.scan_id.clone();
    finish(deps, request, scan, ScanState::Failed).await?;
    Ok(Outcome::Failed(id, code.to_owned()))
}

/// Handles one scan request.
pub async fn scan(
    deps: &Deps,
    request: &ScanRequested,
    deadline: Option<tokio::time::Instant>,
) -> Result<Outcome, Retry> {
    let (team, id) = (&request.team_id, &request.integration_id);
    // The integration must exist and belong to the team the message names.
    let Some(integration) = deps.directory.find(id).await? else {
        return Ok(Outcome::Dropped("integration_gone"));
    };
    if &integration.team_id != team {
        tracing::warn!("scan request names another team than the integration's; dropped");
        return Ok(Outcome::Dropped("team_mismatch"));
    }
    let scan_id = match &request.scan_id {
        Some(given) if shared::domain::findings::is_scan_id(given) => given.clone(),
        Some(_) => return Ok(Outcome::Dropped("invalid_scan_id")),
        None => new_scan_id(now(), rand::random()),
    };
    // One scan per (project, target, commit), however many deliveries ask.
    let mut scan = match deps.scans.claim(team, id, &request.scan_key(), &scan_id).await? {
        None => match deps.scans.scan(team, id, &scan_id).await? {
            Some(existing) if existing.state.is_final() => return Ok(Outcome::Duplicate(scan_id)),
            Some(existing) => existing,
            None => record_for(request, &scan_id),
        },
        Some(holder) => match deps.scans.scan(team, id, &holder).await? {
            Some(existing) if taken_over(&existing) => existing,
            _ => return Ok(Outcome::Duplicate(holder)),
        },
    };
    let target_key = request.target.key();
    let requested_ms = ms(request.requested_at);
    let check = if deps.scans.set_latest(team, id, request.project_id, &target_key, &scan.scan_id, requested_ms).await?
    {
        deps.scans.check_target(team, id, request.project_id, &target_key, &scan.scan_id, requested_ms).await?
    } else {
        TargetCheck::Superseded
    };
    if let Some(outcome) = overtaken(deps, request, &scan, check).await? {
        return Ok(outcome);
    }
    // The project must still belong to the integration and be tracked, before the token is read.
    let project = match deps.scans.project(team, id, request.project_id).await? {
        Some(p) if p.tracked && p.removed_at.is_none() => p,
        _ => {
            return fail(deps, request, scan, "project_not_tracked", "The project is not tracked by this integration.")
                .await;
        }
    };
    if !integration.capabilities.clone {
        return fail(
            deps,
            request,
            scan,
            "insufficient_scope",
            "The token may not read repositories (read_repository).",
        )
        .await;
    }
    if matches!(
        integration.status,
        IntegrationStatus::TokenExpired | IntegrationStatus::TokenRevoked | IntegrationStatus::TokenInvalid
    ) {
        return fail(deps, request, scan, "token_invalid", "The integration's token no longer works.").await;
    }
    scan.state = ScanState::Running;
    scan.started_at = Some(rfc3339(now()));
    deps.scans.save_scan(team, id, &scan).await?;

    let stored = deps.vault.read(&integration.secret_ref).await?;
    if stored.origin != integration.instance_url {
        return fail(deps, request, scan, "token_invalid", "The stored token belongs to another instance.").await;
    }
    let want = Want {
        project_id: request.project_id,
        project_path: project.snapshot.path_with_namespace.clone(),
        sha: request.head_sha.clone(),
        ref_name: match &request.target {
            ScanTarget::MergeRequest { iid, .. } => format!("refs/merge-requests/{iid}/head"),
            ScanTarget::Branch { branch } => format!("refs/heads/{branch}"),
        },
        branch: match &request.target {
            ScanTarget::Branch { branch } => Some(branch.clone()),
            ScanTarget::MergeRequest { .. } => None,
        },
    };

    // Fetch and scanners within the invocation's time: when it runs out, the work is dropped,
    // and with it the job directory.
    let work = fetch_and_scan(deps, request, &integration, stored.token, &want, &mut scan);
    let outcome = match deadline {
        Some(at) => tokio::time::timeout_at(at, work).await,
        None => Ok(work.await),
    };
    let findings = match outcome {
        Err(_) => {
            return fail(deps, request, scan, "timeout", "The scan did not finish in the time a worker has.").await;
        }
        Ok(result) => match result? {
            Ok(findings) => findings,
            Err(e) if e.retryable => return Err(Retry::Source(e.message)),
            Err(e) => return fail(deps, request, scan, e.code, &e.message).await,
        },
    };

    // A newer commit may have been asked for while this one was scanned.
    let check = deps.scans.check_target(team, id, request.project_id, &target_key, &scan.scan_id, requested_ms).await?;
    if let Some(outcome) = overtaken(deps, request, &scan, check).await? {
        return Ok(outcome);
    }

    let baseline = baseline(deps, request).await?;
    let (current, truncated) = bound(findings, MAX_FINDINGS_PER_SCAN);
    let mut classified = classify(current, &baseline);
    order_for_display(&mut classified);
    let fingerprints: Vec<String> = classified.iter().map(|f| f.fingerprint.clone()).collect();
    let triage = deps.scans.triage(team, id, &fingerprints).await?;
    for f in &mut classified {
        f.triage = triage.get(&f.fingerprint).copied().unwrap_or_default();
    }
    scan.counts = Counts::of(&classified);
    scan.truncated = truncated;
    scan.state = ScanState::Succeeded;
    scan.finished_at = Some(rfc3339(now()));
    deps.scans.store_results(team, id, &scan, &classified).await?;
    tracing::info!(
        scan_id = %scan.scan_id,
        new = scan.counts.new,
        present = scan.counts.present,
        fixed = scan.counts.fixed,
        fetch_ms = scan.stats.fetch_ms,
        scan_ms = scan.stats.scan_ms,
        "scan stored"
    );
    Ok(Outcome::Scanned { scan_id: scan.scan_id, findings: classified.len() })
}

/// Fetches the commit into a private job directory, runs every scanner over it and removes the
/// directory; every way out of here (an error, a panic, the caller dropping this future at its
/// deadline) removes it too, as the directory guard's drop does.
async fn fetch_and_scan(
    deps: &Deps,
    request: &ScanRequested,
    integration: &shared::domain::integration::Integration,
    token: secrecy::SecretString,
    want: &Want,
    scan: &mut ScanRecord,
) -> Result<Result<Vec<Finding>, SourceError>, Retry> {
    let job = shared::adapters::git::JobDir::create(&deps.work_root)
        .map_err(|e| Retry::Source(format!("job directory: {e}")))?;
    let tree = match deps.source.fetch(integration, token, want, job.path()).await {
        Ok(tree) => tree,
        Err(e) => return Ok(Err(e)),
    };
    scan.sha = Some(tree.sha.clone());
    scan.stats = ScanStats {
        fetch_ms: tree.fetch_ms,
        checkout_ms: tree.checkout_ms,
        scan_ms: 0,
        bytes_received: tree.bytes_received,
        files: tree.files,
        bytes: tree.bytes,
    };
    scan.skipped = tree
        .recorded
        .iter()
        .take(MAX_SKIPPED_LISTED)
        .map(|(path, r)| SkippedEntry { path: path.clone(), kind: recorded_kind(r).to_owned() })
        .collect();

    let scan_started = Instant::now();
    let (mut findings, builtin) = run_builtin(deps.scanner.clone(), tree.dir.clone(), request.project_id).await;
    scan.scanners.push(builtin);
    if !deps.external.is_empty() {
        let home = job.path().join("home");
        if std::fs::create_dir(&home).is_ok() {
            for external in deps.external.iter() {
                let (found, run) = run_external(external, &tree.dir, &home, request.project_id).await;
                findings.extend(found);
                scan.scanners.push(run);
            }
        }
    }
    scan.stats.scan_ms = elapsed_ms(scan_started);
    if let Err(e) = job.remove() {
        tracing::error!(error = %e, "job directory could not be removed");
    }
    Ok(Ok(findings))
}

/// New first, then present, then fixed; most severe first within each.
fn order_for_display(findings: &mut [Finding]) {
    let rank = |s: FindingState| match s {
        FindingState::New => 0,
        FindingState::Present => 1,
        FindingState::Fixed => 2,
    };
    findings.sort_by(|a, b| {
        rank(a.state)
            .cmp(&rank(b.state))
            .then(b.severity.cmp(&a.severity))
            .then(a.path.cmp(&b.path))
            .then(a.line.cmp(&b.line))
    });
}

fn recorded_kind(r: &Recorded) -> &'static str {
    match r {
        Recorded::Symlink(_) => "symlink",
        Recorded::Submodule => "submodule",
        Recorded::LfsPointer => "lfs_pointer",
        Recorded::TooLarge(_) => "too_large",
    }
}

/// A scan left `running` by a worker that died (or `queued` by the api) may be run again.
fn taken_over(existing: &ScanRecord) -> bool {
    match existing.state {
        ScanState::Queued => true,
        ScanState::Running => existing
            .started_at
            .as_deref()
            .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
            .is_none_or(|t| now() - t > STALE_RUNNING),
        _ => false,
    }
}

/// What the findings are compared with: the previous succeeded scan of the same target and,
/// for a merge request, the latest scan of its target branch.
async fn baseline(deps: &Deps, request: &ScanRequested) -> Result<Vec<Finding>, Retry> {
    let (team, id) = (&request.team_id, &request.integration_id);
    let mut keys = vec![request.target.key()];
    if let ScanTarget::MergeRequest { target_branch, .. } = &request.target {
        keys.push(ScanTarget::Branch { branch: target_branch.clone() }.key());
    }
    let mut out = Vec::new();
    for key in keys {
        let Some(previous) = deps.scans.last_succeeded(team, id, request.project_id, &key).await? else {
            continue;
        };
        let mut cursor: Option<String> = None;
        loop {
            let page = deps.scans.findings(team, id, &previous, cursor.as_deref(), 500).await?;
            out.extend(page.items.into_iter().filter(|f| f.state != FindingState::Fixed));
            match page.next {
                Some(next) if out.len() < 2 * MAX_FINDINGS_PER_SCAN => cursor = Some(next),
                _ => break,
            }
        }
    }
    Ok(out)
}

/// Handles a merge or close: pending scans of the merge request are cancelled.
pub async fn cancel(deps: &Deps, request: &ScanCancelled) -> Result<Option<String>, Retry> {
    let (team, id) = (&request.team_id, &request.integration_id);
    let Some(integration) = deps.directory.find(id).await? else {
        return Ok(None);
    };
    if &integration.team_id != team {
        return Ok(None);
    }
    let key = ScanTarget::MergeRequest { iid: request.merge_request_iid, target_branch: String::new() }.key();
    let latest = deps.scans.cancel_target(team, id, request.project_id, &key, ms(request.requested_at)).await?;
    if let Some(scan_id) = &latest
        && let Some(mut scan) = deps.scans.scan(team, id, scan_id).await?
        && scan.state == ScanState::Queued
    {
        scan.state = ScanState::Cancelled;
        scan.finished_at = Some(rfc3339(now()));
        deps.scans.save_scan(team, id, &scan).await?;
    }
    Ok(latest)
}
